"""Per-source token buckets for requests nobody has authenticated.

A phone on a public address gets scanned and flooded (``sipvicious``, OPTIONS storms,
INVITE floods). Each new out-of-dialog request costs a transaction, a timer and often a
response; this keeps one source from spending all of that. Each source IP has a bucket
of ``burst`` tokens refilled at ``rate`` per second; a request without a token is refused:
the first refusal in each ``refusal_interval`` gets a 503 with Retry-After, the rest are
dropped silently (answering every one would turn us into an amplifier). The table is an
LRU bounded by ``max_sources``, so spoofed source addresses cannot grow it.

Sans-IO: the caller passes the time in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateLimiter", "ALLOW", "REFUSE", "DROP"]

ALLOW = "allow"
REFUSE = "refuse"  # answer 503 + Retry-After, statelessly
DROP = "drop"      # say nothing


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    last_refusal: float = -math.inf


class RateLimiter:
    """Token bucket per source; ``rate`` ≤ 0 turns the limiter off."""

    def __init__(self, rate: float = 50.0, burst: int = 100, *, max_sources: int = 4096,
                 refusal_interval: float = 1.0) -> None:
        self.rate, self.burst = rate, burst
        self.max_sources = max_sources
        self.refusal_interval = refusal_interval
        self.stats = dict.fromkeys(("allowed", "refused", "dropped", "evicted"), 0)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    @property
    def retry_after(self) -> int:
        """Whole seconds until one token is back (what the 503 advertises)."""
        return max(1, math.ceil(1 / self.rate)) if self.enabled else 1

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, source: str, now: float) -> str:
        """ALLOW (and spend a token), REFUSE (send a 503) or DROP one request from ``source``."""
        if not self.enabled:
            self.stats["allowed"] += 1
            return ALLOW
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
                self.stats["evicted"] += 1
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            self.stats["allowed"] += 1
            return ALLOW
        if now - bucket.last_refusal >= self.refusal_interval:
            bucket.last_refusal = now
            self.stats["refused"] += 1
            return REFUSE
        self.stats["dropped"] += 1
        return DROP
