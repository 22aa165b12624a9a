"""The send path of one RTP stream: our SSRC, sequence numbers and timestamps, the
encoder, pacing on the shared ticker, the marker bit and RFC 4733 DTMF."""

from __future__ import annotations

import math
import random
import struct
from typing import TYPE_CHECKING, Callable

from . import codecs as _codecs
from .dtmf import DtmfSender
from .ticker import MAX_CATCH_UP

if TYPE_CHECKING:
    from .devices import AudioSource
    from .remote import Remote
    from .rtp import MediaFormat
    from .stats import Counters

_RTP_HEADER = struct.Struct("!BBHII")


class RtpSender:
    """Sends one packet per ptime from `source` (silence while muted, nothing while not
    `active`), keeping RTP timestamps on the clock across stalls and DTMF events.

    Slotted and read through locals: `tick` and `_send_one` run for every session on
    every tick.
    """

    __slots__ = ("ssrc", "seq", "timestamp", "marker", "active", "muted", "dtmf", "source",
                 "encoder", "ptime", "audio_rate", "payload_type", "dtmf_payload_type",
                 "dtmf_clock_rate", "due", "_step", "_ts_step", "_samples", "_silence",
                 "_pre_encoded", "_counters", "_remote", "_sendto")

    def __init__(self, counters: Counters, remote: Remote) -> None:
        self.ssrc = random.getrandbits(32) or 1
        self.seq = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)  # of the next packet
        self.marker = True          # the next audio packet starts a talk spurt
        self.active = True          # the direction lets us send
        self.muted = False
        self.dtmf = DtmfSender()
        self.source: AudioSource | None = None
        self.encoder: _codecs.Encoder | None = None
        self.ptime = 20
        self.audio_rate = 8000
        self.payload_type = 0
        self.dtmf_payload_type: int | None = None
        self.dtmf_clock_rate = 8000
        self.due = math.inf         # loop time the next packet is due
        self._step = 0.02
        self._ts_step = 160
        self._samples = 160
        self._silence = b""
        self._pre_encoded = False
        self._counters = counters
        self._remote = remote
        self._sendto: Callable[[bytes, tuple], None] | None = None

    def attach(self, sendto: Callable[[bytes, tuple], None]) -> None:
        """Send through `sendto` (the RTP socket's: symmetric RTP, we send from where we
        receive)."""
        self._sendto = sendto

    def set_format(self, fmt: MediaFormat, ptime: int) -> int:
        """Encode `fmt` in packets of `ptime` ms from now on; returns the audio rate the
        encoder takes (the rate devices should run at)."""
        self.encoder = _codecs.make_encoder(fmt.name, ptime, fmt.fmtp)
        self.ptime = ptime
        self.audio_rate = self.encoder.audio_rate
        self.payload_type = fmt.payload_type
        self.dtmf_payload_type = fmt.dtmf_payload_type
        self.dtmf_clock_rate = fmt.dtmf_clock_rate
        self._samples = self.audio_rate * ptime // 1000
        self._ts_step = fmt.clock_rate * ptime // 1000
        self._step = ptime / 1000
        self._silence = bytes(self._samples * 2)
        self._pre_encoded = self._can_pre_encode()
        self.marker = True
        return self.audio_rate

    def set_source(self, source: AudioSource) -> None:
        self.source = source
        self._pre_encoded = self._can_pre_encode()

    def _can_pre_encode(self) -> bool:
        # a looping file through a stateless codec is encoded once, then sliced per packet
        return isinstance(self.encoder, _codecs.G711Encoder) and \
            hasattr(self.source, "read_encoded")

    def set_muted(self, muted: bool) -> None:
        """While muted, encoded silence is sent (keeps NAT bindings and timing)."""
        if self.muted and not muted:
            self.marker = True
        self.muted = muted

    # ------------------------------------------------------------------ hot path
    def tick(self, now: float) -> None:
        """Send every packet due by `now`, one per ptime; after a stall longer than
        MAX_CATCH_UP packets skip ahead, timestamps too, and mark a new talk spurt."""
        slack = now + 0.002
        step = self._step
        n = 0
        while self.due <= slack and n < MAX_CATCH_UP:
            self._send_one()
            self.due += step
            n += 1
        if self.due <= slack:
            missed = int((now - self.due) / step) + 1
            self.timestamp = (self.timestamp + missed * self._ts_step) & 0xFFFFFFFF
            self.due += missed * step
            self.marker = True

    def _send_one(self) -> None:
        ts = self.timestamp
        self.timestamp = (ts + self._ts_step) & 0xFFFFFFFF
        source = self.source
        if not self.active:
            source.read(self._samples, self.audio_rate)  # keep it draining
            return
        dtmf = self.dtmf
        if dtmf.pending and self.dtmf_payload_type is not None:
            pkt = dtmf.next_packet(ts, self.ptime, self.dtmf_clock_rate)
            if pkt is not None:
                source.read(self._samples, self.audio_rate)
                if pkt.marker:
                    self._counters.dtmf_sent += 1
                self._emit(self.dtmf_payload_type, pkt.marker, pkt.timestamp, pkt.payload)
                self.marker = True  # the next audio packet starts a talk spurt
                return
        encoder = self.encoder
        if self._pre_encoded and not self.muted:
            payload = source.read_encoded(encoder.encode, encoder.name, self._samples,
                                          self.audio_rate)
        else:
            pcm = source.read(self._samples, self.audio_rate)
            if self.muted:
                pcm = self._silence
            payload = encoder.encode(pcm)
        if not payload:
            return
        marker = self.marker
        self.marker = False
        self._emit(self.payload_type, marker, ts, payload)

    def _emit(self, pt: int, marker: bool, ts: int, payload: bytes) -> None:
        # the fixed 12-byte header (V=2, no padding/extension/CSRC) packed directly: the
        # same bytes as aiortc's RtpPacket.serialize at a tenth of the cost
        data = _RTP_HEADER.pack(0x80, (0x80 if marker else 0) | pt, self.seq, ts,
                                self.ssrc) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        self._sendto(data, self._remote.rtp)
        counters = self._counters
        counters.sent += 1
        counters.bytes_sent += len(data)
        counters.octets_sent += len(payload)
