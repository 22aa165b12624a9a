"""What the pure SIP machines ask their owner to do.

Every machine above the transaction layer (INVITE sessions, registrations,
subscriptions) takes inputs (a request, a response, a fired timer, a command) with the
current time and returns a list of these actions, which the owner carries out *in order*.
Time enters as a fired-timer input and leaves as a :class:`StartTimer` output; nothing in
``sip/`` reads a clock, sleeps, resolves a name or touches a socket.

A message handed over in :class:`SendRequest` / :class:`SendResponse` is never changed
afterwards by anyone: the owner adds the Via to a copy, and a retry is a new request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .message import Request, Response
from .uri import SipUri

__all__ = ["SendRequest", "SendResponse", "SendCancel", "AbortRequest", "StartTimer",
           "StopTimer", "Emit", "BindDialog", "UnbindDialog", "Action", "DialogId"]

DialogId = tuple[str, str, str]
"""(Call-ID, local tag, remote tag)."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``request`` (complete but for its top Via) towards ``target``.

    The owner resolves ``target`` (RFC 3263) with ``transport`` as the default transport,
    adds ``Via: SIP/2.0/<T> <us>;branch=<branch>;rport`` to a copy and starts a client
    transaction whose responses and timeout come back to the sender. ``stateless`` (the
    ACK of a 2xx) sends it once with no transaction. Sending the same branch again sends
    the same Via: a CANCEL and a resent ACK rely on that.
    """

    request: Request
    target: SipUri
    branch: str
    transport: str | None = None
    stateless: bool = False


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Send ``response`` through the server transaction of the request it answers (found
    by its top Via and CSeq method); with none left, back along the Via."""

    response: Response


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Send a CANCEL for our INVITE with CSeq ``cseq`` (built from its client transaction,
    so it carries the same Via). Nothing happens if that transaction has ended."""

    cseq: int


@dataclass(frozen=True, slots=True)
class AbortRequest:
    """Stop the client transaction of our request ``method``/``cseq`` quietly: no more
    retransmissions, no timeout reported. A later response arrives as a stray one."""

    cseq: int
    method: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)arm the sender's timer ``key`` for the absolute time ``deadline`` (the clock
    of the ``now`` values passed in); when it fires, call ``on_timer(key, now)``."""

    key: str
    deadline: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    key: str


@dataclass(frozen=True, slots=True)
class Emit:
    """Report ``event`` (a ``sip.events`` dataclass) to whoever listens to the sender."""

    event: object


@dataclass(frozen=True, slots=True)
class BindDialog:
    """Route in-dialog requests (and stray responses) for ``dialog_id`` to the sender."""

    dialog_id: DialogId


@dataclass(frozen=True, slots=True)
class UnbindDialog:
    dialog_id: DialogId


Action = (SendRequest | SendResponse | SendCancel | AbortRequest | StartTimer | StopTimer
          | Emit | BindDialog | UnbindDialog)


@dataclass
class TimerSet:
    """The timers a machine has armed, so it can stop them all when its reason goes away."""

    running: dict[str, float] = field(default_factory=dict)

    def start(self, key: str, deadline: float) -> StartTimer:
        self.running[key] = deadline
        return StartTimer(key, deadline)

    def stop(self, *keys: str) -> list[StopTimer]:
        return [StopTimer(k) for k in keys if self.running.pop(k, None) is not None]

    def stop_all(self, keep: "set[str] | tuple[str, ...]" = ()) -> list[StopTimer]:
        stops = [StopTimer(k) for k in self.running if k not in keep]
        self.running = {k: v for k, v in self.running.items() if k in keep}
        return stops

    def fired(self, key: str) -> bool:
        """True if ``key`` was armed (it is now consumed): a stale firing is ignored."""
        return self.running.pop(key, None) is not None
