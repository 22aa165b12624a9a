"""The UA in-process on loopback: two UserAgents on one event loop, no mocks."""

from __future__ import annotations

import pytest

from agents import make_agent, port_of, register
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


async def test_the_outbound_proxy_is_not_rate_limited():
    """Everyone's requests reach us through the proxy: limiting it as one source would
    refuse calls from everybody. A stranger with the same burst is limited."""
    import asyncio
    import re
    import uuid

    loop = asyncio.get_running_loop()
    received: list[bytes] = []

    class Peer(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.t = transport

        def datagram_received(self, data, addr):
            received.append(data)
            if data.startswith(b"REGISTER"):  # play registrar: 200 OK
                head = data.split(b"\r\n\r\n")[0].decode()
                keep = [line + (";tag=p" if line.startswith("To:") else "")
                        for line in head.split("\r\n")[1:]
                        if line.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
                reply = "\r\n".join(["SIP/2.0 200 OK", *keep, "Expires: 60",
                                     "Content-Length: 0", "", ""])
                self.t.sendto(reply.encode(), addr)

    proxy_t, proxy = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    stranger_t, stranger = await loop.create_datagram_endpoint(Peer,
                                                               local_addr=("127.0.0.1", 0))
    proxy_port = proxy_t.get_extra_info("sockname")[1]
    cfg = Config.from_dict({
        "accounts": [{"aor": "sip:1001@example.invalid", "password": "x",
                      "registrar": "sip:example.invalid",
                      "outbound_proxy": f"sip:127.0.0.1:{proxy_port};lr", "expires": 60}],
        "network": {"listen": "127.0.0.1:0", "rate_limit": 1, "rate_burst": 2}})
    ua = make_agent(cfg, cfg.accounts[0])
    ua.stack.resolver.pin("example.invalid", "127.0.0.1")  # no DNS in tests: pin the name
    await ua.start(preload_media=False)
    try:
        assert await register(ua)

        async def options_from(transport) -> int:
            """Send 6 OPTIONS at once; count the 200s that come back."""
            before = len(received)
            for _ in range(6):
                msg = (f"OPTIONS sip:1001@127.0.0.1:{port_of(ua)} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
                       f"From: <sip:x@h>;tag=1\r\nTo: <sip:1001@h>\r\n"
                       f"Call-ID: {uuid.uuid4()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
                transport.sendto(msg.encode(), ("127.0.0.1", port_of(ua)))
            for _ in range(100):  # bounded: up to 2 s for the answers
                await asyncio.sleep(0.02)
                answers = received[before:]
                if len(answers) >= 6 or (len(answers) >= 2 and ua.stack.stats["rate_limited"]):
                    break
            await asyncio.sleep(0.1)  # stragglers
            return sum(1 for d in received[before:] if re.match(rb"SIP/2.0 200", d))

        assert await options_from(proxy_t) == 6
        assert await options_from(stranger_t) <= 2  # the burst, then 503 / silence
        assert ua.stack.stats["rate_limited"] > 0
    finally:
        await ua.close(unregister=False, timeout=2)
        proxy_t.close()
        stranger_t.close()


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
