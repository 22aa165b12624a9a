"""Reliable provisional responses (RFC 3262) between two sans-IO sessions on the lossy
in-memory wire: RSeq/RAck, resending until the PRACK, retransmissions not processed twice,
421 and the 5xx give-up."""

from __future__ import annotations

import re

from sessions import ALICE, BOB, T, Net, caps, ended
from softphone.sip.events import CallProgress, MediaAgreed
from softphone.sip.invite import InviteState
from softphone.sip.message import make_response, parse_message
from softphone.sip.prack import PrackExtension, parse_rack

RELIABLE = caps("PRACK", tags=("100rel",))


def prack_net(alice_mode: str = "supported", bob_mode: str = "supported") -> tuple[Net, list]:
    net = Net(bob_answers="ring", alice_caps=caps("PRACK", tags=("100rel",)),
              bob_caps=caps("PRACK", tags=("100rel",)))
    bob_exts: list[PrackExtension] = []

    def bob() -> list:
        bob_exts.append(PrackExtension(bob_mode))
        return [bob_exts[-1]]

    net.bob_extensions = bob
    net.alice_mode = alice_mode  # type: ignore[attr-defined]
    return net, bob_exts


def test_rfc3262_s3_required_by_the_uac_the_180_is_reliable_and_pracked():
    net, _ = prack_net()
    ours = net.call(extensions=lambda: [PrackExtension("required")])
    net.wire.run_for(1)
    (invite,) = net.wire.sent(b"INVITE ")
    assert b"Require: 100rel" in invite and b"Supported: 100rel" in invite
    (ringing,) = net.wire.sent(b"SIP/2.0 180", src=BOB)
    rseq = int(re.search(rb"RSeq: (\d+)", ringing).group(1))
    assert b"Require: 100rel" in ringing
    (prack,) = net.wire.sent(b"PRACK ", src=ALICE)
    assert parse_rack(parse_message(prack).headers.get("RAck")) == (rseq, 1, "INVITE")
    assert net.wire.sent(b"SIP/2.0 200", src=BOB)  # to the PRACK
    assert ours.state is InviteState.EARLY
    net.wire.run_for(5)
    assert len(net.wire.sent(b"SIP/2.0 180", src=BOB)) == 1  # the PRACK stopped the resends
    net.bob.run(net.theirs, net.theirs.answer(net.wire.now))
    net.wire.run_for(1)
    assert ours.state is InviteState.CONFIRMED


def test_rfc3262_s3_a_lost_prack_means_the_180_again_and_one_progress_event():
    net, _ = prack_net()
    net.wire.drop_first(b"PRACK")
    ours = net.call(extensions=lambda: [PrackExtension("required")])
    net.wire.run_for(3)
    assert len(net.wire.sent(b"SIP/2.0 180", src=BOB)) >= 2  # resent at T1 …
    assert len(net.alice.events_of(ours, CallProgress)) == 1  # … and taken once (§4)
    assert net.wire.sent(b"PRACK ", src=ALICE)  # the PRACK's own retransmission came through
    resends = len(net.wire.sent(b"SIP/2.0 180", src=BOB))
    net.wire.run_for(10)
    assert len(net.wire.sent(b"SIP/2.0 180", src=BOB)) == resends


def test_rfc3262_s3_no_prack_for_64_t1_refuses_the_invite_with_5xx():
    net, _ = prack_net()
    net.wire.drop = lambda src, dst, data: data.startswith(b"PRACK")
    ours = net.call(extensions=lambda: [PrackExtension("required")])
    net.wire.run_for(64 * T.t1 + 2)
    end = ended(net.bob, net.theirs)
    assert (end.reason, end.status) == ("rejected", 500)
    assert ended(net.alice, ours).status == 500


def test_rfc3262_s4_reliable_183_with_sdp_is_early_media_and_its_answer_stands():
    net = Net(alice_caps=RELIABLE)
    ours = net.call(extensions=lambda: [PrackExtension("supported")])
    net.wire.run_for(0.1)
    invite = parse_message(net.wire.sent(b"INVITE ")[0])
    answer = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
              b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    early = make_response(invite, 183, to_tag="b1", body=answer, extra=[
        ("Contact", f"<sip:bob@{BOB}:5060>"), ("Require", "100rel"), ("RSeq", "7"),
        ("Content-Type", "application/sdp")])
    for _ in range(2):  # and its retransmission
        net.alice.receive(early.to_bytes(), BOB)
    net.wire.run_for(0.5)
    pracks = net.wire.sent(b"PRACK ", src=ALICE)
    assert len(pracks) == 1 and b"RAck: 7 1 INVITE" in pracks[0]
    agreed = net.alice.events_of(ours, MediaAgreed)
    assert len(agreed) == 1 and agreed[0].early and agreed[0].media.remote_port == 20000
    ok = make_response(invite, 200, to_tag="b1", body=answer.replace(b"20000", b"20002"),
                       extra=[("Contact", f"<sip:bob@{BOB}:5060>"),
                              ("Content-Type", "application/sdp")])
    net.alice.receive(ok.to_bytes(), BOB)
    assert ours.state is InviteState.CONFIRMED
    # §5: the answer in the reliable 183 was the answer; the 2xx's SDP is not applied again
    assert ours.negotiator.active.remote_port == 20000


def test_rfc3262_s4_an_out_of_order_reliable_provisional_is_not_pracked():
    net = Net(alice_caps=RELIABLE)
    net.call(extensions=lambda: [PrackExtension("supported")])
    net.wire.run_for(0.1)
    invite = parse_message(net.wire.sent(b"INVITE ")[0])
    for rseq in ("5", "7", "6"):
        provisional = make_response(invite, 180, to_tag="b1", extra=[
            ("Contact", f"<sip:bob@{BOB}:5060>"), ("Require", "100rel"), ("RSeq", rseq)])
        net.alice.receive(provisional.to_bytes(), BOB)
    net.wire.run_for(0.5)
    racks = [parse_message(p).headers.get("RAck") for p in net.wire.sent(b"PRACK ")]
    assert racks == ["5 1 INVITE", "6 1 INVITE"]


def test_rfc3262_s3_a_uas_that_requires_100rel_refuses_a_caller_without_it_with_421():
    net, _ = prack_net(bob_mode="required")
    net.alice_caps = caps()  # a caller that knows nothing of 100rel
    ours = net.call()
    net.wire.run_for(1)
    end = ended(net.alice, ours)
    assert end.status == 421
    assert b"Require: 100rel" in net.wire.sent(b"SIP/2.0 421", src=BOB)[0]


def test_a_prack_that_matches_nothing_gets_481():
    net, _ = prack_net()
    ours = net.call(extensions=lambda: [PrackExtension("required")])
    net.wire.run_for(1)
    stray = ours.dialog.create_request("PRACK", extra=[("RAck", "1 1 INVITE")])
    from softphone.sip.actions import SendRequest
    from softphone.sip.ids import new_branch
    net.alice.run(ours, [SendRequest(stray, ours.dialog.next_hop(), new_branch())])
    net.wire.run_for(1)
    assert net.wire.sent(b"SIP/2.0 481", src=BOB)


def test_supported_on_both_sides_is_not_reliable_unless_required():
    net, _ = prack_net()
    net.call(extensions=lambda: [PrackExtension("supported")])
    net.wire.run_for(1)
    (ringing,) = net.wire.sent(b"SIP/2.0 180", src=BOB)
    assert b"RSeq" not in ringing and not net.wire.sent(b"PRACK ")
