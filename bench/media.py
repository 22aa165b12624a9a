#!/usr/bin/env python3
"""Concurrent calls with media: CPU per call and RTP send-interval jitter at N calls.

For each N (default 1, 50, 100, 200), PCMU 20 ms, 8 kHz tone WAV source:

1. engine: a child process (media_worker.py) runs N softphone RtpSessions sending to a
   reflector socket here, which echoes every packet back (so the sessions also receive,
   decode and play out) and records its *kernel* arrival time (SO_TIMESTAMPNS) per SSRC.
   Figures: the child's CPU per call, and the send-interval distribution (p50/p99/max,
   and p99 of |interval − 20 ms|) over the measured window. A control run first: a bare
   asyncio timer on the same 20 ms grid (impl=asyncio_timer) shows the machine's own
   timer jitter.
2. product vs peer: N concurrent SIPp calls (-rtp_echo) held on a plateau against
   `softphone answer --auto` and against baresip perf8k, one after the other; each
   target's CPU is read from /proc every 0.5 s while all N calls are up.

    bench/media.py [--calls 1,50,100,200] [--seconds 6] [--plateau 8] [--quick|--smoke]
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import threading
import time
from collections import defaultdict

from benchlib import (BENCH, PYTHON, ROOT, TARGETS, Sampler, figure, free_port_block, note,
                      percentile, ratio, require, run_dir, run_load, stop_leftovers, stop_popen,
                      tone_wav, track)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PTIME_S = 0.020


class Reflector:
    """UDP echo on 127.0.0.1 that records kernel receive timestamps per RTP SSRC."""

    def __init__(self) -> None:
        base = free_port_block(2, udp=True, tcp=False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", base))
        self.sock.settimeout(0.2)
        # RTCP (port+1): bound so the senders get no ICMP errors; never read
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", base + 1))
        self.port = base
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reflector:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()
        self.rtcp.close()

    def _run(self) -> None:
        space = socket.CMSG_SPACE(16)
        recvmsg, sendto, arrivals = self.sock.recvmsg, self.sock.sendto, self.arrivals
        while not self._stop.is_set():
            try:
                data, anc, _flags, addr = recvmsg(2048, space)
            except (socket.timeout, OSError):
                continue
            stamp = None
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    stamp = sec + nsec * 1e-9
            if stamp is None:
                stamp = time.time()
            if len(data) >= 12 and not 192 <= data[1] <= 223:
                arrivals[int.from_bytes(data[8:12], "big")].append(stamp)
                self.packets += 1
            try:
                sendto(data, addr)
            except OSError:
                pass


def engine_run(calls: int, seconds: float, warmup: float, baseline: bool = False,
               uvloop: bool = False) -> dict | None:
    """N RtpSessions in a child process (or, ``baseline``, a bare asyncio timer sending one
    stream); returns CPU and send-interval figures."""
    block = max(64, calls * 2 + 64)
    base = free_port_block(block, udp=True, tcp=False)
    with Reflector() as refl:
        argv = [PYTHON, str(BENCH / "media_worker.py"), "--calls", str(calls),
                "--seconds", str(seconds), "--warmup", str(warmup),
                "--remote", f"127.0.0.1:{refl.port}", "--rtp-ports", f"{base}-{base + block - 1}",
                "--wav", str(tone_wav())] + (["--baseline"] if baseline else []) + \
            (["--uvloop"] if uvloop else [])
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, text=True)
        track(proc.pid, "media_worker")
        try:
            out, err = proc.communicate(timeout=seconds + warmup + 60)
        except subprocess.TimeoutExpired:
            stop_popen(proc, grace=2.0)
            note(f"engine N={calls}: worker timed out")
            return None
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    start = next((x for x in lines if x.get("phase") == "measure"), None)
    done = next((x for x in lines if x.get("phase") == "done"), None)
    if proc.returncode != 0 or start is None or done is None:
        note(f"engine N={calls}: worker failed rc={proc.returncode}\n{err[-2000:]}")
        return None
    t0, t1 = start["t"], done["t"]
    intervals: list[float] = []
    received = 0
    for ssrc in start["ssrcs"]:
        times = sorted(t for t in refl.arrivals.get(ssrc, ()) if t0 <= t <= t1)
        received += len(times)
        intervals += [(b - a) * 1000.0 for a, b in zip(times, times[1:])]
    dev = [abs(i - PTIME_S * 1000.0) for i in intervals]
    window = t1 - t0
    return {
        "cpu_pct": 100.0 * done["cpu_s"] / done["wall_s"],
        "cpu_pct_per_call": 100.0 * done["cpu_s"] / done["wall_s"] / calls,
        "interval_p50": percentile(intervals, 50), "interval_p99": percentile(intervals, 99),
        "interval_max": max(intervals) if intervals else None,
        "dev_p99": percentile(dev, 99),
        "rate_per_call": received / window / calls if window > 0 else None,
        "late_ticks": done["late_ticks"], "rss_mb": done["rss_kb"] / 1024,
    }


def plateau_run(impl: str, calls: int, plateau_s: float) -> dict | None:
    """N SIPp calls (PCMU, RTP echoed) held together; the target's CPU while all are up."""
    rate = float(min(50, calls))
    ramp = calls / rate
    hold_ms = int((ramp + plateau_s + 1.0) * 1000)
    wd = run_dir("media")
    tag = f"{impl}-n{calls}"
    # calls outlast the anchor's 10 s WAV, which would end baresip's calls: a longer one
    with TARGETS[impl](wd / tag, wav_seconds=int(hold_ms / 1000) + 10) as target:
        res = run_load(target, rate, calls, hold_ms, wd, tag)
    if not res.clean or len(res.samples) < 4:
        note(f"plateau {impl} N={calls}: not clean ({res.successful}/{calls} ok)")
        return None
    t0 = res.samples[0].t
    sampler = Sampler(0)
    sampler.samples = res.samples
    cpu = sampler.cpu_pct_avg(t0 + ramp + 1.0, t0 + hold_ms / 1000.0 - 0.5)
    if cpu is None:
        return None
    return {"cpu_pct": cpu, "cpu_pct_per_call": cpu / calls, "rss_mb": res.rss_mb_peak}


def has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", default="1,50,100,200")
    ap.add_argument("--seconds", type=float, default=6.0, help="engine measured window")
    ap.add_argument("--plateau", type=float, default=8.0, help="SIPp plateau seconds")
    ap.add_argument("--no-peer", action="store_true", help="engine only (no SIPp plateaus)")
    ap.add_argument("--quick", action="store_true", help="N=50,200; shorter windows")
    ap.add_argument("--smoke", action="store_true", help="N=2, tiny windows (tests)")
    a = ap.parse_args(argv)
    counts, seconds, plateau, warmup = a.calls, a.seconds, a.plateau, 1.0
    if a.quick:
        counts, seconds, plateau = "50,200", 4.0, 5.0
    if a.smoke:
        counts, seconds, plateau, warmup = "2", 0.6, 2.0, 0.3
    if not a.no_peer:
        require("sipp", "baresip")
    try:
        # control: the machine's own timer jitter (a shared, busy 2-core box), for scale
        base = engine_run(1, seconds, warmup, baseline=True)
        if base:
            tags = dict(calls=1, codec="none", ptime=20)
            figure("media.send_interval_p99", base["interval_p99"], "ms", impl="asyncio_timer",
                   **tags)
            figure("media.send_jitter_p99", base["dev_p99"], "ms", impl="asyncio_timer", **tags)
        for n in [int(x) for x in counts.split(",")]:
            e = engine_run(n, seconds, warmup)
            tags = dict(calls=n, codec="PCMU", ptime=20)
            if e:
                figure("media.engine.cpu_per_call", e["cpu_pct_per_call"], "%core",
                       impl="softphone", **tags)
                figure("media.engine.cpu_total", e["cpu_pct"], "%core", impl="softphone", **tags)
                figure("media.send_interval_p50", e["interval_p50"], "ms", impl="softphone", **tags)
                figure("media.send_interval_p99", e["interval_p99"], "ms", impl="softphone", **tags)
                figure("media.send_interval_max", e["interval_max"], "ms", impl="softphone", **tags)
                figure("media.send_jitter_p99", e["dev_p99"], "ms", impl="softphone", **tags)
                figure("media.packets_per_call", e["rate_per_call"], "pkt/s", impl="softphone",
                       **tags)
                figure("media.late_ticks", e["late_ticks"], "ticks", impl="softphone", **tags)
            if has_uvloop():
                u = engine_run(n, seconds, warmup, uvloop=True)
                if u:
                    figure("media.engine.cpu_per_call", u["cpu_pct_per_call"], "%core",
                           impl="softphone_uvloop", **tags)
                    figure("media.send_jitter_p99", u["dev_p99"], "ms", impl="softphone_uvloop",
                           **tags)
                ratio("media.ratio.uvloop_cpu_per_call", u and u["cpu_pct_per_call"],
                      e and e["cpu_pct_per_call"], impl="softphone_uvloop",
                      peer_name="softphone_asyncio", higher_is_better=False, calls=n)
            if a.no_peer:
                continue
            per = {impl: plateau_run(impl, n, plateau) for impl in ("softphone", "baresip")}
            for impl, p in per.items():
                if p:
                    figure("media.call_cpu_per_call", p["cpu_pct_per_call"], "%core", impl=impl,
                           **tags)
                    figure("media.call_rss_peak", p["rss_mb"], "MB", impl=impl, **tags)
            s, b = per.get("softphone"), per.get("baresip")
            ratio("media.ratio.call_cpu_per_call", s and s["cpu_pct_per_call"],
                  b and b["cpu_pct_per_call"], higher_is_better=False, calls=n)
            ratio("media.ratio.engine_cpu_per_call", e and e["cpu_pct_per_call"],
                  b and b["cpu_pct_per_call"], impl="softphone_engine",
                  higher_is_better=False, calls=n)
    finally:
        stop_leftovers()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
