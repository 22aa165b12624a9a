"""RFC 3263 resolution against a real DNS server (dnsmasq on loopback): NAPTR picks the
transport, SRV the servers in priority order, A their addresses; explicit ports,
transports, numeric hosts and ;maddr skip what they make unnecessary; answers live for
their TTL; failures name the name."""

from __future__ import annotations

import random
import re
import time

import pytest

from peers.dnsmasq import Dnsmasq
from softphone.sip.uri import parse_uri
from softphone.transport import Peer
from softphone.ua.resolver import ResolveError, Resolver

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

RECORDS = [
    # pbx.test: NAPTR prefers TCP (order 10) over UDP (order 20)
    "--naptr-record=pbx.test,20,10,S,SIP+D2U,,_sip._udp.pbx.test",
    "--naptr-record=pbx.test,10,10,S,SIP+D2T,,_sip._tcp.pbx.test",
    "--naptr-record=pbx.test,5,10,S,SIP+D2S,,_sip._sctp.pbx.test",  # SCTP: not ours
    "--srv-host=_sip._tcp.pbx.test,a.pbx.test,5071,10,0",
    "--srv-host=_sip._udp.pbx.test,a.pbx.test,5072,10,0",
    "--srv-host=_sips._tcp.pbx.test,a.pbx.test,5073,10,0",
    # two.test: no NAPTR; UDP SRV with two priorities (the lower one first)
    "--srv-host=_sip._udp.two.test,second.two.test,6002,20,10",
    "--srv-host=_sip._udp.two.test,first.two.test,6001,10,10",
    "--srv-host=_sip._tcp.two.test,first.two.test,6011,10,10",
    "--host-record=a.pbx.test,127.0.0.11",
    "--host-record=first.two.test,127.0.0.21",
    "--host-record=second.two.test,127.0.0.22",
    "--host-record=plain.test,127.0.0.31",  # A only
    "--srv-host=_sip._udp.both.test,first.two.test,6001,10,10",  # SRV and A
    "--host-record=both.test,127.0.0.61",
    # weights.test: one priority, weights 10 and 30 (RFC 2782's weighted draw)
    "--srv-host=_sip._udp.weights.test,first.two.test,6101,10,10",
    "--srv-host=_sip._udp.weights.test,second.two.test,6102,10,30",
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    run = tmp_path_factory.mktemp("dns")
    hosts = run / "hosts"
    hosts.write_text("127.0.0.41 moving.test\n")
    server = Dnsmasq(run, RECORDS, hosts_file=hosts, ttl=1)
    server.start()
    yield server
    server.stop()


def resolver(dns) -> Resolver:
    return Resolver(servers=(dns.server,))


def targets(peers: list[Peer]) -> list[tuple[str, str, int]]:
    return [(p.proto, p.host, p.port) for p in peers]


async def test_naptr_picks_tcp_then_srv_then_a(dns):
    found = await resolver(dns).resolve_all(parse_uri("sip:pbx.test"))
    assert targets(found) == [("tcp", "127.0.0.11", 5071)]
    assert found[0].name == "pbx.test"  # what TLS checks: the SIP domain (RFC 5922)


async def test_sips_follows_only_sips_services(dns):
    found = await resolver(dns).resolve_all(parse_uri("sips:pbx.test"))
    assert targets(found) == [("tls", "127.0.0.11", 5073)]


async def test_transport_parameter_skips_naptr(dns):
    found = await resolver(dns).resolve_all(parse_uri("sip:pbx.test;transport=udp"))
    assert targets(found) == [("udp", "127.0.0.11", 5072)]
    # the account's transport does the same
    found = await resolver(dns).resolve_all(parse_uri("sip:pbx.test"), "udp")
    assert targets(found) == [("udp", "127.0.0.11", 5072)]


async def test_without_naptr_srv_priority_orders_the_failover_list(dns):
    found = await resolver(dns).resolve_all(parse_uri("sip:two.test"))
    # UDP is the first transport whose SRV exists; the TCP servers are not mixed in
    assert targets(found) == [("udp", "127.0.0.21", 6001), ("udp", "127.0.0.22", 6002)]


class Draws(random.Random):
    """The resolver's random source, scripted: ``randint`` returns the next draw given
    and remembers what it was asked."""

    def __init__(self, draws: list[int]) -> None:
        super().__init__(0)
        self.draws, self.asked = list(draws), []

    def randint(self, a: int, b: int) -> int:
        self.asked.append((a, b))
        return self.draws.pop(0)


@pytest.mark.parametrize("draw, first", [(0, 6101), (10, 6101), (11, 6102), (40, 6102)])
async def test_srv_weights_order_one_priority_by_a_weighted_draw(dns, draw, first):
    """RFC 2782: the records sorted by weight (10, 30) are summed as they go; the first
    whose running sum reaches a draw in [0, 40] goes first: 0-10 the light one, 11-40
    the heavy one (so 3 times in 4); the rest is drawn again among what is left."""
    rng = Draws([draw, 0])
    found = await Resolver(servers=(dns.server,), rng=rng).resolve_all(
        parse_uri("sip:weights.test"))
    assert [p.port for p in found] == [first, 6101 + 6102 - first]
    assert rng.asked[0] == (0, 40)  # the sum of the weights


async def test_a_failed_target_goes_to_the_back(dns):
    r = resolver(dns)
    first = (await r.resolve_all(parse_uri("sip:two.test")))[0]
    r.failed(first)
    again = await r.resolve_all(parse_uri("sip:two.test"))
    assert targets(again) == [("udp", "127.0.0.22", 6002), ("udp", "127.0.0.21", 6001)]
    r.succeeded(first)
    assert (await r.resolve_all(parse_uri("sip:two.test")))[0] == first


async def test_explicit_port_uses_the_a_record_not_srv(dns):
    r = resolver(dns)
    assert targets(await r.resolve_all(parse_uri("sip:both.test"))) == \
        [("udp", "127.0.0.21", 6001)]
    assert targets(await r.resolve_all(parse_uri("sip:both.test:7000"))) == \
        [("udp", "127.0.0.61", 7000)]


async def test_no_srv_falls_back_to_a_at_the_default_port(dns):
    found = await resolver(dns).resolve_all(parse_uri("sip:bob@plain.test"))
    assert targets(found) == [("udp", "127.0.0.31", 5060)]
    found = await resolver(dns).resolve_all(parse_uri("sip:bob@plain.test:5090;transport=tcp"))
    assert targets(found) == [("tcp", "127.0.0.31", 5090)]


async def test_numeric_and_maddr_targets_ask_no_dns(dns):
    r = resolver(dns)
    before = dns.log_text().count("query[")
    found = await r.resolve_all(parse_uri("sip:bob@unasked.test:5070;maddr=127.0.0.51"))
    assert targets(found) == [("udp", "127.0.0.51", 5070)]
    assert targets(await r.resolve_all(parse_uri("sip:bob@127.0.0.52"))) == \
        [("udp", "127.0.0.52", 5060)]
    assert dns.log_text().count("query[") == before, dns.log_text()[-500:]


async def test_failures_name_the_name(dns):
    with pytest.raises(ResolveError, match=r"^DNS: no SRV or A record for nowhere\.test$"):
        await resolver(dns).resolve_all(parse_uri("sip:nowhere.test"))
    with pytest.raises(ResolveError, match=r"^DNS: no A record for two\.test$"):
        await resolver(dns).resolve_all(parse_uri("sip:two.test:7000"))


async def test_a_dead_dns_server_is_named(tmp_path):
    from peers.net import free_udp_port

    r = Resolver(servers=(f"127.0.0.1:{free_udp_port()}",))  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ResolveError) as info:
        await r.resolve_all(parse_uri("sip:pbx.test"))
    assert "pbx.test" in str(info.value) and str(info.value).startswith("DNS: ")
    assert time.monotonic() - started < 10


async def test_answers_are_kept_for_their_ttl_and_no_longer(dns):
    r = resolver(dns)
    uri = parse_uri("sip:bob@moving.test:5060")
    assert targets(await r.resolve_all(uri)) == [("udp", "127.0.0.41", 5060)]
    asked = dns.log_text().count("query[A] moving.test")
    dns.hosts_file.write_text("127.0.0.42 moving.test\n")
    dns.reload()
    # within the TTL (1 s): the cached answer, and no new query
    assert targets(await r.resolve_all(uri)) == [("udp", "127.0.0.41", 5060)]
    assert dns.log_text().count("query[A] moving.test") == asked
    deadline = time.monotonic() + 5
    while True:  # after it: asked again, the new address
        found = await r.resolve_all(uri)
        if targets(found) == [("udp", "127.0.0.42", 5060)]:
            break
        assert time.monotonic() < deadline, "the cached answer outlived its TTL"
        await __import__("asyncio").sleep(0.1)
    assert dns.log_text().count("query[A] moving.test") > asked
    assert re.search(r"query\[A\] moving\.test", dns.log_text())
