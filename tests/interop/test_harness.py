"""The real-peer harness itself, checked against the real peers: if these fail, the
interop tests built on the harness cannot be trusted."""

from __future__ import annotations

import hashlib
import json
import re
import select
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from peers import (Kamailio, PeerTimeout, SoftphoneProcess, free_udp_port, sip_options_ping,
                   wav_tone)
from peers.impair import ImpairRelay, socket_in_netns
from peers.net import LOOPBACK
from peers.sipmsg import responses

pytestmark = pytest.mark.peers


# --- Kamailio ---------------------------------------------------------------------------
def test_kamailio_answers_options_on_its_own_port(kamailio: Kamailio) -> None:
    assert kamailio.running
    status = sip_options_ping(kamailio.host, kamailio.port, timeout=2.0)
    assert status is not None and status.startswith("SIP/2.0 200"), status
    # listening where the fixture says, and nowhere else (5060 stays free for others)
    sockets = kamailio.kamcmd("corex.list_sockets")
    assert set(re.findall(r"PORT: (\d+)", sockets)) == {str(kamailio.port)}, sockets
    assert set(re.findall(r"PROTO: (\w+)", sockets)) == {"udp", "tcp"}, sockets


def test_kamailio_restart_forgets_registrations(kamailio: Kamailio, sipp) -> None:
    assert sipp.register(kamailio, "1003").ok
    assert kamailio.contacts("1003")["1003"], "1003 should be registered before the restart"
    kamailio.restart()
    assert kamailio.contacts("1003")["1003"] == []
    assert sip_options_ping(kamailio.host, kamailio.port, 2.0) is not None


# --- SIPp -------------------------------------------------------------------------------
def test_sipp_registers_1001_after_401(kamailio: Kamailio, sipp) -> None:
    contact_port = free_udp_port()
    res = sipp.register(kamailio, "1001", contact_port=contact_port)
    assert res.rc == 0, res.explain()
    assert res.status_codes() == [401, 200], res.explain()
    assert any(f":{contact_port}" in c for c in kamailio.contacts("1001")["1001"])
    assert sipp.register(kamailio, "1001", contact_port=contact_port, expires=0).ok
    assert not any(f":{contact_port}" in c for c in kamailio.contacts("1001")["1001"])


def test_sipp_wrong_password_is_rejected(kamailio: Kamailio, sipp) -> None:
    contact_port = free_udp_port()
    res = sipp.register(kamailio, "1003", password="not-the-password", contact_port=contact_port)
    assert res.rc != 0, res.explain()
    assert 200 not in res.status_codes()
    assert not any(f":{contact_port}" in c for c in kamailio.contacts("1003")["1003"])
    assert "not-the-password" not in repr(res)


def _call_via_proxy(kamailio: Kamailio, sipp, uas_scenario: str, **uac_kw):
    """Register 1002 at a SIPp UAS, call it from a SIPp UAC as 1001; return both results."""
    uas_port = free_udp_port()
    assert sipp.register(kamailio, "1002", contact_port=uas_port, expires=60).ok
    try:
        uas = sipp.start(uas_scenario, local_port=uas_port, rtp_echo=True, duration_ms=300, timeout=10)
        uac = sipp.run("uac_auth", remote=kamailio.addr, service="1002", auth=("1001", "secret1001"),
                       keys={"caller": "1001"}, rtp_echo=True, timeout=10, **uac_kw)
        return uac, uas.wait()
    finally:
        sipp.register(kamailio, "1002", contact_port=uas_port, expires=0)


def test_sipp_call_through_proxy(kamailio: Kamailio, sipp) -> None:
    uac, uas = _call_via_proxy(kamailio, sipp, "uas", duration_ms=300)
    assert uac.rc == 0, uac.explain()
    assert uas.rc == 0, uas.explain()
    assert uac.status_codes()[:1] == [407]
    assert "Record-Route: <sip:127.0.0.1:%d;lr>" % kamailio.port in uas.messages()


def test_sipp_busy_uas_answers_486(kamailio: Kamailio, sipp) -> None:
    uac, uas = _call_via_proxy(kamailio, sipp, "uas_busy", duration_ms=300)
    assert uas.rc == 0, uas.explain()
    assert uac.rc != 0, "the UAC scenario expects 200, so a 486 must fail it"
    assert 486 in uac.status_codes(), uac.explain()


def test_sipp_uas_hangs_up_through_record_route(kamailio: Kamailio, sipp) -> None:
    # the UAC would hang up after 5 s; the UAS hangs up after 0.3 s, first
    uac, uas = _call_via_proxy(kamailio, sipp, "uas_hangup", duration_ms=5000)
    assert uas.rc == 0, uas.explain()
    bye = re.search(r"^BYE sip:1001@127\.0\.0\.1:\d+.*?\n(.*?)\n\n", uas.messages(), re.M | re.S)
    assert bye and f"Route: <sip:127.0.0.1:{kamailio.port};lr>" in bye.group(1), uas.explain()
    assert uac.duration < 5.0


# --- SHA-256 digest (RFC 8760) ------------------------------------------------------------
def _register_raw(kam: Kamailio, user: str, password: str, algorithm: str) -> tuple[str, str]:
    """REGISTER over a raw UDP socket answering the challenge with ``algorithm``; return
    (challenge header line, final status line)."""
    h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if algorithm == "SHA-256" else \
        (lambda s: hashlib.md5(s.encode()).hexdigest())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(3.0)
        lport = s.getsockname()[1]
        call_id, tag, ruri = uuid.uuid4().hex, uuid.uuid4().hex[:8], f"sip:{kam.domain}"

        def send(cseq: int, extra: str = "") -> str:
            msg = (f"REGISTER {ruri} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:{user}@{kam.domain}>;tag={tag}\r\n"
                   f"To: <sip:{user}@{kam.domain}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
                   f"Contact: <sip:{user}@127.0.0.1:{lport}>\r\nExpires: 0\r\n{extra}"
                   f"Content-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), (kam.host, kam.port))
            while True:
                data = s.recv(65535).decode()
                if not data.startswith("SIP/2.0 1"):
                    return data

        first = send(1)
        challenge = next(line for line in first.split("\r\n") if line.startswith("WWW-Authenticate:"))
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 2)[2]))
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        ha1, ha2 = h(f"{user}:{params['realm']}:{password}"), h(f"REGISTER:{ruri}")
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        auth = (f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
                f'nonce="{params["nonce"]}", uri="{ruri}", response="{response}", '
                f'algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}"\r\n')
        return challenge, send(2, auth).split("\r\n", 1)[0]


def test_kamailio_sha256_challenge_and_verify(kamailio_sha256: Kamailio) -> None:
    sub = kamailio_sha256.subscriber("1001")
    challenge, status = _register_raw(kamailio_sha256, sub.user, sub.password, "SHA-256")
    assert "algorithm=SHA-256" in challenge
    assert status.startswith("SIP/2.0 200"), status
    _, status_md5 = _register_raw(kamailio_sha256, sub.user, sub.password, "MD5")
    assert status_md5.startswith("SIP/2.0 401"), status_md5


def test_kamailio_md5_challenge_has_no_sha256(kamailio: Kamailio) -> None:
    sub = kamailio.subscriber("1003")
    challenge, status = _register_raw(kamailio, sub.user, sub.password, "MD5")
    assert "SHA-256" not in challenge and 'qop="auth"' in challenge
    assert status.startswith("SIP/2.0 200"), status


# --- baresip ----------------------------------------------------------------------------------
def test_baresip_bob_registers_and_stops_cleanly(kamailio: Kamailio, baresip) -> None:
    bob = baresip("bob", kamailio=kamailio)
    bob.wait_registered(timeout=5)
    assert bob.search(r"SIP/2.0 401 Unauthorized"), "bob should have been challenged"
    kamailio.wait_registered("1002", timeout=3, contains=f"127.0.0.1:{bob.sip_port}")
    rc = bob.stop()
    assert rc == 0 and not bob.running
    # /quit un-REGISTERs: the contact is gone again
    assert not any(f":{bob.sip_port}" in c for c in kamailio.contacts("1002")["1002"])


def test_baresip_call_carries_audio_both_ways(kamailio: Kamailio, baresip) -> None:
    bob = baresip("bob", kamailio=kamailio, tone_hz=880)
    alice = baresip("alice", kamailio=kamailio, tone_hz=440)
    bob.wait_registered()
    alice.wait_registered()
    mark = alice.mark()
    alice.dial("sip:1002@127.0.0.1")
    alice.wait_for("Call established", 5, since=mark)
    assert alice.search("SIP/2.0 407 Proxy Authentication Required", since=mark)
    bob.wait_for("Call established", 5)
    bob.wait_for("incoming rtp for 'audio' established", 5)
    alice.wait_for("incoming rtp for 'audio' established", 5)
    time.sleep(1.0)  # the call's length, not a synchronisation: 1 s of audio to analyse
    mark = bob.mark()
    alice.hangup()
    bob.wait_for(r"terminated \(duration", 5, since=mark)
    alice.stop()
    bob.stop()
    heard_by_bob = wav_tone(bob.recordings("dec")[-1])
    heard_by_alice = wav_tone(alice.recordings("dec")[-1])
    assert heard_by_bob["rms"] > 1000 and 420 <= heard_by_bob["freq_hz"] <= 460, heard_by_bob
    assert heard_by_alice["rms"] > 1000 and 850 <= heard_by_alice["freq_hz"] <= 910, heard_by_alice


# --- lossy link (network namespaces + nftables) ------------------------------------------------
_RECEIVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    seen, deadline = set(), time.monotonic() + 15
    s.settimeout(5.0)                     # until the first datagram
    while time.monotonic() < deadline:
        try:
            data = s.recv(2048)
        except socket.timeout:
            break
        seen.add(int(data.split(b":")[0]))
        s.settimeout(0.5)                 # idle gap that ends the burst
    print(len(seen), flush=True)
""")
_SENDER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(sys.argv[3])):
        s.sendto(b"%d:" % i + b"x" * 160, (sys.argv[1], int(sys.argv[2])))
        if i % 50 == 49:
            time.sleep(0.005)             # pacing, so the receiver's buffer is not the loss
""")


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise PeerTimeout(f"no output within {timeout} s")
    return proc.stdout.readline().strip()


def _received_through(link, loss_percent: int, count: int = 500) -> int:
    link.set_loss(link.ns_b, loss_percent)
    port = 40000
    rx = link.popen(link.ns_b, [sys.executable, "-c", _RECEIVER, link.addr_b, port],
                    stdout=subprocess.PIPE, text=True)
    try:
        assert _readline(rx, 10) == "ready"
        link.run(link.ns_a, [sys.executable, "-c", _SENDER, link.addr_b, port, count],
                 timeout=20, check=True)
        got = int(_readline(rx, 20))
        rx.wait(5)
        return got
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(5)


def test_lossy_link_drops_about_the_asked_share(lossy_link) -> None:
    assert _received_through(lossy_link, 0) >= 495
    # 500 datagrams at 20 % loss: mean 400 received, sd ~9; the band is about +-6 sd
    got = _received_through(lossy_link, 20)
    assert 345 <= got <= 455, got


def test_lossy_link_loss_on_chosen_ports_and_a_diverted_flow(lossy_link) -> None:
    """``set_loss(..., ports=)`` drops only datagrams to those ports, and with ``seed`` the
    same ones every time; ``divert_udp`` slips a relay into a flow (the far end sees the
    relay, the sender sees replies come from the port it sent to), and ``undivert_udp``
    takes it out again."""
    link = lossy_link
    target, other, client = (socket_in_netns(link.ns_b), socket_in_netns(link.ns_b),
                             socket_in_netns(link.ns_a))
    relay = None
    try:
        target.bind((link.addr_b, 0))
        other.bind((link.addr_b, 0))
        client.bind((link.addr_a, 0))
        for sock in (target, other, client):
            sock.settimeout(2.0)
        port, other_port = target.getsockname()[1], other.getsockname()[1]

        link.set_loss(link.ns_b, 100, ports=(port, port))
        client.sendto(b"lost", (link.addr_b, port))
        client.sendto(b"kept", (link.addr_b, other_port))
        assert other.recvfrom(64)[0] == b"kept"
        target.settimeout(0.3)
        with pytest.raises(socket.timeout):
            target.recvfrom(64)
        target.settimeout(2.0)
        link.set_loss(link.ns_b, 0)

        def lost_of_1000() -> set[int]:
            got: set[int] = set()
            for batch in range(0, 1000, 100):  # batches: the receive buffer never overflows
                for i in range(batch, batch + 100):
                    client.sendto(b"%d" % i, (link.addr_b, port))
                target.settimeout(0.1)
                try:
                    while True:
                        got.add(int(target.recvfrom(64)[0]))
                except socket.timeout:
                    pass
            return set(range(1000)) - got

        link.set_loss(link.ns_b, 10, ports=(port, port), seed=3)
        first = lost_of_1000()
        link.set_loss(link.ns_b, 10, ports=(port, port), seed=3)  # the pattern starts again
        assert len(first) == 100 and lost_of_1000() == first
        link.set_loss(link.ns_b, 0)
        target.settimeout(2.0)

        relay = ImpairRelay((link.addr_b, port), listen=(link.addr_b, 0), listen_netns=link.ns_b,
                            target_netns=link.ns_b, target_bind=link.addr_b, delay=0.05,
                            jitter=0.0).start()
        link.divert_udp(link.ns_b, port, relay.port)
        client.sendto(b"via relay", (link.addr_b, port))
        data, source = target.recvfrom(64)
        assert data == b"via relay" and source[0] == link.addr_b, source  # the relay's socket
        target.sendto(b"reply", source)
        data, source = client.recvfrom(64)
        assert (data, source) == (b"reply", (link.addr_b, port))
        assert relay.snapshot()["up.sent"] == 1 and relay.snapshot()["down.sent"] == 1

        link.undivert_udp(link.ns_b)
        client.sendto(b"direct", (link.addr_b, port))
        assert target.recvfrom(64) == (b"direct", client.getsockname())
    finally:
        if relay is not None:
            relay.stop()
        for sock in (target, other, client):
            sock.close()


# --- headless audio ---------------------------------------------------------------------------
_LIST_DEVICES = textwrap.dedent("""
    import json, os, pyaudio
    fd = os.dup(2); os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # ALSA/JACK probe noise
    try:
        pa = pyaudio.PyAudio()
    finally:
        os.dup2(fd, 2)
    devs = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    print(json.dumps([[d["name"], d["maxInputChannels"], d["maxOutputChannels"]] for d in devs]))
    pa.terminate()
""")


@pytest.mark.audio
def test_headless_pulse_gives_pyaudio_a_device(headless_audio, headless_pulse) -> None:
    sinks = headless_pulse.pactl("list", "short", "sinks")
    assert "spk" in sinks and "mic" in sinks
    import os

    out = subprocess.run([sys.executable, "-c", _LIST_DEVICES], capture_output=True, text=True,
                         timeout=30, env={**os.environ, **headless_audio})
    assert out.returncode == 0, out.stderr[-2000:]
    devices = json.loads(out.stdout.strip().splitlines()[-1])
    pulse = [d for d in devices if d[0] == "pulse"]
    assert pulse and pulse[0][1] > 0 and pulse[0][2] > 0, devices


# --- SoftphoneProcess helper (against a stand-in CLI, until the real one exists) -----------
_FAKE_CLI = textwrap.dedent("""
    import json, signal, sys, time
    t0 = time.monotonic()
    def emit(name, **kw):
        print(json.dumps({"event": name, "t": round(time.monotonic() - t0, 3), **kw}), flush=True)
    assert sys.argv[-2:] == ["--events", "jsonl"], sys.argv
    if sys.argv[1] == "hang":
        signal.signal(signal.SIGTERM, lambda *a: (emit("unregistered", account="a"), sys.exit(0)))
    print("not json", flush=True)
    emit("registered", account="a", expires=60)
    emit("ended", call_id="c1", reason="hangup")
    emit("ended", call_id="c2", reason="rejected", status=486)
    if sys.argv[1] == "hang":
        time.sleep(60)
    print("call failed: 486 Busy Here", file=sys.stderr, flush=True)
    sys.exit(1)
""")


@pytest.fixture
def fake_cli(tmp_path):
    pkg = tmp_path / "softphone"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(_FAKE_CLI)
    return tmp_path


def test_softphone_process_reads_events_and_exit(fake_cli) -> None:
    with SoftphoneProcess("call", cwd=fake_cli) as sp:
        assert sp.wait_event("registered", 5)["expires"] == 60
        assert sp.wait_event("ended", 5, reason="rejected")["status"] == 486
        first = sp.wait_event("ended", 5)
        assert first["call_id"] == "c1"
        after = sp.events.index(first) + 1
        assert sp.wait_event("ended", 5, since=after)["call_id"] == "c2"
        assert sp.wait_exit(5) == 1
    assert sp.stderr_text().strip() == "call failed: 486 Busy Here"
    assert sp.other_stdout == ["not json"]
    assert all(isinstance(e["t"], float | int) for e in sp.events)
    with pytest.raises(PeerTimeout):
        sp.wait_event("answered", 5)  # exited without it: fails at once, not after 5 s


def test_softphone_process_terminate_is_graceful(fake_cli) -> None:
    sp = SoftphoneProcess("hang", cwd=fake_cli).start()
    sp.wait_event("ended", 5, call_id="c2")
    assert sp.terminate(grace=5) == 0
    assert sp.event_names()[-1] == "unregistered"


def test_sipp_runs_inside_namespaces_across_the_link(lossy_link, sipp) -> None:
    link = lossy_link
    uas = sipp.start("uas", local_ip=link.addr_b, local_port=5080, media_port=6000,
                     prefix=link.exec_argv(link.ns_b, []), timeout=10)
    uac = sipp.run("uac_perf", remote=f"{link.addr_b}:5080", local_ip=link.addr_a, local_port=5080,
                   media_port=6000, service="uas", duration_ms=200,
                   prefix=link.exec_argv(link.ns_a, []), timeout=10)
    assert uac.rc == 0, uac.explain()
    assert uas.wait().rc == 0
    assert f"INVITE sip:uas@{link.addr_b}:5080" in uac.messages()


def test_impair_relay_delays_duplicates_reorders_and_maps_replies():
    """The relay itself: both directions, delay 300 ± 100 ms per hop, duplicates and
    reordering happen, replies reach the sender they belong to, the queue is bounded."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind((LOOPBACK, 0))
    stop = False

    def serve():
        echo.settimeout(0.1)
        while not stop:
            try:
                data, addr = echo.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            echo.sendto(b"echo:" + data, addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    relay = ImpairRelay(echo.getsockname(), delay=0.3, jitter=0.1, duplicate=0.2, seed=11,
                        max_queue=500).start()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        sent_at = {}
        for i in range(40):
            for n, c in enumerate(clients):
                sent_at[(n, i)] = time.monotonic()
                c.sendto(f"{n}:{i}".encode(), (LOOPBACK, relay.port))
        got: dict[int, list[tuple[str, float]]] = {0: [], 1: []}
        sel = selectors.DefaultSelector()
        for n, c in enumerate(clients):
            sel.register(c, selectors.EVENT_READ, n)
        deadline = time.monotonic() + 2.0  # > 2 hops of at most 0.4 s, plus slack
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                data = key.fileobj.recv(2048)
                got[key.data].append((data.decode(), time.monotonic()))
        sel.close()
        stats = relay.snapshot()
    finally:
        relay.stop()
        stop = True
        t.join(2)
        echo.close()
        for c in clients:
            c.close()
    for n in (0, 1):
        texts = [text for text, _ in got[n]]
        assert all(text.startswith(f"echo:{n}:") for text in texts)  # replies go home
        assert {int(text.split(":")[2]) for text in texts} == set(range(40))  # no loss set
        assert len(texts) > 40  # duplicates (in either direction) arrived
        for text, when in got[n]:  # two hops of 300 ± 100 ms each
            latency = when - sent_at[(n, int(text.split(":")[2]))]
            assert 0.39 <= latency <= 1.0, (text, latency)
    assert stats["up.duplicated"] > 0 and stats["down.duplicated"] > 0
    assert stats["up.reordered"] > 0 and stats["down.reordered"] > 0, stats
    assert stats.get("up.overflow", 0) == 0


def test_impair_relay_queue_is_bounded():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((LOOPBACK, 0))
    relay = ImpairRelay(sink.getsockname(), delay=0.3, jitter=0.0, max_queue=10).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            for i in range(30):
                c.sendto(b"x%d" % i, (LOOPBACK, relay.port))
            got = responses(sink, 1.5)
        stats = relay.snapshot()
    finally:
        relay.stop()
        sink.close()
    assert len(got) == 10 and stats["up.overflow"] == 20, stats
