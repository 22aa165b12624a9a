"""A sink that can lay a local tone over what it plays (the call-waiting beeps)."""

from __future__ import annotations

import numpy as np

from .base import AudioSink, AudioSource, Metered


class OverlaySink(Metered):
    """Plays ``inner``'s audio with ``tone`` (when set) mixed in. A sink that discards
    stays one: nobody would hear the tone."""

    def __init__(self, inner: AudioSink) -> None:
        self.inner = inner
        self.tone: AudioSource | None = None

    @property
    def discards(self) -> bool:
        return bool(getattr(self.inner, "discards", False))

    def write(self, pcm: bytes, rate: int) -> None:
        tone = self.tone
        if tone is not None:
            extra = np.frombuffer(tone.read(len(pcm) // 2, rate), dtype="<i2")
            mixed = np.frombuffer(pcm, dtype="<i2").astype(np.int32) + extra
            pcm = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
        self._last = pcm
        self.inner.write(pcm, rate)

    @property
    def level_dbfs(self) -> float:
        level = getattr(self.inner, "level_dbfs", None)
        return float(level) if level is not None else super().level_dbfs

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
