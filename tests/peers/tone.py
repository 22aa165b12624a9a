"""Test signals and their analysis: write a tone WAV, find the tone and the gaps in a recording."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def write_tone(path: Path, freq_hz: float, seconds: float = 3.0, rate: int = 8000,
               level_dbfs: float = -12.0, channels: int = 1) -> Path:
    """A 16-bit sine WAV (the same signal on every channel)."""
    n = int(seconds * rate)
    amp = 32767 * 10 ** (level_dbfs / 20)
    samples = (amp * np.sin(2 * np.pi * freq_hz * np.arange(n) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).tobytes())
    return path


@dataclass
class ToneReport:
    rate: int
    seconds: float
    active_seconds: float   # from the first to the last window with signal
    freq_hz: float          # dominant frequency over the active part
    rms_dbfs: float         # level over the active part
    longest_gap_ms: float   # longest run of near-silence inside the active part

    def has_tone(self, freq_hz: float, tolerance_hz: float = 15.0, min_dbfs: float = -40.0) -> bool:
        return abs(self.freq_hz - freq_hz) <= tolerance_hz and self.rms_dbfs >= min_dbfs


def analyse(path: Path, window_ms: float = 5.0, silence_dbfs: float = -45.0) -> ToneReport:
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    samples = data[::channels].astype(np.float64) / 32768.0
    win = max(1, int(rate * window_ms / 1000))
    n = len(samples) // win
    if n == 0:
        return ToneReport(rate, 0.0, 0.0, 0.0, -120.0, 0.0)
    windows = samples[: n * win].reshape(n, win)
    level = 20 * np.log10(np.sqrt((windows ** 2).mean(axis=1)) + 1e-12)
    loud = np.flatnonzero(level > silence_dbfs)
    if len(loud) == 0:
        return ToneReport(rate, len(samples) / rate, 0.0, 0.0, -120.0, 0.0)
    first, last = loud[0], loud[-1]
    active = samples[first * win: (last + 1) * win]
    spectrum = np.abs(np.fft.rfft(active * np.hanning(len(active))))
    freq = float(np.argmax(spectrum[1:]) + 1) * rate / len(active)
    rms = 20 * np.log10(np.sqrt((active ** 2).mean()) + 1e-12)
    quiet = level[first: last + 1] <= silence_dbfs
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return ToneReport(rate, len(samples) / rate, len(active) / rate, freq, float(rms),
                      longest * window_ms)
