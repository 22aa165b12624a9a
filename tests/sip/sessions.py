"""Two INVITE sessions on the in-memory wire: Alice (UAC) and Bob (UAS), each with the
extensions a test gives them (a list, or a factory called for each new session)."""

from __future__ import annotations

import random
from typing import Callable

from harness import Endpoint, Wire
from softphone.sip.caps import Capabilities
from softphone.sip.challenge import Authenticator
from softphone.sip.events import CallEnded
from softphone.sip.ids import new_call_id, new_tag
from softphone.sip.invite import InviteExtension, InviteSession, InviteState, SessionOptions
from softphone.sip.message import Request
from softphone.sip.negotiator import MediaPolicy, SdpNegotiator
from softphone.sip.transaction import TimerConfig
from softphone.sip.uri import NameAddr

T = TimerConfig()
ALICE, BOB = "10.0.0.1", "10.0.0.2"

Extensions = list[InviteExtension] | Callable[[], list[InviteExtension]]


def caps(*methods: str, tags: tuple[str, ...] = ()) -> Capabilities:
    c = Capabilities()
    c.add_method("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", *methods)
    c.add_option_tag(*tags)
    return c


def negotiator(host: str, port: int) -> SdpNegotiator:
    return SdpNegotiator(MediaPolicy(codecs=("PCMU", "PCMA")), address=host, port=port)


def _made(extensions) -> list[InviteExtension]:
    return extensions() if callable(extensions) else list(extensions or [])


class Net:
    """Alice (UAC) and Bob (UAS) on one wire; Bob's sessions are made as INVITEs come."""

    def __init__(self, *, bob_answers: str | None = None, rng_seed: int = 1,
                 alice_caps: Capabilities | None = None,
                 bob_caps: Capabilities | None = None) -> None:
        self.wire = Wire()
        self.alice = self.wire.add(Endpoint(ALICE))
        self.bob = self.wire.add(Endpoint(BOB, on_new_request=self._new))
        self.bob_sessions: list[InviteSession] = []
        self.bob_answers = bob_answers  # None | "ring" | "answer" | "ring+answer"
        self.bob_auth: Authenticator | None = None
        self.rng = random.Random(rng_seed)
        self.bob_extensions: Extensions = []
        self.alice_caps = alice_caps
        self.bob_caps = bob_caps

    def _new(self, endpoint: Endpoint, request: Request):
        if request.method != "INVITE":
            return None
        session = InviteSession.incoming(
            request, local_tag=new_tag(), negotiator=negotiator(BOB, 20000),
            options=SessionOptions(contact=endpoint.contact("bob"),
                                   caps=self.bob_caps or caps(), rng=self.rng,
                                   extensions=_made(self.bob_extensions)),
            authenticator=self.bob_auth)
        self.bob_sessions.append(session)
        endpoint.run(session, session.start(endpoint.now))
        endpoint.run(session, session.media_ready(endpoint.now))
        if self.bob_answers and "ring" in self.bob_answers:
            endpoint.run(session, session.ring(endpoint.now))
        if self.bob_answers and "answer" in self.bob_answers:
            endpoint.run(session, session.answer(endpoint.now))
        return session

    def call(self, *, auth: Authenticator | None = None, start: bool = True,
             extensions: Extensions | None = None, follow_redirects: bool = False
             ) -> InviteSession:
        session = InviteSession.outgoing(
            request_uri=self.bob.uri("bob"), local=NameAddr(self.alice.uri("alice")),
            remote=NameAddr(self.bob.uri("bob")), target=self.bob.uri("bob"),
            call_id=new_call_id(), local_tag=new_tag(), negotiator=negotiator(ALICE, 10000),
            options=SessionOptions(contact=self.alice.contact("alice"),
                                   caps=self.alice_caps or caps(), rng=self.rng,
                                   extensions=_made(extensions),
                                   follow_redirects=follow_redirects),
            authenticator=auth)
        if start:
            self.alice.run(session, session.start(self.wire.now))
        return session

    @property
    def theirs(self) -> InviteSession:
        assert self.bob_sessions, "no INVITE reached bob"
        return self.bob_sessions[-1]

    def connect(self, **call) -> tuple[InviteSession, InviteSession]:
        ours = self.call(**call)
        self.wire.run_for(1)
        theirs = self.theirs
        self.bob.run(theirs, theirs.answer(self.wire.now))
        self.wire.run_for(1)
        assert ours.state is InviteState.CONFIRMED and theirs.state is InviteState.CONFIRMED
        return ours, theirs


def ended(endpoint: Endpoint, session) -> CallEnded:
    found = endpoint.events_of(session, CallEnded)
    assert len(found) == 1, found
    return found[0]
