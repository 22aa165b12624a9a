"""Adaptive playout buffer keyed on RTP timestamps, with a playout clock.

aiortc's JitterBuffer is arrival-driven and stalls on loss; this one is pulled by the
sink's clock (every 20 ms) and always hands back exactly the audio asked for:

- packets are ordered by (unwrapped) RTP timestamp, so reordering is absorbed and
  duplicates are dropped;
- playback starts once `target` ms are buffered; the target follows the measured
  interarrival jitter (RFC 3550 estimator) between `min_delay_ms` and `max_delay_ms`;
- a missing packet is concealed (repeat the last frame, fading out) and the clock moves
  on, so later packets still play on time; packets that arrive after their slot are
  dropped and counted as late;
- the depth follows the target: at most every 200 ms one frame is stretched (repeated)
  when too shallow, or skipped (a lost slot if there is one) when too deep;
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

_MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000


MAX_PACKETS = 256
"""Packets held at most (5 s of 20 ms audio): far above any sane depth, a hard memory cap."""


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
        self.concealed_frames = 0
        self.late_dropped = 0
        self.overflow_dropped = 0
        self.duplicates = 0
        self.decode_errors = 0
        self.stretched_frames = 0
        self.skipped_frames = 0
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
        self._last_frame: np.ndarray | None = None
        self._conceal_run = 0
        self._stalled = 0
        self._pulls_since_adapt = 0
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

    def _adapt(self) -> None:
        """Nudge the depth towards the target by one frame at most every 200 ms:
        stretch (repeat a frame) when too shallow, skip a frame when too deep —
        preferably a slot that was lost anyway."""
        self._pulls_since_adapt += 1
        if self._pulls_since_adapt < 10:
            return
        frame_ms = self._frame_ticks * 1000.0 / self.clock_rate
        depth, target = self.depth_ms, self.target_ms
        if depth + frame_ms <= target and self._heap and not self._conceal_run:
            # only with audio in hand: stretching while dry would replay the last frame
            # at full volume every 200 ms after the fade (stale blips when the far end
            # stops sending, e.g. before its BYE arrives or while it holds us)
            self._pulls_since_adapt = 0
            self.stretched_frames += 1
            run = self._conceal_run
            self._conceal_run = 0
            self._conceal(self._frame_ticks)
            self.concealed_frames -= 1  # a stretch is not a loss
            self._conceal_run = run
        elif depth > target + 2 * frame_ms and self._heap and self._next_ts is not None:
            self._pulls_since_adapt = 0
            self.skipped_frames += 1
            first, nxt = self._heap[0], self._next_ts
            if first > nxt:
                self._next_ts = nxt + min(self._frame_ticks, first - nxt)
            else:
                heapq.heappop(self._heap)
                self._payloads.pop(first, None)
                self._next_ts = first + self._frame_ticks

    def _produce(self) -> None:
        """Append the next frame of audio: decoded, or concealed."""
        nxt = self._next_ts
        assert nxt is not None
        while self._heap and self._heap[0] < nxt:  # stale entries
            self._payloads.pop(heapq.heappop(self._heap), None)
        if not self._heap:
            # dry: stall the clock and conceal; give up (prebuffer again) after ~1 s
            self._conceal(self._frame_ticks)
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
            self._conceal(ticks)
            self._next_ts = nxt + ticks
            return
        heapq.heappop(self._heap)
        payload = self._payloads.pop(first)
        try:
            pcm = self.decoder.decode(payload)
        except Exception:  # noqa: BLE001 - a corrupt payload must not kill playout
            self.decode_errors += 1
            pcm = b""
        if not pcm:
            self._conceal(self._frame_ticks)
            self._next_ts = first + self._frame_ticks
            return
        ticks = max(1, round(len(pcm) / 2 / self._ratio))
        self._frame_ticks = ticks
        self._next_ts = first + ticks
        self._pcm += pcm
        self._last_frame = np.frombuffer(pcm, dtype="<i2")
        self._conceal_run = 0

    def _conceal(self, ticks: int) -> None:
        samples = max(1, round(ticks * self._ratio))
        self.concealed_frames += 1
        last = self._last_frame
        gain = 0.7 ** self._conceal_run
        self._conceal_run += 1
        if last is None or gain < 0.2:
            self._pcm += bytes(samples * 2)
            return
        reps = -(-samples // len(last))
        frame = np.tile(last, reps)[:samples]
        self._pcm += (frame * gain).astype("<i2").tobytes()
