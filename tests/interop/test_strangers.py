"""No ghost calls: SIP scanners (sipvicious svwar/svmap, the "friendly-scanner") against a
registered ``answer --auto`` phone on loopback behind Kamailio. Nothing rings, nothing
crashes, the phone stays registered, and calls through Kamailio still get through; a
request to the exact Contact it registered is taken from anyone (who else knows it?)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peers.phoneconfig import write_config
from peers.procs import unavailable
from peers.sipmsg import responses, sip_request, status, stream_response

pytestmark = pytest.mark.peers


def scanner(name: str) -> str:
    """The sipvicious entry point (installed with the test extra beside this Python)."""
    path = Path(sys.executable).with_name(f"sipvicious_{name}")
    if not path.exists():
        found = shutil.which(f"sipvicious_{name}")
        if found is None:
            unavailable(f"sipvicious_{name} (pip install -e '.[test]')")
        return found
    return str(path)


def scan(tool: str, args: list[str], home: Path) -> str:
    """Run one bounded scan; its report (stdout + stderr)."""
    home.mkdir(exist_ok=True)
    out = subprocess.run([scanner(tool), *args], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "HOME": str(home)}, stdin=subprocess.DEVNULL)
    return out.stdout + out.stderr


def registered_answerer(softphone, kamailio, tmp_path, policy: str = "reject"):
    port = _free_port()
    cfg = write_config(tmp_path / f"b-{policy}.toml", kamailio, "1002",
                       listen=f"127.0.0.1:{port}", extra=f'[sip]\nstranger_policy = "{policy}"')
    phone = softphone("answer", "--auto", "--config", str(cfg))
    phone.wait_event("registered", timeout=15)
    return phone, port


def _free_port() -> int:
    from peers.net import free_udp_port

    return free_udp_port()


def call_through_kamailio(softphone, kamailio, tmp_path) -> dict:
    caller = softphone("call", "sip:1002@127.0.0.1", "--duration", "0.5", "--config",
                       str(write_config(tmp_path / "a.toml", kamailio, "1001", register=False)))
    answered = caller.wait_event("answered", timeout=20)
    assert caller.wait_exit(15) == 0, caller.diagnostics()
    return answered


def test_svwar_invite_sweep_and_svmap_ring_nothing(kamailio, softphone, tmp_path):
    kamailio.restart()  # no stale 1002 bindings from earlier tests of this module
    phone, port = registered_answerer(softphone, kamailio, tmp_path)
    report = scan("svwar", ["-m", "INVITE", "-e", "100-300", "--force", "-t", "0.01",
                            "--maximumtime", "3", f"udp://127.0.0.1:{port}"], tmp_path / "home")
    found = re.findall(r"^\|\s*(\d+)\s*\|", report, re.M)
    assert found == [], report[-3000:]  # no extension stands out: every answer is a 403
    survey = scan("svmap", ["-p", str(port), "-t", "0.01", "127.0.0.1"], tmp_path / "home")
    assert phone.find_event("incoming") is None, phone.diagnostics()
    assert phone.proc.poll() is None, phone.diagnostics()  # still running
    assert phone.find_event("registration_failed") is None
    assert phone.find_event("unregistered") is None
    assert kamailio.contacts("1002")["1002"], kamailio.ul_dump()
    # svmap saw a SIP device answer (403): it says so, and nothing more came of it
    assert "127.0.0.1" in survey, survey[-2000:]
    answered = call_through_kamailio(softphone, kamailio, tmp_path)
    assert phone.wait_event("answered", timeout=5)["call_id"] == answered["call_id"]
    assert phone.terminate() == 0


def test_dropped_strangers_get_no_answer_and_the_contact_is_taken_from_anyone(
        kamailio, softphone, tmp_path):
    kamailio.restart()
    phone, port = registered_answerer(softphone, kamailio, tmp_path, policy="drop")
    (contact,) = kamailio.wait_registered("1002", timeout=5)
    token_uri = re.search(r"sip:[^;>]+", contact).group(0)
    assert re.match(r"sip:1002-[0-9a-f]{16}@127\.0\.0\.1:\d+$", token_uri), contact
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        here = sock.getsockname()[1]
        for method, ruri in (("INVITE", f"sip:1002@127.0.0.1:{port}"),
                             ("OPTIONS", f"sip:100@127.0.0.1:{port}"),
                             ("INVITE", f"sip:1002-0000000000000000@127.0.0.1:{port}")):
            sock.sendto(sip_request(method, ruri, "127.0.0.1", here), ("127.0.0.1", port))
            assert responses(sock, 1.0) == [], (method, ruri)  # dropped: not a byte back
        # the exact Contact (token and all) is how the registrar reaches us: accepted
        sock.sendto(sip_request("OPTIONS", token_uri, "127.0.0.1", here), ("127.0.0.1", port))
        got = responses(sock, 5.0, until=lambda statuses: 200 in statuses)
        assert [status(d) for d in got] == [200], got
    assert phone.find_event("incoming") is None
    call_through_kamailio(softphone, kamailio, tmp_path)
    assert phone.wait_event("answered", timeout=5)
    assert phone.terminate() == 0


def test_without_a_registering_account_anyone_may_call(softphone, tmp_path):
    """The test-endpoint mode: no account, every caller is accepted, as before."""
    port = _free_port()
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)
    a = softphone("call", f"sip:anyone@127.0.0.1:{port}", "--duration", "0.5", "--config",
                  str(write_config(tmp_path / "a.toml")))
    assert a.wait_event("answered", timeout=15)
    assert a.wait_exit(15) == 0, a.diagnostics()
    assert b.wait_exit(10) == 0, b.diagnostics()


def test_accept_policy_lets_a_stranger_call_a_registered_phone(kamailio, softphone, tmp_path):
    """``stranger_policy = "accept"``: the old behaviour on purpose — a caller that is not
    the registrar, straight to the phone's address, is answered; the phone stays
    registered."""
    kamailio.restart()
    phone, port = registered_answerer(softphone, kamailio, tmp_path, policy="accept")
    stranger = softphone("call", f"sip:1002@127.0.0.1:{port}", "--duration", "0.5",
                         "--config", str(write_config(tmp_path / "s.toml")))
    answered = stranger.wait_event("answered", timeout=15)
    assert stranger.wait_exit(15) == 0, stranger.diagnostics()
    assert phone.wait_event("answered", timeout=5)["call_id"] == answered["call_id"]
    assert phone.find_event("registration_failed") is None
    assert kamailio.contacts("1002")["1002"], kamailio.ul_dump()
    assert phone.terminate() == 0


def test_over_tcp_only_the_registration_connection_is_the_registrar(kamailio, softphone,
                                                                    tmp_path):
    """Registered over TCP: a new connection from the registrar's own address (127.0.0.1,
    as Kamailio's) is a stranger (403), judged by the connection, not the address; the
    call Kamailio sends over the connection the phone opened is answered."""
    kamailio.restart()
    port = _free_port()
    cfg = write_config(tmp_path / "b.toml", kamailio, "1002", transport="tcp",
                       listen=f"127.0.0.1:{port}")
    phone = softphone("answer", "--auto", "--config", str(cfg))
    phone.wait_event("registered", timeout=15)
    for method in ("OPTIONS", "INVITE"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            here = conn.getsockname()[1]
            conn.sendall(sip_request(method, f"sip:1002@127.0.0.1:{port}", "127.0.0.1", here,
                                     proto="TCP"))
            got = stream_response(conn)  # bounded by the socket's 5 s timeout
        assert status(got) == 403, (method, got[:300])
    assert phone.find_event("incoming") is None
    answered = call_through_kamailio(softphone, kamailio, tmp_path)
    assert phone.wait_event("answered", timeout=5)["call_id"] == answered["call_id"]
    assert phone.terminate() == 0
