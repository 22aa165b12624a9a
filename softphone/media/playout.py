"""Adaptive playout buffer keyed on RTP timestamps, with a playout clock.

aiortc's JitterBuffer is arrival-driven and stalls on loss; this one is pulled by the
sink's clock (every 20 ms) and always hands back exactly the audio asked for:

- packets are ordered by (unwrapped) RTP timestamp, so reordering is absorbed and
  duplicates are dropped;
- playback starts once `target` ms are buffered; the target follows the measured
  interarrival jitter (RFC 3550 estimator) between `min_delay_ms` and `max_delay_ms`;
- a missing packet is concealed and the clock moves on, so later packets still play on
  time; packets that arrive after their slot are dropped and counted as late. A decoder
  with its own concealment (libopus) is asked for it, and when the packet after the gap
  is already here and carries in-band FEC, the lost slot is decoded from that instead;
  any other codec's audio goes through pitch-period waveform substitution (plc.py);
- the depth follows the target by time-scaling decoded audio (timescale.py): whole
  pitch periods inserted when too shallow, removed when too deep, any amount of a quiet
  stretch; a lost slot waiting in the buffer is the first thing given up when too deep;
- when the buffer runs dry the clock stalls (concealment fills in) — a delay spike then
  raises the delay instead of losing the late packets; a gap that arrives later is
  credited with the stalled time;
- depth over the high-water mark (clock drift, a burst after a stall) is trimmed back to
  the target by skipping the oldest audio, so delay never grows without bound.
"""

from __future__ import annotations

import heapq

import numpy as np

from .codecs import Decoder
from .plc import WaveformConcealer
from .timescale import compress, expand
from .waveform import lag_range

_INT16 = np.dtype("<i2")
_MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000


MAX_PACKETS = 256
"""Packets held at most (5 s of 20 ms audio): far above any sane depth, a hard memory cap."""

NATIVE_PLC_MS = 100
"""A decoder's own concealment is used this long into a loss, then silence (libopus
fades into comfort noise; a far end that has gone quiet should sound quiet)."""

SPLICE_PULLS = 2
"""Pulls (20 ms each) between two splices of loud audio: at most one pitch period per
40 ms, so adapting the delay never sounds hurried; quiet audio may be cut every pull."""

ADAPT_AFTER = 3
"""Pulls the depth must stay off target before time-scaling starts: a lost packet makes
the buffer look a frame short until the next one arrives, which is no reason to stretch."""

FORCE_AFTER = 10
"""Frames a needed splice may be refused (no repetition, not quiet) before it is made
anyway at the best match: the depth must follow the target eventually."""


class PlayoutBuffer:
    """Reorders, de-jitters, conceals and decodes one RTP stream's audio."""

    def __init__(self, decoder: Decoder, clock_rate: int, *, frame_ms: int = 20,
                 min_delay_ms: int = 40, max_delay_ms: int = 300) -> None:
        self.decoder = decoder
        self.clock_rate = clock_rate
        self.audio_rate = decoder.audio_rate
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self._default_frame_ticks = clock_rate * frame_ms // 1000
        # counters
        self.concealed_frames = 0   # slots filled by concealment
        self.fec_recovered = 0      # slots decoded from the next packet's in-band FEC
        self.late_dropped = 0
        self.overflow_dropped = 0
        self.duplicates = 0
        self.decode_errors = 0
        self.expansions = 0         # splices that lengthened the audio
        self.compressions = 0       # splices that shortened it (or lost slots given up)
        self.reset()

    def reset(self, decoder: Decoder | None = None) -> None:
        """Forget the stream (new SSRC, new codec): empty buffer, prebuffer again."""
        if decoder is not None:
            self.decoder = decoder
            self.audio_rate = decoder.audio_rate
        self._ratio = self.audio_rate / self.clock_rate  # audio samples per RTP tick
        self._heap: list[int] = []
        self._max_ext = 0  # highest timestamp in the heap (valid while it is not empty)
        self._payloads: dict[int, bytes] = {}
        self._last_ext: int | None = None
        self._next_ts: int | None = None
        self._playing = False
        self._pcm = bytearray()
        # a decoder with its own concealment (conceal/recover) needs no waveform substitution
        self._native = callable(getattr(self.decoder, "conceal", None))
        self._plc = None if self._native else WaveformConcealer(self.audio_rate)
        self._two_periods = 2 * lag_range(self.audio_rate)[1]  # the longest, in samples
        self._recent: tuple[np.ndarray, ...] = ()  # the last audio handed on; () after a loss
        self._conceal_run = 0
        self._stalled = 0
        self._want = 0              # samples to add (>0) or take out (<0) by time-scaling
        self._off_target = 0        # pulls in a row the depth was short (>0) or over (<0)
        self._since_splice = SPLICE_PULLS
        self._refused = 0
        self._frame_ticks = self._default_frame_ticks
        self._prev_arrival: float | None = None
        self._prev_ts = 0
        self.jitter_ms = 0.0

    # ------------------------------------------------------------------ input
    def _unwrap(self, ts: int) -> int:
        if self._last_ext is None:
            self._last_ext = ts
            return ts
        ref = self._last_ext
        delta = ((ts - (ref & _MASK32) + _HALF32) & _MASK32) - _HALF32
        ext = ref + delta
        if ext > ref:
            self._last_ext = ext
        return ext

    def push(self, timestamp: int, payload: bytes, now: float, marker: bool = False) -> None:
        """Add one received packet (arrival time `now` in seconds, any monotonic clock)."""
        ext = self._unwrap(timestamp)
        # interarrival jitter, RFC 3550 §6.4.1, in ms (not across timestamp jumps)
        if self._prev_arrival is not None and abs(ext - self._prev_ts) < 2 * self.clock_rate:
            d = (now - self._prev_arrival) * 1000.0 - (ext - self._prev_ts) * 1000.0 / self.clock_rate
            self.jitter_ms += (min(abs(d), 1000.0) - self.jitter_ms) / 16.0
        self._prev_arrival, self._prev_ts = now, ext
        if self._next_ts is not None:
            jump = ext - self._next_ts
            if abs(jump) > 2 * self.clock_rate:  # a timestamp jump (new talk spurt, bug): resync
                self._heap.clear()
                self._payloads.clear()
                self._next_ts = None
                self._playing = False
                self._discontinuity()
            elif self._playing and jump < 0:
                self.late_dropped += 1
                return
        if ext in self._payloads:
            self.duplicates += 1
            return
        if len(self._payloads) >= MAX_PACKETS:
            # a flood of distinct timestamps (hostile or broken sender) must not grow memory
            self.overflow_dropped += 1
            return
        self._payloads[ext] = payload
        heapq.heappush(self._heap, ext)
        if len(self._heap) == 1 or ext > self._max_ext:
            self._max_ext = ext
        if self._next_ts is None or (not self._playing and ext < self._next_ts):
            self._next_ts = ext

    # ------------------------------------------------------------------ state
    @property
    def target_ms(self) -> float:
        frame_ms = self._frame_ticks * 1000.0 / self.clock_rate
        want = frame_ms + max(20.0, 3.0 * self.jitter_ms)
        return max(self.min_delay_ms, min(want, self.max_delay_ms))

    @property
    def depth_ms(self) -> float:
        """Audio buffered ahead of the playout point (packets + decoded samples)."""
        queued = 0
        if self._heap and self._next_ts is not None:
            queued = max(0, self._max_ext + self._frame_ticks - self._next_ts)
        return queued * 1000.0 / self.clock_rate + len(self._pcm) * 500.0 / self.audio_rate

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def output_delay(self) -> int:
        """Samples the audio runs behind its timestamps (the waveform concealer's
        look-back; none with a decoder's own concealment)."""
        return self._plc.delay if self._plc is not None else 0

    # ------------------------------------------------------------------ output
    def pull(self, samples: int) -> bytes:
        """Exactly `samples` 16-bit mono samples at the decoder's audio rate."""
        need = samples * 2
        if not self._playing:
            if not self._heap or self.depth_ms < self.target_ms:
                return bytes(need)
            self._playing = True
            self._next_ts = self._heap[0]
            self._stalled = 0
            self._trim()
        else:
            self._trim()
            self._adapt()
        guard = 0
        while len(self._pcm) < need and guard < 64:
            guard += 1
            self._produce()
        out = bytes(self._pcm[:need])
        del self._pcm[:need]
        if len(out) < need:
            out += bytes(need - len(out))
        return out

    def _trim(self) -> None:
        """Skip the oldest audio when the depth exceeds the high-water mark."""
        target = self.target_ms
        high = min(self.max_delay_ms, target * 2 + 40)
        if self.depth_ms <= high:
            return
        while self._heap and self.depth_ms > target:
            first = self._heap[0]
            if first > self._next_ts:  # skip a lost stretch before dropping real audio
                excess = int((self.depth_ms - target) * self.clock_rate / 1000) + 1
                self._next_ts += min(first - self._next_ts, excess)
                continue
            heapq.heappop(self._heap)
            self._payloads.pop(first, None)
            self.overflow_dropped += 1
            self._next_ts = self._heap[0] if self._heap else first + self._frame_ticks
        if len(self._pcm) and self.depth_ms > target:
            self._pcm.clear()
        self._discontinuity()

    def _adapt(self) -> None:
        """Decide how much time-scaling the next decoded audio gets: enough to bring the
        depth back to the target, when it is a frame short or two frames over. Too deep
        with a lost slot waiting, that slot is given up first (a concealment saved)."""
        self._since_splice += 1
        frame_ms = self._frame_ticks * 1000.0 / self.clock_rate
        depth, target = self.depth_ms, self.target_ms
        self._want = 0
        if depth + frame_ms <= target:
            self._off_target = max(1, self._off_target + 1)
        elif depth > target + 2 * frame_ms:
            self._off_target = min(-1, self._off_target - 1)
        else:
            self._off_target = 0
        if self._off_target >= ADAPT_AFTER and self._heap and not self._conceal_run:
            # only with audio in hand and after real audio: never stretch a concealment
            self._want = round((target - depth) * self.audio_rate / 1000)
        elif self._off_target <= -ADAPT_AFTER and self._heap and self._next_ts is not None:
            first, nxt = self._heap[0], self._next_ts
            if first > nxt and self._plc is not None:
                self._next_ts = nxt + min(self._frame_ticks, first - nxt)
                self.compressions += 1
                self._discontinuity()
                return
            self._want = -round((depth - target) * self.audio_rate / 1000)
        if not self._want:
            self._refused = 0

    def _produce(self) -> None:
        """Append the next frame of audio: decoded, recovered from FEC, or concealed."""
        nxt = self._next_ts
        assert nxt is not None
        while self._heap and self._heap[0] < nxt:  # stale entries
            self._payloads.pop(heapq.heappop(self._heap), None)
        if not self._heap:
            # dry: stall the clock and conceal; give up (prebuffer again) after ~1 s
            self._lose(self._frame_ticks)
            self._stalled += self._frame_ticks
            if self._stalled > self.clock_rate:
                self._playing = False
            return
        first = self._heap[0]
        if first > nxt and self._stalled:
            credit = min(self._stalled, first - nxt)
            nxt += credit
        self._stalled = 0
        if first > nxt:  # lost packet(s): conceal up to one frame and move on
            ticks = min(self._frame_ticks, first - nxt)
            # the slot just before a packet that is here: try that packet's FEC
            if first - nxt > self._frame_ticks or not self._recover(first, ticks):
                self._lose(ticks)
            self._next_ts = nxt + ticks
            return
        x = self._decode()
        if x is None:
            self._lose(self._frame_ticks)
            return
        if self._want < 0 and len(x) < self._two_periods and self._heap \
                and self._heap[0] == self._next_ts:
            # compressing needs two pitch periods in hand: decode the next packet too
            more = self._decode()
            if more is None:
                self._emit(self._scale(x))
                self._lose(self._frame_ticks)
                return
            x = np.concatenate((x, more))
        self._emit(self._scale(x) if self._want else x)

    def _decode(self) -> np.ndarray | None:
        """Decode the first packet (due now) and move the clock past it."""
        first = heapq.heappop(self._heap)
        payload = self._payloads.pop(first)
        try:
            pcm = self.decoder.decode(payload)
        except Exception:  # noqa: BLE001 - a corrupt payload must not kill playout
            self.decode_errors += 1
            pcm = b""
        if not pcm:
            self._next_ts = first + self._frame_ticks
            return None
        ticks = max(1, round(len(pcm) / 2 / self._ratio))
        self._frame_ticks = ticks
        self._next_ts = first + ticks
        return np.frombuffer(pcm, dtype="<i2")

    def _recover(self, first: int, ticks: int) -> bool:
        """Decode the lost slot before packet `first` from the FEC that packet carries."""
        recover = getattr(self.decoder, "recover", None)
        if recover is None:
            return False
        try:
            pcm = recover(self._payloads[first], round(ticks * self._ratio))
        except Exception:  # noqa: BLE001 - a corrupt payload is concealed instead
            return False
        if not pcm:
            return False
        self.fec_recovered += 1
        self._emit(np.frombuffer(pcm, dtype="<i2"))
        return True

    def _scale(self, x: np.ndarray) -> np.ndarray:
        """`x` time-scaled by `_want` samples when a splice fits (see timescale.py)."""
        want = self._want
        quiet_only = self._since_splice < SPLICE_PULLS
        force = self._refused >= FORCE_AFTER and not quiet_only
        if want > 0:
            y = None if not self._recent else expand(
                np.concatenate(self._recent), x, self.audio_rate, want,
                quiet_only=quiet_only, force=force)
        else:
            y = compress(x, self.audio_rate, -want, quiet_only=quiet_only, force=force)
        if y is None:
            self._refused += 1
            return x
        self._refused = 0
        self._want = 0
        self._since_splice = 0
        if want > 0:
            self.expansions += 1
        else:
            self.compressions += 1
        return y

    def _emit(self, x: np.ndarray) -> None:
        """Hand on good audio (decoded, recovered or time-scaled)."""
        self._conceal_run = 0
        if x.dtype != _INT16:
            x = np.clip(np.rint(x), -32768, 32767).astype(_INT16)
        self._recent = (self._recent[-1], x) if self._recent else (x,)
        if self._plc is not None:
            x = self._plc.good(x)
        self._pcm += x.tobytes()

    def _lose(self, ticks: int) -> None:
        """Fill a slot whose audio did not come."""
        samples = max(1, round(ticks * self._ratio))
        self.concealed_frames += 1
        self._conceal_run += 1
        self._recent = ()
        if self._plc is not None:
            self._pcm += self._plc.lost(samples).tobytes()
            return
        pcm = b""
        if self._conceal_run * ticks * 1000 <= NATIVE_PLC_MS * self.clock_rate:
            try:
                pcm = self.decoder.conceal(samples)
            except Exception:  # noqa: BLE001 - silence rather than no playout
                self.decode_errors += 1
        self._pcm += pcm[:samples * 2].ljust(samples * 2, b"\0")

    def _discontinuity(self) -> None:
        """Audio was skipped: the next good audio is blended in, never spliced onto."""
        self._recent = ()
        if self._plc is not None:
            self._plc.splice()
