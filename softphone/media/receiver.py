"""The receive path of one RTP stream: parse, keep what was negotiated, follow the far
end's SSRC and address (latching), measure loss and jitter, de-jitter and decode in the
playout buffer, play it into the sink on the shared ticker, report RFC 4733 digits."""

from __future__ import annotations

import logging
import math
import struct
from typing import TYPE_CHECKING, Callable

from . import codecs as _codecs
from .aiortc_parts import rtp_module
from .dtmf import DtmfReceiver
from .playout import PlayoutBuffer
from .stats import ReceiveStats
from .ticker import MAX_CATCH_UP

if TYPE_CHECKING:
    import asyncio

    from .devices import AudioSink
    from .remote import Remote
    from .rtp import MediaFormat
    from .stats import Counters

log = logging.getLogger(__name__)

PLAYOUT_MS = 20
COMFORT_NOISE_PT = 13
_PLAYOUT_S = PLAYOUT_MS / 1000
_FIXED_HEADER = struct.Struct("!BHII")  # after the first byte: M|PT, seq, timestamp, SSRC


class RtpReceiver:
    """Takes the RTP socket's packets (`on_packet`) and plays 20 ms per tick into `sink`.

    A sink that `discards` (headless, nothing recorded) is never fed: no decoding or
    playout work, while loss and jitter are still measured on receipt. Slotted and read
    through locals: `on_packet` runs per packet, `play_tick` per session and tick.
    """

    __slots__ = ("active", "sink", "discard", "on_dtmf", "remote_ssrc", "source_stats",
                 "playout", "payload_type", "dtmf_payload_type", "clock_rate", "codec",
                 "audio_rate", "play_due", "last_rx", "dtmf", "_playout_samples",
                 "_counters", "_remote", "_time", "_parse")

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: Counters,
                 remote: Remote) -> None:
        self.active = True          # the direction lets us receive
        self.sink: AudioSink | None = None
        self.discard = False
        self.on_dtmf: Callable[[str], None] | None = None
        self.remote_ssrc: int | None = None
        self.source_stats: ReceiveStats | None = None  # RFC 3550 stats of remote_ssrc
        self.playout: PlayoutBuffer | None = None
        self.payload_type = -1
        self.dtmf_payload_type: int | None = None
        self.clock_rate = 0
        self.codec = ""
        self.audio_rate = 8000
        self.play_due = math.inf    # loop time the next 20 ms go to the sink
        self.last_rx = 0.0          # loop time of the last packet kept (or of the start)
        self.dtmf = DtmfReceiver()
        self._playout_samples = 160
        self._counters = counters
        self._remote = remote
        self._time = loop.time
        self._parse: Callable[[bytes], object] | None = None

    def set_sink(self, sink: AudioSink) -> None:
        self.sink = sink
        self.discard = bool(getattr(sink, "discards", False))

    def set_format(self, fmt: MediaFormat, ptime: int, audio_rate: int) -> None:
        """Expect `fmt`; a new codec, clock or payload type gets a fresh playout buffer,
        and a new clock fresh statistics (they are kept in RTP clock units)."""
        if (fmt.name, fmt.clock_rate, fmt.payload_type) != \
                (self.codec, self.clock_rate, self.payload_type):
            self.playout = PlayoutBuffer(_codecs.make_decoder(fmt.name), fmt.clock_rate,
                                         frame_ms=ptime)
        if self.source_stats is not None and fmt.clock_rate != self.clock_rate:
            self._forget_source()
            self.remote_ssrc = None
        self.codec = fmt.name
        self.clock_rate = fmt.clock_rate
        self.payload_type = fmt.payload_type
        self.dtmf_payload_type = fmt.dtmf_payload_type
        self.audio_rate = audio_rate
        self._playout_samples = audio_rate * PLAYOUT_MS // 1000
        self._parse = rtp_module().RtpPacket.parse

    def _forget_source(self) -> None:
        self._counters.lost_prior += self.source_stats.lost
        self.source_stats = None

    def _new_source(self, ssrc: int) -> None:
        """A new SSRC (first packet, or the far end restarted): fresh stats and buffer."""
        if self.source_stats is not None:
            self._forget_source()
        if self.remote_ssrc is not None:
            self.playout.reset(_codecs.make_decoder(self.codec))
            self.dtmf.reset()
            self._remote.unlatch()  # the new source may come from a new address
        self.remote_ssrc = ssrc
        self.source_stats = ReceiveStats(self.clock_rate)

    # ------------------------------------------------------------------ hot path
    def on_packet(self, data: bytes, addr) -> None:
        """One datagram from the RTP socket (RTCP already taken out)."""
        if len(data) > 12 and data[0] == 0x80:
            # RTP v2 without padding, extension or CSRCs (nearly every packet): read the
            # fixed header in place rather than build aiortc's RtpPacket for it
            second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(data, 1)
            pt, marker, payload = second & 0x7F, second >> 7, data[12:]
        else:
            try:
                pkt = self._parse(data)
            except Exception:  # noqa: BLE001 - malformed input is counted, never raised
                self._counters.malformed += 1
                return
            pt, marker, payload = pkt.payload_type, pkt.marker, pkt.payload
            seq, timestamp, ssrc = pkt.sequence_number, pkt.timestamp, pkt.ssrc
        if pt == self.dtmf_payload_type:  # never equal when telephone-event is off (None)
            is_dtmf = True
        elif pt == self.payload_type:
            is_dtmf = False
        else:
            if pt != COMFORT_NOISE_PT:
                self._counters.unknown_pt += 1
            return
        if not payload:
            self._counters.malformed += 1
            return
        now = self._time()
        if ssrc != self.remote_ssrc:
            self._new_source(ssrc)
        remote = self._remote
        if not remote.rtp_latched:
            remote.latch_rtp(addr)
        stats = self.source_stats
        if not stats.update_seq(seq):
            return
        counters = self._counters
        counters.received += 1
        counters.bytes_received += len(data)
        self.last_rx = now
        if is_dtmf:
            digit = self.dtmf.handle(timestamp, payload)
            if digit is not None:
                counters.dtmf_received += 1
                if self.on_dtmf is not None:
                    try:
                        self.on_dtmf(digit)
                    except Exception:  # noqa: BLE001 - a UI bug must not stop the media
                        log.exception("on_dtmf callback failed")
            return
        stats.update_jitter(timestamp, now)
        if self.active and not self.discard:
            self.playout.push(timestamp, payload, now, bool(marker))

    def play_tick(self, now: float) -> None:
        """Playout: 20 ms of audio per 20 ms of clock (concealment when nothing came)."""
        slack = now + 0.002
        n = 0
        while self.play_due <= slack and n < MAX_CATCH_UP and not self.discard:
            # the slot's time, or earlier when the tick came early: packets that arrive
            # before it are in time, and a late tick does not make the buffer look deep
            pcm = self.playout.pull(self._playout_samples, min(now, self.play_due))
            if self.active:
                self.sink.write(pcm, self.audio_rate)
            self.play_due += _PLAYOUT_S
            n += 1
        if self.play_due <= slack:  # far behind (loop stalled): start afresh
            self.play_due = now + _PLAYOUT_S
