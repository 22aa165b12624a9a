#!/usr/bin/env python3
"""Child process of bench/media.py: N RtpSessions (PCMU, 20 ms, 8 kHz tone WAV source,
null sink) sending to one reflector address, for a measured window.

Prints JSON lines on stdout: {"phase": "measure", "t": <time.time()>} when the measured
window starts, then {"phase": "done", ...} with the process CPU seconds of the window.
Only this process's own work is counted (os.times of self).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softphone.media.devices import NullSink, WavSource  # noqa: E402
from softphone.media.rtp import MediaFormat, RtpSession, _Ticker, preload  # noqa: E402


def say(**data) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def baseline(a: argparse.Namespace) -> None:
    """Control: a bare asyncio timer on a fixed 20 ms grid sending one RTP-sized datagram
    per tick — the machine's own timer jitter, with none of our media code."""
    import socket
    import struct

    loop = asyncio.get_running_loop()
    host, port = a.remote.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ssrc = 0x0BA5E11E
    seq = 0
    done = loop.create_future()
    t0 = loop.time()
    end = t0 + a.warmup + a.seconds + 0.1
    state = {"next": t0 + 0.02}

    def tick() -> None:
        nonlocal seq
        header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc)
        try:
            sock.sendto(header + bytes(160), (host, int(port)))
        except OSError:
            pass
        seq += 1
        state["next"] += 0.02
        if state["next"] >= end:
            done.set_result(None)
            return
        loop.call_at(state["next"], tick)

    loop.call_at(state["next"], tick)
    await asyncio.sleep(a.warmup)
    c0, w0 = os.times(), time.monotonic()
    say(phase="measure", t=time.time(), ssrcs=[ssrc])
    await asyncio.sleep(a.seconds)
    c1, w1 = os.times(), time.monotonic()
    say(phase="done", t=time.time(), cpu_s=(c1.user + c1.system) - (c0.user + c0.system),
        wall_s=w1 - w0, calls=1, late_ticks=0, sent=seq, received=0, rss_kb=_rss_kb())
    await done
    sock.close()


async def run(a: argparse.Namespace) -> None:
    if a.baseline:
        await baseline(a)
        return
    await preload()
    host, port = a.remote.rsplit(":", 1)
    lo, hi = (int(x) for x in a.rtp_ports.split("-"))
    fmt = MediaFormat("PCMU", 0, 8000, ptime=20)
    sessions = []
    for _ in range(a.calls):
        s = await RtpSession.open("127.0.0.1", (lo, hi))
        s.start(fmt, (host, int(port)), None, rtcp_mux=False,
                source=WavSource(a.wav, loop=True), sink=NullSink())
        sessions.append(s)
    await asyncio.sleep(a.warmup)
    ticker = _Ticker.get(asyncio.get_running_loop(), 0.02)
    late0 = ticker.late_ticks
    c0, w0 = os.times(), time.monotonic()
    say(phase="measure", t=time.time(), ssrcs=[s.ssrc for s in sessions])
    await asyncio.sleep(a.seconds)
    c1, w1 = os.times(), time.monotonic()
    t_end = time.time()
    stats = [s.stats() for s in sessions]
    late = ticker.late_ticks - late0
    for s in sessions:
        await s.close()
    say(phase="done", t=t_end, cpu_s=(c1.user + c1.system) - (c0.user + c0.system),
        wall_s=w1 - w0, calls=a.calls, late_ticks=late,
        sent=sum(st.sent for st in stats), received=sum(st.received for st in stats),
        rss_kb=_rss_kb())


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--remote", required=True, help="reflector host:port")
    ap.add_argument("--rtp-ports", required=True, help="LOW-HIGH")
    ap.add_argument("--wav", required=True)
    ap.add_argument("--baseline", action="store_true",
                    help="control run: a bare asyncio 20 ms timer, no media code")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.run(run(a))
    else:
        asyncio.run(run(a))


if __name__ == "__main__":
    main()
