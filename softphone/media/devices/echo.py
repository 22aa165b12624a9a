"""The far end's audio sent straight back (`answer --echo`, the built-in echo service)."""

from __future__ import annotations

from .base import Metered, PcmFifo


class EchoBridge:
    """`sink` receives the far end's audio, `source` sends it straight back."""

    def __init__(self, max_ms: int = 200) -> None:
        self._max_ms = max_ms
        self._fifo: PcmFifo | None = None
        self._rate = 0
        bridge = self

        class _Sink(Metered):
            def write(self, pcm: bytes, rate: int) -> None:
                self._last = pcm
                bridge._fifo_for(rate).put(pcm)

        class _Source(Metered):
            def read(self, samples: int, rate: int) -> bytes:
                out = bridge._fifo_for(rate).get(samples * 2)
                self._last = out
                return out

        self.sink = _Sink()
        self.source = _Source()

    def _fifo_for(self, rate: int) -> PcmFifo:
        if self._fifo is None or rate != self._rate:
            self._rate = rate
            self._fifo = PcmFifo(rate * 2 * self._max_ms // 1000)
        return self._fifo
