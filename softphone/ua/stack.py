"""One asyncio SIP stack: transport, transaction and dialog tables, timers, resolver.

The protocol lives in ``sip/`` (pure); this is the thin layer that feeds it bytes and
time and carries out what it asks (:mod:`softphone.sip.actions`): it resolves targets,
stamps the Via on a copy of each request, runs the transaction machines on loop timers,
routes responses and in-dialog requests to the usage that owns them, and hands every new
out-of-dialog request to the user agent above. Every account's registrations and calls
share one stack and one listening socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import Config
from ..sip.actions import (AbortRequest, BindDialog, Emit, SendCancel, SendRequest,
                           SendResponse, StartTimer, StopTimer, UnbindDialog)
from ..sip.caps import Capabilities
from ..sip.dialogs import DialogTable
from ..sip.errors import SipParseError
from ..sip.ids import new_branch, new_tag
from ..sip.message import Request, Response, make_response, parse_message
from ..sip.transaction import (ClientTransaction, Deliver, Send, ServerTransaction,
                               StartTimer as TxStart, StopTimer as TxStop, Terminated, Timeout,
                               TimerConfig, TransactionTable)
from ..sip.uri import SIP_SCHEMES, SipUri
from ..transport import Peer, TransportLayer, server_tls_context, tls_context
from .ratelimit import ALLOW as ADMIT, REFUSE, RateLimiter
from .resolver import ResolveError, Resolver

__all__ = ["Stack", "split_hostport", "host_literal"]

log = logging.getLogger(__name__)

MAX_TRANSACTIONS = 4096  # live client + server transactions; new requests beyond are dropped
MAX_CACHED_ROUTES = 256  # remote hosts whose outgoing local address we remember
_LINGERING = ("completed", "accepted", "confirmed")  # transaction states that only wait

Tracer = Callable[[str, bytes, Peer], None]
NewRequest = Callable[[Request, Peer], None]


@dataclass
class _TxContext:
    """What the stack keeps beside a transaction: where it sends and who hears back."""

    tx: Any
    dest: Peer
    owner: Any = None             # the usage that sent the request (or adopted it)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    error: str | None = None      # why the transport failed, when it did
    created: float = 0.0
    key: tuple | None = None      # server: (Call-ID, From tag, CSeq), for merged requests
    # client, RFC 3263 §4.3: the targets left to try on a timeout, transport error or 503,
    # and the request as the usage made it (a failover sends it again with a new branch)
    alternates: list[Peer] = field(default_factory=list)
    unstamped: Request | None = None
    provisional: bool = False     # a 101-199 came: the request reached a server that took it


class Stack:
    def __init__(self, config: Config, *, listen: str | None = None,
                 tracer: Tracer | None = None, on_request: NewRequest | None = None,
                 caps: Capabilities | None = None) -> None:
        self.config = config
        self.listen = listen or config.network.listen
        self.timers = TimerConfig(t1=config.sip.t1_ms / 1000, t2=config.sip.t2_ms / 1000,
                                  t4=config.sip.t4_ms / 1000)
        self.user_agent = config.sip.user_agent
        self.caps = caps or Capabilities()
        self.on_request = on_request or (lambda request, peer: None)
        network = config.network
        self.transport = TransportLayer(
            self._on_message, tracer, on_error=self._on_transport_error,
            tls=lambda: tls_context(verify=config.sip.tls_verify, ca_file=config.sip.tls_ca_file,
                                    cert_file=network.tls_cert_file,
                                    key_file=network.tls_key_file))
        self.transactions = TransactionTable()
        self.dialogs = DialogTable()
        self.resolver = Resolver(servers=config.network.dns_servers)
        self.rate_limiter = RateLimiter(rate=config.network.rate_limit,
                                        burst=config.network.rate_burst)
        self.stats = {"parse_errors": 0, "bad_requests_answered": 0, "handler_errors": 0,
                      "stray_responses": 0, "rate_limited": 0, "overload_dropped": 0,
                      "strangers": 0}
        self.closing = False
        self._ctx: dict[int, _TxContext] = {}
        self._request_keys: dict[tuple, int] = {}  # live server transactions' requests
        self._clients: dict[tuple[int, int, str], _TxContext] = {}  # (owner, CSeq, method)
        self._listeners: dict[int, Callable[[object], None]] = {}
        self._usage_timers: dict[tuple[int, str], asyncio.TimerHandle] = {}
        self._usages: dict[int, Any] = {}
        self._resolving: dict[int, asyncio.Future] = {}  # owner -> its last pending send
        self._trusted_hops: set[tuple[str, int]] = set()
        self._trusted_sources: set[tuple[str, str, int]] = set()  # (proto, host, port)
        self._local_ip_cache: dict[str, str] = {}
        self.relay: socket.socket | None = None  # a worker's line to its dispatcher
        # NAT: our address as a hop sees it (its Via received/rport), per flow, and as a
        # STUN server sees our SIP socket; both go into the Contacts we send that way
        self._public: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.stun_mapped: tuple[str, int] | None = None
        self._flows: dict[int, Peer] = {}  # usage -> the target its last final came from
        self.flow_listeners: list[Callable[[Peer, str], None]] = []
        self.transport.on_closed = self._on_flow_closed
        self.transport.on_unreachable = self._on_unreachable

    # ======================================================================== lifecycle
    async def start(self) -> None:
        host, port = split_hostport(self.listen)
        await self.transport.start(host, port, relay=self.relay)
        network = self.config.network
        if network.tls_listen:
            tls_host, tls_port = split_hostport(network.tls_listen)
            # workers of answer --workers share the port, as they share TCP's
            await self.transport.start_tls(tls_host, tls_port, server_tls_context(
                network.tls_cert_file, network.tls_key_file), shared=self.relay is not None)
        self.resolver.family = socket.AF_INET6 if ":" in self.transport.host else socket.AF_INET

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    async def close(self, deadline: float) -> None:
        """Stop: stay (up to ``deadline``) for a resent BYE we may have to answer again,
        then cancel every timer and close the sockets."""
        self.closing = True
        # a BYE answered just now: our 200 may have been lost, and the peer resends the
        # BYE after T1 (§17.1.2.2); stay to answer that instead of leaving it to wait
        # 64·T1 for a response that cannot come
        linger = max((ctx.created + 2 * self.timers.t1 for ctx in self._ctx.values()
                      if isinstance(ctx.tx, ServerTransaction) and ctx.dest.proto == "udp"
                      and ctx.tx.request.method == "BYE"), default=0.0)
        if min(linger, deadline) > self.now():
            await asyncio.sleep(min(linger, deadline) - self.now())
        for ctx in list(self._ctx.values()):
            for handle in ctx.timers.values():
                handle.cancel()
        self._ctx.clear()
        self._clients.clear()
        self._request_keys.clear()
        for handle in self._usage_timers.values():
            handle.cancel()
        self._usage_timers.clear()
        for fut in self._resolving.values():
            fut.cancel()
        await self.transport.close()

    # ======================================================================== addressing
    def local_ip_for(self, remote_host: str) -> str:
        """The address the far end can reach us on (what goes in Via, Contact and SDP)."""
        if self.config.network.public_address:
            return self.config.network.public_address
        if self.transport.host not in ("0.0.0.0", "::"):
            return self.transport.host
        cached = self._local_ip_cache.get(remote_host)
        if cached:
            return cached
        family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((remote_host, 9))
                ip = probe.getsockname()[0]
        except OSError:
            ip = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        if len(self._local_ip_cache) >= MAX_CACHED_ROUTES:
            self._local_ip_cache.clear()
        self._local_ip_cache[remote_host] = ip
        return ip

    def contact_uri(self, peer: Peer, user: str, *, secure: bool = False) -> SipUri:
        """Where ``peer`` reaches us. ``secure``: a dialog that started with a sips: URI,
        whose Contacts must be sips: too (RFC 3261 §8.1.1.8, §12.1.1; no ;transport=tls
        then, RFC 5630 §3.1.3)."""
        host, port = self.public_address(peer)
        if secure:
            return SipUri(scheme="sips", user=user, host=host_literal(host), port=port)
        uri = SipUri(user=user, host=host_literal(host), port=port)
        if peer.proto != "udp":
            uri.params["transport"] = peer.proto
        return uri

    def public_address(self, peer: Peer) -> tuple[str, int]:
        """Where ``peer`` reaches us: the configured public address, else what the hop
        told us (received/rport), else what STUN saw (UDP), else our local address."""
        if not self.config.network.public_address:
            learned = self._public.get((peer.proto, peer.host, peer.port))
            if learned is not None:
                return learned
            if self.stun_mapped is not None and peer.proto == "udp" and \
                    not _loopback(peer.host):
                return self.stun_mapped
        return self.local_ip_for(peer.host), self.transport.port_for(peer.proto)

    async def stun_server(self) -> tuple[str, int] | None:
        """``[network] stun_server`` resolved (A/AAAA), or None when it is not set."""
        text = self.config.network.stun_server
        if not text:
            return None
        host, port = split_hostport(text)
        peer = await self.resolver.resolve(SipUri(host=host_literal(host), port=port), "udp")
        return peer.host, peer.port

    async def stun_binding(self, timeout: float = 3.0) -> tuple[str, int]:
        """Our SIP socket's address as the STUN server sees it (kept for Contacts)."""
        server = await self.stun_server()
        if server is None:
            raise OSError("no STUN server configured")
        self.stun_mapped = await self.transport.stun.binding(server, timeout)
        return self.stun_mapped

    def learn_public(self, peer: Peer, address: tuple[str, int] | None) -> None:
        """``peer`` sees us at ``address`` (None: forget it)."""
        key = (peer.proto, peer.host, peer.port)
        if address is None:
            self._public.pop(key, None)
        elif len(self._public) < MAX_CACHED_ROUTES or key in self._public:
            self._public[key] = address

    def peer_of(self, usage: Any) -> Peer | None:
        """The target that sent ``usage`` its last final response (after any failover)."""
        return self._flows.get(id(usage))

    def response_peer(self, request: Request, peer: Peer) -> Peer:
        """Where responses go (§18.2.2 with RFC 3581 rport)."""
        if peer.proto != "udp":
            return peer
        via = request.top_via
        host = via.params.get("received") or via.host.strip("[]")
        rport = via.params.get("rport")
        port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
        return Peer("udp", host, port)

    async def resolve(self, uri: SipUri, transport: str | None = None) -> Peer:
        """Where a new request to ``uri`` goes first (RFC 3263)."""
        return await self.resolver.resolve(uri, transport)

    async def resolve_all(self, uri: SipUri, transport: str | None = None) -> list[Peer]:
        """Every target for ``uri``, in the order a request tries them."""
        return await self.resolver.resolve_all(uri, transport)

    def trust(self, peer: Peer) -> None:
        """Mark an account's registrar or outbound proxy: it relays everyone's requests,
        so it is not one source to rate-limit (a handful of addresses at most)."""
        self._trusted_hops.add((peer.host, peer.port))
        self._trusted_sources.add((peer.proto, peer.host, peer.port))

    def trusted(self, peer: Peer) -> bool:
        return (peer.host, peer.port) in self._trusted_hops

    def from_trusted_hop(self, peer: Peer) -> bool:
        """``peer`` is a registrar or proxy of ours: by address and port over UDP; over
        TCP/TLS only on the connection we opened to it."""
        if (peer.proto, peer.host, peer.port) not in self._trusted_sources:
            return False
        return peer.proto == "udp" or self.transport.opened_by_us(peer)

    # ======================================================================== usages
    def attach(self, usage: Any, on_event: Callable[[object], None]) -> None:
        """Report ``usage``'s events to ``on_event``."""
        self._listeners[id(usage)] = on_event
        self._usages[id(usage)] = usage

    def detach(self, usage: Any) -> None:
        """Forget ``usage``: its timers, dialog bindings and listener."""
        key = id(usage)
        self._listeners.pop(key, None)
        self._usages.pop(key, None)
        self._flows.pop(key, None)
        for tkey in [k for k in self._usage_timers if k[0] == key]:
            self._usage_timers.pop(tkey).cancel()
        self.dialogs.unbind_all(usage)
        for ckey in [k for k in self._clients if k[0] == key]:
            self._clients.pop(ckey).owner = None

    def run(self, usage: Any, actions: list) -> None:
        """Carry out ``actions`` from ``usage``, in order."""
        for action in actions:
            try:
                self._run_one(usage, action)
            except Exception:  # one broken action must not lose the ones after it
                self.stats["handler_errors"] += 1
                log.exception("action %r failed", action)

    def _run_one(self, usage: Any, action: object) -> None:
        if isinstance(action, SendRequest):
            self._send_request(usage, action)
        elif isinstance(action, SendResponse):
            self.respond(action.response)
        elif isinstance(action, StartTimer):
            key = (id(usage), action.key)
            old = self._usage_timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._usage_timers[key] = self.loop.call_at(action.deadline, self._fire_usage,
                                                        usage, action.key)
        elif isinstance(action, StopTimer):
            old = self._usage_timers.pop((id(usage), action.key), None)
            if old is not None:
                old.cancel()
        elif isinstance(action, Emit):
            listener = self._listeners.get(id(usage))
            if listener is not None:
                listener(action.event)
        elif isinstance(action, BindDialog):
            self.dialogs.bind(action.dialog_id, usage)
        elif isinstance(action, UnbindDialog):
            self.dialogs.unbind(action.dialog_id, usage)
        elif isinstance(action, SendCancel):
            self._after_pending(usage, lambda: self._send_cancel(usage, action.cseq))
        elif isinstance(action, AbortRequest):
            self._after_pending(usage, lambda: self._abort(usage, action.cseq, action.method))
        else:
            raise TypeError(f"unknown action {action!r}")

    def _fire_usage(self, usage: Any, key: str) -> None:
        self._usage_timers.pop((id(usage), key), None)
        self._guarded(usage, lambda: usage.on_timer(key, self.now()))

    def _guarded(self, usage: Any, produce: Callable[[], list]) -> None:
        try:
            actions = produce()
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("usage %r failed", usage)
            return
        self.run(usage, actions)

    # ======================================================================== sending
    def stamp(self, request: Request, peer: Peer, branch: str) -> Request:
        """A copy of ``request`` with our Via on top (the original is never changed)."""
        copy = Request(request.method, request.uri, request.headers.copy(), request.body)
        host = host_literal(self.local_ip_for(peer.host))
        # over TLS, ;alias (RFC 5923) asks the peer to send its requests back over this
        # connection: we may have no listener it could reach
        alias = ";alias" if peer.proto == "tls" else ""
        copy.headers.prepend(
            "Via", f"SIP/2.0/{peer.proto.upper()} {host}:{self.transport.port_for(peer.proto)}"
                   f";branch={branch};rport{alias}")
        return copy

    def _send_request(self, usage: Any, action: SendRequest) -> None:
        try:
            peers = self.resolver.lookup_now(action.target, action.transport)
        except ResolveError as exc:
            self._report_unsendable(usage, action, str(exc))
            return
        if peers is not None and id(usage) not in self._resolving:
            self._transmit_request(usage, action, peers)
            return

        async def later(previous: asyncio.Future | None) -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                resolved = peers or await self.resolver.resolve_all(action.target,
                                                                    action.transport)
            except ResolveError as exc:
                self._report_unsendable(usage, action, str(exc))
                return
            self._transmit_request(usage, action, resolved)

        self._chain(usage, later)

    def _chain(self, usage: Any, job: Callable[[asyncio.Future | None], Any]) -> None:
        """Run ``job`` after the usage's earlier sends that wait for DNS (order is kept)."""
        key = id(usage)
        previous = self._resolving.get(key)
        task = self.loop.create_task(job(previous))
        self._resolving[key] = task

        def done(t: asyncio.Task) -> None:
            if self._resolving.get(key) is t:
                del self._resolving[key]
            if not t.cancelled() and t.exception() is not None:
                log.error("send failed", exc_info=t.exception())

        task.add_done_callback(done)

    def _after_pending(self, usage: Any, fn: Callable[[], None]) -> None:
        if id(usage) not in self._resolving:
            fn()
            return

        async def job(previous: asyncio.Future | None) -> None:
            if previous is not None:
                await asyncio.wait([previous])
            fn()

        self._chain(usage, job)

    def _report_unsendable(self, usage: Any, action: SendRequest, reason: str) -> None:
        log.info("cannot send %s: %s", action.request.method, reason)
        if not action.stateless and usage is not None:
            self._guarded(usage, lambda: usage.on_timeout(action.request, reason, self.now()))

    def _transmit_request(self, usage: Any, action: SendRequest, peers: list[Peer]) -> None:
        peer = peers[0]
        request = self.stamp(action.request, peer, action.branch)
        if action.stateless:
            self.send_stateless(request, peer)
            return
        self._start_client(usage, request, peer, alternates=peers[1:], unstamped=action.request)

    def _start_client(self, usage: Any, request: Request, peer: Peer, *,
                      alternates: list[Peer] | None = None,
                      unstamped: Request | None = None) -> None:
        tx = ClientTransaction(request, reliable=peer.proto != "udp", timers=self.timers)
        self.transactions.add_client(tx)
        ctx = _TxContext(tx, peer, owner=usage, created=self.now(),
                         alternates=list(alternates or ()),
                         unstamped=unstamped if alternates else None)
        self._ctx[id(tx)] = ctx
        try:
            number, method = request.cseq
            self._clients[(id(usage), number, method)] = ctx
        except SipParseError:
            pass
        self._apply(ctx, tx.start(self.now()))

    def _send_cancel(self, usage: Any, cseq: int) -> None:
        ctx = self._clients.get((id(usage), cseq, "INVITE"))
        if ctx is None or ctx.tx.state not in ("calling", "proceeding"):
            return
        cancel = ctx.tx.make_cancel()
        if self.user_agent:
            cancel.headers.add("User-Agent", self.user_agent)
        self._start_client(usage, cancel, ctx.dest)

    def _abort(self, usage: Any, cseq: int, method: str) -> None:
        ctx = self._clients.pop((id(usage), cseq, method), None)
        if ctx is not None:
            self._forget(ctx)

    def send_stateless(self, message: Request | Response, dest: Peer) -> None:
        """ACK for 2xx, stateless answers: no transaction carries them."""
        try:
            self.transport.send(message.to_bytes(), dest)
        except OSError as exc:
            log.info("send to %s failed: %s", dest, exc)

    def respond(self, response: Response) -> None:
        """Send a response through the server transaction of its request; with none
        left (it ended), back along the Via (§18.2.2)."""
        ctx = None
        stx = self.transactions.match_outgoing_response(response)
        if stx is not None:
            ctx = self._ctx.get(id(stx))
        if "Server" not in response.headers and "User-Agent" not in response.headers \
                and self.user_agent:
            response.headers.add("Server", self.user_agent)
        if ctx is None:
            try:
                via = response.top_via
                rport = via.params.get("rport")
                port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
                peer = Peer("udp", via.params.get("received") or via.host.strip("[]"), port)
            except SipParseError:
                return
            if via.transport == "UDP":
                self.send_stateless(response, peer)
            return
        self._apply(ctx, ctx.tx.respond(response, self.now()))

    def answer(self, request: Request, status: int, reason: str | None = None, *,
               extra: list[tuple[str, str]] | None = None) -> None:
        """Answer an out-of-dialog request nobody will own (OPTIONS, 405 …)."""
        self.respond(make_response(request, status, reason, to_tag=new_tag(),
                                   extra=extra or ()))

    def discard(self, request: Request) -> None:
        """Forget the server transaction of ``request`` without answering (a dropped
        stranger): nothing of it is kept."""
        stx = self.transactions.match_request(request)
        ctx = self._ctx.get(id(stx)) if stx is not None else None
        if ctx is not None:
            self._forget(ctx)

    def adopt(self, request: Request, usage: Any) -> None:
        """``usage`` owns the server transaction of ``request`` (a CANCEL goes to it)."""
        stx = self.transactions.match_request(request)
        ctx = self._ctx.get(id(stx)) if stx is not None else None
        if ctx is not None:
            ctx.owner = usage

    # ======================================================================== transactions
    def _apply(self, ctx: _TxContext, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                try:
                    self.transport.send(action.message.to_bytes(), ctx.dest)
                except OSError as exc:
                    log.info("send to %s failed: %s", ctx.dest, exc)  # the usage says why
                    ctx.error = f"cannot send to {ctx.dest}: {exc.strerror or exc}"
                    self.loop.call_soon(self._transport_error, ctx)
            elif isinstance(action, TxStart):
                old = ctx.timers.pop(action.name, None)
                if old:
                    old.cancel()
                ctx.timers[action.name] = self.loop.call_at(action.deadline, self._fire,
                                                            ctx, action.name)
            elif isinstance(action, TxStop):
                old = ctx.timers.pop(action.name, None)
                if old:
                    old.cancel()
            elif isinstance(action, Deliver):
                owner = ctx.owner
                if owner is None:
                    continue
                message = action.message
                if isinstance(message, Response):
                    if self._answered(ctx, message):
                        continue  # 503: the next target has the request now
                    self._guarded(owner, lambda m=message: owner.on_response(m, self.now()))
                else:  # an ACK that matched a 2xx transaction (RFC 6026 §7.1)
                    self._to_dialog(message)
            elif isinstance(action, Timeout):
                owner = ctx.owner
                if isinstance(ctx.tx, ClientTransaction) and self._failover(ctx):
                    continue
                if owner is not None and isinstance(ctx.tx, ClientTransaction):
                    request = ctx.tx.request
                    self._guarded(owner, lambda: owner.on_timeout(request, ctx.error,
                                                                  self.now()))
            elif isinstance(action, Terminated):
                self._forget(ctx)
        tx = ctx.tx
        if tx.state in _LINGERING and id(tx) in self._ctx:
            # only retransmissions are left to absorb: keep the messages, not their caches
            tx.request.compact()
            if tx.last_response is not None:
                tx.last_response.compact()

    def _answered(self, ctx: _TxContext, response: Response) -> bool:
        """Note what a response says of its server; True when a 503 sent the request on
        to the next target (RFC 3263 §4.3) instead of to the usage."""
        status = response.status
        if 100 < status < 200:
            ctx.provisional = True
        if status == 503 and not ctx.provisional and self._failover(ctx):
            return True
        if status >= 200:
            ctx.alternates.clear()
            ctx.unstamped = None
            if status != 503:
                self.resolver.succeeded(ctx.dest)
            if ctx.owner is not None and id(ctx.owner) in self._usages:
                self._flows[id(ctx.owner)] = ctx.dest
        return False

    def _failover(self, ctx: _TxContext) -> bool:
        """Send the request again, as a new transaction, to the next target left; False
        when none is (the failure then goes to the usage as usual). A usage gone already
        still gets its request delivered: a BYE outlives the call it ends."""
        self.resolver.failed(ctx.dest)
        request, owner = ctx.unstamped, ctx.owner
        if not ctx.alternates or request is None or self.closing:
            return False
        peer, rest = ctx.alternates[0], ctx.alternates[1:]
        ctx.alternates, ctx.unstamped = [], None
        log.info("%s to %s failed (%s): trying %s %s", request.method, ctx.dest,
                 ctx.error or "no answer", peer.proto, peer)
        self._start_client(owner, self.stamp(request, peer, new_branch()), peer,
                           alternates=rest, unstamped=request)
        return True

    def _forget(self, ctx: _TxContext) -> None:
        for handle in ctx.timers.values():
            handle.cancel()
        ctx.timers.clear()
        self.transactions.remove(ctx.tx)
        if self._ctx.pop(id(ctx.tx), None) is not None and ctx.key is not None:
            left = self._request_keys.get(ctx.key, 0) - 1
            if left > 0:
                self._request_keys[ctx.key] = left
            else:
                self._request_keys.pop(ctx.key, None)
        if isinstance(ctx.tx, ClientTransaction):
            try:
                number, method = ctx.tx.request.cseq
            except SipParseError:
                return
            key = (id(ctx.owner), number, method)
            if self._clients.get(key) is ctx:
                del self._clients[key]

    def _fire(self, ctx: _TxContext, name: str) -> None:
        ctx.timers.pop(name, None)
        self._apply(ctx, ctx.tx.on_timer(name, self.now()))

    def _on_transport_error(self, peer: Peer, reason: str) -> None:
        """A connection could not be made: fail its transactions now, saying why."""
        for ctx in list(self._ctx.values()):
            if ctx.dest == peer and isinstance(ctx.tx, ClientTransaction):
                ctx.error = reason
                self._apply(ctx, ctx.tx.on_transport_error(self.now()))

    def _on_unreachable(self, peer: Peer, reason: str) -> None:
        """ICMP says nothing listens at ``peer`` (UDP). A request with other targets left
        fails over now (RFC 3263 §4.3, RFC 3261 §18.4); one without keeps retransmitting
        (a server restarting is back within seconds) and, if it times out, says why; a
        keep-alive (``fail_fast``) fails at once."""
        for ctx in list(self._ctx.values()):
            if ctx.dest != peer or not isinstance(ctx.tx, ClientTransaction) or \
                    ctx.tx.state not in ("calling", "trying", "proceeding"):
                continue
            ctx.error = reason
            if ctx.alternates or getattr(ctx.owner, "fail_fast", False):
                self._apply(ctx, ctx.tx.on_transport_error(self.now()))

    def _on_flow_closed(self, peer: Peer, reason: str, inbound: bool) -> None:
        """A TCP/TLS connection closed (reset, EOF, no keep-alive pong): requests still
        waiting on it fail now (and fail over), and the accounts hear of it."""
        if self.closing:
            return
        for ctx in list(self._ctx.values()):
            if ctx.dest == peer and isinstance(ctx.tx, ClientTransaction) and \
                    ctx.tx.state in ("calling", "trying", "proceeding"):
                ctx.error = f"{peer.proto.upper()} connection to {peer} lost: {reason}"
                self._apply(ctx, ctx.tx.on_transport_error(self.now()))
        for listener in list(self.flow_listeners):
            try:
                listener(peer, reason)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("flow listener failed")

    def _transport_error(self, ctx: _TxContext) -> None:
        if id(ctx.tx) in self._ctx:
            self._apply(ctx, ctx.tx.on_transport_error(self.now()))

    # ======================================================================== receiving
    def _on_message(self, data: bytes, peer: Peer) -> None:
        try:
            msg = parse_message(data, datagram=peer.proto == "udp")
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            self._answer_malformed(exc, peer)
            return
        except Exception:  # the parser promises SipParseError; belt and braces
            self.stats["parse_errors"] += 1
            log.exception("parser raised unexpectedly")
            return
        try:
            if isinstance(msg, Request):
                self._stamp_received(msg, peer)
                self._on_request(msg, peer)
            else:
                self._on_response(msg)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            if isinstance(msg, Request):
                exc.partial = msg
                self._answer_malformed(exc, peer)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("failed to handle %r from %s", msg, peer)

    def _answer_malformed(self, exc: SipParseError, peer: Peer) -> None:
        """400 with the reason when the request carries enough to be answered (§8.2)."""
        req = exc.partial
        if not isinstance(req, Request) or req.method == "ACK":
            log.info("dropped malformed message from %s: %s", peer, exc.reason)
            return
        h = req.headers
        if not (h.get_all("Via") and h.get("From") and h.get("To") and h.get("Call-ID")
                and h.get("CSeq")):
            log.info("dropped malformed request from %s: %s", peer, exc.reason)
            return
        reason = exc.reason[:1].upper() + exc.reason[1:]
        status = 505 if "version" in exc.reason else 400
        try:
            try:
                self._stamp_received(req, peer)
                dest = self.response_peer(req, peer)
            except SipParseError:  # a Via we cannot read (SIP/7.0/UDP …): back to the source
                dest = peer
            resp = make_response(req, status, reason, to_tag=new_tag())
            self.transport.send(resp.to_bytes(), dest)
            self.stats["bad_requests_answered"] += 1
        except (SipParseError, OSError) as err:
            log.info("could not answer malformed request from %s: %s", peer, err)

    def _stamp_received(self, request: Request, peer: Peer) -> None:
        """RFC 3261 §18.2.1 received= and RFC 3581 rport= on the top Via; over TCP/TLS,
        a Via ;alias (RFC 5923) for the peer's own address maps it to the connection."""
        if peer.proto != "udp":
            via = request.top_via
            if "alias" in via.params and via.host.strip("[]") == peer.host:
                self.transport.alias(peer, via.port or (5061 if peer.proto == "tls" else 5060))
            return
        via = request.top_via
        changed = False
        if via.host.strip("[]") != peer.host:
            via.params["received"] = peer.host
            changed = True
        if "rport" in via.params:
            via.params["rport"] = str(peer.port)
            via.params.setdefault("received", peer.host)
            changed = True
        if changed:
            request.replace_top_via(via)

    def _feed(self, tx: Any, message: Request | Response) -> None:
        """A message matched to a live transaction: its machine takes it."""
        ctx = self._ctx.get(id(tx))
        if ctx is not None:
            step = tx.on_response if isinstance(message, Response) else tx.on_request
            self._apply(ctx, step(message, self.now()))

    def _on_response(self, response: Response) -> None:
        tx = self.transactions.match_response(response)
        if tx is not None:
            self._feed(tx, response)
            return
        # a 2xx resent after the INVITE transaction ended, or one from a late fork
        for usage in self.dialogs.for_response(response):
            self._guarded(usage, lambda u=usage: u.on_response(response, self.now()))
            return
        self.stats["stray_responses"] += 1

    def _on_request(self, request: Request, peer: Peer) -> None:
        # a retransmission, or the ACK of a non-2xx final: the transaction absorbs it
        stx = self.transactions.match_request(request)
        if stx is not None:
            self._feed(stx, request)
            return
        method = request.method
        if method == "ACK":  # for a 2xx: transaction-less, it belongs to the dialog
            self._to_dialog(request)
            return
        if not self._admit(request, peer):
            return
        if not request.to.tag and self._merged(request):
            # §8.2.2.2: the same request reached us by another path (a forking proxy)
            self.answer(request, 482, "Loop Detected")
            return
        stx = ServerTransaction(request, reliable=peer.proto != "udp", timers=self.timers)
        self.transactions.add_server(stx)
        key = _request_key(request)
        self._request_keys[key] = self._request_keys.get(key, 0) + 1
        self._ctx[id(stx)] = _TxContext(stx, self.response_peer(request, peer),
                                        created=self.now(), key=key)
        if method == "CANCEL":
            invite = self.transactions.find_invite_for_cancel(request)
            owner = self._ctx[id(invite)].owner if invite is not None and \
                id(invite) in self._ctx else None
            if owner is None:
                self.answer(request, 481, "Call/Transaction Does Not Exist")
                return
            self._guarded(owner, lambda: owner.on_request(request, self.now()))
            return
        if request.uri.partition(":")[0].lower() not in SIP_SCHEMES:
            self.answer(request, 416)  # Unsupported URI Scheme (RFC 3261 §8.2.2.1)
            return
        unsupported = self.caps.unsupported(request.headers.get_all("Require"))
        if unsupported:
            self.answer(request, 420, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if request.to.tag:
            route = self.dialogs.route(request)
            if route.usage is None:
                if route.dialog_exists and method != "NOTIFY":
                    self.respond(make_response(request, 405, extra=[("Allow", self.caps.allow)]))
                else:
                    self.respond(make_response(request, 481, "Call/Transaction Does Not Exist"))
                return
            usage = route.usage
            self._ctx[id(stx)].owner = usage
            self._guarded(usage, lambda: usage.on_request(request, self.now()))
            return
        self.on_request(request, peer)

    def _merged(self, request: Request) -> bool:
        """A live server transaction holds a request with this From tag, Call-ID and CSeq
        (but another branch: a retransmission would have matched it)."""
        return self._request_keys.get(_request_key(request), 0) > 0

    def _to_dialog(self, ack: Request) -> None:
        route = self.dialogs.route(ack)
        if route.usage is not None:
            usage = route.usage
            self._guarded(usage, lambda: usage.on_request(ack, self.now()))

    def _admit(self, request: Request, peer: Peer) -> bool:
        """Bound what strangers can make us hold: a token bucket per source IP for new
        out-of-dialog requests, and a cap on live transactions for everything."""
        if len(self._ctx) >= MAX_TRANSACTIONS:
            self.stats["overload_dropped"] += 1
            return False
        if request.to.tag or self.trusted(peer):
            return True
        if request.method == "CANCEL" and self.transactions.find_invite_for_cancel(request):
            return True
        verdict = self.rate_limiter.check(peer.host, self.now())
        if verdict == ADMIT:
            return True
        self.stats["rate_limited"] += 1
        if verdict == REFUSE:
            response = make_response(request, 503, to_tag=new_tag(), extra=[
                ("Retry-After", str(self.rate_limiter.retry_after))])
            if self.user_agent:
                response.headers.add("Server", self.user_agent)
            self.send_stateless(response, self.response_peer(request, peer))
        return False


def _request_key(request: Request) -> tuple:
    return (request.call_id, request.from_.tag, request.cseq)


def _loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def split_hostport(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port or 0)
    host, _, port = text.rpartition(":")
    if not host:
        return text, 0
    return host, int(port or 0)


def host_literal(ip: str) -> str:
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
