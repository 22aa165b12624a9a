"""The user agent: owns the transport, the clock, the transactions and their timers.

The protocol logic is in ``sip/`` (pure); this module is the thin layer that feeds it
bytes and time, turns its timer actions into asyncio handles, and routes what comes out
to registrations and calls. The UI and the CLI talk to it only through commands (methods)
and events (the ``on_event`` callback).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .config import Account, Config
from .sip.errors import SipParseError
from .sip.message import Request, Response, make_response, parse_message
from .sip.transaction import (
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    StartTimer,
    StopTimer,
    Terminated,
    Timeout,
    TimerConfig,
    TransactionTable,
)
from .sip.uri import NameAddr, SipUri, parse_uri
from .ratelimit import ALLOW as ADMIT, REFUSE, RateLimiter
from .transport import Peer, TransportLayer, tls_context

if TYPE_CHECKING:
    from .call import Call
    from .registration import Registration

__all__ = ["UserAgent", "EventSink", "ALLOW", "new_tag", "new_branch"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
ACCEPT = "application/sdp"
SUPPORTED = ""  # no option tags: we implement no SIP extension a peer could rely on
_KNOWN_UNSUPPORTED = {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
                      "UPDATE", "PRACK"}

EventSink = Callable[[str, dict], None]

MAX_TRANSACTIONS = 4096  # live client + server transactions; new requests beyond are dropped
MAX_CACHED_ROUTES = 256  # remote hosts whose outgoing local address we remember
MAX_LIVE_CALLS = 1024  # calls not yet ended: beyond this, new INVITEs get 503
MAX_ENDED_RECORDS = 4096  # ended calls kept (64*T1) to absorb retransmissions; oldest go first


def new_tag() -> str:
    return secrets.token_hex(5)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class _TxContext:
    """What the UA keeps beside a transaction: where it sends and who hears back."""

    tx: Any
    dest: Peer
    on_response: Callable[[Response], None] | None = None
    on_timeout: Callable[[str | None], None] | None = None
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    error: str | None = None  # why the transport failed, when it did
    created: float = 0.0  # UA clock time the transaction began


class UserAgent:
    """One SIP endpoint: a listening address, an optional account, its calls."""

    def __init__(self, config: Config, account: Account | None = None, *,
                 listen: str | None = None, on_event: EventSink | None = None,
                 tracer: Callable | None = None, media_factory: Callable | None = None,
                 auto_answer: bool = False, answer_delay: float = 0.0,
                 user: str | None = None, preload_media: bool = True) -> None:
        self.config = config
        self.preload_media = preload_media
        self.account = account
        self.listen = listen or config.network.listen
        self.on_event = on_event or (lambda name, data: None)
        self.media_factory = media_factory
        self.auto_answer = auto_answer
        self.answer_delay = answer_delay
        self.timers = TimerConfig(t1=config.sip.t1_ms / 1000, t2=config.sip.t2_ms / 1000,
                                  t4=config.sip.t4_ms / 1000)
        self.user_agent = config.sip.user_agent
        self.transport = TransportLayer(
            self._on_message, tracer, on_error=self._on_transport_error,
            tls=tls_context(verify=config.sip.tls_verify, ca_file=config.sip.tls_ca_file))
        self.table = TransactionTable()
        self._ctx: dict[int, _TxContext] = {}
        self.calls: dict[str, "Call"] = {}  # by Call-ID: live calls and recently ended ones
        self._live_calls = 0
        self._trusted_hops: set[tuple[str, int]] = set()
        self._ended: deque[str] = deque()
        self.registration: "Registration | None" = None
        self.started_at = time.monotonic()
        self.stats = {"parse_errors": 0, "bad_requests_answered": 0, "handler_errors": 0,
                      "stray_responses": 0, "rate_limited": 0, "overload_dropped": 0}
        self.rate_limiter = RateLimiter(rate=config.network.rate_limit,
                                        burst=config.network.rate_burst)
        self._local_ip_cache: dict[str, str] = {}
        self._resolve_cache: dict[str, str] = {}
        self._user = user or (account.aor_uri.user if account else None) or "softphone"
        self._closing = False
        self.call_count = 0

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.preload_media:
            # aiortc/PyAV take 0.5-1.7 s to import, holding the GIL: do it before we listen,
            # so no request ever waits behind it (and the first call does not either)
            await self._preload_media()
        host, port = _split_hostport(self.listen)
        await self.transport.start(host, port)

    async def _preload_media(self) -> None:
        try:
            from .media import rtp

            await rtp.preload()
        except Exception:  # the first call will import (and report) it again
            log.debug("media preload failed", exc_info=True)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def emit(self, name: str, **data: Any) -> None:
        try:
            self.on_event(name, data)
        except Exception:  # a broken listener must not break the UA
            log.exception("event listener failed for %s", name)

    async def close(self, *, unregister: bool = True, timeout: float = 5.0) -> None:
        """Hang up every call, unregister, stop. Bounded by ``timeout`` in total."""
        if self._closing:
            return
        self._closing = True
        deadline = self.now() + timeout
        waits = [call.hangup() for call in list(self.calls.values())]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits],
                               timeout=max(0.1, deadline - self.now()))
        if self.registration is not None and unregister:
            await self.registration.stop(timeout=max(0.1, deadline - self.now()))
        # a BYE answered just now: our 200 may have been lost, and the peer resends the
        # BYE after T1 (§17.1.2.2); stay to answer that instead of leaving it to wait
        # 64·T1 for a response that cannot come (a second loss is left to chance: every
        # `answer --max-calls` exit pays this wait)
        linger = max((ctx.created + 2 * self.timers.t1 for ctx in self._ctx.values()
                      if isinstance(ctx.tx, ServerTransaction) and ctx.dest.proto == "udp"
                      and ctx.tx.request.method == "BYE"), default=0.0)
        if min(linger, deadline) > self.now():
            await asyncio.sleep(min(linger, deadline) - self.now())
        for ctx in list(self._ctx.values()):
            for handle in ctx.timers.values():
                handle.cancel()
        self._ctx.clear()
        await self.transport.close()

    # -- addressing ---------------------------------------------------------------------------
    @property
    def user(self) -> str:
        return self._user

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
            ip = "127.0.0.1"
        if len(self._local_ip_cache) >= MAX_CACHED_ROUTES:  # keyed by remote host: bound it
            self._local_ip_cache.clear()
        self._local_ip_cache[remote_host] = ip
        return ip

    def contact_uri(self, peer: Peer) -> SipUri:
        uri = SipUri(user=self.user, host=_host_literal(self.local_ip_for(peer.host)),
                     port=self.transport.port)
        if peer.proto != "udp":
            uri.params["transport"] = peer.proto
        return uri

    def contact(self, peer: Peer) -> str:
        return f"<{self.contact_uri(peer)}>"

    def local_identity(self, peer: Peer | None = None) -> NameAddr:
        """Our From address: the account's AOR, or user@our-address when there is none."""
        if self.account:
            return NameAddr(self.account.aor_uri.with_(params={}),
                            self.account.display_name or None)
        host = self.local_ip_for(peer.host) if peer else "127.0.0.1"
        return NameAddr(SipUri(user=self.user, host=_host_literal(host),
                               port=self.transport.port))

    async def resolve(self, uri: SipUri, proto: str | None = None) -> Peer:
        """Next-hop URI → transport address (RFC 3263, A/AAAA part; no NAPTR/SRV)."""
        proto = proto or uri.transport
        if proto not in ("udp", "tcp", "tls"):
            raise OSError(f"transport {proto!r} is not supported")
        host = uri.host_bare
        name = None if _is_ip(host) else host
        port = uri.port or uri.default_port
        maddr = uri.params.get("maddr")
        if maddr:
            host = maddr
        if _is_ip(host):
            return Peer(proto, host, port, name)
        cached = self._resolve_cache.get(host)
        if cached is None:
            # the family our socket can reach: an IPv4 socket cannot send to an AAAA record
            family = socket.AF_INET6 if ":" in self.transport.host else socket.AF_INET
            infos = await self.loop.getaddrinfo(host, port, family=family,
                                                type=socket.SOCK_DGRAM)
            if not infos:
                raise OSError(f"cannot resolve {host}")
            cached = infos[0][4][0]
            self._resolve_cache[host] = cached
        return Peer(proto, cached, port, name)

    # -- sending ------------------------------------------------------------------------------
    def stamp_via(self, request: Request, peer: Peer, branch: str | None = None) -> str:
        branch = branch or new_branch()
        host = _host_literal(self.local_ip_for(peer.host))
        request.headers.prepend(
            "Via", f"SIP/2.0/{peer.proto.upper()} {host}:{self.transport.port};branch={branch};rport")
        return branch

    def common_headers(self, request: Request) -> None:
        if "Max-Forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.user_agent)

    def send_request(self, request: Request, dest: Peer, *,
                     on_response: Callable[[Response], None] | None = None,
                     on_timeout: Callable[[str | None], None] | None = None
                     ) -> ClientTransaction:
        """Start a client transaction. ``request`` must already carry its Via."""
        tx = ClientTransaction(request, reliable=dest.proto != "udp", timers=self.timers)
        self.table.add_client(tx)
        ctx = _TxContext(tx, dest, on_response, on_timeout)
        self._ctx[id(tx)] = ctx
        self._apply(ctx, tx.start(self.now()))
        return tx

    def send_stateless(self, message: Request | Response, dest: Peer) -> None:
        """ACK for 2xx and other messages that no transaction carries."""
        try:
            self.transport.send(message.to_bytes(), dest)
        except OSError as exc:
            log.warning("send to %s failed: %s", dest, exc)

    def respond(self, stx: ServerTransaction, response: Response) -> None:
        if "Server" not in response.headers and "User-Agent" not in response.headers:
            response.headers.add("Server", self.user_agent)
        ctx = self._ctx.get(id(stx))
        if ctx is None:
            return
        self._apply(ctx, stx.respond(response, self.now()))

    def response_peer(self, request: Request, peer: Peer) -> Peer:
        """Where responses go (§18.2.2 with RFC 3581 rport)."""
        if peer.proto != "udp":
            return peer
        via = request.top_via
        host = via.params.get("received") or via.host.strip("[]")
        rport = via.params.get("rport")
        if rport and rport.isdigit():
            port = int(rport)
        else:
            port = via.port or 5060
        return Peer("udp", host, port)

    # -- timers and actions ---------------------------------------------------------------------
    def _apply(self, ctx: _TxContext, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                try:
                    self.transport.send(action.message.to_bytes(), ctx.dest)
                except OSError as exc:
                    log.warning("send to %s failed: %s", ctx.dest, exc)
                    self.loop.call_soon(self._transport_error, ctx)
            elif isinstance(action, StartTimer):
                old = ctx.timers.pop(action.name, None)
                if old:
                    old.cancel()
                ctx.timers[action.name] = self.loop.call_at(
                    action.deadline, self._fire, ctx, action.name)
            elif isinstance(action, StopTimer):
                old = ctx.timers.pop(action.name, None)
                if old:
                    old.cancel()
            elif isinstance(action, Deliver):
                if ctx.on_response and isinstance(action.message, Response):
                    self._guard(ctx.on_response, action.message)
            elif isinstance(action, Timeout):
                if ctx.on_timeout:
                    self._guard(ctx.on_timeout, ctx.error)
            elif isinstance(action, Terminated):
                for handle in ctx.timers.values():
                    handle.cancel()
                ctx.timers.clear()
                self.table.remove(ctx.tx)
                self._ctx.pop(id(ctx.tx), None)

    def _fire(self, ctx: _TxContext, name: str) -> None:
        ctx.timers.pop(name, None)
        self._apply(ctx, ctx.tx.on_timer(name, self.now()))

    def _on_transport_error(self, peer: Peer, reason: str) -> None:
        """A connection could not be made: fail its transactions now, saying why."""
        for ctx in list(self._ctx.values()):
            if ctx.dest == peer and isinstance(ctx.tx, ClientTransaction):
                ctx.error = reason
                self._apply(ctx, ctx.tx.on_transport_error(self.now()))

    def _transport_error(self, ctx: _TxContext) -> None:
        if id(ctx.tx) in self._ctx:
            self._apply(ctx, ctx.tx.on_transport_error(self.now()))

    def _guard(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("handler failed")

    # -- receiving -------------------------------------------------------------------------------
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
        status = 416 if "scheme" in exc.reason else 505 if "version" in exc.reason else 400
        try:
            self._stamp_received(req, peer)
            resp = make_response(req, status, reason, to_tag=new_tag())
            self.transport.send(resp.to_bytes(), self.response_peer(req, peer))
            self.stats["bad_requests_answered"] += 1
        except (SipParseError, OSError) as err:
            log.info("could not answer malformed request from %s: %s", peer, err)

    def _stamp_received(self, request: Request, peer: Peer) -> None:
        """RFC 3261 §18.2.1 received= and RFC 3581 rport= on the top Via."""
        if peer.proto != "udp":
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
            request.headers.replace_first_value("Via", str(via))

    def _on_response(self, response: Response) -> None:
        tx = self.table.match_response(response)
        if tx is not None:
            ctx = self._ctx.get(id(tx))
            if ctx is not None:
                self._apply(ctx, tx.on_response(response, self.now()))
            return
        # a 2xx retransmission after the INVITE transaction ended, or a forked 2xx
        number, method = response.cseq
        call = self.calls.get(response.call_id)
        if call is not None and method == "INVITE" and 200 <= response.status < 300:
            call.on_stray_2xx(response)
            return
        self.stats["stray_responses"] += 1

    def _on_request(self, request: Request, peer: Peer) -> None:
        method = request.method
        # a retransmission, or the ACK of a non-2xx final: the transaction absorbs it
        stx = self.table.match_request(request)
        if stx is not None:
            ctx = self._ctx.get(id(stx))
            if ctx is not None:
                self._apply(ctx, stx.on_request(request, self.now()))
            return
        if method == "ACK":  # for a 2xx: transaction-less, it belongs to the dialog
            call = self.calls.get(request.call_id)
            if call is not None:
                call.on_ack(request)
            return
        if not self._admit(request, peer):
            return
        stx = ServerTransaction(request, reliable=peer.proto != "udp", timers=self.timers)
        self.table.add_server(stx)
        ctx = _TxContext(stx, self.response_peer(request, peer), created=self.now())
        self._ctx[id(stx)] = ctx
        self._dispatch(request, stx, peer)

    def _admit(self, request: Request, peer: Peer) -> bool:
        """Bound what strangers can make us hold: a token bucket per source IP for new
        out-of-dialog requests, and a cap on live transactions for everything."""
        if len(self._ctx) >= MAX_TRANSACTIONS:
            self.stats["overload_dropped"] += 1
            return False
        if request.to.tag or self._trusted(peer):
            return True
        if request.method == "CANCEL" and self.table.find_invite_for_cancel(request):
            return True
        verdict = self.rate_limiter.check(peer.host, self.now())
        if verdict == ADMIT:
            return True
        self.stats["rate_limited"] += 1
        if verdict == REFUSE:
            response = make_response(request, 503, to_tag=new_tag(), extra=[
                ("Retry-After", str(self.rate_limiter.retry_after)),
                ("Server", self.user_agent)])
            self.send_stateless(response, self.response_peer(request, peer))
        return False

    def trust(self, peer: Peer) -> None:
        """Mark the account's registrar or outbound proxy: it relays everyone's requests,
        so it is not one source to rate-limit (a handful of addresses at most)."""
        self._trusted_hops.add((peer.host, peer.port))

    def _trusted(self, peer: Peer) -> bool:
        return (peer.host, peer.port) in self._trusted_hops

    def _dispatch(self, request: Request, stx: ServerTransaction, peer: Peer) -> None:
        method = request.method
        if method == "CANCEL":
            invite_tx = self.table.find_invite_for_cancel(request)
            call = self.calls.get(request.call_id)
            if invite_tx is None or call is None:
                self.respond(stx, make_response(request, 481, to_tag=new_tag()))
                return
            self.respond(stx, make_response(request, 200, to_tag=call.local_tag))
            call.on_cancel(request)
            return
        unsupported = [tag.strip() for tag in request.headers.get_all("Require") if tag.strip()]
        if unsupported and method not in ("CANCEL", "ACK"):
            self.respond(stx, make_response(request, 420, to_tag=new_tag(),
                                            extra=[("Unsupported", ", ".join(unsupported))]))
            return
        to_tag = request.to.tag
        if to_tag:
            call = self.calls.get(request.call_id)
            if call is None or not call.owns(request):
                self.respond(stx, make_response(request, 481))
                return
            call.on_request(request, stx, peer)
            return
        if method == "INVITE":
            if self._closing:
                self.respond(stx, make_response(request, 503, to_tag=new_tag(),
                                                extra=[("Retry-After", "5")]))
                return
            from .call import Call

            if request.call_id in self.calls:  # merged request (§8.2.2.2)
                self.respond(stx, make_response(request, 482, to_tag=new_tag()))
                return
            if self._live_calls >= self.config.network.max_calls:
                self.respond(stx, make_response(request, 486, to_tag=new_tag()))
                return
            if self._live_calls >= MAX_LIVE_CALLS:
                self.respond(stx, make_response(request, 503, to_tag=new_tag(),
                                                extra=[("Retry-After", "5")]))
                return
            Call.incoming(self, request, stx, peer)
            return
        if method == "OPTIONS":
            self.respond(stx, self.options_response(request))
            return
        if method in ("BYE", "INFO"):
            self.respond(stx, make_response(request, 481, to_tag=new_tag()))
            return
        if method in _KNOWN_UNSUPPORTED:
            self.respond(stx, make_response(request, 405, to_tag=new_tag(),
                                            extra=[("Allow", ALLOW)]))
            return
        self.respond(stx, make_response(request, 501, to_tag=new_tag(),
                                        extra=[("Allow", ALLOW)]))

    def options_response(self, request: Request, to_tag: str | None = None) -> Response:
        return make_response(request, 200, to_tag=to_tag or new_tag(), extra=[
            ("Allow", ALLOW), ("Accept", ACCEPT), ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"), ("Supported", SUPPORTED),
        ])

    def media_devices(self, call: "Call"):
        """(source, sink) for a call: from the factory the front end gave, else silence."""
        if self.media_factory is not None:
            return self.media_factory(call)
        from .media.devices import NullSink, NullSource

        return NullSource(), NullSink()

    def active_calls(self) -> int:
        return self._live_calls

    # -- the call table ---------------------------------------------------------------------
    def add_call(self, call: "Call") -> None:
        self.calls[call.call_id] = call
        self._live_calls += 1

    def discard_call(self, call: "Call") -> None:
        """A call that never got going (e.g. no RTP port): forget it at once."""
        if self.calls.get(call.call_id) is call and not call.ended:
            del self.calls[call.call_id]
            self._live_calls -= 1

    def call_ended(self, call: "Call") -> None:
        """Keep the ended call 64*T1 to absorb retransmissions, within a bounded table."""
        self._live_calls -= 1
        self._ended.append(call.call_id)
        while len(self._ended) > MAX_ENDED_RECORDS:
            self._forget(self._ended.popleft())
        self.loop.call_later(64 * self.timers.t1, self._forget, call.call_id)

    def _forget(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.ended:
            del self.calls[call_id]

    # -- commands -----------------------------------------------------------------------------
    def register(self) -> "Registration":
        from .registration import Registration

        if self.account is None:
            raise ValueError("no account to register")
        if self.registration is None:
            self.registration = Registration(self, self.account)
        self.registration.start()
        return self.registration

    async def call(self, target: str, **options: Any) -> "Call":
        from .call import Call

        return await Call.outgoing(self, target, **options)

    def out_of_dialog_route(self, ruri: SipUri) -> tuple[SipUri, list[str]]:
        """Next hop and pre-loaded Route for a new request (DESIGN §3, `call`)."""
        acc = self.account
        if acc is not None:
            if acc.outbound_proxy:
                proxy = parse_uri(acc.outbound_proxy)
                if "lr" in proxy.params:
                    return proxy, [f"<{proxy}>"]
                return proxy, []
            aor = acc.aor_uri
            if ruri.host.lower() == aor.host.lower() and ruri.port in (None, aor.port):
                return parse_uri(acc.registrar), []
        return ruri, []


def _split_hostport(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port or 0)
    host, _, port = text.rpartition(":")
    if not host:
        return text, 0
    return host, int(port or 0)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_literal(ip: str) -> str:
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
