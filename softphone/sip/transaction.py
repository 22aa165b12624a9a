"""SIP transactions (RFC 3261 §17, with the RFC 6026 'accepted' state), sans-IO.

Four state machines — INVITE and non-INVITE, client and server — and a table that matches
incoming messages to them. Nothing here reads a clock, sleeps or touches a socket: the
owner passes the current time ``now`` into every call and carries out the returned
actions *in order*:

* :class:`Send` — put a message on the wire (client: to the transaction's destination;
  server: back along the Via, addresses are the owner's business);
* :class:`StartTimer` / :class:`StopTimer` — (re)arm or cancel a named timer; when it
  expires the owner calls ``on_timer(name, now)``. Starting a running name replaces it;
* :class:`Deliver` — hand a message up to the transaction user (TU);
* :class:`Timeout` — the request timed out (Timer B/F, or for a server: Timer H, the ACK
  never came, or a transport failure); the TU treats it as a 408;
* :class:`Terminated` — always the last action; the owner drops the transaction and all
  its timers (no StopTimer actions precede it).

Timer names are RFC 3261's letters ("A", "B", "D", "E", "F", "G", "H", "I", "J", "K")
and RFC 6026's ("L", "M"). Timers that would last 0 s on a reliable transport (D, I, J, K)
are not started at all: the machine terminates on the spot. A timer that fires in a state
where it means nothing, or that the machine has already stopped, is ignored. No method
raises on unexpected protocol input; it is ignored and ``[]`` is returned.

The ACK for a 2xx is not part of any INVITE transaction (§13.2.2.4, §17.1.1.3): the UAC
sends it with a new branch as a dialog request, so :meth:`TransactionTable.match_request`
never matches it to the INVITE server transaction — the owner routes it to the dialog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import SipParseError
from .message import Headers, Request, Response, Via
from .uri import SipUri, parse_uri

__all__ = [
    "TimerConfig",
    "Send",
    "StartTimer",
    "StopTimer",
    "Deliver",
    "Timeout",
    "Terminated",
    "Action",
    "ClientTransaction",
    "ServerTransaction",
    "TransactionTable",
    "MAGIC_COOKIE",
    "CALLING",
    "TRYING",
    "PROCEEDING",
    "COMPLETED",
    "CONFIRMED",
    "ACCEPTED",
    "TERMINATED",
]

MAGIC_COOKIE: Final = "z9hG4bK"
"""Branch prefix marking an RFC 3261 transaction id (§8.1.1.7); without it, RFC 2543 rules."""

CALLING: Final = "calling"
TRYING: Final = "trying"
PROCEEDING: Final = "proceeding"
COMPLETED: Final = "completed"
CONFIRMED: Final = "confirmed"
ACCEPTED: Final = "accepted"
TERMINATED: Final = "terminated"


@dataclass(frozen=True)
class TimerConfig:
    """T1/T2/T4 (RFC 3261 §17.1.1.1, Table 4); every other timer is derived from them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0):
            raise ValueError("timers need t1 > 0, t2 >= t1, t4 >= 0")

    @property
    def timer_b(self) -> float:
        """INVITE client gives up waiting for any response. Timers F (non-INVITE client
        timeout), H (wait for ACK), L and M (RFC 6026 'accepted' linger) last as long."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """INVITE client lingers in 'completed' to absorb final retransmissions (>= 32 s)."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def timer_i(self, reliable: bool) -> float:
        """INVITE server lingers in 'confirmed' to absorb ACK retransmissions."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Non-INVITE server lingers in 'completed' to answer request retransmissions."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Non-INVITE client lingers in 'completed' to absorb final retransmissions."""
        return 0.0 if reliable else self.t4


# -- actions ---------------------------------------------------------------------------------


@dataclass
class Send:
    message: Request | Response


@dataclass
class StartTimer:
    name: str
    deadline: float
    """Absolute, on the same clock as the ``now`` values passed in."""


@dataclass
class StopTimer:
    name: str


@dataclass
class Deliver:
    message: Request | Response


@dataclass
class Timeout:
    pass


@dataclass
class Terminated:
    pass


Action = Send | StartTimer | StopTimer | Deliver | Timeout | Terminated


# -- shared machinery ------------------------------------------------------------------------


def _branch_of(message: Request | Response) -> str:
    try:
        return message.top_via.branch or ""
    except SipParseError:
        return ""


def _cseq_method(request: Request) -> str:
    try:
        return request.cseq[1]
    except SipParseError:
        return request.method


class _Machine:
    """State, the running timers and their bookkeeping, common to all four machines."""

    def __init__(self, request: Request, reliable: bool, timers: TimerConfig) -> None:
        self.request = request
        self.reliable = reliable
        self.config = timers
        self.is_invite = request.method == "INVITE"
        self.key: tuple[str, str] = (_branch_of(request), _cseq_method(request))
        self.state = TERMINATED
        self._timers: dict[str, float] = {}

    @property
    def active_timers(self) -> dict[str, float]:
        """Running timers: name -> absolute deadline (a copy)."""
        return dict(self._timers)

    def _start(self, name: str, now: float, delay: float) -> StartTimer:
        self._timers[name] = now + delay
        return StartTimer(name, now + delay)

    def _stop(self, *names: str) -> list[Action]:
        return [StopTimer(n) for n in names if self._timers.pop(n, None) is not None]

    def _terminate(self, *, timeout: bool = False) -> list[Action]:
        self.state = TERMINATED
        self._timers.clear()
        return [Timeout(), Terminated()] if timeout else [Terminated()]

    def _fire(self, name: str) -> bool:
        """True if ``name`` was running (and is now consumed)."""
        if self.state == TERMINATED:
            return False
        return self._timers.pop(name, None) is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key[1]} {self.key[0]!r} {self.state}>"


# -- client ----------------------------------------------------------------------------------


class ClientTransaction(_Machine):
    """RFC 3261 §17.1.1 (INVITE, with RFC 6026) and §17.1.2 (non-INVITE) client machines.

    An INVITE client stops Timers A and B on the first provisional response (Figure 5:
    B only applies in 'calling'); from then on the TU decides how long to wait (CANCEL).
    An ACK request has no client transaction: :meth:`start` sends it and terminates.
    """

    def __init__(self, request: Request, *, reliable: bool,
                 timers: TimerConfig = TimerConfig()) -> None:
        super().__init__(request, reliable, timers)
        self.state = CALLING if self.is_invite else TRYING
        self.last_response: Response | None = None
        self.ack: Request | None = None
        """The ACK this transaction built for a non-2xx final response, if any."""
        self._started = False
        self._interval = timers.t1  # current retransmit interval (Timer A or E)

    # -- inputs ------------------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        """Send the request and arm the retransmit (unreliable only) and timeout timers."""
        if self._started or self.state == TERMINATED:
            return []
        self._started = True
        actions: list[Action] = [Send(self.request)]
        if self.request.method == "ACK":
            return actions + self._terminate()
        self._interval = self.config.t1
        if self.is_invite:
            if not self.reliable:
                actions.append(self._start("A", now, self._interval))
            actions.append(self._start("B", now, self.config.timer_b))
        else:
            if not self.reliable:
                actions.append(self._start("E", now, self._interval))
            actions.append(self._start("F", now, self.config.timer_b))
        return actions

    def on_response(self, response: Request | Response, now: float) -> list[Action]:
        if not isinstance(response, Response):
            return []  # a request is no response (typed so: a compiled core checks types)
        status = response.status
        if self.state == TERMINATED or not 100 <= status <= 699:
            return []
        if self.is_invite:
            return self._invite_response(response, status, now)
        return self._non_invite_response(response, status, now)

    def on_timer(self, name: str, now: float) -> list[Action]:
        if not self._fire(name):
            return []
        state = self.state
        if self.is_invite:
            if name == "A" and state == CALLING:
                self._interval *= 2
                return [Send(self.request), self._start("A", now, self._interval)]
            if name == "B" and state == CALLING:
                return self._terminate(timeout=True)
            if (name == "D" and state == COMPLETED) or (name == "M" and state == ACCEPTED):
                return self._terminate()
        else:
            if name == "E" and state in (TRYING, PROCEEDING):
                if state == TRYING:
                    self._interval = min(2 * self._interval, self.config.t2)
                else:
                    self._interval = self.config.t2
                return [Send(self.request), self._start("E", now, self._interval)]
            if name == "F" and state in (TRYING, PROCEEDING):
                return self._terminate(timeout=True)
            if name == "K" and state == COMPLETED:
                return self._terminate()
        return []

    def on_transport_error(self, now: float) -> list[Action]:
        """§17.1.4: a failure before any final response is a timeout for the TU."""
        if self.state == TERMINATED:
            return []
        return self._terminate(timeout=self.state in (CALLING, TRYING, PROCEEDING))

    # -- builders ----------------------------------------------------------------------------
    def make_cancel(self) -> Request:
        """§9.1: the CANCEL for this request, which runs as its own client transaction.

        Request-URI, Call-ID, From, To (the request's own, so a re-INVITE's tag is kept),
        CSeq number, the top Via (same branch) and Route headers are the request's.
        """
        return self._derived_request("CANCEL", to=self.request.headers.get("To"))

    def _make_ack(self, response: Response) -> Request:
        """§17.1.1.3: the ACK for a non-2xx final response, To tag taken from it."""
        return self._derived_request(
            "ACK", to=response.headers.get("To") or self.request.headers.get("To"))

    def _derived_request(self, method: str, *, to: str | None) -> Request:
        original = self.request
        headers = Headers()
        vias = original.headers.get_all("Via")
        if vias:
            headers.add("Via", vias[0])
        for name in ("Max-Forwards", "From"):
            value = original.headers.get(name)
            if value is not None:
                headers.add(name, value)
        if to is not None:
            headers.add("To", to)
        call_id = original.headers.get("Call-ID")
        if call_id is not None:
            headers.add("Call-ID", call_id)
        try:
            number = original.cseq[0]
        except SipParseError:
            number = 0
        headers.add("CSeq", f"{number} {method}")
        for name, value in original.headers:
            if name == "Route":
                headers.add(name, value)
        if "Max-Forwards" not in headers:
            headers.add("Max-Forwards", "70")
        return Request(method, original.uri, headers)

    # -- machines ----------------------------------------------------------------------------
    def _invite_response(self, response: Response, status: int, now: float) -> list[Action]:
        state = self.state
        if state in (CALLING, PROCEEDING):
            self.last_response = response
            if status < 200:
                self.state = PROCEEDING
                return self._stop("A", "B") + [Deliver(response)]
            if status < 300:
                self.state = ACCEPTED
                return self._stop("A", "B") + [
                    Deliver(response), self._start("M", now, self.config.timer_b)]
            self.ack = self._make_ack(response)
            self.state = COMPLETED
            actions = self._stop("A", "B") + [Send(self.ack), Deliver(response)]
            delay = self.config.timer_d(self.reliable)
            return actions + (self._terminate() if delay <= 0
                              else [self._start("D", now, delay)])
        if state == COMPLETED and status >= 300 and self.ack is not None:
            return [Send(self.ack)]  # the ACK was lost; the response is absorbed
        if state == ACCEPTED and 200 <= status < 300:
            self.last_response = response
            return [Deliver(response)]  # RFC 6026: the TU ACKs each 2xx itself
        return []

    def _non_invite_response(self, response: Response, status: int, now: float) -> list[Action]:
        if self.state not in (TRYING, PROCEEDING):
            return []  # 'completed' absorbs retransmitted finals
        self.last_response = response
        if status < 200:
            self.state = PROCEEDING
            return [Deliver(response)]
        self.state = COMPLETED
        actions = self._stop("E", "F") + [Deliver(response)]
        delay = self.config.timer_k(self.reliable)
        return actions + (self._terminate() if delay <= 0 else [self._start("K", now, delay)])


# -- server ----------------------------------------------------------------------------------


class ServerTransaction(_Machine):
    """RFC 3261 §17.2.1 (INVITE, with RFC 6026) and §17.2.2 (non-INVITE) server machines.

    Created by the owner for a new request, which it then passes to the TU itself. The TU
    answers through :meth:`respond` (an INVITE server sends no automatic 100 Trying).
    """

    def __init__(self, request: Request, *, reliable: bool,
                 timers: TimerConfig = TimerConfig()) -> None:
        super().__init__(request, reliable, timers)
        # ACK never creates a server transaction (§17.2.3): born terminated, owner drops it
        self.state = TERMINATED if request.method == "ACK" else (
            PROCEEDING if self.is_invite else TRYING)
        self.last_response: Response | None = None
        self._interval = timers.t1  # Timer G

    # -- inputs ------------------------------------------------------------------------------
    def on_request(self, request: Request, now: float) -> list[Action]:
        """A request the table matched here: a retransmission, or the ACK for a non-2xx."""
        method = getattr(request, "method", "")
        if self.state == TERMINATED:
            return []
        if method == "ACK":
            if not self.is_invite:
                return []
            if self.state == COMPLETED:
                self.state = CONFIRMED
                actions = self._stop("G", "H")
                delay = self.config.timer_i(self.reliable)
                return actions + (self._terminate() if delay <= 0
                                  else [self._start("I", now, delay)])
            if self.state == ACCEPTED:
                return [Deliver(request)]  # RFC 6026 §7.1: a 2xx ACK that matched anyway
            return []
        if method != self.request.method:
            return []
        # a retransmission of the request
        if self.state in (PROCEEDING, COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []  # 'trying', 'accepted', 'confirmed': absorbed

    def respond(self, response: Response, now: float) -> list[Action]:
        """The TU sends ``response`` through this transaction."""
        status = getattr(response, "status", 0)
        if self.state == TERMINATED or not 100 <= status <= 699:
            return []
        if self.is_invite:
            return self._invite_respond(response, status, now)
        return self._non_invite_respond(response, status, now)

    def on_timer(self, name: str, now: float) -> list[Action]:
        if not self._fire(name):
            return []
        state = self.state
        if self.is_invite:
            if name == "G" and state == COMPLETED and self.last_response is not None:
                self._interval = min(2 * self._interval, self.config.t2)
                return [Send(self.last_response), self._start("G", now, self._interval)]
            if name == "H" and state == COMPLETED:
                return self._terminate(timeout=True)
            if (name == "I" and state == CONFIRMED) or (name == "L" and state == ACCEPTED):
                return self._terminate()
        elif name == "J" and state == COMPLETED:
            return self._terminate()
        return []

    def on_transport_error(self, now: float) -> list[Action]:
        """§17.2.4: the response could not be sent; tell the TU and give up."""
        if self.state == TERMINATED:
            return []
        return self._terminate(timeout=self.state != CONFIRMED)

    # -- machines ----------------------------------------------------------------------------
    def _invite_respond(self, response: Response, status: int, now: float) -> list[Action]:
        if self.state == ACCEPTED:
            if 200 <= status < 300:
                self.last_response = response
                return [Send(response)]  # RFC 6026 §8.5: 2xx retransmissions from the TU
            return []
        if self.state != PROCEEDING:
            return []
        self.last_response = response
        if status < 200:
            return [Send(response)]
        if status < 300:
            self.state = ACCEPTED
            return [Send(response), self._start("L", now, self.config.timer_b)]
        self.state = COMPLETED
        actions: list[Action] = [Send(response)]
        if not self.reliable:
            self._interval = self.config.t1
            actions.append(self._start("G", now, self._interval))
        actions.append(self._start("H", now, self.config.timer_b))
        return actions

    def _non_invite_respond(self, response: Response, status: int, now: float) -> list[Action]:
        if self.state not in (TRYING, PROCEEDING):
            return []
        self.last_response = response
        if status < 200:
            self.state = PROCEEDING
            return [Send(response)]
        self.state = COMPLETED
        delay = self.config.timer_j(self.reliable)
        actions: list[Action] = [Send(response)]
        actions += self._terminate() if delay <= 0 else [self._start("J", now, delay)]
        return actions


# -- matching --------------------------------------------------------------------------------


def _is_rfc3261_branch(branch: str | None) -> bool:
    return branch is not None and branch[: len(MAGIC_COOKIE)].lower() == MAGIC_COOKIE.lower()


def _sent_by(via: Via) -> tuple[str, int]:
    """Host and port of a Via, the port defaulted per transport (§18.2.2)."""
    default = 5061 if via.transport in ("TLS", "WSS") else 5060
    return via.host.lower(), via.port or default


def _via_identity(via: Via) -> tuple:
    return (via.transport, *_sent_by(via),
            tuple(sorted((k, (v or "").lower()) for k, v in via.params.items())))


def _uri(text: str) -> SipUri | str:
    try:
        return parse_uri(text)
    except SipParseError:
        return text.strip()


@dataclass(frozen=True)
class _Rfc2543Id:
    """What RFC 2543 peers' requests are matched on (§17.2.3, last paragraphs)."""

    request_uri: SipUri | str
    from_tag: str | None
    to_tag: str | None
    call_id: str
    cseq_number: int
    top_via: tuple

    @classmethod
    def of(cls, request: Request) -> "_Rfc2543Id | None":
        try:
            return cls(_uri(request.uri), request.from_.tag, request.to.tag, request.call_id,
                       request.cseq[0], _via_identity(request.top_via))
        except SipParseError:
            return None

    def same_except_to_tag(self, other: "_Rfc2543Id") -> bool:
        return (self.request_uri == other.request_uri and self.from_tag == other.from_tag
                and self.call_id == other.call_id and self.cseq_number == other.cseq_number
                and self.top_via == other.top_via)


def _to_tag(message: Response | None) -> str | None:
    if message is None:
        return None
    try:
        return message.to.tag
    except SipParseError:
        return None


class TransactionTable:
    """Holds live transactions and matches messages to them (§17.1.3, §17.2.3, RFC 2543 fallback).

    Client transactions are keyed by (branch, CSeq method); server transactions with an
    RFC 3261 branch by (branch, sent-by, method), where an ACK looks for the INVITE;
    servers for RFC 2543 requests (no magic cookie) are compared field by field. Branches
    are compared case-insensitively (§7.3.1: parameter values are, unless stated).
    A CANCEL has its own transactions on both sides; the INVITE it refers to is found
    with :meth:`find_invite_for_cancel`. The ACK for a 2xx carries a new branch and
    therefore matches nothing here: it belongs to the dialog.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, tuple[str, int], str], ServerTransaction] = {}
        self._legacy: dict[str, list[ServerTransaction]] = {}  # Call-ID -> RFC 2543 servers

    # -- bookkeeping ---------------------------------------------------------------------------
    def add_client(self, tx: ClientTransaction) -> None:
        self._clients[(tx.key[0].lower(), tx.key[1])] = tx

    def add_server(self, tx: ServerTransaction) -> None:
        if tx.state == TERMINATED:
            return  # e.g. one made for an ACK: it must not shadow the INVITE's
        key = self._server_key(tx.request)
        if key is not None:
            self._servers[key] = tx
            return
        try:
            call_id = tx.request.call_id
        except SipParseError:
            return  # cannot ever be matched; not kept
        bucket = self._legacy.setdefault(call_id, [])
        if all(t is not tx for t in bucket):
            bucket.append(tx)

    def remove(self, tx: ClientTransaction | ServerTransaction) -> None:
        """Forget ``tx``; harmless if it is not (or no longer) held."""
        if isinstance(tx, ClientTransaction):
            key = (tx.key[0].lower(), tx.key[1])
            if self._clients.get(key) is tx:
                del self._clients[key]
            return
        server_key = self._server_key(tx.request)
        if server_key is not None:
            if self._servers.get(server_key) is tx:
                del self._servers[server_key]
            return
        for call_id, bucket in list(self._legacy.items()):
            bucket[:] = [t for t in bucket if t is not tx]
            if not bucket:
                del self._legacy[call_id]

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers) + sum(map(len, self._legacy.values()))

    def __iter__(self):
        yield from self._clients.values()
        yield from self._servers.values()
        for bucket in self._legacy.values():
            yield from bucket

    # -- matching ----------------------------------------------------------------------------
    def match_response(self, response: Response) -> ClientTransaction | None:
        """§17.1.3: top Via branch and CSeq method."""
        try:
            branch = response.top_via.branch
            method = response.cseq[1]
        except SipParseError:
            return None
        if not branch:
            return None
        return self._clients.get((branch.lower(), method))

    def match_request(self, request: Request) -> ServerTransaction | None:
        """§17.2.3: the server transaction ``request`` belongs to, if any."""
        key = self._server_key(request)
        if key is not None:
            return self._servers.get(key)
        return self._match_legacy(request, request.method)

    def match_outgoing_response(self, response: Response) -> ServerTransaction | None:
        """The server transaction a response we are about to send belongs to: the one of
        the request whose top Via and CSeq method it copied (§8.2.6.2)."""
        try:
            via = response.top_via
            number, method = response.cseq
            call_id = response.call_id
        except SipParseError:
            return None
        if _is_rfc3261_branch(via.branch):
            return self._servers.get(((via.branch or "").lower(), _sent_by(via), method))
        ident = _via_identity(via)
        for tx in self._legacy.get(call_id, ()):
            try:
                if tx.request.cseq == (number, method) and \
                        _via_identity(tx.request.top_via) == ident:
                    return tx
            except SipParseError:
                continue
        return None

    def find_invite_for_cancel(self, cancel: Request) -> ServerTransaction | None:
        """§9.2: the INVITE server transaction ``cancel`` refers to."""
        key = self._server_key(cancel, method="INVITE")
        if key is not None:
            return self._servers.get(key)
        return self._match_legacy(cancel, "INVITE")

    @staticmethod
    def _server_key(request: Request, method: str | None = None
                    ) -> tuple[str, tuple[str, int], str] | None:
        try:
            via = request.top_via
        except SipParseError:
            return None
        if not _is_rfc3261_branch(via.branch):
            return None
        if method is None:
            method = "INVITE" if request.method == "ACK" else request.method
        return (via.branch or "").lower(), _sent_by(via), method

    def _match_legacy(self, request: Request, method: str) -> ServerTransaction | None:
        ident = _Rfc2543Id.of(request)
        if ident is None:
            return None
        for tx in self._legacy.get(ident.call_id, ()):
            other = _Rfc2543Id.of(tx.request)
            if other is None or not ident.same_except_to_tag(other):
                continue
            if method == "ACK":
                # the ACK carries the To tag of the response the transaction sent
                if tx.is_invite and ident.to_tag == _to_tag(tx.last_response):
                    return tx
            elif tx.request.method == method and ident.to_tag == other.to_tag:
                return tx
        return None
