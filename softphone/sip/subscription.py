"""SIP-specific event notification (RFC 6665), sans-IO: SUBSCRIBE/NOTIFY dialog usages.

:class:`Subscriber` is our side of a subscription (message-summary, presence, or the
implicit one a REFER creates, RFC 3515 §2.4.4); :class:`Notifier` is the far end's
subscription to us (a SUBSCRIBE we accepted, or the implicit one of a REFER we accepted).
Both may share the dialog of an INVITE session. The :class:`PackageRegistry` holds the
event packages we know; a SUBSCRIBE or NOTIFY for another gets 489 Bad Event (§8.2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .actions import Action, BindDialog, Emit, SendRequest, SendResponse, TimerSet, UnbindDialog
from .caps import Capabilities
from .challenge import AuthFailure, Authenticator
from .dialog import Dialog, DialogError
from .errors import SipParseError
from .events import NotifyReceived, SubscriptionState
from .ids import new_branch, new_call_id, new_tag
from .message import Headers, Request, Response, make_response
from .transaction import TimerConfig
from .uri import NameAddr, SipUri

__all__ = ["EventPackage", "PackageRegistry", "Subscriber", "Notifier", "SubscriptionOptions",
           "parse_subscription_state", "event_of"]

REFRESH_MARGIN = 0.1  # refresh when 90 % of the granted time has passed (min 5 s early)


@dataclass(frozen=True)
class EventPackage:
    name: str                         # "message-summary", "presence", "refer" …
    accept: tuple[str, ...] = ()      # NOTIFY body types
    default_expires: int = 3600
    min_expires: int = 60
    subscribable: bool = True         # False: only implicit subscriptions (refer)


class PackageRegistry:
    def __init__(self) -> None:
        self._packages: dict[str, EventPackage] = {}

    def register(self, package: EventPackage, caps: Capabilities | None = None) -> None:
        self._packages[package.name.lower()] = package
        if caps is not None:
            caps.add_event(package.name)
            caps.add_method("SUBSCRIBE", "NOTIFY")

    def get(self, name: str | None) -> EventPackage | None:
        return self._packages.get((name or "").lower())

    def names(self) -> list[str]:
        return [p.name for p in self._packages.values()]


def event_of(request: Request) -> tuple[str, str | None]:
    """(package, id) of an Event header (§8.2.1), ``("", None)`` when absent."""
    value = request.headers.get("Event") or ""
    package, _, params = value.partition(";")
    ident = None
    for param in params.split(";"):
        name, _, val = param.strip().partition("=")
        if name.lower() == "id":
            ident = val.strip()
    return package.strip().lower(), ident


_STATE = re.compile(r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*((?:;[^;]*)*)")


def parse_subscription_state(value: str | None) -> tuple[str, dict[str, str]]:
    """``active;expires=600`` → ("active", {"expires": "600"}). Unknown states are
    treated as 'active' by callers only if they know better; we return them as is."""
    m = _STATE.fullmatch(value or "")
    if not m:
        return "", {}
    params: dict[str, str] = {}
    for part in m.group(2).split(";"):
        name, _, val = part.strip().partition("=")
        if name:
            params[name.lower()] = val.strip().strip('"')
    return m.group(1).lower(), params


@dataclass
class SubscriptionOptions:
    contact: str
    transport: str = "udp"
    timers: TimerConfig = field(default_factory=TimerConfig)
    caps: Capabilities = field(default_factory=Capabilities)
    user_agent: str | None = None


class _Usage:
    """What subscriber and notifier share: the dialog, timers, request building."""

    def __init__(self, package: EventPackage, options: SubscriptionOptions,
                 event_id: str | None) -> None:
        self.package = package
        self.options = options
        self.event_id = event_id
        self.dialog: Dialog | None = None
        self.state = "init"  # init | pending | active | terminated
        self.reason: str | None = None
        self.timers = TimerSet()

    @property
    def event_header(self) -> str:
        return self.package.name + (f";id={self.event_id}" if self.event_id else "")

    def _matches(self, request: Request) -> bool:
        package, ident = event_of(request)
        return package == self.package.name.lower() and ident == self.event_id

    def _finish(self, request: Request) -> Request:
        if self.options.user_agent and "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.options.user_agent)
        return request

    def _send(self, request: Request, target: SipUri | None = None) -> SendRequest:
        if target is None:
            assert self.dialog is not None
            target = self.dialog.next_hop()
        return SendRequest(self._finish(request), target, new_branch(), self.options.transport)

    def _respond(self, request: Request, status: int, reason: str | None = None,
                 extra: list[tuple[str, str]] | None = None) -> SendResponse:
        items = list(extra or [])
        if 200 <= status < 300 and request.method == "SUBSCRIBE":
            items.append(("Contact", self.options.contact))
        tag = self.dialog.local_tag if self.dialog else new_tag()
        response = make_response(request, status, reason, to_tag=tag, extra=items)
        if self.options.user_agent:
            response.headers.add("Server", self.options.user_agent)
        return SendResponse(response)

    def _terminate(self, reason: str | None, *, unbind: bool = True) -> list[Action]:
        if self.state == "terminated":
            return []
        self.state, self.reason = "terminated", reason
        actions: list[Action] = list(self.timers.stop_all())
        actions.append(Emit(SubscriptionState(self.package.name, "terminated", reason)))
        if unbind and self.dialog is not None:
            actions.append(UnbindDialog(self.dialog.id))
        return actions

    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]:
        return self._terminate("timeout")


class Subscriber(_Usage):
    """Our subscription: SUBSCRIBE, refresh before expiry, NOTIFYs answered and reported.

    ``implicit`` subscriptions (REFER) send no SUBSCRIBE: they share ``dialog`` and live
    until a NOTIFY says ``terminated`` or the expiry passes.
    """

    def __init__(self, package: EventPackage, options: SubscriptionOptions, *,
                 request_uri: SipUri | None = None, local: NameAddr | None = None,
                 remote: NameAddr | None = None, target: SipUri | None = None,
                 expires: int | None = None, authenticator: Authenticator | None = None,
                 dialog: Dialog | None = None, implicit: bool = False,
                 event_id: str | None = None, call_id: str | None = None) -> None:
        super().__init__(package, options, event_id)
        self.request_uri = request_uri
        self.local = local
        self.remote = remote
        self.target = target
        self.expires = package.default_expires if expires is None else expires
        self.authenticator = authenticator
        self.dialog = dialog
        self.implicit = implicit
        self.call_id = dialog.call_id if dialog else (call_id or new_call_id())
        self.local_tag = dialog.local_tag if dialog else new_tag()
        self.cseq = 0
        self._sent: Request | None = None
        self._chain = authenticator.new_chain() if authenticator else None
        self._authed = False
        self.granted: int | None = None

    def claims(self, request: Request) -> bool:
        return request.method == "NOTIFY" and self._matches(request)

    # -- commands ---------------------------------------------------------------------------
    def subscribe(self, now: float) -> list[Action]:
        """Send the initial SUBSCRIBE (or, implicit, just start waiting for NOTIFYs)."""
        if self.implicit:
            assert self.dialog is not None
            self.state = "pending"
            return [BindDialog(self.dialog.id),
                    self.timers.start("expire", now + self.expires)]
        actions: list[Action] = [BindDialog((self.call_id, self.local_tag, ""))]
        return actions + self._subscribe(now, self.expires)

    def unsubscribe(self, now: float) -> list[Action]:
        if self.state == "terminated":
            return []
        if self.implicit or self.dialog is None:
            return self._terminate("unsubscribed")
        return self._subscribe(now, 0)

    def _subscribe(self, now: float, expires: int) -> list[Action]:
        headers = [("Event", self.event_header), ("Expires", str(expires)),
                   ("Allow", self.options.caps.allow)]
        if self.package.accept:
            headers.append(("Accept", ", ".join(self.package.accept)))
        if self.dialog is not None:
            request = self.dialog.create_request("SUBSCRIBE", contact=self.options.contact,
                                                 extra=headers)
            target = None
        else:
            assert self.request_uri and self.local and self.remote and self.target
            self.cseq += 1
            h = Headers()
            h.add("Max-Forwards", "70")
            h.add("From", str(self.local.with_tag(self.local_tag)))
            h.add("To", str(self.remote))
            h.add("Call-ID", self.call_id)
            h.add("CSeq", f"{self.cseq} SUBSCRIBE")
            h.add("Contact", self.options.contact)
            for name, value in headers:
                h.add(name, value)
            request = Request("SUBSCRIBE", str(self.request_uri), h)
            target = self.target
        request = Authenticator.preauthorize(request, self._chain)
        self._sent = request
        self._authed = False
        return [self._send(request, target)]

    # -- inputs -----------------------------------------------------------------------------
    def on_response(self, response: Response, now: float) -> list[Action]:
        sent = self._sent
        try:
            if sent is None or response.status < 200 or response.cseq != sent.cseq:
                return []
        except SipParseError:
            return []
        self._sent = None
        status = response.status
        expires_asked = int(sent.headers.get("Expires") or 0)
        if status in (401, 407) and not self._authed and self.authenticator is not None:
            try:
                if self.dialog is not None:
                    self.dialog.local_cseq += 1
                    cseq = self.dialog.local_cseq
                else:
                    self.cseq += 1
                    cseq = self.cseq
                retry = self.authenticator.retry(sent, response, self._chain, cseq=cseq)
            except AuthFailure as exc:
                return self._terminate(f"{status} {exc.reason}")
            self._sent, self._authed = retry, True
            return [self._send(retry, None if self.dialog is not None else self.target)]
        if status == 423:
            minimum = response.header_int("Min-Expires") or 0
            if minimum > expires_asked:
                self.expires = minimum
                return self._subscribe(now, minimum)
        if 200 <= status < 300:
            if expires_asked == 0:
                return []  # the final NOTIFY ends it (or the timer below)
            actions: list[Action] = []
            if self.dialog is None:
                try:
                    self.dialog = Dialog.from_uac(sent, response)
                except SipParseError:
                    return self._terminate("2xx without a To tag")
                actions.append(BindDialog(self.dialog.id))
            granted = response.header_int("Expires")
            self.granted = expires_asked if granted is None else min(granted, expires_asked)
            if self.state == "init":
                self.state = "pending"
            return actions + self._arm_refresh(now, self.granted)
        # 481 to a refresh, 489 Bad Event, 403 … : the subscription is over (§4.1.2.2)
        return self._terminate(f"{status} {response.reason}")

    def on_request(self, request: Request, now: float) -> list[Action]:
        if request.method != "NOTIFY":
            return [self._respond(request, 405)]
        actions: list[Action] = []
        if self.dialog is None:
            # the NOTIFY may arrive before the 2xx to our SUBSCRIBE (§4.1.2.4)
            try:
                self.dialog = Dialog.from_uas(request, self.local_tag, local_cseq=self.cseq)
            except (DialogError, SipParseError) as exc:
                return [self._respond(request, 400, str(exc)[:80])]
            self.dialog.state = "confirmed"
            actions.append(BindDialog(self.dialog.id))
        else:
            try:
                other_fork = request.from_.tag != self.dialog.remote_tag
            except SipParseError:
                other_fork = True
            if other_fork:
                # a forked SUBSCRIBE answered from a second place (§4.5.2): our packages
                # keep the first dialog; 481 ends the other fork's subscription (§4.1.3)
                return [self._respond(request, 481, "Subscription Does Not Exist")]
            try:
                self.dialog.on_request(request)
            except DialogError as exc:
                return [self._respond(request, exc.status, exc.reason)]
        state, params = parse_subscription_state(request.headers.get("Subscription-State"))
        if not state:
            return actions + [self._respond(request, 400, "Missing Subscription-State")]
        actions.append(self._respond(request, 200))
        actions.append(Emit(NotifyReceived(self.package.name, state, request.content_type,
                                           request.body, request)))
        if state == "terminated":
            return actions + self._terminate(params.get("reason"))
        if state != self.state and state in ("active", "pending"):
            self.state = state
            expires = params.get("expires")
            actions.append(Emit(SubscriptionState(self.package.name, state, None,
                                                  int(expires) if expires and expires.isdigit()
                                                  else None)))
        expires = params.get("expires")
        if expires and expires.isdigit():
            if self.implicit:
                actions.append(self.timers.start("expire", now + int(expires)))
            else:
                actions += self._arm_refresh(now, int(expires))
        return actions

    def on_timer(self, key: str, now: float) -> list[Action]:
        if not self.timers.fired(key) or self.state == "terminated":
            return []
        if key == "refresh":
            return self._subscribe(now, self.expires)
        if key == "expire":
            return self._terminate("timeout")
        return []

    def _arm_refresh(self, now: float, granted: int) -> list[Action]:
        if granted <= 0:
            return []
        margin = max(5.0, granted * REFRESH_MARGIN) if granted > 10 else granted / 2
        return [self.timers.start("refresh", now + granted - margin)]


class Notifier(_Usage):
    """Their subscription to us: NOTIFY on every change, refreshes answered, a final
    NOTIFY when it ends. For a REFER (implicit) it shares the INVITE's dialog."""

    def __init__(self, package: EventPackage, options: SubscriptionOptions, dialog: Dialog, *,
                 expires: int | None = None, event_id: str | None = None,
                 implicit: bool = False) -> None:
        super().__init__(package, options, event_id)
        self.dialog = dialog
        self.expires = package.default_expires if expires is None else expires
        self.implicit = implicit
        self.expires_at: float | None = None
        self._last_notify: Request | None = None

    @classmethod
    def from_subscribe(cls, package: EventPackage, options: SubscriptionOptions,
                       request: Request, local_tag: str | None = None) -> "Notifier":
        dialog = Dialog.from_uas(request, local_tag or new_tag())
        dialog.state = "confirmed"
        package_name, ident = event_of(request)
        asked = request.header_int("Expires")
        expires = package.default_expires if asked is None else asked
        return cls(package, options, dialog, expires=expires, event_id=ident)

    def claims(self, request: Request) -> bool:
        return request.method == "SUBSCRIBE" and self._matches(request)

    def accept(self, request: Request, now: float, *, status: int = 200) -> list[Action]:
        """Answer the SUBSCRIBE that created us (200, or 202 as RFC 3265 peers expect)."""
        expires = self.expires
        if 0 < expires < self.package.min_expires:
            return [self._respond(request, 423, "Interval Too Brief",
                                  extra=[("Min-Expires", str(self.package.min_expires))]),
                    *self._terminate("interval too brief", unbind=False)]
        self.state = "active" if expires else "terminated"
        actions: list[Action] = [BindDialog(self.dialog.id),
                                 self._respond(request, status, extra=[("Expires", str(expires))])]
        if expires:
            self.expires_at = now + expires
            actions.append(self.timers.start("expire", now + expires))
        return actions

    def start_implicit(self, now: float) -> list[Action]:
        """A REFER was accepted: the implicit subscription lives in its dialog."""
        self.state = "active"
        self.expires_at = now + self.expires
        return [BindDialog(self.dialog.id), self.timers.start("expire", now + self.expires)]

    def notify(self, now: float, body: bytes = b"", content_type: str | None = None, *,
               final: bool = False, reason: str = "noresource") -> list[Action]:
        """Send a NOTIFY with the current state (``final``: terminated;reason=…)."""
        if self.state == "terminated" and not final:
            return []
        if final:
            sub_state = f"terminated;reason={reason}"
        else:
            left = max(0, int((self.expires_at or now) - now))
            sub_state = f"{self.state};expires={left}"
        extra = [("Event", self.event_header), ("Subscription-State", sub_state)]
        if body:
            extra.append(("Content-Type", content_type or "application/octet-stream"))
        request = self.dialog.create_request("NOTIFY", contact=self.options.contact,
                                             extra=extra, body=body)
        self._last_notify = request
        actions: list[Action] = [self._send(request)]
        if final:
            actions += self._terminate(reason, unbind=not self.implicit)
        return actions

    def on_request(self, request: Request, now: float) -> list[Action]:
        if request.method != "SUBSCRIBE":
            return [self._respond(request, 405)]
        try:
            self.dialog.on_request(request)
        except DialogError as exc:
            return [self._respond(request, exc.status, exc.reason)]
        asked = request.header_int("Expires")
        expires = self.package.default_expires if asked is None else asked
        if 0 < expires < self.package.min_expires:
            return [self._respond(request, 423, "Interval Too Brief",
                                  extra=[("Min-Expires", str(self.package.min_expires))])]
        actions: list[Action] = [self._respond(request, 200, extra=[("Expires", str(expires))])]
        if expires == 0:
            return actions + self.notify(now, final=True, reason="timeout")
        self.expires = expires
        self.expires_at = now + expires
        return actions + [self.timers.start("expire", now + expires)]

    def on_response(self, response: Response, now: float) -> list[Action]:
        if response.status >= 300 and response.cseq[1] == "NOTIFY":
            if response.status in (481, 408) or response.status >= 500:
                return self._terminate(f"{response.status} {response.reason}")
        return []

    def on_timer(self, key: str, now: float) -> list[Action]:
        if not self.timers.fired(key) or self.state == "terminated":
            return []
        if key == "expire":
            return self.notify(now, final=True, reason="timeout")
        return []
