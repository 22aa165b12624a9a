"""A sine tone source (tests, benchmarks, a ring-back stand-in)."""

from __future__ import annotations

import math

import numpy as np

from .base import Metered


class ToneSource(Metered):
    """A continuous sine; one cycle-aligned table per rate so reads are slices."""

    def __init__(self, freq_hz: float = 440.0, level_dbfs: float = -12.0) -> None:
        self.freq_hz = freq_hz
        self.amplitude = 32767 * 10 ** (level_dbfs / 20) * math.sqrt(2)  # RMS level
        self.amplitude = min(self.amplitude, 32767.0)
        self._tables: dict[int, np.ndarray] = {}
        self._pos: dict[int, int] = {}

    def _table(self, rate: int) -> np.ndarray:
        t = self._tables.get(rate)
        if t is None:
            # one second holds a whole number of cycles for integral frequencies;
            # otherwise the wrap is a tiny phase step once a second
            n = np.arange(rate)
            t = (self.amplitude * np.sin(2 * np.pi * self.freq_hz * n / rate)).astype("<i2")
            self._tables[rate] = t
            self._pos[rate] = 0
        return t

    def read(self, samples: int, rate: int) -> bytes:
        t = self._table(rate)
        pos = self._pos[rate]
        end = pos + samples
        if end <= len(t):
            out = t[pos:end].tobytes()
        else:
            idx = np.arange(pos, end) % len(t)
            out = t[idx].tobytes()
        self._pos[rate] = end % len(t)
        self._last = out
        return out
