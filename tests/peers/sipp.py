"""Run SIPp 3.6 scenarios (copies under tests/peers/sipp/) with bounded time and message logs.

Every run gets ``-i 127.0.0.1``, its own local SIP port, ``-nostdin``, ``-timeout``
with ``-timeout_error``, and ``-trace_msg``/``-trace_err`` into the run directory; the
subprocess itself is bounded a few seconds beyond SIPp's own timeout.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .net import LOOPBACK, free_port_block, free_udp_port
from .procs import require_binary, stop_popen, track

SCENARIOS = Path(__file__).resolve().parent / "sipp"
_counter = itertools.count(1)


def scenario_path(name: str) -> Path:
    """tests/peers/sipp/<name> (``.xml`` optional)."""
    path = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.exists():
        raise FileNotFoundError(path)
    return path


@dataclass
class SippResult:
    """What one SIPp run left behind. ``messages`` is its -trace_msg log."""

    rc: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    message_log: Path
    error_log: Path
    duration: float
    stopped: bool = False  # it had to be stopped: it never finished its scenario

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.stopped

    def messages(self) -> str:
        return self.message_log.read_text(errors="replace") if self.message_log.exists() else ""

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def status_codes(self) -> list[int]:
        """Status codes of every response in the message log, in order (sent and received)."""
        return [int(m) for m in re.findall(r"^SIP/2\.0 (\d{3}) ", self.messages(), re.M)]

    def explain(self) -> str:
        """Short diagnostic for assertion messages."""
        stopped = " (stopped: it never finished)" if self.stopped else ""
        return (f"sipp rc={self.rc}{stopped}\n--- stderr\n{self.stderr[-1500:]}\n"
                f"--- errors\n{self.errors()[-1500:]}\n--- messages (tail)\n{self.messages()[-3000:]}")


class Sipp:
    """One SIPp process. ``run()`` for a client; ``start()``/``wait()``/``stop()`` for a
    server in the background.

    ``remote``: "host:port" to send to (None for a UAS). ``service``: ``-s``. ``auth``:
    (user, password) for ``-au``/``-ap``. ``keys``: ``-key name value`` pairs.
    ``media_port``: ``-mp`` (SIPp binds it and +2; picked free when ``rtp_echo``).
    ``local_ip``/``prefix``: to run inside a namespace, e.g. ``local_ip=link.addr_a,
    prefix=link.exec_argv(link.ns_a, [])`` (ports are then taken as given or picked on
    the host, which is fine: a fresh namespace has every port free).
    """

    def __init__(self, scenario: str | Path, run_dir: Path, *, remote: str | None = None,
                 local_port: int | None = None, service: str | None = None,
                 auth: tuple[str, str] | None = None, keys: dict[str, object] | None = None,
                 media_port: int | None = None, rtp_echo: bool = False, calls: int = 1,
                 duration_ms: int | None = None, transport: str = "u1",
                 timeout: float = 15.0, extra: list[str] | None = None, name: str | None = None,
                 local_ip: str = LOOPBACK, prefix: list[str] | None = None) -> None:
        self.binary = require_binary("sipp")
        self.scenario = Path(scenario) if Path(str(scenario)).is_absolute() else scenario_path(str(scenario))
        self.name = name or f"{self.scenario.stem}-{next(_counter)}"
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.local_port = local_port or free_udp_port()
        if media_port is None and rtp_echo:
            media_port = free_port_block(4, udp=True, tcp=False)
        self.media_port = media_port
        self.timeout = timeout
        self.message_log = self.run_dir / f"{self.name}.msg"
        self.error_log = self.run_dir / f"{self.name}.err"
        self.stdout_path = self.run_dir / f"{self.name}.out"
        self.stderr_path = self.run_dir / f"{self.name}.stderr"
        args = [*(prefix or []), self.binary]
        if remote:
            args.append(remote)
        args += ["-sf", str(self.scenario), "-i", local_ip, "-p", str(self.local_port),
                 "-m", str(calls), "-t", transport, "-nostdin",
                 "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
                 "-trace_msg", "-message_file", str(self.message_log),
                 "-trace_err", "-error_file", str(self.error_log)]
        if service:
            args += ["-s", service]
        if media_port:
            args += ["-mp", str(media_port)]
        if rtp_echo:
            args.append("-rtp_echo")
        if duration_ms is not None:
            args += ["-d", str(duration_ms)]
        for k, v in (keys or {}).items():
            args += ["-key", k, str(v)]
        args += list(extra or [])
        secret_args = ["-au", auth[0], "-ap", auth[1]] if auth else []
        self._argv = args + secret_args
        self.command = " ".join(args + (["-au", auth[0], "-ap", "***"] if auth else []))
        self.proc: subprocess.Popen | None = None
        self._t0 = 0.0
        self._out = None

    def __repr__(self) -> str:
        return f"Sipp({self.name}, port={self.local_port})"

    def start(self) -> Sipp:
        # files, not pipes: a background UAS is never blocked on a full pipe
        self._out = (open(self.stdout_path, "wb"), open(self.stderr_path, "wb"))
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(self._argv, cwd=self.run_dir, stdin=subprocess.DEVNULL,
                                     stdout=self._out[0], stderr=self._out[1],
                                     start_new_session=True)
        track(self.proc.pid, f"sipp {self.name}")
        return self

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for exit (bounded by SIPp's -timeout + 5 s unless given); stop it if late."""
        assert self.proc is not None, "start() first"
        limit = timeout if timeout is not None else self.timeout + 5.0
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stop_popen(self.proc, grace=2.0)  # SIPp may exit 0 on SIGTERM: not a pass
            return dataclasses.replace(self._result(), stopped=True)
        return self._result()

    def stop(self) -> SippResult:
        """SIGTERM (SIGKILL after 2 s) and collect the result."""
        assert self.proc is not None, "start() first"
        if self.proc.poll() is None:
            stop_popen(self.proc, grace=2.0)
        return self._result()

    def run(self) -> SippResult:
        return self.start().wait()

    def _result(self) -> SippResult:
        if self._out is not None:
            for f in self._out:
                f.close()
            self._out = None
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
        return SippResult(rc=self.proc.returncode if self.proc else -1,
                          stdout=read(self.stdout_path), stderr=read(self.stderr_path),
                          message_log=self.message_log, error_log=self.error_log,
                          duration=time.monotonic() - self._t0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def register(kamailio, user: str, run_dir: Path, *, password: str | None = None,
             contact_port: int | None = None, expires: int = 600, transport: str = "u1",
             timeout: float = 8.0) -> SippResult:
    """REGISTER ``user`` at ``kamailio`` with reg_auth.xml (401 -> auth -> 200).

    ``contact_port`` lets another process (a SIPp UAS) receive the calls; ``expires=0``
    removes that contact again.
    """
    sub = kamailio.subscriber(user)
    port = free_udp_port()
    return Sipp("reg_auth", run_dir, remote=kamailio.addr, local_port=port, service=user,
                auth=(user, password if password is not None else sub.password),
                keys={"contact_port": contact_port or port, "expires": expires},
                transport=transport, timeout=timeout, name=f"reg-{user}-{next(_counter)}").run()
