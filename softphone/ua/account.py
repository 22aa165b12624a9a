"""One ``[[accounts]]`` entry on the shared stack: identity, credentials, registration.

Every account lives on the same stack and socket; each registers and refreshes on its own
(the pure :class:`~softphone.sip.register.RegistrationClient` does the protocol). The
account also knows where its out-of-dialog requests go (DESIGN §3: the outbound proxy,
else the registrar for its own domain, else the target) and whether an incoming request
is addressed to it. The Contact it registers carries a random token in its user part:
a request to exactly that address came through the registrar (who else knows it?), which
is how the phone tells its own calls from a scanner's (the stranger policy, agent.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from typing import TYPE_CHECKING, Callable

from ..config import Account as AccountSettings
from ..sip import events as sev
from ..sip.challenge import Authenticator
from ..sip.message import Request
from ..sip.register import RegistrationClient, RegistrationOptions
from ..sip.uri import NameAddr, SipUri, parse_uri
from . import events as ev
from .resolver import ResolveError

if TYPE_CHECKING:
    from .stack import Stack

__all__ = ["Account", "contact_token", "CONTACT_SEED_ENV"]

log = logging.getLogger(__name__)

# processes that share one registration (the workers of answer --workers) share a seed,
# so that each knows the Contact the first one registered (softphone.workers sets it)
CONTACT_SEED_ENV = "SOFTPHONE_CONTACT_SEED"


def contact_token(account: str) -> str:
    """64 random bits for the Contact's user part (a scanner sweeping extensions never
    hits it): fresh per process, or derived from the shared seed when there is one."""
    seed = os.environ.get(CONTACT_SEED_ENV)
    if not seed:
        return secrets.token_hex(8)
    return hmac.new(seed.encode(), account.encode(), hashlib.sha256).hexdigest()[:16]


class Account:
    def __init__(self, stack: "Stack", settings: AccountSettings,
                 publish: Callable[[ev.Event], None]) -> None:
        self.stack = stack
        self.settings = settings
        self.name = settings.name
        self.publish = publish
        self.registration: RegistrationClient | None = None
        self.state = "unregistered"  # registering | registered | failed | unregistered
        self.status: int | None = None
        self.reason: str | None = None
        self._authenticator: Authenticator | None = None
        self._outcome: asyncio.Future | None = None
        self._contact: SipUri | None = None
        self.contact_user = f"{self.user}-{contact_token(self.name)}"

    def __repr__(self) -> str:
        return f"<Account {self.name} {self.state}>"

    # -- identity and routing ---------------------------------------------------------------
    @property
    def aor(self) -> SipUri:
        return self.settings.aor_uri

    @property
    def user(self) -> str:
        return self.aor.user or "softphone"

    @property
    def transport(self) -> str | None:
        return self.settings.transport if self.settings.transport != "udp" else None

    def identity(self) -> NameAddr:
        """Our From address: the AOR (without parameters), with the display name."""
        return NameAddr(self.aor.with_(params={}, headers={}), self.settings.display_name or None)

    @property
    def authenticator(self) -> Authenticator:
        """The credentials (the password is read now: from the file, env var or keyring;
        ConfigError if it cannot be)."""
        if self._authenticator is None:
            s = self.settings
            self._authenticator = Authenticator(s.name, s.username, s.secret(),
                                                realm=s.auth_realm)
        return self._authenticator

    def route(self, ruri: SipUri) -> tuple[SipUri, list[str]]:
        """Next hop and pre-loaded Route for a new request to ``ruri`` (DESIGN §3)."""
        s = self.settings
        if s.outbound_proxy:
            proxy = parse_uri(s.outbound_proxy)
            return proxy, [f"<{proxy}>"] if "lr" in proxy.params else []
        aor = self.aor
        if ruri.host.lower() == aor.host.lower() and ruri.port in (None, aor.port):
            return parse_uri(s.registrar), []
        return ruri, []

    def is_contact(self, uri: SipUri) -> bool:
        """``uri`` is the Contact we registered (user with its token, host and port)."""
        contact = self._contact
        if contact is None or uri.user != contact.user:
            return False
        default = 5061 if contact.params.get("transport") == "tls" else 5060
        return uri.host_bare == contact.host_bare and \
            (uri.port or default) == (contact.port or default)

    def match(self, request: Request) -> int:
        """How surely ``request`` is for this account: 2 = its Request-URI is the Contact
        we registered (or the AOR), 1 = its To is our AOR, 0 = neither."""
        try:
            ruri = request.request_uri
            to = request.to.uri
        except Exception:
            return 0
        aor = self.aor
        if self.is_contact(ruri):
            return 2
        if ruri.user == aor.user and ruri.host.lower() == aor.host.lower():
            return 2
        if to.user == aor.user and to.host.lower() == aor.host.lower():
            return 1
        return 0

    # -- registration -----------------------------------------------------------------------
    async def prepare(self) -> SipUri | None:
        """Resolve the registrar (and outbound proxy), trust them, and work out the
        Contact to register: what the stranger policy needs, also in a process that does
        not register itself (a worker of ``answer --workers`` other than the first).
        None when the next hop cannot be resolved (a ``registration_failed`` says why)."""
        s = self.settings
        registrar = parse_uri(s.registrar)
        hop = parse_uri(s.outbound_proxy) if s.outbound_proxy else registrar
        try:
            peer = await self.stack.resolve(hop, s.transport)
        except (ResolveError, OSError) as exc:
            self._failed(None, f"cannot reach {'outbound proxy' if s.outbound_proxy else 'registrar'} "
                               f"{hop.hostport}: {exc}")
            return None
        self.stack.trust(peer)
        if s.outbound_proxy:  # the registrar relays calls to us too
            try:
                self.stack.trust(await self.stack.resolve(registrar, s.transport))
            except (ResolveError, OSError):
                pass
        self._contact = self.stack.contact_uri(peer, self.contact_user)
        return self._contact

    async def register(self) -> None:
        """(Re-)register now. Problems come as ``registration_failed`` events."""
        s = self.settings
        registrar = parse_uri(s.registrar)
        hop, routes = (parse_uri(s.outbound_proxy), []) if s.outbound_proxy else (registrar, [])
        if s.outbound_proxy and "lr" in hop.params:
            routes = [f"<{hop}>"]
        self._begin()
        contact = await self.prepare()
        if contact is None:
            return
        if self.registration is None:
            options = RegistrationOptions(
                aor=self.aor, registrar=registrar, target=hop, contact=contact,
                expires=s.expires, transport=s.transport, routes=routes,
                user_agent=self.stack.user_agent, caps=self.stack.caps)
            self.registration = RegistrationClient(options, self.authenticator)
            self.stack.attach(self.registration, self._on_sip_event)
        else:
            self.registration.set_contact(contact)
        self.stack.run(self.registration, self.registration.start(self.stack.now()))

    async def unregister(self, timeout: float) -> None:
        """Expires: 0 when registered; waits (bounded) for the answer."""
        reg = self.registration
        if reg is None:
            return
        if reg.state not in ("registered", "registering"):
            self.stack.run(reg, reg.stop(self.stack.now()))
            return
        self._begin()
        self.stack.run(reg, reg.stop(self.stack.now()))
        if not await self._wait(timeout):
            log.warning("unregister of %s got no answer within %.1f s", self.name, timeout)

    async def wait_registered(self, timeout: float) -> bool:
        """Wait for the outcome of the attempt under way; True when registered."""
        if self._outcome is None:
            return self.state == "registered"
        await self._wait(timeout)
        return self.state == "registered"

    async def wait_next(self, timeout: float) -> bool:
        """Wait for the outcome of the next attempt (the retry after a 503 …)."""
        self._begin()
        return await self.wait_registered(timeout)

    def seconds_left(self) -> float | None:
        reg = self.registration
        return reg.seconds_left(self.stack.now()) if reg is not None else None

    @property
    def retry_after(self) -> int | None:
        return self.registration.retry_after if self.registration else None

    def _begin(self) -> None:
        if self._outcome is None or self._outcome.done():
            self._outcome = asyncio.get_running_loop().create_future()

    async def _wait(self, timeout: float) -> bool:
        outcome = self._outcome
        if outcome is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(outcome), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _settle(self) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(self.state)

    def _failed(self, status: int | None, reason: str) -> None:
        self.state, self.status, self.reason = "failed", status, reason
        log.info("registration of %s failed: %s %s", self.name, status or "", reason)
        self.publish(ev.RegistrationFailed(self.name, status, reason))
        self._settle()

    def _on_sip_event(self, event: object) -> None:
        if isinstance(event, sev.Registering):
            self.state = "registering"
            self.publish(ev.Registering(self.name))
        elif isinstance(event, sev.Registered):
            self.state, self.status, self.reason = "registered", None, None
            log.info("registered %s for %d s", self.name, event.expires)
            self.publish(ev.Registered(self.name, event.expires))
            self._settle()
        elif isinstance(event, sev.RegistrationFailed):
            self._failed(event.status, event.reason)
        elif isinstance(event, sev.Unregistered):
            self.state = "unregistered"
            self.publish(ev.Unregistered(self.name))
            self._settle()
