"""``softphone ctl`` driving a running ``softphone answer`` (real processes on loopback):
list, answer, DTMF, hang up, dial out, a bad command answered by an error, quit."""

from __future__ import annotations

from pathlib import Path

import pytest

from peers.net import free_udp_port
from peers.softphone import ctl

pytestmark = pytest.mark.timeout(90)


def config(path: Path, port: int, socket: Path | None = None) -> Path:
    text = f'[network]\nlisten = "127.0.0.1:{port}"\nrate_limit = 0\n[audio]\ncodecs = ["PCMU"]\n'
    if socket is not None:
        text += f'[control]\nsocket = "{socket}"\n'
    path.write_text(text)
    return path


def test_ctl_drives_a_running_answer(softphone, tmp_path):
    sock = tmp_path / "answer.sock"
    port, echo_port = free_udp_port(), free_udp_port()
    phone = softphone("answer", "--config", str(config(tmp_path / "a.toml", port, sock)))
    listening = phone.wait_event("listening", timeout=15)
    assert listening["control"] == str(sock)
    echo = softphone("answer", "--auto", "--echo", "--config",
                     str(config(tmp_path / "e.toml", echo_port)))
    echo.wait_event("listening", timeout=15)

    rc, reply, _ = ctl(sock, "calls")
    assert (rc, reply) == (0, {"ok": True, "result": {"calls": []}})

    caller = softphone("call", f"sip:alice@127.0.0.1:{port}", "--duration", "30", "--config",
                       str(config(tmp_path / "c.toml", free_udp_port())))
    incoming = phone.wait_event("incoming", timeout=15)
    rc, reply, _ = ctl(sock, "calls")
    assert rc == 0 and [(c["call_id"], c["state"]) for c in reply["result"]["calls"]] == [
        (incoming["call_id"], "ringing")]
    rc, reply, _ = ctl(sock, "answer")
    assert (rc, reply["ok"]) == (0, True), reply
    caller.wait_event("answered", timeout=10)
    rc, reply, _ = ctl(sock, "dtmf", "5#")
    assert rc == 0 and reply["result"]["digits"] == "5#", reply
    rc, reply, _ = ctl(sock, "dtmf", "5Z")
    assert rc == 1 and reply == {"ok": False, "error": "dtmf: digits: 'Z' is not a DTMF "
                                                       "digit (use 0-9 * # A-D, ',' for a pause)"}
    rc, reply, _ = ctl(sock, "hangup", f"call_id={incoming['call_id']}")
    assert rc == 0 and reply["result"]["reason"] == "hangup", reply
    ended = caller.wait_event("ended", timeout=10)
    assert ended["reason"] == "remote-hangup"
    assert caller.wait_exit(10) == 0

    rc, reply, _ = ctl(sock, "dial", f"sip:echo@127.0.0.1:{echo_port}")
    assert rc == 0 and reply["ok"], reply
    out_id = reply["result"]["call_id"]
    echo.wait_event("answered", timeout=10)
    phone.wait_event("answered", timeout=10)
    rc, reply, _ = ctl(sock, "hangup")  # the only live call
    assert rc == 0 and reply["result"]["call_id"] == out_id

    rc, reply, _ = ctl(sock, "frobnicate")  # an unknown command: the phone says so, no crash
    assert rc == 1 and "unknown command 'frobnicate'" in reply["error"]
    rc, reply, err = ctl(sock, "frobnicate", "now")  # a bare word we cannot place: usage
    assert rc == 2 and "unexpected argument 'now'" in err
    rc, reply, _ = ctl(sock, "calls")
    assert rc == 0 and len(reply["result"]["calls"]) == 2  # still running, both calls kept

    rc, reply, _ = ctl(sock, "quit")
    assert (rc, reply) == (0, {"ok": True, "result": {}})
    assert phone.wait_exit(15) == 0, phone.diagnostics()
    assert not sock.exists()

    rc, reply, err = ctl(sock, "calls")  # nobody there any more
    assert rc == 1 and reply is None and "no running softphone" in err
