"""Every setting, declared once: type (the annotation), default, range or choices, doc.

Adding a key is one `setting(...)` line here plus its entry in config.example.toml
(tests/test_config_example.py fails until the example documents it). Adding a table is a
settings class here plus a `table(...)` field on `Config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..sip.uri import SipUri, parse_uri
from . import validators as v
from .common import (APP_NAME, AUDIO_BACKENDS, CODECS, KEYRING_SERVICE, MEDIA_ENCRYPTIONS,
                     PTIMES, STRANGER_POLICIES, TRANSPORTS, ConfigError, Secret)
from .declare import setting, table, tables

__all__ = ["Account", "AudioSettings", "CallSettings", "Config", "ControlSettings",
           "NetworkSettings", "SipSettings", "UiSettings"]

EXPIRES_RANGE = (10, 86400)


@dataclass(frozen=True)
class _Origin:
    """Where an account came from, so late errors (env var unset) can name it, and
    which keys the file set (kept on save even when they equal the derived value)."""

    source: Path | None
    index: int
    keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Account:
    """One SIP identity. Build it through `Config.from_dict`/`load_config`, which
    validate; direct construction only fills in the derived defaults."""

    aor: str = setting(doc="address of record: a sip:/sips: URI with a user part", check=v.aor)
    name: str = setting("account1", doc="unique name for --account; default account<N>")
    username: str | None = setting(None, doc="auth user name; default: the user part of aor")
    password: Secret | None = setting(None, doc="the password, in this file",
                                      parse=v.password, secret=True)
    password_env: str | None = setting(None, doc="environment variable holding the password",
                                       check=v.env_var_name)
    keyring: bool = setting(False, doc="password from the system keyring (service softphone)")
    display_name: str | None = setting(None, doc="display name of our From header")
    registrar: str | None = setting(None, doc="REGISTER target, a SIP URI without user; "
                                              "default: scheme and host[:port] of aor",
                                    check=v.registrar)
    outbound_proxy: str | None = setting(None, doc="send dialog-creating requests via this URI",
                                         check=v.outbound_proxy)
    transport: str | None = setting(None, doc="udp, tcp or tls; default: aor's ;transport=, "
                                              "tls for sips:, else as DNS says (NAPTR/SRV; "
                                              "UDP when it says nothing)", choices=TRANSPORTS)
    register: bool = setting(True, doc="register at start-up, refresh, unregister on exit")
    expires: int = setting(600, doc="registration lifetime asked for, seconds",
                           range=EXPIRES_RANGE)
    auth_realm: str | None = setting(None, doc="answer digest challenges from this realm only")
    media_encryption: str = setting("none", doc="SRTP with SDES keys (RFC 4568): none; sdes = "
                                                "when the far end can; sdes-required = always",
                                    choices=MEDIA_ENCRYPTIONS)
    allow_sdes_over_udp: bool = setting(False, doc="let SDES keys cross plain-text signalling "
                                                   "(udp or tcp), where anyone on the path reads them")
    _origin: _Origin | None = field(default=None, repr=False, compare=False)

    _checks = (v.one_secret_source, v.keyring_installed, v.sips_needs_tls, v.sdes_needs_tls)

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))
        uri = self.aor_uri
        if self.username is None:
            object.__setattr__(self, "username", uri.user or "")
        if self.registrar is None:
            object.__setattr__(self, "registrar", f"{uri.scheme}:{uri.hostport}")
        if self.transport is None:  # by scheme, else the aor's ;transport= parameter
            object.__setattr__(self, "transport", v.default_transport(uri))

    # -- derived views of the aor
    @property
    def aor_uri(self) -> SipUri:
        """The address of record as a parsed SipUri (a new one each time: it is mutable)."""
        return parse_uri(self.aor)

    @property
    def user(self) -> str:
        """The user part of the address of record (as written, %-escapes kept)."""
        if self.aor_uri.user is None:
            return ""
        # parse_uri's split: the userinfo runs from the scheme's ':' to the first '@'
        return self.aor.partition(":")[2].partition("@")[0].partition(":")[0]

    @property
    def domain(self) -> str:
        """The host of the address of record, without port or brackets."""
        return self.aor_uri.host_bare

    @property
    def hostport(self) -> str:
        """host[:port] of the address of record, IPv6 in brackets."""
        return self.aor_uri.hostport

    @property
    def fixed_transport(self) -> str | None:
        """The transport the file, the aor's ;transport= or sips: fixes; None when the
        key was left out: DNS chooses (RFC 3263 NAPTR/SRV), UDP when it says nothing."""
        given = self._origin.keys if self._origin is not None else frozenset()
        if self.transport != "udp" or "transport" in given or \
                "transport" in self.aor_uri.params:
            return self.transport
        return None

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
            raise self._error("keyring", v.KEYRING_MISSING) from None
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
    listen: str = setting("0.0.0.0:0", doc="SIP address HOST:PORT ([IPv6]:PORT); port 0: any free",
                          check=v.listen_address)
    rtp_ports: tuple[int, int] = setting((10000, 20000), doc="[LOW, HIGH] local UDP ports for RTP",
                                         parse=v.port_pair)
    public_address: str | None = setting(None, doc="address for Contact and SDP behind NAT",
                                         check=v.public_host)
    rtp_timeout: float = setting(30.0, doc="end a call after this many seconds without RTP; "
                                           "0 = never",
                                 range=(0, None))
    max_calls: int = setting(8, doc="most calls at once; more INVITEs get 486", range=(1, 10000))
    rate_limit: float = setting(50.0, doc="new out-of-dialog requests per second per source IP; "
                                          "0 = no limit", range=(0, None))
    rate_burst: int = setting(100, doc="burst allowed above rate_limit", range=(1, 1_000_000))
    dns_servers: tuple[str, ...] = setting((), doc="DNS servers \"IP[:PORT]\" for NAPTR/SRV/A "
                                                   "lookups; empty: the system's",
                                           parse=v.dns_servers)
    stun_server: str | None = setting(None, doc="STUN server HOST[:PORT] (RFC 5389): our public "
                                                "address for Contact and SDP",
                                      check=v.stun_server)
    nat_contact: bool = setting(True, doc="learn our public address from the registrar's "
                                          "received/rport and re-register with it")
    keepalive: int | None = setting(None, doc="seconds between keep-alives to the registrar; "
                                              "0 = off; default: 25 once a NAT was seen",
                                    range=(0, 3600))
    keepalive_udp: str = setting("options", doc="keep-alive over UDP: options (answered: finds "
                                                "dead flows, new NAT bindings) or crlf",
                                 choices=("options", "crlf"))
    tls_listen: str | None = setting(None, doc="HOST:PORT for incoming SIP over TLS (port 0: any "
                                               "free); needs tls_cert_file and tls_key_file",
                                     check=v.listen_address)
    tls_cert_file: str | None = setting(None, doc="PEM certificate (chain) the TLS listener "
                                                  "serves; also our client certificate",
                                        check=v.pem_file)
    tls_key_file: str | None = setting(None, doc="PEM private key of tls_cert_file, unencrypted",
                                       check=v.pem_file)

    _checks = (v.tls_identity,)

    @property
    def listen_host(self) -> str:
        """Host to bind, IPv6 without brackets."""
        return v.parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return v.parse_listen(self.listen)[1]


@dataclass(frozen=True)
class AudioSettings:
    backend: str = setting("pyaudio", doc="pyaudio (real devices) or null (silence)",
                           choices=AUDIO_BACKENDS)
    input_device: str | int | None = setting(None, doc="capture device name or PortAudio index",
                                             parse=v.device)
    output_device: str | int | None = setting(None, doc="playback device name or PortAudio index",
                                              parse=v.device)
    codecs: tuple[str, ...] = setting(CODECS, doc="codecs to offer and accept, preferred first",
                                      parse=v.codec_list)
    ptime: int = setting(20, doc="packetisation time, milliseconds", choices=PTIMES)
    dtmf: bool = setting(True, doc="offer telephone-event (RFC 4733) for DTMF")
    dtmf_mode: str = setting("auto", doc="how we send DTMF: rfc4733, info (SIP INFO "
                                         "application/dtmf-relay), or auto (RFC 4733 when "
                                         "negotiated, else INFO)",
                             choices=("auto", "rfc4733", "info"))
    echo_cancellation: bool = setting(True, doc="cancel the speaker's echo in the microphone "
                                                "(pyaudio backend; WebRTC AEC3)")
    noise_suppression: bool = setting(True, doc="suppress steady background noise in the "
                                                "microphone (pyaudio backend)")
    auto_gain_control: bool = setting(True, doc="level the microphone automatically "
                                                "(pyaudio backend)")
    tones: bool = setting(True, doc="ring on incoming calls and play ringback while our call "
                                    "rings, on the speaker (not for headless answer)")
    ring_device: str | int | None = setting(None, doc="device the ring tone plays on, name or "
                                                      "PortAudio index (default: output_device)",
                                            parse=v.device)


@dataclass(frozen=True)
class SipSettings:
    user_agent: str = setting("softphone/0.1", doc="User-Agent and Server header value")
    t1_ms: int = setting(500, doc="RFC 3261 T1: round-trip estimate, ms", range=(1, 60_000))
    t2_ms: int = setting(4000, doc="RFC 3261 T2: retransmit interval cap, ms (>= T1)",
                         range=(1, 600_000))
    t4_ms: int = setting(5000, doc="RFC 3261 T4: how long a message can stay in the network, ms",
                         range=(1, 600_000))
    tls_verify: bool = setting(True, doc="verify the TLS server's certificate and host name")
    tls_ca_file: str | None = setting(None, doc="PEM bundle to trust instead of the system's CAs",
                                      check=v.ca_file)
    reliable_provisional: str = setting(
        "supported", doc="100rel/PRACK (RFC 3262): supported (used when the peer requires "
                         "it), required, or disabled", choices=("supported", "required", "disabled"))
    session_timers: str = setting(
        "supported", doc="session timers (RFC 4028): supported (used when the peer takes "
                         "part), required, or disabled", choices=("supported", "required", "disabled"))
    session_expires: int = setting(1800, doc="session interval asked for, seconds (RFC 4028)",
                                   range=(90, 86400))
    min_se: int = setting(90, doc="shortest session interval accepted, seconds (>= 90)",
                          range=(90, 86400))
    stranger_policy: str = setting("reject", doc="out-of-dialog requests that come neither from "
                                                 "a registered account's registrar or proxy nor "
                                                 "to its Contact: reject (403), drop or accept",
                                   choices=STRANGER_POLICIES)

    _checks = (v.t2_not_below_t1, v.min_se_not_above_expires)


@dataclass(frozen=True)
class CallSettings:
    accept_transfer: bool = setting(True, doc="follow a REFER from the far end (call the "
                                              "transfer target); false: decline it (603)")
    max_redirects: int = setting(5, doc="3xx redirects followed per call; 0: a 3xx is a "
                                        "rejection", range=(0, 20))
    call_waiting: bool = setting(True, doc="a call during a call rings (with a call-waiting "
                                           "tone); false: it gets 486 Busy Here")
    dnd: bool = setting(False, doc="do not disturb: refuse every incoming call")
    dnd_status: int = setting(486, doc="the status do-not-disturb refuses calls with",
                              choices=(480, 486, 603))


@dataclass(frozen=True)
class UiSettings:
    theme: str | None = setting(None, doc="Textual theme name; default: Textual's")


@dataclass(frozen=True)
class ControlSettings:
    enabled: bool = setting(True, doc="a running phone listens on a local control socket")
    socket: str | None = setting(None, doc="control socket path; default: "
                                           "$XDG_RUNTIME_DIR/softphone/control.sock",
                                 check=v.socket_path)

    @property
    def socket_path(self) -> Path:
        """Where the control socket lives: `socket`, else the user's runtime dir."""
        if self.socket is not None:
            return Path(self.socket)
        import platformdirs

        return platformdirs.user_runtime_path(APP_NAME) / "control.sock"


@dataclass(frozen=True)
class Config:
    accounts: tuple[Account, ...] = tables(
        Account, doc="SIP identities, one [[accounts]] each; the first is the default",
        check=v.unique_names, defaults=lambda index: {"name": f"account{index + 1}"})
    network: NetworkSettings = table(NetworkSettings, doc="SIP and RTP addresses and limits")
    audio: AudioSettings = table(AudioSettings, doc="sound devices and codecs")
    sip: SipSettings = table(SipSettings, doc="SIP protocol details")
    calls: CallSettings = table(CallSettings, doc="call handling: transfer, redirects, "
                                                  "call waiting, do not disturb")
    ui: UiSettings = table(UiSettings, doc="the TUI")
    control: ControlSettings = table(ControlSettings, doc="the local control socket")
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def default(cls) -> Config:
        """No config at all: no accounts, any free UDP port, default audio."""
        return cls()

    # from_dict / to_dict are bound in the package's __init__: they live in load.py and
    # save.py, which read this module (a method importing them would close a cycle)

    def account(self, name: str | None = None) -> Account | None:
        """The named account; None → the first one (None if there are none)."""
        if name is None:
            return self.accounts[0] if self.accounts else None
        for acc in self.accounts:
            if acc.name == name:
                return acc
        have = ", ".join(repr(a.name) for a in self.accounts) or "none configured"
        raise ConfigError(f"no account named {name!r} (accounts: {have})", source=self.source)


def _check_declarations() -> None:
    """Build every table's spec now, so a bad declaration fails at import."""
    from .declare import spec_of, tables_of

    for decl in tables_of(Config).values():
        spec_of(decl.cls)


_check_declarations()
