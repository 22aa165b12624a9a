"""Waveform matching shared by loss concealment (which repeats the last pitch period)
and time-scaling (which inserts or removes whole periods): the lag of best normalised
cross-correlation, and the overlap-add that hides a splice.

Speech pitch lies between ~66 and 200 Hz for the search range ITU-T G.711 Appendix I
uses (5..15 ms lags); higher voices match at a multiple of their period, which repeats
just as well.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PITCH_MIN_MS = 5.0
PITCH_MAX_MS = 15.0


def lag_range(rate: int) -> tuple[int, int]:
    """(shortest, longest) pitch lag in samples at `rate`."""
    return int(rate * PITCH_MIN_MS / 1000), int(rate * PITCH_MAX_MS / 1000)


def best_lag(x: np.ndarray, at: int, width: int, lo: int, hi: int,
             floor: float = 1.0) -> tuple[int, float]:
    """The lag in [lo, hi] whose window `x[at-lag : at-lag+width]` best matches
    `x[at : at+width]`, and that match's normalised correlation (-1..1).

    Ties go to the shortest lag. `floor` (mean square per sample) keeps near-silence
    from producing large correlations out of rounding noise.
    """
    if lo > hi or at - hi < 0 or at + width > len(x) or width <= 0:
        raise ValueError(f"best_lag: no room for lags {lo}..{hi} at {at} (+{width}) in {len(x)}")
    x = np.asarray(x, dtype=np.float64)
    target = x[at:at + width]
    # rows: candidate windows starting at at-hi … at-lo, i.e. lags hi … lo
    windows = sliding_window_view(x[at - hi:at - lo + width], width)
    num = windows @ target
    sq = np.concatenate(([0.0], np.cumsum(x[at - hi:at - lo + width] ** 2)))
    energy = sq[width:] - sq[:-width]
    min_energy = floor * width
    denom = np.sqrt(np.maximum(energy, min_energy) * max(float(target @ target), min_energy))
    corr = num / denom
    best = len(corr) - 1 - int(np.argmax(corr[::-1]))  # the last row with the maximum
    return hi - best, float(corr[best])


def crossfade(old: np.ndarray, new: np.ndarray, start: int = 0, length: int | None = None,
              old_gain: float = 1.0) -> np.ndarray:
    """Triangular overlap-add from `old` into `new`: samples `start`… of a fade over
    `length` (default len(new)), new weighted (i+1)/length as in G.711 Appendix I."""
    length = len(new) if length is None else length
    w = (np.arange(start, start + len(new)) + 1.0) / length
    return old * (1.0 - w) * old_gain + new * w
