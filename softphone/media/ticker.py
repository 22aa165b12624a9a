"""The shared, drift-free media clock: one timer chain per (event loop, period).

A timer per session would mean N timer handles and N wake-ups per 20 ms; one shared
chain wakes once and runs every session. Ticks sit on a fixed grid `origin + k*period`
of `loop.time()`, so nothing drifts; a late tick is not repeated — each member compares
its own due times with `now` and catches up (at most `MAX_CATCH_UP` packets a tick).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Hashable

log = logging.getLogger(__name__)

MAX_CATCH_UP = 5
"""Packets (or playout frames) one member may catch up in a single tick."""

Phase = Callable[[float], None]


class Ticker:
    """Calls every member's send phase, then every member's play phase, each tick.

    Sends go first so that a send never waits behind another session's decoding and
    concealment, which keeps send intervals even.
    """

    _instances: dict[tuple[int, float], "Ticker"] = {}

    @classmethod
    def get(cls, loop: asyncio.AbstractEventLoop, period: float) -> "Ticker":
        key = (id(loop), period)
        t = cls._instances.get(key)
        if t is None or t.loop is not loop or t.loop.is_closed():
            t = cls._instances[key] = cls(loop, period)
        return t

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self._members: dict[Hashable, tuple[Phase, Phase]] = {}
        # immutable snapshots rebuilt on add/remove: a tick iterates them without copying,
        # and a member removed mid-tick still finishes that tick (as with a copied list)
        self._sends: tuple[Phase, ...] = ()
        self._plays: tuple[Phase, ...] = ()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.late_ticks = 0

    def next_tick(self) -> float:
        """The loop time of the next tick (a member aligns its due times to it)."""
        if self._handle is None:
            self._next = self.loop.time() + self.period
        return self._next

    def add(self, key: Hashable, send: Phase, play: Phase) -> None:
        """Run `send(now)` and `play(now)` every tick until `remove(key)`."""
        self._members[key] = (send, play)
        self._rebuild()
        if self._handle is None:
            self._next = self.loop.time() + self.period
            self._handle = self.loop.call_at(self._next, self._fire)

    def remove(self, key: Hashable) -> None:
        if self._members.pop(key, None) is not None:
            self._rebuild()
        if not self._members and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._instances.pop((id(self.loop), self.period), None)

    def _rebuild(self) -> None:
        members = self._members.values()
        self._sends = tuple(send for send, _ in members)
        self._plays = tuple(play for _, play in members)

    def _fire(self) -> None:
        now = self.loop.time()
        sends, plays = self._sends, self._plays
        for send in sends:
            try:
                send(now)
            except Exception:  # noqa: BLE001 - one broken session must not stop the rest
                log.exception("RTP send tick failed")
        for play in plays:
            try:
                play(now)
            except Exception:  # noqa: BLE001
                log.exception("RTP play tick failed")
        if not self._members:
            self._handle = None
            self._instances.pop((id(self.loop), self.period), None)
            return
        self._next += self.period
        if self._next <= now:
            skipped = int((now - self._next) / self.period) + 1
            self.late_ticks += skipped
            self._next += skipped * self.period
        self._handle = self.loop.call_at(self._next, self._fire)
