"""The real ``softphone`` program in a private tmux server: dial echo, watch the call
run, hang up with h, quit with q. Only the tmux server this test started is killed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from softphone.history import History

pytestmark = pytest.mark.timeout(60)

EXE = Path(sys.executable).parent / "softphone"


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", f"softphone-test-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                     "-f", "/dev/null"]
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.base + list(args), env=self.env, capture_output=True,
                              text=True, check=check, timeout=10)

    def pane(self) -> str:
        return self.run("capture-pane", "-p", check=False).stdout

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.pane()
            found = predicate(text)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def alive(self) -> bool:
        return self.run("has-session", check=False).returncode == 0

    def kill(self) -> None:
        self.run("kill-server", check=False)


DURATION = re.compile(r"connected\s+\S+\s+(\d\d):(\d\d)")


def duration_seconds(text: str) -> int | None:
    m = DURATION.search(text)
    return int(m.group(1)) * 60 + int(m.group(2)) if m else None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_softphone_dials_echo_in_tmux(tmp_path):
    assert EXE.exists(), f"{EXE} missing: pip install -e ."
    data = tmp_path / "data"
    env = {**os.environ, "SOFTPHONE_AUDIO": "null", "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "SOFTPHONE_DATA_DIR": str(data),
           "TERM": "xterm-256color"}
    tmux = Tmux(env)
    try:
        tmux.run("new-session", "-d", "-x", "120", "-y", "40", str(EXE))
        tmux.wait(lambda t: "Enter dials" in t, 15, "the first frame")
        tmux.wait(lambda t: "listening on" in t, 15, "the UA to listen")
        assert "No account configured" in tmux.pane()
        tmux.run("send-keys", "echo")
        tmux.run("send-keys", "Enter")
        first = tmux.wait(lambda t: duration_seconds(t) is not None, 20, "connected")
        assert "PCMU" in tmux.pane() or "opus" in tmux.pane() or "G722" in tmux.pane()
        tmux.wait(lambda t: (duration_seconds(t) or 0) > first, 5,
                  "the duration to increase")
        tmux.run("send-keys", "h")
        tmux.wait(lambda t: "ended: hangup" in t, 10, "the call to end")
        tmux.run("send-keys", "q")
        deadline = time.monotonic() + 10
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tmux.alive(), "softphone did not quit on q"
    finally:
        tmux.kill()
    records = History(data / "history.sqlite3").recent()
    assert [(r.party, r.outcome) for r in records] == [("echo", "answered")]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_verbose_logs_go_to_a_file_not_the_screen(tmp_path):
    """`softphone -vv`: debug logs in softphone.log in the data dir, the screen says where,
    and not one log line lands on the terminal Textual draws on."""
    data = tmp_path / "data"
    env = {**os.environ, "SOFTPHONE_AUDIO": "null", "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "SOFTPHONE_DATA_DIR": str(data),
           "TERM": "xterm-256color"}
    tmux = Tmux(env)
    log_file = data / "softphone.log"
    try:
        tmux.run("new-session", "-d", "-x", "120", "-y", "40", str(EXE), "-vv",
                 "--listen", "127.0.0.1:0")
        tmux.wait(lambda t: "listening on 127.0.0.1:" in t, 15, "the UA to listen")
        tmux.run("send-keys", "F3")  # the event log says where the logs go
        tmux.wait(lambda t: f"logs go to {log_file}" in t.replace("\n", ""), 10,
                  "the log file named in the event log")
        tmux.run("send-keys", "Escape")  # alone: ESC and a letter at once read as alt+letter
        tmux.wait(lambda t: "Enter dials" in t, 10, "the main screen again")
        tmux.run("send-keys", "echo")
        tmux.run("send-keys", "Enter")
        tmux.wait(lambda t: duration_seconds(t) is not None, 20, "connected")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and " DEBUG " not in (
                log_file.read_text() if log_file.exists() else ""):
            time.sleep(0.1)
        text = log_file.read_text()
        assert " DEBUG " in text and "sent to udp" in text
        screen = tmux.pane()
        assert "DEBUG" not in screen and "INFO" not in screen
        tmux.run("send-keys", "F7")  # hang up from anywhere
        tmux.wait(lambda t: "ended: hangup" in t, 10, "the call to end")
        tmux.run("send-keys", "C-q")
        deadline = time.monotonic() + 10
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tmux.alive(), "softphone did not quit on ctrl+q"
    finally:
        tmux.kill()
