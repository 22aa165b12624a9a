"""Smoke test for bench/: every benchmark runs in its tiny ``--smoke`` variant and prints
well-formed figure lines, including its ratio lines against the peer of the same run.

No timing assertions: the figures' values are not judged, only that the scripts run,
stop their peers, and keep the output contract (``name value unit [key=value ...]``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peers.procs import unavailable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from benchlib import FIGURE_RE  # noqa: E402

# benchmark -> (peer binaries it needs, figure names that must appear)
CASES = {
    "parse": ((), ["parse.ua_handling", "parse.parse_only", "parse.ratio.ua_handling",
                   "parse.ratio.parse_only"]),
    "startup": (("kamailio", "baresip"),
                ["startup.to_registered_median", "startup.idle_rss_median",
                 "startup.ratio.to_registered", "startup.ratio.idle_rss"]),
    "media": (("sipp", "baresip"),
              ["media.engine.cpu_per_call", "media.send_interval_p99", "media.send_jitter_p99",
               "media.call_cpu_per_call", "media.ratio.call_cpu_per_call"]),
    "cps": (("sipp", "baresip"),
            ["cps.step.ok_calls", "cps.max_sustained", "cps.cpu_per_call",
             "cps.ratio.max_sustained"]),
    "soak": (("sipp", "baresip"),
             ["soak.rss_start", "soak.rss_peak", "soak.rss_end", "soak.ratio.rss_peak"]),
    "echo_compare": ((), ["echo.erle_converged", "echo.erle_first_2s", "echo.cost_per_10ms",
                          "echo.ratio.erle_converged"]),
    "quality": (("baresip", "espeak-ng", "sox", "ip", "nft", "pulseaudio", "parec"),
                ["quality.pesq", "quality.ratio.pesq", "quality.echo.erle",
                 "quality.echo.pesq_double_talk"]),
}


def _have(binary: str) -> bool:
    return bool(shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin"))


def _run(name: str) -> tuple[list[str], str]:
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stdout.splitlines(), proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_smoke(name: str) -> None:
    needs, expected = CASES[name]
    for binary in needs:
        if not _have(binary):
            unavailable(f"{binary} not installed (run `make setup`)")
    lines, stderr = _run(name)
    assert lines, f"{name} printed no figures\n{stderr[-3000:]}"
    bad = [line for line in lines if not FIGURE_RE.match(line)]
    assert not bad, f"{name}: stdout lines that are not figures: {bad[:5]}"
    names = {line.split(" ", 1)[0] for line in lines}
    missing = [n for n in expected if n not in names]
    assert not missing, f"{name}: missing figures {missing}\n{stderr[-3000:]}"
    for line in lines:
        name_, value, unit, *tags = line.split(" ")
        float(value)  # numeric
        assert all("=" in t for t in tags), line
        if ".ratio." in name_:
            assert unit == "x" and any(t.startswith("peer=") for t in tags), line
            assert float(value) >= 0, line


def test_figure_grammar() -> None:
    """The grammar the smoke test relies on accepts figures and rejects prose."""
    assert FIGURE_RE.match("cps.max_sustained 100 calls/s impl=softphone")
    assert FIGURE_RE.match("media.send_jitter_p99 0.8123 ms impl=softphone calls=50")
    assert FIGURE_RE.match("parse.ratio.parse_only 7.5 x impl=softphone peer=pyvoip better=higher")
    assert not FIGURE_RE.match("cps max sustained: 100")
    assert not FIGURE_RE.match("cps.max_sustained fast calls/s")
    assert not FIGURE_RE.match("cps.max_sustained 100 calls/s impl softphone")
    assert re.fullmatch(r"\S+", "calls/s")
