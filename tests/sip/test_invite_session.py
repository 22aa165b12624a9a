"""The sans-IO INVITE session, driven over the in-memory wire with a fake clock: every
test runs real transaction machines on both sides, loses what it wants, and reads the
bytes that crossed."""

from __future__ import annotations


import pytest

from softphone.sip.actions import Emit
from softphone.sip.challenge import Authenticator
from softphone.sip.events import (CallAnswered, CallConfirmed, CallEnded, CallProgress,
                                  InfoReceived, MediaAgreed, ReinviteResult, RequestResult,
                                  SessionReleased)
from softphone.sip.invite import (InviteExtension, InviteState, SessionError)
from softphone.sip.actions import SendRequest
from softphone.sip.ids import new_branch
from softphone.sip.message import Request, make_response, parse_message
from softphone.sip.negotiator import MediaPolicy, SdpNegotiator
from sessions import ALICE, BOB, T, Net, ended  # noqa: F401 - the shared two-party set-up

# -- the basic exchange ----------------------------------------------------------------
def test_call_rings_answers_confirms_and_hangs_up():
    net = Net(bob_answers="ring")
    ours = net.call()
    assert ours.state is InviteState.CALLING
    net.wire.run_for(1)
    theirs = net.theirs
    assert theirs.state is InviteState.EARLY and ours.state is InviteState.EARLY
    progress = net.alice.events_of(ours, CallProgress)
    assert [p.status for p in progress] == [180]
    net.bob.run(theirs, theirs.answer(net.wire.now))
    assert theirs.state is InviteState.CONNECTING
    net.wire.run_for(1)
    assert ours.state is InviteState.CONFIRMED and theirs.state is InviteState.CONFIRMED
    assert net.bob.events_of(theirs, CallConfirmed)
    (ours_media,) = net.alice.events_of(ours, MediaAgreed)
    (their_media,) = net.bob.events_of(theirs, MediaAgreed)
    assert ours_media.media.codec.name == their_media.media.codec.name == "PCMU"
    assert (ours_media.media.remote_host, ours_media.media.remote_port) == (BOB, 20000)
    assert (their_media.media.remote_host, their_media.media.remote_port) == (ALICE, 10000)
    assert len(net.wire.sent(b"ACK ")) == 1
    assert not net.wire.sent(b"SIP/2.0 200", src=BOB)[1:]  # the ACK stopped the resends
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(1)
    assert ended(net.alice, ours).reason == "hangup"
    assert ended(net.bob, theirs).reason == "remote-hangup"
    assert net.alice.events_of(ours, RequestResult)[0].status == 200


def test_the_invite_is_never_changed_after_it_was_handed_over():
    net = Net()
    ours = net.call(start=False)
    actions = ours.start(0.0)
    (send,) = [a for a in actions if type(a).__name__ == "SendRequest"]
    before = send.request.to_bytes()
    net.alice.run(ours, actions)
    net.wire.run_for(1)
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(5)
    assert send.request.to_bytes() == before


def test_retransmitted_2xx_when_the_ack_is_lost_gets_the_ack_again():
    net = Net()
    lost = net.wire.drop_first(b"ACK ")
    ours = net.call()
    net.wire.run_for(0.2)
    theirs = net.theirs
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.wire.run_for(0.2)
    assert theirs.state is InviteState.CONNECTING  # its ACK was lost
    net.wire.run_for(1)  # T1: the 200 again, and our ACK again
    assert theirs.state is InviteState.CONFIRMED
    assert len(net.wire.sent(b"SIP/2.0 200", src=BOB)) == 2
    acks = [d for d in net.wire.sent(b"ACK ")]
    assert len(acks) == 1 and acks[0] == lost[0]  # the same ACK, same branch
    assert ours.state is InviteState.CONFIRMED


def test_2xx_never_acked_is_given_up_after_64_t1_with_a_bye():
    net = Net()
    net.wire.drop = lambda src, dst, data: data.startswith(b"ACK ")
    ours = net.call()
    net.wire.run_for(0.2)
    theirs = net.theirs
    net.bob.run(theirs, theirs.answer(net.wire.now))
    answered_at = net.wire.now
    net.wire.run(answered_at + 64 * T.t1 + 1)
    resends = net.wire.sent(b"SIP/2.0 200", src=BOB)
    assert 7 <= len(resends) <= 11  # T1, 2T1, 4T1, then every T2 up to 64·T1
    end = ended(net.bob, theirs)
    assert (end.reason, end.phrase) == ("error", "no ACK received")
    assert net.wire.sent(b"BYE ", src=BOB)
    assert ended(net.alice, ours).reason == "remote-hangup"


# -- CANCEL ----------------------------------------------------------------------------
def test_cancel_waits_for_the_first_provisional():
    net = Net()
    net.wire.latency = 0.15  # the 100 Trying is slow to come back
    ours = net.call()
    net.wire.run_for(0.1)
    net.alice.run(ours, ours.cancel(net.wire.now))
    assert "cancel-wait" in ours.timers.running  # waiting for a provisional, 4·T1 at most
    net.wire.run_for(0.2)
    assert not net.wire.sent(b"CANCEL ")  # §9.1: not before a provisional
    # the 100 came (t = 0.25): the CANCEL is on its way, its 200 and the 487 not back yet
    assert "cancel-wait" not in ours.timers.running
    assert "cancel-expiry" in ours.timers.running  # 64·T1 for the 487
    assert (id(ours), "cancel-expiry") in net.alice._timers
    theirs = net.theirs
    net.bob.run(theirs, theirs.ring(net.wire.now))
    net.wire.run_for(2)
    assert len(net.wire.sent(b"CANCEL ")) == 1
    assert ended(net.bob, theirs).reason == "cancelled"
    end = ended(net.alice, ours)
    assert (end.reason, end.status) == ("cancelled", 487)
    assert net.wire.sent(b"ACK ")  # the 487 is ACKed by the transaction
    # the 487 stopped the expiry timer: nothing of the CANCEL is left armed
    assert not {"cancel-wait", "cancel-expiry"} & set(ours.timers.running)
    assert (id(ours), "cancel-expiry") not in net.alice._timers


def test_cancel_with_no_provisional_ever_gives_up_locally():
    net = Net()
    net.wire.drop = lambda src, dst, data: dst == ALICE  # nothing comes back
    ours = net.call()
    net.wire.run_for(0.1)
    net.alice.run(ours, ours.cancel(net.wire.now))
    net.wire.run_for(4 * T.t1 + 0.5)
    assert ended(net.alice, ours).reason == "cancelled"
    assert not net.wire.sent(b"CANCEL ") and not [d for *_, d in net.wire.lost
                                                   if d.startswith(b"CANCEL")]
    invites = len([d for *_, d in net.wire.log + net.wire.lost if d.startswith(b"INVITE")])
    net.wire.run_for(30)
    later = len([d for *_, d in net.wire.log + net.wire.lost if d.startswith(b"INVITE")])
    assert later == invites  # the INVITE transaction was stopped quietly


def test_abandon_before_any_provisional_stops_the_invite_quietly():
    net = Net()
    net.wire.drop = lambda src, dst, data: dst == ALICE
    ours = net.call()
    net.wire.run_for(1.0)
    net.alice.run(ours, ours.abandon(net.wire.now, "timeout", "no response from 10.0.0.2"))
    end = ended(net.alice, ours)
    assert (end.reason, end.phrase) == ("timeout", "no response from 10.0.0.2")
    count = len(net.wire.lost)
    net.wire.run_for(40)
    assert len(net.wire.lost) == count  # no retransmission, no Timer B event
    assert len(net.alice.events_of(ours, CallEnded)) == 1


def test_answer_after_cancel_crossed_is_acked_then_released():
    net = Net(bob_answers="ring")
    ours = net.call()
    net.wire.run_for(0.5)
    theirs = net.theirs
    # bob answers and alice cancels at the same moment: the CANCEL crosses the 200
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.alice.run(ours, ours.cancel(net.wire.now))
    net.wire.run_for(2)
    assert ended(net.alice, ours).reason == "cancelled"
    assert net.wire.sent(b"ACK ", src=ALICE) and net.wire.sent(b"BYE ", src=ALICE)
    assert ended(net.bob, theirs).reason == "remote-hangup"


def test_cancel_that_gets_no_final_answer_expires():
    net = Net(bob_answers="ring")
    ours = net.call()
    net.wire.run_for(0.5)
    net.wire.drop = lambda src, dst, data: src == BOB  # bob goes silent
    net.alice.run(ours, ours.cancel(net.wire.now))
    net.wire.run_for(64 * T.t1 + 1)
    end = ended(net.alice, ours)
    assert end.reason == "cancelled" and end.status == 408


# -- forks ---------------------------------------------------------------------------
def test_second_2xx_from_another_fork_is_acked_and_released():
    net = Net(bob_answers="ring+answer")
    ours = net.call()
    net.wire.run_for(1)
    assert ours.state is InviteState.CONFIRMED
    first_tag = ours.remote_tag
    # a second 200 with another To tag, as a forking proxy relays it
    invite = parse_message([d for *_, d in net.wire.log if d.startswith(b"INVITE")][0])
    fork = make_response(invite, 200, to_tag="fork2",
                         extra=[("Contact", f"<sip:carol@{BOB}:5060>")])
    net.alice.receive(fork.to_bytes(), BOB)
    net.wire.run_for(1)
    assert ours.remote_tag == first_tag and ours.state is InviteState.CONFIRMED
    byes = net.wire.sent(b"BYE ", src=ALICE)
    assert len(byes) == 1 and b"tag=fork2" in byes[0]
    acks = net.wire.sent(b"ACK ", src=ALICE)
    assert len(acks) == 2 and b"tag=fork2" in acks[1]
    assert len(net.alice.events_of(ours, CallAnswered)) == 1
    assert not net.alice.events_of(ours, CallEnded)


def test_early_dialogs_of_two_forks_then_one_answers():
    net = Net()
    ours = net.call()
    net.wire.run_for(0.05)
    invite = parse_message([d for *_, d in net.wire.log if d.startswith(b"INVITE")][0])
    for tag in ("f1", "f2"):
        ringing = make_response(invite, 180, to_tag=tag,
                                extra=[("Contact", f"<sip:{tag}@{BOB}:5060>")])
        net.alice.receive(ringing.to_bytes(), BOB)
    assert ours.state is InviteState.EARLY
    assert len(ours.forks.early) == 2
    # f2 answers (no SDP: the answer came nowhere, so the call is released with BYE)
    ok = make_response(invite, 200, to_tag="f2", extra=[("Contact", f"<sip:f2@{BOB}:5060>")])
    net.alice.receive(ok.to_bytes(), BOB)
    assert ours.remote_tag == "f2"
    end = ended(net.alice, ours)
    assert end.reason == "error" and end.phrase == "no SDP answer"


# -- auth ---------------------------------------------------------------------------------
def test_407_is_answered_once_with_a_new_request_and_cseq():
    net = Net()
    challenged: list[bytes] = []

    def bob_new(endpoint, request):
        if b"Proxy-Authorization" not in request.to_bytes():
            challenged.append(request.to_bytes())
            endpoint._send_response(make_response(request, 407, to_tag="p", extra=[
                ("Proxy-Authenticate", 'Digest realm="pbx", nonce="abc", qop="auth"')]))
            return None
        return Net._new(net, endpoint, request)

    net.bob.on_new_request = bob_new
    net.bob_answers = "answer"
    auth = Authenticator("office", "1001", "secret")
    ours = net.call(auth=auth)
    first = ours.invite
    net.wire.run_for(2)
    assert ours.state is InviteState.CONFIRMED
    invites = net.wire.sent(b"INVITE ", src=ALICE)
    assert b"CSeq: 1 INVITE" in invites[0] and b"CSeq: 2 INVITE" in invites[-1]
    assert b"Proxy-Authorization: Digest" in invites[-1]
    assert first is not ours.invite and b"CSeq: 1 INVITE" in first.to_bytes()
    assert b"Proxy-Authorization" not in first.to_bytes()  # the old request is untouched


def test_wrong_password_ends_the_call_saying_so():
    net = Net()

    def always_challenge(endpoint, request):
        endpoint._send_response(make_response(request, 401, to_tag="r", extra=[
            ("WWW-Authenticate", 'Digest realm="pbx", nonce="n1"')]))
        return None

    net.bob.on_new_request = always_challenge
    ours = net.call(auth=Authenticator("office", "1001", "wrong"))
    net.wire.run_for(2)
    end = ended(net.alice, ours)
    assert (end.reason, end.status) == ("rejected", 401)
    assert "rejected our credentials for realm 'pbx'" in end.phrase
    assert "wrong" not in end.phrase


def test_a_challenge_without_a_password_says_what_is_missing():
    net = Net()
    net.bob.on_new_request = lambda endpoint, request: endpoint._send_response(
        make_response(request, 407, to_tag="r", extra=[
            ("Proxy-Authenticate", 'Digest realm="pbx", nonce="n1"')]))
    ours = net.call(auth=Authenticator("office", "1001", None))
    net.wire.run_for(2)
    assert "account 'office' has no password" in ended(net.alice, ours).phrase


# -- loss and timeouts -----------------------------------------------------------------
def test_lost_invite_is_retransmitted_and_the_call_completes():
    net = Net(bob_answers="answer")
    dropped = []

    def drop(src, dst, data):
        if data.startswith(b"INVITE") and len(dropped) < 2:
            dropped.append(data)
            return True
        return False

    net.wire.drop = drop
    ours = net.call()
    net.wire.run_for(3)
    assert len(dropped) == 2 and ours.state is InviteState.CONFIRMED


def test_no_answer_at_all_is_a_timeout_after_timer_b():
    net = Net()
    net.wire.drop = lambda src, dst, data: True
    ours = net.call()
    net.wire.run_for(64 * T.t1 - 1)
    assert not net.alice.events_of(ours, CallEnded)
    net.wire.run_for(2)
    end = ended(net.alice, ours)
    assert (end.reason, end.status) == ("timeout", 408)


def test_ended_session_is_released_after_64_t1():
    net = Net()
    ours, theirs = net.connect()
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(64 * T.t1 - 1)
    assert not net.alice.events_of(ours, SessionReleased)
    assert net.alice.dialogs.usages(ours.dialog.id)
    net.wire.run_for(2)
    assert net.alice.events_of(ours, SessionReleased)
    assert not net.alice.dialogs.usages(ours.dialog.id)


# -- in-dialog requests ------------------------------------------------------------------
def test_hold_re_invite_offers_sendonly_and_gets_recvonly():
    net = Net()
    ours, theirs = net.connect()
    net.alice.run(ours, ours.reinvite(net.wire.now, "sendonly"))
    net.wire.run_for(1)
    (result,) = net.alice.events_of(ours, ReinviteResult)
    assert result.ok and result.status == 200
    assert net.alice.events_of(ours, MediaAgreed)[-1].media.direction == "sendonly"
    theirs_media = net.bob.events_of(theirs, MediaAgreed)[-1]
    assert theirs_media.media.direction == "recvonly" and theirs_media.remote_hold
    reinvite = net.wire.sent(b"INVITE ", src=ALICE)[-1]
    assert b"CSeq: 2 INVITE" in reinvite and b"a=sendonly" in reinvite
    assert b"o=- " in reinvite and ours.negotiator.version == 2


def test_glare_both_get_491_and_back_off_within_the_rfc_ranges():
    net = Net()
    ours, theirs = net.connect()
    t0 = net.wire.now
    net.alice.run(ours, ours.reinvite(t0, "sendonly"))
    net.bob.run(theirs, theirs.reinvite(t0, "sendonly"))
    net.wire.run_for(0.1)
    assert len(net.wire.sent(b"SIP/2.0 491")) == 2
    retry_ours = ours.timers.running["reinvite-retry"] - net.wire.log[-1][0]
    retry_theirs = theirs.timers.running["reinvite-retry"] - net.wire.log[-1][0]
    assert 2.0 <= retry_ours <= 4.1  # the Call-ID's owner (§14.1)
    assert 0.0 <= retry_theirs <= 2.1
    net.wire.run_for(8)
    assert net.alice.events_of(ours, ReinviteResult)[-1].ok
    assert net.bob.events_of(theirs, ReinviteResult)[-1].ok


def test_refused_re_invite_keeps_the_session_as_it_was():
    net = Net()
    ours, theirs = net.connect()
    before = ours.negotiator.active
    theirs.negotiator.policy = MediaPolicy(codecs=("G722",))  # bob no longer speaks PCMU
    theirs.negotiator._pending_answer = None
    net.alice.run(ours, ours.reinvite(net.wire.now, "sendonly"))
    net.wire.run_for(1)
    (result,) = net.alice.events_of(ours, ReinviteResult)
    assert not result.ok and result.status == 488
    assert ours.negotiator.active is before and ours.state is InviteState.CONFIRMED
    ours.reinvite(net.wire.now, "sendrecv")  # one at a time
    with pytest.raises(SessionError, match="already in progress"):
        ours.reinvite(net.wire.now, "sendonly")


def test_re_invite_without_sdp_is_a_delayed_offer_answered_in_the_ack():
    net = Net()
    ours, theirs = net.connect()
    empty = ours.dialog.create_request("INVITE", contact=ours.options.contact)
    net.alice.run(ours, [SendRequest(empty, ours.dialog.next_hop(), new_branch())])
    net.wire.run_for(0.1)
    ok = net.wire.sent(b"SIP/2.0 200", src=BOB)[-1]
    assert b"m=audio 20000" in ok  # bob offered in its 200
    answerer = SdpNegotiator(MediaPolicy(codecs=("PCMA",)), address=ALICE, port=10002)
    answerer.receive_offer(ok.split(b"\r\n\r\n", 1)[1])
    answer, _ = answerer.create_answer()
    ack = ours.dialog.create_ack(empty.cseq[0], body=answer.to_bytes(),
                                 extra=[("Content-Type", "application/sdp")])
    net.alice.run(ours, [SendRequest(ack, ours.dialog.next_hop(), new_branch(),
                                     stateless=True)])
    net.wire.run_for(2)
    media = net.bob.events_of(theirs, MediaAgreed)[-1].media
    assert (media.remote_port, media.codec.name) == (10002, "PCMA")
    assert len(net.wire.sent(b"SIP/2.0 200", src=BOB)) == 2  # the ACK stopped the resends


def test_delayed_offer_initial_invite_gets_offer_in_200_and_answer_in_ack():
    net = Net()
    invite = Request("INVITE", f"sip:bob@{BOB}:5060")
    for name, value in (("Via", f"SIP/2.0/UDP {ALICE}:5060;branch=z9hG4bKdelay1"),
                        ("Max-Forwards", "70"), ("From", f"<sip:alice@{ALICE}>;tag=a1"),
                        ("To", f"<sip:bob@{BOB}>"), ("Call-ID", "delayed@x"),
                        ("CSeq", "1 INVITE"), ("Contact", f"<sip:alice@{ALICE}:5060>")):
        invite.headers.add(name, value)
    net.bob.receive(invite.to_bytes(), ALICE)
    theirs = net.theirs
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.wire.run_for(0.1)
    ok = [d for *_, d in net.wire.log if d.startswith(b"SIP/2.0 200")][0]
    assert b"m=audio 20000" in ok and b"a=sendrecv" in ok
    answer = SdpNegotiator(MediaPolicy(codecs=("PCMU",)), address=ALICE, port=10000)
    answer.receive_offer(ok.split(b"\r\n\r\n", 1)[1])
    body, _ = answer.create_answer()
    ack = Request("ACK", f"sip:bob@{BOB}:5060")
    to = [line for line in ok.decode().split("\r\n") if line.startswith("To:")][0][4:]
    for name, value in (("Via", f"SIP/2.0/UDP {ALICE}:5060;branch=z9hG4bKdelay2"),
                        ("Max-Forwards", "70"), ("From", f"<sip:alice@{ALICE}>;tag=a1"),
                        ("To", to), ("Call-ID", "delayed@x"), ("CSeq", "1 ACK"),
                        ("Content-Type", "application/sdp")):
        ack.headers.add(name, value)
    ack.body = body.to_bytes()
    net.bob.receive(ack.to_bytes(), ALICE)
    assert theirs.state is InviteState.CONFIRMED
    (media,) = net.bob.events_of(theirs, MediaAgreed)
    assert (media.media.remote_host, media.media.remote_port) == (ALICE, 10000)


def test_re_invite_before_the_last_2xx_was_acked_gets_500_retry_after():
    net = Net()
    net.wire.drop = lambda src, dst, data: data.startswith(b"ACK ")
    ours = net.call()
    net.wire.run_for(0.2)
    theirs = net.theirs
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.wire.run_for(0.05)
    assert ours.state is InviteState.CONFIRMED and theirs.state is InviteState.CONNECTING
    net.alice.run(ours, ours.reinvite(net.wire.now, "sendonly"))
    net.wire.run_for(0.1)
    refused = net.wire.sent(b"SIP/2.0 500", src=BOB)
    assert refused and b"Retry-After:" in refused[0]


def test_in_dialog_request_with_a_lower_cseq_gets_500():
    net = Net()
    ours, theirs = net.connect()
    stale = ours.dialog.create_request("INFO", cseq=0)
    net.alice.run(ours, [SendRequest(stale, ours.dialog.next_hop(), new_branch())])
    net.wire.run_for(1)
    assert net.wire.sent(b"SIP/2.0 500 CSeq out of order")


def test_info_is_answered_and_reported():
    net = Net()
    ours, theirs = net.connect()
    net.alice.run(ours, ours.send_request(net.wire.now, "INFO", body=b"Signal=5\r\nDuration=160",
                                          content_type="application/dtmf-relay"))
    net.wire.run_for(1)
    (info,) = net.bob.events_of(theirs, InfoReceived)
    assert info.content_type == "application/dtmf-relay" and b"Signal=5" in info.body
    assert net.alice.events_of(ours, RequestResult)[-1].status == 200


def test_bye_challenged_by_401_is_retried_with_credentials():
    net = Net()
    ours, theirs = net.connect()
    ours.authenticator = Authenticator("office", "1001", "secret")
    original = theirs.on_request

    def challenge_bye(request, now):
        if request.method == "BYE" and b"Authorization" not in request.to_bytes():
            return [theirs._respond(request, 401, extra=[
                ("WWW-Authenticate", 'Digest realm="pbx", nonce="b1", qop="auth"')])]
        return original(request, now)

    theirs.on_request = challenge_bye
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(2)
    byes = net.wire.sent(b"BYE ", src=ALICE)
    assert len(byes) == 2 and b"Authorization: Digest" in byes[1]
    assert net.alice.events_of(ours, RequestResult)[-1].status == 200
    assert ended(net.bob, theirs).reason == "remote-hangup"


def test_hangup_of_an_unanswered_incoming_call_is_a_486():
    net = Net(bob_answers="ring")
    ours = net.call()
    net.wire.run_for(0.5)
    theirs = net.theirs
    net.bob.run(theirs, theirs.hangup(net.wire.now))
    net.wire.run_for(1)
    assert (ended(net.alice, ours).reason, ended(net.alice, ours).status) == ("rejected", 486)


def test_bye_during_our_2xx_resends_waits_for_the_ack():
    """§15: the callee may not send BYE before its 2xx was ACKed."""
    net = Net()
    held = []
    net.wire.drop = lambda src, dst, data: data.startswith(b"ACK ") and not held.append(1) \
        and len(held) < 2
    ours = net.call()
    net.wire.run_for(0.2)
    theirs = net.theirs
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.bob.run(theirs, theirs.hangup(net.wire.now))
    assert ended(net.bob, theirs).reason == "hangup"
    net.wire.run_for(0.1)
    assert not net.wire.sent(b"BYE ")  # the first ACK was lost: no BYE yet
    net.wire.run_for(1.5)
    assert net.wire.sent(b"BYE ", src=BOB)
    assert ended(net.alice, ours).reason == "remote-hangup"


def test_unsupported_content_type_gets_415():
    net = Net()
    invite = Request("INVITE", f"sip:bob@{BOB}:5060", body=b"hello")
    for name, value in (("Via", f"SIP/2.0/UDP {ALICE}:5060;branch=z9hG4bKct1"),
                        ("From", f"<sip:alice@{ALICE}>;tag=a1"), ("To", f"<sip:bob@{BOB}>"),
                        ("Call-ID", "ct@x"), ("CSeq", "1 INVITE"),
                        ("Contact", f"<sip:alice@{ALICE}:5060>"), ("Content-Type", "text/plain")):
        invite.headers.add(name, value)
    net.bob.receive(invite.to_bytes(), ALICE)
    net.wire.run_for(0.1)
    assert net.wire.sent(b"SIP/2.0 415")
    assert ended(net.bob, net.theirs).status == 415


# -- extensions -------------------------------------------------------------------------
class Stamp(InviteExtension):
    """A test extension: stamps a header on what it sends and consumes a made-up method."""

    name = "stamp"
    methods = ("PING",)

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.ended = False

    def on_outgoing_request(self, session, request):
        request.headers.set("X-Stamp", "1")

    def on_outgoing_response(self, session, response):
        response.headers.set("X-Stamp", "1")

    def on_incoming_request(self, session, request, now, actions):
        self.seen.append(request.method)
        if request.method == "PING":
            actions.append(session._respond(request, 200))
            actions.append(session.timers.start("ext:stamp:later", now + 1))
            return True
        return False

    def on_timer(self, session, key, now):
        self.seen.append(f"timer:{key}")
        return [Emit("stamp-timer")]

    def on_end(self, session, now):
        self.ended = True
        return []


def test_extension_hooks_see_messages_consume_requests_and_get_timers():
    net = Net()
    ext = Stamp()
    net.bob_extensions = [ext]
    ours, theirs = net.connect()
    assert all(b"X-Stamp: 1" in d for d in net.wire.sent(b"SIP/2.0 200", src=BOB))
    ping = ours.dialog.create_request("PING")
    net.alice.run(ours, [SendRequest(ping, ours.dialog.next_hop(), new_branch())])
    net.wire.run_for(2)
    assert "PING" in ext.seen and "timer:later" in ext.seen
    assert "stamp-timer" in [e for u, e in net.bob.events if u is theirs]
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(1)
    assert ext.ended
