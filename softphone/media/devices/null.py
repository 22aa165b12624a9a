"""Silence in, nothing out: the headless default."""

from __future__ import annotations

from .base import Metered


class NullSource(Metered):
    def read(self, samples: int, rate: int) -> bytes:
        return bytes(samples * 2)


class NullSink(Metered):
    discards = True  # the session may skip decoding and playout altogether

    def write(self, pcm: bytes, rate: int) -> None:
        pass
