"""Loopback port picking and a one-shot SIP OPTIONS probe.

Ports are drawn at random from 20000-32767, below Linux's ephemeral range (32768-60999),
so short-lived client sockets of other processes do not grab them between the check and
the peer's bind. Each candidate is bound for real (UDP and/or TCP) before it is returned.
"""

from __future__ import annotations

import random
import socket
import uuid

LOOPBACK = "127.0.0.1"
_LOW, _HIGH = 20000, 32767
_ATTEMPTS = 400


def _bindable(port: int, udp: bool, tcp: bool) -> bool:
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


_handed_out: dict[int, None] = {}  # ports given out lately (a peer may not have bound yet)
_REMEMBER = 2000


def free_port_block(count: int, *, udp: bool = True, tcp: bool = False, align: int = 2) -> int:
    """First port of ``count`` consecutive free ports (base is a multiple of ``align``),
    never one handed out lately: two peers started in one test must not get the same
    port between the check and their bind."""
    rng = random.SystemRandom()
    for _ in range(_ATTEMPTS):
        base = rng.randrange(_LOW, _HIGH - count) // align * align
        block = range(base, base + count)
        if any(p in _handed_out for p in block):
            continue
        if all(_bindable(p, udp, tcp) for p in block):
            for p in block:
                _handed_out[p] = None
            while len(_handed_out) > _REMEMBER:
                del _handed_out[next(iter(_handed_out))]
            return base
    raise RuntimeError(f"no block of {count} free loopback ports found")


def free_udp_port() -> int:
    """A free UDP port on 127.0.0.1, free for TCP too: a softphone listening there binds
    both."""
    return free_port_block(1, udp=True, tcp=True, align=1)


def free_sip_port() -> int:
    """A port free for both UDP and TCP (SIP servers listen on both)."""
    return free_port_block(1, udp=True, tcp=True, align=1)


def free_port_pair() -> tuple[int, int]:
    """An even port and the next one, both free for UDP and TCP.

    Fits RTP/RTCP, and baresip, which binds SIP UDP+TCP on p and TLS on p+1.
    """
    base = free_port_block(2, udp=True, tcp=True, align=2)
    return base, base + 1


def sip_options_ping(host: str, port: int, timeout: float = 0.5) -> str | None:
    """Send one SIP OPTIONS over UDP; return the reply's status line, or None on timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        lport = s.getsockname()[1]
        ruri = f"sip:{host}:{port}"
        branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"
        msg = (
            f"OPTIONS {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:ping@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{ruri}>\r\n"
            f"Call-ID: {uuid.uuid4()}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.settimeout(timeout)
        s.sendto(msg.encode(), (host, port))
        try:
            data, _ = s.recvfrom(65535)
        except (socket.timeout, ConnectionRefusedError):
            return None
    return data.split(b"\r\n", 1)[0].decode(errors="replace")
