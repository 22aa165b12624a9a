"""What a new user gets wrong on the command line is found before anything starts (exit 2,
naming the flag and the reason) or reported in one line — never a traceback, never a
32-second wait (issue: input checks)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import wave

import pytest

from peers.net import free_udp_port


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softphone", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def loopback(tmp_path) -> str:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[network]\nlisten = "127.0.0.1:{free_udp_port()}"\n[control]\n'
                   f'enabled = false\n')
    return str(cfg)


def no_traceback(out: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr


def one_style(out: subprocess.CompletedProcess) -> None:
    """Every line on stderr starts with ``softphone: `` once, no word is said twice in a
    row, no message is said twice (a log line and the failure it became), no traceback."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, out
    cores = []
    for line in lines:
        assert line.startswith("softphone: "), line
        assert not line.removeprefix("softphone: ").startswith("softphone"), line
        assert not re.search(r"\b([a-z]+)[\s:,]+\1\b", line.lower()), line
        core = line.removeprefix("softphone: ")
        for prefix in ("warning: ", "error: ", "info: ", "call failed: "):
            core = core.removeprefix(prefix)
        cores.append(core)
    for i, core in enumerate(cores):
        for j, other in enumerate(cores):
            assert i == j or core not in other, f"said twice: {lines}"
    no_traceback(out)


def test_timeout_with_nothing_listening_gives_up_at_the_timeout(tmp_path):
    """No provisional ever comes: we give up locally at --timeout (no CANCEL may be sent
    before a provisional), instead of waiting 32 s for Timer B."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers (no ICMP either)
        port = silent.getsockname()[1]
        started = time.monotonic()
        out = run("call", f"sip:nobody@127.0.0.1:{port}", "--timeout", "2", "--config",
                  loopback(tmp_path))
        took = time.monotonic() - started
        received = []
        silent.settimeout(0.1)
        while True:
            try:
                received.append(silent.recv(65535))
            except OSError:
                break
    assert out.returncode == 1, out.stderr
    assert f"call failed: timeout (no response from 127.0.0.1:{port})" in out.stderr
    assert took < 12, took  # 2 s, plus start-up and the close; never Timer B's 32 s
    assert not any(d.startswith(b"CANCEL") for d in received)
    no_traceback(out)


def test_play_of_a_file_that_is_no_audio_is_a_usage_error(tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not a WAV file\n" * 20)
    out = run("call", "sip:x@127.0.0.1:9", "--play", str(bogus), "--config", loopback(tmp_path))
    assert out.returncode == 2
    assert f"--play: cannot read {bogus} as audio" in out.stderr
    no_traceback(out)
    out = run("answer", "--play", str(tmp_path / "missing.wav"), "--config", loopback(tmp_path))
    assert out.returncode == 2 and "--play: no such file" in out.stderr


@pytest.mark.parametrize("where, message", [
    ("dir", "is a directory; give a file name"),
    ("nodir", "no such directory"),
])
def test_record_to_a_place_that_cannot_hold_it_is_a_usage_error(tmp_path, where, message):
    target = tmp_path if where == "dir" else tmp_path / "no" / "such" / "x.wav"
    out = run("answer", "--auto", "--record", str(target), "--config", loopback(tmp_path))
    assert out.returncode == 2 and "--record:" in out.stderr and message in out.stderr
    no_traceback(out)


def test_a_recording_that_fails_mid_call_ends_with_a_notice_and_exit_1(tmp_path):
    """/dev/full accepts the open and fails every write (ENOSPC): the recording stops,
    the call goes on, the job says so and exits 1."""
    callee_port = free_udp_port()
    cfg_b = tmp_path / "b.toml"
    cfg_b.write_text(f'[network]\nlisten = "127.0.0.1:{callee_port}"\n[control]\n'
                     f'enabled = false\n')
    tone = tmp_path / "tone.wav"
    with wave.open(str(tone), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        import math
        w.writeframes(b"".join(int(8000 * math.sin(i / 8000 * 2 * math.pi * 440))
                               .to_bytes(2, "little", signed=True) for i in range(8000)))
    callee = subprocess.Popen([sys.executable, "-m", "softphone", "answer", "--auto", "--play",
                               str(tone), "--max-calls", "1", "--events", "jsonl", "--config",
                               str(cfg_b)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in callee.stdout.readline()
        out = run("call", f"sip:b@127.0.0.1:{callee_port}", "--duration", "2",
                  "--record", "/dev/full", "--events", "jsonl", "--config", loopback(tmp_path))
        assert '"answered"' in out.stdout, out.stderr
        events = [json.loads(line) for line in out.stdout.splitlines()]
        ended = next(e for e in events if e["event"] == "ended")
        assert ended["reason"] == "hangup"  # the call went on to its end
        assert out.returncode == 1
        assert "recording to /dev/full stopped" in out.stderr
        one_style(out)  # the notice and the failure: not a log line besides
    finally:
        callee.terminate()
        callee.wait(10)


@pytest.mark.parametrize("digits", ["12Z", "1 2", ""])
def test_bad_dtmf_is_refused_at_parse_time(tmp_path, digits):
    out = run("call", "sip:x@127.0.0.1:9", "--dtmf", digits, "--config", loopback(tmp_path))
    assert out.returncode == 2 and "--dtmf" in out.stderr
    no_traceback(out)


def test_dtmf_with_pauses_is_accepted(tmp_path):
    out = run("call", "sip:x@127.0.0.1:9", "--dtmf", "1,,2#", "--timeout", "1", "--config",
              loopback(tmp_path))
    assert "--dtmf" not in out.stderr  # got past parsing; the call itself times out
    assert out.returncode == 1 and "call failed: timeout" in out.stderr


@pytest.mark.parametrize("target, message", [
    ("sip:", "bad SIP URI"),
    ("Bob <sip:bob@", "bad address"),
    ("alice", "needs a host"),
    ("two words@example.com", "spaces are not allowed"),
    ("tel:123", "a tel: URI needs an account"),  # the config has no account
    ("sip:bob@127.0.0.1:9;transport=sctp", "transport 'sctp' is not supported"),
    ("http://x", "'http://x' is not a SIP URI"),
    ("mailto:bob@example.com", "is not a SIP URI"),
])
def test_bad_targets_are_usage_errors_before_a_socket_opens(tmp_path, target, message):
    out = run("call", target, "--config", loopback(tmp_path), "--events", "jsonl")
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert '"listening"' not in out.stdout  # nothing started
    no_traceback(out)


def test_a_pasted_name_addr_is_dialled_by_its_uri(tmp_path):
    out = run("call", "Bob Example <sip:bob@127.0.0.1:9>", "--timeout", "1", "--events",
              "jsonl", "--config", loopback(tmp_path))
    calling = next(json.loads(line) for line in out.stdout.splitlines()
                   if '"calling"' in line)
    assert calling["to"] == "sip:bob@127.0.0.1:9"


def test_ipv6_target_from_an_ipv4_socket_fails_at_once_saying_what_to_do(tmp_path):
    started = time.monotonic()
    out = run("call", "sip:bob@[::1]:5060", "--config", loopback(tmp_path))
    assert time.monotonic() - started < 10
    assert out.returncode == 2, out.stderr
    assert "IPv6" in out.stderr and "--listen [::]:0" in out.stderr
    no_traceback(out)


def test_bad_audio_environment_and_delay_without_auto_are_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "softphone", "answer", "--config",
                          loopback(tmp_path)], capture_output=True, text=True, timeout=30,
                         env={**__import__("os").environ, "SOFTPHONE_AUDIO": "bogus"})
    assert out.returncode == 2 and "SOFTPHONE_AUDIO: must be one of pyaudio, null" in out.stderr
    out = run("answer", "--delay", "2", "--config", loopback(tmp_path))
    assert out.returncode == 2 and "--delay needs --auto" in out.stderr


def test_sigint_while_ringing_exits_1(tmp_path):
    """The call did not happen: that is a failure for a script, not a success."""
    import signal

    callee_port = free_udp_port()
    cfg_b = tmp_path / "b.toml"
    cfg_b.write_text(f'[network]\nlisten = "127.0.0.1:{callee_port}"\n[control]\n'
                     f'enabled = false\n')
    callee = subprocess.Popen([sys.executable, "-m", "softphone", "answer", "--events",
                               "jsonl", "--config", str(cfg_b)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in callee.stdout.readline()
        caller = subprocess.Popen([sys.executable, "-m", "softphone", "call",
                                   f"sip:b@127.0.0.1:{callee_port}", "--events", "jsonl",
                                   "--config", loopback(tmp_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        for _ in range(20):  # bounded: the lines up to "ringing"
            line = caller.stdout.readline()
            if '"ringing"' in line or not line:
                break
        assert '"ringing"' in line
        caller.send_signal(signal.SIGINT)
        _, err = caller.communicate(timeout=15)
        assert caller.returncode == 1 and "interrupted before the answer" in err
    finally:
        callee.terminate()
        callee.wait(10)


def test_call_prints_progress_lines_without_jsonl(softphone, tmp_path):
    """Without --events the user still sees the call progress: calling, ringing, answered
    and ended, one line each, on stdout (issue 9: it printed nothing while ringing)."""
    callee_port = free_udp_port()
    cfg_b = tmp_path / "b.toml"
    cfg_b.write_text(f'[network]\nlisten = "127.0.0.1:{callee_port}"\n[control]\n'
                     f'enabled = false\n')
    callee = softphone("answer", "--auto", "--delay", "0.3", "--max-calls", "1", "--config",
                       str(cfg_b))
    callee.wait_event("listening", timeout=15)
    caller = softphone("call", f"sip:b@127.0.0.1:{callee_port}", "--duration", "0.3",
                       "--config", loopback(tmp_path), events=False)
    assert caller.wait_exit(20) == 0, caller.diagnostics()
    lines = caller.other_stdout
    firsts = [line.split(" ", 1)[0] for line in lines]
    for name in ("calling", "ringing", "answered", "ended"):
        assert name in firsts, lines
    assert firsts.index("calling") < firsts.index("ringing") < firsts.index("answered") \
        < firsts.index("ended")
    assert any(f"to=sip:b@127.0.0.1:{callee_port}" in line for line in lines
               if line.startswith("calling")), lines
    assert not any(line.startswith("{") for line in lines)


@pytest.mark.parametrize("args", [
    ("call",),
    ("call", "sip:x@127.0.0.1", "--dtmf", "12Z"),
    ("bogus",),
    ("answer", "--delay", "1"),
    ("register", "--config", "/nonexistent/c.toml"),
    ("call", "sip:x@[::1]"),
    ("call", "sip:x@127.0.0.1:9", "--timeout", "0.5"),
    ("call", "sip:x@127.0.0.1:9", "--play", "/nonexistent.wav"),
    ("call", "sip:x@127.0.0.1:9;transport=tcp"),  # nothing listens: connect refused
    ("ctl", "--socket", "/nonexistent/s.sock", "status"),
])
def test_every_error_line_has_one_style(tmp_path, args):
    """One prefix style for every error (``softphone: ...``), no word said twice in a row,
    no traceback — whatever failed (argparse, config, usage, SIP, ctl)."""
    if "--config" not in args and args[0] != "ctl":
        args = (*args, "--config", loopback(tmp_path))
    out = run(*args)
    assert out.returncode in (1, 2), out
    one_style(out)
