"""Drive the softphone CLI as a real process and read its JSON-lines events (DESIGN §3).

``SoftphoneProcess("call", "sip:1002@127.0.0.1", "--duration", "2")`` runs
``python -m softphone call ... --events jsonl``; a reader thread collects one JSON object
per stdout line (each with "event" and "t"); non-JSON lines are kept apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from .procs import PeerTimeout, stop_popen, track

REPO_ROOT = Path(__file__).resolve().parents[2]


class SoftphoneProcess:
    """One softphone run. Use as a context manager, or call start()/terminate()."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 events: bool = True, python: str = sys.executable,
                 prefix: list[str] | None = None) -> None:
        # prefix: e.g. LossyLink.exec_argv(ns, []) to run inside a network namespace
        self.argv = [*(prefix or []), python, "-m", "softphone", *map(str, args)]
        if events:
            self.argv += ["--events", "jsonl"]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd or REPO_ROOT
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self.other_stdout: list[str] = []
        self._stderr: list[str] = []
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else (
            "running" if self.proc.poll() is None else f"exited {self.proc.returncode}")
        cli = self.argv[self.argv.index("softphone") + 1:]
        return f"SoftphoneProcess({' '.join(cli)!r}, {state})"

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> SoftphoneProcess:
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        track(self.proc.pid, "softphone")
        for target, stream in ((self._read_stdout, self.proc.stdout),
                               (self._read_stderr, self.proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _read_stdout(self, stream) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\r\n")
            with self._cond:
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and "event" in obj:
                    self.events.append(obj)
                else:
                    self.other_stdout.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self, stream) -> None:
        for raw in stream:
            with self._cond:
                self._stderr.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _ended(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None and \
            not any(t.is_alive() for t in self._threads)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Exit status; PeerTimeout (process left running) if it does not exit in time."""
        assert self.proc is not None, "start() first"
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise PeerTimeout(f"softphone still running after {timeout:.1f} s\n{self.diagnostics()}") from None
        for t in self._threads:
            t.join(2.0)
        return rc

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self, grace: float = 5.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` s; returns the exit status."""
        if self.proc is None:
            return None
        rc = stop_popen(self.proc, grace=grace)
        for t in self._threads:
            t.join(2.0)
        return rc

    def __enter__(self) -> SoftphoneProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.terminate()

    # --- events ---------------------------------------------------------------------
    def mark(self) -> int:
        """Number of events so far; pass as ``since`` to wait only for later ones."""
        with self._cond:
            return len(self.events)

    def find_event(self, name: str, since: int = 0, **match) -> dict | None:
        with self._cond:
            return self._find(name, since, match)

    def _find(self, name: str, since: int, match: dict) -> dict | None:
        for ev in self.events[since:]:
            if ev.get("event") == name and all(ev.get(k) == v for k, v in match.items()):
                return ev
        return None

    def wait_event(self, name: str, timeout: float = 10.0, since: int = 0, **match) -> dict:
        """First event called ``name`` (index >= ``since``) whose fields equal ``match``.

        Fails fast if the process exits without having emitted it.
        """
        return self._wait(lambda: self._find(name, since, match), timeout,
                          f"event {name!r} {match or ''}")

    def _wait(self, found, timeout: float, what: str):
        """``found()`` (under the lock) once it is not None; PeerTimeout when the time is
        up or the process exited first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = found()
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0 or self._ended():
                    why = "exited" if self._ended() else f"timed out after {timeout:.1f} s"
                    raise PeerTimeout(f"softphone {why} waiting for {what}\n"
                                      f"{self._diagnostics_locked()}")
                self._cond.wait(min(left, 0.2))

    def event_names(self) -> list[str]:
        with self._cond:
            return [e.get("event", "?") for e in self.events]

    # --- output ---------------------------------------------------------------------
    def wait_line(self, text: str, timeout: float = 10.0, stream: str = "stdout") -> str:
        """The first line of human stdout (or ``stream="stderr"``) holding ``text``;
        fails fast if the process exits without having printed it."""
        def found() -> str | None:
            lines = self.other_stdout if stream == "stdout" else \
                "".join(self._stderr).splitlines()
            return next((line for line in lines if text in line), None)

        return self._wait(found, timeout, f"{text!r} on {stream}")

    def stderr_text(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    def wait_stderr(self, text: str, timeout: float = 10.0) -> str:
        """The first stderr line holding ``text`` (notices go there); PeerTimeout when it
        does not come in time or the process exits first."""
        return self._wait(lambda: next((line for line in self._stderr if text in line), None),
                          timeout, f"{text!r} on stderr")

    def diagnostics(self) -> str:
        with self._cond:
            return self._diagnostics_locked()

    def _diagnostics_locked(self) -> str:
        rc = None if self.proc is None else self.proc.poll()
        events = "\n".join(json.dumps(e) for e in self.events[-30:])
        return (f"argv: {' '.join(self.argv)}\nrc: {rc}\n--- events\n{events}\n"
                f"--- other stdout\n{chr(10).join(self.other_stdout[-20:])}\n"
                f"--- stderr\n{''.join(self._stderr)[-3000:]}")


def ctl(socket: Path | str, *args: str, timeout: float = 30.0) -> tuple[int, dict | None, str]:
    """``softphone ctl --socket SOCKET ARGS…``: (exit status, the JSON reply, stderr)."""
    out = subprocess.run([sys.executable, "-m", "softphone", "ctl", "--socket", str(socket),
                          *args], capture_output=True, text=True, timeout=timeout,
                         cwd=REPO_ROOT)
    reply = json.loads(out.stdout.splitlines()[0]) if out.stdout.strip() else None
    return out.returncode, reply, out.stderr


def controlled(softphone, tmp_path: Path, name: str, *flags: str, kamailio=None,
               user: str | None = None, extra: str = "", listen: str | None = None):
    """``softphone answer`` with a control socket of its own (``.socket``), started."""
    from .phoneconfig import write_config

    sock = tmp_path / f"{name}.sock"
    cfg = write_config(tmp_path / f"{name}.toml", kamailio, user, codecs=["PCMU"],
                       listen=listen, extra=f'{extra}\n[control]\nsocket = "{sock}"\n')
    phone = softphone("answer", "--config", str(cfg), *flags)
    phone.socket = sock
    phone.wait_event("listening", timeout=20)
    if user is not None:
        phone.wait_event("registered", timeout=15)
    return phone
