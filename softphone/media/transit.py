"""How late packets arrive: the transit time (arrival minus RTP time) of the recent
packets, from which the playout buffer sets the delay it needs.

A packet whose transit is at most the playout buffer's own offset (playout time minus
RTP time) plays in time; one above it is late. So the delay to aim for is a high
quantile of the recent transits, not a multiple of RFC 3550's interarrival jitter —
that estimator averages |D| between neighbours, which under uniform 60 ± 30 ms jitter
reads ~20 ms and moves by a third from one second to the next, so a target built on it
is both too low and restless. The clocks of the two ends differ by an unknown offset,
which cancels: only transits relative to each other (and to the buffer's offset) count.
"""

from __future__ import annotations

import numpy as np

WINDOW_S = 5.0
"""Time whose packets are remembered: long enough that the delay does not fall back
between two spikes of a steady jitter, short enough to follow a path that calmed down."""

QUANTILE = 0.99
"""Share of the window's packets the delay covers: one late packet in a hundred, at most."""

REFRESH = 8
"""Packets between two recomputations of the quantile (a higher transit raises it at once)."""


class TransitWindow:
    """The transits (ms) of the packets of the last `WINDOW_S` (at one packet per
    `packet_ms`), their floor and high quantile."""

    def __init__(self, packet_ms: float) -> None:
        self._size = max(50, round(WINDOW_S * 1000 / packet_ms))
        self._values = np.zeros(self._size)
        self._count = 0
        self._pos = 0
        self._high = 0.0
        self._low = 0.0
        self._stale = 0

    def clear(self) -> None:
        """Forget every transit (a new stream, a timestamp jump: the offset changed)."""
        self._count = self._pos = self._stale = 0

    def __len__(self) -> int:
        return self._count

    def add(self, transit_ms: float) -> None:
        """One packet's arrival time minus its RTP time, in ms (any fixed offset)."""
        self._values[self._pos] = transit_ms
        self._pos = (self._pos + 1) % self._size
        self._count = min(self._count + 1, self._size)
        self._stale += 1
        if self._count == 1:
            self._high = self._low = transit_ms
            self._stale = 0
        elif transit_ms > self._high or transit_ms < self._low or self._stale >= REFRESH:
            self._refresh()

    def _refresh(self) -> None:
        seen = self._values[:self._count]
        k = min(self._count - 1, int(QUANTILE * self._count))
        self._high = float(np.partition(seen, k)[k])
        self._low = float(seen.min())
        self._stale = 0

    @property
    def high(self) -> float:
        """The transit all but the latest ~1 % of packets stayed within (ms)."""
        return self._high

    @property
    def spread(self) -> float:
        """How much later than the fastest recent packet the slow ones come (ms)."""
        return self._high - self._low if self._count else 0.0
