"""A synthetic acoustic echo path for echo-canceller tests and benchmarks: far-end speech
through a room impulse response plus noise, mixed into the microphone, with optional
near-end speech (double talk).

Speech comes from `speech` (espeak-ng, when a real voice matters) or `babble` (seeded
numpy: voiced syllables with pitch, formants and pauses, for fast deterministic tests).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def babble(seconds: float, rate: int = 16000, seed: int = 1, level_dbfs: float = -20.0,
           pitch_hz: float = 120.0) -> np.ndarray:
    """Speech-like int16: 120–250 ms syllables of a pulse train (jittered pitch) through
    two random formant resonators, with 40–300 ms pauses between words. Made at 16 kHz
    (speech has little above 8 kHz) and resampled to other rates."""
    if rate != 16000:
        from softphone.media.devices import resample

        x = babble(seconds, 16000, seed, level_dbfs, pitch_hz)
        return np.frombuffer(resample(x.tobytes(), 16000, rate), dtype="<i2")[: int(seconds * rate)]
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    pos = int(rng.uniform(0.0, 0.2) * rate)
    while pos < n:
        length = int(rng.uniform(0.12, 0.25) * rate)
        f0 = pitch_hz * rng.uniform(0.8, 1.3)
        t = np.arange(length) / rate
        phase = np.cumsum(np.full(length, f0 / rate) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)))
        pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
        pulses += 0.05 * rng.standard_normal(length)  # breath: some unvoiced energy
        sig = pulses
        for f, bw in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2500), 120)):
            r = np.exp(-np.pi * bw / rate)
            a1, a2 = -2 * r * np.cos(2 * np.pi * f / rate), r * r
            y = np.zeros(length)
            for i in range(length):  # a two-pole resonator (short loops: fine in numpy)
                y[i] = sig[i] - a1 * (y[i - 1] if i else 0) - a2 * (y[i - 2] if i > 1 else 0)
            sig = y
        env = np.sin(np.pi * np.arange(length) / length) ** 0.5
        end = min(n, pos + length)
        out[pos:end] += (sig * env)[: end - pos]
        pos = end + int(rng.choice([rng.uniform(0.04, 0.1), rng.uniform(0.15, 0.3)]) * rate)
    return _at_level(out, level_dbfs)


def speech(text: str, rate: int = 16000, voice: str = "en", level_dbfs: float = -20.0,
           speed: int = 150) -> np.ndarray:
    """espeak-ng saying ``text``, resampled to ``rate``, as int16 at ``level_dbfs`` RMS."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed (make setup installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "say.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True, timeout=60)
        with wave.open(str(path)) as w:
            src_rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    from softphone.media.devices import resample

    x = np.frombuffer(resample(x.tobytes(), src_rate, rate), dtype="<i2")
    return _at_level(x.astype(float), level_dbfs)


def room_response(rate: int = 16000, delay_ms: float = 60.0, rt60_s: float = 0.3,
                  seed: int = 7) -> np.ndarray:
    """A synthetic room impulse response: a direct path after ``delay_ms`` (the device
    buffers and the air), then an exponentially decaying diffuse tail (RT60 ``rt60_s``)."""
    rng = np.random.default_rng(seed)
    d = int(rate * delay_ms / 1000)
    tail = int(rate * rt60_s)
    t = np.arange(tail) / rate
    h = np.zeros(d + tail)
    h[d:] = rng.standard_normal(tail) * np.exp(-6.9 * t / rt60_s) * 0.3
    h[d] = 1.0
    h[d + int(rate * 0.004)] += 0.5  # an early reflection (the desk)
    return h / np.sqrt(np.sum(h * h))


@dataclass
class EchoScene:
    """``mic`` = echo of ``far`` + ``near`` + noise; ``echo`` and ``near`` kept apart for
    scoring. ``far_only`` / ``double_talk`` are sample ranges."""

    rate: int
    far: np.ndarray
    near: np.ndarray
    echo: np.ndarray
    mic: np.ndarray
    far_only: tuple[int, int]
    double_talk: tuple[int, int]


def echo_scene(far: np.ndarray, near: np.ndarray | None = None, *, rate: int = 16000,
               erl_db: float = 6.0, noise_dbfs: float = -60.0, delay_ms: float = 60.0,
               rt60_s: float = 0.3, double_talk_at: float | None = None,
               seed: int = 3) -> EchoScene:
    """The microphone hears ``far`` through a room (``erl_db`` quieter than the speaker
    feed), white noise at ``noise_dbfs``, and from ``double_talk_at`` seconds on, ``near``."""
    rng = np.random.default_rng(seed)
    n = len(far)
    h = room_response(rate, delay_ms, rt60_s, seed)
    size = 1 << (n + len(h)).bit_length()  # convolution by FFT: long responses at 48 kHz
    echo = np.fft.irfft(np.fft.rfft(far.astype(float), size) * np.fft.rfft(h, size),
                        size)[:n] * 10 ** (-erl_db / 20)
    near_full = np.zeros(n)
    start = n if double_talk_at is None or near is None else int(double_talk_at * rate)
    if near is not None and start < n:
        seg = near.astype(float)[: n - start]
        near_full[start:start + len(seg)] = seg
    noise = rng.standard_normal(n) * 32768 * 10 ** (noise_dbfs / 20)
    mic = np.clip(echo + near_full + noise, -32768, 32767)
    return EchoScene(rate, far.astype(np.int16), near_full.astype(np.int16),
                     echo.astype(np.int16), mic.astype(np.int16), (0, start), (start, n))


def _at_level(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x * x)) or 1.0
    y = x / rms * 32768 * 10 ** (level_dbfs / 20)
    return np.clip(y, -32768, 32767).astype(np.int16)


def through(processor, mic: np.ndarray, far: np.ndarray, rate: int) -> np.ndarray:
    """``mic`` through a softphone.media.processing.VoiceProcessor in 20 ms blocks with
    ``far`` as the reference, as the capture callback drives it."""
    n = rate // 50
    out = np.zeros(len(mic) // n * n, dtype=np.int16)
    for i in range(0, len(out), n):
        out[i:i + n] = np.frombuffer(processor.process(mic[i:i + n].tobytes(),
                                                       far[i:i + n].tobytes()), "<i2")
    return out


def gain_db(before: np.ndarray, after: np.ndarray) -> float:
    """How much louder ``after`` is than ``before`` (power ratio), dB."""
    b, a = before.astype(np.float64), after.astype(np.float64)
    return float(10 * np.log10(np.sum(a * a) / max(np.sum(b * b), 1e-12)))

