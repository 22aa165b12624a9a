"""The security keys: the TLS listener's certificate and key are checked before anything
starts (file, key path and reason), SDES needs TLS signalling unless allowed, the stranger
policy takes one of its three values."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from peers.certs import TestCA
from softphone.config import ConfigError, load_config


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    return ca, *ca.issue("phone", ["127.0.0.1"])


def load(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    return load_config(str(path))


def tls(cert, key, listen: str = 'tls_listen = "127.0.0.1:0"\n') -> str:
    lines = "[network]\n" + listen
    if cert is not None:
        lines += f'tls_cert_file = "{cert}"\n'
    if key is not None:
        lines += f'tls_key_file = "{key}"\n'
    return lines


def error(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(tmp_path / "c.toml") in str(info.value)
    return str(info.value)


def test_a_good_pair_loads(pair, tmp_path):
    _, cert, key = pair
    c = load(tmp_path, tls(cert, key))
    assert (c.network.tls_listen, c.network.tls_cert_file, c.network.tls_key_file) == \
        ("127.0.0.1:0", str(cert), str(key))
    assert c.sip.stranger_policy == "reject"


def test_listener_needs_both_files(pair, tmp_path):
    _, cert, key = pair
    assert "network.tls_listen: a TLS listener needs a certificate and its key: set " \
           "tls_cert_file and tls_key_file" in error(tmp_path, tls(None, None))
    assert "network.tls_key_file: set tls_key_file too" in \
        error(tmp_path, tls(cert, None, listen=""))
    assert f"network.tls_cert_file: no such file: {tmp_path}/nope.pem" in \
        error(tmp_path, tls(tmp_path / "nope.pem", key))


def test_wrong_contents_are_named(pair, tmp_path):
    ca, cert, key = pair
    other_cert, other_key = ca.issue("other", ["127.0.0.1"])
    assert f"network.tls_cert_file: {key} holds no PEM certificate" in \
        error(tmp_path, tls(key, key))
    assert f"network.tls_key_file: {cert} holds no PEM private key" in \
        error(tmp_path, tls(cert, cert))
    assert f"network.tls_key_file: {other_key} is not the private key of the certificate" \
        in error(tmp_path, tls(cert, other_key))
    locked = tmp_path / "locked.pem"
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    locked.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    assert f"network.tls_key_file: {locked} is encrypted with a passphrase" in \
        error(tmp_path, tls(cert, locked))


def test_an_expired_certificate_is_refused(pair, tmp_path):
    ca, _, _ = pair
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    cert, key = ca.issue("expired", ["127.0.0.1"], not_before=old)
    assert "network.tls_cert_file: the certificate in" in error(tmp_path, tls(cert, key))
    assert "expired on" in error(tmp_path, tls(cert, key))


ACCOUNT = '[[accounts]]\naor = "{aor}"\nmedia_encryption = "{enc}"\n{extra}'


@pytest.mark.parametrize("aor,extra", [("sip:a@example.com", ""),
                                       ("sip:a@example.com", 'transport = "tcp"\n'),
                                       ("sip:a@example.com;transport=udp", "")])
def test_sdes_over_plain_signalling_is_refused(tmp_path, aor, extra):
    text = error(tmp_path, ACCOUNT.format(aor=aor, enc="sdes", extra=extra))
    assert "accounts[0].media_encryption: SDES sends the media keys inside the SDP" in text
    assert 'transport = "tls"' in text and "allow_sdes_over_udp = true" in text


@pytest.mark.parametrize("aor,extra", [("sips:a@example.com", ""),
                                       ("sip:a@example.com", 'transport = "tls"\n'),
                                       ("sip:a@example.com", "allow_sdes_over_udp = true\n")])
def test_sdes_with_tls_or_when_allowed(tmp_path, aor, extra):
    c = load(tmp_path, ACCOUNT.format(aor=aor, enc="sdes-required", extra=extra))
    assert c.accounts[0].media_encryption == "sdes-required"


def test_choices_are_checked(tmp_path):
    assert "sip.stranger_policy: must be one of reject, drop, accept (got 'ignore')" in \
        error(tmp_path, '[sip]\nstranger_policy = "ignore"\n')
    assert "accounts[0].media_encryption: must be one of none, sdes, sdes-required" in \
        error(tmp_path, ACCOUNT.format(aor="sips:a@b.example", enc="zrtp", extra=""))


def test_cli_refuses_a_bad_tls_config_before_starting(pair, tmp_path):
    _, cert, _ = pair
    path = tmp_path / "c.toml"
    path.write_text(tls(cert, cert))
    out = subprocess.run([sys.executable, "-m", "softphone", "answer", "--config", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"softphone: config error: {path}: network.tls_key_file: ")
