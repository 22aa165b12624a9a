"""Headless PulseAudio for tests, through tests/audio/headless-audio.sh.

The script daemonizes Pulse and its two keep-alive readers; we become a child subreaper
first so those orphans are re-parented to us and can be reaped by PID after ``stop``
(PID 1 in this container does not reap).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .procs import (PeerTimeout, become_subreaper, reap_adopted_zombies, require_binary,
                    stop_pid, track)

SCRIPT = Path(__file__).resolve().parents[1] / "audio" / "headless-audio.sh"


class HeadlessPulse:
    """``start()`` returns the client env (XDG_RUNTIME_DIR, PULSE_SERVER, PULSE_SINK,
    PULSE_SOURCE); ``stop()`` ends the daemon and keep-alives by PID."""

    def __init__(self, run_dir: Path, rate: int | None = None) -> None:
        """``rate``: the null sinks' sample rate (default: the script's, 48 kHz)."""
        self.dir = Path(run_dir)
        self.rate = rate
        self.env: dict[str, str] = {}
        self._pids: list[int] = []

    def __repr__(self) -> str:
        return f"HeadlessPulse({self.dir}, pids={self._pids})"

    def _script(self, action: str, timeout: float) -> subprocess.CompletedProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "script.log", "ab") as log:
            return subprocess.run(["bash", str(SCRIPT), action], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                                       "HEADLESS_AUDIO_DIR": str(self.dir),
                                       **({"HEADLESS_AUDIO_RATE": str(self.rate)}
                                          if self.rate else {})})

    def start(self, timeout: float = 20.0) -> dict[str, str]:
        require_binary("pulseaudio")
        require_binary("pactl")
        require_binary("parec")
        become_subreaper()
        try:
            out = self._script("start", timeout)
        except subprocess.TimeoutExpired:
            self._collect_pids()
            self.stop()
            raise PeerTimeout(f"headless-audio.sh start took over {timeout} s; see {self.dir}") from None
        self._collect_pids()
        if out.returncode != 0:
            log = (self.dir / "script.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"headless-audio.sh start failed ({out.returncode}):\n{log}")
        self.env = {
            "XDG_RUNTIME_DIR": str(self.dir),
            "PULSE_SERVER": f"unix:{self.dir / 'pulse' / 'native'}",
            "PULSE_SINK": "spk",
            "PULSE_SOURCE": "spk.monitor",
        }
        return dict(self.env)

    def _collect_pids(self) -> None:
        files = [self.dir / "pulse" / "pid", *sorted(self.dir.glob("keepalive-*.pid"))]
        for f in files:
            try:
                pid = int(f.read_text().strip())
            except (FileNotFoundError, ValueError):
                continue
            if pid not in self._pids:
                self._pids.append(pid)
                track(pid, f"pulse {f.name}")

    def pactl(self, *args: str, timeout: float = 5.0) -> str:
        """Run pactl against this server; return stdout."""
        import os

        out = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **self.env})
        if out.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def stop(self) -> None:
        """Script stop (SIGTERM by PID files), then make sure each PID is gone and reaped."""
        try:
            self._script("stop", 15.0)
        except subprocess.TimeoutExpired:
            pass
        for pid in self._pids:
            stop_pid(pid, grace=3.0)
        self._pids.clear()
        reap_adopted_zombies({"pulseaudio", "parec"})


def record_monitor(env: dict[str, str], seconds: float, path: Path, *, source: str = "spk.monitor",
                   rate: int = 8000):
    """What a Pulse source (a sink's monitor: what the speaker plays) carries for
    ``seconds``, as int16 at ``rate`` (parec writes ``path``)."""
    import os

    import numpy as np

    from .procs import stop_popen

    with open(path, "wb") as out:
        rec = subprocess.Popen(["parec", "-d", source, "--raw", "--format=s16le",
                                f"--rate={rate}", "--channels=1", "--latency-msec=20"],
                               env={**os.environ, **env}, stdout=out, stderr=subprocess.DEVNULL)
        try:
            rec.wait(seconds)
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_popen(rec, grace=2)
    data = Path(path).read_bytes()
    return np.frombuffer(data[: len(data) // 2 * 2], "<i2")
