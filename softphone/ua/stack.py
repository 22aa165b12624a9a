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
from typing import Any, Callable

from ..config import Config
from ..sip.actions import (AbortRequest, BindDialog, Emit, SendCancel, SendRequest,
                           SendResponse, StartTimer, StopTimer, UnbindDialog)
from ..sip.caps import Capabilities
from ..sip.dialogs import DialogTable
from ..sip.errors import SipParseError
from ..sip.ids import new_tag
from ..sip.message import Request, Response, make_response, parse_message
from ..sip.transaction import TimerConfig
from ..sip.uri import SIP_SCHEMES, SipUri
from ..transport import Peer, TransportLayer, server_tls_context, tls_context
from .addressing import Addressing, host_literal, split_hostport
from .admission import Admission
from .incoming import answer_malformed, response_peer, stamp_received
from .ratelimit import ALLOW, REFUSE
from .resolver import ResolveError, Resolver
from .transactions import Transactions

__all__ = ["Stack"]

log = logging.getLogger(__name__)

Tracer = Callable[[str, bytes, Peer], None]
NewRequest = Callable[[Request, Peer], None]


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
        self.tx = Transactions(self)  # the live transactions and what we keep beside each
        self.transport = TransportLayer(
            self._on_message, tracer, on_error=self.tx.on_transport_error,
            tls=lambda: tls_context(verify=config.sip.tls_verify, ca_file=config.sip.tls_ca_file,
                                    cert_file=network.tls_cert_file,
                                    key_file=network.tls_key_file))
        self.dialogs = DialogTable()
        self.resolver = Resolver(servers=config.network.dns_servers)
        self.addresses = Addressing(network, self.transport, self.resolver)  # ours, per peer
        self.stats = {"parse_errors": 0, "bad_requests_answered": 0, "handler_errors": 0,
                      "stray_responses": 0, "rate_limited": 0, "overload_dropped": 0,
                      "strangers": 0}
        self.admission = Admission(network, self.transport, self.tx, self.stats)
        self.closing = False
        self._listeners: dict[int, Callable[[object], None]] = {}
        self._usage_timers: dict[tuple[int, str], asyncio.TimerHandle] = {}
        self._usages: dict[int, Any] = {}
        self._resolving: dict[int, asyncio.Future] = {}  # owner -> its last pending send
        self.relay: socket.socket | None = None  # a worker's line to its dispatcher
        self._flows: dict[int, Peer] = {}  # usage -> the target its last final came from
        self.flow_listeners: list[Callable[[Peer, str], None]] = []
        self.transport.on_closed = self._on_flow_closed
        self.transport.on_unreachable = self.tx.on_unreachable

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
        linger = self.tx.bye_linger_until()
        if min(linger, deadline) > self.now():
            await asyncio.sleep(min(linger, deadline) - self.now())
        self.tx.close()
        for handle in self._usage_timers.values():
            handle.cancel()
        self._usage_timers.clear()
        for fut in self._resolving.values():
            fut.cancel()
        await self.transport.close()

    # ======================================================================== addressing
    def peer_of(self, usage: Any) -> Peer | None:
        """The target that sent ``usage`` its last final response (after any failover)."""
        return self._flows.get(id(usage))

    async def resolve(self, uri: SipUri, transport: str | None = None) -> Peer:
        """Where a new request to ``uri`` goes first (RFC 3263)."""
        return await self.resolver.resolve(uri, transport)

    async def resolve_all(self, uri: SipUri, transport: str | None = None) -> list[Peer]:
        """Every target for ``uri``, in the order a request tries them."""
        return await self.resolver.resolve_all(uri, transport)

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
        self.tx.disown(usage)

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
            self._after_pending(usage, lambda: self.tx.send_cancel(usage, action.cseq))
        elif isinstance(action, AbortRequest):
            self._after_pending(usage, lambda: self.tx.abort(usage, action.cseq, action.method))
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

    def _answered_from(self, usage: Any, peer: Peer) -> None:
        """A final response for ``usage`` came from ``peer`` (see :meth:`peer_of`)."""
        if id(usage) in self._usages:
            self._flows[id(usage)] = peer

    # ======================================================================== sending
    def stamp(self, request: Request, peer: Peer, branch: str) -> Request:
        """A copy of ``request`` with our Via on top (the original is never changed)."""
        copy = Request(request.method, request.uri, request.headers.copy(), request.body)
        host = host_literal(self.addresses.local_ip_for(peer.host))
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
        self.tx.start_client(usage, request, peer, alternates=peers[1:],
                             unstamped=action.request)

    def send_stateless(self, message: Request | Response, dest: Peer) -> None:
        """ACK for 2xx, stateless answers: no transaction carries them."""
        try:
            self.transport.send(message.to_bytes(), dest)
        except OSError as exc:
            log.info("send to %s failed: %s", dest, exc)

    def respond(self, response: Response) -> None:
        """Send a response through the server transaction of its request; with none
        left (it ended), back along the Via (§18.2.2)."""
        if "Server" not in response.headers and "User-Agent" not in response.headers \
                and self.user_agent:
            response.headers.add("Server", self.user_agent)
        if self.tx.respond(response):
            return
        try:
            via = response.top_via
            rport = via.params.get("rport")
            port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
            peer = Peer("udp", via.params.get("received") or via.host.strip("[]"), port)
        except SipParseError:
            return
        if via.transport == "UDP":
            self.send_stateless(response, peer)

    def answer(self, request: Request, status: int, reason: str | None = None, *,
               extra: list[tuple[str, str]] | None = None) -> None:
        """Answer an out-of-dialog request nobody will own (OPTIONS, 405 …)."""
        self.respond(make_response(request, status, reason, to_tag=new_tag(),
                                   extra=extra or ()))

    def discard(self, request: Request) -> None:
        """Forget the server transaction of ``request`` without answering (a dropped
        stranger): nothing of it is kept."""
        self.tx.discard(request)

    def adopt(self, request: Request, usage: Any) -> None:
        """``usage`` owns the server transaction of ``request`` (a CANCEL goes to it)."""
        ctx = self.tx.context_of(request)
        if ctx is not None:
            ctx.owner = usage

    def _on_flow_closed(self, peer: Peer, reason: str, inbound: bool) -> None:
        """A TCP/TLS connection closed (reset, EOF, no keep-alive pong): requests still
        waiting on it fail now (and fail over), and the accounts hear of it."""
        if self.closing:
            return
        self.tx.on_flow_closed(peer, reason)
        for listener in list(self.flow_listeners):
            try:
                listener(peer, reason)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("flow listener failed")

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
                stamp_received(msg, peer, self.transport)
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
        if answer_malformed(exc, peer, self.transport):
            self.stats["bad_requests_answered"] += 1

    def _on_response(self, response: Response) -> None:
        if self.tx.feed_response(response):
            return
        # a 2xx resent after the INVITE transaction ended, or one from a late fork
        for usage in self.dialogs.for_response(response):
            self._guarded(usage, lambda u=usage: u.on_response(response, self.now()))
            return
        self.stats["stray_responses"] += 1

    def _on_request(self, request: Request, peer: Peer) -> None:
        # a retransmission, or the ACK of a non-2xx final: the transaction absorbs it
        if self.tx.feed_request(request):
            return
        method = request.method
        if method == "ACK":  # for a 2xx: transaction-less, it belongs to the dialog
            self._to_dialog(request)
            return
        if not self._admit(request, peer):
            return
        if not request.to.tag and self.tx.merged(request):
            # §8.2.2.2: the same request reached us by another path (a forking proxy)
            self.answer(request, 482, "Loop Detected")
            return
        ctx = self.tx.start_server(request, response_peer(request, peer),
                                   reliable=peer.proto != "udp")
        if method == "CANCEL":
            owner = self.tx.owner_of_invite(request)
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
            ctx.owner = usage
            self._guarded(usage, lambda: usage.on_request(request, self.now()))
            return
        self.on_request(request, peer)

    def _to_dialog(self, ack: Request) -> None:
        route = self.dialogs.route(ack)
        if route.usage is not None:
            usage = route.usage
            self._guarded(usage, lambda: usage.on_request(ack, self.now()))

    def _admit(self, request: Request, peer: Peer) -> bool:
        """Bound what strangers can make us hold (:class:`Admission`); a refusal is
        answered with 503 (statelessly), a drop is not."""
        verdict = self.admission.check(request, peer, self.now())
        if verdict == ALLOW:
            return True
        if verdict == REFUSE:
            response = make_response(request, 503, to_tag=new_tag(), extra=[
                ("Retry-After", str(self.admission.retry_after))])
            if self.user_agent:
                response.headers.add("Server", self.user_agent)
            self.send_stateless(response, response_peer(request, peer))
        return False
