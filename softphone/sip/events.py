"""What the pure SIP machines report (inside :class:`~softphone.sip.actions.Emit`).

These are protocol facts for the UA layer above, not the public events of the phone
(those are ``softphone.ua.events``): the UA turns them into policy and public events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .message import Request, Response

if TYPE_CHECKING:
    from .sdp import NegotiatedMedia
    from .subscription import Notifier
    from .uri import NameAddr

__all__ = [
    "CallProgress", "MediaAgreed", "CallAnswered", "CallConfirmed", "CallEnded",
    "ReinviteResult", "RequestResult", "InfoReceived", "SessionReleased", "Redirected",
    "ReferReceived", "ReferResult",
    "Registering", "Registered", "RegistrationFailed", "Unregistered",
    "SubscriptionState", "NotifyReceived",
]


# -- INVITE session ----------------------------------------------------------------------
@dataclass(frozen=True)
class CallProgress:
    """A provisional response to our INVITE (180 Ringing, 183 Session Progress …)."""

    status: int
    reason: str
    response: Response = field(repr=False, compare=False)


@dataclass(frozen=True)
class MediaAgreed:
    """An offer/answer exchange completed: this is what the media layer now does."""

    media: NegotiatedMedia
    early: bool = False  # from a provisional response (early media)
    remote_hold: bool = False  # the far end's last offer holds us


@dataclass(frozen=True)
class CallAnswered:
    """The call is answered: a 2xx to our INVITE arrived, or we sent ours."""


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK completed the three-way handshake (UAS side)."""


@dataclass(frozen=True)
class CallEnded:
    """The session is over. ``reason``: hangup (we sent BYE), remote-hangup, cancelled,
    rejected (a 3xx–6xx final: status and phrase given), timeout, error."""

    reason: str
    status: int | None = None
    phrase: str | None = None


@dataclass(frozen=True)
class ReinviteResult:
    """Our re-INVITE (or UPDATE with an offer: ``method``) finished: hold, resume, or a
    session ``refresh`` (RFC 4028). On failure the session is as it was."""

    ok: bool
    status: int
    reason: str
    refresh: bool = False
    method: str = "INVITE"


@dataclass(frozen=True)
class RequestResult:
    """A non-INVITE request we sent in the dialog (BYE, INFO …) got its final answer
    (408 when it timed out)."""

    method: str
    status: int
    reason: str


@dataclass(frozen=True)
class InfoReceived:
    """An INFO in the dialog (already answered 200)."""

    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class Redirected:
    """A 3xx to our INVITE: where the callee says to go instead (by q-value, highest
    first). Also a later failure (no contacts) while following redirects, so the UA can
    try the next target. The session waits for ``retarget`` or ``give_up``."""

    status: int
    reason: str
    contacts: tuple[NameAddr, ...]


@dataclass(frozen=True)
class ReferReceived:
    """The far end asks us to call ``target`` (RFC 3515), already answered: 202 when
    ``accepted`` (then ``notifier``, unless it asked for no subscription, RFC 4488, is
    the implicit subscription to report the new call's progress on), else 603."""

    target: NameAddr
    referred_by: str | None
    replaces: str | None     # the Replaces header for the new INVITE (attended transfer)
    accepted: bool
    notifier: "Notifier | None" = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ReferResult:
    """Our REFER got its final answer (408: none came). ``subscription`` False: the far
    end accepted without an implicit subscription (RFC 4488 Refer-Sub: false)."""

    status: int
    reason: str
    subscription: bool = True


@dataclass(frozen=True)
class SessionReleased:
    """The ended session stopped absorbing retransmissions: its owner may forget it."""


# -- registration -----------------------------------------------------------------------
@dataclass(frozen=True)
class Registering:
    pass


@dataclass(frozen=True)
class Registered:
    expires: int  # what the registrar granted our contact
    response: Response = field(repr=False, compare=False)


@dataclass(frozen=True)
class RegistrationFailed:
    status: int | None  # None: no answer we could read (timeout text, transport error)
    reason: str
    retry_in: float  # seconds until the next attempt
    retry_after: int | None = None  # from a 503's Retry-After


@dataclass(frozen=True)
class Unregistered:
    pass


# -- subscriptions ----------------------------------------------------------------------
@dataclass(frozen=True)
class SubscriptionState:
    """The subscription changed state: pending, active, or terminated (with reason)."""

    event: str
    state: str
    reason: str | None = None
    expires: int | None = None


@dataclass(frozen=True)
class NotifyReceived:
    event: str
    state: str  # the Subscription-State value: active, pending, terminated
    content_type: str | None
    body: bytes
    request: Request = field(repr=False, compare=False)
