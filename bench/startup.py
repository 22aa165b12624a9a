#!/usr/bin/env python3
"""Cold start: process start → registered at Kamailio, idle RSS, and the TUI's first frame.

Against a fresh Kamailio on loopback, alternating (same conditions for all):
- ``softphone register --events jsonl`` (account 1001): Popen → the ``registered`` line;
- ``softphone answer --auto --events jsonl`` (the same account), reported as
  impl=softphone-answer: a phone waiting for calls;
- baresip ``alice`` profile (1001 as well): Popen → "registered successfully" in its log.
Idle RSS is VmRSS one second after registration. Each process is then stopped by PID
(it unregisters). The TUI's first frame comes from bench/tui_startup.py (the TUI's own
measurement: the real ``softphone`` in a private tmux server until the dial input shows).

    bench/startup.py [--runs 5] [--tui-runs 3] [--quick|--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import threading
import time

from benchlib import (PYTHON, ROOT, figure, note, proc_sample, ratio, require, run_dir,
                      stop_leftovers, stop_popen, track)

IDLE_AFTER_S = 1.0


COMMANDS = {"softphone": ["register"], "softphone-answer": ["answer", "--auto"]}


def softphone_argv(config, impl: str = "softphone") -> list[str]:
    exe = ROOT / ".venv" / "bin" / "softphone"
    head = [str(exe)] if exe.exists() else [PYTHON, "-m", "softphone"]
    return head + COMMANDS[impl] + ["--config", str(config), "--events", "jsonl",
                                    "--duration", "30"]


def user_env() -> dict[str, str]:
    """The environment a user runs in: bytecode caches allowed (the Makefile turns them off
    for tests, which would make every start compile the whole program from source)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def softphone_once(config, timeout: float = 15.0, impl: str = "softphone"
                   ) -> tuple[float, float] | None:
    """(seconds to `registered`, idle RSS MB) for one start (a warm-up run wrote the
    bytecode caches, as an installed program has them)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(softphone_argv(config, impl), cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=user_env())
    track(proc.pid, "softphone register")
    got = threading.Event()
    when: list[float] = []

    def read() -> None:
        for raw in proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "registered" and not when:
                when.append(time.monotonic())
                got.set()
        got.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        got.wait(timeout)
        if not when:
            err = proc.stderr.read1(4000).decode(errors="replace") if proc.poll() is not None else ""
            note(f"{impl}: no `registered` within {timeout} s (rc={proc.poll()}) {err}")
            return None
        time.sleep(IDLE_AFTER_S)
        s = proc_sample(proc.pid)
        return when[0] - t0, (s.rss_kb / 1024 if s else float("nan"))
    finally:
        stop_popen(proc, grace=5.0)
        reader.join(2.0)


def baresip_once(kam, workdir, i: int, timeout: float = 15.0) -> tuple[float, float] | None:
    from peers.baresip import Baresip
    from peers.procs import PeerTimeout

    b = Baresip("alice", workdir, kamailio=kam, name=f"alice-{i}", sip_trace=False, max_life=60)
    t0 = time.monotonic()
    b.start()
    try:
        try:
            b.wait_for(r"registered successfully", timeout)
        except PeerTimeout as exc:
            note(f"baresip: {exc}")
            return None
        t = time.monotonic() - t0
        time.sleep(IDLE_AFTER_S)
        s = proc_sample(b.proc.pid)
        return t, (s.rss_kb / 1024 if s else float("nan"))
    finally:
        b.stop()


def tui_first_frame(runs: int) -> list[float]:
    try:
        import tui_startup  # the TUI's own measurement (bench/tui_startup.py)
    except ImportError:
        note("bench/tui_startup.py missing: no TUI figure")
        return []
    exe = ROOT / ".venv" / "bin" / "softphone"
    out = []
    for _ in range(runs):
        try:
            out.append(tui_startup.one_run(str(exe)))
        except Exception as exc:  # noqa: BLE001 - report and go on
            note(f"tui first frame: {exc}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tui-runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    runs, tui_runs = a.runs, a.tui_runs
    if a.quick:
        runs, tui_runs = 3, 2
    if a.smoke:
        runs, tui_runs = 1, 1
    require("kamailio", "baresip")
    from peers.kamailio import Kamailio
    from peers.phoneconfig import write_config

    wd = run_dir("startup")
    kam = Kamailio(wd / "kamailio")
    results: dict[str, list[tuple[float, float]]] = {
        "softphone": [], "softphone-answer": [], "baresip": []}
    try:
        kam.start()
        config = write_config(wd / "softphone.toml", kam, "1001")
        softphone_once(config)  # warm-up: writes the bytecode caches, not measured
        for i in range(runs):
            for impl in COMMANDS:
                r = softphone_once(config, impl=impl)
                if r:
                    results[impl].append(r)
            r = baresip_once(kam, wd, i)
            if r:
                results["baresip"].append(r)
        frames = tui_first_frame(tui_runs) if shutil.which("tmux") else []
    finally:
        kam.stop()
        stop_leftovers()
    med: dict[str, tuple[float | None, float | None]] = {}
    for impl, rs in results.items():
        if not rs:
            med[impl] = (None, None)
            continue
        reg = [x[0] * 1000 for x in rs]
        rss = [x[1] for x in rs]
        med[impl] = (statistics.median(reg), statistics.median(rss))
        figure("startup.to_registered_median", med[impl][0], "ms", impl=impl, runs=len(rs))
        figure("startup.to_registered_min", min(reg), "ms", impl=impl, runs=len(rs))
        figure("startup.to_registered_max", max(reg), "ms", impl=impl, runs=len(rs))
        figure("startup.idle_rss_median", med[impl][1], "MB", impl=impl, runs=len(rs))
    if frames:
        ms = [f * 1000 for f in frames]
        figure("startup.tui_first_frame_median", statistics.median(ms), "ms", impl="softphone",
               runs=len(ms))
        figure("startup.tui_first_frame_max", max(ms), "ms", impl="softphone", runs=len(ms))
    s, b = med.get("softphone", (None, None)), med.get("baresip", (None, None))
    ratio("startup.ratio.to_registered", s[0], b[0], higher_is_better=False)
    ratio("startup.ratio.idle_rss", s[1], b[1], higher_is_better=False)
    a = med.get("softphone-answer", (None, None))
    ratio("startup.ratio.idle_rss", a[1], b[1], impl="softphone-answer",
          higher_is_better=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
