"""Sine tone sources: one frequency or a chord of several (ring, ringback, DTMF-like
pairs), steady or switched on and off in a cadence."""

from __future__ import annotations

import math

import numpy as np

from .base import Metered


class ToneSource(Metered):
    """A continuous sine (or the sum of several, ``freq_hz`` a tuple, sharing the level);
    one table of a second per rate so reads are slices."""

    def __init__(self, freq_hz: float | tuple[float, ...] = 440.0,
                 level_dbfs: float = -12.0) -> None:
        self.freq_hz = freq_hz
        self._freqs = tuple(freq_hz) if isinstance(freq_hz, (tuple, list)) else (freq_hz,)
        self.amplitude = 32767 * 10 ** (level_dbfs / 20) * math.sqrt(2)  # RMS level
        self.amplitude = min(self.amplitude / math.sqrt(len(self._freqs)), 32767.0)
        self._tables: dict[int, np.ndarray] = {}
        self._pos: dict[int, int] = {}

    def _table(self, rate: int) -> np.ndarray:
        t = self._tables.get(rate)
        if t is None:
            # one second holds a whole number of cycles for integral frequencies;
            # otherwise the wrap is a tiny phase step once a second
            n = np.arange(rate)
            wave = sum(np.sin(2 * np.pi * f * n / rate) for f in self._freqs)
            t = np.clip(self.amplitude * wave, -32768, 32767).astype("<i2")
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


class CadencedTone(ToneSource):
    """A tone switched on and off in a repeating ``cadence`` of (on_ms, off_ms) pairs:
    ring-back, busy, the call-waiting beeps."""

    def __init__(self, freq_hz: float | tuple[float, ...], cadence: tuple[tuple[int, int], ...],
                 level_dbfs: float = -16.0) -> None:
        super().__init__(freq_hz, level_dbfs)
        self.cadence = cadence
        self._cycle_ms = sum(on + off for on, off in cadence)
        self._elapsed: dict[int, int] = {}  # samples into the cycle, per rate

    def _mask(self, samples: int, rate: int) -> np.ndarray:
        cycle = rate * self._cycle_ms // 1000
        start = self._elapsed.get(rate, 0)
        pos = (start + np.arange(samples)) % cycle
        mask = np.zeros(samples, dtype=bool)
        at = 0
        for on, off in self.cadence:
            begin, end = at, at + rate * on // 1000
            mask |= (pos >= begin) & (pos < end)
            at = end + rate * off // 1000
        self._elapsed[rate] = (start + samples) % cycle
        return mask

    def read(self, samples: int, rate: int) -> bytes:
        tone = np.frombuffer(super().read(samples, rate), dtype="<i2")
        out = np.where(self._mask(samples, rate), tone, 0).astype("<i2").tobytes()
        self._last = out
        return out


def call_waiting_tone() -> CadencedTone:
    """440 Hz (ITU-T E.180's call-waiting frequency in North America), two short beeps
    every three seconds, quiet enough to talk over."""
    return CadencedTone(440.0, ((200, 200), (200, 2400)), level_dbfs=-18.0)
