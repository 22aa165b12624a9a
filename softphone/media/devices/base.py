"""What every audio device shares: the source/sink protocols, level metering, rate
conversion and the bounded FIFO that hands audio between threads.

A source hands out exactly `samples` samples per `read`, silence when it has nothing; a
sink takes whatever `write` gives it. Both run on the event loop's ticker thread and
must never block: devices fed from another thread (PortAudio's callback, the echo
bridge) exchange audio through a small bounded `PcmFifo`.

`level_dbfs` (RMS of the last frame) feeds the TUI meters; it is computed only when
read, so the audio path pays nothing for it.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import numpy as np

SILENCE_DBFS = -120.0


class AudioUnavailable(RuntimeError):
    """No usable audio device (the caller falls back to the null devices)."""


class AudioSource(Protocol):
    def read(self, samples: int, rate: int) -> bytes: ...


class AudioSink(Protocol):
    def write(self, pcm: bytes, rate: int) -> None: ...


def rms_dbfs(pcm: bytes) -> float:
    if not pcm:
        return SILENCE_DBFS
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(x * x))) / 32768.0
    return 20 * math.log10(rms) if rms > 1e-6 else SILENCE_DBFS


class Metered:
    """Keeps the last frame; `level_dbfs` is its RMS in dBFS."""

    _last: bytes = b""

    @property
    def level_dbfs(self) -> float:
        return rms_dbfs(self._last)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """One-shot rate conversion of a whole buffer (PyAV's swresample)."""
    if from_rate == to_rate or not pcm:
        return pcm
    return StreamResampler(from_rate, to_rate).process(pcm, flush=True)


class StreamResampler:
    """Streaming s16 mono rate converter built on PyAV's AudioResampler."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        import av

        self._av = av
        self.from_rate, self.to_rate = from_rate, to_rate
        self._r = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
        self._pts = 0

    def process(self, pcm: bytes, flush: bool = False) -> bytes:
        av = self._av
        n = len(pcm) // 2
        if n == 0 and not flush:
            return b""
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm[: n * 2])
        frame.sample_rate = self.from_rate
        frame.pts = self._pts
        self._pts += n
        frames = self._r.resample(frame)
        if flush:
            frames += self._r.resample(None)
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)


class PcmFifo:
    """Thread-safe bounded byte FIFO; the oldest audio goes when it overflows."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.overflows = 0
        self.underruns = 0

    def put(self, data: bytes) -> None:
        with self._lock:
            self._buf += data
            extra = len(self._buf) - self.max_bytes
            if extra > 0:
                extra += extra & 1
                del self._buf[:extra]
                self.overflows += 1

    def get(self, n: int) -> bytes:
        with self._lock:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        if len(out) < n:
            self.underruns += 1
            out += bytes(n - len(out))
        return out

    def __len__(self) -> int:
        return len(self._buf)

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()
