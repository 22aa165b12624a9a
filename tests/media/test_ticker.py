"""The media clock spreads sessions over the period's phases and keeps them on the grid.

Driven by a fake loop (a clock we move and the timers it would fire), so the order of
what runs is exact and nothing depends on the machine's timing."""

from __future__ import annotations

import heapq
import itertools

import pytest

from softphone.media.ticker import SLOTS, Ticker


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self._timers: list = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def is_closed(self) -> bool:
        return False

    def call_at(self, when: float, fn):
        handle = Handle(when, fn)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def run_until(self, t: float) -> None:
        while self._timers and self._timers[0][0] <= t:
            when, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self.now = max(self.now, when)
                handle.fn()
        self.now = t


class Handle:
    def __init__(self, when: float, fn) -> None:
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def loop():
    return FakeLoop()


def member(log: list, name: str):
    return (lambda now: log.append(("send", name, round(now, 4))),
            lambda now: log.append(("play", name, round(now, 4))))


def test_sessions_spread_over_the_phases_of_the_period(loop):
    ticker = Ticker(loop, 0.02)
    log: list = []
    firsts = [ticker.add(f"s{i}", *member(log, f"s{i}")) for i in range(2 * SLOTS)]
    assert [len(s.members) for s in ticker.slots] == [2] * SLOTS
    # each phase is its own grid, period/SLOTS apart; a member's first tick is on its grid
    step = 0.02 / SLOTS
    phases = [(f - ticker.origin) / step for f in firsts]
    assert all(abs(p - round(p)) < 1e-6 for p in phases)
    assert sorted({round(p) % SLOTS for p in phases}) == list(range(SLOTS))
    loop.run_until(loop.now + 0.02)
    ticks = sorted({t for _, _, t in log})
    assert len(ticks) == SLOTS  # four wake-ups, each running a quarter of the sessions
    for t in ticks:
        at = [(kind, name) for kind, name, when in log if when == t]
        assert len(at) == 4 and [k for k, _ in at] == ["send", "send", "play", "play"]


def test_phases_stay_on_the_grid_and_a_late_tick_is_not_repeated(loop):
    ticker = Ticker(loop, 0.02)
    log: list = []
    first = ticker.add("a", *member(log, "a"))
    loop.run_until(first + 0.1)
    sends = [t for kind, _, t in log if kind == "send"]
    assert sends == [round(first + 0.02 * k, 4) for k in range(6)]
    # the loop stalls 55 ms past the tick due at +0.12: that tick runs late, the two it
    # overran (+0.14, +0.16) are counted, not run, and the grid goes on at +0.18
    loop.now = first + 0.175
    loop.run_until(first + 0.175)
    assert ticker.late_ticks == 2
    loop.run_until(first + 0.2)
    later = [t for kind, _, t in log if kind == "send"][len(sends):]
    assert later == [round(first + t, 4) for t in (0.175, 0.18, 0.2)]


def test_a_removed_session_leaves_its_phase_and_an_empty_ticker_goes(loop):
    ticker = Ticker(loop, 0.02)
    Ticker._instances[(id(loop), 0.02)] = ticker
    log: list = []
    for name in ("a", "b", "c"):
        ticker.add(name, *member(log, name))
    ticker.remove("b")
    assert sorted(len(s.members) for s in ticker.slots) == [0, 0, 1, 1]
    assert ticker.add("d", *member(log, "d")) and len(ticker) == 3
    assert sorted(len(s.members) for s in ticker.slots) == [0, 1, 1, 1]  # the emptiest
    for name in ("a", "c", "d"):
        ticker.remove(name)
    assert all(s.handle is None for s in ticker.slots)
    assert (id(loop), 0.02) not in Ticker._instances
    loop.run_until(loop.now + 0.1)
    assert [n for _, n, _ in log] == []  # nothing ran after removal
