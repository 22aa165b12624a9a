"""Hand-made SIP requests and how to read the answers, for tests that play a raw peer."""

from __future__ import annotations

import re
import socket
import time
import uuid


def sip_request(method: str, ruri: str, via_host: str, via_port: int, *, proto: str = "UDP",
                call_id: str | None = None, cseq: int = 1, body: str = "",
                extra: str = "") -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    call_id = call_id or uuid.uuid4().hex
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{proto} {via_host}:{via_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:tester@{via_host}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:tester@{via_host}:{via_port}>\r\n{extra}{ctype}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def responses(sock: socket.socket, timeout: float, until=lambda statuses: False) -> list[bytes]:
    """Datagrams arriving on ``sock`` for ``timeout`` s, or until ``until(statuses)``."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except (socket.timeout, ConnectionRefusedError):
            break
        got.append(data)
        if until([status(d) for d in got]):
            break
    return got


def stream_response(conn: socket.socket) -> bytes:
    """The head of the first response on a TCP/TLS connection (bounded by the socket's
    timeout, or less if the peer closes)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = conn.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def status(data: bytes) -> int:
    m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    return int(m.group(1)) if m else 0
