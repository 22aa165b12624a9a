"""The shared, drift-free media clock: a few timer chains per (event loop, period).

A timer per session would mean N timer handles and N wake-ups per 20 ms; one shared
chain wakes once and runs every session — but then every session sends in the same burst,
and the last of a hundred waits for the ninety-nine before it. So the period is cut into
``SLOTS`` evenly spaced phases (5 ms apart at 20 ms) and each session joins the phase with
the fewest members: a tick runs a quarter of the sessions, and the bursts never overlap.
Ticks sit on a fixed grid ``origin + slot*period/SLOTS + k*period`` of ``loop.time()``, so
nothing drifts; a late tick is not repeated — each member compares its own due times with
``now`` and catches up (at most ``MAX_CATCH_UP`` packets a tick).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Hashable

log = logging.getLogger(__name__)

MAX_CATCH_UP = 5
"""Packets (or playout frames) one member may catch up in a single tick."""

SLOTS = 4
"""Phases per period; sessions are spread over them (fewest members first)."""

Phase = Callable[[float], None]


class _Slot:
    """One phase of the period: its members and its own timer chain."""

    __slots__ = ("ticker", "offset", "members", "sends", "plays", "handle", "next")

    def __init__(self, ticker: "Ticker", offset: float) -> None:
        self.ticker = ticker
        self.offset = offset
        self.members: dict[Hashable, tuple[Phase, Phase]] = {}
        # immutable snapshots rebuilt on add/remove: a tick iterates them without copying,
        # and a member removed mid-tick still finishes that tick (as with a copied list)
        self.sends: tuple[Phase, ...] = ()
        self.plays: tuple[Phase, ...] = ()
        self.handle: asyncio.TimerHandle | None = None
        self.next = 0.0

    def rebuild(self) -> None:
        members = self.members.values()
        self.sends = tuple(send for send, _ in members)
        self.plays = tuple(play for _, play in members)

    def first_tick(self) -> float:
        """The next grid point of this phase (the chain starts there if it is idle)."""
        if self.handle is not None:
            return self.next
        t = self.ticker
        now = t.loop.time()
        k = int((now - t.origin - self.offset) // t.period) + 1
        return t.origin + self.offset + k * t.period

    def start(self) -> None:
        self.next = self.first_tick()
        self.handle = self.ticker.loop.call_at(self.next, self.fire)

    def fire(self) -> None:
        t = self.ticker
        now = t.loop.time()
        for send in self.sends:
            try:
                send(now)
            except Exception:  # noqa: BLE001 - one broken session must not stop the rest
                log.exception("RTP send tick failed")
        for play in self.plays:
            try:
                play(now)
            except Exception:  # noqa: BLE001
                log.exception("RTP play tick failed")
        if not self.members:
            self.handle = None
            t._idle()
            return
        self.next += t.period
        if self.next <= now:
            skipped = int((now - self.next) / t.period) + 1
            t.late_ticks += skipped
            self.next += skipped * t.period
        self.handle = t.loop.call_at(self.next, self.fire)


class Ticker:
    """Calls, in each phase, every member's send phase, then every member's play phase.

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

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float,
                 slots: int = SLOTS) -> None:
        self.loop = loop
        self.period = period
        self.origin = loop.time()
        self.slots = [_Slot(self, period * i / slots) for i in range(slots)]
        self._where: dict[Hashable, _Slot] = {}
        self.late_ticks = 0

    def add(self, key: Hashable, send: Phase, play: Phase) -> float:
        """Run ``send(now)`` and ``play(now)`` every period until ``remove(key)``; returns
        the loop time of the member's first tick (it aligns its due times to it)."""
        old = self._where.get(key)
        if old is not None:
            old.members[key] = (send, play)
            old.rebuild()
            return old.first_tick()
        slot = min(self.slots, key=lambda s: len(s.members))
        slot.members[key] = (send, play)
        slot.rebuild()
        self._where[key] = slot
        if slot.handle is None:
            slot.start()
        return slot.next

    def remove(self, key: Hashable) -> None:
        slot = self._where.pop(key, None)
        if slot is None:
            return
        slot.members.pop(key, None)
        slot.rebuild()
        if not slot.members and slot.handle is not None:
            slot.handle.cancel()
            slot.handle = None
        self._idle()

    def __len__(self) -> int:
        return len(self._where)

    def _idle(self) -> None:
        """With no member left anywhere, forget this ticker (a new loop gets a new one)."""
        if not self._where and all(s.handle is None for s in self.slots):
            key = (id(self.loop), self.period)
            if self._instances.get(key) is self:
                del self._instances[key]
