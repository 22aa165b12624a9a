"""Packet loss concealment by pitch-period waveform substitution (ITU-T G.711 Appendix I),
for codecs that have none of their own (G.711, G.722, and Opus without libopus).

It works on decoded 16-bit PCM at the codec's audio rate; every constant of the
Appendix (defined at 8 kHz) scales with the rate. What it does, as the Appendix does:

- the output runs a quarter of the longest pitch period (3.75 ms) behind its input, so
  that when a loss starts, the last quarter period not yet played can be overlap-added
  into the repetition (no seam where the real signal stops);
- the pitch is the lag (5..15 ms) of best normalised correlation of the last 20 ms with
  the history; the loss is filled by repeating the last period, then the last two
  periods after 10 ms and the last three after 20 ms (cross-faded at each change), so a
  long loss does not buzz on one period;
- from 10 ms on it fades linearly by 20 % per 10 ms: silence after 60 ms;
- the first good audio after a loss is overlap-added with the continuation of the
  repetition, over a longer stretch the longer the loss (3.75 ms + 4 ms per 10 ms lost,
  at most 10 ms), at the gain the fade had reached.

`splice()` marks a discontinuity that is not a loss (audio skipped to cut the delay):
the next good audio is blended in from the repetition the same way.
"""

from __future__ import annotations

import numpy as np

from .waveform import best_lag, crossfade, lag_range

_FADE_PER_10MS = 0.2     # attenuation per 10 ms after the first 10 ms
_END_OVERLAP_STEP_MS = 4  # end overlap grows by this per 10 ms lost
_MIN_POWER = 3.0         # mean square floor of the pitch search (Appendix I: 250 per 80)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2")


class WaveformConcealer:
    """Feeds decoded audio through (delayed), and fills losses with its waveform."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lo, self._hi = lag_range(rate)
        self.delay = self._hi // 4                  # samples the output runs behind
        self._unit = rate // 100                    # 10 ms: the step of fades and periods
        self._corr_len = rate // 50                 # 20 ms matched in the pitch search
        # the input so far (three longest periods and the delayed tail)
        self._hist = np.zeros(3 * self._hi + self.delay, dtype="<i2")
        self._erased = 0        # samples concealed in the current loss (0: none)
        self._blend = False     # the next good audio does not continue the last
        self._pitch = self._lo
        self._overlap = 1
        self._pbuf = np.zeros(0)
        self._periods = 1
        self._offset = 0
        self._lastq = np.zeros(0)
        self._fade_from: np.ndarray | None = None  # old repetition, fading out
        self._fade_at = 0

    # ------------------------------------------------------------------ interface
    def good(self, pcm: np.ndarray) -> np.ndarray:
        """Audio that arrived (int16): returned `delay` samples later."""
        x = np.asarray(pcm, dtype="<i2")
        if self._erased or self._blend:
            if not self._erased:
                self._begin()
            lost_units = -(-self._erased // self._unit)
            olen = self._overlap + max(0, lost_units - 1) * self.rate * _END_OVERLAP_STEP_MS // 1000
            olen = min(olen, self._unit, len(x))
            if olen:
                x = x.copy()
                gain = float(self._gains(self._erased, 1)[0])  # where the fade had got to
                x[:olen] = _int16(crossfade(self._render(olen), x[:olen], old_gain=gain))
            self._erased = 0
            self._blend = False
            self._fade_from = None
        return self._push(x)

    def lost(self, samples: int) -> np.ndarray:
        """`samples` of concealment for audio that did not arrive."""
        out = np.zeros(samples)
        unit = self._unit
        done = 0
        while done < samples:
            t = self._erased
            if t >= 6 * unit:  # faded out: silence for the rest
                self._erased += samples - done
                break
            if t == 0:
                self._begin()
            elif t in (unit, 2 * unit) and self._periods <= t // unit:
                self._add_period()
            end = unit if t < unit else 2 * unit if t < 2 * unit else 6 * unit
            n = min(samples - done, end - t)
            out[done:done + n] = self._render(n) * self._gains(t, n)
            self._erased += n
            done += n
        return self._push(_int16(out))

    def splice(self) -> None:
        """The next good audio does not follow the last (audio was skipped)."""
        self._blend = True

    # ------------------------------------------------------------------ internals
    def _push(self, x: np.ndarray) -> np.ndarray:
        """Append input, return as many samples of delayed output (int16 both)."""
        hist = self._hist
        stream = np.concatenate((hist, x))
        start = len(hist) - self.delay
        self._hist = stream[-len(hist):]
        return stream[start:start + len(x)]

    def _gains(self, t: int, n: int) -> np.ndarray:
        """The fade for loss samples t … t+n-1: 1 for 10 ms, then 20 % less per 10 ms."""
        unit = self._unit
        ts = np.arange(t, t + n)
        return np.clip(1.0 - _FADE_PER_10MS * (ts - unit) / unit, 0.0, 1.0)

    def _begin(self) -> None:
        """Start repeating: find the pitch, make the not yet played tail lead into the
        period before it."""
        h = self._hist.astype(np.float64)
        at = len(h) - self._corr_len
        self._pitch, _ = best_lag(h, at, self._corr_len, self._lo, self._hi, _MIN_POWER)
        self._overlap = max(1, self._pitch // 4)
        self._pbuf = h
        self._lastq = self._pbuf[-self._overlap:].copy()
        self._periods = 1
        self._offset = 0
        self._fade_from = None
        self._tie_tail()
        self._hist[-self._overlap:] = _int16(self._pbuf[-self._overlap:])

    def _tie_tail(self) -> None:
        """Overlap-add the buffer's original tail into the samples just before the
        repeated stretch, so the repetition wraps around without a seam."""
        ov, span = self._overlap, self._periods * self._pitch
        before = self._pbuf[len(self._pbuf) - span - ov:len(self._pbuf) - span]
        self._pbuf[-ov:] = crossfade(self._lastq, before)

    def _add_period(self) -> None:
        """Repeat one more period (up to three), cross-fading from the old repetition."""
        saved = self._offset
        self._fade_from = None
        self._fade_from = self._render(self._overlap)  # the old repetition goes on …
        self._fade_at = 0
        self._offset = saved
        while self._offset > self._pitch:
            self._offset -= self._pitch
        self._periods += 1
        self._tie_tail()

    def _render(self, n: int) -> np.ndarray:
        """The next `n` samples of the repetition (before fading)."""
        span = self._periods * self._pitch
        period = self._pbuf[len(self._pbuf) - span:]
        idx = (self._offset + np.arange(n)) % span
        self._offset = (self._offset + n) % span
        out = period[idx]
        if self._fade_from is not None:  # … and fades into the new one
            m = min(n, self._overlap - self._fade_at)
            out[:m] = crossfade(self._fade_from[self._fade_at:self._fade_at + m], out[:m],
                                 self._fade_at, self._overlap)
            self._fade_at += m
            if self._fade_at >= self._overlap:
                self._fade_from = None
        return out
