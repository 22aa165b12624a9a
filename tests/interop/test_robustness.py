"""Robustness: hostile input, an impaired network, peers that fail, limits, secrets.

Real processes and real peers wherever the behaviour is observable from outside (raw
sockets against ``softphone answer``, Kamailio, network namespaces with nftables loss plus
the user-space impairment relay in peers/impair.py); in-process UserAgents where the proof
is a counter or a timing on our side (rate limiting, 503 Retry-After).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from peers import LossyLink, PeerTimeout
from peers.impair import ImpairRelay
from peers.net import LOOPBACK, free_udp_port, sip_options_ping
from softphone.sip.message import MAX_MESSAGE_SIZE
from peers.sipmsg import responses, sip_request, status

# -- helpers ------------------------------------------------------------------------------


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def plain_config(path: Path, listen: str, extra_network: str = "", extra: str = "") -> Path:
    return write_config(path, f'[network]\nlisten = "{listen}"\nrtp_ports = [20000, 30000]\n'
                              f'{extra_network}\n[audio]\nbackend = "null"\n{extra}\n')


def account_config(path: Path, kam, user: str, *, registrar: str | None = None,
                   listen: str | None = None, password_line: str | None = None,
                   expires: int = 300, extra: str = "", network: str = "") -> Path:
    sub = kam.subscriber(user)
    pw = password_line or f'password = "{sub.password}"'
    return write_config(path, "\n".join([
        "[[accounts]]", f'name = "u{user}"', f'aor = "sip:{user}@{kam.domain}"', pw,
        f'registrar = "{registrar or f"sip:{kam.host}:{kam.port}"}"', f"expires = {expires}", "",
        "[network]", f'listen = "{listen or f"127.0.0.1:{free_udp_port()}"}"',
        "rtp_ports = [20000, 30000]", network, "", "[audio]", 'backend = "null"', extra, ""]))


@pytest.fixture
def answerer(softphone, tmp_path):
    """`softphone answer` on a fixed loopback port, no account; returns (process, port)."""
    def start(*flags: str, extra_network: str = "", extra: str = ""):
        port = free_udp_port()
        cfg = plain_config(tmp_path / f"answer-{port}.toml", f"127.0.0.1:{port}",
                           extra_network, extra)
        p = softphone("answer", "--config", str(cfg), *flags)
        p.wait_event("listening", timeout=15)
        return p, port
    return start


# == 1. hostile input against a running process ===========================================
def test_oversized_datagram_and_endless_tcp_headers_leave_answer_running(answerer):
    p, port = answerer("--auto")
    # the largest UDP datagram IPv4 can carry (65,507 bytes): junk in a SIP-looking shell
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        big = sip_request("OPTIONS", f"sip:x@127.0.0.1:{port}", LOOPBACK, s.getsockname()[1])
        big = big.replace(b"Content-Length", b"X-Junk: " + b"A" * (65507 - len(big) - 10)
                          + b"\r\nContent-Length", 1)[:65507]
        s.sendto(big, (LOOPBACK, port))
    # TCP: a header block that never ends, well past 64 KiB; the phone must hang up on it
    closed_after = None
    with socket.create_connection((LOOPBACK, port), timeout=5) as c:
        c.sendall(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n")
        line = b"X-Endless: " + b"B" * 1000 + b"\r\n"
        sent = 0
        try:
            for _ in range(1000):  # at most ~1 MB
                c.sendall(line)
                sent += len(line)
        except (BrokenPipeError, ConnectionResetError):
            closed_after = sent
        if closed_after is None:  # all written into buffers: the close shows up on read
            c.settimeout(5)
            try:
                assert c.recv(100) == b""
            except ConnectionResetError:
                pass
            closed_after = sent
    assert closed_after > MAX_MESSAGE_SIZE - 2000
    deadline = time.monotonic() + 5  # the phone's stderr is read by another thread
    while "header block too large" not in p.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "header block too large" in p.stderr_text(), p.diagnostics()
    # still alive and answering
    assert sip_options_ping(LOOPBACK, port, 2.0) == "SIP/2.0 200 OK", p.diagnostics()
    assert p.proc.poll() is None


# == 4. limits ===========================================================================


def test_max_calls_gives_486(answerer):
    p, port = answerer(extra_network="max_calls = 1")  # rings, never answers
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        lport = s.getsockname()[1]
        s.sendto(sip_request("INVITE", f"sip:a@127.0.0.1:{port}", LOOPBACK, lport),
                 (LOOPBACK, port))
        first = responses(s, 10, until=lambda st: 180 in st)
        assert 180 in [status(d) for d in first], first
        p.wait_event("incoming", timeout=5)
        s.sendto(sip_request("INVITE", f"sip:b@127.0.0.1:{port}", LOOPBACK, lport),
                 (LOOPBACK, port))
        second = responses(s, 10, until=lambda st: any(c >= 200 for c in st))
        assert [status(d) for d in second if status(d) >= 200] == [486], second
    assert len([e for e in p.events if e["event"] == "incoming"]) == 1


# == 3. peer faults ======================================================================
def test_callee_vanishes_caller_ends_on_rtp_timeout(answerer, softphone, tmp_path):
    callee, port = answerer("--auto")
    cfg = plain_config(tmp_path / "caller.toml", f"127.0.0.1:{free_udp_port()}",
                       "rtp_timeout = 2")
    caller = softphone("call", f"sip:bob@127.0.0.1:{port}", "--duration", "60",
                       "--config", str(cfg))
    caller.wait_event("answered", timeout=15)
    callee.wait_event("answered", timeout=5)
    with pytest.raises(PeerTimeout):  # media flows: the call stays up for a second
        caller.wait_event("ended", timeout=1.0)
    callee.proc.kill()  # SIGKILL: no BYE, no RTCP BYE, just silence
    killed = time.monotonic()
    callee.proc.wait(5)
    ended = caller.wait_event("ended", timeout=10)
    waited = time.monotonic() - killed
    assert ended["reason"] == "timeout" and "no RTP" in ended.get("phrase", ""), ended
    assert 1.5 <= waited <= 6, waited   # the media layer's timer, not something else
    assert ended["rtp"]["received"] > 0
    assert caller.wait_exit(10) == 1, caller.diagnostics()  # a media failure (DESIGN §3)
    assert "call failed: no RTP" in caller.stderr_text()


def test_kamailio_restart_mid_registration_reregisters(kamailio, softphone, tmp_path):
    trace = tmp_path / "reg.txt"
    cfg = account_config(tmp_path / "r.toml", kamailio, "1003", expires=20)
    p = softphone("register", "--config", str(cfg), "--sip-trace", str(trace))
    first = p.wait_event("registered", timeout=15)
    assert first["expires"] == 20
    mark = p.mark()
    kamailio.stop()
    try:
        # wait (bounded) until the refresh REGISTER has gone out to the dead registrar
        registers = trace.read_text().count("\nREGISTER sip:")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and trace.read_text().count("\nREGISTER sip:") <= registers:
            time.sleep(0.1)
        assert trace.read_text().count("\nREGISTER sip:") > registers, "no refresh sent"
    finally:
        kamailio.start()  # a fresh Kamailio: no registrations, new nonces
    again = p.wait_event("registered", timeout=12, since=mark)
    assert again["t"] - first["t"] <= 10 + 10, (first, again)  # one refresh interval + retries
    assert kamailio.contacts("1003")["1003"], kamailio.ul_dump()
    assert p.find_event("registration_failed", since=mark) is None, p.diagnostics()


def _tail(path: Path, limit: int = 6000) -> str:
    """The end of a trace file for a failure message (or why there is none)."""
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"(no trace: {exc})"


# == 2. impaired network ==================================================================
IMPAIR = dict(delay=0.3, jitter=0.1, duplicate=0.1, reorder=0.1, seed=5)


@pytest.fixture
def link():
    lk = LossyLink()
    lk.create()
    yield lk
    lk.destroy()


def test_register_through_lossy_delayed_link(kamailio, softphone, link, tmp_path):
    link.set_loss(link.ns_a, 20, seed=7)  # a fixed pattern (see the call test below)
    link.set_loss(link.ns_b, 20, seed=2)
    relay = ImpairRelay((kamailio.host, kamailio.port), listen=(link.addr_b, 0),
                        listen_netns=link.ns_b, target_bind=LOOPBACK,
                        duplicate_if=lambda d: d.startswith((b"REGISTER", b"SIP/2.0 ")),
                        lose_first=lambda d: d.startswith(b"REGISTER"), **IMPAIR).start()
    try:
        cfg = account_config(tmp_path / "r.toml", kamailio, "1001",
                             registrar=f"sip:{link.addr_b}:{relay.port}",
                             listen=f"{link.addr_a}:5060",
                             # the relay rewrites our source like a NAT: keep our own Contact
                             network="nat_contact = false")
        p = softphone("register", "--config", str(cfg), "--duration", "1",
                      prefix=link.exec_argv(link.ns_a, []))
        ev = p.wait_event("registered", timeout=40)
        assert ev["expires"] > 0
        assert any(link.addr_a in c for c in kamailio.contacts("1001")["1001"]), kamailio.ul_dump()
        assert p.wait_exit(40) == 0, p.diagnostics()
        stats = relay.snapshot()
        assert stats["up.duplicated"] >= 2 and stats["down.duplicated"] >= 2, stats
        assert stats["up.lost"] >= 1 and stats["up.received"] >= 3, stats  # retransmitted
        assert len([e for e in p.events if e["event"] == "registered"]) == 1
    finally:
        relay.stop()


def test_call_through_lossy_delayed_link_no_double_answers(softphone, link, tmp_path):
    # 20 % loss as a fixed pattern (the same datagrams every run; here the second INVITE
    # dies on its way to the relay, the relay loses the first, the third gets through), not
    # at random: with random loss every INVITE before Timer B was lost about one run in a
    # few hundred (CI, twice: the relay saw 2 of 6), which tests the dice, not the UA
    link.set_loss(link.ns_a, 20, seed=7)
    link.set_loss(link.ns_b, 20, seed=2)
    callee_port = 5070
    callee_cfg = plain_config(tmp_path / "b.toml", f"{link.addr_b}:{callee_port}")
    traces = {who: tmp_path / f"{who}.trace" for who in ("caller", "callee")}
    callee = softphone("answer", "--auto", "--config", str(callee_cfg),
                       "--sip-trace", str(traces["callee"]), prefix=link.exec_argv(link.ns_b, []))
    callee.wait_event("listening", timeout=15)
    relay = ImpairRelay((link.addr_b, callee_port), listen=(link.addr_b, 0),
                        listen_netns=link.ns_b, target_netns=link.ns_b, target_bind=link.addr_b,
                        duplicate_if=lambda d: d.startswith((b"INVITE", b"SIP/2.0 200")),
                        lose_first=lambda d: d.startswith(b"INVITE"), **IMPAIR).start()
    try:
        caller_cfg = plain_config(tmp_path / "a.toml", f"{link.addr_a}:5060")
        caller = softphone("call", f"sip:bob@{link.addr_b}:{relay.port}", "--duration", "1",
                           "--config", str(caller_cfg), "--sip-trace", str(traces["caller"]),
                           prefix=link.exec_argv(link.ns_a, []))
        try:
            answered = caller.wait_event("answered", timeout=40)
        except PeerTimeout as exc:  # say what each hop saw: this has failed once in CI
            seen = "".join(f"--- {who} SIP trace\n{_tail(path)}\n" for who, path in traces.items())
            raise AssertionError(f"{exc}\n--- callee\n{callee.diagnostics()}\n"
                                 f"--- relay {relay.snapshot()}\n{seen}") from None
        callee.wait_event("incoming", timeout=5)
        ended = caller.wait_event("ended", timeout=40)
        assert ended["reason"] == "hangup", ended
        callee.wait_event("ended", timeout=40)
        assert caller.wait_exit(20) == 0, caller.diagnostics()
        stats = relay.snapshot()
        assert stats["up.duplicated"] >= 1 and stats["down.duplicated"] >= 1, stats
        assert stats["up.lost"] >= 1 and stats["up.received"] >= 2, stats  # INVITE resent
        assert [e["event"] for e in caller.events].count("answered") == 1, caller.diagnostics()
        assert [e["event"] for e in callee.events].count("incoming") == 1, callee.diagnostics()
        assert answered["call_id"] == callee.find_event("incoming")["call_id"]
    finally:
        relay.stop()


# == 5. secrets ==========================================================================
def test_password_appears_in_no_artefact(kamailio, softphone, tmp_path):
    pw_a = kamailio.subscriber("1001").password
    pw_b = kamailio.subscriber("1002").password
    b_cfg = account_config(tmp_path / "b.toml", kamailio, "1002",
                           password_line='password_env = "SP_TEST_PW_B"')
    a_cfg = account_config(tmp_path / "a.toml", kamailio, "1001")
    callee = softphone("answer", "--auto", "--max-calls", "1", "--config", str(b_cfg), "-vv",
                       "--sip-trace", str(tmp_path / "b.pcap"), env={"SP_TEST_PW_B": pw_b})
    callee.wait_event("registered", timeout=15)
    caller = softphone("call", "sip:1002@127.0.0.1", "--duration", "1", "--config", str(a_cfg),
                       "-vv", "--sip-trace", str(tmp_path / "a.txt"))
    caller.wait_event("answered", timeout=20)
    assert caller.wait_exit(20) == 0, caller.diagnostics()
    assert callee.wait_exit(20) == 0, callee.diagnostics()
    # digest really happened, so the secret was really in use
    assert "Authorization: Digest" in (tmp_path / "a.txt").read_text()
    assert b"Authorization: Digest" in (tmp_path / "b.pcap").read_bytes()
    # deliberately broken configs that hold the password
    broken = {
        "unquoted.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001@127.0.0.1\"\npassword = {pw_a}\n",
        "bad-escape.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001@127.0.0.1\"\npassword = \"{pw_a}\\q\"\n",
        "both.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001@127.0.0.1\"\npassword = \"{pw_a}\"\npassword_env = \"X\"\n",
        "in-uri.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001:{pw_a}@127.0.0.1\"\n",
        "bad-type.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001@127.0.0.1\"\npassword = [\"{pw_a}\"]\n",
        "bad-key.toml": f"[[accounts]]\nname = \"x\"\naor = \"sip:1001@127.0.0.1\"\npasswd = \"{pw_a}\"\n",
    }
    broken_out = []
    for name, text in broken.items():
        cfg = write_config(tmp_path / name, text)
        p = softphone("register", "--config", str(cfg), "-vv")
        assert p.wait_exit(15) == 2, (name, p.diagnostics())
        assert "config" in p.stderr_text().lower(), (name, p.stderr_text())
        broken_out.append(p)
    artefacts: dict[str, bytes] = {}
    for label, proc in [("caller", caller), ("callee", callee)] + \
            [(f"broken:{n}", p) for n, p in zip(broken, broken_out)]:
        artefacts[f"{label} stderr"] = proc.stderr_text().encode()
        artefacts[f"{label} stdout"] = ("\n".join(map(str, proc.events))
                                        + "\n".join(proc.other_stdout)).encode()
    for path in (tmp_path / "a.txt", tmp_path / "b.pcap"):
        artefacts[path.name] = path.read_bytes()
    assert b"DEBUG" in artefacts["caller stderr"]  # -vv really logged
    for label, data in artefacts.items():
        for pw in (pw_a, pw_b):
            assert pw.encode() not in data, f"password found in {label}"


def test_cli_register_waits_out_a_503_retry_after(softphone, tmp_path):
    """`softphone register` at start-up: 503 Retry-After: 1, then 200 -> registered, exit 0."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(0.2)
    arrivals: list[float] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except socket.timeout:
                continue
            head = data.split(b"\r\n\r\n")[0].decode()
            keep = "\r\n".join(line + (";tag=r1" if line.startswith("To:") else "")
                               for line in head.split("\r\n")[1:]
                               if line.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq"))
            expires = re.search(r"^Expires: (\d+)", head, re.M).group(1)
            arrivals.append(time.monotonic())
            if len(arrivals) == 1:
                reply = f"SIP/2.0 503 Service Unavailable\r\n{keep}\r\nRetry-After: 1\r\n"
            else:
                reply = f"SIP/2.0 200 OK\r\n{keep}\r\nExpires: {expires}\r\n"
            sock.sendto((reply + "Content-Length: 0\r\n\r\n").encode(), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = sock.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[[accounts]]\naor = "sip:1001@127.0.0.1"\npassword = "x"\n'
                       f'registrar = "sip:127.0.0.1:{port}"\nexpires = 60\n'
                       '[network]\nlisten = "127.0.0.1:0"\n')
        p = softphone("register", "--duration", "0.5", "--config", str(cfg))
        assert p.wait_exit(20) == 0, p.diagnostics()
        names = p.event_names()
        assert names.index("registration_failed") < names.index("registered") < \
            names.index("unregistered"), names
        assert "retrying in 1 s" in p.stderr_text()
        assert arrivals[1] - arrivals[0] >= 1.0
    finally:
        stop.set()
        thread.join(5)
        sock.close()
