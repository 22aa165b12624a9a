"""Limits of the stack in-process: oversized input, the per-source rate limit. Real
sockets on loopback, no mocks."""

from __future__ import annotations

import asyncio
import re

from agents import make_agent, port_of
from peers.net import LOOPBACK
from peers.sipmsg import sip_request, status
from softphone.config import Config
from softphone.ua.ratelimit import ALLOW, DROP, REFUSE, RateLimiter


async def test_transport_counts_oversized_and_closes_endless_stream():
    """The counters behind the test above, in-process: UDP > 64 KiB (only reachable in
    code: IPv4 cannot carry it) is counted ``oversized``; a stream without end of headers
    is a ``stream_errors`` and the connection is closed."""
    ua = make_agent(Config.from_dict({"network": {"listen": "127.0.0.1:0"}}))
    await ua.start(preload_media=False)
    transport = ua.stack.transport
    try:
        seen: list[bytes] = []
        transport.on_message = lambda data, peer: seen.append(data)
        from softphone.transport import Peer

        transport._received(b"OPTIONS " + b"x" * (64 * 1024 + 10), Peer("udp", LOOPBACK, 9))
        assert transport.stats["oversized"] == 1 and seen == []
        reader, writer = await asyncio.open_connection(LOOPBACK, transport.port)
        writer.write(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: " + b"y" * (70 * 1024))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the phone
        writer.close()
        assert transport.stats["stream_errors"] == 1
        assert transport._connections == {}
    finally:
        await ua.close(unregister=False)


def test_rate_limiter_token_bucket():
    rl = RateLimiter(rate=10, burst=5, max_sources=3)
    assert [rl.check("a", 0.0) for _ in range(5)] == [ALLOW] * 5
    assert rl.check("a", 0.0) == REFUSE          # first refusal: a 503
    assert rl.check("a", 0.05) == DROP           # then silence for a second
    assert rl.check("b", 0.05) == ALLOW          # other sources are not affected
    assert rl.check("a", 0.2) == ALLOW           # 0.2 s at 10/s refilled two tokens
    assert rl.check("a", 0.2) == ALLOW
    assert rl.check("a", 0.2) == DROP            # < 1 s since the last 503
    assert rl.check("a", 1.1) == ALLOW
    for n in range(10):                          # the table stays bounded
        rl.check(f"spoofed{n}", 2.0)
    assert len(rl) == 3 and rl.stats["evicted"] == 9
    assert rl.stats["refused"] == 1 and rl.stats["dropped"] == 2
    assert RateLimiter(rate=0).check("a", 0) == ALLOW  # 0 = off


async def test_rate_limit_per_source_answers_503_once_then_drops():
    ua = make_agent(Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 50,
                                                  "rate_burst": 100}}))
    await ua.start(preload_media=False)
    loop = asyncio.get_running_loop()
    got: dict[str, list[bytes]] = {"flood": [], "other": []}

    class Client(asyncio.DatagramProtocol):
        def __init__(self, name):
            self.name = name

        def datagram_received(self, data, addr):
            got[self.name].append(data)

    flood_t, _ = await loop.create_datagram_endpoint(lambda: Client("flood"),
                                                     local_addr=(LOOPBACK, 0))
    other_t, _ = await loop.create_datagram_endpoint(lambda: Client("other"),
                                                     local_addr=("127.0.0.2", 0))
    try:
        port = port_of(ua)
        fport = flood_t.get_extra_info("sockname")[1]
        for _ in range(300):  # far more than burst, faster than 50/s refills
            flood_t.sendto(sip_request("OPTIONS", f"sip:x@127.0.0.1:{port}", LOOPBACK, fport),
                           (LOOPBACK, port))
        oport = other_t.get_extra_info("sockname")[1]
        other_t.sendto(sip_request("OPTIONS", f"sip:x@127.0.0.1:{port}", "127.0.0.2", oport),
                       (LOOPBACK, port))
        deadline = loop.time() + 5
        while loop.time() < deadline and (not got["other"] or ua.stack.transport.stats["received"] < 301):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let the last answers land
        codes = [status(d) for d in got["flood"]]
        ok, refused = codes.count(200), codes.count(503)
        assert 100 <= ok <= 130, codes  # the burst, plus what refilled while we sent
        assert refused == 1, codes      # one 503 per second per source, the rest dropped
        assert ok + refused < 300
        retry = re.search(rb"Retry-After: (\d+)", next(d for d in got["flood"] if status(d) == 503))
        assert retry and int(retry.group(1)) >= 1
        assert ua.stack.stats["rate_limited"] == 300 - ok
        assert [status(d) for d in got["other"]] == [200]  # another source is still served
        assert len(ua.stack.tx._ctx) <= ok + 1                # refused requests hold nothing
    finally:
        flood_t.close()
        other_t.close()
        await ua.close(unregister=False)
