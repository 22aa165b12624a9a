"""A pure in-memory SIP network for unit tests: endpoints, a fake clock, loss on demand.

Each :class:`Endpoint` is a tiny sans-IO stack — the real transaction machines and
dialog table of ``softphone.sip`` — that carries out the actions of the usages it hosts
(INVITE sessions, registrations, subscriptions). Messages cross the :class:`Wire` as
bytes (serialised and parsed again, like the real thing) after ``latency`` seconds; a
``drop`` predicate loses the ones a test chooses. Nothing sleeps: :meth:`Wire.run`
jumps the clock from one event to the next, bounded in count and in time.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from softphone.sip.actions import (AbortRequest, BindDialog, Emit, SendCancel, SendRequest,
                                   SendResponse, StartTimer, StopTimer, UnbindDialog)
from softphone.sip.dialogs import DialogTable
from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.transaction import (ClientTransaction, Deliver, Send, ServerTransaction,
                                       StartTimer as TxStart, StopTimer as TxStop, Terminated,
                                       TimerConfig, Timeout, TransactionTable)
from softphone.sip.uri import SipUri


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    run: Callable[[], None] = field(compare=False)
    key: Any = field(default=None, compare=False)


class Wire:
    def __init__(self, latency: float = 0.01) -> None:
        self.now = 0.0
        self.latency = latency
        self.endpoints: dict[str, "Endpoint"] = {}
        self.drop: Callable[[str, str, bytes], bool] = lambda src, dst, data: False
        self.log: list[tuple[float, str, str, bytes]] = []  # (time, src, dst, data) delivered
        self.lost: list[tuple[float, str, str, bytes]] = []
        self._queue: list[_Event] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()

    def add(self, endpoint: "Endpoint") -> "Endpoint":
        self.endpoints[endpoint.host] = endpoint
        endpoint.wire = self
        return endpoint

    def schedule(self, at: float, run: Callable[[], None]) -> int:
        seq = next(self._seq)
        heapq.heappush(self._queue, _Event(at, seq, run))
        return seq

    def cancel(self, seq: int) -> None:
        self._cancelled.add(seq)

    def transmit(self, src: str, dst: str, data: bytes) -> None:
        if self.drop(src, dst, data):
            self.lost.append((self.now, src, dst, data))
            return
        target = self.endpoints.get(dst)
        if target is None:
            return

        def deliver() -> None:
            self.log.append((self.now, src, dst, data))
            target.receive(data, src)

        self.schedule(self.now + self.latency, deliver)

    def drop_first(self, prefix: bytes) -> list[bytes]:
        """Lose the first message that starts with ``prefix``; returns the list it goes in."""
        dropped: list[bytes] = []

        def drop(src: str, dst: str, data: bytes) -> bool:
            if data.startswith(prefix) and not dropped:
                dropped.append(data)
                return True
            return False

        self.drop = drop
        return dropped

    def run(self, until: float | None = None, *, max_events: int = 20000) -> None:
        """Process events in time order up to ``until`` (default: until none are left)."""
        for _ in range(max_events):
            while self._queue and self._queue[0].seq in self._cancelled:
                self._cancelled.discard(heapq.heappop(self._queue).seq)
            if not self._queue:
                break
            if until is not None and self._queue[0].at > until:
                break
            event = heapq.heappop(self._queue)
            self.now = max(self.now, event.at)
            event.run()
        else:
            raise AssertionError(f"more than {max_events} events: a loop?")
        if until is not None:
            self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def sent(self, pattern: bytes, src: str | None = None) -> list[bytes]:
        """Messages delivered whose start line begins with ``pattern``."""
        return [d for _, s, _, d in self.log if d.startswith(pattern) and (src in (None, s))]


class Endpoint:
    """A host on the wire: transaction table, dialog table, timers, hosted usages."""

    def __init__(self, host: str, *, timers: TimerConfig = TimerConfig(),
                 on_new_request: Callable[["Endpoint", Request], Any] | None = None) -> None:
        self.host = host
        self.wire: Wire | None = None
        self.config = timers
        self.transactions = TransactionTable()
        self.dialogs = DialogTable()
        self.on_new_request = on_new_request
        self.events: list[tuple[Any, object]] = []  # (usage, event)
        self.stray: list[bytes] = []
        self._tx: dict[int, dict] = {}   # id(tx) -> {tx, owner, timers, dest}
        self._timers: dict[tuple[int, str], int] = {}
        self._client_by_owner: dict[tuple[int, int, str], ClientTransaction] = {}
        self._stx_owner: dict[int, Any] = {}

    @property
    def now(self) -> float:
        assert self.wire is not None
        return self.wire.now

    def uri(self, user: str = "u") -> SipUri:
        return SipUri(user=user, host=self.host, port=5060)

    def contact(self, user: str = "u") -> str:
        return f"<{self.uri(user)}>"

    def events_of(self, usage: Any, kind: type | None = None) -> list:
        return [e for u, e in self.events if u is usage and (kind is None or isinstance(e, kind))]

    # -- carrying out actions ------------------------------------------------------------
    def run(self, usage: Any, actions: list) -> None:
        for action in actions:
            if isinstance(action, SendRequest):
                self._send_request(usage, action)
            elif isinstance(action, SendResponse):
                self._send_response(action.response)
            elif isinstance(action, SendCancel):
                tx = self._client_by_owner.get((id(usage), action.cseq, "INVITE"))
                ctx = self._tx.get(id(tx)) if tx is not None else None
                if ctx is not None:
                    self._start_client(usage, tx.make_cancel(), ctx["dest"])
            elif isinstance(action, AbortRequest):
                tx = self._client_by_owner.get((id(usage), action.cseq, action.method))
                if tx is not None:
                    self._drop_tx(tx)
            elif isinstance(action, StartTimer):
                self._arm(usage, action.key, action.deadline)
            elif isinstance(action, StopTimer):
                seq = self._timers.pop((id(usage), action.key), None)
                if seq is not None:
                    self.wire.cancel(seq)
            elif isinstance(action, Emit):
                self.events.append((usage, action.event))
            elif isinstance(action, BindDialog):
                self.dialogs.bind(action.dialog_id, usage)
            elif isinstance(action, UnbindDialog):
                self.dialogs.unbind(action.dialog_id, usage)
            else:
                raise AssertionError(f"unknown action {action!r}")

    def _arm(self, usage: Any, key: str, deadline: float) -> None:
        old = self._timers.pop((id(usage), key), None)
        if old is not None:
            self.wire.cancel(old)

        def fire() -> None:
            self._timers.pop((id(usage), key), None)
            self.run(usage, usage.on_timer(key, self.now))

        self._timers[(id(usage), key)] = self.wire.schedule(deadline, fire)

    def _stamp(self, request: Request, branch: str) -> Request:
        copy = Request(request.method, request.uri, request.headers.copy(), request.body)
        copy.headers.prepend("Via", f"SIP/2.0/UDP {self.host}:5060;branch={branch};rport")
        return copy

    def _send_request(self, usage: Any, action: SendRequest) -> None:
        dest = action.target.host_bare
        wire_request = self._stamp(action.request, action.branch)
        if action.stateless:
            self.wire.transmit(self.host, dest, wire_request.to_bytes())
            return
        self._start_client(usage, wire_request, dest, original=action.request)

    def _start_client(self, usage: Any, request: Request, dest: str,
                      original: Request | None = None) -> None:
        tx = ClientTransaction(request, reliable=False, timers=self.config)
        self.transactions.add_client(tx)
        self._tx[id(tx)] = {"tx": tx, "owner": usage, "dest": dest,
                            "original": original or request, "timers": {}}
        self._client_by_owner[(id(usage), request.cseq[0], request.method)] = tx
        self._apply_tx(tx, tx.start(self.now))

    def _send_response(self, response: Response) -> None:
        stx = self.transactions.match_outgoing_response(response)
        dest = response.top_via.params.get("received") or response.top_via.host
        if stx is None:
            self.wire.transmit(self.host, dest, response.to_bytes())
            return
        self._apply_tx(stx, stx.respond(response, self.now))

    def _apply_tx(self, tx, actions: list) -> None:
        ctx = self._tx.get(id(tx))
        if ctx is None:
            return
        for a in actions:
            if isinstance(a, Send):
                if isinstance(tx, ClientTransaction):
                    dest = ctx["dest"]
                else:
                    via = tx.request.top_via
                    dest = via.params.get("received") or via.host
                self.wire.transmit(self.host, dest, a.message.to_bytes())
            elif isinstance(a, TxStart):
                old = ctx["timers"].pop(a.name, None)
                if old is not None:
                    self.wire.cancel(old)

                def fire(tx=tx, name=a.name) -> None:
                    c = self._tx.get(id(tx))
                    if c is not None:
                        c["timers"].pop(name, None)
                        self._apply_tx(tx, tx.on_timer(name, self.now))

                ctx["timers"][a.name] = self.wire.schedule(a.deadline, fire)
            elif isinstance(a, TxStop):
                old = ctx["timers"].pop(a.name, None)
                if old is not None:
                    self.wire.cancel(old)
            elif isinstance(a, Deliver):
                if isinstance(a.message, Response) and ctx["owner"] is not None:
                    owner = ctx["owner"]
                    self.run(owner, owner.on_response(a.message, self.now))
                elif isinstance(a.message, Request):  # an ACK matched a 2xx transaction
                    self._to_dialog(a.message)
            elif isinstance(a, Timeout):
                owner = ctx["owner"]
                if isinstance(tx, ClientTransaction) and owner is not None:
                    self.run(owner, owner.on_timeout(ctx["original"], None, self.now))
            elif isinstance(a, Terminated):
                self._drop_tx(tx)

    def _drop_tx(self, tx) -> None:
        ctx = self._tx.pop(id(tx), None)
        if ctx is not None:
            for seq in ctx["timers"].values():
                self.wire.cancel(seq)
        self.transactions.remove(tx)

    # -- receiving ------------------------------------------------------------------------
    def receive(self, data: bytes, src: str) -> None:
        msg = parse_message(data)
        if isinstance(msg, Response):
            tx = self.transactions.match_response(msg)
            if tx is not None:
                self._apply_tx(tx, tx.on_response(msg, self.now))
                return
            for usage in self.dialogs.for_response(msg):
                self.run(usage, usage.on_response(msg, self.now))
                return
            self.stray.append(data)
            return
        via = msg.top_via
        if via.host != src:
            via.params["received"] = src
            msg.headers.replace_first_value("Via", str(via))
        stx = self.transactions.match_request(msg)
        if stx is not None:
            self._apply_tx(stx, stx.on_request(msg, self.now))
            return
        if msg.method == "ACK":
            self._to_dialog(msg)
            return
        stx = ServerTransaction(msg, reliable=False, timers=self.config)
        self.transactions.add_server(stx)
        self._tx[id(stx)] = {"tx": stx, "owner": None, "dest": src, "original": msg,
                             "timers": {}}
        if msg.method == "CANCEL":
            invite = self.transactions.find_invite_for_cancel(msg)
            owner = self._stx_owner.get(id(invite)) if invite is not None else None
            if owner is None:
                self._send_response(make_response(msg, 481, to_tag="x"))
            else:
                self.run(owner, owner.on_request(msg, self.now))
            return
        if msg.to.tag:
            route = self.dialogs.route(msg)
            if route.usage is None:
                status = 405 if route.dialog_exists else 481
                self._send_response(make_response(msg, status))
                return
            self.run(route.usage, route.usage.on_request(msg, self.now))
            return
        usage = self.on_new_request(self, msg) if self.on_new_request else None
        if usage is None:
            self._send_response(make_response(msg, 501, to_tag="x"))
            return
        self._stx_owner[id(stx)] = usage

    def _to_dialog(self, ack: Request) -> None:
        route = self.dialogs.route(ack)
        if route.usage is not None:
            self.run(route.usage, route.usage.on_request(ack, self.now))
