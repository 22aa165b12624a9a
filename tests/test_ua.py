"""The UA in-process on loopback: two UserAgents on one event loop, no mocks."""

from __future__ import annotations

import pytest

from softphone import ua as ua_module
from softphone.config import Config
from softphone.ua import UserAgent


def config(**network) -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0, **network},
                             "audio": {"codecs": ["PCMU"]}})


@pytest.fixture
async def pair():
    callee = UserAgent(config(max_calls=5), None, auto_answer=True, preload_media=False)
    caller = UserAgent(config(), None, preload_media=False)
    await callee.start()
    await caller.start()
    yield caller, callee, f"sip:b@127.0.0.1:{callee.transport.port}"
    await caller.close(timeout=3)
    await callee.close(timeout=3)


async def test_ended_calls_do_not_count_against_new_ones(pair, monkeypatch):
    """Ended calls are kept a while to absorb retransmissions, in a bounded table that
    never refuses a new call (the first cap counted them and refused calls under load)."""
    caller, callee, target = pair
    monkeypatch.setattr(ua_module, "MAX_ENDED_RECORDS", 3)
    for _ in range(6):
        call = await caller.call(target)
        assert await call.wait_answered(5), call.end_info
        await call.hangup()
        assert call.end_info["reason"] == "hangup"
    assert callee.active_calls() == 0 and caller.active_calls() == 0
    assert len(callee.calls) <= 3 and len(caller.calls) <= 3


async def test_live_call_limits(pair, monkeypatch):
    caller, callee, target = pair
    first = await caller.call(target)
    assert await first.wait_answered(5)
    assert callee.active_calls() == 1
    monkeypatch.setattr(ua_module, "MAX_LIVE_CALLS", 1)
    second = await caller.call(target)
    assert not await second.wait_answered(5)
    assert second.end_info["status"] == 503
    monkeypatch.setattr(ua_module, "MAX_LIVE_CALLS", 1024)
    callee.config = config(max_calls=1)
    third = await caller.call(target)
    assert not await third.wait_answered(5)
    assert third.end_info["status"] == 486
    await first.hangup()
    assert callee.active_calls() == 0
