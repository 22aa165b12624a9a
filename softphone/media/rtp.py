"""RTP/RTCP media session on an asyncio UDP socket pair (RTP/AVP, or SRTP with SDES keys).

`RtpSession` is the composition the call layer drives: it owns the socket pair and
wires one `RtpSender` (sender.py), `RtpReceiver` (receiver.py) and `RtcpReporter`
(rtcp.py) around a shared `Remote` address (remote.py) and `Counters` (stats.py), paced
by the process-wide drift-free `Ticker` (ticker.py). It turns start/update/hold/mute/
close into settings of those parts; the per-packet work happens in the parts. With SRTP
(`set_srtp`), packets are protected on their way to the socket and opened on their way in
(srtp.py); a capture sees them as they cross the wire.

Packets are aiortc's `RtpPacket`/`RtcpPacket`, imported on first use: `RtpSession.open`
loads aiortc's RTP parts and PyAV in a worker thread (~0.15 s, ~18 MB; the loop stalls at
most ~25 ms, in PyAV's module set-up); `preload()` starts that early.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from . import codecs as _codecs
from .aiortc_parts import rtp_loaded, rtp_module
from .receiver import COMFORT_NOISE_PT, PLAYOUT_MS, RtpReceiver
from .remote import Remote
from .rtcp import RTCP_INTERVAL, RtcpReporter, is_rtcp
from .sender import RtpSender
from .stats import Counters, RtpStats
from .ticker import Ticker

if TYPE_CHECKING:
    from .devices import AudioSink, AudioSource
    from .srtp import SrtpStreams

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_SENDING = ("sendrecv", "sendonly")
_RECEIVING = ("sendrecv", "recvonly")

_Ticker = Ticker  # the name bench/media_worker.py and older code import


async def preload() -> None:
    """Import aiortc and PyAV in a worker thread so the first call does not wait."""
    if rtp_loaded():
        return

    def _load() -> None:
        rtp_module()  # aiortc.rtp and aiortc.codecs, without the WebRTC stack
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


# --------------------------------------------------------------------------- sockets
def _drop(*_args) -> None:
    """Datagrams before start() and after close() are ignored."""


def _protected(protect: Callable[[bytes], bytes],
               send: Callable[[bytes, tuple], None]) -> Callable[[bytes, tuple], None]:
    """``send`` behind SRTP ``protect``; a packet libsrtp refuses is dropped (logged)."""
    def send_protected(data: bytes, addr) -> None:
        try:
            packet = protect(data)
        except Exception as exc:  # noqa: BLE001 - e.g. a key past its lifetime
            log.warning("SRTP protect failed: %s", exc)
            return
        send(packet, addr)

    return send_protected


class _Port(asyncio.DatagramProtocol):
    """One socket of the pair; its handlers are the session parts' entry points."""

    def __init__(self) -> None:
        self.on_rtp: Callable[[bytes, tuple], None] = _drop
        self.on_rtcp: Callable[[bytes, tuple, bool], None] = _drop
        self.errors = 0

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        self.errors += 1


class _RtpPort(_Port):
    def datagram_received(self, data: bytes, addr) -> None:
        if is_rtcp(data):  # rtcp-mux (RFC 5761)
            self.on_rtcp(data, addr, True)
        else:
            self.on_rtp(data, addr)


class _RtcpPort(_Port):
    def datagram_received(self, data: bytes, addr) -> None:
        self.on_rtcp(data, addr, False)


def _alias(path: str, doc: str, settable: bool = False) -> property:
    """A session attribute that lives in one of its parts (`part.name`)."""
    part, name = path.split(".")

    def get(self):
        return getattr(getattr(self, part), name)

    def set_(self, value) -> None:
        setattr(getattr(self, part), name, value)

    return property(get, set_ if settable else None, doc=doc)


# --------------------------------------------------------------------------- session
class RtpSession:
    """One audio stream: two UDP sockets (RTP, RTCP = RTP+1) and the parts that use them."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.local_port = 0
        self.local_host = ""
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._tap: Callable[[str, bytes, tuple, tuple], None] | None = None
        self._srtp: SrtpStreams | None = None
        self._srtp_reported = False
        self.on_srtp_error: Callable[[str], None] | None = None
        self.counters = Counters()
        self._remote = Remote()
        self.sender = RtpSender(self.counters, self._remote)
        self.receiver = RtpReceiver(self.loop, self.counters, self._remote)
        self.rtcp = RtcpReporter(self.loop, self.sender, self.receiver, self.counters,
                                 self._remote,
                                 cname=f"{os.getpid()}.{self.sender.ssrc:08x}@softphone".encode())
        self.fmt: MediaFormat | None = None
        self.direction = "sendrecv"
        self.on_timeout: Callable[[], None] | None = None
        self.rtp_timeout = 0.0
        self._started = False
        self._closed = False
        self._ticker: Ticker | None = None
        self._ticks = 0
        self._timeout_fired = False

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
                    _RtpPort, local_addr=(host, port))
            except OSError as exc:
                last_exc = exc
                continue
            try:
                rtcp_t, _ = await self.loop.create_datagram_endpoint(
                    _RtcpPort, local_addr=(host, port + 1))
            except OSError as exc:
                rtp_t.close()
                last_exc = exc
                continue
            self._rtp_transport, self._rtcp_transport = rtp_t, rtcp_t
            self.local_port = port
            self._wire()
            self.local_host = host
            return self
        raise OSError(f"no free RTP port pair in {lo}-{hi}: {last_exc}")

    @property
    def rtp_transport(self) -> asyncio.DatagramTransport | None:
        """The RTP socket. Until start(), what it receives goes to its protocol's
        ``on_rtp`` (dropped by default): a STUN binding can borrow it then."""
        return self._rtp_transport

    # ------------------------------------------------------------------ control
    def capture(self, tap: Callable[[str, bytes, tuple, tuple], None]) -> None:
        """Hand every packet sent and received to ``tap(direction, data, local, remote)``
        (a pcap trace with RTP), as it crosses the wire (SRTP stays encrypted). Call
        before :meth:`start`."""
        self._tap = tap
        self._wire()

    def set_srtp(self, suite: str | None, send_key: bytes = b"", receive_key: bytes = b"") -> None:
        """Protect with SRTP from now on (``suite`` None: plain RTP). New keys for the
        same session re-key it (a re-INVITE's offer/answer)."""
        if suite is None:
            if self._srtp is None:
                return
            self._srtp = None
        elif self._srtp is not None:
            if not self._srtp.same(suite, send_key, receive_key):
                self._srtp.rekey(suite, send_key, receive_key)
                self._srtp_reported = False
            return
        else:
            from .srtp import SrtpStreams

            self._srtp = SrtpStreams(suite, send_key, receive_key)
        self._srtp_reported = False
        self._wire()

    @property
    def srtp_suite(self) -> str | None:
        return self._srtp.suite if self._srtp is not None else None

    def _wire(self) -> None:
        """Connect the parts to the sockets: capture tap outermost (the wire's bytes),
        then SRTP, then the sender, receiver and RTCP reporter."""
        rtp_t, rtcp_t, tap, srtp = (self._rtp_transport, self._rtcp_transport, self._tap,
                                    self._srtp)
        if rtp_t is None or rtcp_t is None or self._closed:
            return
        local = (self.local_host, self.local_port)
        local_rtcp = (self.local_host, self.local_port + 1)
        wire_rtp, wire_rtcp = rtp_t.sendto, rtcp_t.sendto
        if tap is not None:
            def wire_rtp(data: bytes, addr, _send=rtp_t.sendto) -> None:
                _send(data, addr)
                tap("sent", data, local, addr)

            def wire_rtcp(data: bytes, addr, _send=rtcp_t.sendto) -> None:
                _send(data, addr)
                tap("sent", data, local_rtcp, addr)

        if srtp is None:
            self.sender.attach(wire_rtp)
            self.rtcp.attach(wire_rtp, wire_rtcp)
        else:
            self.sender.attach(_protected(srtp.protect, wire_rtp))
            self.rtcp.attach(_protected(srtp.protect_rtcp, wire_rtp),
                             _protected(srtp.protect_rtcp, wire_rtcp))
        if not self._started:
            return
        on_rtp, on_rtcp = self.receiver.on_packet, self.rtcp.on_packet
        if srtp is not None:
            plain_rtp, plain_rtcp = on_rtp, on_rtcp

            def on_rtp(data: bytes, addr) -> None:
                packet = srtp.unprotect(data)
                if packet is not None:
                    plain_rtp(packet, addr)
                elif srtp.failing:
                    self._srtp_failing(addr)

            def on_rtcp(data: bytes, addr, muxed: bool) -> None:
                packet = srtp.unprotect_rtcp(data)
                if packet is not None:
                    plain_rtcp(packet, addr, muxed)

        if tap is not None:  # a capture asked for the media too: off the usual path
            opened_rtp, opened_rtcp = on_rtp, on_rtcp

            def on_rtp(data: bytes, addr) -> None:
                tap("received", data, local, addr[:2])
                opened_rtp(data, addr)

            def on_rtcp(data: bytes, addr, muxed: bool) -> None:
                tap("received", data, local if muxed else local_rtcp, addr[:2])
                opened_rtcp(data, addr, muxed)

        rtp_t.get_protocol().on_rtp = on_rtp
        rtp_t.get_protocol().on_rtcp = rtcp_t.get_protocol().on_rtcp = on_rtcp

    def _srtp_failing(self, addr) -> None:
        srtp = self._srtp
        if self._srtp_reported or srtp is None:
            return
        self._srtp_reported = True
        why = (f"SRTP: {srtp.failures_in_a_row} packets in a row from {addr[0]}:{addr[1]} "
               f"failed authentication ({srtp.suite}): the far end's key or suite does not "
               f"match what was agreed")
        if self.on_srtp_error is None:
            log.warning("%s", why)
            return
        log.info("%s", why)  # the call reports it
        self.on_srtp_error(why)

    def start(self, fmt: MediaFormat, remote: tuple[str, int], remote_rtcp: tuple[str, int] | None,
              *, rtcp_mux: bool, source: AudioSource, sink: AudioSink,
              on_dtmf: Callable[[str], None] | None = None,
              on_timeout: Callable[[], None] | None = None, rtp_timeout: float = 0) -> None:
        """Start sending every ptime and playing what arrives."""
        if self._closed:
            raise RuntimeError("RTP session is closed")
        self.sender.set_source(source)
        self.receiver.set_sink(sink)
        self.receiver.on_dtmf = on_dtmf
        self.on_timeout, self.rtp_timeout = on_timeout, rtp_timeout
        self._apply_format(fmt)
        self._remote.set(remote, remote_rtcp, rtcp_mux)
        self._started = True
        self.receiver.last_rx = self.loop.time()  # the RTP timeout counts from here
        self._wire()
        self._schedule()
        self.rtcp.start(self.loop.time())

    def update(self, fmt: MediaFormat, remote: tuple[str, int],
               remote_rtcp: tuple[str, int] | None, *, rtcp_mux: bool) -> None:
        """Apply a re-INVITE: maybe a new codec, remote address or rtcp-mux."""
        if not self._started or self._closed:
            return
        if fmt != self.fmt:
            self._apply_format(fmt)
            self._schedule()
        if (remote, remote_rtcp, rtcp_mux) != self._remote.signalled:
            self._remote.set(remote, remote_rtcp, rtcp_mux)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events (0-9 * # A-D); needs a negotiated telephone-event PT."""
        if not self._started:
            raise RuntimeError("RTP session not started")
        if self.fmt is None or self.fmt.dtmf_payload_type is None:
            raise ValueError("telephone-event was not negotiated")
        self.sender.dtmf.queue(digits, duration_ms)

    def set_muted(self, muted: bool) -> None:
        """While muted, encoded silence is sent (keeps NAT bindings and timing)."""
        self.sender.set_muted(muted)

    def set_hold(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"bad direction {direction!r}")
        sending = direction in _SENDING
        if direction != self.direction and sending:
            self.sender.marker = True
        self.sender.active = sending
        self.receiver.active = direction in _RECEIVING
        self.direction = direction

    def stats(self) -> RtpStats:
        receiver = self.receiver
        return self.counters.snapshot(receiver.source_stats, receiver.playout,
                                      rtt_ms=self.rtcp.rtt_ms,
                                      codec=self.fmt.name if self.fmt else "",
                                      remote=self._remote.rtp)

    async def close(self) -> None:
        """Send RTCP BYE, stop pacing, close both sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.remove(self)
            self._ticker = None
        transports = [t for t in (self._rtp_transport, self._rtcp_transport) if t is not None]
        for t in transports:
            port = t.get_protocol()
            port.on_rtp = port.on_rtcp = _drop
        if self._started:
            try:
                self.rtcp.send(bye=True)
            except Exception:  # noqa: BLE001 - closing must not fail
                log.debug("RTCP BYE failed", exc_info=True)
        for t in transports:
            t.close()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ the ticker's send phase
    def send_tick(self, now: float) -> None:
        """Called by the shared ticker every period: the RTP that is due, then RTCP when
        due, and every 10th tick the RTP-timeout check. (The play phase is the
        receiver's `play_tick`.)"""
        self.sender.tick(now)
        rtcp = self.rtcp
        if now >= rtcp.due:
            rtcp.on_due(now)
        self._ticks += 1
        if self.rtp_timeout > 0 and not self._timeout_fired and self._ticks % 10 == 0:
            self._check_timeout(now)

    def _check_timeout(self, now: float) -> None:
        if self.direction != "sendrecv":
            # on hold either way: the far end is told not to send (sendonly, inactive), or
            # it holds us (recvonly) and may send nothing; restart the clock
            self.receiver.last_rx = now
            return
        if now - self.receiver.last_rx >= self.rtp_timeout:
            self._timeout_fired = True
            if self.on_timeout is not None:
                self.on_timeout()

    # ------------------------------------------------------------------ internals
    def _apply_format(self, fmt: MediaFormat) -> None:
        fmt = replace(fmt, name=_codecs.canonical_name(fmt.name))
        self.fmt = fmt
        ptime = _codecs.effective_ptime(fmt.name, fmt.ptime)
        audio_rate = self.sender.set_format(fmt, ptime)
        self.receiver.set_format(fmt, ptime, audio_rate)
        for dev in (self.sender.source, self.receiver.sink):
            prepare = getattr(dev, "prepare", None)
            if prepare is not None:
                prepare(audio_rate)

    def _schedule(self) -> None:
        period = 0.02 if self.sender.ptime % 20 == 0 else 0.01
        if self._ticker is not None and self._ticker.period == period:
            return
        if self._ticker is not None:
            self._ticker.remove(self)
        self._ticker = Ticker.get(self.loop, period)
        first = self._ticker.add(self, self.send_tick, self.receiver.play_tick)
        self.sender.due = first
        self.receiver.play_due = first

    # ------------------------------------------------------------------ attributes of the parts
    @property
    def sending(self) -> bool:
        return self.direction in _SENDING

    @property
    def receiving(self) -> bool:
        return self.direction in _RECEIVING

    @property
    def source(self) -> AudioSource | None:
        return self.sender.source

    @source.setter
    def source(self, source: AudioSource) -> None:
        self.sender.set_source(source)

    @property
    def sink(self) -> AudioSink | None:
        return self.receiver.sink

    @sink.setter
    def sink(self, sink: AudioSink) -> None:
        self.receiver.set_sink(sink)

    ssrc = _alias("sender.ssrc", "Our SSRC.", settable=True)
    muted = _alias("sender.muted", "Sending encoded silence (see set_muted).", settable=True)
    encoder = _alias("sender.encoder", "The codec's encoder.")
    ptime = _alias("sender.ptime", "Packet time in ms, as sent.")
    audio_rate = _alias("sender.audio_rate", "The codec's audio rate: the devices' rate.")
    remote = _alias("_remote.rtp", "Where RTP goes (signalled, then latched).", settable=True)
    remote_rtcp = _alias("_remote.rtcp", "Where RTCP goes.", settable=True)
    rtcp_mux = _alias("_remote.mux", "RTCP on the RTP port (RFC 5761).")
    remote_ssrc = _alias("receiver.remote_ssrc", "The far end's current SSRC.")
    playout = _alias("receiver.playout", "The playout buffer (None before start).")
    on_dtmf = _alias("receiver.on_dtmf", "Called with each received digit.", settable=True)
    rtcp_interval = _alias("rtcp.interval", "Mean seconds between reports.", settable=True)
    rtt_ms = _alias("rtcp.rtt_ms", "Round-trip time from the far end's reports.")
    remote_byes = _alias("rtcp.remote_byes", "RTCP BYEs received from the far end.")
    cname = _alias("rtcp.cname", "Our SDES CNAME.")


__all__ = ["MediaFormat", "RtpSession", "RtpStats", "preload", "DIRECTIONS",
           "RTCP_INTERVAL", "PLAYOUT_MS", "COMFORT_NOISE_PT"]
