"""SIP traces: the text format of DESIGN §3, or a capture Wireshark and sngrep open.

``FILE.pcap`` writes classic pcap, ``FILE.pcapng`` pcapng; ``-`` writes the text format
to stdout. A capture can carry the call's RTP and RTCP too (``--trace-rtp``), so
Wireshark can play the call back. Every packet is written as a bare IP packet
(LINKTYPE_RAW) with a UDP or a synthetic TCP header around the payload.

Passwords never reach a trace: Authorization headers carry only digest hashes, and no
other place in a message holds the secret.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import struct
import sys
import time
from typing import BinaryIO

from ..transport import Peer

__all__ = ["SipTrace", "trace_format", "TraceError"]

LINKTYPE_RAW = 101


class TraceError(ValueError):
    """A trace that cannot be written as asked; the message says why."""


def trace_format(path: str) -> str:
    """text | pcap | pcapng, by the file name (``-``: text on stdout)."""
    lower = path.lower()
    if lower.endswith(".pcapng"):
        return "pcapng"
    if lower.endswith((".pcap", ".cap")):
        return "pcap"
    return "text"


class SipTrace:
    """Append every SIP message sent or received (and, asked, every RTP packet)."""

    def __init__(self, path: str, local: tuple[str, int] | None = None) -> None:
        self.path = path
        self.format = trace_format(path)
        self.local = local or ("127.0.0.1", 5060)
        if path == "-":
            self._fh: BinaryIO = sys.stdout.buffer
            self._owned = False
        else:
            self._fh = open(path, "wb")
            self._owned = True
        self._closed = False
        if self.format == "pcap":
            self._fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        elif self.format == "pcapng":
            self._fh.write(_pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
            self._fh.write(_pcapng_block(1, struct.pack("<HHI", LINKTYPE_RAW, 0, 65535)))
        self._ip_id = 0

    @property
    def capture(self) -> bool:
        return self.format != "text"

    def __call__(self, direction: str, data: bytes, peer: Peer) -> None:
        """A SIP message ``direction`` (sent | received) to or from ``peer``."""
        if self._closed:
            return
        if self.capture:
            self._packet(direction, data, self.local, (peer.host, peer.port), peer.proto)
        else:
            stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
            self._fh.write(f"--- {stamp} {direction} {peer.proto} {peer}\n".encode())
            self._fh.write(data.replace(b"\r\n", b"\n"))
            if not data.endswith(b"\n"):
                self._fh.write(b"\n")
        self._fh.flush()

    def media(self, direction: str, data: bytes, local: tuple[str, int],
              remote: tuple[str, int]) -> None:
        """An RTP or RTCP packet (captures only)."""
        if self._closed or not self.capture:
            return
        self._packet(direction, data, local, remote, "udp")

    def _packet(self, direction: str, data: bytes, local: tuple[str, int],
                remote: tuple[str, int], proto: str) -> None:
        local_host, local_port = local
        if local_host in ("0.0.0.0", "::", ""):
            local_host = "127.0.0.1" if ":" not in remote[0] else "::1"
        src, dst = ((local_host, local_port), remote) if direction == "sent" \
            else (remote, (local_host, local_port))
        try:
            s_ip, d_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
        except ValueError:
            return
        if s_ip.version != d_ip.version:
            return
        if proto == "udp":
            l4 = struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data
            number = 17
        else:
            # a synthetic TCP segment (PSH|ACK) so dissectors see the stream
            l4 = struct.pack("!HHIIBBHHH", src[1], dst[1], 0, 0, 5 << 4, 0x18, 65535, 0, 0) + data
            number = 6
        if s_ip.version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self._ip_id, 0, 64,
                                 number, 0, s_ip.packed, d_ip.packed)
            header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        else:
            header = struct.pack("!IHBB16s16s", 6 << 28, len(l4), number, 64, s_ip.packed,
                                 d_ip.packed)
        packet = header + l4
        now = time.time()
        if self.format == "pcap":
            self._fh.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(packet),
                                       len(packet)))
            self._fh.write(packet)
        else:
            micros = int(now * 1e6)
            padded = packet + b"\0" * (-len(packet) % 4)
            self._fh.write(_pcapng_block(6, struct.pack("<IIIII", 0, micros >> 32,
                                                        micros & 0xFFFFFFFF, len(packet),
                                                        len(packet)) + padded))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._fh.close()
        else:
            self._fh.flush()


def _pcapng_block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
