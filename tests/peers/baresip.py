"""Headless baresip 1.0.0 peers driven over stdin, from config templates under tests/peers/baresip/.

Profiles: ``alice`` (1001, manual answer), ``bob`` (1002, auto answer), both registering
at a test Kamailio through ``outbound=``; ``perf8k`` (not registered, auto answer, 8 kHz
WAV source) as a direct load target. Each instance gets its own directory (config,
accounts, uuid without trailing newline, sndfile dumps, log), free SIP ports (p for
UDP/TCP, p+1 for the TLS listener baresip always opens) and a free RTP range.

Log markers worth matching: "Call established", "terminated (duration",
"session closed: Connection reset by peer" (the peer's BYE), "Incoming call from",
"registered successfully" / "{0/UDP/v4} 200 OK" (with -s, a full SIP trace).
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import threading
import time
import uuid
import wave
from pathlib import Path

from .net import free_port_block, free_port_pair
from .procs import PeerTimeout, require_binary, stop_popen, track

TEMPLATES = Path(__file__).resolve().parent / "baresip"
TONE_WAV = TEMPLATES / "tone8k.wav"
PROFILES = ("alice", "bob", "perf8k")
PROFILE_USER = {"alice": "1001", "bob": "1002"}
REGISTERED = r"registered successfully|\{0/UDP/v4\} 200 OK"


def render_config(profile: str, dest: Path, *, sip_port: int, rtp_ports: tuple[int, int],
                  registrar_port: int | None = None, password: str | None = None,
                  tone_hz: int = 440, modules: tuple[str, ...] = (),
                  account_params: str = "") -> Path:
    """Write a ready config dir for ``profile`` into ``dest``; return ``dest``.
    ``modules`` are loaded too (``"srtp"``); ``account_params`` end the account line
    (``";mediaenc=srtp-mand"``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown baresip profile {profile!r}; have {PROFILES}")
    src = TEMPLATES / profile
    dest.mkdir(parents=True, exist_ok=True)
    values = {
        "SIP_PORT": str(sip_port),
        "RTP_PORTS": f"{rtp_ports[0]}-{rtp_ports[1]}",
        "TONE_HZ": str(tone_hz),
        "TONE_WAV": str(TONE_WAV),
        "REGISTRAR_PORT": str(registrar_port or 5060),
        "PASSWORD": password or "",
    }
    for name in ("config", "accounts", "contacts"):
        text = (src / name).read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        leftover = re.findall(r"@[A-Z_]+@", text)
        if leftover:
            raise ValueError(f"{profile}/{name}: unfilled placeholders {leftover}")
        if name == "config":
            text += "".join(f"module\t\t\t{m}.so\n" for m in modules)
        elif name == "accounts" and account_params:
            text = "\n".join(line + account_params if line.startswith("<") else line
                             for line in text.splitlines()) + "\n"
        (dest / name).write_text(text)
    # baresip puts this verbatim into +sip.instance: a trailing newline breaks REGISTER
    (dest / "uuid").write_text(str(uuid.uuid4()))
    return dest


class Baresip:
    """One baresip process. ``cmd("dial sip:1002@127.0.0.1")`` sends a /command;
    ``wait_for(regex, timeout, since=mark)`` waits on its combined stdout/stderr."""

    def __init__(self, profile: str, run_dir: Path, *, kamailio=None, name: str | None = None,
                 tone_hz: int = 440, sip_trace: bool = True, max_life: int = 120,
                 sip_port: int | None = None, modules: tuple[str, ...] = (),
                 account_params: str = "", config_dir: Path | None = None,
                 prefix: list[str] | None = None) -> None:
        """``config_dir``: a config written by the caller instead of the profile's (the
        profile then only names the instance); ``prefix``: e.g.
        ``LossyLink.exec_argv(ns, [])`` to run inside a network namespace."""
        self.binary = require_binary("baresip")
        self.prefix = list(prefix or [])
        self.profile = profile
        self.name = name or profile
        self.workdir = Path(run_dir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = sip_port or free_port_pair()[0]
        rtp_base = free_port_block(40, udp=True, tcp=False)
        self.rtp_ports = (rtp_base, rtp_base + 39)
        self.user = PROFILE_USER.get(profile, "perf")
        password = kamailio.subscriber(self.user).password if (kamailio and profile in PROFILE_USER) else None
        self.config_dir = config_dir or render_config(
            profile, self.workdir / "cfg", sip_port=self.sip_port, rtp_ports=self.rtp_ports,
            registrar_port=kamailio.port if kamailio else None, password=password, tone_hz=tone_hz,
            modules=modules, account_params=account_params)
        self.log_path = self.workdir / f"{self.name}.log"
        self.sip_trace = sip_trace
        self.max_life = max_life
        self.proc: subprocess.Popen | None = None
        self._buf = ""
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Baresip({self.name}, sip=127.0.0.1:{self.sip_port})"

    @property
    def uri(self) -> str:
        """Where to send a direct INVITE (no proxy)."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> Baresip:
        argv = [*self.prefix, self.binary, "-f", str(self.config_dir), "-t", str(self.max_life)]
        if self.sip_trace:
            argv.append("-s")
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, bufsize=0)
        track(self.proc.pid, f"baresip {self.name}")
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            while True:
                chunk = self.proc.stdout.read(65536)  # raw pipe: returns what is there
                if not chunk:
                    break
                text = chunk.decode(errors="replace")
                log.write(text)
                log.flush()
                with self._cond:
                    self._buf += text
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def cmd(self, line: str) -> None:
        """Send ``/line`` to the stdio UI (a leading slash is optional)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(("/" + line.lstrip("/") + "\n").encode())
        self.proc.stdin.flush()

    def dial(self, uri: str) -> None:
        self.cmd(f"dial {uri}")

    def accept(self) -> None:
        self.cmd("accept")

    def hangup(self) -> None:
        self.cmd("hangup")

    def stop(self, grace: float = 5.0) -> int | None:
        """/quit (clean un-REGISTER), then SIGTERM, SIGTERM again (forced exit), SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
                self.proc.wait(grace)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        rc = stop_popen(self.proc, signals=(signal.SIGTERM, signal.SIGTERM), grace=2.0)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(3.0)
        return rc

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- output -----------------------------------------------------------------------
    @property
    def output(self) -> str:
        with self._cond:
            return self._buf

    def mark(self) -> int:
        """Current end of the output; pass as ``since`` to match only what comes next."""
        with self._cond:
            return len(self._buf)

    def search(self, pattern: str, since: int = 0) -> re.Match | None:
        with self._cond:
            return re.compile(pattern).search(self._buf, since)

    def wait_for(self, pattern: str, timeout: float = 5.0, since: int = 0) -> re.Match:
        """First match of ``pattern`` at or after ``since``; PeerTimeout after ``timeout``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._buf, since)
                if m:
                    return m
                left = deadline - time.monotonic()
                ended = self.proc is not None and self.proc.poll() is not None and \
                    (self._reader is None or not self._reader.is_alive())
                if left <= 0 or ended:
                    why = "exited" if ended else f"timed out after {timeout:.1f} s"
                    raise PeerTimeout(f"baresip {self.name} {why} waiting for /{pattern}/; "
                                      f"output tail:\n{self._buf[-3000:]}")
                self._cond.wait(min(left, 0.2))

    def wait_registered(self, timeout: float = 5.0) -> re.Match:
        return self.wait_for(REGISTERED, timeout)

    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile dumps (``dec`` = audio received from the peer, ``enc`` = audio sent)."""
        return sorted(self.workdir.glob(f"dump-*-{kind}.wav"))


def wav_tone(path: Path) -> dict[str, float]:
    """Seconds, RMS and zero-crossing frequency of a mono/stereo 16-bit WAV."""
    import array

    with wave.open(str(path)) as w:
        frames, rate, channels = w.getnframes(), w.getframerate(), w.getnchannels()
        data = array.array("h", w.readframes(frames))
    samples = data[::channels]
    if not samples:
        return {"seconds": 0.0, "rms": 0.0, "freq_hz": 0.0}
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    seconds = len(samples) / rate
    return {"seconds": seconds, "rms": rms, "freq_hz": crossings / 2 / seconds}
