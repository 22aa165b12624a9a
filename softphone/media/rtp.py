"""RTP/RTCP media session on an asyncio UDP socket (plain RTP/AVP).

Packets are aiortc's `RtpPacket`/`RtcpPacket`; the rest is ours: one shared ticker per
event loop paces every session (drift-free: each tick is scheduled on a fixed grid of
`loop.time()`, and a session that falls behind catches up packet by packet), symmetric
RTP with latching, rtcp-mux, RFC 3550 statistics and reports, RFC 4733 DTMF, and an
adaptive playout buffer (playout.py) drained by the same ticker into the sink.

aiortc is imported on first use (`RtpSession.open` imports it in a worker thread; call
`preload()` early to take the ~1.7 s off the call path).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from . import codecs as _codecs
from .devices import AudioSink, AudioSource
from .dtmf import DtmfReceiver, DtmfSender
from .playout import PlayoutBuffer
from .stats import ReceiveStats, RtpStats

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
RTCP_INTERVAL = 5.0
PLAYOUT_MS = 20
COMFORT_NOISE_PT = 13
_NTP_EPOCH_OFFSET = 2208988800
_MAX_CATCH_UP = 5

_rtp_mod = None
_RTP_HEADER = struct.Struct("!BBHII")


def _aiortc_rtp():
    """aiortc.rtp, imported on first use (importing aiortc takes ~1.7 s)."""
    global _rtp_mod
    if _rtp_mod is None:
        from .aiortc_parts import load

        load()
        import aiortc.rtp as mod

        _rtp_mod = mod
    return _rtp_mod


async def preload() -> None:
    """Import aiortc and PyAV in a worker thread so the first call does not wait."""
    if _rtp_mod is not None:
        return

    def _load() -> None:
        _aiortc_rtp()  # aiortc.rtp and aiortc.codecs, without the WebRTC stack
        import av  # noqa: F401

    await asyncio.to_thread(_load)


@dataclass
class MediaFormat:
    """The negotiated audio format of one media stream."""

    name: str                 # SDP encoding name: "PCMU" | "PCMA" | "G722" | "opus"
    payload_type: int
    clock_rate: int           # RTP clock: 8000 (PCMU/PCMA/G722), 48000 (opus)
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict)
    ptime: int = 20           # ms
    dtmf_payload_type: int | None = None
    dtmf_clock_rate: int = 8000

    @property
    def audio_rate(self) -> int:
        return _codecs.audio_rate(self.name)


# --------------------------------------------------------------------------- ticker
class _Ticker:
    """One timer chain per (loop, period), shared by every session in the process.

    Ticks sit on a fixed grid `origin + k*period` of loop.time(), so nothing drifts; a
    late tick is not repeated — sessions compare their own due times with `now`.
    """

    _instances: dict[tuple[int, float], "_Ticker"] = {}

    @classmethod
    def get(cls, loop: asyncio.AbstractEventLoop, period: float) -> "_Ticker":
        key = (id(loop), period)
        t = cls._instances.get(key)
        if t is None or t.loop is not loop or t.loop.is_closed():
            t = cls._instances[key] = cls(loop, period)
        return t

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self.sessions: list[RtpSession] = []
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.late_ticks = 0

    def next_tick(self) -> float:
        if self._handle is None:
            self._next = self.loop.time() + self.period
        return self._next

    def add(self, session: "RtpSession") -> None:
        if session not in self.sessions:
            self.sessions.append(session)
        if self._handle is None:
            self._next = self.loop.time() + self.period
            self._handle = self.loop.call_at(self._next, self._fire)

    def remove(self, session: "RtpSession") -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        if not self.sessions and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._instances.pop((id(self.loop), self.period), None)

    def _fire(self) -> None:
        now = self.loop.time()
        sessions = list(self.sessions)
        # every session sends first, then plays out: a send never waits behind another
        # session's decoding and concealment, so send intervals stay even
        for phase in (RtpSession._send_tick, RtpSession._play_tick):
            for s in sessions:
                try:
                    phase(s, now)
                except Exception:  # noqa: BLE001 - one broken session must not stop the rest
                    log.exception("RTP session tick failed")
        if not self.sessions:
            self._handle = None
            self._instances.pop((id(self.loop), self.period), None)
            return
        self._next += self.period
        if self._next <= now:
            skipped = int((now - self._next) / self.period) + 1
            self.late_ticks += skipped
            self._next += skipped * self.period
        self._handle = self.loop.call_at(self._next, self._fire)


# --------------------------------------------------------------------------- protocols
class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: "RtpSession") -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr) -> None:
        self.session._on_rtp_socket(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        self.session._socket_errors += 1


class _RtcpProtocol(_RtpProtocol):
    def datagram_received(self, data: bytes, addr) -> None:
        self.session._on_rtcp(data, addr)


def _is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192–223 in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def _ntp_now() -> int:
    t = time.time() + _NTP_EPOCH_OFFSET
    return int(t * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


# --------------------------------------------------------------------------- session
class RtpSession:
    """One audio stream: two UDP sockets (RTP, RTCP = RTP+1), a codec, a playout buffer."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.local_port = 0
        self.local_host = ""
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self.rtcp_interval = RTCP_INTERVAL
        self.ssrc = random.getrandbits(32) or 1
        self.cname = f"{os.getpid()}.{self.ssrc:08x}@softphone".encode()
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._started = False
        self._closed = False
        self._ticker: _Ticker | None = None
        self.fmt: MediaFormat | None = None
        self.direction = "sendrecv"
        self.muted = False
        self._marker = True
        # remote
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.rtcp_mux = False
        self._latched = False
        self._rtcp_latched = False
        self.remote_ssrc: int | None = None
        # counters
        self._sent = 0
        self._bytes_sent = 0
        self._octets_sent = 0
        self._received_total = 0
        self._bytes_received = 0
        self._lost_prior = 0
        self._malformed = 0
        self._discard_audio = False
        self._pre_encoded = False
        self._unknown_pt = 0
        self._rtcp_sent = 0
        self._rtcp_received = 0
        self._socket_errors = 0
        self._dtmf_sent = 0
        self._dtmf_received = 0
        self.rtt_ms: float | None = None
        self.remote_byes = 0
        self._rx: ReceiveStats | None = None
        self._last_sr_mid: int = 0
        self._last_sr_arrival = 0.0
        self._last_rx_time: float | None = None
        self._timeout_fired = False
        self._tick_count = 0

    # ------------------------------------------------------------------ opening
    @classmethod
    async def open(cls, host: str = "0.0.0.0",
                   port_range: tuple[int, int] = (10000, 20000)) -> "RtpSession":
        """Bind an even RTP port and RTCP on port+1 from `port_range`."""
        await preload()
        self = cls()
        lo, hi = int(port_range[0]), int(port_range[1])
        lo += lo & 1
        if hi - lo < 1:
            raise OSError(f"RTP port range {port_range} holds no even/odd port pair")
        pairs = (hi - lo + 1) // 2
        start = random.randrange(pairs)
        last_exc: Exception | None = None
        for i in range(min(pairs, 200)):
            port = lo + 2 * ((start + i) % pairs)
            if port + 1 > hi or port + 1 > 65535:
                continue
            try:
                rtp_t, _ = await self.loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(self), local_addr=(host, port))
            except OSError as exc:
                last_exc = exc
                continue
            try:
                rtcp_t, _ = await self.loop.create_datagram_endpoint(
                    lambda: _RtcpProtocol(self), local_addr=(host, port + 1))
            except OSError as exc:
                rtp_t.close()
                last_exc = exc
                continue
            self._rtp_transport, self._rtcp_transport = rtp_t, rtcp_t
            self.local_port = port
            self.local_host = host
            return self
        raise OSError(f"no free RTP port pair in {lo}-{hi}: {last_exc}")

    # ------------------------------------------------------------------ control
    def start(self, fmt: MediaFormat, remote: tuple[str, int], remote_rtcp: tuple[str, int] | None,
              *, rtcp_mux: bool, source: AudioSource, sink: AudioSink,
              on_dtmf: Callable[[str], None] | None = None,
              on_timeout: Callable[[], None] | None = None, rtp_timeout: float = 0) -> None:
        """Start sending every ptime and playing what arrives."""
        if self._closed:
            raise RuntimeError("RTP session is closed")
        self.source, self.sink = source, sink
        # nobody listens (headless, nothing recorded): decoding would be wasted work;
        # loss and jitter are still measured on receipt
        self._discard_audio = bool(getattr(sink, "discards", False))
        self._pre_encoded = False  # set with the codec, in _apply_format
        self.on_dtmf, self.on_timeout = on_dtmf, on_timeout
        self.rtp_timeout = rtp_timeout
        self._dtmf_tx = DtmfSender()
        self._dtmf_rx = DtmfReceiver()
        self._apply_format(fmt)
        self._set_remote(remote, remote_rtcp, rtcp_mux)
        self._started = True
        self._start_time = self.loop.time()
        self._schedule()
        now = self.loop.time()
        self._rtcp_due = now + self._rtcp_delay(initial=True)

    def update(self, fmt: MediaFormat, remote: tuple[str, int],
               remote_rtcp: tuple[str, int] | None, *, rtcp_mux: bool) -> None:
        """Apply a re-INVITE: maybe a new codec, remote address or rtcp-mux."""
        if not self._started or self._closed:
            return
        if fmt != self.fmt:
            self._apply_format(fmt)
            self._schedule()
        if (remote, remote_rtcp, rtcp_mux) != (self._sig_remote, self._sig_remote_rtcp,
                                               self.rtcp_mux):
            self._set_remote(remote, remote_rtcp, rtcp_mux)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events (0-9 * # A-D); needs a negotiated telephone-event PT."""
        if not self._started:
            raise RuntimeError("RTP session not started")
        if self.fmt is None or self.fmt.dtmf_payload_type is None:
            raise ValueError("telephone-event was not negotiated")
        self._dtmf_tx.queue(digits, duration_ms)

    def set_muted(self, muted: bool) -> None:
        """While muted, encoded silence is sent (keeps NAT bindings and timing)."""
        if self.muted and not muted:
            self._marker = True
        self.muted = muted

    def set_hold(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"bad direction {direction!r}")
        if direction != self.direction and direction in ("sendrecv", "sendonly"):
            self._marker = True
        self.direction = direction

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    def stats(self) -> RtpStats:
        rx = self._rx
        lost = self._lost_prior + (rx.lost if rx else 0)
        buf = getattr(self, "playout", None)
        return RtpStats(
            sent=self._sent, received=self._received_total, lost=lost,
            jitter_ms=rx.jitter_ms if rx else 0.0, rtt_ms=self.rtt_ms,
            bytes_sent=self._bytes_sent, bytes_received=self._bytes_received,
            playout_ms=buf.depth_ms if buf else 0.0,
            concealed=buf.concealed_frames if buf else 0,
            late=buf.late_dropped if buf else 0,
            malformed=self._malformed + self._unknown_pt,
            dtmf_sent=self._dtmf_sent, dtmf_received=self._dtmf_received,
            rtcp_sent=self._rtcp_sent, rtcp_received=self._rtcp_received,
            codec=self.fmt.name if self.fmt else "",
            remote=f"{self.remote[0]}:{self.remote[1]}" if self.remote else "")

    async def close(self) -> None:
        """Send RTCP BYE, stop pacing, close both sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.remove(self)
            self._ticker = None
        if self._started:
            try:
                self._send_rtcp(bye=True)
            except Exception:  # noqa: BLE001 - closing must not fail
                log.debug("RTCP BYE failed", exc_info=True)
        for t in (self._rtp_transport, self._rtcp_transport):
            if t is not None:
                t.close()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ internals: setup
    def _apply_format(self, fmt: MediaFormat) -> None:
        name = _codecs.canonical_name(fmt.name)
        old = self.fmt
        fmt = replace(fmt, name=name)
        self.fmt = fmt
        self.ptime = _codecs.effective_ptime(name, fmt.ptime)
        self.encoder = _codecs.make_encoder(name, self.ptime, fmt.fmtp)
        self.audio_rate = self.encoder.audio_rate
        self._pre_encoded = isinstance(self.encoder, _codecs.G711Encoder) and \
            hasattr(self.source, "read_encoded")
        self._samples_per_packet = self.audio_rate * self.ptime // 1000
        self._ts_step = fmt.clock_rate * self.ptime // 1000
        self._silence = bytes(self._samples_per_packet * 2)
        self._playout_samples = self.audio_rate * PLAYOUT_MS // 1000
        decoder = _codecs.make_decoder(name)
        if old is None or old.name != name or old.clock_rate != fmt.clock_rate \
                or old.payload_type != fmt.payload_type:
            self.playout = PlayoutBuffer(decoder, fmt.clock_rate, frame_ms=self.ptime)
        if old is not None and old.clock_rate != fmt.clock_rate and self._rx is not None:
            # statistics are kept in RTP clock units: start them afresh for the new clock
            self._lost_prior += self._rx.lost
            self._rx = None
            self.remote_ssrc = None
        for dev in (getattr(self, "source", None), getattr(self, "sink", None)):
            prepare = getattr(dev, "prepare", None)
            if prepare is not None:
                prepare(self.audio_rate)
        self._marker = True

    def _set_remote(self, remote, remote_rtcp, rtcp_mux: bool) -> None:
        self._sig_remote, self._sig_remote_rtcp = remote, remote_rtcp
        self.remote = (remote[0], int(remote[1]))
        self.rtcp_mux = rtcp_mux
        if rtcp_mux:
            self.remote_rtcp = self.remote
        elif remote_rtcp is not None:
            self.remote_rtcp = (remote_rtcp[0], int(remote_rtcp[1]))
        else:
            self.remote_rtcp = (remote[0], int(remote[1]) + 1)
        self._latched = False
        self._rtcp_latched = False

    def _schedule(self) -> None:
        period = 0.02 if self.ptime % 20 == 0 else 0.01
        if self._ticker is not None and self._ticker.period == period:
            return
        if self._ticker is not None:
            self._ticker.remove(self)
        self._ticker = _Ticker.get(self.loop, period)
        first = self._ticker.next_tick()
        self._send_due = first
        self._play_due = first
        self._ticker.add(self)

    def _rtcp_delay(self, initial: bool = False) -> float:
        d = self.rtcp_interval * random.uniform(0.5, 1.5)
        return d / 2 if initial else d

    # ------------------------------------------------------------------ internals: tick
    def _on_tick(self, now: float) -> None:
        self._send_tick(now)
        self._play_tick(now)

    def _play_tick(self, now: float) -> None:
        """Playout: 20 ms of audio per 20 ms of clock."""
        slack = now + 0.002
        n = 0
        while self._play_due <= slack and n < _MAX_CATCH_UP and not self._discard_audio:
            pcm = self.playout.pull(self._playout_samples)
            if self.receiving:
                self.sink.write(pcm, self.audio_rate)
            self._play_due += PLAYOUT_MS / 1000
            n += 1
        if self._play_due <= slack:  # far behind (loop stalled): start afresh
            self._play_due = now + PLAYOUT_MS / 1000

    def _send_tick(self, now: float) -> None:
        """Sending: one packet per ptime, timestamps follow the clock; RTCP when due."""
        slack = now + 0.002
        step = self.ptime / 1000
        n = 0
        while self._send_due <= slack and n < _MAX_CATCH_UP:
            self._send_one()
            self._send_due += step
            n += 1
        if self._send_due <= slack:
            missed = int((now - self._send_due) / step) + 1
            self._ts = (self._ts + missed * self._ts_step) & 0xFFFFFFFF
            self._send_due += missed * step
            self._marker = True
        if now >= self._rtcp_due:
            self._rtcp_due = now + self._rtcp_delay()
            self._send_rtcp()
        self._tick_count += 1
        if self.rtp_timeout > 0 and not self._timeout_fired and self._tick_count % 10 == 0:
            self._check_timeout(now)

    def _check_timeout(self, now: float) -> None:
        if self.direction != "sendrecv":
            # on hold either way: the far end is told not to send (sendonly, inactive), or
            # it holds us (recvonly) and may send nothing; restart the clock
            self._last_rx_time = now
            return
        since = self._last_rx_time if self._last_rx_time is not None else self._start_time
        if now - since >= self.rtp_timeout:
            self._timeout_fired = True
            if self.on_timeout is not None:
                self.on_timeout()

    def _send_one(self) -> None:
        fmt = self.fmt
        ts = self._ts
        self._ts = (ts + self._ts_step) & 0xFFFFFFFF
        if not self.sending:
            self.source.read(self._samples_per_packet, self.audio_rate)  # keep it draining
            return
        if self._dtmf_tx.pending and fmt.dtmf_payload_type is not None:
            pkt = self._dtmf_tx.next_packet(ts, self.ptime, fmt.dtmf_clock_rate)
            if pkt is not None:
                self.source.read(self._samples_per_packet, self.audio_rate)
                if pkt.marker:
                    self._dtmf_sent += 1
                self._emit(fmt.dtmf_payload_type, pkt.marker, pkt.timestamp, pkt.payload)
                self._marker = True  # the next audio packet starts a talk spurt
                return
        if self._pre_encoded and not self.muted:
            # a looping file through a stateless codec: encoded once, sliced per packet
            payload = self.source.read_encoded(self.encoder.encode, self.encoder.name,
                                               self._samples_per_packet, self.audio_rate)
        else:
            pcm = self.source.read(self._samples_per_packet, self.audio_rate)
            if self.muted:
                pcm = self._silence
            payload = self.encoder.encode(pcm)
        if not payload:
            return
        marker = self._marker
        self._marker = False
        self._emit(fmt.payload_type, marker, ts, payload)

    def _emit(self, pt: int, marker: bool, ts: int, payload: bytes) -> None:
        # the fixed 12-byte header (V=2, no padding/extension/CSRC) packed directly: the
        # same bytes as aiortc's RtpPacket.serialize at a tenth of the cost (hot path)
        data = _RTP_HEADER.pack(0x80, (0x80 if marker else 0) | pt, self._seq, ts,
                                self.ssrc) + payload
        self._seq = (self._seq + 1) & 0xFFFF
        self._rtp_transport.sendto(data, self.remote)
        self._sent += 1
        self._bytes_sent += len(data)
        self._octets_sent += len(payload)
        self._last_sent_ts = ts

    # ------------------------------------------------------------------ internals: receive
    def _on_rtp_socket(self, data: bytes, addr) -> None:
        if not self._started or self._closed:
            return
        if _is_rtcp(data):
            self._on_rtcp(data, addr, muxed=True)
            return
        try:
            pkt = _aiortc_rtp().RtpPacket.parse(data)
        except Exception:  # noqa: BLE001 - malformed input is counted, never raised
            self._malformed += 1
            return
        fmt = self.fmt
        pt = pkt.payload_type
        is_audio = pt == fmt.payload_type
        is_dtmf = fmt.dtmf_payload_type is not None and pt == fmt.dtmf_payload_type
        if not (is_audio or is_dtmf):
            if pt != COMFORT_NOISE_PT:
                self._unknown_pt += 1
            return
        if not pkt.payload:
            self._malformed += 1
            return
        now = self.loop.time()
        if pkt.ssrc != self.remote_ssrc:
            self._new_remote_source(pkt.ssrc)
        if not self._latched:
            self._latched = True
            if addr[:2] != self.remote:
                log.debug("RTP latched to %s (was %s)", addr, self.remote)
            self.remote = (addr[0], addr[1])
            if self.rtcp_mux:
                self.remote_rtcp = self.remote
        rx = self._rx
        if not rx.update_seq(pkt.sequence_number):
            return
        self._received_total += 1
        self._bytes_received += len(data)
        self._last_rx_time = now
        if is_dtmf:
            digit = self._dtmf_rx.handle(pkt.timestamp, pkt.payload)
            if digit is not None:
                self._dtmf_received += 1
                if self.on_dtmf is not None:
                    try:
                        self.on_dtmf(digit)
                    except Exception:  # noqa: BLE001 - a UI bug must not stop the media
                        log.exception("on_dtmf callback failed")
            return
        rx.update_jitter(pkt.timestamp, now)
        if self.receiving and not self._discard_audio:
            self.playout.push(pkt.timestamp, pkt.payload, now, bool(pkt.marker))

    def _new_remote_source(self, ssrc: int) -> None:
        """A new SSRC (first packet, or the far end restarted): fresh stats and buffer."""
        if self._rx is not None:
            self._lost_prior += self._rx.lost
        if self.remote_ssrc is not None:
            self.playout.reset(_codecs.make_decoder(self.fmt.name))
            self._dtmf_rx.reset()
            self._latched = False  # the new source may come from a new address
            self._rtcp_latched = False
        self.remote_ssrc = ssrc
        self._rx = ReceiveStats(self.fmt.clock_rate)
        self._last_sr_mid = 0

    # ------------------------------------------------------------------ RTCP
    def _on_rtcp(self, data: bytes, addr, muxed: bool = False) -> None:
        if not self._started or self._closed:
            return
        try:
            packets = _aiortc_rtp().RtcpPacket.parse(data)
        except Exception:  # noqa: BLE001
            self._malformed += 1
            return
        if not packets:
            self._malformed += 1
            return
        mod = _aiortc_rtp()
        self._rtcp_received += 1
        if not muxed and not self._rtcp_latched:
            self._rtcp_latched = True
            self.remote_rtcp = (addr[0], addr[1])
        now = self.loop.time()
        for p in packets:
            if isinstance(p, mod.RtcpSrPacket):
                if p.ssrc == self.remote_ssrc:
                    self._last_sr_mid = (p.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                    self._last_sr_arrival = now
                self._rtt_from(p.reports)
            elif isinstance(p, mod.RtcpRrPacket):
                self._rtt_from(p.reports)
            elif isinstance(p, mod.RtcpByePacket):
                if self.remote_ssrc in p.sources:
                    self.remote_byes += 1

    def _rtt_from(self, reports) -> None:
        for r in reports:
            if r.ssrc != self.ssrc or r.lsr == 0:
                continue
            a = (_ntp_now() >> 16) & 0xFFFFFFFF
            rtt = ((a - r.lsr - r.dlsr) & 0xFFFFFFFF) / 65536.0
            if rtt < 60:
                self.rtt_ms = rtt * 1000.0

    def _report_blocks(self) -> list:
        rx = self._rx
        if rx is None or self.remote_ssrc is None:
            return []
        fraction, cumulative = rx.report_interval()
        dlsr = 0
        if self._last_sr_mid:
            dlsr = int((self.loop.time() - self._last_sr_arrival) * 65536) & 0xFFFFFFFF
        return [_aiortc_rtp().RtcpReceiverInfo(
            ssrc=self.remote_ssrc, fraction_lost=fraction, packets_lost=cumulative,
            highest_sequence=rx.extended_max & 0xFFFFFFFF, jitter=int(rx.jitter) & 0xFFFFFFFF,
            lsr=self._last_sr_mid, dlsr=dlsr)]

    def _send_rtcp(self, bye: bool = False) -> None:
        mod = _aiortc_rtp()
        reports = self._report_blocks()
        if self._sent:
            ntp = _ntp_now()
            info = mod.RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=self._ts,
                                      packet_count=self._sent & 0xFFFFFFFF,
                                      octet_count=self._octets_sent & 0xFFFFFFFF)
            first = mod.RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=reports)
        else:
            first = mod.RtcpRrPacket(ssrc=self.ssrc, reports=reports)
        parts = [bytes(first),
                 bytes(mod.RtcpSdesPacket(chunks=[mod.RtcpSourceInfo(
                     ssrc=self.ssrc, items=[(1, self.cname)])]))]
        if bye:
            parts.append(bytes(mod.RtcpByePacket(sources=[self.ssrc])))
        data = b"".join(parts)
        if self.rtcp_mux:
            self._rtp_transport.sendto(data, self.remote)
        else:
            self._rtcp_transport.sendto(data, self.remote_rtcp)
        self._rtcp_sent += 1


__all__ = ["MediaFormat", "RtpSession", "RtpStats", "preload", "DIRECTIONS"]
