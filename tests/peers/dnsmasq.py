"""A real DNS server for RFC 3263 tests: dnsmasq on 127.0.0.1 at a free high port.

Records are dnsmasq's own options, so a test reads like the zone it serves::

    Dnsmasq(run_dir, records=[
        "--srv-host=_sip._udp.pbx.test,kam1.pbx.test,5071,10,10",
        "--host-record=kam1.pbx.test,127.0.0.1",
        "--naptr-record=pbx.test,10,10,S,SIP+D2T,,_sip._tcp.pbx.test",
    ])

Everything under ``.test`` is local (unknown names get NXDOMAIN at once); nothing is
forwarded anywhere (``--no-resolv``), /etc/hosts is not read. ``--addn-hosts`` files are
re-read on ``reload()`` (SIGHUP), for TTL tests. Started in the foreground, stopped by PID.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from .net import LOOPBACK, free_udp_port
from .procs import PeerTimeout, require_binary, stop_popen, track


class Dnsmasq:
    def __init__(self, run_dir: Path, records: list[str], *, port: int | None = None,
                 ttl: int = 1, hosts_file: Path | None = None) -> None:
        self.binary = require_binary("dnsmasq")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.records = list(records)
        self.port = port or free_udp_port()
        self.ttl = ttl
        self.hosts_file = hosts_file
        self.log_path = self.run_dir / f"dnsmasq-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"Dnsmasq({LOOPBACK}:{self.port}, {len(self.records)} records)"

    @property
    def server(self) -> str:
        """What ``[network] dns_servers`` takes."""
        return f"{LOOPBACK}:{self.port}"

    def argv(self) -> list[str]:
        argv = [self.binary, "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
                f"--listen-address={LOOPBACK}", f"--port={self.port}", "--user=root",
                "--pid-file=", "--local=/test/", f"--local-ttl={self.ttl}",
                f"--auth-ttl={self.ttl}", "--log-queries", f"--log-facility={self.log_path}"]
        if self.hosts_file is not None:
            argv.append(f"--addn-hosts={self.hosts_file}")
        return argv + self.records

    def start(self, timeout: float = 10.0) -> Dnsmasq:
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        track(self.proc.pid, "dnsmasq")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode(errors='replace')}")
            if self.ask("ready.probe.test", "A") is not None:
                return self
        self.stop()
        raise PeerTimeout(f"dnsmasq on {self.server} gave no answer within {timeout} s")

    def ask(self, name: str, rdtype: str, timeout: float = 0.3) -> str | None:
        """One query (any answer, NXDOMAIN included, means "up"): the rcode, or None."""
        import dns.message
        import dns.query
        import dns.rcode

        try:
            answer = dns.query.udp(dns.message.make_query(name, rdtype), LOOPBACK,
                                   timeout=timeout, port=self.port)
        except Exception:
            return None
        return dns.rcode.to_text(answer.rcode())

    def reload(self) -> None:
        """SIGHUP: re-read the --addn-hosts file (and drop dnsmasq's own cache)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_popen(self.proc, grace=3.0)
            if self.proc.stderr is not None:
                self.proc.stderr.close()

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
