#!/usr/bin/env python3
"""Run every benchmark, one after the other (never two loads at once), on loopback.

Each benchmark is its own process; its stdout is figure lines only
(``name value unit [key=value ...]``, see benchlib.FIGURE_RE), echoed here and collected in
run/bench/results.txt; progress goes to stderr. Each ends with ratio lines against a
peer measured in the same invocation. Figures are noisy on a shared 2-core machine:
``env.load1`` before each benchmark says how busy it was.

    bench/run_all.py                 everything (≈ 15–18 min)
    bench/run_all.py --quick         shorter ladders and windows (≈ 6 min)
    bench/run_all.py --only cps,soak one or more of: parse startup media cps soak quality
                                     echo_compare
    bench/run_all.py --smoke         tiny variants (what tests/test_bench_smoke.py runs)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib import FIGURE_RE, RUN, figure, note, stop_popen  # noqa: E402

ORDER = ("parse", "startup", "media", "cps", "soak", "quality", "echo_compare")
LIMIT_S = {"parse": 120, "startup": 180, "media": 600, "cps": 900, "soak": 600, "quality": 720,
           "echo_compare": 300}


def run_one(name: str, mode: list[str], extra: list[str], sink) -> int:
    argv = [sys.executable, str(BENCH / f"{name}.py"), *mode, *extra]
    note(f"== {name}: {' '.join(argv[1:])}")
    figure("env.load1", os.getloadavg()[0], "load", bench=name, cpus=os.cpu_count())
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=BENCH.parent, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    bad = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if not FIGURE_RE.match(line):
                bad += 1
                note(f"{name}: not a figure line: {line!r}")
                continue
            print(line, flush=True)
            sink.write(line + "\n")
            sink.flush()
        proc.wait(LIMIT_S[name])
    except subprocess.TimeoutExpired:
        note(f"{name}: over {LIMIT_S[name]} s, stopping it")
        stop_popen(proc, grace=10)  # its session too: the peers it started
    figure("run.wall_time", time.monotonic() - t0, "s", bench=name, rc=proc.returncode)
    return proc.returncode or (1 if bad else 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(ORDER), help="comma list of " + " ".join(ORDER))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true")
    g.add_argument("--smoke", action="store_true")
    a, extra = ap.parse_known_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}; have {' '.join(ORDER)}")
    if extra and len(names) != 1:
        ap.error(f"extra arguments {extra} need exactly one --only benchmark")
    mode = ["--quick"] if a.quick else ["--smoke"] if a.smoke else []
    RUN.mkdir(parents=True, exist_ok=True)
    failed = []
    with open(RUN / "results.txt", "w") as sink:
        for name in ORDER:
            if name in names and run_one(name, mode, extra, sink) != 0:
                failed.append(name)
    note(f"figures in {RUN / 'results.txt'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
