"""RFC 3263 from config to the wire: a real DNS server (dnsmasq on loopback) names two
real Kamailio registrars; the phone registers by SRV (priority), fails over to the second
when the first is stopped, lets NAPTR pick TCP, re-registers at once when its TCP flow dies
(reset, or no CRLF pong), calls a name, sends in-dialog requests to a name, and says which
name failed when DNS has nothing, retrying until it has."""

from __future__ import annotations

import re
import socket

import pytest

from peers import Kamailio, PeerTimeout
from peers.dnsmasq import Dnsmasq
from peers.net import free_udp_port
from peers.phoneconfig import RTP_PORTS
from peers.sipp import scenario_path

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]


@pytest.fixture
def kams(tmp_path):
    started: list[Kamailio] = []

    def make(name: str, **kw) -> Kamailio:
        kam = Kamailio(tmp_path / name, **kw).start()
        started.append(kam)
        return kam

    yield make
    for kam in started:
        kam.stop()


@pytest.fixture
def dns(tmp_path):
    servers: list[Dnsmasq] = []

    def make(records: list[str], **kw) -> Dnsmasq:
        server = Dnsmasq(tmp_path / "dns", records, **kw).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def srv(name: str, transport: str, target: str, port: int, priority: int) -> str:
    service = "_sips._tcp" if transport == "tls" else f"_sip._{transport}"
    return f"--srv-host={service}.{name},{target},{port},{priority},10"


def two_servers(dns, name: str, first: tuple[str, int], second: tuple[str, int]) -> Dnsmasq:
    """A zone where ``name`` has two UDP SRV targets on loopback, ``first`` (label, port)
    at priority 10 and ``second`` at 20."""
    hosts = [f"{label}.{name}" for label, _ in (first, second)]
    return dns([srv(name, "udp", hosts[0], first[1], 10), srv(name, "udp", hosts[1], second[1], 20),
                *(f"--host-record={h},127.0.0.1" for h in hosts)])


def phone_config(path, dns_server: Dnsmasq, kam: Kamailio, user: str, *, registrar: str,
                 network: str = "", account: str = "", expires: int = 60, port: int = 0):
    """An account whose registrar is a name (no transport given: DNS decides)."""
    sub = kam.subscriber(user)
    path.write_text("\n".join([
        "[[accounts]]", f'name = "u{user}"', f'aor = "sip:{user}@{kam.domain}"',
        f'password = "{sub.password}"', f'registrar = "{registrar}"', f"expires = {expires}",
        account, "",
        "[network]", f'listen = "127.0.0.1:{port or free_udp_port()}"',
        f"rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]", f'dns_servers = ["{dns_server.server}"]',
        network, "", "[audio]", 'backend = "null"', "", "[control]", "enabled = false", ""]))
    path.chmod(0o600)
    return path


def registered_phone(softphone, tmp_path, zone: Dnsmasq, kam: Kamailio):
    """``softphone register`` as 1001 at ``sip:pbx.test``, keep-alives every second."""
    cfg = phone_config(tmp_path / "a.toml", zone, kam, "1001", registrar="sip:pbx.test",
                       network="keepalive = 1")
    phone = softphone("register", "--config", str(cfg))
    phone.wait_event("registered", timeout=15)
    # on loopback nobody rewrites our address: no NAT seen (over TCP the registrar's rport
    # is our ephemeral source port, which is no NAT either)
    assert phone.find_event("public_address") is None, phone.diagnostics()
    return phone


def plain_config(path, zone: Dnsmasq | None, port: int = 0):
    """No account: a loopback UDP port, null audio, PCMU (and ``zone`` as DNS)."""
    path.write_text("\n".join([
        "[network]", f'listen = "127.0.0.1:{port or free_udp_port()}"',
        f'dns_servers = ["{zone.server}"]' if zone else "",
        f"rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]", "", "[audio]", 'backend = "null"',
        'codecs = ["PCMU"]', "", "[control]", "enabled = false", ""]))
    return path


def sent_to(trace, method: str) -> list[str]:
    """host:port of every ``method`` request in a text SIP trace, in order."""
    return [f"{m.group(1)}:{m.group(2)}" for m in
            re.finditer(r"^--- \S+ sent (\w+) (\S+)\n(\w+) ", trace.read_text(), re.M)
            if m.group(3) == method]


def test_srv_priority_then_failover_when_the_first_registrar_stops(kams, dns, softphone,
                                                                  tmp_path):
    first, second = kams("k1"), kams("k2")
    zone = two_servers(dns, "pbx.test", ("k1", first.port), ("k2", second.port))
    phone = registered_phone(softphone, tmp_path, zone, first)
    assert first.contacts("1001")["1001"] and not second.contacts("1001")["1001"]  # priority

    mark = phone.mark()
    first.stop()  # the keep-alive OPTIONS finds it gone: register again, at the second
    phone.wait_event("registered", timeout=15, since=mark)
    assert second.wait_registered("1001", timeout=2)

    # a phone starting now: its REGISTER goes to the first (it knows no better), meets
    # "nothing listens" and is sent again, as a new transaction, to the second
    trace = tmp_path / "b.txt"
    cfg_b = phone_config(tmp_path / "b.toml", zone, first, "1002", registrar="sip:pbx.test")
    late = softphone("register", "--config", str(cfg_b), "--sip-trace", str(trace))
    late.wait_event("registered", timeout=15)
    assert second.wait_registered("1002", timeout=2)
    targets = sent_to(trace, "REGISTER")
    assert targets[0] == f"udp:127.0.0.1:{first.port}", targets
    assert f"udp:127.0.0.1:{second.port}" in targets[1:], targets
    assert late.find_event("registration_failed") is None, late.diagnostics()


def test_naptr_picks_tcp_and_a_reset_flow_registers_again_at_once(kams, dns, softphone,
                                                                 tmp_path):
    first, second = kams("k1"), kams("k2")
    zone = dns(["--naptr-record=pbx.test,20,10,S,SIP+D2U,,_sip._udp.pbx.test",
                "--naptr-record=pbx.test,10,10,S,SIP+D2T,,_sip._tcp.pbx.test",
                srv("pbx.test", "udp", "k2.pbx.test", second.port, 10),
                srv("pbx.test", "tcp", "k1.pbx.test", first.port, 10),
                srv("pbx.test", "tcp", "k2.pbx.test", second.port, 20),
                "--host-record=k1.pbx.test,127.0.0.1", "--host-record=k2.pbx.test,127.0.0.1"])
    phone = registered_phone(softphone, tmp_path, zone, first)
    (contact,) = first.contacts("1001")["1001"]
    assert contact.endswith(";transport=tcp"), contact  # NAPTR order 10: SIP+D2T
    mark = phone.mark()
    with pytest.raises(PeerTimeout):  # CRLF pings every second, each answered by a pong:
        phone.wait_event("registered", timeout=3, since=mark)  # no dead flow, no REGISTER
    assert "registrar lost" not in phone.stderr_text()

    first.stop()  # its TCP connection closes: no waiting for the next refresh
    phone.wait_event("registered", timeout=8, since=mark)
    assert "connection to the registrar lost (connection" in phone.stderr_text()
    (contact,) = second.wait_registered("1001", timeout=2)
    assert contact.endswith(";transport=tcp"), contact


def test_a_registrar_that_never_pongs_is_a_dead_flow(kams, softphone, tmp_path):
    deaf = kams("deaf", defines=("WITH_NO_PONG",))  # tcp_crlf_ping=no
    sub = deaf.subscriber("1001")
    cfg = tmp_path / "a.toml"
    cfg.write_text("\n".join([
        "[[accounts]]", 'name = "u1001"', f'aor = "sip:1001@{deaf.domain}"',
        f'password = "{sub.password}"', f'registrar = "sip:{deaf.host}:{deaf.port}"',
        'transport = "tcp"', "expires = 600", "",
        "[network]", f'listen = "127.0.0.1:{free_udp_port()}"', "keepalive = 1", "",
        "[audio]", 'backend = "null"', "", "[control]", "enabled = false", ""]))
    phone = softphone("register", "--config", str(cfg))
    first = phone.wait_event("registered", timeout=15)
    mark = phone.mark()
    # ping at 1 s, no pong by 2 s: a dead flow, registered again over a new connection
    again = phone.wait_event("registered", timeout=6, since=mark)
    assert again["t"] - first["t"] < 4, (first, again)
    assert "connection to the registrar lost (no keep-alive pong)" in phone.stderr_text()


def test_call_a_name_and_route_in_dialog_requests_to_a_name(dns, softphone, sipp, tmp_path):
    # the callee's Contact is a name too: the ACK and the BYE must resolve it
    uas_port = free_udp_port()
    text = scenario_path("uas").read_text().replace(
        "Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>",
        "Contact: <sip:uas@uas.test:[local_port]>")
    assert "uas.test" in text
    scenario = tmp_path / "uas_named.xml"
    scenario.write_text(text)
    uas = sipp.start(str(scenario), local_port=uas_port, media_port=free_udp_port(),
                     timeout=20)
    zone = dns([srv("callee.test", "udp", "box.callee.test", uas_port, 10),
                "--host-record=box.callee.test,127.0.0.1", "--host-record=uas.test,127.0.0.1"])
    cfg = plain_config(tmp_path / "c.toml", zone)
    caller = softphone("call", "sip:uas@callee.test", "--duration", "1", "--config", str(cfg))
    assert caller.wait_event("answered", timeout=15)["codec"] == "PCMU"
    assert caller.wait_exit(15) == 0, caller.diagnostics()
    result = uas.wait(10)
    assert result.ok, result.explain()  # it got the ACK and the BYE, sent to uas.test
    log = zone.log_text()
    assert "query[SRV] _sip._udp.callee.test" in log and "query[A] uas.test" in log, log


def test_in_dialog_requests_to_a_name_fail_over_to_the_next_srv_target(dns, softphone, sipp,
                                                                       tmp_path):
    """RFC 3263 §4.3 inside a dialog: the callee's Contact is a name whose first SRV target
    is hung (bound, silent: no ICMP); the BYE times out there and goes, as a new
    transaction, to the second target, which answers it. (The ACK, which has no answer to
    time out, is lost to the hung target: the UAS takes the BYE without it.)"""
    hung = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hung.bind(("127.0.0.1", 0))
    try:
        uas_port = free_udp_port()
        text = scenario_path("uas").read_text().replace(
            "Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>",
            "Contact: <sip:uas@pair.test>").replace(
            '<recv request="ACK" rtd="true" crlf="true"/>',
            '<recv request="ACK" rtd="true" crlf="true" optional="true"/>')
        assert "pair.test" in text and 'optional="true"/>' in text
        scenario = tmp_path / "uas_pair.xml"
        scenario.write_text(text)
        uas = sipp.start(str(scenario), local_port=uas_port, media_port=free_udp_port(),
                         timeout=30)
        zone = two_servers(dns, "pair.test", ("hung", hung.getsockname()[1]), ("live", uas_port))
        # T1 = 50 ms: a non-INVITE transaction times out after 64 T1 = 3.2 s
        cfg = plain_config(tmp_path / "c.toml", zone)
        cfg.write_text(cfg.read_text() + "[sip]\nt1_ms = 50\n")
        trace = tmp_path / "trace.txt"
        caller = softphone("call", f"sip:uas@127.0.0.1:{uas_port}", "--duration", "1",
                           "--sip-trace", str(trace), "--config", str(cfg))
        assert caller.wait_event("answered", timeout=15)
        assert caller.wait_exit(20) == 0, caller.diagnostics()
        result = uas.wait(10)
        assert result.ok, result.explain()  # the BYE reached it, and it answered
        assert "BYE sip:uas@pair.test" in result.messages()
        byes = sent_to(trace, "BYE")
        hung_at = f"udp:127.0.0.1:{hung.getsockname()[1]}"
        assert byes[0] == hung_at and byes[-1] == f"udp:127.0.0.1:{uas_port}", byes
        assert "query[SRV] _sip._udp.pair.test" in zone.log_text()
    finally:
        hung.close()


def test_dns_failure_names_the_name_and_registration_retries(kams, dns, softphone, tmp_path):
    kam = kams("k1")
    empty = dns([])
    cfg = phone_config(tmp_path / "a.toml", empty, kam, "1001", registrar="sip:late.test")
    once = softphone("register", "--duration", "1", "--config", str(cfg))
    assert once.wait_exit(15) == 1, once.diagnostics()
    assert "registration failed: DNS: no SRV or A record for late.test" in once.stderr_text()



async def test_registration_retries_after_a_dns_failure(kams, dns):
    """In-process (the CLI stops at the first failure; the TUI and the API keep trying):
    the account backs off and registers once the name exists."""
    from agents import make_agent
    from softphone.config import Config

    kam = kams("k1")
    empty = dns([])
    sub = kam.subscriber("1001")
    cfg = Config.from_dict({
        "accounts": [{"aor": f"sip:1001@{kam.domain}", "password": sub.password,
                      "registrar": "sip:late.test", "expires": 60}],
        "network": {"listen": "127.0.0.1:0", "dns_servers": [empty.server]}})
    events: list = []
    ua = make_agent(cfg, cfg.accounts[0], events=events)
    await ua.start(preload_media=False)
    try:
        account = ua.account(None)
        await account.register()
        assert not await account.wait_registered(5)
        assert account.reason == "DNS: no SRV or A record for late.test", account.reason
        empty.stop()  # the zone gets its records (same server address)
        dns([srv("late.test", "udp", "k.late.test", kam.port, 10),
             "--host-record=k.late.test,127.0.0.1"], port=empty.port)
        assert await account.wait_next(12), events  # the retry after the 5 s back-off
        assert kam.wait_registered("1001", timeout=2, contains=f":{ua.stack.transport.port}")
        failed = [e for name, e in events if name == "registration_failed"]
        assert len(failed) == 1 and failed[0]["status"] is None, events
    finally:
        await ua.close(timeout=3)


def test_a_503_sends_the_call_to_the_next_server(dns, softphone, sipp, tmp_path):
    """RFC 3263 §4.3: the first server (SIPp) answers 503; the same INVITE goes, as a new
    transaction, to the second (a softphone that answers)."""
    text = scenario_path("uas_busy").read_text().replace("486 Busy Here",
                                                         "503 Service Unavailable")
    assert "503 Service Unavailable" in text
    (tmp_path / "uas_503.xml").write_text(text)
    busy_port, answer_port = free_udp_port(), free_udp_port()
    busy = sipp.start(str(tmp_path / "uas_503.xml"), local_port=busy_port, timeout=20)
    plain = plain_config(tmp_path / "answer.toml", None, answer_port)
    callee = softphone("answer", "--auto", "--max-calls", "1", "--config", str(plain))
    callee.wait_event("listening", timeout=15)
    zone = two_servers(dns, "svc.test", ("one", busy_port), ("two", answer_port))
    cfg = plain_config(tmp_path / "c.toml", zone)
    caller = softphone("call", "sip:bob@svc.test", "--duration", "1", "--config", str(cfg))
    caller.wait_event("answered", timeout=15)
    assert caller.wait_exit(15) == 0, caller.diagnostics()
    assert callee.wait_event("answered", timeout=5)
    result = busy.wait(10)
    assert result.ok and 503 in result.status_codes(), result.explain()  # it was asked first


@pytest.mark.parametrize("first", ["closed", "silent"])
def test_a_call_goes_to_the_next_server_after_a_transport_error_or_a_timeout(
        first, dns, softphone, tmp_path):
    """RFC 3263 §4.3, for a call: the first server is a closed port (the ICMP error is a
    transport error: one INVITE there, then the next server at once) or a socket that never
    answers (Timer B = 64·T1, T1 = 100 ms here, then the next server)."""
    silent = None
    if first == "silent":
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        dead_port = silent.getsockname()[1]
    else:
        dead_port = free_udp_port()
    try:
        answer_port = free_udp_port()
        callee = softphone("answer", "--auto", "--max-calls", "1", "--config",
                           str(plain_config(tmp_path / "answer.toml", None, answer_port)))
        callee.wait_event("listening", timeout=15)
        zone = two_servers(dns, "svc.test", ("one", dead_port), ("two", answer_port))
        cfg = plain_config(tmp_path / "c.toml", zone)
        cfg.write_text(cfg.read_text() + "\n[sip]\nt1_ms = 100\n")
        trace = tmp_path / "t.txt"
        caller = softphone("call", "sip:bob@svc.test", "--duration", "1", "--config", str(cfg),
                           "--sip-trace", str(trace))
        caller.wait_event("answered", timeout=20)
        assert caller.wait_exit(15) == 0, caller.diagnostics()
        assert callee.wait_event("answered", timeout=5)
        invites = sent_to(trace, "INVITE")
        dead = [t for t in invites if t.endswith(f":{dead_port}")]
        assert invites[0].endswith(f":{dead_port}") and invites[-1].endswith(f":{answer_port}"), \
            invites
        if first == "closed":
            assert len(dead) == 1, invites  # no retransmission: the error ended it
        else:
            assert len(dead) >= 5, invites  # Timer A's resends until Timer B
            got = []
            silent.settimeout(0)
            while len(got) < 100:
                try:
                    got.append(silent.recv(65535))
                except BlockingIOError:
                    break
            assert len(got) == len(dead) and all(d.startswith(b"INVITE ") for d in got), \
                len(got)
    finally:
        if silent is not None:
            silent.close()


def test_a_hung_registrar_times_out_and_the_next_one_takes_over(kams, dns, softphone,
                                                              tmp_path):
    """A frozen Kamailio (SIGSTOP: its sockets stay bound, nothing answers, no ICMP): the
    REGISTER times out (Timer F = 64·T1, T1 = 100 ms here) and goes to the next server."""
    import os
    import signal

    hung, second = kams("k1"), kams("k2")
    zone = two_servers(dns, "pbx.test", ("k1", hung.port), ("k2", second.port))
    trace = tmp_path / "t.txt"
    cfg = phone_config(tmp_path / "a.toml", zone, hung, "1001", registrar="sip:pbx.test")
    cfg.write_text(cfg.read_text() + "\n[sip]\nt1_ms = 100\n")
    os.killpg(hung.proc.pid, signal.SIGSTOP)  # the group it leads: every worker
    try:
        phone = softphone("register", "--config", str(cfg), "--sip-trace", str(trace))
        registered = phone.wait_event("registered", timeout=20)
    finally:
        os.killpg(hung.proc.pid, signal.SIGCONT)
    assert registered["t"] > 6.4  # it waited for the first server's Timer F
    assert second.wait_registered("1001", timeout=2)
    targets = sent_to(trace, "REGISTER")
    assert targets.count(f"udp:127.0.0.1:{hung.port}") > 3, targets  # retransmitted there
    assert targets[-1] == f"udp:127.0.0.1:{second.port}", targets
