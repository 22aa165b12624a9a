"""The long, coverage-guided fuzz run (``make fuzz``): atheris over every network parser.

FUZZ_EXAMPLES (default 1,000,000) inputs in total, shared by the targets by weight;
FUZZ_JOBS targets run at once (default: the CPU count); FUZZ_SEED fixes libFuzzer's seed
(default 1, so a run can be repeated). Each target runs in its own process from the seed
corpus in targets.py; a crash leaves its input as ``crash-*`` in the run directory, which
the failure message names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import targets

RUNNER = Path(__file__).resolve().parent / "run_atheris.py"
TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "1000000"))
JOBS = max(1, int(os.environ.get("FUZZ_JOBS", str(os.cpu_count() or 1))))
SEED = int(os.environ.get("FUZZ_SEED", "1"))
WEIGHTS = {"sip": 0.3, "sdp": 0.25, "auth": 0.2, "rtp": 0.25}
MAX_LEN = {"sip": 4096, "sdp": 2048, "auth": 1024, "rtp": 1500}

pytest.importorskip("atheris")


class Run:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.runs = max(1000, int(TOTAL * WEIGHTS[name]))
        self.dir = workdir / name
        corpus = self.dir / "corpus"
        corpus.mkdir(parents=True)
        for i, seed in enumerate(targets.SEEDS[name]):
            (corpus / f"seed-{i}").write_bytes(seed)
        self.counters_path = self.dir / "counters.json"
        self.log_path = self.dir / "libfuzzer.log"
        self.argv = [sys.executable, str(RUNNER), name, str(self.counters_path),
                     f"-runs={self.runs}", f"-max_len={MAX_LEN[name]}", "-timeout=10",
                     "-rss_limit_mb=1536", f"-seed={SEED}", "-print_final_stats=1",
                     f"-artifact_prefix={self.dir}/", str(corpus)]
        self.proc: subprocess.Popen | None = None
        self.started = self.ended = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def poll(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is None:
            return False
        if not self.ended:
            self.ended = time.monotonic()
            self._log.close()
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.poll()


@pytest.fixture(scope="module")
def fuzz_runs(tmp_path_factory) -> dict[str, Run]:
    """Every target, JOBS at a time; bounded by a generous wall-clock limit."""
    workdir = tmp_path_factory.mktemp("fuzz")
    pending = [Run(name, workdir) for name in WEIGHTS]
    done: dict[str, Run] = {}
    running: list[Run] = []
    deadline = time.monotonic() + 60 + TOTAL / 200  # far beyond the ~1,000 inputs/s seen
    try:
        while (pending or running) and time.monotonic() < deadline:
            while pending and len(running) < JOBS:
                run = pending.pop(0)
                run.start()
                running.append(run)
            for run in [r for r in running if r.poll()]:
                running.remove(run)
                done[run.name] = run
            time.sleep(0.2)  # polling child processes, not synchronising with them
    finally:
        for run in running + pending:
            run.stop()
    return done


@pytest.mark.timeout(0)
@pytest.mark.parametrize("name", list(WEIGHTS))
def test_long_fuzz(fuzz_runs, name):
    assert name in fuzz_runs, f"{name}: not finished within the time limit"
    run = fuzz_runs[name]
    log = run.log_path.read_text(errors="replace")
    crashes = sorted(p.name for p in run.dir.glob("crash-*")) + \
        sorted(p.name for p in run.dir.glob("timeout-*")) + \
        sorted(p.name for p in run.dir.glob("oom-*"))
    assert run.proc.returncode == 0 and not crashes, \
        f"{name}: rc={run.proc.returncode} artefacts={crashes} in {run.dir}\n{log[-4000:]}"
    m = re.search(r"^Done (\d+) runs in (\d+) second", log, re.M)
    assert m, log[-2000:]
    executed = int(m.group(1))
    assert executed >= run.runs
    counters = json.loads(run.counters_path.read_text())
    assert counters[f"{name}.inputs"] >= run.runs - len(targets.SEEDS[name])
    for key in targets.MUST_MOVE[name]:
        assert counters.get(key, 0) > 0, f"{name}: counter {key} never moved: {counters}"
    seconds = run.ended - run.started
    targets.SUMMARY.append(
        f"{name}: {executed} inputs in {seconds:.0f} s ({executed / seconds:.0f}/s), 0 crashes; "
        + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
