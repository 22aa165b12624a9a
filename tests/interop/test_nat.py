"""NAT for real: the phone in a network namespace behind an nftables masquerade (random
public ports), Kamailio and a STUN server (coturn) outside. The phone learns its public
address (STUN, then the registrar's received/rport), registers with it, keeps the
binding alive, notices when the NAT forgets the binding (conntrack flush) and registers
the new one; a call from outside then reaches it, and its SDP carries the RTP socket's
mapped address."""

from __future__ import annotations

import re

import pytest

from peers import Kamailio, SoftphoneProcess
from peers.nat import PUBLIC_PORTS, NatTopology
from peers.stun import StunServer


def plain_user(contacts: list[str]) -> list[str]:
    """Registered Contacts without the random token of their user part (the stranger
    policy's: sip:1001-<16 hex>@host:port)."""
    return [re.sub(r"^(sip:[^@-]+)-[0-9a-f]{16}@", r"\1@", c) for c in contacts]

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

LOW, HIGH = PUBLIC_PORTS


@pytest.fixture
def nat():
    topology = NatTopology()
    topology.create()
    yield topology
    topology.destroy()


@pytest.fixture
def outside(nat, tmp_path):
    """Kamailio and coturn on the outside address."""
    kam = Kamailio(tmp_path / "kam", port=5060, host=nat.addr_out,
                   prefix=nat.exec_argv(nat.ns_out, [])).start()
    stun = StunServer(tmp_path / "stun", host=nat.addr_out, port=3478,
                      prefix=nat.exec_argv(nat.ns_out, [])).start()
    yield kam, stun
    stun.stop()
    kam.stop()


def config(path, kam: Kamailio, user: str, *, listen: str, register: bool = True,
           network: str = "") -> str:
    sub = kam.subscriber(user)
    path.write_text("\n".join([
        "[[accounts]]", f'name = "u{user}"', f'aor = "sip:{user}@{kam.domain}"',
        f'password = "{sub.password}"', f'registrar = "sip:{kam.host}:{kam.port}"',
        f"register = {'true' if register else 'false'}", "expires = 120", "",
        "[network]", f'listen = "{listen}"', "rtp_ports = [10000, 10100]", "rate_limit = 0",
        network, "", "[audio]", 'backend = "null"', 'codecs = ["PCMU"]', "",
        "[control]", "enabled = false", ""]))
    path.chmod(0o600)
    return str(path)


def public_port(address: str, nat: NatTopology) -> int:
    host, _, port = address.rpartition(":")
    assert host == nat.public, address
    assert LOW <= int(port) <= HIGH, address  # a NAT port, not our 5060
    return int(port)


def test_behind_nat_the_binding_survives_a_reset_and_calls_come_in(nat, outside, softphone,
                                                                   tmp_path):
    kam, stun = outside
    inside = nat.exec_argv(nat.ns_in, [])
    phone = softphone("answer", "--auto", "--config", config(
        tmp_path / "in.toml", kam, "1001", listen=f"{nat.addr_in}:5060",
        network=f'stun_server = "{stun.address}"\nkeepalive = 1'), prefix=inside)
    # without STUN: the first REGISTER carries the private address, the answer's
    # received/rport the public one, and the second REGISTER replaces the binding
    plain = softphone("register", "--config", config(
        tmp_path / "plain.toml", kam, "1002", listen=f"{nat.addr_in}:5062"), prefix=inside)

    # 1. STUN: the SIP socket's mapping goes into the first Contact already
    learned = phone.wait_event("public_address", timeout=15)
    assert learned["source"] == "stun", learned
    port = public_port(learned["address"], nat)
    phone.wait_event("registered", timeout=15)
    assert plain_user(kam.contacts("1001")["1001"]) == [f"sip:1001@{nat.public}:{port}"], \
        kam.ul_dump()

    rport = plain.wait_event("public_address", timeout=15)
    assert rport["source"] == "rport" and rport["previous"] is None, rport
    plain_port = public_port(rport["address"], nat)
    plain.wait_event("registered", timeout=15)
    assert plain_user(kam.wait_registered("1002", contains=f"@{nat.public}:{plain_port}")) == \
        [f"sip:1002@{nat.public}:{plain_port}"], kam.ul_dump()  # the private one removed

    # 2. the NAT forgets every binding; the next keep-alive (an OPTIONS, each second)
    # leaves from a new public port, its answer says so, and the phone registers that
    mark = phone.mark()
    assert f"dport={port}" in nat.bindings()
    nat.reset_bindings()
    moved = phone.wait_event("public_address", timeout=10, since=mark)
    assert moved["source"] == "rport" and moved["previous"] == learned["address"], moved
    new_port = public_port(moved["address"], nat)
    assert new_port != port
    phone.wait_event("registered", timeout=10, since=mark)
    assert plain_user(kam.wait_registered("1001", contains=f":{new_port}")) == \
        [f"sip:1001@{nat.public}:{new_port}"], kam.ul_dump()

    # 3. a call from outside reaches the phone through the new binding; the answer's SDP
    # has the RTP socket's public address, as STUN (from that socket) saw it
    trace = tmp_path / "caller.txt"
    caller = SoftphoneProcess("call", "sip:1001@127.0.0.1", "--duration", "2",
                              "--sip-trace", str(trace), "--config", config(
                                  tmp_path / "out.toml", kam, "1003", register=False,
                                  listen=f"{nat.addr_out}:5070"),
                              prefix=nat.exec_argv(nat.ns_out, []))
    with caller:
        assert caller.wait_event("answered", timeout=20)["codec"] == "PCMU"
        incoming = phone.wait_event("incoming", timeout=5)
        assert incoming["from"].startswith("sip:1003@")
        ended = caller.wait_event("ended", timeout=15)
        assert caller.wait_exit(10) == 0, caller.diagnostics()
    answer = trace.read_text().split("SIP/2.0 200 OK")[1]
    sdp_ip = re.search(r"^c=IN IP4 (\S+)", answer, re.M).group(1)
    sdp_port = int(re.search(r"^m=audio (\d+) ", answer, re.M).group(1))
    assert sdp_ip == nat.public, answer
    assert LOW <= sdp_port <= HIGH, answer  # mapped, not our 10000-10100
    assert ended["rtp"]["received"] > 0, ended
    phone_end = phone.wait_event("ended", timeout=10, call_id=incoming["call_id"])
    assert phone_end["rtp"]["received"] > 0, phone_end  # the caller's RTP came in through it
