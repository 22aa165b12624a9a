"""The headless CLI against real peers: Kamailio (registrar/proxy, digest), SIPp, raw UDP.

Every process is started and stopped by the tests; everything runs on 127.0.0.1.
"""

from __future__ import annotations

import re
import signal
import socket
import uuid
from pathlib import Path

import pytest

from peers.net import free_udp_port
from peers.phoneconfig import write_config

pytestmark = pytest.mark.peers


def contacts_of(kam, user: str) -> list[str]:
    """Contact URIs Kamailio holds for ``user`` (from kamcmd ul.dump)."""
    dump = kam.ul_dump()
    found = []
    for block in re.split(r"\n(?=\s*AoR:)", dump):
        if re.search(rf"AoR:\s*{user}\b", block):
            found += re.findall(r"Address:\s*(sip:\S+)", block)
    return found


# -- registration ------------------------------------------------------------------------------
def test_register_then_unregister(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1001")
    trace = tmp_path / "trace.txt"
    p = softphone("register", "--config", str(cfg), "--sip-trace", str(trace))
    ev = p.wait_event("registered", timeout=15)
    assert ev["account"] == "u1001" and 0 < ev["expires"] <= 300
    assert contacts_of(kamailio, "1001"), kamailio.ul_dump()
    p.send_signal(signal.SIGTERM)
    assert p.wait_exit(15) == 0, p.diagnostics()
    assert p.find_event("unregistered") is not None, p.diagnostics()
    assert contacts_of(kamailio, "1001") == []
    text = trace.read_text()
    # the digest round: 401 then an Authorization header, never the password
    assert "SIP/2.0 401" in text and "Authorization: Digest" in text
    assert "secret1001" not in text
    assert re.search(r"^--- \S+ sent udp 127\.0\.0\.1:\d+$", text, re.M)


def test_register_with_duration_exits_zero(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1003")
    p = softphone("register", "--config", str(cfg), "--duration", "1")
    assert p.wait_exit(20) == 0, p.diagnostics()
    names = p.event_names()
    assert names.index("registered") < names.index("unregistered")


def test_wrong_password_fails_with_status(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1001", password="not-the-password")
    p = softphone("register", "--config", str(cfg))
    assert p.wait_exit(20) == 1, p.diagnostics()
    ev = p.find_event("registration_failed")
    assert ev is not None and ev["status"] == 401, p.diagnostics()
    err = p.stderr_text()
    # the status, and what it means for this account (issue 9)
    assert "registration failed: 401" in err
    assert "rejected our credentials for realm '127.0.0.1'" in err, err
    assert "check the password and auth user '1001'" in err, err
    assert "not-the-password" not in err
    assert all("not-the-password" not in str(e) for e in p.events)


def test_account_without_password_says_so(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1001")
    text = cfg.read_text()
    cfg.write_text(re.sub(r"^password = .*\n", "", text, flags=re.M))
    p = softphone("register", "--config", str(cfg))
    assert p.wait_exit(20) == 1, p.diagnostics()
    ev = p.find_event("registration_failed")
    assert ev is not None and ev["status"] == 401, p.diagnostics()
    assert "asked for credentials for realm '127.0.0.1' but account 'u1001' has no password" \
        in p.stderr_text(), p.diagnostics()


def test_register_over_tcp(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1003", transport="tcp")
    trace = tmp_path / "t.txt"
    p = softphone("register", "--config", str(cfg), "--duration", "0.5", "--sip-trace", str(trace))
    assert p.wait_exit(20) == 0, p.diagnostics()
    assert p.find_event("registered") is not None
    assert "sent tcp" in trace.read_text()


def test_register_sha256(kamailio_sha256, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio_sha256, "1001")
    trace = tmp_path / "t.txt"
    p = softphone("register", "--config", str(cfg), "--duration", "0.5", "--sip-trace", str(trace))
    assert p.wait_exit(20) == 0, p.diagnostics()
    text = trace.read_text()
    assert "algorithm=SHA-256" in text, text[-2000:]


# -- calls through the proxy -------------------------------------------------------------------
@pytest.fixture
def callee(kamailio, softphone, tmp_path):
    """`softphone answer --auto` registered as 1002."""
    def start(*flags: str):
        cfg = write_config(tmp_path / "callee.toml", kamailio, "1002")
        p = softphone("answer", "--config", str(cfg), *flags)
        p.wait_event("registered", timeout=15)
        return p
    return start


def caller_config(kamailio, tmp_path) -> Path:
    return write_config(tmp_path / "caller.toml", kamailio, "1001")


def test_call_through_kamailio_caller_hangs_up(kamailio, softphone, callee, tmp_path):
    b = callee("--auto", "--max-calls", "1")
    trace = tmp_path / "a.txt"
    a = softphone("call", "sip:1002@127.0.0.1", "--duration", "1", "--config",
                  str(caller_config(kamailio, tmp_path)), "--sip-trace", str(trace))
    answered = a.wait_event("answered", timeout=20)
    assert answered["codec"] in ("opus", "G722", "PCMU", "PCMA")
    incoming = b.wait_event("incoming", timeout=5)
    assert incoming["from"].startswith("sip:1001@") and incoming["call_id"] == answered["call_id"]
    ended = a.wait_event("ended", timeout=10)
    assert ended["reason"] == "hangup"
    assert a.wait_exit(10) == 0, a.diagnostics()
    b_end = b.wait_event("ended", timeout=10)
    assert b_end["reason"] == "remote-hangup"
    assert b.wait_exit(10) == 0, b.diagnostics()
    text = trace.read_text()
    assert "SIP/2.0 407" in text and "Proxy-Authorization: Digest" in text
    # ACK and BYE follow the route set through the proxy, not straight to the callee
    for method in ("ACK", "BYE"):
        m = re.search(rf"^--- \S+ sent udp (\S+)\n{method} ", text, re.M)
        assert m and m.group(1) == kamailio.addr, (method, text[-3000:])
        assert re.search(rf"{method} sip:1002@[^\n]*\n(?:[^\n]+\n)*?Route: <sip:127\.0\.0\.1[:;]",
                         text), text[-3000:]


def test_call_callee_hangs_up(kamailio, softphone, callee, tmp_path):
    b = callee("--auto")
    a = softphone("call", "sip:1002@127.0.0.1", "--config", str(caller_config(kamailio, tmp_path)))
    a.wait_event("answered", timeout=20)
    b.wait_event("answered", timeout=5)
    b.send_signal(signal.SIGTERM)  # callee ends: it sends BYE before exiting
    assert a.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    assert a.wait_exit(10) == 0, a.diagnostics()
    assert b.wait_event("ended", timeout=10)["reason"] == "hangup"
    assert b.wait_exit(10) == 0


def test_cancel_gives_487(kamailio, softphone, callee, tmp_path):
    b = callee()  # rings until the caller gives up
    a = softphone("call", "sip:1002@127.0.0.1", "--timeout", "2", "--config",
                  str(caller_config(kamailio, tmp_path)))
    a.wait_event("ringing", timeout=20)
    b.wait_event("incoming", timeout=5)
    assert a.wait_exit(15) == 1, a.diagnostics()
    assert "call failed: timeout" in a.stderr_text()
    assert a.find_event("ended")["reason"] == "timeout"
    assert b.wait_event("ended", timeout=10)["reason"] == "cancelled"


def test_unknown_user_gets_404(kamailio, softphone, tmp_path):
    a = softphone("call", "sip:1999@127.0.0.1", "--config", str(caller_config(kamailio, tmp_path)))
    assert a.wait_exit(20) == 1, a.diagnostics()
    assert "call failed: 404" in a.stderr_text()
    ended = a.find_event("ended")
    assert ended["reason"] == "rejected" and ended["status"] == 404


def test_busy_gets_486(kamailio, softphone, sipp, tmp_path):
    kamailio.restart()  # no contacts of 1002 left from earlier tests
    port = free_udp_port()
    uas = sipp.start("uas_busy", local_port=port, timeout=20)
    reg = sipp.register(kamailio, "1002", contact_port=port)
    assert reg.ok, reg.explain()
    a = softphone("call", "sip:1002@127.0.0.1", "--config", str(caller_config(kamailio, tmp_path)))
    assert a.wait_exit(20) == 1, a.diagnostics()
    assert "call failed: 486 Busy Here" in a.stderr_text()
    assert a.find_event("ended")["status"] == 486
    result = uas.wait(10)
    assert result.ok, result.explain()
    sipp.register(kamailio, "1002", contact_port=port, expires=0)


def test_sipp_uac_calls_softphone(kamailio, sipp, callee):
    kamailio.restart()
    b = callee("--auto", "--max-calls", "1")
    result = sipp.run("uac_auth", remote=kamailio.addr, service="1002", auth=("1001", "secret1001"),
                      keys={"caller": "1001"}, duration_ms=1000, timeout=20,
                      media_port=None)
    assert result.ok, result.explain()
    assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    assert b.wait_exit(10) == 0


def test_softphone_calls_sipp_uas(kamailio, softphone, sipp, tmp_path):
    kamailio.restart()
    port = free_udp_port()
    uas = sipp.start("uas", local_port=port, timeout=20)
    reg = sipp.register(kamailio, "1002", contact_port=port)
    assert reg.ok, reg.explain()
    a = softphone("call", "sip:1002@127.0.0.1", "--duration", "1", "--config",
                  str(caller_config(kamailio, tmp_path)))
    assert a.wait_event("answered", timeout=20)["codec"] in ("PCMU", "PCMA")
    assert a.wait_exit(15) == 0, a.diagnostics()
    result = uas.wait(10)
    assert result.ok, result.explain()
    sipp.register(kamailio, "1002", contact_port=port, expires=0)


# -- direct (no proxy) -----------------------------------------------------------------------------
def _udp_exchange(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
        return data


def _request(method: str, port: int, *, extra: str = "", cseq_method: str | None = None,
             to_tag: str = "") -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    return (f"{method} sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag=abc\r\n"
            f"To: <sip:probe@127.0.0.1>{to_tag}\r\nCall-ID: {uuid.uuid4()}\r\n"
            f"CSeq: 1 {cseq_method or method}\r\n{extra}Content-Length: 0\r\n\r\n").encode()


@pytest.fixture
def listener(softphone, tmp_path):
    port = free_udp_port()
    cfg = tmp_path / "none.toml"
    cfg.write_text("")
    p = softphone("answer", "--auto", "--config", str(cfg), "--listen", f"127.0.0.1:{port}")
    p.wait_event("listening", timeout=10)
    return p, port


def test_options_keepalive_answered(listener):
    _, port = listener
    reply = _udp_exchange(port, _request("OPTIONS", port)).decode()
    assert reply.startswith("SIP/2.0 200 ")
    for header in ("Allow:", "Accept: application/sdp", "Supported:"):
        assert header in reply, reply
    assert "INVITE" in re.search(r"^Allow: (.*)$", reply, re.M).group(1)
    # the response came back to the source port (rport), with received/rport filled in
    assert re.search(r"^Via: .*;rport=\d+", reply, re.M), reply


def test_malformed_request_gets_400_and_ua_survives(listener):
    p, port = listener
    bad = _request("OPTIONS", port, cseq_method="INVITE")  # CSeq method mismatch
    reply = _udp_exchange(port, bad).decode()
    assert reply.startswith("SIP/2.0 400 "), reply
    assert "CSeq" in reply.split("\r\n", 1)[0]
    garbage = b"\x00\xffNOT SIP AT ALL\r\n\r\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(garbage, ("127.0.0.1", port))
    reply = _udp_exchange(port, _request("OPTIONS", port)).decode()
    assert reply.startswith("SIP/2.0 200 ")
    assert p.proc.poll() is None


def test_unknown_and_unsupported_methods(listener):
    _, port = listener
    assert _udp_exchange(port, _request("FOO", port)).startswith(b"SIP/2.0 501 ")
    assert _udp_exchange(port, _request("SUBSCRIBE", port, extra="Event: presence\r\n")) \
        .startswith(b"SIP/2.0 405 ")
    assert _udp_exchange(port, _request("BYE", port, to_tag=";tag=nope")) \
        .startswith(b"SIP/2.0 481 ")


def test_registration_refreshes_before_expiry(kamailio, softphone, tmp_path):
    cfg = write_config(tmp_path / "c.toml", kamailio, "1003")
    cfg.write_text(cfg.read_text().replace("expires = 300", "expires = 10"))
    p = softphone("register", "--config", str(cfg))
    first = p.wait_event("registered", timeout=15)
    assert first["expires"] == 10
    second = p.wait_event("registered", timeout=15, since=p.mark())
    # refreshed well before the 10 s lease ran out (halfway for short leases)
    assert 3.0 <= second["t"] - first["t"] <= 8.0, (first, second)
    assert contacts_of(kamailio, "1003")
    p.send_signal(signal.SIGTERM)
    assert p.wait_exit(15) == 0


def test_forked_2xx_second_dialog_is_released(softphone, sipp, tmp_path):
    """Two 2xx with different To tags (a forking proxy's two branches answering): the caller
    ACKs both, keeps the first dialog and ends the second with BYE (RFC 3261 §13.2.2.4)."""
    port = free_udp_port()
    uas = sipp.start("uas_fork", local_port=port, timeout=20)
    trace = tmp_path / "a.txt"
    a = softphone("call", f"sip:fork@127.0.0.1:{port}", "--duration", "1", "--config",
                  str(write_config(tmp_path / "a.toml")), "--sip-trace", str(trace))
    assert a.wait_exit(15) == 0, a.diagnostics()
    assert len([e for e in a.events if e["event"] == "answered"]) == 1
    result = uas.wait(10)
    assert result.ok, result.explain()
    text = trace.read_text()
    byes = re.findall(r"^BYE .*?\nTo: [^\n]*tag=(\w+)", text, re.M | re.S)
    assert [re.sub(r"^\d+|\d+$", "", tag) for tag in byes] == ["ForkB", "ForkA"], text[-3000:]


def test_outbound_proxy_with_preloaded_route(kamailio, softphone, tmp_path):
    """The registrar's own address is unreachable (nothing on 127.0.0.1:5060); every request
    must go to the outbound proxy, carrying it as a pre-loaded Route (loose routing)."""
    proxy = f"sip:{kamailio.host}:{kamailio.port};lr"
    cfg = write_config(tmp_path / "c.toml", kamailio, "1001")
    text = cfg.read_text().replace(f'registrar = "sip:{kamailio.host}:{kamailio.port}"',
                                   f'registrar = "sip:127.0.0.1"\noutbound_proxy = "{proxy}"')
    cfg.write_text(text)
    trace = tmp_path / "t.txt"
    p = softphone("call", "sip:1999@127.0.0.1", "--config", str(cfg), "--sip-trace", str(trace))
    assert p.wait_exit(20) == 1, p.diagnostics()
    assert p.find_event("registered") is not None  # registered through the proxy
    assert "call failed: 404" in p.stderr_text()  # and the INVITE reached it too
    sent = re.findall(r"^--- \S+ sent udp (\S+)\n(\w+) [^\n]*\n((?:[^\n]+\n)*)", trace.read_text(),
                      re.M)
    assert {method for _, method, _ in sent} >= {"REGISTER", "INVITE"}
    for peer, method, headers in sent:
        assert peer == kamailio.addr, (method, peer)
        if method in ("REGISTER", "INVITE"):
            assert f"Route: <{proxy}>" in headers, (method, headers)


def test_auto_answer_delay(softphone, tmp_path):
    port = free_udp_port()
    b = softphone("answer", "--auto", "--delay", "1.5", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--duration", "0.5", "--config",
                  str(write_config(tmp_path / "a.toml")))
    ringing = a.wait_event("ringing", timeout=15)
    answered = a.wait_event("answered", timeout=10)
    assert answered["t"] - ringing["t"] >= 1.4, (ringing, answered)
    assert a.wait_exit(15) == 0, a.diagnostics()


def test_pcap_trace_opens_in_tshark(softphone, tmp_path):
    """`--sip-trace x.pcap` writes a capture that Wireshark's dissector reads as SIP."""
    from peers.procs import require_binary

    tshark = require_binary("tshark")
    port = free_udp_port()
    b = softphone("answer", "--auto", "--delay", "0.2", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)  # (a delay, so that it rings: 180 in the flow)
    pcap = tmp_path / "call.pcap"
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--duration", "0.5", "--sip-trace",
                  str(pcap), "--config", str(write_config(tmp_path / "a.toml")))
    assert a.wait_exit(15) == 0, a.diagnostics()
    import subprocess

    out = subprocess.run([tshark, "-r", str(pcap), "-Y", "sip", "-T", "fields",
                          "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "udp.dstport"],
                         capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    flow = [r[0] or r[1] for r in rows]
    assert flow == ["INVITE", "100", "180", "200", "ACK", "BYE", "200"], out.stdout + out.stderr
    assert rows[0][2] == str(port)


@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
def test_capture_with_rtp_opens_in_tshark(softphone, tmp_path, suffix):
    """`--sip-trace x.pcapng` writes pcapng (it wrote text before); `--trace-rtp` puts the
    call's RTP in the capture too, so Wireshark can play it back."""
    import subprocess

    from peers.procs import require_binary

    tshark = require_binary("tshark")
    port = free_udp_port()
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)
    capture = tmp_path / f"call{suffix}"
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--duration", "1", "--sip-trace",
                  str(capture), "--trace-rtp", "--config", str(write_config(tmp_path / "a.toml")))
    assert a.wait_exit(15) == 0, a.diagnostics()
    magic = capture.read_bytes()[:4]
    assert magic == (b"\x0a\x0d\x0d\x0a" if suffix == ".pcapng" else b"\xd4\xc3\xb2\xa1")
    sip = subprocess.run([tshark, "-r", str(capture), "-Y", "sip", "-T", "fields",
                          "-e", "sip.Method", "-e", "sip.Status-Code"],
                         capture_output=True, text=True, timeout=60)
    flow = [r.split("\t")[0] or r.split("\t")[1] for r in sip.stdout.splitlines() if r.strip()]
    assert flow[:1] == ["INVITE"] and "ACK" in flow and "BYE" in flow, sip.stdout + sip.stderr
    rtp = subprocess.run([tshark, "-r", str(capture), "-o", "rtp.heuristic_rtp:TRUE", "-Y",
                          "rtp", "-T", "fields", "-e", "rtp.p_type"],
                         capture_output=True, text=True, timeout=60)
    types = [t for t in rtp.stdout.split() if t]
    assert len(types) >= 60, rtp.stdout + rtp.stderr  # ~50 each way over a second
    assert set(types) <= {"0", "8", "9", "101", "111"}


def test_text_trace_to_stdout(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "softphone", "call", "echo", "--duration", "0.5",
                          "--sip-trace", "-", "--config",
                          str(write_config(tmp_path / "a.toml"))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert re_search(r"^--- \S+ sent udp 127\.0\.0\.1:\d+\nINVITE sip:echo@", out.stdout)
    refused = subprocess.run([sys.executable, "-m", "softphone", "call", "echo", "--sip-trace",
                              "-", "--events", "jsonl", "--config",
                              str(write_config(tmp_path / "a.toml"))],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "stdout already carries the JSON events" in refused.stderr
    rtp_text = subprocess.run([sys.executable, "-m", "softphone", "call", "echo", "--sip-trace",
                               str(tmp_path / "t.txt"), "--trace-rtp", "--config",
                               str(write_config(tmp_path / "a.toml"))],
                              capture_output=True, text=True, timeout=30)
    assert rtp_text.returncode == 2 and "--trace-rtp needs a capture" in rtp_text.stderr


def re_search(pattern: str, text: str):
    return re.search(pattern, text, re.M)
