"""Kamailio as a load balancer (the dispatcher module) in front of several endpoints: the
README's recipe, run from tests/peers/kamailio/dispatcher.cfg as written."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from .net import LOOPBACK, free_sip_port, sip_options_ping
from .procs import PeerTimeout, require_binary, stop_popen, track

CONFIG = Path(__file__).resolve().parent / "kamailio" / "dispatcher.cfg"


class Balancer:
    def __init__(self, run_dir: Path, destinations: list[str]) -> None:
        self.binary = require_binary("kamailio")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        self.list_file = self.run_dir / "dispatcher.list"
        self.list_file.write_text("".join(f"1 {uri}\n" for uri in destinations))
        self.ctl_socket = self.run_dir / "balancer_ctl"
        self.log_path = self.run_dir / "balancer.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def addr(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _defines(self) -> list[str]:
        return ["-A", f"SIP_PORT={self.port}", "-A", f'DSLIST="{self.list_file}"',
                "-A", f'CTLSOCK="unix:{self.ctl_socket}"']

    def start(self, timeout: float = 10.0) -> "Balancer":
        check = subprocess.run([self.binary, "-c", "-f", str(CONFIG), *self._defines()],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c failed:\n{check.stderr[-3000:]}")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-DD", "-E", "-f", str(CONFIG), *self._defines(), "-m", "32",
             "-M", "8", "-Y", str(self.run_dir), "-P", str(self.run_dir / "balancer.pid")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        track(self.proc.pid, "kamailio balancer")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"balancer exited: {self.log_path.read_text()[-2000:]}")
            if sip_options_ping(LOOPBACK, self.port, 0.2) is not None:
                return self
        self.stop()
        raise PeerTimeout(f"balancer gave no OPTIONS answer within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_popen(self.proc, grace=5.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Balancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def states(self) -> dict[str, str]:
        """Each destination's dispatcher flags: 'AP' in rotation, 'IP' out (probing)."""
        out = subprocess.run([require_binary("kamcmd"), "-s", f"unix:{self.ctl_socket}",
                              "dispatcher.list"], capture_output=True, text=True, timeout=5)
        found = re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out.stdout)
        return dict(found)

    def wait_states(self, wanted: dict[str, str], timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(uri, "").startswith(flag[0]) for uri, flag in wanted.items()):
                return states
            if time.monotonic() >= deadline:
                raise PeerTimeout(f"dispatcher states {states}, wanted {wanted}")
            time.sleep(0.1)
