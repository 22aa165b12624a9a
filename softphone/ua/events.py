"""The phone's public events: frozen dataclasses on the bus, one JSON object each.

Every face sees the same events: the CLI prints them (``--events jsonl``: one object per
line with ``event`` and ``t``), the TUI turns them into Textual messages, ``softphone ctl
events`` streams them. High-rate ones (live call statistics, levels, SIP messages) go only
to subscribers that ask for them. Names and fields are a contract (DESIGN §3 and the
README); add, never rename.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Event", "AccountEvent", "CallEvent", "Listening", "Registering", "Registered",
    "RegistrationFailed", "Unregistered",
    "PublicAddress",
    "Calling", "Incoming", "Ringing", "EarlyMedia", "Answered", "Dtmf", "Hold", "Mute", "Ended",
    "Redirected", "Transfer", "Conference", "Dnd", "CallStats", "Levels", "SipMessage",
    "Step", "CallVerdict", "Summary", "Notice", "EVENT_TYPES", "CallTally",
]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class Event:
    """``name`` is the class name in snake case: ``RegistrationFailed`` → registration_failed."""

    name: ClassVar[str] = ""
    high_rate: ClassVar[bool] = False  # only to subscribers that ask for them
    jsonl: ClassVar[bool] = True       # part of --events jsonl
    omit_none: ClassVar[tuple[str, ...]] = ()  # optional fields left out when None
    rename: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every event class is a frozen dataclass named after itself (no decorator to
        forget)."""
        super().__init_subclass__(**kwargs)
        cls.name = _snake(cls.__name__)
        dataclass(frozen=True)(cls)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.omit_none:
                continue
            out[self.rename.get(f.name, f.name)] = value
        return out


class Listening(Event):
    address: str
    port: int
    control: str | None = None  # the control socket, when one listens
    tls: str | None = None      # host:port of the TLS listener, when one listens
    omit_none: ClassVar[tuple[str, ...]] = ("control", "tls")


class AccountEvent(Event):
    """About one account's registration."""

    account: str


class Registering(AccountEvent):
    """A REGISTER is on its way (once per attempt)."""


class Registered(AccountEvent):
    expires: int


class RegistrationFailed(AccountEvent):
    status: int | None
    reason: str


class PublicAddress(AccountEvent):
    """Our address as the outside sees it changed: ``source`` is ``rport`` (the
    registrar's Via received/rport) or ``stun``; the Contact follows it."""

    address: str
    source: str
    previous: str | None = None


class Unregistered(AccountEvent):
    """The binding is gone (Expires: 0 answered, or given up)."""


class CallEvent(Event):
    """About one call; ``call_id`` comes first in every one."""

    call_id: str


class Calling(CallEvent):
    """We sent an INVITE (or are about to): the call exists and can be hung up."""

    to: str
    account: str | None = None


class Incoming(CallEvent):
    """A call rings in. ``call_waiting``: during another call (a tone, not the ring);
    ``dnd``: do-not-disturb refuses it at once (an ``ended`` follows); ``replaces``: it
    takes over that call (an attended transfer, RFC 3891) and is answered at once."""

    from_: str
    to: str
    display_name: str | None = None
    account: str | None = None
    call_waiting: bool | None = None
    dnd: bool | None = None
    replaces: str | None = None
    rename: ClassVar[dict[str, str]] = {"from_": "from"}
    omit_none: ClassVar[tuple[str, ...]] = ("call_waiting", "dnd", "replaces")


class Ringing(CallEvent):
    """The far end rings (180/183)."""


class EarlyMedia(CallEvent):
    codec: str | None


class Answered(CallEvent):
    codec: str | None
    account: str | None = None
    srtp: str | None = None  # the SRTP suite ("AES_CM_128_HMAC_SHA1_80"), None: plain RTP


class Dtmf(CallEvent):
    digit: str


class Hold(CallEvent):
    """Who holds the call now: ``local`` (we do), ``remote`` (the far end does)."""

    local: bool
    remote: bool


class Mute(CallEvent):
    muted: bool


class Ended(CallEvent):
    reason: str  # hangup | remote-hangup | cancelled | rejected | timeout | error
    status: int | None = None
    phrase: str | None = None
    duration: float = 0.0
    rtp: dict[str, Any] = field(default_factory=dict)
    account: str | None = None
    omit_none: ClassVar[tuple[str, ...]] = ("status", "phrase")


class Redirected(CallEvent):
    """A 3xx (or a failed redirect target): the call goes on to ``target`` (RFC 3261
    §8.1.3.4); ``contacts`` are the 3xx's, by q-value."""

    status: int
    target: str
    contacts: list[str] = field(default_factory=list)


class Transfer(CallEvent):
    """A transfer of this call. ``role``: transferor (we sent the REFER) or transferee
    (the far end asked us to call ``target``). ``state``: trying (REFER sent), accepted
    (202), requested (transferee: calling the target), refused, progress (the new call's
    1xx), succeeded, failed. ``status``: the SIP status of that step (the new call's,
    from the NOTIFY's sipfrag); ``new_call_id``: the transferee's call to the target."""

    target: str
    state: str
    status: int | None = None
    role: str = "transferor"
    new_call_id: str | None = None
    reason: str | None = None
    omit_none: ClassVar[tuple[str, ...]] = ("new_call_id", "reason")


class Conference(Event):
    """The local conference: ``state`` joined (these calls hear each other and us), left
    (a call went, the others stay mixed), split (each call on its own again)."""

    call_ids: list[str]
    state: str


class Dnd(Event):
    """Do not disturb switched on or off; incoming calls get ``status`` while on."""

    enabled: bool
    status: int


class CallStats(CallEvent):
    """Once a second for live calls: what the call list shows."""

    high_rate: ClassVar[bool] = True
    duration: float
    sent: int
    received: int
    lost: int
    loss_pct: float
    jitter_ms: float
    rtt_ms: float | None
    playout_ms: float
    codec: str | None


class Levels(CallEvent):
    """Five times a second for live calls: microphone and speaker levels (dBFS)."""

    high_rate: ClassVar[bool] = True
    input_dbfs: float | None
    output_dbfs: float | None


class SipMessage(Event):
    """Every SIP message sent or received (the TUI's trace; never in JSON lines)."""

    high_rate: ClassVar[bool] = True
    jsonl: ClassVar[bool] = False
    direction: str  # sent | received
    proto: str
    peer: str
    data: bytes = field(repr=False)


class Step(CallEvent):
    """One step of a scenario (``--scenario``) done: its verdict and what was measured."""

    call: int               # the call's number in this run, from 1
    index: int              # the step's number in the scenario, from 1
    step: str               # its kind (expect_tone, dtmf …)
    label: str              # its name in the scenario (the kind unless named)
    result: str             # passed | failed | skipped
    value: str | None       # what was measured or done
    message: str | None     # why it failed or was skipped
    elapsed: float          # seconds it took
    omit_none: ClassVar[tuple[str, ...]] = ("value", "message")


class CallVerdict(CallEvent):
    """A scenario's call is over: passed when every step passed."""

    call: int
    result: str             # passed | failed
    steps: int              # how many steps ran
    failed: int             # how many of them failed
    duration: float
    message: str | None = None  # the first failure
    omit_none: ClassVar[tuple[str, ...]] = ("message",)


class Summary(Event):
    """The end of a scenario run: every call's verdict counted."""

    scenario: str
    calls: int
    passed: int
    failed: int
    duration: float


class Notice(Event):
    """Something the user should know that is not a failure (audio fell back to silence)."""

    text: str
    severity: str = "warning"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls for cls in (Listening, Registering, Registered, RegistrationFailed,
                              Unregistered, PublicAddress, Calling, Incoming, Ringing,
                              EarlyMedia, Answered, Dtmf, Hold, Mute, Ended, Redirected,
                              Transfer, Conference, Dnd, CallStats, Levels, SipMessage, Step,
                              CallVerdict, Summary, Notice)}


class CallTally:
    """How many incoming calls have ended, and whether any call is still up: what
    ``answer --max-calls N`` waits for. Only incoming calls count (the calls a transfer
    makes us place do not), and the job ends when the Nth has ended and no other call (a
    transferred one, a second line) is still up. Fed event names and call ids, so it
    reads bus events and the JSON lines of ``--workers`` alike."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.ended = 0
        self._incoming: set[str] = set()
        self._up: set[str] = set()

    def feed(self, name: str, call_id: str | None) -> bool:
        """True once the limit is reached (and stays so)."""
        if call_id is not None:
            if name in ("incoming", "calling"):
                self._up.add(call_id)
                if name == "incoming":
                    self._incoming.add(call_id)
            elif name == "ended":
                self._up.discard(call_id)
                if call_id in self._incoming:
                    self._incoming.discard(call_id)
                    self.ended += 1
        return self.done

    @property
    def done(self) -> bool:
        return bool(self.limit) and self.ended >= self.limit and not self._up
