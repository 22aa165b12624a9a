"""STUN (RFC 5389) against a real server, coturn, on loopback: the binding from the SIP
socket and from a call's RTP socket (borrowed before the stream starts, handed back after);
a server that is not there fails with its address and a bound time."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents import make_agent
from peers.net import free_udp_port
from peers.stun import StunServer
from softphone.config import Config
from softphone.transport import StunError
from softphone.ua.media_session import MediaSession

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def stun(tmp_path_factory):
    server = StunServer(tmp_path_factory.mktemp("stun"))
    server.start()
    yield server
    server.stop()


async def test_the_sip_socket_binding(stun):
    cfg = Config.from_dict({"network": {"listen": "127.0.0.1:0",
                                        "stun_server": stun.address}})
    ua = make_agent(cfg)
    await ua.start(preload_media=False)
    try:
        mapped = await ua.stack.addresses.stun_binding()
        assert mapped == ("127.0.0.1", ua.stack.transport.port)  # loopback: no NAT between
        assert ua.stack.addresses.stun_mapped == mapped
        # the answer went to STUN, not to the SIP parser sharing the socket
        assert ua.stack.stats["parse_errors"] == 0
    finally:
        await ua.close(unregister=False, timeout=1)


async def test_the_rtp_socket_binding_and_the_stream_afterwards(stun):
    media = MediaSession(lambda: (None, None))
    await media.open("127.0.0.1", (30000, 30999))
    try:
        mapped = await media.stun_binding(("127.0.0.1", stun.port))
        assert mapped == ("127.0.0.1", media.local_port)
        port = media.rtp.rtp_transport.get_protocol()
        assert port.on_rtp.__name__ == "_drop"  # handed back: the stream will set its own
    finally:
        await media.close()


async def test_no_server_fails_naming_it_within_the_timeout():
    cfg = Config.from_dict({"network": {"listen": "127.0.0.1:0",
                                        "stun_server": f"127.0.0.1:{free_udp_port()}"}})
    ua = make_agent(cfg)
    await ua.start(preload_media=False)
    try:
        started = time.monotonic()
        with pytest.raises(StunError, match=r"STUN server 127\.0\.0\.1:\d+ did not answer"):
            await ua.stack.addresses.stun_binding(timeout=1.0)
        assert time.monotonic() - started < 3
    finally:
        await ua.close(unregister=False, timeout=1)
        await asyncio.sleep(0)
