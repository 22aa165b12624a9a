"""SIP over TLS: certificates are verified by default; a CA file makes a private PBX work.

The peer is a minimal TLS registrar the test runs itself (a thread with an ssl socket on
127.0.0.1) with a certificate it makes for "localhost".
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from peers.phoneconfig import write_config


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsRegistrar:
    """Accepts TLS connections and answers every REGISTER 200 OK (no auth)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.handshake_errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "TlsRegistrar":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                raw.close()
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: ssl.SSLSocket) -> None:
        conn.settimeout(0.2)
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                buf = rest[length:]
                text = head.decode()
                self.requests.append(text)
                lines = text.split("\r\n")
                copied = [line for line in lines[1:]
                          if line.split(":")[0].lower() in ("via", "from", "call-id", "cseq",
                                                             "contact")]
                to = next(line for line in lines if line.lower().startswith("to:"))
                reply = ["SIP/2.0 200 OK", *copied, to + ";tag=reg", "Expires: 120",
                         "Content-Length: 0", "", ""]
                conn.sendall("\r\n".join(reply).encode())
        conn.close()


@pytest.fixture
def registrar(tmp_path):
    cert, key = make_certificate(tmp_path)
    with TlsRegistrar(cert, key) as reg:
        reg.cert = cert
        yield reg


def tls_config(path: Path, port: int, extra: str = "") -> Path:
    cfg = write_config(path)
    cfg.write_text('[[accounts]]\nname = "tls"\naor = "sip:1001@localhost"\n'
                   f'registrar = "sip:localhost:{port}"\ntransport = "tls"\nexpires = 120\n\n'
                   + cfg.read_text() + f"\n[sip]\n{extra}\n")
    return cfg


def test_tls_refuses_an_untrusted_certificate(registrar, softphone, tmp_path):
    p = softphone("register", "--config", str(tls_config(tmp_path / "c.toml", registrar.port)))
    assert p.wait_exit(20) == 1, p.diagnostics()
    err = p.stderr_text()
    assert "registration failed:" in err and "certificate" in err.lower(), err
    assert registrar.requests == []  # nothing was sent over the unverified connection
    assert registrar.handshake_errors  # the server saw us abort the handshake


def test_tls_registers_with_the_ca_file(registrar, softphone, tmp_path):
    cfg = tls_config(tmp_path / "c.toml", registrar.port, f'tls_ca_file = "{registrar.cert}"')
    trace = tmp_path / "t.txt"
    p = softphone("register", "--config", str(cfg), "--sip-trace", str(trace))
    assert p.wait_event("registered", timeout=15)["expires"] == 120
    p.send_signal(signal.SIGTERM)
    assert p.wait_exit(15) == 0, p.diagnostics()
    assert p.find_event("unregistered") is not None
    first = registrar.requests[0]
    assert first.startswith("REGISTER sip:localhost:") and "SIP/2.0/TLS" in first
    assert "transport=tls" in re.search(r"(?m)^Contact: (.*)$", first).group(1)
    assert "sent tls" in trace.read_text()
