"""UPDATE (RFC 3311) and session timers (RFC 4028) between two sans-IO sessions on the
in-memory wire with a fake clock: answers with and without SDP, 491/500, refreshes by
UPDATE or re-INVITE at half the interval, BYE when no refresh comes, 422 retried."""

from __future__ import annotations

import re

from sessions import ALICE, BOB, Net, caps, ended
from softphone.sip.events import MediaAgreed, ReinviteResult
from softphone.sip.ids import new_branch
from softphone.sip.invite import InviteState
from softphone.sip.message import make_response, parse_message
from softphone.sip.negotiator import OfferState
from softphone.sip.session_timer import SessionTimer, parse_session_expires
from softphone.sip.update import UpdateExtension

WITH_UPDATE = caps("UPDATE", tags=("timer",))


def update_net(**timer) -> Net:
    net = Net(alice_caps=caps("UPDATE", tags=("timer",)), bob_caps=caps("UPDATE", tags=("timer",)))
    net.bob_extensions = lambda: [UpdateExtension(), SessionTimer(**timer)]
    return net


def answers(net: Net, method: bytes, src: str = BOB, status: bytes = b"200") -> list[bytes]:
    return [d for d in net.wire.sent(b"SIP/2.0 " + status, src=src)
            if re.search(rb"CSeq: \d+ " + method, d)]


def test_rfc3311_s5_2_update_with_an_offer_is_answered_and_applied():
    net = update_net()
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension()])
    update = ours.ext("update")
    net.alice.run(ours, update.update(ours, net.wire.now, direction="sendonly"))
    net.wire.run_for(1)
    (ok,) = answers(net, b"UPDATE")
    assert b"a=recvonly" in ok  # bob answers our hold
    results = net.alice.events_of(ours, ReinviteResult)
    assert results and results[-1].ok and results[-1].method == "UPDATE"
    assert net.bob.events_of(theirs, MediaAgreed)[-1].remote_hold


def test_rfc3311_s5_2_update_without_sdp_is_a_refresh_and_491_500_when_busy():
    net = update_net()
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension()])
    update = ours.ext("update")
    net.alice.run(ours, update.update(ours, net.wire.now, offer=False))
    net.wire.run_for(1)
    assert net.alice.events_of(ours, ReinviteResult)[-1].ok
    # bob has an offer of his own out: our offer crosses it → 491
    theirs.negotiator.create_offer()
    net.alice.run(ours, update.update(ours, net.wire.now, direction="sendonly"))
    net.wire.run_for(1)
    assert net.alice.events_of(ours, ReinviteResult)[-1].status == 491
    assert ours.negotiator.state is OfferState.IDLE  # rolled back
    # bob owes an answer: 500 with Retry-After
    theirs.negotiator.state = OfferState.REMOTE_OFFER
    net.alice.run(ours, update.update(ours, net.wire.now, direction="sendonly"))
    net.wire.run_for(1)
    refused = answers(net, b"UPDATE", status=b"500")
    assert refused and b"Retry-After:" in refused[-1]


EARLY_ANSWER = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
                b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def early_call(net: Net):
    """Alice's call in an early dialog with tag b1: a 183 answered her offer and Bob's
    Allow lists UPDATE (the 183 is written here: the UAS side is the far end's)."""
    ours = net.call(extensions=lambda: [UpdateExtension()])
    net.wire.run_for(0.1)
    invite = parse_message(net.wire.sent(b"INVITE ")[0])
    net.alice.receive(make_response(invite, 183, to_tag="b1", body=EARLY_ANSWER, extra=[
        ("Contact", f"<sip:bob@{BOB}:5060>"), ("Allow", "INVITE, UPDATE"),
        ("Content-Type", "application/sdp")]).to_bytes(), BOB)
    assert ours.state is InviteState.EARLY and ours.negotiator.state is OfferState.IDLE
    return ours


def bobs_update(ours, contact: str, body: bytes = b"") -> bytes:
    """An UPDATE from Bob (tag b1) in ``ours``'s early dialog, CSeq 10."""
    extra = [("Content-Type", "application/sdp")] if body else []
    update = ours.dialog.create_request("UPDATE", body=body, extra=extra)
    update.headers.set("From", str(ours.dialog.remote_uri.with_tag("b1")))
    update.headers.set("To", str(ours.dialog.local_uri.with_tag(ours.local_tag)))
    update.headers.set("CSeq", "10 UPDATE")
    update.headers.set("Contact", contact)
    update.headers.prepend("Via", f"SIP/2.0/UDP {BOB}:5060;branch={new_branch()}")
    return update.to_bytes()


def test_rfc3311_s5_1_update_in_the_early_dialog_after_a_reliable_answer():
    net = Net(alice_caps=caps("UPDATE", "PRACK", tags=("100rel",)))
    ours = early_call(net)
    # the far end's UPDATE in the early dialog, with an offer: answered by us
    net.alice.receive(bobs_update(ours, f"<sip:bob@{BOB}:5060>",
                                  EARLY_ANSWER.replace(b"1 1", b"1 2")), BOB)
    net.wire.run_for(0.5)
    (ok,) = [d for d in net.wire.log if d[1] == ALICE and d[3].startswith(b"SIP/2.0 200")]
    assert b"m=audio 10000" in ok[3]
    assert [e.early for e in net.alice.events_of(ours, MediaAgreed)] == [True, True]


def test_rfc3311_s5_1_we_send_an_update_with_an_offer_in_the_early_dialog():
    """An early hold: the offer goes in an UPDATE inside the early dialog (To tag b1,
    CSeq above the INVITE's), its 2xx answer is applied as early media."""
    net = Net(alice_caps=caps("UPDATE", "PRACK", tags=("100rel",)))
    ours = early_call(net)
    update = ours.ext("update")
    assert update.usable(ours)
    net.wire.drop = lambda src, dst, data: data.startswith(b"UPDATE ")  # Bob is played here
    net.alice.run(ours, update.update(ours, net.wire.now, direction="sendonly"))
    net.wire.run_for(0.1)
    sent = parse_message(net.wire.lost[0][3])
    assert sent.method == "UPDATE" and str(sent.request_uri) == f"sip:bob@{BOB}:5060"
    assert sent.to.tag == "b1" and sent.from_.tag == ours.local_tag
    assert sent.cseq == (2, "UPDATE") and b"a=sendonly" in sent.body
    assert ours.negotiator.state is OfferState.LOCAL_OFFER
    recvonly = EARLY_ANSWER.replace(b"1 1 IN", b"1 2 IN") + b"a=recvonly\r\n"
    net.alice.receive(make_response(sent, 200, body=recvonly, extra=[
        ("Contact", f"<sip:bob2@{BOB}:5060>"), ("Content-Type", "application/sdp")]).to_bytes(),
        BOB)
    (result,) = net.alice.events_of(ours, ReinviteResult)
    assert (result.ok, result.status, result.method) == (True, 200, "UPDATE")
    agreed = net.alice.events_of(ours, MediaAgreed)[-1]
    assert agreed.early and ours.negotiator.state is OfferState.IDLE
    assert ours.state is InviteState.EARLY  # still not answered
    assert str(ours.dialog.remote_target) == f"sip:bob2@{BOB}:5060"  # a target refresh
    # refused: the offer is rolled back, the early dialog goes on
    net.alice.run(ours, update.update(ours, net.wire.now, direction="sendrecv"))
    net.wire.run_for(0.1)
    again = parse_message(net.wire.lost[-1][3])
    net.alice.receive(make_response(again, 488).to_bytes(), BOB)
    assert net.alice.events_of(ours, ReinviteResult)[-1].status == 488
    assert ours.negotiator.state is OfferState.IDLE and ours.state is InviteState.EARLY


def test_rfc3311_s5_2_an_update_without_sdp_in_the_early_dialog_is_a_refresh():
    """The far end's UPDATE with no body in the early dialog: a plain 200 (no SDP), the
    remote target refreshed to its Contact, the session unchanged."""
    net = Net(alice_caps=caps("UPDATE", "PRACK", tags=("100rel",)))
    ours = early_call(net)
    agreed = len(net.alice.events_of(ours, MediaAgreed))
    net.alice.receive(bobs_update(ours, f"<sip:bob3@{BOB}:5062>"), BOB)
    net.wire.run_for(0.5)
    (ok,) = [d for d in net.wire.log if d[1] == ALICE and d[3].startswith(b"SIP/2.0 ")]
    response = parse_message(ok[3])
    assert response.status == 200 and response.cseq == (10, "UPDATE")
    assert not response.body and response.to.tag == ours.local_tag
    assert str(ours.dialog.remote_target) == f"sip:bob3@{BOB}:5062"
    assert len(net.alice.events_of(ours, MediaAgreed)) == agreed  # nothing renegotiated
    assert ours.state is InviteState.EARLY and ours.negotiator.state is OfferState.IDLE


def test_rfc4028_s9_uas_puts_session_expires_in_the_2xx_and_the_uac_refreshes_by_update():
    net = update_net(expires=1800)
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension(), SessionTimer()])
    (invite,) = net.wire.sent(b"INVITE ")
    assert b"Session-Expires: 1800" in invite and b"Min-SE: 90" in invite
    ok = answers(net, b"INVITE")[0]
    assert b"Session-Expires: 1800;refresher=uac" in ok and b"Require: timer" in ok
    timer = ours.ext("timer")
    assert (timer.interval, timer.we_refresh) == (1800, True)
    assert not theirs.ext("timer").we_refresh
    net.wire.run_for(899)
    assert not net.wire.sent(b"UPDATE ")
    net.wire.run_for(2)  # half the interval: one UPDATE (no SDP), and the timer goes on
    (refresh,) = net.wire.sent(b"UPDATE ", src=ALICE)
    assert b"Session-Expires: 1800;refresher=uac" in refresh and b"Content-Length: 0" in refresh
    net.wire.run_for(901)
    assert len(net.wire.sent(b"UPDATE ", src=ALICE)) == 2
    assert ours.state is InviteState.CONFIRMED and theirs.state is InviteState.CONFIRMED


def test_rfc4028_s10_without_update_the_refresh_is_a_reinvite():
    net = Net(alice_caps=caps(tags=("timer",)), bob_caps=caps(tags=("timer",)))
    net.bob_extensions = lambda: [SessionTimer()]  # no UPDATE on bob's side
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension(), SessionTimer(expires=120)])
    net.wire.run_for(61)
    reinvites = [d for d in net.wire.sent(b"INVITE ", src=ALICE) if b"CSeq: 2 INVITE" in d]
    assert len(reinvites) == 1 and b"Session-Expires: 120;refresher=uac" in reinvites[0]
    assert b"a=sendrecv" in reinvites[0]  # a refresh changes nothing
    result = net.alice.events_of(ours, ReinviteResult)[-1]
    assert result.ok and result.refresh


def test_rfc4028_s10_the_non_refresher_sends_bye_when_no_refresh_comes():
    net = update_net()
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension(), SessionTimer(expires=90)])
    net.wire.drop = lambda src, dst, data: data.startswith(b"UPDATE")  # refreshes are lost
    net.wire.run_for(90)
    end = ended(net.bob, theirs)
    assert end.reason == "timeout" and "RFC 4028" in end.phrase
    byes = net.wire.sent(b"BYE ", src=BOB)
    assert byes
    # BYE at 90 - min(32, 90/3) = 60 s after the answer
    assert 59 <= [t for t, s, _, d in net.wire.log if d.startswith(b"BYE")][0] <= 63


def test_rfc4028_s7_4_a_422_gets_the_invite_again_with_the_min_se_it_named():
    net = update_net(min_se=600)
    ours = net.call(extensions=lambda: [UpdateExtension(), SessionTimer(expires=300)])
    net.wire.run_for(1)
    invites = net.wire.sent(b"INVITE ", src=ALICE)
    assert len(invites) == 2
    assert b"SIP/2.0 422" in net.wire.sent(b"SIP/2.0 422", src=BOB)[0]
    assert b"Session-Expires: 600" in invites[1] and b"Min-SE: 600" in invites[1]
    assert b"CSeq: 2 INVITE" in invites[1]
    net.bob.run(net.theirs, net.theirs.answer(net.wire.now))
    net.wire.run_for(1)
    assert ours.state is InviteState.CONFIRMED and ours.ext("timer").interval == 600


def test_rfc4028_s7_2_a_2xx_without_session_expires_means_no_timer():
    net = Net(alice_caps=WITH_UPDATE)  # bob knows nothing of timers
    ours, theirs = net.connect(extensions=lambda: [UpdateExtension(), SessionTimer(expires=90)])
    assert ours.ext("timer").interval is None
    net.wire.run_for(200)
    assert not net.wire.sent(b"UPDATE ") and ours.state is InviteState.CONFIRMED


def test_parse_session_expires():
    invite = parse_message(b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                           b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\n"
                           b"CSeq: 1 INVITE\r\nx: 4000 ; refresher=UAS\r\n\r\n")
    assert parse_session_expires(invite) == (4000, "uas")
    assert re.search(r"\d", "1")
