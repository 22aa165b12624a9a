"""SIP traces: the text format of DESIGN §3, or a pcap that Wireshark and sngrep open.

Passwords never reach a trace: Authorization headers carry only digest hashes, and no
other place in a message holds the secret.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import struct
import time
from typing import BinaryIO

from ..transport import Peer

__all__ = ["SipTrace", "open_trace"]


class SipTrace:
    """Append every SIP message sent or received to a file."""

    def __init__(self, path: str, local: tuple[str, int] | None = None) -> None:
        self.path = path
        self.pcap = path.lower().endswith((".pcap", ".cap"))
        self.local = local or ("127.0.0.1", 5060)
        self._fh: BinaryIO = open(path, "wb")
        if self.pcap:
            # classic pcap, LINKTYPE_RAW (101): bare IPv4/IPv6 packets
            self._fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        self._ip_id = 0

    def __call__(self, direction: str, data: bytes, peer: Peer) -> None:
        if self._fh.closed:
            return
        if self.pcap:
            self._write_pcap(direction, data, peer)
        else:
            stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
            self._fh.write(f"--- {stamp} {direction} {peer.proto} {peer}\n".encode())
            self._fh.write(data.replace(b"\r\n", b"\n"))
            if not data.endswith(b"\n"):
                self._fh.write(b"\n")
        self._fh.flush()

    def _write_pcap(self, direction: str, data: bytes, peer: Peer) -> None:
        local_host, local_port = self.local
        if local_host in ("0.0.0.0", "::"):
            local_host = "127.0.0.1" if ":" not in peer.host else "::1"
        if direction == "sent":
            src, dst = (local_host, local_port), (peer.host, peer.port)
        else:
            src, dst = (peer.host, peer.port), (local_host, local_port)
        try:
            s_ip, d_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
        except ValueError:
            return
        if s_ip.version != d_ip.version:
            return
        if peer.proto == "udp":
            l4 = struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data
            proto = 17
        else:
            # a synthetic TCP segment (PSH|ACK) so dissectors see the stream
            l4 = struct.pack("!HHIIBBHHH", src[1], dst[1], 0, 0, 5 << 4, 0x18, 65535, 0, 0) + data
            proto = 6
        if s_ip.version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self._ip_id, 0, 64,
                                 proto, 0, s_ip.packed, d_ip.packed)
            checksum = _checksum(header)
            header = header[:10] + struct.pack("!H", checksum) + header[12:]
        else:
            header = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, s_ip.packed,
                                 d_ip.packed)
        packet = header + l4
        now = time.time()
        self._fh.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(packet),
                                   len(packet)))
        self._fh.write(packet)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def open_trace(path: str | None, local: tuple[str, int] | None = None) -> SipTrace | None:
    return SipTrace(path, local) if path else None
