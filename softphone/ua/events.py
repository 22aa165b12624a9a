"""The phone's public events: frozen dataclasses on the bus, one JSON object each.

Every face sees the same events: the CLI prints them (``--events jsonl``: one object per
line with ``event`` and ``t``), the TUI turns them into Textual messages, ``softphone ctl
events`` streams them. High-rate ones (live call statistics, levels, SIP messages) go only
to subscribers that ask for them. Names and fields are a contract (DESIGN §3 and the
README); add, never rename.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Event", "Listening", "Registering", "Registered", "RegistrationFailed", "Unregistered",
    "Calling", "Incoming", "Ringing", "EarlyMedia", "Answered", "Dtmf", "Hold", "Mute", "Ended",
    "CallStats", "Levels", "SipMessage", "Notice", "EVENT_TYPES",
]


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = ""
    high_rate: ClassVar[bool] = False  # only to subscribers that ask for them
    jsonl: ClassVar[bool] = True       # part of --events jsonl
    omit_none: ClassVar[tuple[str, ...]] = ()  # optional fields left out when None
    rename: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.omit_none:
                continue
            out[self.rename.get(f.name, f.name)] = value
        return out


@dataclass(frozen=True)
class Listening(Event):
    name: ClassVar[str] = "listening"
    address: str
    port: int
    control: str | None = None  # the control socket, when one listens
    omit_none: ClassVar[tuple[str, ...]] = ("control",)


@dataclass(frozen=True)
class Registering(Event):
    name: ClassVar[str] = "registering"
    account: str


@dataclass(frozen=True)
class Registered(Event):
    name: ClassVar[str] = "registered"
    account: str
    expires: int


@dataclass(frozen=True)
class RegistrationFailed(Event):
    name: ClassVar[str] = "registration_failed"
    account: str
    status: int | None
    reason: str


@dataclass(frozen=True)
class Unregistered(Event):
    name: ClassVar[str] = "unregistered"
    account: str


@dataclass(frozen=True)
class Calling(Event):
    """We sent an INVITE (or are about to): the call exists and can be hung up."""

    name: ClassVar[str] = "calling"
    call_id: str
    to: str
    account: str | None = None


@dataclass(frozen=True)
class Incoming(Event):
    name: ClassVar[str] = "incoming"
    call_id: str
    from_: str
    to: str
    display_name: str | None = None
    account: str | None = None
    rename: ClassVar[dict[str, str]] = {"from_": "from"}


@dataclass(frozen=True)
class Ringing(Event):
    name: ClassVar[str] = "ringing"
    call_id: str


@dataclass(frozen=True)
class EarlyMedia(Event):
    name: ClassVar[str] = "early_media"
    call_id: str
    codec: str | None


@dataclass(frozen=True)
class Answered(Event):
    name: ClassVar[str] = "answered"
    call_id: str
    codec: str | None
    account: str | None = None


@dataclass(frozen=True)
class Dtmf(Event):
    name: ClassVar[str] = "dtmf"
    call_id: str
    digit: str


@dataclass(frozen=True)
class Hold(Event):
    """Who holds the call now: ``local`` (we do), ``remote`` (the far end does)."""

    name: ClassVar[str] = "hold"
    call_id: str
    local: bool
    remote: bool


@dataclass(frozen=True)
class Mute(Event):
    name: ClassVar[str] = "mute"
    call_id: str
    muted: bool


@dataclass(frozen=True)
class Ended(Event):
    name: ClassVar[str] = "ended"
    call_id: str
    reason: str  # hangup | remote-hangup | cancelled | rejected | timeout | error
    status: int | None = None
    phrase: str | None = None
    duration: float = 0.0
    rtp: dict[str, Any] = field(default_factory=dict)
    account: str | None = None
    omit_none: ClassVar[tuple[str, ...]] = ("status", "phrase")


@dataclass(frozen=True)
class CallStats(Event):
    """Once a second for live calls: what the call list shows."""

    name: ClassVar[str] = "call_stats"
    high_rate: ClassVar[bool] = True
    call_id: str
    duration: float
    sent: int
    received: int
    lost: int
    loss_pct: float
    jitter_ms: float
    rtt_ms: float | None
    playout_ms: float
    codec: str | None


@dataclass(frozen=True)
class Levels(Event):
    """Five times a second for live calls: microphone and speaker levels (dBFS)."""

    name: ClassVar[str] = "levels"
    high_rate: ClassVar[bool] = True
    call_id: str
    input_dbfs: float | None
    output_dbfs: float | None


@dataclass(frozen=True)
class SipMessage(Event):
    """Every SIP message sent or received (the TUI's trace; never in JSON lines)."""

    name: ClassVar[str] = "sip_message"
    high_rate: ClassVar[bool] = True
    jsonl: ClassVar[bool] = False
    direction: str  # sent | received
    proto: str
    peer: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should know that is not a failure (audio fell back to silence)."""

    name: ClassVar[str] = "notice"
    text: str
    severity: str = "warning"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls for cls in (Listening, Registering, Registered, RegistrationFailed,
                              Unregistered, Calling, Incoming, Ringing, EarlyMedia, Answered,
                              Dtmf, Hold, Mute, Ended, CallStats, Levels, SipMessage, Notice)}
