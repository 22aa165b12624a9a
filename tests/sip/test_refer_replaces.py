"""REFER (RFC 3515/3892/4488), its implicit subscription, Replaces (RFC 3891) and the
INVITE session's redirect hand-off (RFC 3261 §8.1.3.4), sans-IO on the in-memory wire."""

from __future__ import annotations

import pytest

from sessions import ALICE, BOB, Net, caps, ended
from softphone.sip.errors import SipParseError
from softphone.sip.events import (NotifyReceived, Redirected, ReferReceived, ReferResult,
                                  SubscriptionState)
from softphone.sip.invite import InviteState, SessionError
from softphone.sip.message import make_response, parse_message
from softphone.sip.refer import ReferExtension, ReferSubscriber, parse_sipfrag, report, sipfrag
from softphone.sip.replaces import Replaces, verdict
from softphone.sip.subscription import SubscriptionOptions
from softphone.sip.uri import parse_uri

REFER_CAPS = caps("REFER", "NOTIFY", tags=("norefersub",))


def refer_net(accept: bool = True) -> Net:
    net = Net(alice_caps=REFER_CAPS, bob_caps=REFER_CAPS)
    net.bob_extensions = lambda: [ReferExtension(accept)]
    return net


def transfer(net: Net, ours, target: str, **kw):
    """Alice REFERs bob (the implicit subscription first: a NOTIFY may beat the 202)."""
    ext = ours.ext("refer")
    actions = ext.refer(ours, net.wire.now, target, referred_by="sip:alice@10.0.0.1", **kw)
    sub = ReferSubscriber(SubscriptionOptions(contact=net.alice.contact("alice")), ours.dialog,
                          ext.last_cseq)
    net.alice.run(sub, sub.subscribe(net.wire.now))
    net.alice.run(ours, actions)
    return sub


def test_rfc3515_s2_4_refer_is_accepted_and_the_notifies_report_the_new_call():
    net = refer_net()
    ours, theirs = net.connect(extensions=lambda: [ReferExtension()])
    sub = transfer(net, ours, "sip:carol@10.0.0.3")
    net.wire.run_for(0.5)
    (refer,) = net.wire.sent(b"REFER ", src=ALICE)
    assert b"Refer-To: <sip:carol@10.0.0.3>" in refer
    assert b"Referred-By: <sip:alice@10.0.0.1>" in refer  # RFC 3892
    assert net.alice.events_of(ours, ReferResult)[0].status == 202
    (got,) = net.bob.events_of(theirs, ReferReceived)
    assert str(got.target.uri) == "sip:carol@10.0.0.3" and got.accepted
    assert got.referred_by == "<sip:alice@10.0.0.1>" and got.replaces is None
    notifier = got.notifier
    net.bob.run(notifier, notifier.start_implicit(net.wire.now) +
                report(notifier, net.wire.now, 100, "Trying"))
    net.wire.run_for(0.5)
    net.bob.run(notifier, report(notifier, net.wire.now, 200, "OK"))
    net.wire.run_for(0.5)
    notifies = net.alice.events_of(sub, NotifyReceived)
    assert [parse_sipfrag(n.body) for n in notifies] == [(100, "Trying"), (200, "OK")]
    assert notifies[-1].state == "terminated"
    assert net.alice.events_of(sub, SubscriptionState)[-1].state == "terminated"
    assert all(b"Event: refer" in d and b"message/sipfrag" in d
               for d in net.wire.sent(b"NOTIFY ", src=BOB))


def test_rfc4488_refer_sub_false_gets_no_subscription():
    net = refer_net()
    ours, theirs = net.connect(extensions=lambda: [ReferExtension()])
    request = ours.dialog.create_request("REFER", extra=[
        ("Refer-To", "<sip:carol@10.0.0.3>"), ("Refer-Sub", "false")])
    net.alice.run(ours, [ours.track(request, on_final=lambda *a: [])])
    net.wire.run_for(0.5)
    (accepted,) = [d for d in net.wire.sent(b"SIP/2.0 202", src=BOB)]
    assert b"Refer-Sub: false" in accepted
    assert net.bob.events_of(theirs, ReferReceived)[0].notifier is None


def test_rfc3515_refer_declined_when_transfers_are_off_and_bad_refer_to_is_400():
    net = refer_net(accept=False)
    ours, theirs = net.connect(extensions=lambda: [ReferExtension()])
    transfer(net, ours, "sip:carol@10.0.0.3")
    net.wire.run_for(0.5)
    assert net.alice.events_of(ours, ReferResult)[0].status == 603
    assert not net.bob.events_of(theirs, ReferReceived)[0].accepted
    request = ours.dialog.create_request("REFER")  # no Refer-To at all (§2.4.1)
    net.alice.run(ours, [ours.track(request, on_final=lambda *a: [])])
    net.wire.run_for(0.5)
    assert net.wire.sent(b"SIP/2.0 400", src=BOB)


def test_attended_refer_to_carries_replaces_escaped_in_the_uri():
    net = refer_net()
    ours, theirs = net.connect(extensions=lambda: [ReferExtension()])
    replaces = "abc@h;to-tag=t1;from-tag=f1"
    transfer(net, ours, "sip:carol@10.0.0.3", replaces=replaces)
    net.wire.run_for(0.5)
    (refer,) = net.wire.sent(b"REFER ", src=ALICE)
    assert b"?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>" in refer
    got = net.bob.events_of(theirs, ReferReceived)[0]
    assert got.replaces == replaces and not got.target.uri.headers
    assert Replaces.parse(got.replaces) == Replaces("abc@h", "t1", "f1")


def test_rfc3891_s3_replaces_rules():
    net = Net(bob_answers="ring")
    ours = net.call()
    net.wire.run_for(0.5)
    theirs = net.theirs
    early_ours = Replaces(ours.call_id, ours.local_tag, ours.remote_tag)
    assert verdict(early_ours, ours) is None  # our own early outgoing call
    assert verdict(Replaces(theirs.call_id, theirs.local_tag, theirs.remote_tag), theirs) == \
        (481, "Call/Transaction Does Not Exist")  # an early dialog we did not start
    assert verdict(Replaces("nope", "a", "b"), None)[0] == 481
    net.bob.run(theirs, theirs.answer(net.wire.now))
    net.wire.run_for(0.5)
    confirmed = Replaces.for_session(ours)  # as the far end sees it
    assert confirmed == Replaces(ours.call_id, ours.remote_tag, ours.local_tag)
    mine = Replaces(theirs.call_id, theirs.local_tag, theirs.remote_tag)
    assert verdict(mine, theirs) is None
    assert verdict(Replaces(mine.call_id, mine.to_tag, mine.from_tag, early_only=True),
                   theirs) == (486, "Busy Here")
    net.alice.run(ours, ours.hangup(net.wire.now))
    net.wire.run_for(0.5)
    assert verdict(mine, theirs) == (603, "Decline")
    assert verdict(Replaces(mine.call_id, "other", mine.from_tag), theirs)[0] == 481
    with pytest.raises(SipParseError):
        Replaces.parse("callid;to-tag=1")
    assert Replaces.parse("a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2%3Bearly-only").early_only


def test_sipfrag_round_trip():
    assert sipfrag(180) == b"SIP/2.0 180 Ringing\r\n"
    assert parse_sipfrag(b"SIP/2.0 603 Declined\r\nVia: x\r\n") == (603, "Declined")
    assert parse_sipfrag(b"garbage") is None


# -- redirects: the session's part (the policy is the UA's) ---------------------------------
def test_a_3xx_waits_for_the_ua_then_the_invite_goes_again_in_the_same_call():
    net = Net()
    ours = net.call(follow_redirects=True)
    net.wire.run_for(0.05)
    invite = parse_message(net.wire.sent(b"INVITE ")[0])
    moved = make_response(invite, 302, to_tag="r", extra=[
        ("Contact", "<sip:low@10.0.0.2:5060>;q=0.2, <sip:high@10.0.0.2:5060>;q=0.9")])
    net.alice.receive(moved.to_bytes(), BOB)
    (redirected,) = net.alice.events_of(ours, Redirected)
    assert [c.uri.user for c in redirected.contacts] == ["high", "low"]
    assert ours.awaiting_target and not ours.ended
    net.bob_answers = "answer"
    uri = parse_uri("sip:high@10.0.0.2:5060")
    net.alice.run(ours, ours.retarget(net.wire.now, uri, uri))
    net.wire.run_for(1)
    second = parse_message(net.wire.sent(b"INVITE ")[-1])
    assert second.uri == "sip:high@10.0.0.2:5060" and second.cseq == (2, "INVITE")
    assert second.call_id == invite.call_id and second.from_.tag == invite.from_.tag
    assert ours.state is InviteState.CONFIRMED
    with pytest.raises(SessionError):
        ours.retarget(net.wire.now, uri, uri)


def test_without_following_a_3xx_is_a_rejection_and_give_up_ends_it():
    net = Net()
    ours = net.call()
    net.wire.run_for(0.05)
    invite = parse_message(net.wire.sent(b"INVITE ")[0])
    net.alice.receive(make_response(invite, 302, to_tag="r", extra=[
        ("Contact", "<sip:x@10.0.0.2>")]).to_bytes(), BOB)
    assert (ended(net.alice, ours).reason, ended(net.alice, ours).status) == ("rejected", 302)
    other = net.call(follow_redirects=True)
    net.wire.run_for(0.05)
    invite = parse_message(net.wire.sent(b"INVITE ")[-1])
    net.alice.receive(make_response(invite, 301, to_tag="r", extra=[
        ("Contact", "<sip:x@10.0.0.2>")]).to_bytes(), BOB)
    net.alice.run(other, other.give_up(net.wire.now, 301, "Moved Permanently"))
    assert ended(net.alice, other).status == 301
