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
from ..sip.errors import SipParseError
from ..sip.keepalive import OptionsPing, PingAnswered, PingFailed, via_address
from ..sip.message import Request, Response
from ..sip.register import RETRY_AFTER_FAILURE, RegistrationClient, RegistrationOptions
from ..sip.uri import NameAddr, SipUri, parse_uri
from ..transport import PONG_TIMEOUT, Peer, StunError
from . import events as ev
from .resolver import ResolveError
from .addressing import host_literal

if TYPE_CHECKING:
    from .stack import Stack

__all__ = ["Account", "NAT_KEEPALIVE", "MAX_CONTACT_UPDATES", "contact_token",
           "CONTACT_SEED_ENV"]

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

NAT_KEEPALIVE = 25       # s between keep-alives once a NAT was seen ([network] keepalive unset)
MAX_CONTACT_UPDATES = 3  # re-REGISTERs in a row for a new public address, then we keep it
FLOW_RETRY_GAP = 10.0    # s: a dead flow re-registers at once, but not more often than this


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
        self.public_address: str | None = None  # "ip:port" the registrar sees (NAT/STUN)
        self.nat_seen = False
        self._hop: SipUri | None = None          # where REGISTERs (and keep-alives) go
        self._failures = 0                       # attempts that failed before sending
        self._retry: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._pinger: OptionsPing | None = None
        self._pings_answered = 0
        self._crlf_only = False  # the registrar never answered our OPTIONS: CRLF instead
        self._updates = 0                        # contact updates since the last steady one
        self._flow_retry_at = 0.0
        self._stopped = False
        self._task: asyncio.Task | None = None

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
        """The transport the account fixes; None: DNS chooses (RFC 3263), else UDP."""
        return self.settings.fixed_transport

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
    async def prepare(self) -> Peer:
        """Resolve the registrar (and outbound proxy), trust every server the failover may
        reach (they relay calls to us), and work out the Contact to register: what the
        stranger policy needs, also in a process that does not register itself (a worker
        of ``answer --workers`` other than the first). Returns the first server; raises
        ResolveError/OSError when there is none."""
        s = self.settings
        stack = self.stack
        registrar = parse_uri(s.registrar)
        hop = parse_uri(s.outbound_proxy) if s.outbound_proxy else registrar
        peers = await stack.resolve_all(hop, self.transport)
        for peer in peers:
            stack.admission.trust(peer)
        if s.outbound_proxy:  # the registrar relays calls to us too
            try:
                for peer in await stack.resolve_all(registrar, self.transport):
                    stack.admission.trust(peer)
            except (ResolveError, OSError):
                pass
        self._contact = stack.addresses.contact_uri(peers[0], self.contact_user)
        return peers[0]

    async def register(self) -> None:
        """(Re-)register now. Problems come as ``registration_failed`` events; an attempt
        that cannot even be sent (DNS, STUN, no route) is retried with a back-off, as the
        registration client retries the ones that failed on the wire."""
        s = self.settings
        self._stopped = False
        self._cancel_retry()
        registrar = parse_uri(s.registrar)
        hop, routes = (parse_uri(s.outbound_proxy), []) if s.outbound_proxy else (registrar, [])
        if s.outbound_proxy and "lr" in hop.params:
            routes = [f"<{hop}>"]
        self._hop = hop
        self._begin()
        stack = self.stack
        try:
            peer = await self.prepare()
        except (ResolveError, OSError) as exc:
            self._unsendable(str(exc))
            return
        await self._discover(peer)
        contact = stack.addresses.contact_uri(peer, self.contact_user)
        self._contact = contact
        self._failures = 0
        if self.registration is None:
            options = RegistrationOptions(
                aor=self.aor, registrar=registrar, target=hop, contact=contact,
                expires=s.expires, transport=self.transport, routes=routes,
                user_agent=stack.user_agent, caps=stack.caps)
            self.registration = RegistrationClient(options, self.authenticator)
            stack.attach(self.registration, self._on_sip_event)
            stack.flow_listeners.append(self._on_flow_closed)
        else:
            self.registration.set_contact(contact)
        stack.run(self.registration, self.registration.start(stack.now()))

    def _unsendable(self, reason: str) -> None:
        """The REGISTER could not leave (DNS …): say so, and try again after a back-off."""
        delay = RETRY_AFTER_FAILURE[min(self._failures, len(RETRY_AFTER_FAILURE) - 1)]
        self._failures += 1
        self._failed(None, reason)
        if not self._stopped and not self.stack.closing:
            self._retry = asyncio.get_running_loop().call_later(delay, self._register_soon)

    def _register_soon(self) -> None:
        self._retry = None
        if self._stopped or self.stack.closing:
            return
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self.register())

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    async def _discover(self, peer: Peer) -> None:
        """With ``[network] stun_server``: our SIP socket's public address (UDP only)."""
        server = self.stack.config.network.stun_server
        if not server or peer.proto != "udp":
            return
        try:
            mapped = await self.stack.addresses.stun_binding()
        except (StunError, ResolveError, OSError) as exc:
            log.warning("STUN: %s", exc)
            self.publish(ev.Notice(f"STUN: {exc}"))
            return
        address = _hostport(*mapped)
        if address != self.public_address:
            local = (self.stack.addresses.local_ip_for(peer.host), self.stack.transport.port)
            self.nat_seen = self.nat_seen or mapped != local
            self._set_public(address, "stun")

    def _set_public(self, address: str, source: str) -> None:
        previous, self.public_address = self.public_address, address
        log.info("%s: public address %s (from %s)", self.name, address, source)
        self.publish(ev.PublicAddress(self.name, address, source, previous))

    # -- NAT --------------------------------------------------------------------------------
    def _check_nat(self, response: Response) -> bool:
        """What our Via in ``response`` says of our address; True when the Contact had to
        change (a re-REGISTER with the new one is on its way)."""
        reg, peer = self.registration, self.stack.peer_of(self.registration)
        if reg is None or peer is None or not self.stack.config.network.nat_contact or \
                self.stack.config.network.public_address:
            return False
        try:
            proto, received, rport = via_address(response)
            sent_by = response.top_via
        except SipParseError:
            return False
        via_host, via_port = sent_by.host.strip("[]"), sent_by.port or 5060
        host = received or via_host
        if proto == "udp":
            port = rport or via_port
        elif host == via_host:  # a stream: its source port is always an ephemeral one,
            return False        # so only a new address means a NAT
        else:
            port = rport or via_port
        local = (self.stack.addresses.local_ip_for(peer.host), self.stack.transport.port)
        public = (host, port)
        seen = public != local
        self.nat_seen = self.nat_seen or seen
        current = self.stack.addresses.public_address(peer)
        if public == current:
            self._updates = 0
            return False
        if self._updates >= MAX_CONTACT_UPDATES:
            return False
        self._updates += 1
        self.stack.addresses.learn_public(peer, public if seen else None)
        self._set_public(_hostport(*public), "rport")
        contact = self.stack.addresses.contact_uri(peer, self.contact_user)
        self._contact = contact
        reg.set_contact(contact)
        if reg.state == "registered" and not self._stopped:
            log.info("%s: the registrar sees us at %s: re-registering with that Contact",
                     self.name, _hostport(*public))
            self.stack.run(reg, reg.start(self.stack.now()))
            return True
        return False

    # -- keep-alives ------------------------------------------------------------------------
    def keepalive_interval(self) -> int:
        configured = self.stack.config.network.keepalive
        if configured is not None:
            return configured
        return NAT_KEEPALIVE if self.nat_seen else 0

    def _schedule_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        interval = self.keepalive_interval()
        if interval > 0 and not self._stopped and not self.stack.closing:
            self._keepalive = asyncio.get_running_loop().call_later(interval, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive = None
        reg = self.registration
        peer = self.stack.peer_of(reg) if reg is not None else None
        if reg is None or peer is None or reg.state != "registered" or self._stopped:
            return
        if peer.proto != "udp" or self.stack.config.network.keepalive_udp == "crlf" or \
                self._crlf_only:
            # the pong is due within 10 s (RFC 5626 §4.4.1), or before the next ping
            pong = min(PONG_TIMEOUT, float(self.keepalive_interval()))
            if not self.stack.transport.ping(peer, pong):
                self._flow_dead(peer, "the connection is gone")
                return
        else:
            if self._pinger is None:
                assert self._hop is not None
                self._pinger = OptionsPing(self.aor, self._hop, transport=self.transport,
                                           user_agent=self.stack.user_agent)
                self.stack.attach(self._pinger, self._on_ping)
            target = SipUri(host=host_literal(peer.host), port=peer.port,
                            params={} if peer.proto == "udp" else {"transport": peer.proto})
            self.stack.run(self._pinger, self._pinger.ping(self.stack.now(), target))
        self._schedule_keepalive()

    def _on_ping(self, event: object) -> None:
        if isinstance(event, PingAnswered):
            self._pings_answered += 1
            self._check_nat(event.response)
        elif isinstance(event, PingFailed):
            peer = self.stack.peer_of(self.registration) if self.registration else None
            if peer is None:
                return
            if not self._pings_answered and "ICMP" not in event.reason:
                # some registrars ignore OPTIONS: keep the binding with CRLFs instead,
                # and let a REGISTER tell whether the flow is alive
                log.info("%s: %s does not answer OPTIONS: keep-alives by CRLF", self.name,
                         peer)
                self._crlf_only = True
            self._flow_dead(peer, event.reason)

    def _on_flow_closed(self, peer: Peer, reason: str) -> None:
        reg = self.registration
        if reg is not None and peer == self.stack.peer_of(reg) and reg.state == "registered" \
                and not self.stack.transport.has_flow(peer):
            self._flow_dead(peer, reason)

    def _flow_dead(self, peer: Peer, reason: str) -> None:
        """The flow to the registrar died (no pong, reset, no answer): re-register now,
        over a new one (at most every FLOW_RETRY_GAP s; else the usual back-off)."""
        reg = self.registration
        if reg is None or self._stopped or self.stack.closing:
            return
        now = self.stack.now()
        log.info("%s: flow to %s %s is dead (%s): re-registering", self.name,
                    peer.proto, peer, reason)
        self.publish(ev.Notice(f"{self.name}: connection to the registrar lost ({reason}); "
                               f"registering again"))
        self.stack.resolver.failed(peer)  # the next REGISTER tries the other servers first
        if now < self._flow_retry_at:
            return
        self._flow_retry_at = now + FLOW_RETRY_GAP
        self._register_soon()

    async def unregister(self, timeout: float) -> None:
        """Expires: 0 when registered; waits (bounded) for the answer."""
        self._stopped = True
        self._cancel_retry()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
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
            if self._check_nat(event.response):
                return  # the REGISTER with our public Contact decides
            self.state, self.status, self.reason = "registered", None, None
            log.info("registered %s for %d s", self.name, event.expires)
            self.publish(ev.Registered(self.name, event.expires))
            self._settle()
            self._schedule_keepalive()
        elif isinstance(event, sev.RegistrationFailed):
            self._failed(event.status, event.reason)
        elif isinstance(event, sev.Unregistered):
            self.state = "unregistered"
            self.publish(ev.Unregistered(self.name))
            self._settle()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
