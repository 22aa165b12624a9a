"""A few seconds of the fuzz targets (tests/fuzz/targets.py), in-process, seeded.

The long coverage-guided run is ``make fuzz``; this one runs the same targets on mutated
seeds so every ``make test`` checks that hostile input is rejected, counted, and never
crashes a parser or the RTP session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import targets  # noqa: E402

COUNT = int(os.environ.get("FUZZ_SHORT_EXAMPLES", "2500"))


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_short_fuzz_counts_every_reject(name):
    counters = targets.run_inprocess(name, COUNT, seed=20240)
    assert counters[f"{name}.inputs"] == COUNT + len(targets.SEEDS[name])
    for key in targets.MUST_MOVE[name]:
        assert counters[key] > 0, f"{key} never moved: {dict(counters)}"


def test_rtp_outcomes_account_for_every_packet():
    """Each packet fed to the RTP session lands in exactly one bucket."""
    counters = targets.run_inprocess("rtp", 1500, seed=7)
    buckets = ("rtp.accepted", "rtcp.accepted", "rtp.malformed_counted",
               "rtp.unknown_pt_counted", "rtp.ignored")
    assert sum(counters[b] for b in buckets) + counters["rtp.empty"] == counters["rtp.inputs"]
    assert counters["rtp.malformed_counted"] > 0 and counters["rtp.accepted"] > 0


def test_auth_never_leaks_the_password():
    counters = targets.run_inprocess("auth", 1500, seed=3)
    assert counters["auth.answered"] > 0  # the leak check in the target ran on real answers
