#!/usr/bin/env python3
"""Memory over a soak: 4,000 SIPp calls (uac_perf.xml, -rtp_echo, 2 s) at a moderate rate
against `softphone answer --auto`, then the same against baresip perf8k.

25 calls/s for 160 s: ended calls are kept 32 s (64×T1) to absorb retransmissions, and
the allocator's high-water mark only settles after ~100 s (2,000 calls showed a last-half
slope of 12.6 MB/min that a 4,000-call run shows flat, 0.3 MB/min), so the last half
(80–160 s) is the steady state. RSS is sampled
every 0.5 s across the soak. Figures: RSS at start (idle, before the
first call), peak, end (idle again, ``--settle`` s after the last call), and the slope
of RSS over the last half of the call generation (MB/min; bounded memory ≈ 0).

    bench/soak.py [--calls 4000] [--rate 25] [--hold 2000] [--quick|--smoke]
"""

from __future__ import annotations

import argparse
import time

from benchlib import (TARGETS, figure, note, proc_sample, ratio, require, run_dir, run_load,
                      slope_per_min, stop_leftovers)


def soak(impl: str, calls: int, rate: float, hold_ms: int, settle: float) -> dict | None:
    wd = run_dir("soak")
    tag = f"{impl}-soak"
    with TARGETS[impl](wd / tag) as target:
        start = proc_sample(target.pid)
        res = run_load(target, rate, calls, hold_ms, wd, tag)
        time.sleep(settle)
        end = proc_sample(target.pid)
    ss = res.samples
    if not ss or start is None or end is None:
        return None
    t0 = ss[0].t
    gen_end = t0 + calls / rate
    half = [(s.t - t0, s.rss_kb / 1024) for s in ss if t0 + (gen_end - t0) / 2 <= s.t <= gen_end]
    return {"ok": res.successful, "failed": res.failed, "planned": calls,
            "start": start.rss_kb / 1024, "peak": max(s.rss_kb for s in ss) / 1024,
            "end": end.rss_kb / 1024, "slope": slope_per_min(half), "samples": len(ss)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=25.0)
    ap.add_argument("--hold", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--impls", default="softphone,baresip")
    ap.add_argument("--quick", action="store_true", help="600 calls (no steady state: a quick look)")
    ap.add_argument("--smoke", action="store_true", help="a handful of short calls (tests)")
    a = ap.parse_args(argv)
    calls, rate, hold, settle = a.calls, a.rate, a.hold, a.settle
    if a.quick:
        calls = 600
    if a.smoke:
        calls, rate, hold, settle = 6, 10.0, 300, 0.5
    require("sipp", "baresip")
    out: dict[str, dict | None] = {}
    try:
        for impl in a.impls.split(","):
            out[impl] = soak(impl, calls, rate, hold, settle)
            time.sleep(1.0)
    finally:
        stop_leftovers()
    for impl, r in out.items():
        if r is None:
            note(f"{impl}: soak gave no samples")
            continue
        tags = dict(impl=impl, calls=calls, rate=f"{rate:g}")
        figure("soak.ok_calls", r["ok"], "calls", planned=r["planned"], **tags)
        figure("soak.failed_calls", r["failed"], "calls", **tags)
        figure("soak.rss_start", r["start"], "MB", **tags)
        figure("soak.rss_peak", r["peak"], "MB", **tags)
        figure("soak.rss_end", r["end"], "MB", **tags)
        figure("soak.rss_end_minus_start", r["end"] - r["start"], "MB", **tags)
        figure("soak.rss_slope_last_half", r["slope"], "MB/min", **tags)
    s, b = out.get("softphone"), out.get("baresip")
    ratio("soak.ratio.rss_peak", s and s["peak"], b and b["peak"], higher_is_better=False)
    ratio("soak.ratio.rss_end", s and s["end"], b and b["end"], higher_is_better=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
