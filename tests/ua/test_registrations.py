"""Registrations in-process against scripted registrars on loopback: the outbound proxy
is trusted (not rate-limited), and a 503 Retry-After is honoured (RFC 3261 §21.5.4)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from agents import make_agent, port_of, register
from peers.net import LOOPBACK
from softphone.config import Config


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


async def test_register_503_retry_after_is_honoured():
    """A tiny registrar: 503 + Retry-After: 2 to the first REGISTER, 200 to the next."""
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    events: list[tuple[str, dict]] = []

    class Registrar(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.t = transport

        def datagram_received(self, data, addr):
            if not data.startswith(b"REGISTER"):
                return
            arrivals.append(loop.time())
            head = data.split(b"\r\n\r\n")[0].decode()
            keep = "\r\n".join(line + (";tag=r1" if line.startswith("To:") else "")
                               for line in head.split("\r\n")[1:]
                               if line.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq"))
            if len(arrivals) == 1:
                reply = f"SIP/2.0 503 Service Unavailable\r\n{keep}\r\nRetry-After: 2\r\n"
            else:
                contact = re.search(r"^Contact: (.*?);expires", head, re.M).group(1)
                reply = (f"SIP/2.0 200 OK\r\n{keep}\r\nContact: {contact};expires=60\r\n"
                         "Expires: 60\r\n")
            self.t.sendto((reply + "Content-Length: 0\r\n\r\n").encode(), addr)

    reg_t, _ = await loop.create_datagram_endpoint(Registrar, local_addr=(LOOPBACK, 0))
    rport = reg_t.get_extra_info("sockname")[1]
    config = Config.from_dict({
        "accounts": [{"name": "a", "aor": "sip:1001@127.0.0.1", "password": "pw-503",
                      "registrar": f"sip:127.0.0.1:{rport}", "expires": 60}],
        "network": {"listen": "127.0.0.1:0"}})
    ua = make_agent(config, config.accounts[0], events=events)
    await ua.start(preload_media=False)
    try:
        reg = ua.account(None)
        await reg.register()
        assert not await reg.wait_registered(5)  # the first attempt fails with the 503
        assert reg.status == 503
        assert await reg.wait_next(8), events  # the retry, scheduled by Retry-After
        assert len(arrivals) == 2, arrivals
        gap = arrivals[1] - arrivals[0]
        assert 2.0 <= gap < 3.5, gap
        names = [n for n, _ in events]
        assert "registration_failed" in names and names[-1] == "registered"
        assert next(d for n, d in events if n == "registration_failed")["status"] == 503
    finally:
        await ua.close(unregister=False)
        reg_t.close()


class QuietRegistrar(asyncio.DatagramProtocol):
    """A registrar that answers REGISTER (200, Expires 60; its Via ``received`` set to
    ``seen_as`` when given: a NAT in between) and never OPTIONS, as some do; it keeps
    every datagram with the time it came."""

    def __init__(self, seen_as: str | None = None) -> None:
        self.seen_as = seen_as
        self.got: list[tuple[float, bytes]] = []
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, addr):
        self.got.append((self.loop.time(), data))
        if not data.startswith(b"REGISTER"):
            return
        head = data.split(b"\r\n\r\n")[0].decode()
        lines = []
        for line in head.split("\r\n")[1:]:
            name = line.split(":")[0]
            if name == "Via" and self.seen_as:
                line += f";received={self.seen_as}"
            if name in ("Via", "From", "To", "Call-ID", "CSeq"):
                lines.append(line + (";tag=q1" if name == "To" else ""))
        contact = re.search(r"^Contact: (.*?);expires", head, re.M).group(1)
        reply = "\r\n".join(["SIP/2.0 200 OK", *lines, f"Contact: {contact};expires=60",
                             "Expires: 60", "Content-Length: 0", "", ""])
        self.t.sendto(reply.encode(), addr)

    def count(self, start: bytes, since: float = 0.0) -> int:
        return sum(1 for t, d in self.got if d.startswith(start) and t >= since)


async def quiet_registrar(seen_as: str | None = None) -> tuple[Any, QuietRegistrar, int]:
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        lambda: QuietRegistrar(seen_as), local_addr=(LOOPBACK, 0))
    return transport, registrar, transport.get_extra_info("sockname")[1]


async def until(condition, seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


async def test_unanswered_options_keepalives_fall_back_to_crlf():
    """UDP keep-alives are OPTIONS by default; a registrar that never answers them is
    asked again by REGISTER (is the flow alive?) and then kept by CRLFs only."""
    reg_t, registrar, port = await quiet_registrar()
    events: list = []
    config = Config.from_dict({
        "accounts": [{"aor": "sip:1001@127.0.0.1", "password": "pw",
                      "registrar": f"sip:127.0.0.1:{port}", "expires": 60}],
        "network": {"listen": "127.0.0.1:0", "keepalive": 1},
        "sip": {"t1_ms": 50}})  # an OPTIONS gives up after 64 T1 = 3.2 s
    ua = make_agent(config, config.accounts[0], events=events)
    await ua.start(preload_media=False)
    try:
        assert await register(ua)
        await until(lambda: registrar.count(b"REGISTER") >= 2, 10, "the REGISTER after the "
                                                                   "unanswered OPTIONS")
        assert registrar.count(b"OPTIONS") >= 1
        notices = [d["text"] for n, d in events if n == "notice"]
        assert any("connection to the registrar lost" in t for t in notices), notices
        switched = ua.stack.loop.time()
        await until(lambda: registrar.count(b"\r\n\r\n", switched) >= 2, 5, "CRLF keep-alives")
        assert registrar.count(b"OPTIONS", switched) == 0  # no OPTIONS any more
        assert ua.account(None).state == "registered"
    finally:
        await ua.close(unregister=False, timeout=2)
        reg_t.close()


async def test_a_nat_seen_turns_keepalives_on_every_25_s_by_default():
    """No [network] keepalive: off while nobody rewrites our address; once the registrar
    sees us elsewhere (Via received), keep-alives every NAT_KEEPALIVE = 25 s. A configured
    interval wins either way, 0 keeps them off."""
    from softphone.ua.account import NAT_KEEPALIVE

    assert NAT_KEEPALIVE == 25
    for keepalive, seen_as, interval in ((None, None, 0), (None, "192.0.2.7", 25),
                                         (7, None, 7), (0, "192.0.2.7", 0)):
        reg_t, registrar, port = await quiet_registrar(seen_as)
        network = {"listen": "127.0.0.1:0"}
        if keepalive is not None:
            network["keepalive"] = keepalive
        config = Config.from_dict({
            "accounts": [{"aor": "sip:1001@127.0.0.1", "password": "pw",
                          "registrar": f"sip:127.0.0.1:{port}", "expires": 60}],
            "network": network})
        ua = make_agent(config, config.accounts[0])
        await ua.start(preload_media=False)
        try:
            assert await register(ua)
            account = ua.account(None)
            if seen_as:  # the re-REGISTER with the Contact the NAT gave us
                await until(lambda: registrar.count(b"REGISTER") >= 2, 5, "the re-REGISTER")
                await until(lambda: account.state == "registered", 5, "registered again")
            assert account.nat_seen == bool(seen_as)
            assert account.keepalive_interval() == interval
            timer = account._keepalive
            if interval:
                assert timer is not None
                assert interval - 1 < timer.when() - ua.stack.loop.time() <= interval
            else:
                assert timer is None
        finally:
            await ua.close(unregister=False, timeout=2)
            reg_t.close()
