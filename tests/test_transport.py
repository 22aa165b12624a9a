"""The transport layer on real loopback sockets: what is sent arrives, and what could not
be sent is neither traced nor lost silently."""

from __future__ import annotations

import asyncio
import socket

import pytest

from peers.net import LOOPBACK
from softphone.transport import Peer, TransportLayer


def _closed_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_a_send_right_after_an_icmp_error_still_goes_out():
    """An ICMP port-unreachable that one datagram drew is reported by the socket's next
    send, whatever its destination (IP_RECVERR), and that send was lost: a NOTIFY sent
    right after the ACK to a phone that had just exited never left (it failed the
    transfer test in CI). Both go in one loop turn here, as they did there."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((LOOPBACK, 0))
    sink.settimeout(5)
    traced: list[tuple[str, Peer]] = []
    unreachable: list[Peer] = []
    layer = TransportLayer(lambda data, peer: None,
                           tracer=lambda way, data, peer: traced.append((way, peer)))
    layer.on_unreachable = lambda peer, reason: unreachable.append(peer)
    await layer.start(LOOPBACK, 0, tcp=False)
    try:
        dead = Peer("udp", LOOPBACK, _closed_port())
        live = Peer("udp", LOOPBACK, sink.getsockname()[1])
        for n in range(20):  # bounded; every round must deliver
            layer.send(b"ACK %d" % n, dead)
            layer.send(b"NOTIFY %d" % n, live)
            data, _ = await asyncio.get_running_loop().run_in_executor(
                None, sink.recvfrom, 2048)
            assert data == b"NOTIFY %d" % n
        assert unreachable and all(p == dead for p in unreachable)
        assert [way for way, _ in traced].count("sent") == 40
        # the refusal is reported on a later loop turn, never from inside send(): the
        # stack may be in the middle of applying another transaction's actions
        inside: list[bool] = []
        sending = [False]
        layer.on_unreachable = lambda peer, reason: inside.append(sending[0])
        sending[0] = True
        layer.send(b"ACK", dead)
        layer.send(b"NOTIFY", live)
        sending[0] = False
        await asyncio.get_running_loop().run_in_executor(None, sink.recvfrom, 2048)
        for _ in range(10):  # bounded: a few loop turns
            if inside:
                break
            await asyncio.sleep(0)
        assert inside and not any(inside)
    finally:
        await layer.close()
        sink.close()


async def test_a_send_that_fails_is_raised_and_not_traced():
    """A datagram the kernel refuses (here: to an IPv6 address from an IPv4 socket)
    raises, and the trace never claims it was sent."""
    traced: list[str] = []
    layer = TransportLayer(lambda data, peer: None,
                           tracer=lambda way, data, peer: traced.append(way))
    await layer.start(LOOPBACK, 0, tcp=False)
    try:
        with pytest.raises(OSError):
            layer.send(b"OPTIONS", Peer("udp", "::1", 5060))
        assert traced == []
    finally:
        await layer.close()


async def test_a_tcp_connect_that_fails_is_not_traced_as_sent():
    """Issue 9: `--sip-trace` said "sent tcp" for a message whose connection was refused."""
    traced: list[str] = []
    failed: asyncio.Future = asyncio.get_running_loop().create_future()
    layer = TransportLayer(lambda data, peer: None,
                           tracer=lambda way, data, peer: traced.append(way),
                           on_error=lambda peer, reason: failed.set_result(reason))
    await layer.start(LOOPBACK, 0, tcp=False)
    try:
        layer.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n",
                   Peer("tcp", LOOPBACK, _closed_port(socket.SOCK_STREAM)))
        assert "connect" in await asyncio.wait_for(failed, 15)
        assert traced == []
    finally:
        await layer.close()
