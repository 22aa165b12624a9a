"""The scenario runner over two phones in this process (real SIP on loopback between
them), for an ending that two processes cannot time reliably: the caller gives up before
the answering scenario reaches its answer step."""

from __future__ import annotations

import asyncio

import pytest

from softphone.config import Config
from softphone.scenario import parse_scenario
from softphone.scenario.runner import ScenarioRunner
from softphone.ua.phone import Phone, PhoneOptions

pytestmark = pytest.mark.timeout(30)


def phone(user: str) -> Phone:
    config = Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                               "audio": {"backend": "null", "codecs": ["PCMU"]}})
    return Phone(config, PhoneOptions(listen="127.0.0.1:0", user=user, control=False,
                                      preload_media=False))


async def first(phone: Phone, name: str, timeout: float = 5.0):
    """The next event called ``name`` on ``phone``'s bus (bounded)."""
    seen = asyncio.get_running_loop().create_future()
    unsubscribe = phone.bus.subscribe(
        lambda e: e.name == name and not seen.done() and seen.set_result(e))
    try:
        return await asyncio.wait_for(seen, timeout)
    finally:
        unsubscribe()


async def test_answer_fails_when_the_caller_cancelled_first():
    callee, caller = phone("ivr"), phone("bob")
    await callee.start()
    await caller.start()
    runner = ScenarioRunner(callee, parse_scenario(
        {"steps": [{"step": "answer"}, {"step": "hangup"}]}, "answer"))
    lines: list[str] = []
    runner.say = lines.append
    try:
        incoming = asyncio.ensure_future(first(callee, "incoming"))
        call_id = (await caller.execute(
            "dial", {"uri": f"sip:ivr@127.0.0.1:{callee.address[1]}"}))["call_id"]
        await incoming
        ended = asyncio.ensure_future(first(callee, "ended"))
        await caller.execute("hangup", {"call_id": call_id})  # CANCEL while it rings
        assert (await ended).reason == "cancelled"
        # only now does the scenario take the call: its answer step finds it over
        await asyncio.wait_for(runner.serve(max_calls=1, stop=asyncio.Event()), 10)
    finally:
        runner.close()
        await caller.close(timeout=2)
        await callee.close(timeout=2)
    [result] = runner.results
    answer, hangup = result.steps
    assert (answer.kind, answer.result) == ("answer", "failed")
    assert answer.message.startswith("the call has ended: cancelled"), answer.message
    assert (hangup.result, hangup.message) == ("skipped", "the call had ended")
    assert lines[0].startswith("call 1 step 1/2 answer: failed: the call has ended: "
                               "cancelled")
