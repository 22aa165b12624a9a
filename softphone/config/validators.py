"""The named validators that settings refer to (``check=``, ``parse=``, ``_checks``).

Each takes the value (or a table's values), returns it normalised, or raises `Invalid`
with a reason that quotes no secret.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..sip.errors import SipParseError
from ..sip.uri import SipUri, parse_uri
from .common import CODECS, TRANSPORTS, Secret
from .declare import Invalid, check_range, choices_text, read_int, read_str, type_name

__all__ = [
    "KEYRING_MISSING", "RTP_PORT_RANGE", "SOCKET_PATH_MAX", "aor", "ca_file", "check_host",
    "codec_list", "default_transport", "device", "dns_servers", "env_var_name",
    "keyring_installed", "listen_address", "min_se_not_above_expires", "one_secret_source",
    "outbound_proxy", "parse_listen", "password", "pem_file", "port_pair", "public_host",
    "redact", "registrar", "sdes_needs_tls", "server_address", "sip_uri", "sips_needs_tls",
    "socket_path", "stun_server", "t2_not_below_t1", "tls_identity", "unique_names",
]

RTP_PORT_RANGE = (1024, 65535)
KEYRING_MISSING = (
    "the 'keyring' package is not installed (pip install keyring), "
    "or use password / password_env instead"
)

# --------------------------------------------------------------------------- hosts

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def check_host(host: str, *, brackets: bool) -> str:
    """Validate an IPv4/IPv6 literal or DNS name; return it without brackets.

    With `brackets`, an IPv6 literal must be written '[…]' (as in HOST:PORT)."""
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        return inner
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid host") from None
        if brackets:
            raise ValueError(f"IPv6 addresses must be in brackets, like '[{host}]'")
        return host
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv4 address") from None
        return host
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name or address")
    return host


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPV6]:PORT' → (host without brackets, port). Port 0 means
    any free port. Raises ValueError with a reason (for `--listen` too)."""
    if text.startswith("["):
        host, sep, port = text.rpartition("]:")
        host += "]"
        if not sep:
            raise ValueError(f"must be HOST:PORT, like '[::1]:5060' (got {text!r})")
    else:
        if text.count(":") > 1:
            raise ValueError(f"IPv6 addresses must be in brackets, like '[::1]:5060' (got {text!r})")
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"must be HOST:PORT, like '0.0.0.0:5060' (got {text!r})")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"port must be 0..65535 (got {port!r})")
    return check_host(host, brackets=True), int(port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_address(text: str) -> str:
    """[network] listen: HOST:PORT, normalised."""
    try:
        return format_hostport(*parse_listen(text))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def public_host(text: str) -> str:
    """[network] public_address: a host name or IP address (IPv6 without brackets)."""
    try:
        return check_host(text, brackets=False)
    except ValueError as exc:
        raise Invalid(f"must be a host name or IP address: {exc}") from None


def server_address(text: str, default_port: int) -> tuple[str, int]:
    """'HOST', 'HOST:PORT', '[IPV6]' or '[IPV6]:PORT' → (host without brackets, port);
    ValueError with a reason."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]") or (":" not in text and text):
        return check_host(text, brackets=True), default_port
    if text.count(":") > 1 and not text.startswith("["):
        raise ValueError(f"IPv6 addresses must be in brackets, like '[::1]:{default_port}' "
                         f"(got {text!r})")
    host, port = parse_listen(text)
    if port == 0:
        raise ValueError(f"port must be 1..65535 (got {text!r})")
    return host, port


def dns_servers(value: Any) -> tuple[str, ...]:
    """[network] dns_servers: IP addresses, each optionally with :PORT (default 53)."""
    if not isinstance(value, list | tuple):
        raise Invalid(f"must be an array of \"IP\" or \"IP:PORT\" strings (got {type_name(value)})")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(f"must be a string (got {type_name(item)})", key=f"[{i}]")
        try:
            host, port = server_address(item, 53)
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise Invalid(f"must be an IP address, optionally :PORT: {exc}", key=f"[{i}]") from None
        out.append(format_hostport(host, port))
    return tuple(out)


def stun_server(text: str) -> str:
    """[network] stun_server: HOST or HOST:PORT (default 3478), normalised to HOST:PORT."""
    try:
        return format_hostport(*server_address(text, 3478))
    except ValueError as exc:
        raise Invalid(f"must be HOST or HOST:PORT: {exc}") from None


# --------------------------------------------------------------------------- SIP URIs


# RFC 3261 §25.1: what the user part and a parameter may hold unescaped ('%' starts an
# escape, which parse_uri checks); anything else must be %-escaped.
_USER_CHAR = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]")
_PARAM_CHAR = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]")

# softphone.sip.uri.parse_uri's reasons (the start of SipParseError.reason) → ours. Ours
# never quote the text: theirs do, and the text may hold a password.
_PARSE_REASONS = (
    ("missing host", "has no host"),
    ("bad host", "has an invalid host (not a host name, IPv4 or [IPv6] address)"),
    ("bad IPv6 reference", "has an invalid host (not an IPv6 address)"),
    ("unterminated IPv6 reference", "has an invalid host ('[' without ']')"),
    ("bad port", "has an invalid port (must be 1..65535)"),
    ("port out of range", "has an invalid port (must be 1..65535)"),
    ("empty user part", "has an empty user part"),
    ("bad %-escape", "has a bad %-escape ('%' must start two hex digits)"),
    ("%-escape is not UTF-8", "has a %-escape that is not UTF-8"),
    ("empty parameter name", "has a parameter without a name"),
)


def redact(text: str) -> str:
    """Hide a password written into a URI's userinfo before quoting the text."""
    head, at, tail = text.rpartition("@")
    if not at:
        return text
    lower = head.lower()
    prefix = next((p for p in ("sips:", "sip:") if lower.startswith(p)), "")
    user, colon, _ = head[len(prefix):].partition(":")
    return f"{head[:len(prefix)]}{user}:***@{tail}" if colon else text


def sip_uri(text: str, *, user: bool | None) -> SipUri:
    """A SIP URI as `softphone.sip.uri.parse_uri` reads it, plus what a config value
    must also be (RFC 3261 §19.1 to the letter, where the wire parser is lenient):
    sip: or sips:, no password, no headers, no empty parameter, nothing unescaped in the
    user part or a parameter that must be escaped, a valid host name or address.
    `user` True = must have a user part, False = must not, None = either. Reasons never
    quote a password."""
    example = "sip:1001@pbx.example.com" if user else "sip:pbx.example.com"

    def bad(reason: str) -> Invalid:
        return Invalid(f"{reason}, like {example!r} (got {redact(text)!r})")

    scheme, colon, _ = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise bad("must be a sip: or sips: URI")
    if text != text.strip():  # parse_uri forgives it; a config value should not hide it
        raise bad("must not start or end with white space")
    try:
        uri = parse_uri(text)
    except SipParseError as exc:
        reason = next((ours for theirs, ours in _PARSE_REASONS if exc.reason.startswith(theirs)),
                      "is not a valid SIP URI")
        raise bad(reason) from None
    if uri.password is not None:  # checked first: the reasons below quote the text
        raise Invalid("must not contain a password; use password, password_env or keyring")
    # parse_uri's own split: the userinfo ends at the first '@', headers follow a '?'
    rest = text.partition(":")[2]
    if uri.user is not None:
        userinfo, _, rest = rest.partition("@")
        _escaped_only(userinfo, _USER_CHAR, "the user part", bad)
    rest, qmark, _ = rest.partition("?")
    if qmark:
        raise bad("must not contain headers ('?…')")
    for param in rest.split(";")[1:]:
        if not param:
            raise bad("has an empty parameter (';;' or a trailing ';')")
        _escaped_only(param.replace("=", "", 1), _PARAM_CHAR, "a parameter", bad)
    try:
        check_host(uri.host, brackets=True)
    except ValueError as exc:
        raise bad(f"has an invalid host: {exc}") from None
    if user and uri.user is None:
        raise Invalid(f"must have a user part, like {example!r} (got {text!r})")
    if user is False and uri.user is not None:
        raise Invalid(f"must not have a user part, like {example!r} (got {text!r})")
    return uri


def _escaped_only(part: str, allowed: re.Pattern[str], where: str, bad: Any) -> None:
    for ch in part:
        if not allowed.fullmatch(ch):
            escaped = "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
            raise bad(f"must not contain {ch!r} unescaped in {where} (write {escaped})")


def aor(text: str) -> str:
    """accounts[].aor: a SIP URI with a user part; a ;transport= must be one we speak."""
    uri = sip_uri(text, user=True)
    if "transport" in uri.params and (param := uri.params["transport"] or "").lower() \
            not in TRANSPORTS:
        raise Invalid(f"transport parameter must be one of {choices_text(TRANSPORTS)} "
                      f"(got {param!r})")
    return text


def registrar(text: str) -> str:
    """accounts[].registrar: a SIP URI without a user part."""
    sip_uri(text, user=False)
    return text


def outbound_proxy(text: str) -> str:
    """accounts[].outbound_proxy: any SIP URI (with or without a user part)."""
    sip_uri(text, user=None)
    return text


# --------------------------------------------------------------------------- values


def password(value: Any) -> Secret:
    """accounts[].password: any string, kept in a `Secret` at once."""
    return Secret(read_str(value, secret=True))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_var_name(text: str) -> str:
    if not _ENV_NAME.fullmatch(text):
        raise Invalid(f"must be an environment variable name (got {text!r})")
    return text


def port_pair(value: Any) -> tuple[int, int]:
    """[network] rtp_ports: [LOW, HIGH] holding at least one even/odd pair."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        got = f"{len(value)} items" if isinstance(value, list | tuple) else type_name(value)
        raise Invalid(f"must be [LOW, HIGH], like [10000, 20000] (got {got})")
    for i, port in enumerate(value):
        try:
            read_int(port, RTP_PORT_RANGE)
        except Invalid as exc:
            raise Invalid(exc.reason, key=f"[{i}]") from None
    low, high = value
    if high < low + 1 or (low % 2 and high < low + 2):
        raise Invalid(f"must hold at least one even/odd port pair, LOW < HIGH "
                      f"(got [{low}, {high}])")
    return (low, high)


def codec_list(value: Any) -> tuple[str, ...]:
    """[audio] codecs: known names (any case, stored canonical), no duplicates, >= 1."""
    if not isinstance(value, list | tuple):
        raise Invalid(f"must be an array of codec names (got {type_name(value)})")
    if not value:
        raise Invalid(f"must name at least one codec of {choices_text(CODECS)}")
    known = {c.lower(): c for c in CODECS}
    result: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(f"must be a string (got {type_name(item)})", key=f"[{i}]")
        codec = known.get(item.lower())
        if codec is None:
            raise Invalid(f"must be one of {choices_text(CODECS)} (got {item!r})", key=f"[{i}]")
        if codec in result:
            raise Invalid(f"duplicate codec {codec!r}", key=f"[{i}]")
        result.append(codec)
    return tuple(result)


def device(value: Any) -> str | int:
    """[audio] input_device/output_device: a device name, or a PortAudio index >= 0."""
    if isinstance(value, str):
        return read_str(value)
    if type(value) is not int:
        raise Invalid(f"must be a device name or index (got {type_name(value)})")
    check_range(value, 0, None)
    return value


def ca_file(text: str) -> str:
    """[sip] tls_ca_file: an existing file (~ expanded)."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise Invalid(f"no such file: {text}")
    return str(path)


def pem_file(text: str) -> str:
    """[network] tls_cert_file / tls_key_file: an existing file (~ expanded); what it
    holds is checked with the pair (`tls_identity`)."""
    return ca_file(text)


# Linux's sockaddr_un holds 108 bytes, the last a NUL (macOS: 104)
SOCKET_PATH_MAX = 107


def socket_path(text: str) -> str:
    """[control] socket: an absolute path (~ expanded) short enough for AF_UNIX."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise Invalid(f"must be an absolute path, like '/run/user/1000/softphone/control.sock' "
                      f"(got {text!r})")
    size = len(os.fsencode(path))
    if size > SOCKET_PATH_MAX:
        raise Invalid(f"is {size} bytes long; a Unix socket path holds at most "
                      f"{SOCKET_PATH_MAX}")
    return str(path)


# --------------------------------------------------------------------------- tables


def one_secret_source(values: Mapping[str, Any]) -> None:
    """An account takes its password from one place at most."""
    given = [k for k in ("password", "password_env") if values.get(k) is not None]
    given += ["keyring"] if values.get("keyring") else []
    if len(given) > 1:
        raise Invalid(f"set only one of password, password_env, keyring "
                      f"(got {' and '.join(given)})")


def keyring_installed(values: Mapping[str, Any]) -> None:
    """keyring = true needs the optional 'keyring' package (checked, not imported)."""
    if values.get("keyring") and importlib.util.find_spec("keyring") is None:
        raise Invalid(KEYRING_MISSING, key="keyring")


def sips_needs_tls(values: Mapping[str, Any]) -> None:
    """A sips: address of record is TLS on every hop: no other transport."""
    transport = values.get("transport")
    if values["aor"].lower().startswith("sips:") and transport not in (None, "tls"):
        raise Invalid(f"a sips: address of record needs 'tls' (got {transport!r})",
                      key="transport")


def default_transport(uri: SipUri) -> str:
    """An account's transport when none is set: tls for sips:, else the aor's
    ;transport= parameter, else udp."""
    if uri.scheme == "sips":
        return "tls"  # sips: means TLS on every hop, whatever the parameter says
    param = (uri.params.get("transport") or "").lower()
    return param if param in TRANSPORTS else "udp"


def sdes_needs_tls(values: Mapping[str, Any]) -> None:
    """SDES puts the media keys in the SDP: plain-text signalling gives them away."""
    if values.get("media_encryption", "none") == "none" or values.get("allow_sdes_over_udp"):
        return
    transport = values.get("transport") or default_transport(parse_uri(values["aor"]))
    if transport != "tls":
        raise Invalid(f"SDES sends the media keys inside the SDP, and over transport "
                      f"{transport!r} anyone on the path can read them: use transport = "
                      f"\"tls\" (or a sips: aor), or set allow_sdes_over_udp = true",
                      key="media_encryption")


def tls_identity(values: Mapping[str, Any]) -> None:
    """[network] tls_listen needs a certificate and its key; both files must hold PEM
    that belongs together, unencrypted and not expired."""
    cert, key = values.get("tls_cert_file"), values.get("tls_key_file")
    if values.get("tls_listen") and not (cert and key):
        missing = " and ".join(k for k, f in (("tls_cert_file", cert), ("tls_key_file", key))
                               if not f)
        raise Invalid(f"a TLS listener needs a certificate and its key: set {missing}",
                      key="tls_listen")
    if bool(cert) != bool(key):
        raise Invalid("set tls_key_file too (the private key of tls_cert_file)" if cert else
                      "set tls_cert_file too (the certificate of tls_key_file)",
                      key="tls_key_file" if cert else "tls_cert_file")
    if not cert:
        return
    check_tls_pair(cert, key)


def check_tls_pair(cert: str, key: str) -> None:
    """Load the pair as the listener will (raises `Invalid` naming the file at fault)."""
    import ssl

    def read(path: str, name: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise Invalid(f"cannot read {path}: {exc.strerror or exc}", key=name) from None

    if b"-----BEGIN CERTIFICATE-----" not in read(cert, "tls_cert_file"):
        raise Invalid(f"{cert} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')",
                      key="tls_cert_file")
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", read(key, "tls_key_file")):
        raise Invalid(f"{key} holds no PEM private key", key="tls_key_file")

    def no_passphrase() -> bytes:
        raise Invalid(f"{key} is encrypted with a passphrase; softphone needs it "
                      f"unencrypted (openssl pkey -in {key} -out plain.pem; chmod 600)",
                      key="tls_key_file")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise Invalid(f"{key} is not the private key of the certificate in {cert}",
                          key="tls_key_file") from None
        raise Invalid(f"cannot load {cert} with {key}: {exc.reason or exc}",
                      key="tls_cert_file") from None
    import datetime as dt

    from cryptography import x509  # aiortc's dependency; only when TLS is set up

    first = x509.load_pem_x509_certificate(read(cert, "tls_cert_file"))
    now = dt.datetime.now(dt.timezone.utc)
    if first.not_valid_after_utc < now:
        raise Invalid(f"the certificate in {cert} expired on "
                      f"{first.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", key="tls_cert_file")
    if first.not_valid_before_utc > now:
        raise Invalid(f"the certificate in {cert} is not valid before "
                      f"{first.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", key="tls_cert_file")


def t2_not_below_t1(values: Mapping[str, Any]) -> None:
    t1, t2 = values["t1_ms"], values["t2_ms"]
    if t2 < t1:
        raise Invalid(f"must be at least t1_ms ({t1}) (got {t2})", key="t2_ms")


def min_se_not_above_expires(values: Mapping[str, Any]) -> None:
    expires, min_se = values["session_expires"], values["min_se"]
    if min_se > expires:
        raise Invalid(f"must not be above session_expires ({expires}) (got {min_se})",
                      key="min_se")


def unique_names(items: tuple[Any, ...]) -> None:
    """[[accounts]]: no two with the same name (as given or derived)."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in seen:
            raise Invalid(f"duplicate account name {item.name!r} "
                          f"(also accounts[{seen[item.name]}])", key=f"[{index}].name")
        seen[item.name] = index

