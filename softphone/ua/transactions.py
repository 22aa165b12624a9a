"""The stack's transactions: the pure machines of :mod:`softphone.sip.transaction` run on
loop timers and the transport, with what the stack keeps beside each.

A client transaction carries a usage's request to one target; on a timeout, a transport
error or a 503 before any provisional it goes on to the next target the resolver gave
(RFC 3263 §4.3). A server transaction absorbs retransmissions and carries our responses.
What a transaction delivers (a response, a timeout, the ACK of a 2xx) goes back to the
stack, which hands it to the usage that owns the transaction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..sip.errors import SipParseError
from ..sip.ids import new_branch
from ..sip.message import Request, Response
from ..sip.transaction import (ClientTransaction, Deliver, Send, ServerTransaction,
                               StartTimer as TxStart, StopTimer as TxStop, Terminated, Timeout,
                               TransactionTable)
from ..transport import Peer

if TYPE_CHECKING:
    from .stack import Stack

__all__ = ["Transactions", "TxContext"]

log = logging.getLogger(__name__)

_LINGERING = ("completed", "accepted", "confirmed")  # transaction states that only wait


@dataclass
class TxContext:
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


class Transactions:
    """Every live transaction of ``stack`` and its context."""

    def __init__(self, stack: "Stack") -> None:
        self.stack = stack
        self.table = TransactionTable()
        self._ctx: dict[int, TxContext] = {}
        self._request_keys: dict[tuple, int] = {}  # live server transactions' requests
        self._clients: dict[tuple[int, int, str], TxContext] = {}  # (owner, CSeq, method)

    def __len__(self) -> int:
        return len(self._ctx)

    # ======================================================================== client
    def start_client(self, usage: Any, request: Request, peer: Peer, *,
                     alternates: list[Peer] | None = None,
                     unstamped: Request | None = None) -> None:
        stack = self.stack
        tx = ClientTransaction(request, reliable=peer.proto != "udp", timers=stack.timers)
        self.table.add_client(tx)
        ctx = TxContext(tx, peer, owner=usage, created=stack.now(),
                        alternates=list(alternates or ()),
                        unstamped=unstamped if alternates else None)
        self._ctx[id(tx)] = ctx
        try:
            number, method = request.cseq
            self._clients[(id(usage), number, method)] = ctx
        except SipParseError:
            pass
        self._apply(ctx, tx.start(stack.now()))

    def send_cancel(self, usage: Any, cseq: int) -> None:
        ctx = self._clients.get((id(usage), cseq, "INVITE"))
        if ctx is None or ctx.tx.state not in ("calling", "proceeding"):
            return
        cancel = ctx.tx.make_cancel()
        if self.stack.user_agent:
            cancel.headers.add("User-Agent", self.stack.user_agent)
        self.start_client(usage, cancel, ctx.dest)

    def abort(self, usage: Any, cseq: int, method: str) -> None:
        ctx = self._clients.pop((id(usage), cseq, method), None)
        if ctx is not None:
            self._forget(ctx)

    def disown(self, usage: Any) -> None:
        """``usage`` is gone: its requests' answers reach nobody now."""
        key = id(usage)
        for ckey in [k for k in self._clients if k[0] == key]:
            self._clients.pop(ckey).owner = None

    # ======================================================================== server
    def start_server(self, request: Request, dest: Peer, reliable: bool) -> TxContext:
        """A server transaction for a new request; its responses go to ``dest``."""
        stack = self.stack
        stx = ServerTransaction(request, reliable=reliable, timers=stack.timers)
        self.table.add_server(stx)
        key = _request_key(request)
        self._request_keys[key] = self._request_keys.get(key, 0) + 1
        ctx = self._ctx[id(stx)] = TxContext(stx, dest, created=stack.now(), key=key)
        return ctx

    def merged(self, request: Request) -> bool:
        """A live server transaction holds a request with this From tag, Call-ID and CSeq
        (but another branch: a retransmission would have matched it)."""
        return self._request_keys.get(_request_key(request), 0) > 0

    def owner_of_invite(self, cancel: Request) -> Any:
        """The usage that owns the INVITE transaction ``cancel`` is for, if any."""
        invite = self.table.find_invite_for_cancel(cancel)
        return self._ctx[id(invite)].owner if invite is not None and \
            id(invite) in self._ctx else None

    def respond(self, response: Response) -> bool:
        """Send ``response`` through the server transaction of its request; False when
        that has ended."""
        stx = self.table.match_outgoing_response(response)
        ctx = self._ctx.get(id(stx)) if stx is not None else None
        if ctx is None:
            return False
        self._apply(ctx, ctx.tx.respond(response, self.stack.now()))
        return True

    def context_of(self, request: Request) -> TxContext | None:
        """The context of the server transaction of ``request``, while it lives."""
        stx = self.table.match_request(request)
        return self._ctx.get(id(stx)) if stx is not None else None

    def discard(self, request: Request) -> None:
        """Forget the server transaction of ``request`` without answering."""
        ctx = self.context_of(request)
        if ctx is not None:
            self._forget(ctx)

    # ======================================================================== receiving
    def feed_request(self, request: Request) -> bool:
        """A retransmission, or the ACK of a non-2xx final: True when a live transaction
        absorbed it."""
        stx = self.table.match_request(request)
        if stx is None:
            return False
        self._feed(stx, request)
        return True

    def feed_response(self, response: Response) -> bool:
        """True when the response matched a live client transaction (which took it)."""
        tx = self.table.match_response(response)
        if tx is None:
            return False
        self._feed(tx, response)
        return True

    def _feed(self, tx: Any, message: Request | Response) -> None:
        ctx = self._ctx.get(id(tx))
        if ctx is not None:
            step = tx.on_response if isinstance(message, Response) else tx.on_request
            self._apply(ctx, step(message, self.stack.now()))

    # ======================================================================== the machines' actions
    def _apply(self, ctx: TxContext, actions: list) -> None:
        stack = self.stack
        for action in actions:
            if isinstance(action, Send):
                try:
                    stack.transport.send(action.message.to_bytes(), ctx.dest)
                except OSError as exc:
                    log.info("send to %s failed: %s", ctx.dest, exc)  # the usage says why
                    ctx.error = f"cannot send to {ctx.dest}: {exc.strerror or exc}"
                    stack.loop.call_soon(self._transport_error, ctx)
            elif isinstance(action, TxStart):
                old = ctx.timers.pop(action.name, None)
                if old:
                    old.cancel()
                ctx.timers[action.name] = stack.loop.call_at(action.deadline, self._fire,
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
                    stack._guarded(owner, lambda m=message: owner.on_response(m, stack.now()))
                else:  # an ACK that matched a 2xx transaction (RFC 6026 §7.1)
                    stack._to_dialog(message)
            elif isinstance(action, Timeout):
                owner = ctx.owner
                if isinstance(ctx.tx, ClientTransaction) and self._failover(ctx):
                    continue
                if owner is not None and isinstance(ctx.tx, ClientTransaction):
                    request = ctx.tx.request
                    stack._guarded(owner, lambda: owner.on_timeout(request, ctx.error,
                                                                   stack.now()))
            elif isinstance(action, Terminated):
                self._forget(ctx)
        tx = ctx.tx
        if tx.state in _LINGERING and id(tx) in self._ctx:
            # only retransmissions are left to absorb: keep the messages, not their caches
            tx.request.compact()
            if tx.last_response is not None:
                tx.last_response.compact()

    def _answered(self, ctx: TxContext, response: Response) -> bool:
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
                self.stack.resolver.succeeded(ctx.dest)
            if ctx.owner is not None:
                self.stack._answered_from(ctx.owner, ctx.dest)
        return False

    def _failover(self, ctx: TxContext) -> bool:
        """Send the request again, as a new transaction, to the next target left; False
        when none is (the failure then goes to the usage as usual). A usage gone already
        still gets its request delivered: a BYE outlives the call it ends."""
        stack = self.stack
        stack.resolver.failed(ctx.dest)
        request, owner = ctx.unstamped, ctx.owner
        if not ctx.alternates or request is None or stack.closing:
            return False
        peer, rest = ctx.alternates[0], ctx.alternates[1:]
        ctx.alternates, ctx.unstamped = [], None
        log.info("%s to %s failed (%s): trying %s %s", request.method, ctx.dest,
                 ctx.error or "no answer", peer.proto, peer)
        self.start_client(owner, stack.stamp(request, peer, new_branch()), peer,
                          alternates=rest, unstamped=request)
        return True

    def _forget(self, ctx: TxContext) -> None:
        for handle in ctx.timers.values():
            handle.cancel()
        ctx.timers.clear()
        self.table.remove(ctx.tx)
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

    def _fire(self, ctx: TxContext, name: str) -> None:
        ctx.timers.pop(name, None)
        self._apply(ctx, ctx.tx.on_timer(name, self.stack.now()))

    # ======================================================================== transport trouble
    def on_transport_error(self, peer: Peer, reason: str) -> None:
        """A connection could not be made: fail its transactions now, saying why."""
        for ctx in list(self._ctx.values()):
            if ctx.dest == peer and isinstance(ctx.tx, ClientTransaction):
                ctx.error = reason
                self._apply(ctx, ctx.tx.on_transport_error(self.stack.now()))

    def on_unreachable(self, peer: Peer, reason: str) -> None:
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
                self._apply(ctx, ctx.tx.on_transport_error(self.stack.now()))

    def on_flow_closed(self, peer: Peer, reason: str) -> None:
        """A TCP/TLS connection closed: requests still waiting on it fail now (and fail
        over)."""
        for ctx in list(self._ctx.values()):
            if ctx.dest == peer and isinstance(ctx.tx, ClientTransaction) and \
                    ctx.tx.state in ("calling", "trying", "proceeding"):
                ctx.error = f"{peer.proto.upper()} connection to {peer} lost: {reason}"
                self._apply(ctx, ctx.tx.on_transport_error(self.stack.now()))

    def _transport_error(self, ctx: TxContext) -> None:
        if id(ctx.tx) in self._ctx:
            self._apply(ctx, ctx.tx.on_transport_error(self.stack.now()))

    # ======================================================================== closing
    def bye_linger_until(self) -> float:
        """Until when to stay for a resent BYE: one answered just now over UDP may see our
        200 lost and come again after T1 (§17.1.2.2); 0 when none was."""
        t1 = self.stack.timers.t1
        return max((ctx.created + 2 * t1 for ctx in self._ctx.values()
                    if isinstance(ctx.tx, ServerTransaction) and ctx.dest.proto == "udp"
                    and ctx.tx.request.method == "BYE"), default=0.0)

    def close(self) -> None:
        """Cancel every timer and forget every transaction."""
        for ctx in list(self._ctx.values()):
            for handle in ctx.timers.values():
                handle.cancel()
        self._ctx.clear()
        self._clients.clear()
        self._request_keys.clear()


def _request_key(request: Request) -> tuple:
    return (request.call_id, request.from_.tag, request.cseq)
