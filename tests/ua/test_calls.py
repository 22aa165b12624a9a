"""The UA in-process on loopback: two UserAgents on one event loop, no mocks."""

from __future__ import annotations

import pytest

from agents import make_agent, port_of
from softphone.config import Config
from softphone.ua import agent as agent_module
from softphone.ua.agent import UserAgent


def config(**network) -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0, **network},
                             "audio": {"codecs": ["PCMU"]}})


@pytest.fixture
async def pair():
    callee = make_agent(config(max_calls=5), auto_answer=True)
    caller = make_agent(config())
    await callee.start(preload_media=False)
    await caller.start(preload_media=False)
    yield caller, callee, f"sip:b@127.0.0.1:{port_of(callee)}"
    await caller.close(timeout=3)
    await callee.close(timeout=3)


async def test_ended_calls_do_not_count_against_new_ones(pair, monkeypatch):
    """Ended calls are kept a while to absorb retransmissions, in a bounded table that
    never refuses a new call (the first cap counted them and refused calls under load)."""
    caller, callee, target = pair
    monkeypatch.setattr(agent_module, "MAX_ENDED_RECORDS", 3)
    for _ in range(6):
        call = await caller.dial(target)
        assert await call.wait_answered(5), call.end_info
        await call.hangup()
        assert call.end_info["reason"] == "hangup"
    assert callee.live_calls() == 0 and caller.live_calls() == 0
    assert len(callee.calls) <= 3 and len(caller.calls) <= 3


async def test_live_call_limits(pair, monkeypatch):
    caller, callee, target = pair
    first = await caller.dial(target)
    assert await first.wait_answered(5)
    assert callee.live_calls() == 1
    monkeypatch.setattr(agent_module, "MAX_LIVE_CALLS", 1)
    second = await caller.dial(target)
    assert not await second.wait_answered(5)
    assert second.end_info["status"] == 503
    monkeypatch.setattr(agent_module, "MAX_LIVE_CALLS", 1024)
    callee.config = config(max_calls=1)
    third = await caller.dial(target)
    assert not await third.wait_answered(5)
    assert third.end_info["status"] == 486
    await first.hangup()
    assert callee.live_calls() == 0


async def test_closing_ua_still_answers_a_resent_bye(pair):
    """Our 200 to a BYE is lost; we are closing (``answer --max-calls 1`` after its last
    call). The peer resends the BYE after T1: we must still be there to answer it, or it
    waits 64·T1 for nothing."""
    import asyncio

    caller, callee, target = pair
    call = await caller.dial(target)
    assert await call.wait_answered(5), call.end_info
    seen: list[bytes] = []
    deliver = caller.stack._on_message

    def lossy(data: bytes, peer) -> None:  # the first 200 to the BYE never arrives
        if data.startswith(b"SIP/2.0 200") and b" BYE\r\n" in data:
            seen.append(data)
            if len(seen) == 1:
                return
        deliver(data, peer)

    caller.stack.transport.on_message = lossy
    closed = asyncio.ensure_future(asyncio.wait_for(
        _close_after_bye(callee), timeout=10))
    await asyncio.wait_for(call.hangup(), timeout=10)  # returns on the 200 to the resent BYE
    await closed
    assert len(seen) >= 2, seen  # the first was dropped; the resent BYE got the second


async def _close_after_bye(ua: UserAgent) -> None:
    import asyncio

    for _ in range(250):  # bounded: 5 s for the BYE to arrive
        if any(c.ended for c in ua.calls.values()):
            break
        await asyncio.sleep(0.02)
    await ua.close(timeout=5)


@pytest.mark.parametrize("delay, rings", [(0.0, False), (0.3, True)])
async def test_180_only_when_the_phone_really_rings(delay, rings):
    """Auto-answer at once sends 100 then 200, no 180 (a 180 a moment before the 200 is
    often overtaken by it in a multi-process proxy); with a delay it rings first."""
    wire: list = []
    callee = make_agent(config(), auto_answer=True, answer_delay=delay)
    caller = make_agent(config(), wire=wire)
    await callee.start(preload_media=False)
    await caller.start(preload_media=False)
    try:
        call = await caller.dial(f"sip:b@127.0.0.1:{port_of(callee)}")
        assert await call.wait_answered(5), call.end_info
        seen = [data for _, data in wire]
        statuses = [d.split(b" ")[1] for d in seen if d.startswith(b"SIP/2.0 ")]
        assert statuses[-1] == b"200"
        assert (b"180" in statuses) is rings, statuses
        await call.hangup()
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)


async def test_a_released_call_is_not_kept(monkeypatch):
    """Once its session stops absorbing retransmissions (64·T1) the agent keeps nothing of
    an ended call (the table of ended calls kept every call up to its cap: 4,096 calls
    with their media sessions, ~45 MB over a 2,000-call soak)."""
    import asyncio
    import gc
    import weakref

    quick = Config.from_dict({"network": {"listen": "127.0.0.1:0"}, "sip": {"t1_ms": 10},
                              "audio": {"codecs": ["PCMU"]}})
    callee = make_agent(quick, auto_answer=True)
    caller = make_agent(quick)
    await callee.start(preload_media=False)
    await caller.start(preload_media=False)
    try:
        call = await caller.dial(f"sip:b@127.0.0.1:{port_of(callee)}")
        assert await call.wait_answered(5), call.end_info
        incoming = weakref.ref(next(iter(callee.calls.values())))
        outgoing = weakref.ref(call)
        await call.hangup()
        del call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5  # 64·T1 = 0.64 s
        while (callee.calls or caller.calls) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert not callee.calls and not caller.calls
        gc.collect()
        assert incoming() is None and outgoing() is None
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)
