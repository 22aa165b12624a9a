"""Adaptive playout buffer keyed on RTP timestamps, with a playout clock.

aiortc's JitterBuffer is arrival-driven and stalls on loss; this one is pulled by the
sink's clock (every 20 ms) and always hands back exactly the audio asked for:

- packets are ordered by (unwrapped) RTP timestamp, so reordering is absorbed and
  duplicates are dropped;
- playback starts once `min_delay_ms` are buffered; from then on the delay follows a
  target: the least delay at which all but ~1 % of the recent packets arrive before
  their audio is due (transit.py), between `min_delay_ms` and `max_delay_ms`. The delay
  compared with it is exact — the playout clock's time (`pull(now=)`) minus the RTP
  time of the audio it plays, against the packets' arrival time minus their RTP time —
  so neither a lost packet nor the jitter of the latest arrival makes the buffer look
  short or deep, and a steady jitter gets a steady delay;
- a missing packet is concealed and the clock moves on, so later packets still play on
  time; packets that arrive after their slot are dropped and counted as late. A decoder
  with its own concealment (libopus) is asked for it, and when the packet after the gap
  is already here and carries in-band FEC, the lost slot is decoded from that instead;
  any other codec's audio goes through pitch-period waveform substitution (plc.py);
- the delay follows the target by time-scaling decoded audio (timescale.py): short of
  it, packets would be late, so whole pitch periods (or any amount of a quiet stretch)
  are inserted at once, up to a margin above it; a whole pull over it for half a second
  (and a window that has seen the jitter), it is cut back in the pauses between words
  first and only after 3 s in voiced speech; a lost slot waiting in the buffer is the
  first thing given up;
- when the buffer runs dry the clock stalls (concealment fills in) — a delay spike then
  raises the delay instead of losing the late packets; a gap that arrives later is
  credited with the stalled time;
- depth over the high-water mark (clock drift, a burst after a stall) is trimmed back to
  the target by skipping the oldest audio, so delay never grows without bound.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from .codecs import Decoder
from .plc import WaveformConcealer
from .timescale import compress, expand
from .transit import TransitWindow
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

MARGIN_MS = 5.0
"""Delay added above the target when the buffer has to grow: room for the packets a
little slower than the window's quantile, so growing once is enough."""

SHRINK_AFTER = 25
"""Pulls (0.5 s) the delay must stay a frame over the target before it is cut: a delay
that just grew for a jitter spike is not given back at once."""

SHRINK_KNOWN = 100
"""Packets seen before the delay may shrink: a young window has not yet seen the slow
tail of the jitter, and its quantile is too low."""

SHRINK_LOUD_AFTER = 150
"""Pulls (3 s) over the target during which only quiet audio is cut: speech has pauses,
and a pause cut is inaudible; after that, whole pitch periods of voiced audio go too."""

FORCE_AFTER = 10
"""Frames a needed splice may be refused (no repetition, not quiet) before it is made
anyway at the best match: the delay must follow the target eventually."""


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
        self._over = 0              # pulls in a row the delay was a frame over the target
        self._since_splice = SPLICE_PULLS
        self._refused = 0
        self._frame_ticks = self._default_frame_ticks
        self._prev_arrival: float | None = None
        self._prev_ts = 0
        self._transits = TransitWindow(self._default_frame_ticks * 1000 / self.clock_rate)
        self._clock: float | None = None  # the playout clock at the next pull (s)
        self.jitter_ms = 0.0  # RFC 3550 interarrival jitter, for the statistics

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
        jump = 0 if self._next_ts is None else ext - self._next_ts
        if abs(jump) > 2 * self.clock_rate:  # a timestamp jump (new talk spurt, bug): resync
            self._heap.clear()
            self._payloads.clear()
            self._transits.clear()
            self._next_ts = None
            self._playing = False
            self._discontinuity()
            jump = 0
        self._transits.add(now * 1000.0 - ext * 1000.0 / self.clock_rate)
        if self._playing and jump < 0:
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
        """The least depth that plays the slow packets in time: a frame, plus how much
        later than the fastest recent packets the slow ones come."""
        want = self._frame_ms + self._transits.spread
        return max(self.min_delay_ms, min(want, self.max_delay_ms))

    @property
    def _frame_ms(self) -> float:
        return self._frame_ticks * 1000.0 / self.clock_rate

    def _delay_ms(self, now: float, samples: int) -> tuple[float, float]:
        """(The delay in the target's terms, exact; decoded audio held beyond whole
        pulls, ms) at a pull of `samples` at `now`.

        The packet due next is needed at this pull unless whole pulls of decoded audio
        are in hand, so it is in time while its transit stays within `offset`; audio
        held beyond whole pulls delays the sound but buys packets no time. The delay is
        that offset above the fastest recent transit, plus a frame (as the depth counts
        the frame in hand)."""
        held = len(self._pcm) // 2
        whole = held - held % samples
        offset = (now - self._next_ts / self.clock_rate + whole / self.audio_rate) * 1000.0
        fastest = self._transits.high - self._transits.spread
        return offset - fastest + self._frame_ms, (held - whole) * 1000.0 / self.audio_rate

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
    def pull(self, samples: int, now: float | None = None) -> bytes:
        """Exactly `samples` 16-bit mono samples at the decoder's audio rate, to be
        played at `now` (the clock `push` is given; default: the last pull's time plus
        its length, from the arrival that started playback)."""
        need = samples * 2
        if not self._playing:
            if not self._heap or self.depth_ms < self.min_delay_ms:
                return bytes(need)
            self._playing = True
            self._clock = None
            self._next_ts = self._heap[0]
            self._stalled = 0
            self._trim()
        else:
            self._trim()
        if now is None:
            now = self._prev_arrival if self._clock is None else self._clock
        self._clock = now + samples / self.audio_rate
        self._adapt(now, samples)
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

    def _adapt(self, now: float, samples: int) -> None:
        """Decide how much time-scaling the next decoded audio gets. Short of the target,
        packets would be late: grow at once, by whole pulls. A whole pull or more over
        it for `SHRINK_AFTER` pulls: shrink by those pulls (a lost slot waiting is given
        up first: a concealment saved). Audio held beyond whole pulls is cut whenever a
        quiet stretch allows."""
        self._since_splice += 1
        self._want = 0
        if self._next_ts is None:
            return
        delay, residual = self._delay_ms(now, samples)
        error = delay - self.target_ms  # > 0: longer than needed; < 0: too short
        pull_ms = samples * 1000.0 / self.audio_rate
        if error < -0.5:  # (not rounding noise)
            self._over = 0
            if self._heap and not self._conceal_run:
                # only with audio in hand and after real audio: never stretch a concealment
                grow = pull_ms * math.ceil((MARGIN_MS - error) / pull_ms) - residual
                self._want = round(grow * self.audio_rate / 1000)
        else:
            spare = pull_ms * (error // pull_ms) if error >= pull_ms else 0.0
            self._over = self._over + 1 if spare else 0
            if self._over < SHRINK_AFTER or len(self._transits) < SHRINK_KNOWN:
                spare = 0.0
            first, nxt = (self._heap[0], self._next_ts) if self._heap else (0, 0)
            if spare >= self._frame_ms and first > nxt and self._plc is not None:
                self._next_ts = nxt + min(self._frame_ticks, first - nxt)
                self.compressions += 1
                self._discontinuity()
                return
            cut = residual + spare
            if cut >= 1.0 and self._heap:
                self._want = -round(cut * self.audio_rate / 1000)
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
        if self._want < 0 and len(x) < self._two_periods and not self._quiet_only() \
                and self._heap and self._heap[0] == self._next_ts:
            # cutting periods needs two of them in hand: decode the next packet too
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

    def _quiet_only(self) -> bool:
        """Whether the splice wanted may only cut or repeat quiet audio: right after
        another splice, and when shrinking, until the delay has been long for a while."""
        return self._since_splice < SPLICE_PULLS or \
            (self._want < 0 and self._over < SHRINK_LOUD_AFTER)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        """`x` time-scaled by `_want` samples when a splice fits (see timescale.py)."""
        want = self._want
        quiet_only = self._quiet_only()
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
