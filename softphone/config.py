"""Configuration: one TOML file → typed, validated, frozen settings.

Every problem is reported as a `ConfigError` naming the file, the key path
(`accounts[0].transport`) and the reason, so a typo stops the program at start-up
instead of surfacing later as a puzzling SIP failure. Unknown keys are errors too.

Secrets never show: the password is held in a `Secret` whose repr is `***`, it is
left out of `Account`'s repr, and no error message quotes it. A password can also
come from an environment variable (`password_env`) or the system keyring
(`keyring = true`); those are resolved only when `Account.secret()` is called.
"""

from __future__ import annotations

import dataclasses
import difflib
import hmac
import importlib.util
import ipaddress
import os
import re
import stat
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "APP_NAME",
    "AUDIO_BACKENDS",
    "CODECS",
    "KEYRING_SERVICE",
    "PTIMES",
    "TRANSPORTS",
    "Account",
    "AudioSettings",
    "Config",
    "ConfigError",
    "NetworkSettings",
    "Secret",
    "SipSettings",
    "UiSettings",
    "config_to_dict",
    "default_config_path",
    "load_config",
    "parse_listen",
    "save_config",
    "set_config_value",
]

APP_NAME = "softphone"
KEYRING_SERVICE = "softphone"
TRANSPORTS = ("udp", "tcp", "tls")
AUDIO_BACKENDS = ("pyaudio", "null")
CODECS = ("opus", "G722", "PCMU", "PCMA")
PTIMES = (10, 20, 30, 40, 60)
EXPIRES_RANGE = (10, 86400)
RTP_PORT_RANGE = (1024, 65535)


def default_config_path() -> Path:
    """The platform's per-user config file, e.g. ~/.config/softphone/config.toml."""
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / "config.toml"


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A config problem: `str()` is '<file>: <key path>: <reason>' (parts omitted
    when unknown). Never carries a secret."""

    def __init__(
        self,
        reason: str,
        *,
        source: Path | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        parts = [str(self.source)] if self.source is not None else []
        if self.line is not None:
            parts.append(f"line {self.line}, column {self.column}")
        if self.key:
            parts.append(self.key)
        parts.append(self.reason)
        return ": ".join(parts)


# --------------------------------------------------------------------------- secret


class Secret:
    """A password that will not print itself; `reveal()` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling is fine; printing is not
        return (Secret, (self._value,))


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Origin:
    """Where an account came from, so late errors (env var unset) can name it."""

    source: Path | None
    index: int


@dataclass(frozen=True)
class Account:
    """One SIP identity. Build it through `Config.from_dict`/`load_config`, which
    validate; direct construction only fills in the derived defaults."""

    aor: str
    name: str = "account1"
    username: str | None = None  # None → user part of aor
    password: Secret | None = field(default=None, repr=False)
    password_env: str | None = None
    keyring: bool = False
    display_name: str | None = None
    registrar: str | None = None  # None → scheme:host[:port] of aor
    outbound_proxy: str | None = None
    transport: str | None = None  # None → aor's ;transport=, else tls for sips:, else udp
    register: bool = True
    expires: int = 600
    auth_realm: str | None = None
    _origin: _Origin | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        uri = _split_sip_uri(self.aor)
        if self.username is None:
            object.__setattr__(self, "username", _unescape(uri.user or ""))
        if self.registrar is None:
            object.__setattr__(self, "registrar", f"{uri.scheme}:{uri.hostport}")
        if self.transport is None:  # by scheme, else the aor's ;transport= parameter
            param = (_uri_param(uri.params, "transport") or "").lower()
            if uri.scheme == "sips":
                default = "tls"  # sips: means TLS on every hop, whatever the parameter says
            else:
                default = param if param in TRANSPORTS else "udp"
            object.__setattr__(self, "transport", default)

    # -- derived views of the aor
    @property
    def aor_uri(self):
        """The address of record as a parsed SipUri."""
        from .sip.uri import parse_uri

        return parse_uri(self.aor)

    @property
    def user(self) -> str:
        """The user part of the address of record (as written, %-escapes kept)."""
        return _split_sip_uri(self.aor).user or ""

    @property
    def domain(self) -> str:
        """The host of the address of record, without port or brackets."""
        return _split_sip_uri(self.aor).host

    @property
    def hostport(self) -> str:
        """host[:port] of the address of record, IPv6 in brackets."""
        return _split_sip_uri(self.aor).hostport

    @property
    def secret_source(self) -> str:
        """'password', 'password_env', 'keyring' or 'none' — for display."""
        if self.password is not None:
            return "password"
        if self.password_env is not None:
            return "password_env"
        if self.keyring:
            return "keyring"
        return "none"

    def secret(self) -> str | None:
        """The password, resolved now from wherever the config says it lives.

        None when the account has no password. Raises ConfigError (naming the
        variable or keyring entry, never the value) when it cannot be found.
        """
        if self.password is not None:
            return self.password.reveal()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise self._error(
                    "password_env", f"environment variable {self.password_env!r} is not set"
                )
            return value
        if self.keyring:
            return self._keyring_secret()
        return None

    def _keyring_secret(self) -> str:
        try:
            import keyring  # optional dependency: pip install keyring
        except ImportError:
            raise self._error("keyring", _KEYRING_MISSING) from None
        try:
            value = keyring.get_password(KEYRING_SERVICE, self.name)
        except Exception as exc:  # backend errors: locked, no backend, D-Bus…
            raise self._error(
                "keyring", f"keyring lookup failed: {type(exc).__name__}: {exc}"
            ) from None
        if value is None:
            raise self._error(
                "keyring",
                f"no password in the keyring for service {KEYRING_SERVICE!r}, user "
                f"{self.name!r} (store one with: keyring set {KEYRING_SERVICE} {self.name})",
            )
        return value

    def _error(self, key: str, reason: str) -> ConfigError:
        if self._origin is not None:
            return ConfigError(
                reason, source=self._origin.source, key=f"accounts[{self._origin.index}].{key}"
            )
        return ConfigError(reason, key=f"account {self.name!r}: {key}")


@dataclass(frozen=True)
class NetworkSettings:
    listen: str = "0.0.0.0:0"  # port 0: any free port
    rtp_ports: tuple[int, int] = (10000, 20000)
    public_address: str | None = None
    rtp_timeout: float = 30.0  # seconds without RTP before a call ends; 0 = never
    max_calls: int = 8
    # new out-of-dialog requests per second per source IP (0 = no limit), and the burst
    rate_limit: float = 50.0
    rate_burst: int = 100

    @property
    def listen_host(self) -> str:
        """Host to bind, IPv6 without brackets."""
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_listen(self.listen)[1]


@dataclass(frozen=True)
class AudioSettings:
    backend: str = "pyaudio"
    input_device: str | int | None = None
    output_device: str | int | None = None
    codecs: tuple[str, ...] = CODECS
    ptime: int = 20
    dtmf: bool = True


@dataclass(frozen=True)
class SipSettings:
    user_agent: str = "softphone/0.1"
    t1_ms: int = 500
    t2_ms: int = 4000
    t4_ms: int = 5000
    tls_verify: bool = True  # check the server certificate and host name (never off silently)
    tls_ca_file: str | None = None  # PEM bundle to trust instead of the system's


@dataclass(frozen=True)
class UiSettings:
    theme: str | None = None  # a Textual theme name; None = Textual's default


@dataclass(frozen=True)
class Config:
    accounts: tuple[Account, ...] = ()
    network: NetworkSettings = field(default_factory=NetworkSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def default(cls) -> Config:
        """No config at all: no accounts, any free UDP port, default audio."""
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Path | None = None) -> Config:
        """Validate a parsed TOML document (or an equivalent dict)."""
        return _Parser(source).config(data)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def account(self, name: str | None = None) -> Account | None:
        """The named account; None → the first one (None if there are none)."""
        if name is None:
            return self.accounts[0] if self.accounts else None
        for acc in self.accounts:
            if acc.name == name:
                return acc
        have = ", ".join(repr(a.name) for a in self.accounts) or "none configured"
        raise ConfigError(f"no account named {name!r} (accounts: {have})", source=self.source)


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file.

    `None` means the default location; a missing default file gives
    `Config.default()`. An explicit path must exist.
    """
    explicit = path is not None
    file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError("file not found", source=file) from None
        return Config.default()
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", source=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", source=file, line=line,
                          column=exc.start - raw.rfind(b"\n", 0, exc.start)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(file, text, exc) from None
    config = _Parser(file).config(data)
    warnings = _permission_warnings(file, config)
    return dataclasses.replace(config, warnings=warnings) if warnings else config


_TOML_POS = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)


def _syntax_error(file: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    m = _TOML_POS.match(message)
    if m:
        line, col, msg = int(m["line"]), int(m["col"]), m["msg"]
    elif message.endswith(" (at end of document)"):
        msg = message.removesuffix(" (at end of document)") + " at end of file"
        line = text.count("\n") + 1
        col = len(text) - (text.rfind("\n") + 1) + 1
    else:
        return ConfigError(f"invalid TOML: {message}", source=file)
    lines = text.splitlines()
    if 0 < line <= len(lines) and "password" in lines[line - 1].lower():
        msg = re.sub(r"\s*'(?:[^'\\]|\\.)*'|\s*\"(?:[^\"\\]|\\.)*\"", "", msg)  # quote no chars
    return ConfigError(f"invalid TOML: {msg}", source=file, line=line, column=col)


def _permission_warnings(file: Path, config: Config) -> tuple[str, ...]:
    if os.name != "posix" or not any(a.password is not None for a in config.accounts):
        return ()
    try:
        mode = file.stat().st_mode
    except OSError:
        return ()
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{file}: contains a password but other users can read it; run: chmod 600 {file}",
        )
    return ()


# --------------------------------------------------------------------------- addresses


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _check_host(host: str, *, brackets: bool) -> str:
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
    return _check_host(host, brackets=True), int(port)


def _format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class _SipUri:
    scheme: str  # lower case
    user: str | None
    host: str  # without brackets
    port: int | None
    params: str  # ';…' as written, may be empty

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PARAMS = re.compile(r"(?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$%\"]*)?)*")


def _split_sip_uri(text: str) -> _SipUri:
    """Just enough SIP-URI syntax (RFC 3261 §19.1) to validate config values.
    Reasons never quote the text (it might hold a password)."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise ValueError("must be a sip: or sips: URI")
    user: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        if ":" in userinfo:
            raise ValueError(
                "must not contain a password; use password, password_env or keyring"
            )
        if not _USER.fullmatch(userinfo):
            raise ValueError("has an empty or invalid user part")
        user = userinfo
    rest, qmark, _headers = rest.partition("?")
    if qmark:
        raise ValueError("must not contain headers ('?…')")
    hostport, _, params = rest.partition(";")
    if params:
        params = ";" + params
        if not _PARAMS.fullmatch(params):
            raise ValueError("has invalid parameters")
    if hostport.startswith("["):
        end = hostport.find("]")
        host, after = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (after and not after.startswith(":")):
            raise ValueError("has an invalid host")
        has_port, port_text = bool(after), after[1:]
    else:
        host, sep, port_text = hostport.partition(":")
        has_port = bool(sep)
    if not host:
        raise ValueError("has no host")
    port: int | None = None
    if has_port:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError("has an invalid port (must be 1..65535)")
        port = int(port_text)
    try:
        bare_host = _check_host(host, brackets=True)
    except ValueError as exc:
        raise ValueError(f"has an invalid host: {exc}") from None
    return _SipUri(scheme, user, bare_host, port, params)


def _uri_param(params: str, name: str) -> str | None:
    for item in params.split(";")[1:]:
        key, _, value = item.partition("=")
        if key.lower() == name:
            return value
    return None


def _unescape(user: str) -> str:
    from urllib.parse import unquote

    return unquote(user)


def _redact(text: str) -> str:
    """Hide a password written into a URI's userinfo before quoting the text."""
    head, at, tail = text.rpartition("@")
    if not at:
        return text
    lower = head.lower()
    prefix = next((p for p in ("sips:", "sip:") if lower.startswith(p)), "")
    user, colon, _ = head[len(prefix):].partition(":")
    return f"{head[:len(prefix)]}{user}:***@{tail}" if colon else text


# --------------------------------------------------------------------------- parsing

_TOP_KEYS = ("accounts", "network", "audio", "sip", "ui")
_ACCOUNT_KEYS = (
    "name", "aor", "username", "password", "password_env", "keyring", "display_name",
    "registrar", "outbound_proxy", "transport", "register", "expires", "auth_realm",
)
_NETWORK_KEYS = ("listen", "rtp_ports", "public_address", "rtp_timeout", "max_calls",
                 "rate_limit", "rate_burst")
_AUDIO_KEYS = ("backend", "input_device", "output_device", "codecs", "ptime", "dtmf")
_SIP_KEYS = ("user_agent", "t1_ms", "t2_ms", "t4_ms", "tls_verify", "tls_ca_file")
_UI_KEYS = ("theme",)

_KEYRING_MISSING = (
    "the 'keyring' package is not installed (pip install keyring), "
    "or use password / password_env instead"
)
_MISSING: Any = object()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime | date | time):
        return "date/time"
    return type(value).__name__


def _choices(options: tuple[object, ...]) -> str:
    return ", ".join(str(o) for o in options)


class _Parser:
    """Walks the TOML document, turning each problem into a ConfigError."""

    def __init__(self, source: Path | None) -> None:
        self.source = source

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, source=self.source, key=key or None)

    # -- generic pieces

    def table(self, value: object, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a table (got {_type_name(value)})")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {_choices(allowed)}"
                raise self.error(path, f"unknown key {key!r} ({hint})")
        return value

    def string(self, t: Mapping[str, Any], key: str, path: str, default: Any = _MISSING,
               *, secret: bool = False, empty: bool = False) -> Any:
        p = f"{path}.{key}" if path else key
        if key not in t:
            if default is _MISSING:
                raise self.error(p, "is required")
            return default
        value = t[key]
        if not isinstance(value, str):
            raise self.error(p, f"must be a string (got {_type_name(value)})")
        if secret:
            return value
        if not value and not empty:
            raise self.error(p, "must not be empty")
        if _CONTROL.search(value):
            raise self.error(p, "must not contain control characters")
        return value

    def integer(self, t: Mapping[str, Any], key: str, path: str, default: int,
                lo: int | None = None, hi: int | None = None) -> int:
        p = f"{path}.{key}"
        if key not in t:
            return default
        value = t[key]
        if type(value) is not int:
            raise self.error(p, f"must be an integer (got {_type_name(value)})")
        self._check_range(p, value, lo, hi)
        return value

    def number(self, t: Mapping[str, Any], key: str, path: str, default: float,
               lo: float | None = None, hi: float | None = None) -> float:
        p = f"{path}.{key}"
        if key not in t:
            return default
        value = t[key]
        if type(value) not in (int, float):
            raise self.error(p, f"must be a number (got {_type_name(value)})")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(p, f"must be a finite number (got {value!r})")
        self._check_range(p, value, lo, hi)
        return float(value)

    def _check_range(self, p: str, value: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise self.error(p, f"must be between {lo} and {hi} (got {value!r})")
        if lo is not None and value < lo:
            raise self.error(p, f"must be at least {lo} (got {value!r})")
        if hi is not None and value > hi:
            raise self.error(p, f"must be at most {hi} (got {value!r})")

    def boolean(self, t: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        p = f"{path}.{key}"
        if key not in t:
            return default
        value = t[key]
        if not isinstance(value, bool):
            raise self.error(p, f"must be true or false (got {_type_name(value)})")
        return value

    def choice(self, t: Mapping[str, Any], key: str, path: str, default: Any,
               options: tuple[str, ...]) -> Any:
        value = self.string(t, key, path, default)
        if value is default:
            return value
        for option in options:
            if value.lower() == option.lower():
                return option
        raise self.error(f"{path}.{key}", f"must be one of {_choices(options)} (got {value!r})")

    def uri(self, t: Mapping[str, Any], key: str, path: str, *, user: bool | None,
            required: bool = False) -> tuple[str | None, _SipUri | None]:
        """A SIP URI; `user` True = must have one, False = must not, None = either."""
        p = f"{path}.{key}"
        text = self.string(t, key, path, _MISSING if required else None)
        if text is None:
            return None, None
        example = "sip:1001@pbx.example.com" if user else "sip:pbx.example.com"
        try:
            uri = _split_sip_uri(text)
        except ValueError as exc:
            reason = str(exc)
            if "password" in reason:  # never quote a URI that holds one
                raise self.error(p, reason) from None
            raise self.error(p, f"{reason}, like {example!r} (got {_redact(text)!r})") from None
        if user and uri.user is None:
            raise self.error(p, f"must have a user part, like {example!r} (got {text!r})")
        if user is False and uri.user is not None:
            raise self.error(p, f"must not have a user part, like {example!r} (got {text!r})")
        return text, uri

    # -- sections

    def config(self, data: Mapping[str, Any]) -> Config:
        top = self.table(data, "", _TOP_KEYS)
        return Config(
            accounts=self.accounts(top.get("accounts", [])),
            network=self.network(top.get("network", {})),
            audio=self.audio(top.get("audio", {})),
            sip=self.sip(top.get("sip", {})),
            ui=self.ui(top.get("ui", {})),
            source=self.source,
        )

    def accounts(self, value: object) -> tuple[Account, ...]:
        if not isinstance(value, list | tuple):
            raise self.error(
                "accounts", f"must be an array of tables, written [[accounts]] (got {_type_name(value)})"
            )
        accounts: list[Account] = []
        names: dict[str, int] = {}
        for index, raw in enumerate(value):
            account = self.account(raw, index)
            if account.name in names:
                raise self.error(
                    f"accounts[{index}].name",
                    f"duplicate account name {account.name!r} (also accounts[{names[account.name]}])",
                )
            names[account.name] = index
            accounts.append(account)
        return tuple(accounts)

    def account(self, raw: object, index: int) -> Account:
        path = f"accounts[{index}]"
        t = self.table(raw, path, _ACCOUNT_KEYS)
        aor, aor_uri = self.uri(t, "aor", path, user=True, required=True)
        assert aor is not None and aor_uri is not None
        name = self.string(t, "name", path, f"account{index + 1}")

        password = self.string(t, "password", path, None, secret=True)
        password_env = self.string(t, "password_env", path, None)
        use_keyring = self.boolean(t, "keyring", path, False)
        given = [k for k, v in (("password", password), ("password_env", password_env),
                                ("keyring", use_keyring or None)) if v is not None]
        if len(given) > 1:
            raise self.error(path, f"set only one of password, password_env, keyring "
                                   f"(got {' and '.join(given)})")
        if password_env is not None and not _ENV_NAME.fullmatch(password_env):
            raise self.error(f"{path}.password_env",
                             f"must be an environment variable name (got {password_env!r})")
        if use_keyring and importlib.util.find_spec("keyring") is None:
            raise self.error(f"{path}.keyring", _KEYRING_MISSING)

        registrar, _ = self.uri(t, "registrar", path, user=False)
        outbound_proxy, _ = self.uri(t, "outbound_proxy", path, user=None)
        transport = self.choice(t, "transport", path, None, TRANSPORTS)
        param = _uri_param(aor_uri.params, "transport")
        if param is not None and param.lower() not in TRANSPORTS:
            raise self.error(f"{path}.aor", f"transport parameter must be one of "
                                            f"{_choices(TRANSPORTS)} (got {param!r})")
        if aor_uri.scheme == "sips" and transport not in (None, "tls"):
            raise self.error(f"{path}.transport",
                             f"a sips: address of record needs 'tls' (got {transport!r})")
        return Account(
            aor=aor,
            name=name,
            username=self.string(t, "username", path, None),
            password=Secret(password) if password is not None else None,
            password_env=password_env,
            keyring=use_keyring,
            display_name=self.string(t, "display_name", path, None),
            registrar=registrar,
            outbound_proxy=outbound_proxy,
            transport=transport,
            register=self.boolean(t, "register", path, True),
            expires=self.integer(t, "expires", path, 600, *EXPIRES_RANGE),
            auth_realm=self.string(t, "auth_realm", path, None),
            _origin=_Origin(self.source, index),
        )

    def network(self, value: object) -> NetworkSettings:
        path = "network"
        t = self.table(value, path, _NETWORK_KEYS)
        d = NetworkSettings()
        listen = self.string(t, "listen", path, d.listen)
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise self.error(f"{path}.listen", str(exc)) from None
        public = self.string(t, "public_address", path, None)
        if public is not None:
            try:
                public = _check_host(public, brackets=False)
            except ValueError as exc:
                raise self.error(f"{path}.public_address",
                                 f"must be a host name or IP address: {exc}") from None
        return NetworkSettings(
            listen=_format_hostport(host, port),
            rtp_ports=self.rtp_ports(t, path, d.rtp_ports),
            public_address=public,
            rtp_timeout=self.number(t, "rtp_timeout", path, d.rtp_timeout, 0),
            max_calls=self.integer(t, "max_calls", path, d.max_calls, 1, 10000),
            rate_limit=self.number(t, "rate_limit", path, d.rate_limit, 0),
            rate_burst=self.integer(t, "rate_burst", path, d.rate_burst, 1, 1_000_000),
        )

    def rtp_ports(self, t: Mapping[str, Any], path: str, default: tuple[int, int]) -> tuple[int, int]:
        p = f"{path}.rtp_ports"
        if "rtp_ports" not in t:
            return default
        value = t["rtp_ports"]
        if not isinstance(value, list | tuple) or len(value) != 2:
            got = f"{len(value)} items" if isinstance(value, list | tuple) else _type_name(value)
            raise self.error(p, f"must be [LOW, HIGH], like [10000, 20000] (got {got})")
        for i, port in enumerate(value):
            if type(port) is not int:
                raise self.error(f"{p}[{i}]", f"must be an integer (got {_type_name(port)})")
            self._check_range(f"{p}[{i}]", port, *RTP_PORT_RANGE)
        low, high = value
        if high < low + 1 or (low % 2 and high < low + 2):
            raise self.error(p, f"must hold at least one even/odd port pair, LOW < HIGH "
                                f"(got [{low}, {high}])")
        return (low, high)

    def audio(self, value: object) -> AudioSettings:
        path = "audio"
        t = self.table(value, path, _AUDIO_KEYS)
        d = AudioSettings()
        ptime = self.integer(t, "ptime", path, d.ptime)
        if ptime not in PTIMES:
            raise self.error(f"{path}.ptime", f"must be one of {_choices(PTIMES)} (got {ptime})")
        return AudioSettings(
            backend=self.choice(t, "backend", path, d.backend, AUDIO_BACKENDS),
            input_device=self.device(t, "input_device", path),
            output_device=self.device(t, "output_device", path),
            codecs=self.codecs(t, path, d.codecs),
            ptime=ptime,
            dtmf=self.boolean(t, "dtmf", path, d.dtmf),
        )

    def device(self, t: Mapping[str, Any], key: str, path: str) -> str | int | None:
        p = f"{path}.{key}"
        value = t.get(key)
        if value is None or isinstance(value, str):
            return self.string(t, key, path, None)
        if type(value) is not int:
            raise self.error(p, f"must be a device name or index (got {_type_name(value)})")
        self._check_range(p, value, 0, None)
        return value

    def codecs(self, t: Mapping[str, Any], path: str, default: tuple[str, ...]) -> tuple[str, ...]:
        p = f"{path}.codecs"
        if "codecs" not in t:
            return default
        value = t["codecs"]
        if not isinstance(value, list | tuple):
            raise self.error(p, f"must be an array of codec names (got {_type_name(value)})")
        if not value:
            raise self.error(p, f"must name at least one codec of {_choices(CODECS)}")
        known = {c.lower(): c for c in CODECS}
        result: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{p}[{i}]", f"must be a string (got {_type_name(item)})")
            codec = known.get(item.lower())
            if codec is None:
                raise self.error(f"{p}[{i}]", f"must be one of {_choices(CODECS)} (got {item!r})")
            if codec in result:
                raise self.error(f"{p}[{i}]", f"duplicate codec {codec!r}")
            result.append(codec)
        return tuple(result)

    def sip(self, value: object) -> SipSettings:
        path = "sip"
        t = self.table(value, path, _SIP_KEYS)
        d = SipSettings()
        t1 = self.integer(t, "t1_ms", path, d.t1_ms, 1, 60_000)
        t2 = self.integer(t, "t2_ms", path, d.t2_ms, 1, 600_000)
        if t2 < t1:
            raise self.error(f"{path}.t2_ms", f"must be at least t1_ms ({t1}) (got {t2})")
        ca_file = self.string(t, "tls_ca_file", path, None)
        if ca_file is not None:
            ca_path = Path(ca_file).expanduser()
            if not ca_path.is_file():
                raise self.error(f"{path}.tls_ca_file", f"no such file: {ca_file}")
            ca_file = str(ca_path)
        return SipSettings(
            user_agent=self.string(t, "user_agent", path, d.user_agent),
            t1_ms=t1,
            t2_ms=t2,
            t4_ms=self.integer(t, "t4_ms", path, d.t4_ms, 1, 600_000),
            tls_verify=self.boolean(t, "tls_verify", path, d.tls_verify),
            tls_ca_file=ca_file,
        )

    def ui(self, value: object) -> UiSettings:
        t = self.table(value, "ui", _UI_KEYS)
        return UiSettings(theme=self.string(t, "theme", "ui", None))


# --------------------------------------------------------------------------- saving


def config_to_dict(config: Config) -> dict[str, Any]:
    """A TOML-ready dict holding what differs from the defaults (account names
    always), with each password kept in the form the user chose."""
    out: dict[str, Any] = {}
    if config.accounts:
        out["accounts"] = [_account_to_dict(a) for a in config.accounts]
    for key, value in (("network", config.network), ("audio", config.audio),
                       ("sip", config.sip), ("ui", config.ui)):
        section = _changed_fields(value, type(value)())
        if section:
            out[key] = section
    return out


def _account_to_dict(account: Account) -> dict[str, Any]:
    derived = Account(aor=account.aor)
    out: dict[str, Any] = {"name": account.name, "aor": account.aor}
    for f in dataclasses.fields(Account):
        if f.name in ("name", "aor", "_origin"):
            continue
        value = getattr(account, f.name)
        if value == getattr(derived, f.name):
            continue
        out[f.name] = value.reveal() if isinstance(value, Secret) else value
    return out


def _changed_fields(value: Any, default: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if v != getattr(default, f.name) and v is not None:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def save_config(config: Config, path: str | os.PathLike[str] | None = None) -> Path:
    """Write `config` as TOML (atomically, mode 0600, since it may hold a password).
    `path` None → `config.source`, else the default location. Returns the path.
    Comments in an existing file are not preserved."""
    file = Path(path).expanduser() if path is not None else (config.source or default_config_path())
    _write_atomic(file, dumps_toml(config_to_dict(config)))
    return file


def set_config_value(path: str | os.PathLike[str] | None, table: str, key: str,
                     value: str | int | bool) -> Path:
    """Set one scalar ``[table] key`` in the config file, editing only that line so the
    user's comments and layout survive (unlike `save_config`). The file is created if
    missing; the result must still load, else nothing is written and ConfigError says why.
    `path` None → the default location. Returns the path."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=file) from None
    line = f"{_toml_key(key)} = {_toml_value(value)}"
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\s*\[")
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, ln in enumerate(lines) if header.match(ln)), None)
    if start is None:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{table}]", line]
    else:
        end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i])),
                   len(lines))
        at = next((i for i in range(start + 1, end) if assignment.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, line)
        else:
            lines[at] = line
    new_text = "\n".join(lines) + "\n"
    try:
        data = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(file, new_text, exc) from None
    _Parser(file).config(data)  # raises ConfigError naming the file and key
    _write_atomic(file, new_text)
    return file


def _write_atomic(file: Path, text: str) -> None:
    """Replace `file` in one step, mode 0600 (it may hold a password)."""
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, 0o600)
        os.replace(tmp, file)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_HEADER = "# softphone configuration (see config.example.toml for every key)\n"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise the config's shapes: top-level tables whose values are scalars or
    arrays of scalars, and arrays of such tables (written [[name]])."""
    lines = [_HEADER.rstrip("\n")]
    for name, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for table in value:
                lines += ["", f"[[{_toml_key(name)}]]", *_toml_pairs(table)]
        elif isinstance(value, Mapping):
            lines += ["", f"[{_toml_key(name)}]", *_toml_pairs(value)]
        else:
            raise TypeError(f"top-level {name!r} must be a table or array of tables")
    return "\n".join(lines) + "\n"


def _toml_pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("strings must not contain lone surrogates")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")
