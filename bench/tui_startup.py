"""Time from process start to the TUI's first frame, measured the way a person sees it.

Runs the real ``softphone`` in a private tmux server (120x40, null audio, empty XDG dirs)
and polls the pane until the dial input's placeholder is drawn. Prints one line per run
and the median. Usage: .venv/bin/python bench/tui_startup.py [runs]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "Enter dials"
ROOT = Path(__file__).resolve().parent.parent


def one_run(exe: str, timeout: float = 10.0) -> float:
    sock = f"softphone-bench-{os.getpid()}-{time.monotonic_ns()}"
    tmp = Path(tempfile.mkdtemp(prefix="tui-startup-"))
    # a user's environment: bytecode caches allowed (the Makefile turns them off for tests)
    env = {**os.environ, "SOFTPHONE_AUDIO": "null", "XDG_CONFIG_HOME": str(tmp / "config"),
           "XDG_DATA_HOME": str(tmp / "data"), "SOFTPHONE_DATA_DIR": str(tmp / "data"),
           "TERM": "xterm-256color"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    try:
        start = time.monotonic()
        subprocess.run(tmux + ["new-session", "-d", "-x", "120", "-y", "40", exe],
                       env=env, check=True)
        while time.monotonic() - start < timeout:
            pane = subprocess.run(tmux + ["capture-pane", "-p"], capture_output=True,
                                  text=True).stdout
            if MARKER in pane:
                return time.monotonic() - start
            time.sleep(0.005)
        raise RuntimeError(f"no first frame within {timeout} s")
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    exe = str(ROOT / ".venv" / "bin" / "softphone")
    one_run(exe)  # warm-up: writes the bytecode caches, not measured
    times = []
    for i in range(runs):
        t = one_run(exe)
        times.append(t)
        print(f"run {i + 1}: first frame after {t * 1000:.0f} ms")
    print(f"median first frame: {statistics.median(times) * 1000:.0f} ms over {runs} runs")


if __name__ == "__main__":
    main()
