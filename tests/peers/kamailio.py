"""A real Kamailio 5.6 registrar/proxy on 127.0.0.1, run from the test's own copy of the config.

One instance per run directory: SQLite subscriber DB, ctl socket, pid file and log all live
there. Readiness is a SIP OPTIONS answer; stop is SIGTERM to the PID, SIGKILL after a bound.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .net import LOOPBACK, free_sip_port, sip_options_ping
from .procs import PeerTimeout, require_binary, stop_popen, track

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "kamailio" / "kamailio.cfg"
SQLITE_SCHEMAS = (
    Path("/usr/share/kamailio/db_sqlite/standard-create.sql"),
    Path("/usr/share/kamailio/db_sqlite/auth_db-create.sql"),
)
REALM = "127.0.0.1"


@dataclass(frozen=True)
class Subscriber:
    """A test account; the password is kept out of repr()."""

    user: str
    password: str = field(repr=False)
    domain: str = REALM

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"


SUBSCRIBERS: tuple[Subscriber, ...] = tuple(
    Subscriber(u, f"secret{u}") for u in ("1001", "1002", "1003")
)


def write_subscriber_db(path: Path, subscribers: tuple[Subscriber, ...], realm: str = REALM) -> None:
    """(Re)create the SQLite DB that auth_db reads (Kamailio's own schema files)."""
    for schema in SQLITE_SCHEMAS:
        if not schema.exists():
            raise FileNotFoundError(f"{schema} missing: install kamailio-sqlite-modules")
    path.unlink(missing_ok=True)
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731 - the table's ha1 columns
    with sqlite3.connect(path) as db:
        for schema in SQLITE_SCHEMAS:
            db.executescript(schema.read_text())
        for sub in subscribers:
            db.execute(
                "INSERT INTO subscriber(username, domain, password, ha1, ha1b) VALUES (?,?,?,?,?)",
                (sub.user, realm, sub.password, md5(f"{sub.user}:{realm}:{sub.password}"),
                 md5(f"{sub.user}@{realm}:{realm}:{sub.password}")),
            )
    # calculate_ha1=yes: Kamailio hashes the plain password itself (MD5 or SHA-256)


class Kamailio:
    """Handle on one Kamailio process. ``host``/``port`` is where to send SIP; the SIP
    domain and digest realm are both ``127.0.0.1`` (no port)."""

    host = LOOPBACK
    domain = REALM
    realm = REALM

    def __init__(self, run_dir: Path, port: int | None = None, *, sha256: bool = False,
                 noqop: bool = False, debug: bool = False,
                 subscribers: tuple[Subscriber, ...] = SUBSCRIBERS,
                 tls: tuple[Path, Path, Path] | None = None,
                 host: str | None = None, prefix: list[str] | None = None,
                 defines: tuple[str, ...] = ()) -> None:
        """``tls``: (certificate, key, CA file) to listen for SIP over TLS too, on
        ``tls_port``; phones that connect are not asked for a certificate, phones it
        connects to must present one the CA signed."""
        self.binary = require_binary("kamailio")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if host is not None:
            self.host = host  # (another address, e.g. inside a network namespace)
        self.prefix = list(prefix or [])  # e.g. ``ip netns exec NS``
        self.defines = tuple(defines)     # extra -A NAME for the config (WITH_NO_PONG …)
        self.port = port or free_sip_port()
        self.sha256 = sha256
        self.noqop = noqop
        self.debug = debug
        self.subscribers = subscribers
        self.tls = tls
        self.tls_port = free_sip_port() if tls else None
        self.db_path = self.run_dir / "kamailio.sqlite"
        self.ctl_socket = self.run_dir / "kamailio_ctl"
        self.pid_file = self.run_dir / "kamailio.pid"
        self.log_path = self.run_dir / "kamailio.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Kamailio({self.host}:{self.port}, {state}, sha256={self.sha256})"

    # --- addressing -----------------------------------------------------------------
    @property
    def addr(self) -> str:
        """host:port, as SIPp and the softphone's --proxy style options want it."""
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        """SIP URI of the proxy itself (for outbound_proxy / registrar settings)."""
        return f"sip:{self.host}:{self.port}"

    def subscriber(self, user: str) -> Subscriber:
        return next(s for s in self.subscribers if s.user == user)

    # --- lifecycle ------------------------------------------------------------------
    def _defines(self) -> list[str]:
        args = [
            "-A", f"SIP_PORT={self.port}",
            "-A", f'DBURL="sqlite://{self.db_path}"',
            "-A", f'CTLSOCK="unix:{self.ctl_socket}"',
        ]
        if self.sha256:
            args += ["-A", "WITH_SHA256"]
        if self.noqop:
            args += ["-A", "WITH_NOQOP"]
        if self.debug:
            args += ["-A", "WITH_DEBUG"]
        if self.tls:
            args += ["-A", "WITH_TLS", "-A", f"TLS_PORT={self.tls_port}",
                     "-A", f'TLS_CONFIG="{self._tls_config()}"']
        if self.host != LOOPBACK:
            args += ["-A", f"SIP_HOST={self.host}"]
        for name in self.defines:
            args += ["-A", name]
        return args

    def _tls_config(self) -> Path:
        cert, key, ca = self.tls
        path = self.run_dir / "tls.cfg"
        path.write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            f"require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\n\n"
            "[client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n"
            f"require_certificate = yes\nca_list = {ca}\n")
        return path

    @property
    def tls_uri(self) -> str:
        """The proxy over TLS (registrar / outbound_proxy of a TLS account)."""
        return f"sip:{self.host}:{self.tls_port};transport=tls"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Kamailio:
        if self.running:
            return self
        write_subscriber_db(self.db_path, self.subscribers)
        for stale in (self.pid_file, self.ctl_socket):
            stale.unlink(missing_ok=True)
        check = subprocess.run(
            [self.binary, "-c", "-f", str(CONFIG), *self._defines()],
            capture_output=True, text=True, timeout=30,
        )
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c failed:\n{check.stderr[-3000:]}")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, self.binary, "-DD", "-E", "-f", str(CONFIG), *self._defines(),
             "-m", "64", "-M", "8", "-Y", str(self.run_dir), "-P", str(self.pid_file)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        track(self.proc.pid, "kamailio")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"kamailio exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                return self
        self.stop()
        raise PeerTimeout(f"kamailio gave no OPTIONS answer within {timeout} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        if not self.prefix:
            return sip_options_ping(self.host, self.port, 0.2) is not None
        # inside a namespace we cannot reach: the ctl socket is a file we can
        try:
            self.kamcmd("core.version", timeout=2)
        except (RuntimeError, subprocess.TimeoutExpired):
            time.sleep(0.05)  # polling a process's readiness with a deadline
            return False
        return True

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM to the PID (Kamailio stops its workers, ~2 s), SIGKILL after ``timeout``."""
        rc = None
        if self.proc is not None:
            rc = stop_popen(self.proc, grace=timeout)
        self._close_log()
        return rc

    def restart(self) -> Kamailio:
        """Fresh process on the same port: forgets every registration (usrloc is in memory)."""
        self.stop()
        return self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- inspection -----------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kamcmd(self, *args: str, timeout: float = 5.0) -> str:
        """Run one RPC command through the ctl socket; return its stdout."""
        binary = require_binary("kamcmd")
        out = subprocess.run([binary, "-s", f"unix:{self.ctl_socket}", *args],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def ul_dump(self) -> str:
        """usrloc contents as kamcmd prints them."""
        return self.kamcmd("ul.dump")

    def contacts(self, user: str | None = None) -> dict[str, list[str]]:
        """Registered contacts, by AoR user (``{'1001': ['sip:1001@127.0.0.1:5062', ...]}``)."""
        result: dict[str, list[str]] = {}
        aor = None
        for line in self.ul_dump().splitlines():
            m = re.match(r"\s*AoR:\s*(\S+)", line)
            if m:
                aor = m.group(1)
                result.setdefault(aor, [])
                continue
            m = re.match(r"\s*Address:\s*(\S+)", line)
            if m and aor is not None:
                result[aor].append(m.group(1))
        if user is not None:
            return {user: result.get(user, [])}
        return result

    def wait_registered(self, user: str, timeout: float = 5.0, contains: str = "") -> list[str]:
        """Wait until ``user`` has a contact (containing ``contains``); return its contacts."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.contacts(user)[user] if contains in c]
            if found:
                return found
            if time.monotonic() >= deadline:
                raise PeerTimeout(f"{user} not registered within {timeout} s; ul.dump:\n{self.ul_dump()}")
            time.sleep(0.05)
