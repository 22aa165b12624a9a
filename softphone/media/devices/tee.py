"""One sink feeding several (the speaker and a `--record` file)."""

from __future__ import annotations

from .base import AudioSink, Metered


class TeeSink(Metered):
    """Writes the same audio to several sinks."""

    def __init__(self, *sinks: AudioSink) -> None:
        self.sinks = list(sinks)

    def write(self, pcm: bytes, rate: int) -> None:
        self._last = pcm
        for s in self.sinks:
            s.write(pcm, rate)

    def close(self) -> None:
        for s in self.sinks:
            close = getattr(s, "close", None)
            if close:
                close()
