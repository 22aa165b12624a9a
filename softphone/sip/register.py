"""The registration client (RFC 3261 §10.2), sans-IO: REGISTER, refresh, unregister.

States: ``unregistered`` → ``registering`` → ``registered`` (a refresh timer before the
granted expiry) or ``failed`` (with the status and a reason a user can act on; retried
after a back-off, or the 503's Retry-After). Digest challenges go through the account's
:class:`~softphone.sip.challenge.Authenticator`; the chain is kept across refreshes so a
refresh carries credentials at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import Action, Emit, SendRequest, TimerSet
from .caps import Capabilities
from .challenge import AuthFailure, Authenticator
from .errors import SipParseError
from .events import Registered, Registering, RegistrationFailed, Unregistered
from .ids import new_branch, new_call_id, new_tag
from .message import Headers, Request, Response
from .uri import SipUri

__all__ = ["RegistrationClient", "RegistrationOptions", "RETRY_AFTER_FAILURE", "refresh_delay"]

RETRY_AFTER_FAILURE = (5.0, 15.0, 30.0, 60.0, 120.0)


def refresh_delay(granted: int) -> float:
    """Refresh well before expiry: halfway for short leases, a minute early for long."""
    if granted <= 120:
        return max(1.0, granted / 2)
    return float(granted - 60)


@dataclass
class RegistrationOptions:
    aor: SipUri                  # whose binding this is (From and To)
    registrar: SipUri            # the Request-URI
    target: SipUri               # first hop: the outbound proxy, else the registrar
    contact: SipUri              # what we register
    expires: int = 600
    transport: str | None = None
    routes: list[str] = field(default_factory=list)  # pre-loaded Route (outbound proxy ;lr)
    user_agent: str | None = None
    caps: Capabilities = field(default_factory=Capabilities)


class RegistrationClient:
    def __init__(self, options: RegistrationOptions, authenticator: Authenticator | None = None,
                 *, call_id: str | None = None) -> None:
        self.options = options
        self.authenticator = authenticator
        self.call_id = call_id or new_call_id()
        self.local_tag = new_tag()
        self.cseq = 0
        self.state = "unregistered"
        self.status: int | None = None
        self.reason: str | None = None
        self.expires = options.expires  # asked for (423 can raise it)
        self.granted: int | None = None
        self.registered_until: float | None = None
        self.retry_after: int | None = None
        self.timers = TimerSet()
        self._chain = authenticator.new_chain() if authenticator else None
        self._failures = 0
        self._stopping = False
        self._sent: Request | None = None  # the REGISTER in flight
        self._sent_expires = 0
        self._stale: list[SipUri] = []  # contacts replaced: removed (expires=0) next time

    def __repr__(self) -> str:
        return f"<RegistrationClient {self.options.aor} {self.state}>"

    # -- commands ---------------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        """(Re-)register now."""
        self._stopping = False
        return self.timers.stop("refresh", "retry") + self._register(now, self.expires)

    def stop(self, now: float) -> list[Action]:
        """Unregister (Expires: 0) when registered or registering; else nothing."""
        self._stopping = True
        actions: list[Action] = list(self.timers.stop_all())
        if self.state not in ("registered", "registering"):
            return actions
        return actions + self._register(now, 0)

    def set_contact(self, contact: SipUri) -> None:
        """Our reachable address changed (a new local address, NAT): used from the next
        REGISTER on, which also removes the old binding (its Contact with expires=0), so
        calls are not forked to an address that no longer reaches us."""
        old = self.options.contact
        if str(old) != str(contact):
            if self.state in ("registered", "registering") and \
                    all(str(old) != str(c) for c in self._stale):
                self._stale.append(old)
            self._stale = [c for c in self._stale if str(c) != str(contact)]
        self.options.contact = contact

    def seconds_left(self, now: float) -> float | None:
        if self.state != "registered" or self.registered_until is None:
            return None
        return max(0.0, self.registered_until - now)

    # -- protocol ---------------------------------------------------------------------------
    def _build(self, expires: int) -> Request:
        o = self.options
        self.cseq += 1
        aor = o.aor.with_(params={}, headers={})
        headers = Headers()
        for route in o.routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={self.local_tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"<{o.contact}>;expires={expires}")
        for stale in self._stale:
            headers.add("Contact", f"<{stale}>;expires=0")
        headers.add("Expires", str(expires))
        headers.add("Allow", o.caps.allow)
        if o.caps.option_tags:
            headers.add("Supported", o.caps.supported)
        if o.user_agent:
            headers.add("User-Agent", o.user_agent)
        ruri = o.registrar.with_(params={k: v for k, v in o.registrar.params.items()
                                         if k == "transport"}, headers={})
        return Request("REGISTER", str(ruri), headers)

    def _register(self, now: float, expires: int, request: Request | None = None) -> list[Action]:
        actions: list[Action] = []
        if expires and self.state not in ("registered", "registering"):
            self.state = "registering"
            actions.append(Emit(Registering()))
        if request is None:
            request = Authenticator.preauthorize(self._build(expires), self._chain)
        self._sent = request
        self._sent_expires = expires
        actions.append(SendRequest(request, self.options.target, new_branch(),
                                   self.options.transport))
        return actions

    def on_response(self, response: Response, now: float) -> list[Action]:
        sent = self._sent
        try:
            if sent is None or response.cseq[0] != sent.cseq[0] or response.status < 200:
                return []
        except SipParseError:
            return []
        expires = self._sent_expires
        status = response.status
        self._sent = None
        if status in (401, 407):
            try:
                if self.authenticator is None:
                    raise AuthFailure(status, "the server asked for credentials but the "
                                              "account has no password")
                self.cseq += 1
                retry = self.authenticator.retry(sent, response, self._chain, cseq=self.cseq)
            except AuthFailure as exc:
                return self._fail(now, status, exc.reason, expires)
            return self._register(now, expires, retry)
        if status == 423 and expires:
            min_expires = response.header_int("Min-Expires") or 0
            if min_expires > expires:
                self.expires = min_expires
                return self._register(now, min_expires)
        if 200 <= status < 300:
            if self._chain is not None:
                self._chain.accepted()
            self._stale.clear()
            if expires == 0:
                self.state = "unregistered"
                self.registered_until = None
                return [Emit(Unregistered())]
            granted = self._granted(response, expires)
            self.granted = granted
            self._failures = 0
            self.status, self.reason, self.retry_after = status, response.reason, None
            self.registered_until = now + granted
            self.state = "registered"
            actions: list[Action] = [Emit(Registered(granted, response))]
            if not self._stopping:
                actions.append(self.timers.start("refresh", now + refresh_delay(granted)))
            return actions
        if status == 503:
            return self._fail(now, status, response.reason, expires,
                              retry_after=response.header_int("Retry-After"))
        return self._fail(now, status, response.reason, expires)

    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]:
        if self._sent is None or request.cseq[0] != self._sent.cseq[0]:
            return []
        expires = self._sent_expires
        self._sent = None
        if reason:
            return self._fail(now, None, reason, expires)
        return self._fail(now, 408, "Request Timeout", expires)

    def on_timer(self, key: str, now: float) -> list[Action]:
        if not self.timers.fired(key) or self._stopping:
            return []
        if key in ("refresh", "retry"):
            return self._register(now, self.expires)
        return []

    def _granted(self, response: Response, asked: int) -> int:
        """The expiry the registrar granted to OUR contact (§10.2.4)."""
        ours = self.options.contact
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            uri = contact.uri
            if uri.host.lower() == ours.host.lower() and uri.port == ours.port and \
                    uri.user == ours.user:
                value = contact.params.get("expires")
                if value and value.isdigit():
                    return int(value)
        value = response.header_int("Expires")
        return value if value is not None else asked

    def _fail(self, now: float, status: int | None, reason: str, expires: int,
              retry_after: int | None = None) -> list[Action]:
        if expires == 0:  # the unregister failed: nothing more to do
            self.state = "unregistered"
            return [Emit(Unregistered())]
        self.status, self.reason, self.retry_after = status, reason, retry_after
        self.state = "failed"
        self.registered_until = None
        delay = float(retry_after or RETRY_AFTER_FAILURE[min(self._failures,
                                                             len(RETRY_AFTER_FAILURE) - 1)])
        self._failures += 1
        self._chain = self.authenticator.new_chain() if self.authenticator else None
        actions: list[Action] = [Emit(RegistrationFailed(status, reason, delay, retry_after))]
        if not self._stopping:
            actions.append(self.timers.start("retry", now + delay))
        return actions
