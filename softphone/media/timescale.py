"""Time-scaling of decoded audio, so the playout buffer can grow or shrink its delay
without repeating or dropping whole frames.

The principle is WSOLA's: splice where the waveform repeats itself, and overlap-add
across the splice. A voiced stretch repeats with its pitch period, so whole periods are
inserted or removed (the pitch is kept, only the duration changes); a quiet stretch may
lose or gain any amount; a loud stretch that does not repeat (a fricative, a plosive)
is left alone unless the caller insists. The first sample of the result follows the
audio played before, and its last sample is the frame's own last, so neither seam moves.
"""

from __future__ import annotations

import numpy as np

from .waveform import best_lag, crossfade, lag_range

QUIET_RMS = 150.0  # ~-47 dBFS: below this anything may be cut or repeated
MIN_CORR = 0.85    # normalised correlation that counts as "repeats with this period"


def _rms(*parts: np.ndarray) -> float:
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def _periods(z: np.ndarray, at: int, room: int, rate: int, want: int,
             force: bool, up: bool) -> int | None:
    """Samples to splice: whole pitch periods (found at `at` in `z`, at most `room`),
    at least `want` when `up` (a buffer that must grow enough to catch the late
    packets), else at most `want` (one that shrinks must not fall short of its target)
    unless forced; None when the audio does not repeat or no whole period fits."""
    lo, hi = lag_range(rate)
    hi = min(hi, room)
    if hi < lo:
        return None
    width = min(len(z) - at, 2 * hi)
    period, corr = best_lag(z, at, width, lo, hi)
    if corr < MIN_CORR and not force:
        return None
    k = -(-want // period) if up else max(want // period, int(force))
    k = min(k, room // period)
    return k * period if k > 0 else None


def expand(history: np.ndarray, x: np.ndarray, rate: int, want: int, *,
           quiet_only: bool = False, force: bool = False) -> np.ndarray | None:
    """`x` lengthened by `want` samples or somewhat more (whole periods), inserted at
    its start; `history` is the audio played just before it. None when no splice fits."""
    room = min(len(history), len(x))
    length = max(1, min(want, room))
    if room and _rms(history[-length:], x[:length]) < QUIET_RMS:
        splice = length
    elif quiet_only:
        return None
    else:
        hi = min(lag_range(rate)[1], room)
        z = np.concatenate((np.asarray(history[len(history) - hi:], dtype=np.float64),
                            np.asarray(x, dtype=np.float64)))
        splice = _periods(z, hi, room, rate, want, force, up=True)
        if splice is None:
            return None
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(history[len(history) - splice:], dtype=np.float64)
    # runs from x's start (the natural sequel of history) into history's last stretch,
    # whose natural sequel is x's start again
    return np.concatenate((crossfade(x[:splice], h), x))


def compress(x: np.ndarray, rate: int, want: int, *, quiet_only: bool = False,
             force: bool = False) -> np.ndarray | None:
    """`x` shortened by `want` samples or somewhat less (whole periods), taken out near
    its start. None when no splice fits."""
    room = len(x) // 2
    length = max(1, min(want, room))
    if room and _rms(x[:2 * length]) < QUIET_RMS:
        splice = length
    elif quiet_only:
        return None
    else:
        hi = min(lag_range(rate)[1], room)
        splice = _periods(np.asarray(x, dtype=np.float64), hi, room, rate, want, force,
                          up=False)
        if splice is None:
            return None
    x = np.asarray(x, dtype=np.float64)
    # runs from x's start into the stretch one splice later, then carries on from there
    return np.concatenate((crossfade(x[:splice], x[splice:2 * splice]), x[2 * splice:]))
