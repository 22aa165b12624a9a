"""Shared plumbing for the benchmarks: figure lines, /proc sampling, peers, SIPp load steps.

Output contract (every script in bench/): stdout carries ONLY figure lines,

    <name> <value> <unit> [key=value ...]

e.g. ``cps.max_sustained 100 calls/s impl=softphone``; ratio lines are figures named
``<bench>.ratio.<figure>`` with unit ``x`` and ``impl=… peer=…`` tags. Progress and
diagnostics go to stderr. ``FIGURE_RE`` is the grammar the smoke test checks.

Peers come from the test harness (tests/peers): started on loopback, stopped by PID.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RUN = ROOT / "run" / "bench"
sys.path.insert(0, str(ROOT / "tests"))

from peers import procs as _procs  # noqa: E402
from peers.baresip import TONE_WAV, render_config  # noqa: E402
from peers.net import LOOPBACK, free_port_block, free_port_pair, free_udp_port  # noqa: E402
from peers.procs import stop_popen, track  # noqa: E402
from peers.sipp import scenario_path  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FIGURE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+ -?\d+(\.\d+)?(e[+-]?\d+)? [^\s=]+"
                       r"( [a-z_]+=[^\s=]+)*$")
PYTHON = sys.executable


# --------------------------------------------------------------------------- output
def figure(name: str, value: float | int | None, unit: str, **tags: object) -> None:
    """Print one figure line on stdout (None → the figure is skipped with a note)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        note(f"figure {name} {tags or ''}: no value")
        return
    if isinstance(value, float):
        text = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        if "e" in text:
            text = f"{value:.9f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    parts = [name, text, unit] + [f"{k}={v}" for k, v in tags.items() if v is not None]
    line = " ".join(parts)
    assert FIGURE_RE.match(line), line
    print(line, flush=True)


def ratio(name: str, ours: float | None, peer: float | None, *, impl: str = "softphone",
          peer_name: str = "baresip", higher_is_better: bool = True, **tags: object) -> None:
    """``<bench>.ratio.<figure>``: ours/peer; ``better=`` says which way is good."""
    if ours is None or peer is None or peer == 0:
        note(f"ratio {name}: missing value (ours={ours}, peer={peer})")
        return
    figure(name, ours / peer, "x", impl=impl, peer=peer_name,
           better="higher" if higher_is_better else "lower", **tags)


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_dir(name: str) -> Path:
    path = RUN / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- /proc
@dataclass
class ProcSample:
    t: float
    cpu_s: float      # utime+stime, all threads
    rss_kb: int
    threads: int


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (workers and their children), from /proc."""
    out, todo = [], [pid]
    while todo and len(out) < 256:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def proc_sample(pid: int, tree: bool = False) -> ProcSample | None:
    """One process's CPU/RSS/threads; with ``tree`` summed over it and its descendants."""
    own = _proc_sample(pid)
    if own is None or not tree:
        return own
    for child in _descendants(pid):
        s = _proc_sample(child)
        if s is not None:
            own = ProcSample(own.t, own.cpu_s + s.cpu_s, own.rss_kb + s.rss_kb,
                             own.threads + s.threads)
    return own


def _proc_sample(pid: int) -> ProcSample | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
    return ProcSample(time.monotonic(), (int(parts[11]) + int(parts[12])) / HZ, rss,
                      int(parts[17]))


class Profile:
    """py-spy sampling a target for the length of a ``with`` block (``cps.py --profile``):
    raw collapsed stacks in ``path``; ``summary()`` ranks functions by the samples where
    they are on top (self) and anywhere on the stack (total). ``--nonblocking`` reads the
    target without pausing it, so the profile costs it (almost) nothing."""

    def __init__(self, pid: int, path: Path, rate: int = 250) -> None:
        self.path = path
        self.argv = [shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy")), "record",
                     "-p", str(pid), "-r", str(rate), "--nonblocking", "--format", "raw",
                     "-o", str(path)]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Profile":
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        track(self.proc.pid, "py-spy")
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        stop_popen(self.proc, signals=(signal.SIGINT,), grace=10.0)

    def summary(self, top: int = 25) -> str:
        if not self.path.exists():
            return f"no profile in {self.path}"
        own: dict[str, int] = {}
        total: dict[str, int] = {}
        samples = 0
        for line in self.path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [re.sub(r" \((.*/)?(softphone|site-packages|lib/python3[.\d]*)/", " (",
                             frame) for frame in stack.split(";")]
            samples += count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames):
                total[frame] = total.get(frame, 0) + count
        lines = [f"{samples} samples; self% total%  function"]
        for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{100 * count / samples:5.1f} {100 * total[frame] / samples:6.1f}  {frame}")
        return "\n".join(lines)


class Sampler:
    """Samples one PID every ``interval`` s in a thread (CPU time, RSS, threads)."""

    def __init__(self, pid: int, interval: float = 0.5, tree: bool = False) -> None:
        self.pid = pid
        self.tree = tree
        self.interval = interval
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        first = proc_sample(self.pid, self.tree)
        if first:
            self.samples.append(first)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)
        last = proc_sample(self.pid, self.tree)
        if last:
            self.samples.append(last)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            s = proc_sample(self.pid, self.tree)
            if s is None:
                return
            self.samples.append(s)

    # summaries
    def cpu_pct_avg(self, t0: float | None = None, t1: float | None = None) -> float | None:
        ss = [s for s in self.samples if (t0 is None or s.t >= t0) and (t1 is None or s.t <= t1)]
        if len(ss) < 2 or ss[-1].t <= ss[0].t:
            return None
        return 100.0 * (ss[-1].cpu_s - ss[0].cpu_s) / (ss[-1].t - ss[0].t)

    def cpu_pct_peak(self) -> float | None:
        peaks = [100.0 * (b.cpu_s - a.cpu_s) / (b.t - a.t)
                 for a, b in zip(self.samples, self.samples[1:]) if b.t > a.t]
        return max(peaks) if peaks else None

    def rss_mb_peak(self) -> float | None:
        return max(s.rss_kb for s in self.samples) / 1024 if self.samples else None


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) in value units per minute."""
    if len(points) < 3:
        return None
    xs, ys = zip(*points)
    try:
        return statistics.linear_regression(xs, ys).slope * 60.0
    except statistics.StatisticsError:
        return None


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- targets
class Target:
    """An auto-answering UA under load: ``softphone answer --auto`` or baresip perf8k."""

    impl = "?"
    tree = False  # its CPU and RSS: the process alone, or with its children (workers)

    def __init__(self, workdir: Path, rtp_block: int = 1600,
                 wav_seconds: int | None = None) -> None:
        self.wav = tone_wav(wav_seconds)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port_pair()[0]
        base = free_port_block(rtp_block, udp=True, tcp=False)
        self.rtp_ports = (base, base + rtp_block - 1)
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.impl}.log"
        self._log = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, ready_timeout: float = 10.0) -> Target:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env())
        track(self.proc.pid, f"bench {self.impl}")
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.impl} exited at start ({self.proc.returncode}); "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            if self.ready():
                self.settle()
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.impl} not answering OPTIONS after {ready_timeout} s:\n"
                           f"{self.log_tail()}")

    def ready(self) -> bool:
        """Listening: answers a SIP OPTIONS."""
        from peers.net import sip_options_ping

        return sip_options_ping(LOOPBACK, self.sip_port, 0.2) is not None

    def settle(self) -> None:
        """Wait for background start-up work to finish (CPU quiet) before load."""
        deadline = time.monotonic() + 5.0
        last = proc_sample(self.pid, self.tree)
        while time.monotonic() < deadline and last is not None:
            time.sleep(0.25)
            cur = proc_sample(self.pid, self.tree)
            if cur is None or cur.cpu_s - last.cpu_s < 0.01:
                return
            last = cur

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None:
            rc = stop_popen(self.proc, signals=(signal.SIGTERM, signal.SIGTERM), grace=4.0)
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def uri_target(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def tone_wav(seconds: int | None = None) -> Path:
    """The 8 kHz mono tone both targets play (parity): the perf8k anchor's 10 s file, or
    (``seconds``) a 440 Hz tone that long.

    baresip's aufile source ends the call when its file runs out, so calls held longer
    than 10 s (the media plateaus) need a longer file; short calls keep the anchor's file
    (baresip's RSS grows with the file's size per concurrent call).
    """
    if seconds is None:
        return TONE_WAV
    path = RUN / f"tone8k-{seconds}s.wav"
    if not path.exists():
        import wave

        import numpy as np

        n = np.arange(8000 * seconds)
        pcm = (8000 * np.sin(2 * np.pi * 440 * n / 8000)).astype("<i2").tobytes()
        RUN.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm)
        tmp.replace(path)
    return path


class SoftphoneTarget(Target):
    impl = "softphone"

    def __init__(self, workdir: Path, rtp_block: int = 1600, play: bool = True,
                 extra_config: str = "", wav_seconds: int | None = None) -> None:
        super().__init__(workdir, rtp_block, wav_seconds)
        self.play = play
        self.config_path = workdir / "softphone.toml"
        self.config_path.write_text(
            "[network]\n"
            f'listen = "{LOOPBACK}:{self.sip_port}"\n'
            f"rtp_ports = [{self.rtp_ports[0]}, {self.rtp_ports[1]}]\n"
            "max_calls = 10000\n"
            "rtp_timeout = 0\n"
            # the per-source INVITE limiter (flood guard, 50/s by default) would refuse
            # SIPp's single-source load; baresip has none: off, for a like-for-like run
            "rate_limit = 0\n"
            "[audio]\n"
            'backend = "null"\n'
            'codecs = ["PCMU"]\n' + extra_config)

    def argv(self) -> list[str]:
        argv = [PYTHON, "-m", "softphone", "answer", "--auto", "--config", str(self.config_path),
                "--audio", "null", "--duration", "900"]
        if self.play:
            argv += ["--play", str(self.wav)]
        return argv

    def ready(self) -> bool:
        """The CLI prints ``listening …`` once its SIP socket is bound; then OPTIONS."""
        return "listening" in self.log_tail() and super().ready()

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


class BaresipTarget(Target):
    impl = "baresip"

    def __init__(self, workdir: Path, rtp_block: int = 1600,
                 wav_seconds: int | None = None) -> None:
        super().__init__(workdir, rtp_block, wav_seconds)
        self.binary = shutil.which("baresip")
        if self.binary is None:
            raise RuntimeError("baresip not installed (make setup)")
        self.config_dir = render_config("perf8k", workdir / "cfg", sip_port=self.sip_port,
                                        rtp_ports=self.rtp_ports)
        config = self.config_dir / "config"
        config.write_text(config.read_text().replace(str(TONE_WAV), str(self.wav)))

    def argv(self) -> list[str]:
        return [self.binary, "-f", str(self.config_dir), "-t", "900"]


class SoftphoneWorkersTarget(SoftphoneTarget):
    """``softphone answer --auto --workers 2``: the dispatcher and two workers (CPU and
    RSS summed over the three processes)."""

    impl = "softphone-w2"
    tree = True
    workers = 2

    def argv(self) -> list[str]:
        return [*super().argv(), "--workers", str(self.workers)]

    def ready(self) -> bool:
        return "listening" in self.log_tail() and Target.ready(self)


TARGETS = {"softphone": SoftphoneTarget, "softphone-w2": SoftphoneWorkersTarget,
           "baresip": BaresipTarget}


# --------------------------------------------------------------------------- SIPp load
@dataclass
class LoadResult:
    impl: str
    rate: float
    planned: int
    hold_ms: int
    outgoing: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    sipp_rc: int | None = None
    wall_s: float = 0.0
    cpu_s: float | None = None
    cpu_pct_avg: float | None = None
    cpu_pct_peak: float | None = None
    rss_mb_peak: float | None = None
    rss_mb_start: float | None = None
    rss_mb_end: float | None = None
    threads_peak: int | None = None
    failure_causes: dict = field(default_factory=dict)
    samples: list = field(default_factory=list, repr=False)

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.successful == self.planned and self.sipp_rc == 0

    @property
    def cpu_pct_per_call(self) -> float | None:
        """Share of one core per concurrent call: CPU s / (calls × hold s) × 100."""
        if self.cpu_s is None or not self.successful:
            return None
        return 100.0 * self.cpu_s / (self.successful * self.hold_ms / 1000.0)


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp not installed (make setup)")
    return path


def run_load(target: Target, rate: float, calls: int, hold_ms: int, workdir: Path,
             tag: str, *, limit: int | None = None, timeout_s: float | None = None) -> LoadResult:
    """SIPp uac_perf.xml with -rtp_echo at ``rate`` calls/s → ``target``; ``calls`` calls.

    The target's CPU/RSS is sampled every 0.5 s for the whole run. Bounded by SIPp's
    -timeout and our own wait; SIPp is stopped by PID if late.
    """
    gen_s = calls / rate
    timeout_s = timeout_s or (gen_s + hold_ms / 1000.0 + 20.0)
    stat_file = workdir / f"{tag}.stat.csv"
    stat_file.unlink(missing_ok=True)
    media_port = free_port_block(4, udp=True, tcp=False)
    argv = [sipp_binary(), target.uri_target, "-sf", str(scenario_path("uac_perf")),
            "-s", "perf", "-i", LOOPBACK, "-p", str(free_udp_port()), "-mp", str(media_port),
            "-rtp_echo", "-r", str(rate), "-m", str(calls), "-d", str(hold_ms),
            "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
            "-max_retrans", "5", "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / f"{tag}.err")]
    if limit:
        argv += ["-l", str(limit)]
    res = LoadResult(target.impl, rate, calls, hold_ms)
    out = open(workdir / f"{tag}.sipp.out", "wb")
    t0 = time.monotonic()
    with Sampler(target.pid, tree=target.tree) as sampler:
        sipp = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        track(sipp.pid, f"sipp {tag}")
        try:
            sipp.wait(timeout_s + 10)
        except subprocess.TimeoutExpired:
            note(f"{tag}: SIPp late, stopping it")
        stop_popen(sipp, grace=2.0)
    out.close()
    res.sipp_rc = sipp.returncode
    res.wall_s = time.monotonic() - t0
    ss = sampler.samples
    if len(ss) >= 2:
        res.cpu_s = ss[-1].cpu_s - ss[0].cpu_s
        res.cpu_pct_avg = sampler.cpu_pct_avg()
        res.cpu_pct_peak = sampler.cpu_pct_peak()
        res.rss_mb_peak = sampler.rss_mb_peak()
        res.rss_mb_start = ss[0].rss_kb / 1024
        res.rss_mb_end = ss[-1].rss_kb / 1024
        res.threads_peak = max(s.threads for s in ss)
    res.samples = ss
    stat = _last_stat_row(stat_file)
    g = lambda k: int(stat.get(k, "0") or 0)  # noqa: E731
    res.outgoing, res.successful, res.failed = g("OutgoingCall(C)"), g("SuccessfulCall(C)"), \
        g("FailedCall(C)")
    res.retransmissions = g("Retransmissions(C)")
    res.failure_causes = {k: g(k) for k in stat
                          if k.startswith("Failed") and k.endswith("(C)") and g(k)}
    note(f"{tag}: {target.impl} {rate}/s: {res.successful}/{calls} ok, {res.failed} failed, "
         f"{res.retransmissions} retrans, cpu avg {fmt(res.cpu_pct_avg)}% peak "
         f"{fmt(res.cpu_pct_peak)}%, rss peak {fmt(res.rss_mb_peak)} MB, sipp rc {res.sipp_rc}")
    return res


def _last_stat_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    return dict(zip(rows[0], rows[-1])) if len(rows) >= 2 else {}


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def require(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None
               and shutil.which(b, path="/usr/sbin:/sbin") is None]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (run `make setup`)")


def stop_leftovers() -> None:
    for what in _procs.stop_leftovers():
        note(f"stopped leftover {what}")
