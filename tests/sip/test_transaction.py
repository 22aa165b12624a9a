"""RFC 3261 §17 transaction machines (with RFC 6026) and matching, driven on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.transaction import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    StartTimer,
    StopTimer,
    Terminated,
    TimerConfig,
    Timeout,
    TransactionTable,
)

ACTION_TYPES = (Send, StartTimer, StopTimer, Deliver, Timeout, Terminated)


# -- messages --------------------------------------------------------------------------------


def request(method: str = "INVITE", *, branch: str | None = "z9hG4bKabc123",
            sent_by: str = "127.0.0.1:5070", cseq: int = 1, call_id: str = "call-1@127.0.0.1",
            to: str = "<sip:bob@127.0.0.1>", from_tag: str = "ftag1",
            uri: str = "sip:bob@127.0.0.1:5080", routes: tuple[str, ...] = (),
            extra_vias: tuple[str, ...] = ()) -> Request:
    """A request as it arrives from the wire (parsed from bytes, so it is valid)."""
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch else "")
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}"]
    lines += [f"Via: {v}" for v in extra_vias]
    lines += [
        "Max-Forwards: 70",
        f"From: Alice <sip:alice@127.0.0.1>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@127.0.0.1:5070>",
    ]
    lines += [f"Route: {r}" for r in routes]
    if method == "INVITE":
        lines.append("Require: timer")
    raw = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int, *, to_tag: str | None = "ttag9") -> Response:
    """The response a peer would send to ``req``, passed through the wire format."""
    msg = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(msg, Response)
    return msg


# -- the owner's part, on a fake clock -------------------------------------------------------


class FakeOwner:
    """Carries out a machine's actions the way the asyncio layer will, minus the I/O.

    Keeps its own timer schedule from StartTimer/StopTimer, fires due timers in deadline
    order when the clock advances, and records what was sent, delivered and reported.
    It also checks the contract: actions are known types, nothing follows Terminated,
    deadlines are not in the past, and its schedule equals the machine's own view.
    """

    def __init__(self, tx: ClientTransaction | ServerTransaction, now: float = 0.0) -> None:
        self.tx = tx
        self.now = now
        self.timers: dict[str, float] = {}
        self.sent: list[tuple[float, Request | Response]] = []
        self.delivered: list[tuple[float, Request | Response]] = []
        self.timeouts: list[float] = []
        self.terminated_at: float | None = None
        self.started: list[tuple[str, float]] = []

    def apply(self, actions: list) -> list:
        assert isinstance(actions, list)
        if self.terminated_at is not None:
            assert actions == [], f"actions after Terminated: {actions}"
        for i, action in enumerate(actions):
            assert isinstance(action, ACTION_TYPES), action
            if isinstance(action, Send):
                self.sent.append((self.now, action.message))
            elif isinstance(action, StartTimer):
                assert action.deadline >= self.now - 1e-9
                self.timers[action.name] = action.deadline
                self.started.append((action.name, action.deadline))
            elif isinstance(action, StopTimer):
                self.timers.pop(action.name, None)
            elif isinstance(action, Deliver):
                self.delivered.append((self.now, action.message))
            elif isinstance(action, Timeout):
                assert not self.timeouts, "Timeout reported twice"
                self.timeouts.append(self.now)
            elif isinstance(action, Terminated):
                assert i == len(actions) - 1, "Terminated must be the last action"
                self.terminated_at = self.now
                self.timers.clear()
        if self.terminated_at is None:
            assert self.timers == self.tx.active_timers
            assert self.tx.state != TERMINATED
        else:
            assert self.tx.state == TERMINATED
        return actions

    def advance(self, until: float, max_firings: int = 10_000) -> None:
        """Move the clock to ``until``, firing every timer due on the way."""
        for _ in range(max_firings):
            due = [(deadline, name) for name, deadline in self.timers.items()
                   if deadline <= until + 1e-9]
            if not due or self.terminated_at is not None:
                break
            deadline, name = min(due)
            del self.timers[name]
            self.now = max(self.now, deadline)
            self.apply(self.tx.on_timer(name, self.now))
        else:  # pragma: no cover - a machine that never stops scheduling
            pytest.fail("timers kept firing")
        self.now = max(self.now, until)

    def run_out(self) -> None:
        """Fire timers until none is left (bounded)."""
        for _ in range(10_000):
            if not self.timers or self.terminated_at is not None:
                return
            self.advance(min(self.timers.values()))
        pytest.fail("timers never ran out")  # pragma: no cover

    def at(self, t: float, call, *args):
        """Advance to ``t`` and then feed one input."""
        self.advance(t)
        return self.apply(call(*args, self.now))

    def send_times(self, kind: type = object) -> list[float]:
        return [t for t, m in self.sent if isinstance(m, kind)]


def client(method: str = "INVITE", *, reliable: bool = False,
           timers: TimerConfig = TimerConfig(), **kw) -> tuple[FakeOwner, Request]:
    req = request(method, **kw)
    owner = FakeOwner(ClientTransaction(req, reliable=reliable, timers=timers))
    owner.apply(owner.tx.start(0.0))
    return owner, req


def server(method: str = "INVITE", *, reliable: bool = False,
           timers: TimerConfig = TimerConfig(), **kw) -> tuple[FakeOwner, Request]:
    req = request(method, **kw)
    return FakeOwner(ServerTransaction(req, reliable=reliable, timers=timers)), req


# -- timer configuration ---------------------------------------------------------------------


def test_timer_config_derives_table_4_values():
    c = TimerConfig()
    assert (c.t1, c.t2, c.t4) == (0.5, 4.0, 5.0)
    assert c.timer_b == 32.0  # and F, H, L, M
    assert (c.timer_d(False), c.timer_d(True)) == (32.0, 0.0)
    assert (c.timer_i(False), c.timer_i(True)) == (5.0, 0.0)
    assert (c.timer_k(False), c.timer_k(True)) == (5.0, 0.0)
    assert (c.timer_j(False), c.timer_j(True)) == (32.0, 0.0)
    slow = TimerConfig(t1=1.0, t2=8.0, t4=10.0)
    assert slow.timer_b == 64.0 and slow.timer_d(False) == 64.0 and slow.timer_k(False) == 10.0
    with pytest.raises(ValueError):
        TimerConfig(t1=0)
    with pytest.raises(ValueError):
        TimerConfig(t1=2.0, t2=1.0)


# -- INVITE client ---------------------------------------------------------------------------


def test_invite_client_start_sends_and_arms_a_and_b():
    req = request()
    tx = ClientTransaction(req, reliable=False)
    assert tx.key == ("z9hG4bKabc123", "INVITE") and tx.is_invite and tx.state == CALLING
    actions = tx.start(10.0)
    assert actions == [Send(req), StartTimer("A", 10.5), StartTimer("B", 42.0)]
    assert tx.start(11.0) == []  # only once


def test_invite_client_timer_a_doubles_without_cap_until_b():
    owner, req = client()
    owner.advance(100.0)
    assert owner.send_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(m is req for _, m in owner.sent)
    assert [d for name, d in owner.started if name == "A"] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5]
    assert owner.timeouts == [32.0] and owner.terminated_at == 32.0
    assert owner.delivered == []


def test_invite_client_reliable_sends_once_then_times_out():
    owner, _ = client(reliable=True)
    assert owner.timers == {"B": 32.0}
    owner.advance(100.0)
    assert owner.send_times() == [0.0]
    assert owner.timeouts == [32.0] and owner.tx.state == TERMINATED


def test_invite_client_provisional_stops_retransmissions_and_timer_b():
    owner, req = client()
    actions = owner.at(1.0, owner.tx.on_response, response(req, 180))
    assert [type(a) for a in actions] == [StopTimer, StopTimer, Deliver]
    assert {a.name for a in actions if isinstance(a, StopTimer)} == {"A", "B"}
    assert owner.tx.state == PROCEEDING
    owner.at(2.0, owner.tx.on_response, response(req, 183))
    assert [m.status for _, m in owner.delivered] == [180, 183]
    owner.advance(500.0)
    assert owner.send_times() == [0.0, 0.5]
    assert owner.timeouts == [] and owner.tx.state == PROCEEDING
    assert owner.tx.on_timer("A", 500.0) == [] and owner.tx.on_timer("B", 500.0) == []


def test_invite_client_builds_ack_for_non_2xx():
    routes = ("<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>")
    owner, req = client(routes=routes, extra_vias=("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKother",))
    resp = response(req, 486, to_tag="busy77")
    actions = owner.at(2.0, owner.tx.on_response, resp)
    sends = [a.message for a in actions if isinstance(a, Send)]
    assert len(sends) == 1
    ack = sends[0]
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == req.uri
    assert ack.call_id == req.call_id
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.to.tag == "busy77" and ack.to.uri == req.to.uri
    assert ack.cseq == (1, "ACK")
    assert ack.headers.get_all("Via") == [req.headers.get_all("Via")[0]]
    assert ack.top_via.branch == req.top_via.branch
    assert ack.headers.get_all("Route") == list(routes)
    assert ack.headers.get("Max-Forwards") == "70"
    assert "Require" not in ack.headers and "Contact" not in ack.headers
    assert ack.body == b""
    # the ACK survives a round trip through the wire format
    assert parse_message(ack.to_bytes()).cseq == (1, "ACK")
    assert owner.tx.ack is ack
    assert [m for _, m in owner.delivered] == [resp]
    assert owner.tx.state == COMPLETED and owner.timers == {"D": 34.0}


def test_invite_client_completed_absorbs_final_retransmissions_and_resends_ack():
    owner, req = client()
    owner.at(1.0, owner.tx.on_response, response(req, 603))
    ack = owner.sent[-1][1]
    for t in (3.0, 7.0, 20.0):
        actions = owner.at(t, owner.tx.on_response, response(req, 603))
        assert actions == [Send(ack)]
    assert owner.at(21.0, owner.tx.on_response, response(req, 180)) == []
    assert owner.at(22.0, owner.tx.on_response, response(req, 200)) == []
    assert len(owner.delivered) == 1
    owner.advance(100.0)
    assert owner.terminated_at == 33.0 and owner.timeouts == []


def test_invite_client_timer_d_is_zero_on_reliable_transport():
    owner, req = client(reliable=True)
    resp = response(req, 404)
    actions = owner.at(1.0, owner.tx.on_response, resp)
    assert [type(a) for a in actions] == [StopTimer, Send, Deliver, Terminated]
    assert actions[1].message.method == "ACK" and actions[2].message is resp
    assert owner.terminated_at == 1.0


def test_invite_client_rfc6026_accepted_state():
    owner, req = client()
    ok = response(req, 200)
    actions = owner.at(0.7, owner.tx.on_response, ok)
    assert [type(a) for a in actions] == [StopTimer, StopTimer, Deliver, StartTimer]
    assert (actions[-1].name, actions[-1].deadline) == ("M", pytest.approx(32.7))
    assert owner.tx.state == ACCEPTED
    assert owner.send_times() == [0.0, 0.5]  # the transaction does not ACK a 2xx
    # 2xx retransmissions (and 2xx from other forks) go up to the TU, which ACKs them
    again = response(req, 200)
    assert owner.at(2.0, owner.tx.on_response, again) == [Deliver(again)]
    fork = response(req, 200, to_tag="fork2")
    assert owner.at(3.0, owner.tx.on_response, fork) == [Deliver(fork)]
    assert owner.at(4.0, owner.tx.on_response, response(req, 486)) == []
    assert owner.at(5.0, owner.tx.on_response, response(req, 180)) == []
    owner.advance(100.0)
    assert owner.terminated_at == pytest.approx(32.7) and owner.timeouts == []
    assert len(owner.sent) == 2


def test_invite_client_accepted_also_on_reliable_transport():
    owner, req = client(reliable=True)
    owner.at(1.0, owner.tx.on_response, response(req, 100))
    owner.at(2.0, owner.tx.on_response, response(req, 200))
    assert owner.tx.state == ACCEPTED and owner.timers == {"M": 34.0}


# -- non-INVITE client -----------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2_then_f_times_out():
    owner, req = client("OPTIONS")
    assert owner.tx.key == ("z9hG4bKabc123", "OPTIONS") and not owner.tx.is_invite
    assert owner.tx.state == TRYING and owner.timers == {"E": 0.5, "F": 32.0}
    owner.advance(100.0)
    assert owner.send_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert owner.timeouts == [32.0] and owner.terminated_at == 32.0


def test_non_invite_client_reliable_no_retransmissions():
    owner, _ = client("REGISTER", reliable=True)
    owner.advance(100.0)
    assert owner.send_times() == [0.0] and owner.timeouts == [32.0]


def test_non_invite_client_proceeding_retransmits_every_t2():
    owner, req = client("BYE")
    owner.at(0.2, owner.tx.on_response, response(req, 100))
    assert owner.tx.state == PROCEEDING
    assert owner.timers["E"] == 0.5  # E keeps its deadline; it fires at T2 from then on
    owner.advance(13.0)
    assert owner.send_times() == [0.0, 0.5, 4.5, 8.5, 12.5]
    ok = response(req, 200)
    actions = owner.at(13.0, owner.tx.on_response, ok)
    assert {a.name for a in actions if isinstance(a, StopTimer)} == {"E", "F"}
    assert Deliver(ok) in actions and actions[-1] == StartTimer("K", 18.0)
    assert owner.tx.state == COMPLETED
    # retransmitted finals are absorbed
    assert owner.at(14.0, owner.tx.on_response, response(req, 200)) == []
    assert owner.at(15.0, owner.tx.on_response, response(req, 500)) == []
    owner.advance(100.0)
    assert owner.terminated_at == 18.0 and owner.timeouts == []
    assert [m.status for _, m in owner.delivered] == [100, 200]
    assert len(owner.sent) == 5


def test_non_invite_client_timer_k_is_zero_on_reliable_transport():
    owner, req = client("REGISTER", reliable=True)
    resp = response(req, 401)
    actions = owner.at(0.3, owner.tx.on_response, resp)
    assert actions == [StopTimer("F"), Deliver(resp), Terminated()]


def test_non_invite_client_final_response_in_trying():
    owner, req = client("MESSAGE")
    owner.at(0.2, owner.tx.on_response, response(req, 202))
    assert owner.tx.state == COMPLETED and owner.timers == {"K": 5.2}
    owner.advance(60.0)
    assert owner.send_times() == [0.0] and owner.terminated_at == 5.2


# -- INVITE server ---------------------------------------------------------------------------


def test_invite_server_absorbs_retransmissions_and_resends_last_provisional():
    owner, req = server()
    tx = owner.tx
    assert tx.state == PROCEEDING and tx.request is req and tx.key == ("z9hG4bKabc123", "INVITE")
    assert owner.at(0.1, tx.on_request, request()) == []  # nothing to re-send yet
    trying = make_response(req, 100)
    assert owner.at(0.1, tx.respond, trying) == [Send(trying)]
    assert owner.at(0.4, tx.on_request, request()) == [Send(trying)]
    ringing = make_response(req, 180, to_tag="srv1")
    assert owner.at(1.0, tx.respond, ringing) == [Send(ringing)]
    assert owner.at(1.5, tx.on_request, request()) == [Send(ringing)]
    assert tx.state == PROCEEDING and owner.timers == {}
    assert owner.delivered == []


def test_invite_server_timer_g_schedule_and_timer_h_timeout():
    owner, req = server()
    busy = make_response(req, 486, to_tag="srv1")
    actions = owner.at(0.0, owner.tx.respond, busy)
    assert actions == [Send(busy), StartTimer("G", 0.5), StartTimer("H", 32.0)]
    assert owner.tx.state == COMPLETED
    owner.advance(100.0)
    assert owner.send_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(m is busy for _, m in owner.sent)
    assert owner.timeouts == [32.0] and owner.terminated_at == 32.0


def test_invite_server_ack_stops_timer_g_and_confirms():
    owner, req = server()
    busy = make_response(req, 486, to_tag="srv1")
    owner.at(0.0, owner.tx.respond, busy)
    assert owner.at(1.0, owner.tx.on_request, request()) == [Send(busy)]  # retransmitted INVITE
    ack = request("ACK", to="<sip:bob@127.0.0.1>;tag=srv1")
    actions = owner.at(2.0, owner.tx.on_request, ack)
    assert {a.name for a in actions if isinstance(a, StopTimer)} == {"G", "H"}
    assert actions[-1] == StartTimer("I", 7.0)
    assert owner.tx.state == CONFIRMED
    assert owner.at(3.0, owner.tx.on_request, ack) == []  # ACK retransmission absorbed
    assert owner.at(3.5, owner.tx.on_request, request()) == []
    assert owner.at(4.0, owner.tx.respond, make_response(req, 500)) == []
    owner.advance(100.0)
    assert owner.send_times() == [0.0, 0.5, 1.0, 1.5]
    assert owner.terminated_at == 7.0 and owner.timeouts == []
    assert owner.delivered == []  # the non-2xx ACK is the transaction's own business


def test_invite_server_reliable_no_timer_g_and_timer_i_zero():
    owner, req = server(reliable=True)
    busy = make_response(req, 603, to_tag="srv1")
    assert owner.at(0.0, owner.tx.respond, busy) == [Send(busy), StartTimer("H", 32.0)]
    ack = request("ACK", to="<sip:bob@127.0.0.1>;tag=srv1")
    actions = owner.at(5.0, owner.tx.on_request, ack)
    assert actions == [StopTimer("H"), Terminated()]
    assert owner.send_times() == [0.0]


def test_invite_server_reliable_timer_h_still_times_out():
    owner, req = server(reliable=True)
    owner.at(0.0, owner.tx.respond, make_response(req, 480, to_tag="x"))
    owner.advance(40.0)
    assert owner.send_times() == [0.0] and owner.timeouts == [32.0]


def test_invite_server_rfc6026_accepted_state():
    owner, req = server()
    ok = make_response(req, 200, to_tag="srv1")
    assert owner.at(1.0, owner.tx.respond, ok) == [Send(ok), StartTimer("L", 33.0)]
    assert owner.tx.state == ACCEPTED
    # retransmitted INVITEs are absorbed: the TU retransmits the 2xx itself (§13.3.1.4)
    assert owner.at(1.5, owner.tx.on_request, request()) == []
    assert owner.at(1.5, owner.tx.respond, ok) == [Send(ok)]
    assert owner.at(2.0, owner.tx.respond, make_response(req, 486)) == []
    assert owner.at(2.0, owner.tx.respond, make_response(req, 180)) == []
    # an ACK that matched anyway (RFC 6026 §7.1) goes to the TU
    ack = request("ACK", to="<sip:bob@127.0.0.1>;tag=srv1")
    assert owner.at(3.0, owner.tx.on_request, ack) == [Deliver(ack)]
    owner.advance(100.0)
    assert owner.terminated_at == 33.0 and owner.timeouts == []
    assert owner.send_times() == [1.0, 1.5]


# -- non-INVITE server -----------------------------------------------------------------------


def test_non_invite_server_lifecycle_unreliable():
    owner, req = server("BYE")
    tx = owner.tx
    assert tx.state == TRYING and not tx.is_invite
    assert owner.at(0.1, tx.on_request, request("BYE")) == []  # absorbed silently in trying
    trying = make_response(req, 100)
    assert owner.at(0.2, tx.respond, trying) == [Send(trying)]
    assert tx.state == PROCEEDING
    assert owner.at(0.5, tx.on_request, request("BYE")) == [Send(trying)]
    ok = make_response(req, 200, to_tag="t")
    assert owner.at(1.0, tx.respond, ok) == [Send(ok), StartTimer("J", 33.0)]
    assert tx.state == COMPLETED
    assert owner.at(2.0, tx.on_request, request("BYE")) == [Send(ok)]
    assert owner.at(2.0, tx.respond, make_response(req, 500)) == []
    assert owner.at(2.0, tx.on_request, request("ACK")) == []
    owner.advance(100.0)
    assert owner.terminated_at == 33.0 and owner.timeouts == []
    assert [m.status for _, m in owner.sent] == [100, 100, 200, 200]


def test_non_invite_server_timer_j_is_zero_on_reliable_transport():
    owner, req = server("OPTIONS", reliable=True)
    ok = make_response(req, 200)
    assert owner.at(0.0, owner.tx.respond, ok) == [Send(ok), Terminated()]


# -- configurable timers ---------------------------------------------------------------------


def test_custom_t1_t2_t4_change_every_schedule():
    fast = TimerConfig(t1=0.1, t2=0.4, t4=1.0)
    owner, _ = client(timers=fast)
    owner.advance(100.0)
    assert owner.send_times() == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert owner.timeouts == [pytest.approx(6.4)]

    owner, req = client("OPTIONS", timers=fast)
    owner.advance(1.5)
    assert owner.send_times() == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.1, 1.5])
    owner.at(1.6, owner.tx.on_response, response(req, 200))
    assert owner.timers == {"K": pytest.approx(2.6)}

    owner, req = server(timers=fast)
    owner.at(0.0, owner.tx.respond, make_response(req, 500))
    owner.advance(100.0)
    sends = owner.send_times()
    assert sends[:6] == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.1, 1.5])
    assert owner.timeouts == [pytest.approx(6.4)]

    owner, req = server("OPTIONS", timers=fast)
    owner.at(0.0, owner.tx.respond, make_response(req, 200))
    assert owner.timers == {"J": pytest.approx(6.4)}


# -- robustness ------------------------------------------------------------------------------


def test_timers_in_the_wrong_state_are_ignored():
    owner, req = client()
    for name in ("D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "nonsense"):
        assert owner.tx.on_timer(name, 1.0) == []
    owner.at(1.0, owner.tx.on_response, response(req, 180))
    assert owner.tx.on_timer("A", 2.0) == [] and owner.tx.on_timer("B", 40.0) == []
    s_owner, _ = server()
    for name in ("A", "B", "G", "H", "I", "L", "J"):
        assert s_owner.tx.on_timer(name, 1.0) == []
    assert s_owner.tx.state == PROCEEDING


def test_terminated_machines_ignore_everything():
    owner, req = client(reliable=True)
    owner.advance(40.0)
    tx = owner.tx
    assert tx.state == TERMINATED
    assert tx.on_response(response(req, 200), 41.0) == []
    assert tx.on_timer("B", 41.0) == [] and tx.on_transport_error(41.0) == []
    assert tx.start(41.0) == []
    s_owner, sreq = server("OPTIONS", reliable=True)
    s_owner.at(0.0, s_owner.tx.respond, make_response(sreq, 200))
    stx = s_owner.tx
    assert stx.on_request(sreq, 1.0) == [] and stx.respond(make_response(sreq, 200), 1.0) == []
    assert stx.on_timer("J", 1.0) == [] and stx.on_transport_error(1.0) == []


def test_unexpected_inputs_do_not_raise():
    owner, req = client("OPTIONS")
    assert owner.tx.on_response(Response(99, "Weird"), 0.1) == []
    assert owner.tx.on_response(Response(700, "Weird"), 0.1) == []
    assert owner.tx.on_response(req, 0.1) == []  # a request is not a response
    s_owner, sreq = server()
    assert s_owner.tx.respond(Response(42), 0.1) == []
    assert s_owner.tx.on_request(request("BYE"), 0.1) == []
    assert s_owner.tx.state == PROCEEDING and owner.tx.state == TRYING


def test_ack_has_no_client_transaction_machine():
    ack = request("ACK", to="<sip:bob@127.0.0.1>;tag=t")
    tx = ClientTransaction(ack, reliable=False)
    assert tx.start(0.0) == [Send(ack), Terminated()]
    ack_server = ServerTransaction(ack, reliable=False)
    assert ack_server.state == TERMINATED
    table = TransactionTable()
    invite_tx = ServerTransaction(request(), reliable=False)
    table.add_server(invite_tx)
    table.add_server(ack_server)  # refused: it would shadow the INVITE's entry
    assert len(table) == 1 and table.match_request(ack) is invite_tx


def test_transport_errors():
    owner, req = client()
    assert owner.at(0.2, owner.tx.on_transport_error) == [Timeout(), Terminated()]
    owner, req = client("OPTIONS")
    owner.at(0.2, owner.tx.on_response, response(req, 100))
    assert owner.at(0.3, owner.tx.on_transport_error) == [Timeout(), Terminated()]
    owner, req = client()
    owner.at(0.2, owner.tx.on_response, response(req, 486))
    # the final answer already reached the TU: no timeout on top of it
    assert owner.at(0.3, owner.tx.on_transport_error) == [Terminated()]
    s_owner, sreq = server()
    s_owner.at(0.0, s_owner.tx.respond, make_response(sreq, 486))
    assert s_owner.at(0.1, s_owner.tx.on_transport_error) == [Timeout(), Terminated()]


# -- CANCEL ----------------------------------------------------------------------------------


def test_make_cancel_follows_section_9_1():
    routes = ("<sip:proxy.example.com;lr>",)
    owner, req = client(routes=routes, extra_vias=("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKup",))
    cancel = owner.tx.make_cancel()
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.call_id == req.call_id
    assert cancel.headers.get("From") == req.headers.get("From")
    assert cancel.headers.get("To") == req.headers.get("To") and cancel.to.tag is None
    assert cancel.cseq == (1, "CANCEL")
    assert cancel.headers.get_all("Via") == [req.headers.get_all("Via")[0]]
    assert cancel.headers.get_all("Route") == list(routes)
    assert "Require" not in cancel.headers and cancel.body == b""
    assert parse_message(cancel.to_bytes()).method == "CANCEL"
    # a re-INVITE's CANCEL keeps the To tag the re-INVITE carries
    reinvite = request(to="<sip:bob@127.0.0.1>;tag=dlg9", cseq=7)
    reinvite_cancel = ClientTransaction(reinvite, reliable=False).make_cancel()
    assert reinvite_cancel.to.tag == "dlg9" and reinvite_cancel.cseq == (7, "CANCEL")


def test_cancel_runs_its_own_client_transaction():
    table = TransactionTable()
    invite_owner, req = client()
    table.add_client(invite_owner.tx)
    cancel_tx = ClientTransaction(invite_owner.tx.make_cancel(), reliable=False)
    table.add_client(cancel_tx)
    assert cancel_tx.key == (invite_owner.tx.key[0], "CANCEL")
    assert len(table) == 2
    cancel_ok = response(cancel_tx.request, 200)
    terminated = response(req, 487)
    assert table.match_response(cancel_ok) is cancel_tx
    assert table.match_response(terminated) is invite_owner.tx


def test_server_side_cancel_matching():
    table = TransactionTable()
    invite_tx = ServerTransaction(request(), reliable=False)
    table.add_server(invite_tx)
    cancel = request("CANCEL")
    assert table.match_request(cancel) is None  # CANCEL is not part of the INVITE's tx
    assert table.find_invite_for_cancel(cancel) is invite_tx
    cancel_tx = ServerTransaction(cancel, reliable=False)
    table.add_server(cancel_tx)
    assert table.match_request(request("CANCEL")) is cancel_tx
    assert table.match_request(request()) is invite_tx
    assert table.find_invite_for_cancel(request("CANCEL", branch="z9hG4bKzzz")) is None
    assert table.find_invite_for_cancel(request("CANCEL", sent_by="127.0.0.2:5070")) is None


# -- matching --------------------------------------------------------------------------------


def test_match_response_by_branch_and_cseq_method():
    table = TransactionTable()
    invite = ClientTransaction(request(), reliable=False)
    options = ClientTransaction(request("OPTIONS", branch="z9hG4bKopt"), reliable=False)
    table.add_client(invite)
    table.add_client(options)
    assert table.match_response(response(invite.request, 180)) is invite
    assert table.match_response(response(options.request, 200)) is options
    # same branch, other method; unknown branch; no branch at all
    assert table.match_response(response(request("BYE"), 200)) is None
    assert table.match_response(response(request(branch="z9hG4bKnope"), 200)) is None
    assert table.match_response(response(request(branch=None), 200)) is None
    # branch comparison ignores case (RFC 3261 §7.3.1)
    assert table.match_response(response(request(branch="Z9HG4BKABC123"), 200)) is invite
    table.remove(invite)
    assert table.match_response(response(invite.request, 180)) is None
    assert len(table) == 1
    table.remove(invite)  # removing twice is harmless
    assert len(table) == 1 and list(table) == [options]


def test_match_request_rfc3261():
    table = TransactionTable()
    invite_tx = ServerTransaction(request(), reliable=False)
    bye_tx = ServerTransaction(request("BYE", branch="z9hG4bKbye"), reliable=False)
    table.add_server(invite_tx)
    table.add_server(bye_tx)
    assert table.match_request(request()) is invite_tx  # retransmission
    assert table.match_request(request("BYE", branch="z9hG4bKbye")) is bye_tx
    # the ACK for a non-2xx carries the INVITE's branch and matches the INVITE server tx
    assert table.match_request(request("ACK", to="<sip:bob@127.0.0.1>;tag=t")) is invite_tx
    # the ACK for a 2xx has a new branch: it belongs to the dialog, not to the transaction
    assert table.match_request(request("ACK", branch="z9hG4bKnew2xxack")) is None
    # sent-by must match too (another host reusing a branch is another transaction)
    assert table.match_request(request(sent_by="127.0.0.1:5071")) is None
    assert table.match_request(request(sent_by="127.0.0.2:5070")) is None
    assert table.match_request(request("OPTIONS")) is None  # same branch, other method
    # a missing port equals the transport's default
    default_tx = ServerTransaction(request(sent_by="127.0.0.1", branch="z9hG4bKdp"),
                                   reliable=False)
    table.add_server(default_tx)
    assert table.match_request(request(sent_by="127.0.0.1:5060", branch="z9hG4bKdp")) is default_tx
    assert len(table) == 3
    table.remove(invite_tx)
    assert table.match_request(request()) is None and len(table) == 2


def test_match_request_rfc2543_fallback():
    table = TransactionTable()
    legacy = dict(branch="1234old", sent_by="127.0.0.1:5090", call_id="old-call@127.0.0.1")
    invite_tx = ServerTransaction(request(**legacy), reliable=False)
    table.add_server(invite_tx)
    bare = ServerTransaction(request("OPTIONS", branch=None, call_id="bare@127.0.0.1"),
                             reliable=False)
    table.add_server(bare)
    assert len(table) == 2
    assert table.match_request(request(**legacy)) is invite_tx
    assert table.match_request(request("OPTIONS", branch=None, call_id="bare@127.0.0.1")) is bare
    # any differing field means another transaction
    assert table.match_request(request(**legacy, cseq=2)) is None
    assert table.match_request(request(**{**legacy, "call_id": "x@127.0.0.1"})) is None
    assert table.match_request(request(**legacy, from_tag="other")) is None
    assert table.match_request(request(**legacy, uri="sip:carol@127.0.0.1")) is None
    assert table.match_request(request(**{**legacy, "sent_by": "127.0.0.1:5091"})) is None
    assert table.match_request(request(**legacy, to="<sip:bob@127.0.0.1>;tag=zz")) is None
    # the ACK is matched with the To tag of the response the transaction sent
    ack = request("ACK", **legacy, to="<sip:bob@127.0.0.1>;tag=srv5")
    assert table.match_request(ack) is None  # no response sent yet
    invite_tx.respond(make_response(invite_tx.request, 486, to_tag="srv5"), 0.0)
    assert table.match_request(ack) is invite_tx
    assert table.match_request(request("ACK", **legacy, to="<sip:bob@127.0.0.1>;tag=no")) is None
    # CANCEL finds its INVITE but is not matched to it as a request
    cancel = request("CANCEL", **legacy)
    assert table.match_request(cancel) is None
    assert table.find_invite_for_cancel(cancel) is invite_tx
    assert table.find_invite_for_cancel(request("CANCEL", **legacy, cseq=9)) is None
    table.remove(invite_tx)
    assert table.match_request(request(**legacy)) is None and len(table) == 1


def test_end_to_end_non_2xx_over_two_machines():
    """A client and a server machine talking through the table, with the first ACK lost."""
    c_owner, req = client()
    table = TransactionTable()
    table.add_client(c_owner.tx)
    s_table = TransactionTable()
    s_tx = ServerTransaction(parse_message(req.to_bytes()), reliable=False)
    s_table.add_server(s_tx)
    s_owner = FakeOwner(s_tx)
    busy = make_response(s_tx.request, 486, to_tag="srv")
    s_owner.at(0.1, s_tx.respond, busy)
    wire = parse_message(busy.to_bytes())
    assert table.match_response(wire) is c_owner.tx
    c_owner.at(0.1, c_owner.tx.on_response, wire)
    ack_bytes = c_owner.sent[-1][1].to_bytes()  # lost
    s_owner.advance(0.6)  # Timer G re-sends the 486
    again = parse_message(s_owner.sent[-1][1].to_bytes())
    c_owner.at(0.6, c_owner.tx.on_response, again)
    assert c_owner.sent[-1][1].to_bytes() == ack_bytes
    arrived = parse_message(ack_bytes)
    assert s_table.match_request(arrived) is s_tx
    s_owner.at(0.6, s_tx.on_request, arrived)
    assert s_tx.state == CONFIRMED and len(c_owner.delivered) == 1


# -- property: random inputs never raise and always wind down ---------------------------------

STATUSES = [100, 180, 183, 200, 202, 302, 401, 404, 486, 487, 500, 603]
TIMER_NAMES = list("ABDEFGHIJKLM") + ["bogus"]

event = st.one_of(
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=40.0)),
    st.tuples(st.just("response"), st.sampled_from(STATUSES)),
    st.tuples(st.just("timer"), st.sampled_from(TIMER_NAMES)),
    st.tuples(st.just("request"), st.sampled_from(["same", "ACK", "BYE"])),
    st.tuples(st.just("transport_error"), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["client", "server"]),
    method=st.sampled_from(["INVITE", "OPTIONS"]),
    reliable=st.booleans(),
    t1=st.sampled_from([0.5, 0.1, 1.0]),
    events=st.lists(event, max_size=30),
)
def test_random_inputs_never_raise_and_end_terminated(side, method, reliable, t1, events):
    config = TimerConfig(t1=t1, t2=max(4.0, t1), t4=5.0)
    req = request(method)
    if side == "client":
        owner = FakeOwner(ClientTransaction(req, reliable=reliable, timers=config))
        owner.apply(owner.tx.start(0.0))
    else:
        owner = FakeOwner(ServerTransaction(req, reliable=reliable, timers=config))
    tx = owner.tx
    final_delivered = 0
    for kind, arg in events:
        if kind == "advance":
            owner.advance(owner.now + arg)
            continue
        if kind == "response":
            if side == "client":
                actions = owner.apply(tx.on_response(response(req, arg), owner.now))
                final_delivered += sum(isinstance(a, Deliver) and 300 <= a.message.status
                                       for a in actions)
            else:
                owner.apply(tx.respond(make_response(req, arg, to_tag="s"), owner.now))
        elif kind == "timer":
            running = arg in tx.active_timers
            owner.timers.pop(arg, None)  # fired early, as a late-cancel race would
            actions = owner.apply(tx.on_timer(arg, owner.now))
            if not running:
                assert actions == []
        elif kind == "request" and side == "server":
            incoming = {"same": req, "ACK": request("ACK", to="<sip:bob@127.0.0.1>;tag=s"),
                        "BYE": request("BYE")}[arg]
            owner.apply(tx.on_request(incoming, owner.now))
        elif kind == "transport_error":
            owner.apply(tx.on_transport_error(owner.now))
        assert tx.state in (CALLING, TRYING, PROCEEDING, COMPLETED, CONFIRMED, ACCEPTED,
                            TERMINATED)
    assert final_delivered <= 1  # a non-2xx final reaches the TU once
    owner.run_out()
    if tx.state != TERMINATED:
        # only states that wait on the peer or the TU may outlive their timers
        waiting = {PROCEEDING} if side == "client" else {TRYING, PROCEEDING}
        assert tx.state in waiting and not tx.active_timers
        if side == "client":
            owner.apply(tx.on_response(response(req, 486), owner.now))
        else:
            owner.apply(tx.respond(make_response(req, 500), owner.now))
        if tx.state == COMPLETED and tx.is_invite and side == "server":
            owner.apply(tx.on_request(request("ACK", to="<sip:bob@127.0.0.1>;tag=x"), owner.now))
        owner.run_out()
    assert tx.state == TERMINATED and owner.terminated_at is not None
    assert owner.timers == {} and tx.active_timers == {}
