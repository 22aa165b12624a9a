"""What arrives in a call, judged: steady tones, speech-like sound, silence.

Received audio comes in as the playout hands it to the speaker (16-bit mono PCM, 20 ms at
a time). Each 20 ms frame is summarised once — its level, and over the last 64 ms the
strongest frequency and how much of the energy sits at it — and the expectations read
those summaries. Analysis is lazy: a frame is summarised only when a step asks, so a call
that expects nothing pays nothing.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

__all__ = ["Frame", "AudioMonitor", "Analyser", "ToneVerdict", "judge_tone", "judge_speech",
           "judge_silence", "QUIET_DBFS"]

QUIET_DBFS = -100.0
WINDOW_S = 0.064       # the spectrum looks this far back: 15.6 Hz bins, ~1 Hz with
TONAL_SHARE = 0.6      # interpolation; a tone puts this much of the energy in its peak
GLITCH_FRAMES = 2      # a run survives this many odd frames (a lost packet concealed)
KEEP_S = 120.0         # received audio kept for the steps (bounded memory per call)


@dataclass(frozen=True)
class Frame:
    t: float             # loop time it arrived
    seconds: float       # its length
    level: float         # RMS, dBFS
    freq: float | None   # strongest frequency over the last 64 ms (None when quiet)
    tonal: float         # share of the energy within ±2 bins of it, 0..1


class AudioMonitor:
    """Receives the call's audio (as a sink would) and keeps the last KEEP_S seconds of it
    for the steps; ``arrived`` is set whenever something new came."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.chunks: deque[tuple[int, float, bytes, int]] = deque()
        self.count = 0        # chunks ever received (the index of the next one)
        self.arrived = asyncio.Event()
        self._kept = 0.0

    def write(self, pcm: bytes, rate: int) -> None:
        if not pcm:
            return
        seconds = len(pcm) / 2 / rate
        self.chunks.append((self.count, self.clock(), pcm, rate))
        self.count += 1
        self._kept += seconds
        while self._kept > KEEP_S and len(self.chunks) > 1:
            _, _, old, old_rate = self.chunks.popleft()
            self._kept -= len(old) / 2 / old_rate
        self.arrived.set()

    def since(self, index: int) -> Iterable[tuple[int, float, bytes, int]]:
        """Chunks numbered ``index`` or later that are still kept."""
        if not self.chunks:
            return []
        first = self.chunks[0][0]
        return list(self.chunks)[max(0, index - first):]


class Analyser:
    """Turns chunks into Frames, keeping the 64 ms history the spectrum needs."""

    def __init__(self) -> None:
        self._history = np.zeros(0, dtype=np.float64)
        self._rate = 0

    def frame(self, t: float, pcm: bytes, rate: int) -> Frame:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
        if rate != self._rate:
            self._history = np.zeros(0, dtype=np.float64)
            self._rate = rate
        need = int(rate * WINDOW_S)
        self._history = np.concatenate([self._history, x])[-need:]
        rms = math.sqrt(float(np.mean(x * x))) if len(x) else 0.0
        level = 20 * math.log10(rms) if rms > 1e-5 else QUIET_DBFS
        freq, tonal = None, 0.0
        if level > -70 and len(self._history) >= need // 2:
            freq, tonal = _peak(self._history, rate)
        return Frame(t, len(x) / rate, level, freq, tonal)


def _peak(x: np.ndarray, rate: int) -> tuple[float | None, float]:
    n = 1 << max(8, (len(x) - 1).bit_length())
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) ** 2
    spectrum[0] = 0.0
    total = float(spectrum.sum())
    if total <= 0:
        return None, 0.0
    k = int(np.argmax(spectrum))
    if 0 < k < len(spectrum) - 1:  # parabolic interpolation on the log magnitude
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-30)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    else:
        shift = 0.0
    share = float(spectrum[max(0, k - 2):k + 3].sum()) / total
    return (k + shift) * rate / n, share


# ============================================================================ verdicts
@dataclass(frozen=True)
class ToneVerdict:
    ok: bool
    seconds: float       # the longest run that met every condition
    value: str           # what was measured, for the report


def _runs(frames: list[Frame], good: Callable[[Frame], bool]) -> tuple[float, int, int]:
    """Longest run of good frames (bridging GLITCH_FRAMES odd ones): (seconds, start, end)."""
    best = (0.0, 0, 0)
    start = None
    length = 0.0
    odd = 0
    pending = 0.0
    for i, f in enumerate(frames):
        if good(f):
            if start is None:
                start, length = i, 0.0
            length += pending + f.seconds
            pending, odd = 0.0, 0
            if length > best[0]:
                best = (length, start, i + 1)
        elif start is not None:
            odd += 1
            pending += f.seconds
            if odd > GLITCH_FRAMES:
                start, length, pending, odd = None, 0.0, 0.0, 0
    return best


def _describe_tones(frames: list[Frame]) -> str:
    """What was heard instead: the longest steady tone, or how loud it got."""
    tonal = [f for f in frames if f.freq is not None and f.tonal >= TONAL_SHARE]
    loudest = max((f.level for f in frames), default=QUIET_DBFS)
    if not frames:
        return "no audio arrived"
    if not tonal:
        return f"heard no steady tone (loudest {loudest:.1f} dBFS)"
    # group tonal frames by frequency (10 Hz buckets), report the longest-lasting group
    groups: dict[int, list[Frame]] = {}
    for f in tonal:
        groups.setdefault(int(round(f.freq / 10.0)), []).append(f)
    bucket = max(groups, key=lambda b: sum(f.seconds for f in groups[b]))
    members = groups[bucket]
    freq = statistics.median(f.freq for f in members)
    level = statistics.median(f.level for f in members)
    seconds = sum(f.seconds for f in members)
    return f"heard {freq:.0f} Hz at {level:.1f} dBFS for {seconds:.2f} s"


def judge_tone(frames: list[Frame], frequency: float, tolerance: float, level: float,
               duration: float) -> ToneVerdict:
    def good(f: Frame) -> bool:
        return f.freq is not None and f.tonal >= TONAL_SHARE and \
            abs(f.freq - frequency) <= tolerance and f.level >= level

    seconds, start, end = _runs(frames, good)
    if seconds >= duration - 1e-9:
        run = [f for f in frames[start:end] if good(f)]
        freq = statistics.median(f.freq for f in run)  # type: ignore[misc]
        lvl = statistics.median(f.level for f in run)
        return ToneVerdict(True, seconds, f"{freq:.1f} Hz at {lvl:.1f} dBFS for "
                                          f"{seconds:.2f} s")
    return ToneVerdict(False, seconds, _describe_tones(frames))


def judge_speech(frames: list[Frame], level: float, duration: float) -> ToneVerdict:
    """Speech-like over the last ``duration``: sound in at least half of the frames, few
    of them a steady tone, and the level swinging (syllables) by at least 3 dB."""
    span = 0.0
    window: list[Frame] = []
    for f in reversed(frames):
        window.append(f)
        span += f.seconds
        if span >= duration - 1e-9:
            break
    if span < duration - 1e-9:
        return ToneVerdict(False, 0.0, _describe_sound(frames, level))
    active = [f for f in window if f.level >= level]
    tonal = [f for f in active if f.freq is not None and f.tonal >= TONAL_SHARE]
    swing = statistics.pstdev(f.level for f in active) if len(active) > 1 else 0.0
    ok = len(active) >= len(window) / 2 and len(tonal) <= 0.3 * len(active) and swing >= 3.0
    if ok:
        return ToneVerdict(True, span, f"sound in {100 * len(active) / len(window):.0f} % of "
                                       f"{span:.2f} s, level swing {swing:.1f} dB")
    return ToneVerdict(False, 0.0, _describe_sound(frames, level))


def _describe_sound(frames: list[Frame], level: float) -> str:
    if not frames:
        return "no audio arrived"
    active = [f for f in frames if f.level >= level]
    loudest = max(f.level for f in frames)
    if not active:
        return f"heard nothing as loud as {level:.0f} dBFS (loudest {loudest:.1f} dBFS)"
    tonal = [f for f in active if f.freq is not None and f.tonal >= TONAL_SHARE]
    if len(tonal) > 0.3 * len(active):
        return _describe_tones(frames) + ", a steady tone rather than speech"
    swing = statistics.pstdev(f.level for f in active) if len(active) > 1 else 0.0
    share = 100 * len(active) / len(frames)
    return f"heard sound in {share:.0f} % of the frames, level swing {swing:.1f} dB " \
           f"(loudest {loudest:.1f} dBFS)"


def judge_silence(frames: list[Frame], level: float, duration: float) -> ToneVerdict:
    seconds, _, _ = _runs_strict(frames, lambda f: f.level <= level)
    if seconds >= duration - 1e-9:
        return ToneVerdict(True, seconds, f"quiet (at most {level:.0f} dBFS) for "
                                          f"{seconds:.2f} s")
    loudest = max((f.level for f in frames), default=QUIET_DBFS)
    if not frames:
        return ToneVerdict(False, 0.0, "no audio arrived")
    return ToneVerdict(False, seconds, f"the longest quiet stretch was {seconds:.2f} s "
                                       f"(loudest {loudest:.1f} dBFS)")


def _runs_strict(frames: list[Frame], good: Callable[[Frame], bool]) -> tuple[float, int, int]:
    """Longest run with no odd frame at all (a click breaks a silence)."""
    best = (0.0, 0, 0)
    length, start = 0.0, 0
    for i, f in enumerate(frames):
        if good(f):
            if length == 0.0:
                start = i
            length += f.seconds
            if length > best[0]:
                best = (length, start, i + 1)
        else:
            length = 0.0
    return best
