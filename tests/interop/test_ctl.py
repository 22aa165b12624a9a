"""``softphone ctl`` driving a running ``softphone answer`` (real processes on loopback):
list, answer, DTMF, hang up, dial out, a bad command answered by an error, quit; the
accounts and the event stream; ``answer --echo`` answered by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from peers.net import free_udp_port
from peers.softphone import ctl
from peers.tone import analyse, write_tone

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


def test_answer_by_hand_hints_echoes_and_streams_events(softphone, tmp_path):
    """``softphone answer --echo`` without --auto: an incoming call prints the hint to
    answer it with ``ctl answer``; once answered that way the caller hears its own tone
    back. ``ctl accounts`` lists the accounts and ``ctl events`` (a real process) streams
    the call's events as JSON lines."""
    import json
    import subprocess
    import sys

    sock = tmp_path / "answer.sock"
    port = free_udp_port()
    cfg = config(tmp_path / "a.toml", port, sock)
    cfg.write_text(cfg.read_text() + '[[accounts]]\nname = "desk"\n'
                   'aor = "sip:alice@127.0.0.1"\nregister = false\n')
    phone = softphone("answer", "--echo", "--config", str(cfg), events=False)
    phone.wait_line("listening", timeout=15)

    rc, reply, _ = ctl(sock, "accounts")
    assert rc == 0 and [a["name"] for a in reply["result"]["accounts"]] == ["desk"], reply
    events = subprocess.Popen([sys.executable, "-m", "softphone", "ctl", "--socket", str(sock),
                               "events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        first = json.loads(events.stdout.readline())
        assert first["ok"] and first["result"] == {"streaming": True}, first
        tone = write_tone(tmp_path / "tone.wav", 700.0, seconds=3.0)
        record = tmp_path / "back.wav"
        caller = softphone("call", f"sip:alice@127.0.0.1:{port}", "--duration", "3",
                           "--play", str(tone), "--record", str(record), "--config",
                           str(config(tmp_path / "c.toml", free_udp_port())))
        phone.wait_line("incoming", timeout=15)
        hint = phone.wait_line("softphone ctl answer", timeout=5, stream="stderr")
        assert hint.startswith("softphone: answer it with 'softphone ctl answer'"), hint
        rc, reply, _ = ctl(sock, "answer")
        assert (rc, reply["ok"]) == (0, True), reply
        caller.wait_event("answered", timeout=10)
        assert caller.wait_exit(20) == 0, caller.diagnostics()
        report = analyse(record)
        assert report.has_tone(700.0), report  # the echo sent our tone back
        streamed = []
        for _ in range(50):  # bounded: the lines up to the call's end
            line = events.stdout.readline()
            if not line:
                break
            streamed.append(json.loads(line)["event"])
            if streamed[-1] == "ended":
                break
        assert streamed.index("incoming") < streamed.index("answered") < \
            streamed.index("ended"), streamed
    finally:
        events.terminate()
        events.wait(10)
    rc, reply, _ = ctl(sock, "quit")
    assert rc == 0 and phone.wait_exit(15) == 0, phone.diagnostics()
