"""SIP over TLS: certificates are verified by default; a CA file makes a private PBX work.

The first peer is a minimal TLS registrar the test runs itself (a thread with an ssl
socket on 127.0.0.1) with a certificate from a test CA made at run time; the others are
Kamailio's TLS module (registrations and calls both ways, a wrong CA) and a second
softphone with a TLS listener (connection reuse for its requests back).
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import threading
from pathlib import Path

import pytest

from peers.certs import TestCA
from peers.kamailio import Kamailio
from peers.phoneconfig import write_config


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
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("registrar", ["localhost"])
    with TlsRegistrar(cert, key) as reg:
        reg.cert = ca.path
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


# -- Kamailio's TLS module ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A test CA, Kamailio's certificate and the listening phone's, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca = TestCA(directory, "softphone test CA")
    kam_cert, kam_key = ca.issue("kamailio", ["127.0.0.1", "localhost"])
    phone_cert, phone_key = ca.issue("phone", ["127.0.0.1", "localhost"])
    return {"ca": ca.path, "kamailio": (kam_cert, kam_key), "phone": (phone_cert, phone_key),
            "other_ca": TestCA(directory, "some other CA").path}


@pytest.fixture(scope="module")
def kamailio_tls(tmp_path_factory, pki):
    kam = Kamailio(tmp_path_factory.mktemp("kamailio-tls"), tls=(*pki["kamailio"], pki["ca"]))
    kam.start()
    yield kam
    kam.stop()


def tls_phone(path: Path, kam: Kamailio, user: str, pki: dict, *, ca: Path | None = None,
              listener: bool = False, account_extra: str = "") -> Path:
    network = ""
    if listener:
        cert, key = pki["phone"]
        network = (f'tls_listen = "127.0.0.1:0"\ntls_cert_file = "{cert}"\n'
                   f'tls_key_file = "{key}"')
    return write_config(path, kam, user, transport="tls", account_extra=account_extra,
                        network_extra=network,
                        extra=f'[sip]\ntls_ca_file = "{ca or pki["ca"]}"')


@pytest.mark.peers
def test_register_and_call_both_ways_through_kamailio_over_tls(kamailio_tls, pki, softphone,
                                                               tmp_path):
    """1002 listens for TLS with a certificate from the test CA, Kamailio reaches it there
    (verifying that certificate); 1001 has no listener and calls over the connection it
    registered on. The SDP's SDES keys travel inside TLS only, so both encrypt the media."""
    kam = kamailio_tls
    srtp = 'media_encryption = "sdes-required"'
    trace = tmp_path / "b.txt"
    b = softphone("answer", "--auto", "--max-calls", "1", "--sip-trace", str(trace), "--config",
                  str(tls_phone(tmp_path / "b.toml", kam, "1002", pki, listener=True,
                                account_extra=srtp)))
    listening = b.wait_event("listening", timeout=15)
    tls_port = int(listening["tls"].rsplit(":", 1)[1])
    assert tls_port != listening["port"]
    b.wait_event("registered", timeout=15)
    (contact,) = kam.wait_registered("1002", timeout=5)
    assert f":{tls_port};transport=tls" in contact.lower(), contact
    a = softphone("call", "sip:1002@127.0.0.1", "--duration", "1.5", "--config",
                  str(tls_phone(tmp_path / "a.toml", kam, "1001", pki, account_extra=srtp)))
    a.wait_event("registered", timeout=15)
    answered = a.wait_event("answered", timeout=20)
    assert answered["srtp"] and answered["codec"], answered
    assert a.wait_exit(20) == 0, a.diagnostics()
    assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    assert b.wait_exit(15) == 0, b.diagnostics()
    assert b.find_event("answered")["srtp"] == answered["srtp"]
    text = trace.read_text()
    invite = re.search(r"--- \S+ received (\w+) \S+\nINVITE sip:(\S+) ", text)
    assert invite and invite.group(1) == "tls", text[:2000]
    assert invite.group(2).startswith("1002-")  # our registered Contact, token and all
    assert "inline:****" in text and not re.search(r"inline:[A-Za-z0-9+/]{20}", text)


@pytest.mark.peers
def test_a_wrong_ca_fails_with_the_reason(kamailio_tls, pki, softphone, tmp_path):
    cfg = tls_phone(tmp_path / "a.toml", kamailio_tls, "1001", pki, ca=pki["other_ca"])
    p = softphone("register", "--config", str(cfg))
    assert p.wait_exit(20) == 1, p.diagnostics()
    err = p.stderr_text()
    assert "registration failed: TLS certificate of 127.0.0.1 not trusted" in err, err
    # OpenSSL's reason: Kamailio sends its chain, whose root we do not trust
    assert "self-signed certificate in certificate chain" in err, err


@pytest.mark.peers
def test_softphone_to_softphone_over_tls_reuses_the_callers_connection(pki, softphone,
                                                                       tmp_path):
    """B listens for TLS; A has no TLS listener. B hangs up: its BYE must go back over
    the connection A opened (A's Via ;alias), as nothing of A's listens for TLS."""
    cert, key = pki["phone"]
    b_cfg = write_config(tmp_path / "b.toml", network_extra=(
        f'tls_listen = "127.0.0.1:0"\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"'))
    b = softphone("answer", "--auto", "--max-calls", "1", "--duration", "3", "--config",
                  str(b_cfg))
    tls = b.wait_event("listening", timeout=15)["tls"]
    a_trace = tmp_path / "a.txt"
    a = softphone("call", f"sip:b@{tls};transport=tls", "--sip-trace", str(a_trace), "--config",
                  str(write_config(tmp_path / "a.toml",
                                   extra=f'[sip]\ntls_ca_file = "{pki["ca"]}"')))
    assert a.wait_event("answered", timeout=20)["codec"]
    ended = a.wait_event("ended", timeout=20)
    assert ended["reason"] == "remote-hangup", a.diagnostics()
    assert a.wait_exit(10) == 0, a.diagnostics()
    assert b.wait_exit(10) == 0, b.diagnostics()
    text = a_trace.read_text()
    assert re.search(rf"received tls {re.escape(tls)}\nBYE ", text), text[-2000:]
    assert "sent udp" not in text and "sent tcp" not in text


@pytest.mark.peers
def test_a_call_reaches_a_phone_without_a_tls_listener_over_its_registration(
        kamailio_tls, pki, softphone, tmp_path):
    """1002 registers over TLS and listens for no TLS of its own: Kamailio can reach it
    only over the connection 1002 opened, and does (Via ;alias, RFC 5923)."""
    kam = kamailio_tls
    trace = tmp_path / "b.txt"
    b = softphone("answer", "--auto", "--max-calls", "1", "--sip-trace", str(trace),
                  "--config", str(tls_phone(tmp_path / "b.toml", kam, "1002", pki)))
    assert "tls" not in b.wait_event("listening", timeout=15)
    b.wait_event("registered", timeout=15)
    a = softphone("call", "sip:1002@127.0.0.1", "--duration", "1", "--config",
                  str(tls_phone(tmp_path / "a.toml", kam, "1001", pki)))
    assert a.wait_event("answered", timeout=20)["codec"], a.diagnostics()
    assert a.wait_exit(20) == 0, a.diagnostics()
    assert b.wait_exit(15) == 0, b.diagnostics()
    text = trace.read_text()
    registered_on = re.search(r"--- \S+ sent tls (\S+)\nREGISTER ", text).group(1)
    invite = re.search(r"--- \S+ received (\w+) (\S+)\nINVITE ", text)
    assert invite and invite.groups() == ("tls", registered_on), text[:3000]


@pytest.mark.peers
async def test_crlf_keepalives_over_tls_are_answered_and_the_flow_stays(kamailio_tls, pki):
    """RFC 5626 §4.4.1 over TLS: a double CRLF every second, each to be answered by
    Kamailio's CRLF within the pong time (1 s here: the interval); a missing pong would
    count a dead flow and register again. Three pings and no dead flow: pongs came."""
    from agents import make_agent, register
    from softphone.config import Config

    kam = kamailio_tls
    config = Config.from_dict({
        "accounts": [{"aor": f"sip:1001@{kam.domain}", "password": kam.subscriber("1001").password,
                      "registrar": kam.tls_uri, "transport": "tls", "expires": 60}],
        "network": {"listen": "127.0.0.1:0", "keepalive": 1},
        "sip": {"tls_ca_file": str(pki["ca"])}})
    ua = make_agent(config, config.accounts[0])
    await ua.start(preload_media=False)
    try:
        assert await register(ua)
        stats = ua.stack.transport.stats
        for _ in range(100):  # bounded: 5 s for three pings a second apart
            if stats["keepalives_sent"] >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.1)  # the third ping's pong time
        assert stats["keepalives_sent"] >= 3 and stats["dead_flows"] == 0, stats
        assert ua.account(None).state == "registered"
    finally:
        await ua.close(timeout=3)


@pytest.mark.peers
def test_dialling_a_sips_uri_goes_over_tls_end_to_end(pki, softphone, tmp_path):
    """A sips: target (RFC 3261 §19.1.3, §26.2): TLS without ;transport=tls, the
    Request-URI and our Contact stay sips:, and the callee answers over TLS."""
    cert, key = pki["phone"]
    b = softphone("answer", "--auto", "--max-calls", "1", "--config", str(write_config(
        tmp_path / "b.toml", network_extra=(f'tls_listen = "127.0.0.1:0"\n'
                                            f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"'))))
    tls = b.wait_event("listening", timeout=15)["tls"]
    trace = tmp_path / "a.txt"
    a = softphone("call", f"sips:b@{tls}", "--duration", "1", "--sip-trace", str(trace),
                  "--config", str(write_config(tmp_path / "a.toml",
                                               extra=f'[sip]\ntls_ca_file = "{pki["ca"]}"')))
    assert a.wait_event("answered", timeout=20)["codec"], a.diagnostics()
    assert a.wait_exit(15) == 0, a.diagnostics()
    assert b.wait_exit(10) == 0, b.diagnostics()
    text = trace.read_text()
    invite = re.search(rf"--- \S+ sent tls {re.escape(tls)}\n(INVITE [^\n]+)\n(.*?)\n\n", text,
                       re.S)
    assert invite and invite.group(1) == f"INVITE sips:b@{tls} SIP/2.0", text[:2000]
    contact = re.search(r"(?m)^Contact: (.*)$", invite.group(2)).group(1)
    assert contact.startswith("<sips:") and "transport=" not in contact, contact
    ok = re.search(rf"--- \S+ received tls {re.escape(tls)}\nSIP/2.0 200 OK\n(.*?)\n\n",
                   text, re.S)
    theirs = re.search(r"(?m)^Contact: (.*)$", ok.group(1)).group(1)
    assert theirs.startswith("<sips:"), theirs  # the callee's, in its 200 (§12.1.1)
    assert "sent udp" not in text and "sent tcp" not in text


@pytest.mark.peers
def test_over_tls_a_new_connection_from_the_registrars_address_is_a_stranger(
        kamailio_tls, pki, softphone, tmp_path):
    """Registered over TLS with a listener: a new TLS connection from 127.0.0.1 (Kamailio's
    own address) is judged by the connection, not the address, and gets 403; Kamailio's
    call over the flow the phone registered on is answered (the TCP case is in
    test_strangers.py)."""
    from peers.sipmsg import sip_request, status, stream_response

    kam = kamailio_tls
    b = softphone("answer", "--auto", "--config",
                  str(tls_phone(tmp_path / "b.toml", kam, "1002", pki, listener=True)))
    listening = b.wait_event("listening", timeout=15)
    tls_port = int(listening["tls"].rsplit(":", 1)[1])
    b.wait_event("registered", timeout=15)
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    for method in ("OPTIONS", "INVITE"):
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            here = conn.getsockname()[1]
            conn.sendall(sip_request(method, f"sip:1002@127.0.0.1:{tls_port}", "127.0.0.1",
                                     here, proto="TLS"))
            got = stream_response(conn)  # bounded by the socket's 5 s timeout
        assert status(got) == 403, (method, got[:300])
    assert b.find_event("incoming") is None
    a = softphone("call", "sip:1002@127.0.0.1", "--duration", "0.5", "--config",
                  str(tls_phone(tmp_path / "a.toml", kam, "1001", pki)))
    answered = a.wait_event("answered", timeout=20)
    assert b.wait_event("answered", timeout=5)["call_id"] == answered["call_id"]
    assert a.wait_exit(20) == 0, a.diagnostics()
