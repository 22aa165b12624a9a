#!/usr/bin/env python3
"""Auto-answer call rate: SIPp UAC (uac_perf.xml, -rtp_echo) → `softphone answer --auto`
and → baresip perf8k, at a ladder of rates, one load at a time, same run.

Each step starts the target fresh, generates ``rate × gen`` calls of ``hold`` ms (PCMU,
RTP both ways: the target plays an 8 kHz tone WAV, SIPp echoes it back) and samples the
target's CPU and RSS from /proc every 0.5 s. A rate is *sustained* when every call
succeeded (0 failed, SIPp exit 0). An implementation's ladder stops at its first failure.

    bench/cps.py [--rates 20,50,75,100,150,200] [--gen 12] [--hold 2000] [--quick|--smoke]
                 [--profile]   (py-spy on the softphone target; SOFTPHONE_PURE=1 to see
                                inside the SIP core, which py-spy cannot when compiled)
"""

from __future__ import annotations

import argparse
import time

from benchlib import (TARGETS, LoadResult, Profile, figure, note, ratio, require, run_dir,
                      run_load, stop_leftovers)


def ladder(impls: list[str], rates: list[float], gen_s: float, hold_ms: int,
           profile: bool = False) -> dict[str, list[LoadResult]]:
    results: dict[str, list[LoadResult]] = {i: [] for i in impls}
    alive = set(impls)
    wd = run_dir("cps")
    for rate in rates:
        for impl in impls:
            if impl not in alive:
                continue
            calls = max(1, int(round(rate * gen_s)))
            tag = f"{impl}-r{rate:g}"
            with TARGETS[impl](wd / tag) as target:
                if profile and impl == "softphone":
                    with Profile(target.pid, wd / f"{tag}.pyspy.txt") as prof:
                        res = run_load(target, rate, calls, hold_ms, wd, tag)
                    note(f"{tag} profile (py-spy, {prof.path}):\n{prof.summary()}")
                else:
                    res = run_load(target, rate, calls, hold_ms, wd, tag)
            results[impl].append(res)
            if not res.clean:
                note(f"{impl}: {rate:g}/s not sustained ({res.failure_causes or res.sipp_rc}); "
                     "ladder ends")
                alive.discard(impl)
            time.sleep(1.0)  # let the machine settle between loads
        if not alive:
            break
    return results


def report(results: dict[str, list[LoadResult]]) -> None:
    for impl, steps in results.items():
        for r in steps:
            tags = dict(impl=impl, rate=f"{r.rate:g}")
            figure("cps.step.ok_calls", r.successful, "calls", planned=r.planned, **tags)
            figure("cps.step.failed_calls", r.failed, "calls", **tags)
            figure("cps.step.cpu_avg", r.cpu_pct_avg, "%core", **tags)
            figure("cps.step.cpu_peak", r.cpu_pct_peak, "%core", **tags)
            figure("cps.step.rss_peak", r.rss_mb_peak, "MB", **tags)
    best: dict[str, LoadResult | None] = {}
    for impl, steps in results.items():
        ok = [r for r in steps if r.clean]
        best[impl] = max(ok, key=lambda r: r.rate) if ok else None
        b = best[impl]
        figure("cps.max_sustained", b.rate if b else 0, "calls/s", impl=impl)
        if b:
            figure("cps.cpu_avg_at_max", b.cpu_pct_avg, "%core", impl=impl, rate=f"{b.rate:g}")
            figure("cps.rss_peak_at_max", b.rss_mb_peak, "MB", impl=impl, rate=f"{b.rate:g}")
    # per-call cost at the highest rate every implementation sustained
    common = None
    clean_rates = [{r.rate for r in steps if r.clean} for steps in results.values()]
    if clean_rates and all(clean_rates):
        shared = set.intersection(*clean_rates)
        common = max(shared) if shared else None
    at = {impl: next((r for r in steps if r.rate == common), None)
          for impl, steps in results.items()} if common is not None else {}
    for impl, r in at.items():
        figure("cps.cpu_per_call", r.cpu_pct_per_call if r else None, "%core", impl=impl,
               rate=f"{common:g}")
    if "softphone" in results and "softphone-w2" in results:
        one, two = best.get("softphone"), best.get("softphone-w2")
        ratio("cps.ratio.workers_2_vs_1", two.rate if two else 0.0, one.rate if one else None,
              impl="softphone-w2", peer_name="softphone")
    if "softphone" in results and "baresip" in results:
        s, b = best.get("softphone"), best.get("baresip")
        ratio("cps.ratio.max_sustained", s.rate if s else 0.0, b.rate if b else None)
        if common is not None:
            sr, br = at.get("softphone"), at.get("baresip")
            ratio("cps.ratio.cpu_per_call", sr and sr.cpu_pct_per_call,
                  br and br.cpu_pct_per_call, higher_is_better=False, rate=f"{common:g}")
            ratio("cps.ratio.rss_peak", sr and sr.rss_mb_peak, br and br.rss_mb_peak,
                  higher_is_better=False, rate=f"{common:g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="20,50,75,100,150,200", help="calls/s ladder")
    ap.add_argument("--gen", type=float, default=12.0, help="seconds of call generation per step")
    ap.add_argument("--hold", type=int, default=2000, help="call duration, ms")
    ap.add_argument("--impls", default="softphone,softphone-w2,baresip")
    ap.add_argument("--quick", action="store_true", help="rates 20,50,100; 6 s per step")
    ap.add_argument("--smoke", action="store_true", help="one tiny step (tests)")
    ap.add_argument("--profile", action="store_true",
                    help="sample the softphone target with py-spy during each step (stderr)")
    a = ap.parse_args(argv)
    require("sipp", "baresip")
    rates, gen_s, hold = a.rates, a.gen, a.hold
    if a.quick:
        rates, gen_s = "20,50,100", 6.0
    if a.smoke:
        rates, gen_s, hold = "5", 0.6, 300
    try:
        results = ladder(a.impls.split(","), [float(r) for r in rates.split(",")], gen_s, hold,
                         profile=a.profile)
        report(results)
    finally:
        stop_leftovers()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
