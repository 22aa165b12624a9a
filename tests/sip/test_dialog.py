"""softphone.sip.dialog: UAC/UAS dialog creation, route sets, loose and strict routing,
CSeq spaces, target refresh, ACK for 2xx, the 2xx retransmission schedule."""

from __future__ import annotations

import pytest

from softphone.sip.dialog import AnswerRetransmission, Dialog, DialogError, next_hop
from softphone.sip.errors import SipParseError
from softphone.sip.message import Request, make_response, parse_message
from softphone.sip.uri import parse_uri


def invite(*, record_route: list[str] = (), contact: str | None =
           "<sip:alice@client.atlanta.example.com;transport=tcp>",
           ruri: str = "sip:bob@biloxi.example.com", cseq: int = 1) -> Request:
    headers = [
        ("Via", "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"),
        ("Max-Forwards", "70"),
        ("From", "Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl"),
        ("To", "Bob <sip:bob@biloxi.example.com>"),
        ("Call-ID", "3848276298220188511@atlanta.example.com"),
        ("CSeq", f"{cseq} INVITE"),
    ]
    if contact:
        headers.append(("Contact", contact))
    headers += [("Record-Route", rr) for rr in record_route]
    return parse_message(Request("INVITE", ruri, headers).to_bytes())


def answer(req: Request, status: int, *, record_route: list[str] = (),
           contact: str | None = "<sip:bob@client.biloxi.example.com;transport=tcp>",
           tag: str = "314159"):
    extra = [("Record-Route", rr) for rr in record_route]
    if contact:
        extra.append(("Contact", contact))
    return parse_message(make_response(req, status, to_tag=tag, extra=extra).to_bytes())


PROXIES = ["<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>"]


# ---------------------------------------------------------------------------------------
# UAC
# ---------------------------------------------------------------------------------------

def test_uac_dialog_from_2xx_route_set_reversed_and_target_from_contact():
    req = invite()
    ok = answer(req, 200, record_route=PROXIES)
    d = Dialog.from_uac(req, ok)
    assert d.is_uac and d.state == "confirmed"
    assert d.id == ("3848276298220188511@atlanta.example.com", "9fxced76sl", "314159")
    assert d.route_set == list(reversed(PROXIES))
    assert str(d.remote_target) == "sip:bob@client.biloxi.example.com;transport=tcp"
    assert d.local_cseq == 1 and d.remote_cseq is None
    assert d.local_uri.tag is None and d.remote_uri.tag is None
    assert str(d.local_uri.uri) == "sip:alice@atlanta.example.com"
    assert d.local_uri.display_name == "Alice" and d.remote_uri.display_name == "Bob"
    assert not d.secure


def test_uac_early_dialog_from_1xx_then_confirmed_by_2xx():
    req = invite()
    ringing = answer(req, 180, record_route=PROXIES[:1],
                     contact="<sip:bob@early.biloxi.example.com>")
    d = Dialog.from_uac(req, ringing)
    assert d.state == "early"
    assert d.route_set == PROXIES[:1]
    assert d.remote_target.host == "early.biloxi.example.com"
    ok = answer(req, 200, record_route=PROXIES)
    d.on_response(ok)
    assert d.state == "confirmed"
    assert d.route_set == list(reversed(PROXIES))  # the 2xx's Record-Route wins
    assert d.remote_target.host == "client.biloxi.example.com"


def test_uac_no_to_tag_no_dialog():
    req = invite()
    trying = parse_message(make_response(req, 100).to_bytes())
    with pytest.raises(SipParseError):
        Dialog.from_uac(req, trying)


def test_uac_without_contact_falls_back_to_request_uri_and_sips_is_secure():
    req = invite(ruri="sips:bob@biloxi.example.com")
    d = Dialog.from_uac(req, answer(req, 200, contact=None))
    assert d.remote_target == parse_uri("sips:bob@biloxi.example.com")
    assert d.secure


def test_rfc3665_bye_from_uac_dialog():
    req = invite()
    d = Dialog.from_uac(req, answer(req, 200, record_route=PROXIES))
    bye = d.create_request("BYE")
    assert bye.method == "BYE"
    assert bye.uri == "sip:bob@client.biloxi.example.com;transport=tcp"
    assert bye.headers.get_all("Route") == ["<sip:ss1.atlanta.example.com;lr>",
                                            "<sip:ss2.biloxi.example.com;lr>"]
    assert bye.from_.tag == "9fxced76sl" and bye.to.tag == "314159"
    assert bye.from_.display_name == "Alice" and bye.to.display_name == "Bob"
    assert bye.call_id == req.call_id
    assert bye.cseq == (2, "BYE")
    assert bye.header_int("Max-Forwards") == 70
    assert bye.headers.get("Via") is None  # the UA adds it
    assert bye.headers.get("Contact") is None
    assert d.next_hop() == parse_uri("sip:ss1.atlanta.example.com;lr")
    # with a Via added it is a valid message on the wire
    bye.headers.prepend("Via", "SIP/2.0/TCP client.atlanta.example.com;branch=z9hG4bKb1")
    assert parse_message(bye.to_bytes()).cseq == (2, "BYE")


def test_local_cseq_monotonic_and_ack_keeps_invite_number():
    req = invite(cseq=5)
    d = Dialog.from_uac(req, answer(req, 200))
    ack = d.create_ack(5)
    assert ack.cseq == (5, "ACK") and ack.method == "ACK"
    assert ack.uri == str(d.remote_target)
    numbers = [d.create_request(m).cseq[0] for m in ("INFO", "OPTIONS", "BYE")]
    assert numbers == [6, 7, 8]
    reinvite = d.create_request("invite", contact="<sip:alice@new.example.com>", body=b"sdp",
                                extra=[("Content-Type", "application/sdp")])
    assert reinvite.cseq == (9, "INVITE") and reinvite.method == "INVITE"
    assert reinvite.contacts[0].uri.host == "new.example.com"
    assert reinvite.content_type == "application/sdp" and reinvite.body == b"sdp"
    ack2 = d.create_ack(9, body=b"late")
    assert ack2.cseq == (9, "ACK") and ack2.body == b"late"
    assert d.local_cseq == 9  # the ACKs did not consume numbers
    assert d.create_request("CANCEL").cseq == (9, "CANCEL")


def test_target_refresh_by_2xx_to_reinvite_keeps_route_set():
    req = invite()
    d = Dialog.from_uac(req, answer(req, 200, record_route=PROXIES))
    reinvite = d.create_request("INVITE", contact="<sip:alice@client.atlanta.example.com>")
    reinvite.headers.prepend("Via", "SIP/2.0/TCP client.atlanta.example.com;branch=z9hG4bKr")
    ok = answer(parse_message(reinvite.to_bytes()), 200,
                record_route=["<sip:other.example.com;lr>"],
                contact="<sip:bob@moved.biloxi.example.com>")
    d.on_response(ok)
    assert d.remote_target.host == "moved.biloxi.example.com"
    assert d.route_set == list(reversed(PROXIES))  # route set is fixed once confirmed


def test_non_invite_2xx_does_not_refresh_target():
    req = invite()
    d = Dialog.from_uac(req, answer(req, 200))
    info = d.create_request("INFO")
    info.headers.prepend("Via", "SIP/2.0/TCP client.atlanta.example.com;branch=z9hG4bKi")
    d.on_response(answer(parse_message(info.to_bytes()), 200,
                         contact="<sip:bob@elsewhere.example.com>"))
    assert d.remote_target.host == "client.biloxi.example.com"


# ---------------------------------------------------------------------------------------
# UAS
# ---------------------------------------------------------------------------------------

def test_uas_dialog_route_set_in_order():
    req = invite(record_route=PROXIES)
    d = Dialog.from_uas(req, local_tag="314159")
    assert not d.is_uac and d.state == "early"
    assert d.route_set == PROXIES
    assert d.id == (req.call_id, "314159", "9fxced76sl")
    assert str(d.remote_target) == "sip:alice@client.atlanta.example.com;transport=tcp"
    assert d.remote_cseq == 1 and d.local_cseq == 0
    bye = d.create_request("BYE")
    assert bye.uri == "sip:alice@client.atlanta.example.com;transport=tcp"
    assert bye.headers.get_all("Route") == PROXIES
    assert bye.from_.tag == "314159" and bye.to.tag == "9fxced76sl"
    assert str(bye.from_.uri) == "sip:bob@biloxi.example.com"
    assert bye.cseq == (1, "BYE")


def test_uas_without_contact_targets_the_from_address_as_rfc_2543_did():
    """RFC 4475 §3.4.1: an RFC 2543 INVITE has no Contact; a UAS that keeps working with
    such peers sends its in-dialog requests to the From URI."""
    request = invite(contact=None)
    d = Dialog.from_uas(request, local_tag="x")
    assert d.remote_target == request.from_.uri.with_(params={}, headers={})


def test_uas_refuses_a_contact_it_cannot_use():
    with pytest.raises(DialogError) as info:
        Dialog.from_uas(invite(contact="*"), local_tag="x")
    assert info.value.status == 400


def test_uas_remote_cseq_lower_is_500_and_target_refresh_on_reinvite():
    d = Dialog.from_uas(invite(cseq=10, record_route=PROXIES), local_tag="314159")
    later = invite(cseq=11, contact="<sip:alice@moved.atlanta.example.com>")
    d.on_request(later)
    assert d.remote_cseq == 11
    assert d.remote_target.host == "moved.atlanta.example.com"
    assert d.route_set == PROXIES  # target refresh never changes the route set
    with pytest.raises(DialogError) as info:
        d.on_request(invite(cseq=3))
    assert info.value.status == 500 and "500" in str(info.value)
    assert d.remote_cseq == 11
    # an ACK carries the INVITE's number, never below: it does not move remote_cseq
    ack = parse_message(Request("ACK", "sip:bob@h", [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bKa"), ("From", "<sip:a@a>;tag=9fxced76sl"),
        ("To", "<sip:b@b>;tag=314159"), ("Call-ID", d.call_id), ("CSeq", "2 ACK"),
    ]).to_bytes())
    d.on_request(ack)
    assert d.remote_cseq == 11


def test_uas_non_invite_does_not_refresh_target():
    d = Dialog.from_uas(invite(cseq=1), local_tag="t")
    before = d.remote_target
    info = parse_message(Request("INFO", "sip:bob@h", [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bKa"), ("From", "<sip:a@a>;tag=9fxced76sl"),
        ("To", "<sip:b@b>;tag=t"), ("Call-ID", d.call_id), ("CSeq", "2 INFO"),
        ("Contact", "<sip:x@elsewhere>"),
    ]).to_bytes())
    d.on_request(info)
    assert d.remote_cseq == 2 and d.remote_target == before


def test_first_remote_request_sets_remote_cseq():
    d = Dialog.from_uac(invite(), answer(invite(), 200))
    assert d.remote_cseq is None
    d.on_request(invite(cseq=7))
    assert d.remote_cseq == 7


# ---------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------

def _dialog(route_set: list[str]) -> Dialog:
    d = Dialog.from_uac(invite(), answer(invite(), 200))
    d.route_set = route_set
    return d


def test_no_route_set_request_uri_is_remote_target():
    d = _dialog([])
    uri, routes = d.request_target()
    assert uri == str(d.remote_target) and routes == []
    assert d.next_hop() == d.remote_target
    assert next_hop(d.remote_target, []) == d.remote_target


def test_loose_routing():
    d = _dialog(["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    uri, routes = d.request_target()
    assert uri == str(d.remote_target)
    assert routes == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert next_hop(d.remote_target, routes) == parse_uri("sip:p1.example.com;lr")


def test_strict_routing():
    # RFC 3261 §12.2.1.1: first route (no ;lr) becomes the Request-URI, the remaining
    # routes follow, the remote target goes last
    d = _dialog(["<sip:strict.example.com;transport=udp>", "<sip:p2.example.com;lr>"])
    uri, routes = d.request_target()
    assert parse_uri(uri).host == "strict.example.com"
    assert "lr" not in parse_uri(uri).params
    assert routes == ["<sip:p2.example.com;lr>", f"<{d.remote_target}>"]
    req = d.create_request("BYE")
    assert parse_uri(req.uri).host == "strict.example.com"
    assert req.headers.get_all("Route") == routes
    assert d.next_hop().host == "strict.example.com"


def test_strict_router_alone():
    d = _dialog(["<sip:strict.example.com>"])
    uri, routes = d.request_target()
    assert uri == "sip:strict.example.com"
    assert routes == [f"<{d.remote_target}>"]


# ---------------------------------------------------------------------------------------
# 2xx retransmission (RFC 3261 §13.3.1.4)
# ---------------------------------------------------------------------------------------

def _fire_times(timer: AnswerRetransmission, limit: int = 100) -> tuple[list[float], float]:
    """Drive the timer at its own deadlines; the retransmit times and the give-up time."""
    fired: list[float] = []
    for _ in range(limit):
        now = timer.deadline
        result = timer.on_timer(now)
        if result == "give-up":
            return fired, now
        assert result == "retransmit"
        fired.append(now)
    raise AssertionError("never gave up")


@pytest.mark.parametrize("t1,t2", [(0.5, 4.0), (0.1, 1.0), (0.5, 0.5)])
def test_answer_retransmission_schedule(t1, t2):
    start = 100.0
    timer = AnswerRetransmission(start, t1=t1, t2=t2)
    fired, gave_up = _fire_times(timer)
    intervals = [b - a for a, b in zip([start] + fired, fired)]
    expected = []
    interval = t1
    for _ in intervals:
        expected.append(interval)
        interval = min(2 * interval, t2)
    assert intervals == pytest.approx(expected)
    assert intervals[0] == pytest.approx(t1)
    assert max(intervals) <= t2 + 1e-9
    assert gave_up == pytest.approx(start + 64 * t1)
    assert all(t < start + 64 * t1 for t in fired)


def test_answer_retransmission_default_values():
    timer = AnswerRetransmission(0.0)
    fired, gave_up = _fire_times(timer)
    assert fired[:5] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])
    assert gave_up == pytest.approx(32.0)


def test_answer_retransmission_idle_before_deadline_and_after_ack():
    timer = AnswerRetransmission(10.0)
    assert timer.on_timer(10.2) == "idle"
    assert timer.on_timer(10.5) == "retransmit"
    assert timer.deadline == pytest.approx(11.5)
    timer.on_ack()
    assert timer.on_timer(11.5) == "idle"
    assert timer.on_timer(1000.0) == "idle"  # ACKed: never gives up


def test_answer_retransmission_gives_up_even_if_timer_runs_late():
    timer = AnswerRetransmission(0.0)
    assert timer.on_timer(40.0) == "give-up"
    assert timer.on_timer(41.0) == "give-up"
