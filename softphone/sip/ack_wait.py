"""Our 2xx to an INVITE, resent until its ACK arrives (RFC 3261 §13.3.1.4), sans-IO.

The 2xx of an INVITE (the initial one, or a re-INVITE in either role) is the UA's to
retransmit, not its transaction's: every T1, doubling up to T2, until the ACK comes or
64·T1 have passed. One at a time: a re-INVITE while one is unACKed gets 500 (§14.2), and
a BYE we want to send meanwhile waits behind the ACK (§15).
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Action, SendResponse, TimerSet
from .message import Response
from .transaction import TimerConfig

__all__ = ["AckWait", "Pending2xx"]


@dataclass(slots=True)
class Pending2xx:
    """Our 2xx to an INVITE, resent until its ACK arrives."""

    cseq: int
    response: Response
    interval: float
    give_up_at: float
    offered: bool  # it carried our offer (delayed offer): the ACK brings the answer


class AckWait:
    """The 2xx awaiting its ACK (if any), on the session's timer :attr:`TIMER`."""

    TIMER = "2xx"
    __slots__ = ("_timers", "_config", "pending", "bye_waiting")

    def __init__(self, timers: TimerSet, config: TimerConfig) -> None:
        self._timers = timers
        self._config = config
        self.pending: Pending2xx | None = None
        self.bye_waiting = False  # our BYE goes out once the ACK came (or we gave up)

    def arm(self, cseq: int, response: Response, now: float, offered: bool) -> list[Action]:
        """``response`` (to the INVITE with CSeq ``cseq``) was just sent: resend it until
        the ACK."""
        t = self._config
        self.pending = Pending2xx(cseq, response, t.t1, now + 64 * t.t1, offered)
        return [self._timers.start(self.TIMER, now + t.t1)]

    def on_timer(self, now: float) -> list[Action] | None:
        """The 2xx again, the interval doubled (at most T2); None when 64·T1 passed with
        no ACK (the wait is over: the dialog is to be ended)."""
        pending = self.pending
        if pending is None:
            return []
        if now >= pending.give_up_at:
            self.pending = None
            return None
        pending.interval = min(2 * pending.interval, self._config.t2)
        deadline = min(now + pending.interval, pending.give_up_at)
        return [SendResponse(pending.response), self._timers.start(self.TIMER, deadline)]

    def acked(self, cseq: int) -> Pending2xx | None:
        """The 2xx an ACK with CSeq ``cseq`` acknowledges (no longer resent), or None."""
        pending = self.pending
        if pending is None or cseq != pending.cseq:
            return None
        self.pending = None
        return pending
