"""RTCP for one RTP stream (RFC 3550 §6): an SR while we send (an RR otherwise) with a
report block about the far end's source and our SDES CNAME, every ~5 s and a BYE on
close; the far end's SR/RR give the round-trip time (§6.4.1: A − LSR − DLSR)."""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Callable

from .aiortc_parts import rtp_module

if TYPE_CHECKING:
    import asyncio

    from .receiver import RtpReceiver
    from .remote import Remote
    from .sender import RtpSender
    from .stats import Counters

RTCP_INTERVAL = 5.0
_NTP_EPOCH_OFFSET = 2208988800
_MASK32 = 0xFFFFFFFF


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192–223 in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def ntp_now() -> int:
    t = time.time() + _NTP_EPOCH_OFFSET
    return int(t * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


class RtcpReporter:
    """Sends our reports on its own schedule (`due`), reads the far end's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sender: RtpSender,
                 receiver: RtpReceiver, counters: Counters, remote: Remote,
                 cname: bytes) -> None:
        self.interval = RTCP_INTERVAL
        self.due = math.inf          # loop time of the next report
        self.cname = cname
        self.rtt_ms: float | None = None
        self.remote_byes = 0
        self._loop = loop
        self._sender = sender
        self._receiver = receiver
        self._counters = counters
        self._remote = remote
        self._send_rtp: Callable[[bytes, tuple], None] | None = None
        self._send_rtcp: Callable[[bytes, tuple], None] | None = None

    def attach(self, send_rtp: Callable[[bytes, tuple], None],
               send_rtcp: Callable[[bytes, tuple], None]) -> None:
        """Send through the RTP socket when multiplexed, else through the RTCP socket."""
        self._send_rtp, self._send_rtcp = send_rtp, send_rtcp

    def start(self, now: float) -> None:
        self.due = now + self._delay() / 2  # the first report comes sooner

    def on_due(self, now: float) -> None:
        self.due = now + self._delay()
        self.send()

    def _delay(self) -> float:
        # randomised (RFC 3550 §6.3.1) so that many sessions do not report in lockstep
        return self.interval * random.uniform(0.5, 1.5)

    # ------------------------------------------------------------------ sending
    def send(self, bye: bool = False) -> None:
        mod = rtp_module()
        ssrc = self._sender.ssrc
        counters = self._counters
        reports = self._report_blocks()
        if counters.sent:
            info = mod.RtcpSenderInfo(ntp_timestamp=ntp_now(),
                                      rtp_timestamp=self._sender.timestamp,
                                      packet_count=counters.sent & _MASK32,
                                      octet_count=counters.octets_sent & _MASK32)
            first = mod.RtcpSrPacket(ssrc=ssrc, sender_info=info, reports=reports)
        else:
            first = mod.RtcpRrPacket(ssrc=ssrc, reports=reports)
        parts = [bytes(first),
                 bytes(mod.RtcpSdesPacket(chunks=[mod.RtcpSourceInfo(
                     ssrc=ssrc, items=[(1, self.cname)])]))]
        if bye:
            parts.append(bytes(mod.RtcpByePacket(sources=[ssrc])))
        data = b"".join(parts)
        remote = self._remote
        if remote.mux:
            self._send_rtp(data, remote.rtp)
        else:
            self._send_rtcp(data, remote.rtcp)
        counters.rtcp_sent += 1

    def _report_blocks(self) -> list:
        receiver = self._receiver
        source = receiver.source_stats
        if source is None or receiver.remote_ssrc is None:
            return []
        fraction, cumulative = source.report_interval()
        dlsr = 0
        if source.last_sr:
            dlsr = int((self._loop.time() - source.last_sr_arrival) * 65536) & _MASK32
        return [rtp_module().RtcpReceiverInfo(
            ssrc=receiver.remote_ssrc, fraction_lost=fraction, packets_lost=cumulative,
            highest_sequence=source.extended_max & _MASK32,
            jitter=int(source.jitter) & _MASK32, lsr=source.last_sr, dlsr=dlsr)]

    # ------------------------------------------------------------------ receiving
    def on_packet(self, data: bytes, addr, muxed: bool) -> None:
        """A compound RTCP packet, from the RTCP socket or multiplexed on the RTP one."""
        mod = rtp_module()
        counters = self._counters
        try:
            packets = mod.RtcpPacket.parse(data)
        except Exception:  # noqa: BLE001 - malformed input is counted, never raised
            counters.malformed += 1
            return
        if not packets:
            counters.malformed += 1
            return
        counters.rtcp_received += 1
        remote = self._remote
        if not muxed and not remote.rtcp_latched:
            remote.latch_rtcp(addr)
        now = self._loop.time()
        receiver = self._receiver
        for p in packets:
            if isinstance(p, mod.RtcpSrPacket):
                if p.ssrc == receiver.remote_ssrc:
                    source = receiver.source_stats
                    source.last_sr = (p.sender_info.ntp_timestamp >> 16) & _MASK32
                    source.last_sr_arrival = now
                self._rtt_from(p.reports)
            elif isinstance(p, mod.RtcpRrPacket):
                self._rtt_from(p.reports)
            elif isinstance(p, mod.RtcpByePacket):
                if receiver.remote_ssrc in p.sources:
                    self.remote_byes += 1

    def _rtt_from(self, reports) -> None:
        ssrc = self._sender.ssrc
        for r in reports:
            if r.ssrc != ssrc or r.lsr == 0:
                continue
            a = (ntp_now() >> 16) & _MASK32
            rtt = ((a - r.lsr - r.dlsr) & _MASK32) / 65536.0
            if rtt < 60:
                self.rtt_ms = rtt * 1000.0
