"""RFC 6665 subscriptions, both sides, on the in-memory wire with a fake clock."""

from __future__ import annotations

from harness import Endpoint, Wire
from softphone.sip.caps import Capabilities
from softphone.sip.events import NotifyReceived, SubscriptionState
from softphone.sip.message import make_response
from softphone.sip.subscription import (EventPackage, Notifier, PackageRegistry, Subscriber,
                                        SubscriptionOptions, event_of, parse_subscription_state)
from softphone.sip.uri import NameAddr

A, B = "10.0.0.1", "10.0.0.2"
MWI = EventPackage("message-summary", accept=("application/simple-message-summary",),
                   default_expires=600)
BODY = b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n"


class Server:
    def __init__(self) -> None:
        self.caps = Capabilities()
        self.registry = PackageRegistry()
        self.registry.register(MWI, self.caps)
        self.notifiers: list[Notifier] = []

    def __call__(self, endpoint: Endpoint, request):
        if request.method != "SUBSCRIBE":
            return None
        package = self.registry.get(event_of(request)[0])
        if package is None or not package.subscribable:
            endpoint._send_response(make_response(request, 489, to_tag="x", extra=[
                ("Allow-Events", self.caps.allow_events)]))
            return None
        notifier = Notifier.from_subscribe(package, SubscriptionOptions(endpoint.contact("b")),
                                           request)
        self.notifiers.append(notifier)
        endpoint.run(notifier, notifier.accept(request, endpoint.now))
        endpoint.run(notifier, notifier.notify(endpoint.now, BODY, MWI.accept[0]))
        return notifier


def setup(package: EventPackage = MWI, expires: int = 600):
    wire = Wire()
    a = wire.add(Endpoint(A))
    server = Server()
    b = wire.add(Endpoint(B, on_new_request=server))
    sub = Subscriber(package, SubscriptionOptions(a.contact("a")), request_uri=b.uri("mbox"),
                     local=NameAddr(a.uri("a")), remote=NameAddr(b.uri("mbox")),
                     target=b.uri("mbox"), expires=expires)
    return wire, a, b, server, sub


def test_subscribe_notify_refresh_and_unsubscribe():
    wire, a, b, server, sub = setup()
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    (note,) = a.events_of(sub, NotifyReceived)
    assert note.state == "active" and note.body == BODY
    assert sub.state == "active" and sub.granted == 600
    assert a.events_of(sub, SubscriptionState)[-1].state == "active"
    subscribes = lambda: [d for *_, d in wire.log if d.startswith(b"SUBSCRIBE")]  # noqa: E731
    wire.run(530)
    assert len(subscribes()) == 1
    wire.run(545)  # refreshed at 90 % of the lease
    assert len(subscribes()) == 2 and b"Expires: 600" in subscribes()[1]
    assert b"CSeq: 2 SUBSCRIBE" in subscribes()[1]
    a.run(sub, sub.unsubscribe(wire.now))
    wire.run_for(1)
    assert b"Expires: 0" in subscribes()[-1]
    assert sub.state == "terminated" and server.notifiers[0].state == "terminated"
    final = [d for *_, d in wire.log if d.startswith(b"NOTIFY")][-1]
    assert b"Subscription-State: terminated;reason=timeout" in final


def test_notify_before_the_200_creates_the_dialog():
    wire, a, b, server, sub = setup()
    # the 200 to SUBSCRIBE is lost; the NOTIFY gets through first
    dropped = []
    wire.drop = lambda src, dst, data: (data.startswith(b"SIP/2.0 200") and b"SUBSCRIBE" in
                                        data and not dropped and not dropped.append(1)) or False
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(0.1)
    assert sub.dialog is not None and a.events_of(sub, NotifyReceived)
    wire.run_for(2)  # the resent SUBSCRIBE gets the 200 from the server's transaction
    assert sub.state == "active"


def test_unknown_package_gets_489_and_the_subscription_ends():
    wire, a, b, server, sub = setup(EventPackage("presence"))
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    (state,) = a.events_of(sub, SubscriptionState)
    assert state.state == "terminated" and state.reason.startswith("489")
    assert b"Allow-Events: message-summary" in wire.sent(b"SIP/2.0 489")[0]


def test_notifier_expires_with_a_final_notify():
    wire, a, b, server, sub = setup(expires=120)
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    wire.drop = lambda src, dst, data: data.startswith(b"SUBSCRIBE")  # refreshes get lost
    wire.run(200)
    notifies = [d for *_, d in wire.log if d.startswith(b"NOTIFY")]
    assert b"terminated;reason=timeout" in notifies[-1]
    assert sub.state == "terminated" and sub.reason == "timeout"


def test_notify_for_another_event_in_the_dialog_is_not_claimed():
    wire, a, b, server, sub = setup()
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    notifier = server.notifiers[0]
    stray = notifier.dialog.create_request("NOTIFY", extra=[
        ("Event", "presence"), ("Subscription-State", "active")])
    b.run(notifier, [notifier._send(stray)])
    wire.run_for(1)
    assert wire.sent(b"SIP/2.0 405")  # the dialog exists; nobody claims that event


def test_subscription_state_header_parsing():
    assert parse_subscription_state("active;expires=600") == ("active", {"expires": "600"})
    assert parse_subscription_state("terminated;reason=noresource;retry-after=30") == (
        "terminated", {"reason": "noresource", "retry-after": "30"})
    assert parse_subscription_state("") == ("", {})


def test_implicit_subscription_shares_the_invite_dialog():
    """A REFER's implicit subscription (RFC 3515): NOTIFYs in the INVITE's dialog go to
    the subscriber, the BYE to the session; CSeq is one space for both."""
    from test_invite_session import Net

    net = Net()
    ours, theirs = net.connect()
    refer = EventPackage("refer", accept=("message/sipfrag",), subscribable=False,
                         default_expires=60)
    watcher = Subscriber(refer, SubscriptionOptions(net.alice.contact("alice")),
                         dialog=ours.dialog, implicit=True)
    net.alice.run(watcher, watcher.subscribe(net.wire.now))
    notifier = Notifier(refer, SubscriptionOptions(net.bob.contact("bob")), theirs.dialog,
                        implicit=True, expires=60)
    net.bob.run(notifier, notifier.start_implicit(net.wire.now))
    net.bob.run(notifier, notifier.notify(net.wire.now, b"SIP/2.0 100 Trying\r\n",
                                          "message/sipfrag"))
    net.bob.run(notifier, notifier.notify(net.wire.now, b"SIP/2.0 200 OK\r\n",
                                          "message/sipfrag", final=True, reason="noresource"))
    net.wire.run_for(1)
    frags = [n.body for n in net.alice.events_of(watcher, NotifyReceived)]
    assert frags == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]
    assert watcher.state == "terminated"
    net.bob.run(theirs, theirs.hangup(net.wire.now))
    net.wire.run_for(1)
    bye = net.wire.sent(b"BYE ", src=B)[0]
    assert b"CSeq: 3 BYE" in bye  # after the two NOTIFYs (CSeq 1 was bob's… none: 1, 2)
    assert net.alice.events_of(ours)[-2:] and ours.ended.reason == "remote-hangup"


def test_a_notify_from_a_second_fork_is_refused_with_481():
    """RFC 6665 §4.5.2: a forked SUBSCRIBE can bring NOTIFYs in two dialogs. We keep one
    subscription per SUBSCRIBE (the first dialog); a NOTIFY from another fork gets 481,
    which ends that fork's subscription at its notifier (§4.1.3), and the first goes on."""
    wire, a, b, server, sub = setup()
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    assert sub.state == "active"
    first = server.notifiers[0]
    subscribe = next(d for *_, d in wire.log if d.startswith(b"SUBSCRIBE"))
    from softphone.sip.message import parse_message
    fork = Notifier.from_subscribe(MWI, SubscriptionOptions(b.contact("fork")),
                                   parse_message(subscribe))  # another branch took it too
    assert fork.dialog.local_tag != first.dialog.local_tag
    b.run(fork, fork.accept(parse_message(subscribe), wire.now)[:1])  # its dialog only
    fork.state, fork.expires_at = "active", wire.now + 600
    b.run(fork, fork.notify(wire.now, b"Messages-Waiting: no\r\n", MWI.accept[0]))
    wire.run_for(1)
    assert wire.sent(b"SIP/2.0 481", src=A), wire.log
    assert fork.state == "terminated" and fork.reason.startswith("481")
    bodies = [n.body for n in a.events_of(sub, NotifyReceived)]
    assert bodies == [BODY]  # the second fork's state never reached the subscriber
    assert sub.state == "active" and sub.dialog.remote_tag == first.dialog.local_tag
    b.run(first, first.notify(wire.now, b"Messages-Waiting: no\r\n", MWI.accept[0]))
    wire.run_for(1)
    assert [n.body for n in a.events_of(sub, NotifyReceived)][-1] == b"Messages-Waiting: no\r\n"


def test_a_lost_notify_is_resent_and_reported_once():
    """The NOTIFY is lost once, then its 200: the notifier's transaction resends it
    (T1, 2·T1 …) and the subscriber's answers the copy from its transaction — the state
    change is reported once."""
    wire, a, b, server, sub = setup()
    a.run(sub, sub.subscribe(wire.now))
    wire.run_for(1)
    notifier = server.notifiers[0]
    lost = []

    def drop(src, dst, data):
        if data.startswith(b"NOTIFY") and b"Messages-Waiting: no" in data and len(lost) < 1:
            lost.append("notify")
            return True
        if data.startswith(b"SIP/2.0 200") and b"NOTIFY" in data and len(lost) == 1:
            lost.append("200")
            return True
        return False

    wire.drop = drop
    b.run(notifier, notifier.notify(wire.now, b"Messages-Waiting: no\r\n", MWI.accept[0]))
    wire.run_for(5)
    assert lost == ["notify", "200"]
    copies = [d for *_, d in wire.log + wire.lost if d.startswith(b"NOTIFY")
              and b"Messages-Waiting: no" in d]
    assert len(copies) >= 3  # lost, delivered (200 lost), delivered again
    bodies = [n.body for n in a.events_of(sub, NotifyReceived)]
    assert bodies == [BODY, b"Messages-Waiting: no\r\n"]
    assert notifier.state == "active" and sub.state == "active"
