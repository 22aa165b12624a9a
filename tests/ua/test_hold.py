"""Hold and resume with our own re-INVITE (RFC 3264 §8.4), in-process on loopback and
against baresip through Kamailio."""

from __future__ import annotations

import asyncio
import re

import pytest

from media_helpers import wait_for
from agents import make_agent, port_of
from softphone.config import Config
from softphone.ua.call import CallError


def config() -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0},
                             "audio": {"codecs": ["PCMU"]}})


class Side:
    """One UA with what it emitted and what it put on the wire."""

    def __init__(self, **kw) -> None:
        self.events: list[tuple[str, dict]] = []
        self.wire: list[tuple[str, bytes]] = []
        self.ua = make_agent(config(), events=self.events, wire=self.wire, **kw)

    def holds(self) -> list[dict]:
        return [d for n, d in self.events if n == "hold"]

    def sent(self, pattern: bytes) -> list[bytes]:
        return [d for direction, d in self.wire if direction == "sent" and re.match(pattern, d)]

    def received(self, pattern: bytes) -> list[bytes]:
        return [d for direction, d in self.wire
                if direction == "received" and re.match(pattern, d)]


@pytest.fixture
async def connected():
    alice, bob = Side(), Side(auto_answer=True)
    await bob.ua.start(preload_media=False)
    await alice.ua.start(preload_media=False)
    call = await alice.ua.dial(f"sip:bob@127.0.0.1:{port_of(bob.ua)}")
    assert await call.wait_answered(5), call.end_info
    theirs = bob.ua.calls[call.call_id]
    await wait_for(lambda: call.stats()["received"] > 5 and theirs.stats()["received"] > 5,
                   5, "RTP both ways")
    yield alice, bob, call, theirs
    await alice.ua.close(timeout=3)
    await bob.ua.close(timeout=3)


async def test_hold_and_resume(connected):
    alice, bob, call, theirs = connected
    await call.set_hold(True)
    assert call.on_hold and not call.remote_hold
    assert theirs.remote_hold and not theirs.on_hold
    assert call.media.direction == "sendonly" and theirs.media.direction == "recvonly"
    assert call.media.rtp.muted  # the held party hears silence, not the room
    assert alice.holds()[-1] == {"call_id": call.call_id, "local": True, "remote": False}
    assert bob.holds()[-1] == {"call_id": call.call_id, "local": False, "remote": True}
    offer = alice.sent(rb"INVITE ")[-1]
    assert b"CSeq: 2 INVITE" in offer and b"a=sendonly" in offer
    assert b"a=recvonly" in alice.received(rb"SIP/2\.0 200 .*\r\n(?:.*\r\n)*CSeq: 2 INVITE")[-1]
    await wait_for(lambda: alice.sent(rb"ACK .*\r\n(?:.*\r\n)*CSeq: 2 ACK"), 2, "the ACK")
    # the held side stops sending; we keep sending (silence)
    sent_by_bob = theirs.stats()["sent"]
    sent_by_us = call.stats()["sent"]
    await wait_for(lambda: call.stats()["sent"] >= sent_by_us + 10, 5, "our RTP during hold")
    assert theirs.stats()["sent"] <= sent_by_bob + 1  # at most one already due
    await call.set_hold(False)
    assert not call.on_hold and not theirs.remote_hold and not call.media.rtp.muted
    assert call.media.direction == theirs.media.direction == "sendrecv"
    assert bob.holds()[-1]["remote"] is False
    await wait_for(lambda: theirs.stats()["sent"] >= sent_by_bob + 10, 5, "their RTP after resume")
    assert b"CSeq: 3 INVITE" in alice.sent(rb"INVITE ")[-1]
    await call.hangup()
    assert call.end_info["reason"] == "hangup"


async def test_mute_survives_hold(connected):
    _, _, call, _ = connected
    call.set_muted(True)
    await call.set_hold(True)
    await call.set_hold(False)
    assert call.muted and call.media.rtp.muted  # resume gives back the user's own mute state


async def test_both_sides_hold_at_once_glare_resolves(connected):
    """Each side's re-INVITE meets the other's: both get 491, back off at random (§14.1:
    the callee 0–2 s, the caller 2.1–4 s) and retry; both end up holding."""
    alice, bob, call, theirs = connected
    await asyncio.wait_for(asyncio.gather(call.set_hold(True), theirs.set_hold(True)), 20)
    assert call.on_hold and theirs.on_hold and call.remote_hold and theirs.remote_hold
    assert call.media.direction == theirs.media.direction == "inactive"
    assert alice.received(rb"SIP/2\.0 491 ") or bob.received(rb"SIP/2\.0 491 ")


async def test_hold_needs_a_connected_call_and_one_at_a_time(connected):
    _, _, call, _ = connected
    first = asyncio.ensure_future(call.set_hold(True))
    await asyncio.sleep(0)  # let it start
    with pytest.raises(CallError, match="already in progress"):
        await call.set_hold(True)
    await first
    await call.hangup()
    with pytest.raises(CallError, match="connected call"):
        await call.set_hold(False)


async def test_refused_reinvite_leaves_the_session_as_it_was(connected):
    """A 488 to the hold offer: still talking, no hold claimed (RFC 3261 §14.1)."""
    alice, bob, call, theirs = connected
    from softphone.sip.negotiator import MediaPolicy

    theirs.session.negotiator.policy = MediaPolicy(codecs=("G722",))  # nothing in common
    with pytest.raises(CallError, match="488"):
        await call.set_hold(True)
    assert not call.on_hold and not theirs.remote_hold and not call.ended
    assert call.media.direction == "sendrecv" and not call.media.rtp.muted
