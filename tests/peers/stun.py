"""A real STUN server (coturn's ``turnserver --stun-only``, RFC 5389) for the tests.

On 127.0.0.1 by default, or on an address inside a network namespace (``prefix`` =
``ip netns exec NS``). Readiness: its UDP port is bound (``ss`` in the same namespace).
Started in the foreground with its own log, stopped by PID.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .net import LOOPBACK, free_udp_port
from .procs import PeerTimeout, require_binary, stop_popen, track


class StunServer:
    def __init__(self, run_dir: Path, *, host: str = LOOPBACK, port: int | None = None,
                 prefix: list[str] | None = None) -> None:
        self.binary = require_binary("turnserver")
        self.ss = require_binary("ss")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_udp_port()
        self.prefix = list(prefix or [])
        self.log_path = self.run_dir / f"turnserver-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def address(self) -> str:
        """What ``[network] stun_server`` takes."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> StunServer:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, self.binary, "-n", "--stun-only", "--no-cli", "--no-tls",
             "--no-dtls", "--no-tcp", f"--listening-ip={self.host}",
             f"--listening-port={self.port}", "--log-file=stdout", "--simple-log",
             f"--pidfile={self.run_dir / f'turnserver-{self.port}.pid'}",
             f"--db={self.run_dir / 'turndb'}", "--no-software-attribute"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        track(self.proc.pid, "turnserver")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}:\n"
                                   f"{self.log_text()[-2000:]}")
            out = subprocess.run([*self.prefix, self.ss, "-Huln", f"sport = :{self.port}"],
                                 capture_output=True, text=True, timeout=5)
            if out.stdout.strip():
                return self
            time.sleep(0.05)  # polling a process's readiness with a deadline
        self.stop()
        raise PeerTimeout(f"turnserver did not bind {self.address} within {timeout} s:\n"
                          f"{self.log_text()[-2000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_popen(self.proc, grace=3.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> StunServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
