"""Settings: audio devices and processing, tones, DTMF, calls, network, TLS, theme,
accounts — validated by the config loader.

Nothing is written unless ``Config.from_dict`` accepts the whole result; its error
(naming the key and the reason) is shown in place. An existing file is edited, not
rewritten: only the keys the user changed are set or removed (`edit_config`), so the
file's comments, layout and explicitly written defaults stay, and the old content is
kept as ``<name>.bak``. A file that does not exist yet is written whole. The screen
returns the new Config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (Button, DataTable, Footer, Header, Input, Label, Select, Static,
                             Switch)

from ..config import (CODECS, PTIMES, TRANSPORTS, AddAccount, Change, Config, ConfigError,
                      Remove, RemoveAccount, Set, default_config_path, edit_config, keys_of,
                      save_config, tables_of)
from ..config.common import MEDIA_ENCRYPTIONS

__all__ = ["SettingsScreen", "build_config", "changes_between"]

ACCOUNT_TEXT_FIELDS = ("name", "aor", "username", "display_name", "password", "password_env",
                       "registrar", "outbound_proxy", "expires")
# what the form calls each key (the config file's name is in the placeholder or the docs)
LABELS = {
    "name": "Account name", "aor": "Address of record", "username": "Auth user",
    "display_name": "Display name", "password": "Password (kept in the file)",
    "password_env": "Password from env var", "registrar": "Registrar",
    "outbound_proxy": "Outbound proxy", "expires": "Registration expiry (s)",
}
# the choices of [audio] dtmf_mode and an account's media_encryption, in words
DTMF_MODES = (("RFC 4733 when agreed, else SIP INFO", "auto"), ("RFC 4733 events", "rfc4733"),
              ("SIP INFO", "info"))
ENCRYPTIONS = {"none": "None (RTP)", "sdes": "SRTP when the far end can (SDES)",
               "sdes-required": "SRTP always (SDES)"}
# every account key the form edits (the others are kept as they are)
FORM_KEYS = (*ACCOUNT_TEXT_FIELDS, "transport", "media_encryption", "keyring", "register")
DEFAULT_DEVICE = "__default__"
# the microphone processing switches in words (the app's notices say them too): saved,
# and applied to the calls up at once
PROCESSING_LABELS = (("echo_cancellation", "echo cancellation"),
                     ("noise_suppression", "noise suppression"),
                     ("auto_gain_control", "gain control"))
PROCESSING_KEYS = tuple(key for key, _ in PROCESSING_LABELS)
# rows of on/off keys: (row label, ((key, label), …))
SWITCH_ROWS = (
    ("Microphone", PROCESSING_LABELS),
    ("Tones, DTMF", (("tones", "ring and ringback"), ("dtmf", "DTMF as RFC 4733 events"))),
)
SWITCHES = tuple(pair for _, pairs in SWITCH_ROWS for pair in pairs)
DEFAULT_THEME = "__default__"
KEEPALIVES_UDP = (("OPTIONS (answered: finds dead flows)", "options"), ("CRLF", "crlf"))


def complete_aor(text: str) -> str:
    """`1001@pbx.example.com` → `sip:1001@pbx.example.com` (what users paste from other
    phones); anything else as it is, for the loader to judge."""
    text = text.strip()
    if "@" in text and not text.lower().startswith(("sip:", "sips:")) and "<" not in text:
        return "sip:" + text
    return text


def parse_port_range(text: str) -> list[int] | str:
    """`10000-20000` (or `10000 20000`, `10000, 20000`) → [10000, 20000]; what cannot be
    read as two numbers is passed on, for the loader to name the key and the reason."""
    parts = [p for p in text.replace(",", " ").replace("-", " ").split() if p]
    if len(parts) == 2 and all(p.isdecimal() for p in parts):
        return [int(parts[0]), int(parts[1])]
    return text


def parse_list(text: str | None) -> list[str] | None:
    """`a, b` (or `a b`) → ["a", "b"]; empty → None (the key's default applies)."""
    items = [p for p in (text or "").replace(",", " ").split() if p]
    return items or None


def parse_int(text: str | None) -> int | str | None:
    """`30` → 30; empty → None (the default); anything else is passed on, for the loader
    to name the key and the reason."""
    if not text:
        return None
    return int(text) if text.isdecimal() else text


def build_config(base: Config, *, accounts: list[dict[str, Any]], codecs: str,
                 input_device: Any, output_device: Any, source: Path | None,
                 tables: dict[str, dict[str, Any]] | None = None,
                 ring_device: Any = DEFAULT_DEVICE) -> Config:
    """The edited settings over ``base``; raises ConfigError when anything is invalid.
    ``tables`` sets other keys (``{"network": {"listen": …}}``); None removes one (its
    default applies)."""
    data = base.to_dict()
    for name, values in (tables or {}).items():
        table = dict(data.get(name, {}))
        for key, value in values.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        data[name] = table
    audio = dict(data.get("audio", {}))
    names = [c.strip() for c in codecs.replace(";", ",").split(",") if c.strip()]
    audio["codecs"] = names
    for key, value in (("input_device", input_device), ("output_device", output_device),
                       ("ring_device", ring_device)):
        if value in (None, DEFAULT_DEVICE, Select.BLANK):
            audio.pop(key, None)
        else:
            audio[key] = value
    data["audio"] = audio
    if accounts:
        data["accounts"] = [dict(a) for a in accounts]
    else:
        data.pop("accounts", None)
    return Config.from_dict(data, source=source)


def changes_between(old: Config, new: Config, *, initial: list[dict[str, Any]],
                    accounts: list[dict[str, Any]], origins: list[int | None]) -> list[Change]:
    """The edits that turn the file `old` was loaded from into `new`, and nothing more.

    Tables are compared key by key (typed, so ``"pcmu"`` in the file and ``PCMU`` on
    screen are the same). Accounts are compared as the screen holds them: `initial`
    are the loaded accounts' dicts, `accounts` the edited ones, `origins[i]` the index
    in `initial` that ``accounts[i]`` started as (None: added on this screen)."""
    changes: list[Change] = []
    for name, decl in tables_of(Config).items():
        if decl.array:
            continue
        before, after = getattr(old, name), getattr(new, name)
        for key in keys_of(decl.cls):
            a, b = getattr(before, key), getattr(after, key)
            if a != b:
                changes.append(Remove(f"{name}.{key}") if b is None else Set(f"{name}.{key}", b))
    kept = [o for o in origins if o is not None]
    changes += [RemoveAccount(i) for i in reversed(range(len(initial))) if i not in kept]
    position = 0
    for origin, acc in zip(origins, accounts):
        if origin is None:
            continue
        before = initial[origin]
        for key in dict.fromkeys([*before, *acc]):
            if key not in acc:
                changes.append(Remove(f"accounts[{position}].{key}"))
            elif key not in before or before[key] != acc[key]:
                changes.append(Set(f"accounts[{position}].{key}", acc[key]))
        loaded = old.accounts[origin]
        if position != origin and "name" in acc and loaded._origin is not None \
                and "name" not in loaded._origin.keys:
            # its name was derived from its place (account2), which just changed
            changes.append(Set(f"accounts[{position}].name", acc["name"]))
        position += 1
    changes += [AddAccount(acc) for origin, acc in zip(origins, accounts) if origin is None]
    return changes


class SettingsScreen(Screen[Config | None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    SettingsScreen VerticalScroll { padding: 0 2; }
    SettingsScreen .section { text-style: bold; margin: 1 0 0 0; color: $accent; }
    SettingsScreen Grid { grid-size: 2; grid-columns: 26 1fr; grid-rows: auto; height: auto; }
    SettingsScreen #settings-path { color: $text-muted; margin: 1 0 0 0; }
    SettingsScreen Grid Label { padding: 1 0 0 0; }
    SettingsScreen #accounts-table { height: auto; max-height: 8; }
    SettingsScreen #settings-error { color: $error; text-style: bold; height: auto; }
    SettingsScreen .buttons { height: auto; margin: 1 0; }
    SettingsScreen .buttons Button { margin-right: 2; }
    SettingsScreen .switches { height: auto; }
    SettingsScreen .switches Label { margin-right: 3; }
    """

    def __init__(self, config: Config, path: Path | None, *, live: bool = True,
                 themes: list[str] = ()) -> None:
        super().__init__()
        self.config = config
        self.path = path
        self.themes = list(themes)
        self.live = live
        self.initial: list[dict[str, Any]] = config.to_dict().get("accounts", [])
        self.accounts: list[dict[str, Any]] = [dict(a) for a in self.initial]
        # which loaded account each row started as (None: added here), for the diff
        self.origins: list[int | None] = list(range(len(self.accounts)))
        self.editing: int | None = 0 if self.accounts else None
        self.saved_to: Path | None = None

    # -- layout -------------------------------------------------------------------------
    @property
    def target(self) -> Path:
        """The file Save writes."""
        return Path(self.path) if self.path is not None else \
            (self.config.source or default_config_path())

    def compose(self) -> ComposeResult:
        audio, network = self.config.audio, self.config.network
        yield Header(show_clock=False)
        with VerticalScroll():
            target = self.target
            how = ("only the keys you change are edited; the old file is kept as "
                   f"{target.name}.bak") if target.exists() else "a new file"
            yield Static(f"Saves to {target} ({how})", id="settings-path")
            yield Static("Audio", classes="section")
            with Grid():
                yield Label("Input device")
                yield Select(self._device_options(audio.input_device), id="input-device",
                             value=self._device_value(audio.input_device), allow_blank=False)
                yield Label("Output device")
                yield Select(self._device_options(audio.output_device), id="output-device",
                             value=self._device_value(audio.output_device), allow_blank=False)
                yield Label("Ring device")
                yield Select(self._device_options(audio.ring_device, default="Output device"),
                             id="ring-device", value=self._device_value(audio.ring_device),
                             allow_blank=False)
                yield Label("Codecs, in order")
                yield Input(", ".join(audio.codecs), id="codecs",
                            placeholder=", ".join(CODECS))
                yield Label("Packet time (ms)")
                yield Select([(f"{p} ms", p) for p in PTIMES], id="ptime", value=audio.ptime,
                             allow_blank=False)
                for row, pairs in SWITCH_ROWS:
                    yield Label(row)
                    with Horizontal(classes="switches"):
                        for key, label in pairs:
                            yield Switch(id=key.replace("_", "-"), value=getattr(audio, key),
                                         tooltip=label)
                            yield Label(label)
                yield Label("DTMF sent as")
                yield Select(DTMF_MODES, id="dtmf-mode", value=audio.dtmf_mode,
                             allow_blank=False)
            yield Static("Calls", classes="section")
            with Grid():
                yield Label("Accept transfers (REFER)")
                yield Switch(id="accept-transfer", value=self.config.calls.accept_transfer)
            yield Static("Network", classes="section")
            with Grid():
                yield Label("Listen address")
                yield Input(network.listen, id="listen", placeholder="0.0.0.0:5060")
                yield Label("RTP port range")
                yield Input(f"{network.rtp_ports[0]}-{network.rtp_ports[1]}", id="rtp-ports",
                            placeholder="10000-20000")
                yield Label("STUN server")
                yield Input(network.stun_server or "", id="stun-server",
                            placeholder="optional, e.g. stun.example.com:3478")
                yield Label("DNS servers")
                yield Input(", ".join(network.dns_servers), id="dns-servers",
                            placeholder="default: the system's; e.g. 192.0.2.53, 192.0.2.54:5353")
                yield Label("Keep-alive interval (s)")
                yield Input("" if network.keepalive is None else str(network.keepalive),
                            id="keepalive", placeholder="default: 25 once a NAT is seen; 0 = off")
                yield Label("UDP keep-alive as")
                yield Select(KEEPALIVES_UDP, id="keepalive-udp", value=network.keepalive_udp,
                             allow_blank=False)
                yield Label("TLS CA file")
                yield Input(self.config.sip.tls_ca_file or "", id="tls-ca-file",
                            placeholder="default: the system's CAs")
                yield Label("TLS listen address")
                yield Input(network.tls_listen or "", id="tls-listen",
                            placeholder="optional, e.g. 0.0.0.0:5061 (needs the two below)")
                yield Label("TLS certificate (PEM)")
                yield Input(network.tls_cert_file or "", id="tls-cert-file",
                            placeholder="what the TLS listener serves")
                yield Label("TLS private key (PEM)")
                yield Input(network.tls_key_file or "", id="tls-key-file",
                            placeholder="the certificate's key, unencrypted")
            yield Static("Appearance", classes="section")
            with Grid():
                yield Label("Theme")
                themes = sorted(set(self.themes) | ({self.config.ui.theme} - {None}))
                yield Select([("Textual's default", DEFAULT_THEME)] + [(t, t) for t in themes],
                             id="theme", value=self.config.ui.theme or DEFAULT_THEME,
                             allow_blank=False)
            yield Static("Accounts", classes="section")
            yield DataTable(id="accounts-table", cursor_type="row")
            with Horizontal(classes="buttons"):
                yield Button("New account", id="account-new")
                yield Button("Remove account", id="account-remove", variant="warning")
            with Grid(id="account-form"):
                for key in ACCOUNT_TEXT_FIELDS:
                    yield Label(LABELS[key])
                    yield Input(id=f"acc-{key}", password=key == "password",
                                type="integer" if key == "expires" else "text",
                                placeholder=_PLACEHOLDERS.get(key, ""))
                yield Label("Transport")
                yield Select([(t, t) for t in TRANSPORTS], id="acc-transport", value="udp",
                             allow_blank=False)
                yield Label("Media encryption")
                yield Select([(ENCRYPTIONS[e], e) for e in MEDIA_ENCRYPTIONS],
                             id="acc-media-encryption", value="none", allow_blank=False)
                yield Label("Password from keyring")
                yield Switch(id="acc-keyring")
                yield Label("Register at start")
                yield Switch(id="acc-register", value=True)
            yield Static(id="settings-error")
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#accounts-table", DataTable)
        table.add_column("Name", key="name")
        table.add_column("Address of record", key="aor")
        table.add_column("Password from", key="secret")
        self._show_accounts()
        self._load_form()
        self.query_one("#input-device", Select).focus()  # the first field
        if self.live:
            self.run_worker(self._load_devices, thread=True, name="devices")

    @staticmethod
    def _device_value(device: Any) -> Any:
        return DEFAULT_DEVICE if device is None else device

    def _device_options(self, current: Any, devices: list[tuple[str, Any]] = (),
                        default: str = "System default") -> list:
        options: list[tuple[str, Any]] = [(default, DEFAULT_DEVICE)]
        options.extend(devices)
        if current is not None and current not in [v for _, v in options]:
            options.append((str(current), current))
        return options

    def _load_devices(self) -> None:
        """PortAudio's device list (a thread: PyAudio may take a moment)."""
        try:
            from ..ua.phone import audio_devices as list_devices

            devices = list_devices()
        except Exception as exc:
            self.app.call_from_thread(self.notify, f"no audio devices: {exc}",
                                      severity="warning")
            return
        inputs = [(f"{d.index}: {d.name}", d.name) for d in devices if d.max_input_channels]
        outputs = [(f"{d.index}: {d.name}", d.name) for d in devices if d.max_output_channels]
        self.app.call_from_thread(self._set_devices, inputs, outputs)

    def _set_devices(self, inputs: list, outputs: list) -> None:
        audio = self.config.audio
        for sel_id, found, current, default in (
                ("#input-device", inputs, audio.input_device, "System default"),
                ("#output-device", outputs, audio.output_device, "System default"),
                ("#ring-device", outputs, audio.ring_device, "Output device")):
            select = self.query_one(sel_id, Select)
            value = select.value
            select.set_options(self._device_options(current, found, default))
            select.value = value

    # -- accounts -------------------------------------------------------------------------
    def _show_accounts(self) -> None:
        table = self.query_one("#accounts-table", DataTable)
        table.clear()
        for i, acc in enumerate(self.accounts):
            secret = "file" if acc.get("password") else "env " + acc["password_env"] \
                if acc.get("password_env") else "keyring" if acc.get("keyring") else "none"
            table.add_row(acc.get("name", f"account{i + 1}"), acc.get("aor", ""), secret,
                          key=str(i))
        if self.editing is not None and self.accounts:
            table.move_cursor(row=self.editing)
        self.query_one("#account-form").display = self.editing is not None

    def _load_form(self) -> None:
        acc = self.accounts[self.editing] if self.editing is not None else {}
        for key in ACCOUNT_TEXT_FIELDS:
            value = acc.get(key)
            self.query_one(f"#acc-{key}", Input).value = "" if value is None else str(value)
        self.query_one("#acc-transport", Select).value = acc.get("transport", "udp")
        self.query_one("#acc-media-encryption", Select).value = \
            acc.get("media_encryption", "none")
        self.query_one("#acc-keyring", Switch).value = bool(acc.get("keyring", False))
        self.query_one("#acc-register", Switch).value = bool(acc.get("register", True))

    def _store_form(self) -> None:
        """Write the form back into the account being edited (empty fields: defaults)."""
        if self.editing is None:
            return
        current = self.accounts[self.editing]  # keys it has stay, even at their defaults
        # keys the form does not show (auth_realm, allow_sdes_over_udp …) are kept as they are
        acc: dict[str, Any] = {k: v for k, v in current.items() if k not in FORM_KEYS}
        for key in ACCOUNT_TEXT_FIELDS:
            value = self.query_one(f"#acc-{key}", Input).value.strip()
            if key == "aor" and value:
                value = complete_aor(value)
                self.query_one("#acc-aor", Input).value = value
            if value:
                acc[key] = int(value) if key == "expires" and value.lstrip("-").isdecimal() \
                    else value
        transport = self.query_one("#acc-transport", Select).value
        if transport != "udp" or "transport" in current:
            acc["transport"] = transport
        encryption = self.query_one("#acc-media-encryption", Select).value
        if encryption != "none" or "media_encryption" in current:
            acc["media_encryption"] = encryption
        keyring = self.query_one("#acc-keyring", Switch).value
        if keyring or "keyring" in current:
            acc["keyring"] = keyring
        register = self.query_one("#acc-register", Switch).value
        if not register or "register" in current:
            acc["register"] = register
        self.accounts[self.editing] = acc

    def on_input_blurred(self, event: Input.Blurred) -> None:
        """Leaving the address of record: show it completed (`sip:` added)."""
        if event.input.id == "acc-aor" and event.value.strip():
            completed = complete_aor(event.value)
            if completed != event.value:
                event.input.value = completed

    def _tables(self) -> dict[str, dict[str, Any]]:
        """The form's keys outside [audio] codecs/devices and [[accounts]]."""
        def text(widget_id: str) -> str | None:
            return self.query_one(widget_id, Input).value.strip() or None

        theme = self.query_one("#theme", Select).value
        rtp = text("#rtp-ports")
        return {
            "audio": {"ptime": self.query_one("#ptime", Select).value,
                      **{key: self.query_one("#" + key.replace("_", "-"), Switch).value
                         for key, _ in SWITCHES},
                      "dtmf_mode": self.query_one("#dtmf-mode", Select).value},
            "calls": {"accept_transfer": self.query_one("#accept-transfer", Switch).value},
            "network": {"listen": text("#listen"),
                        "rtp_ports": parse_port_range(rtp) if rtp else None,
                        "stun_server": text("#stun-server"),
                        "dns_servers": parse_list(text("#dns-servers")),
                        "keepalive": parse_int(text("#keepalive")),
                        "keepalive_udp": self.query_one("#keepalive-udp", Select).value,
                        "tls_listen": text("#tls-listen"),
                        "tls_cert_file": text("#tls-cert-file"),
                        "tls_key_file": text("#tls-key-file")},
            "sip": {"tls_ca_file": text("#tls-ca-file")},
            "ui": {"theme": None if theme in (DEFAULT_THEME, Select.BLANK) else theme},
        }

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value is None:
            return
        index = int(event.row_key.value)
        if index == self.editing:
            return
        self._store_form()
        self.editing = index
        self._load_form()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "save":
            self.action_save()
        elif button == "cancel":
            self.action_cancel()
        elif button == "account-new":
            self.add_account()
        elif button == "account-remove":
            self.remove_account()

    def add_account(self) -> None:
        self._store_form()
        n = len(self.accounts) + 1
        names = {a.get("name") for a in self.accounts}
        while f"account{n}" in names:  # after a removal, account<N> may be taken
            n += 1
        self.accounts.append({"name": f"account{n}", "aor": ""})
        self.origins.append(None)
        self.editing = len(self.accounts) - 1
        self._show_accounts()
        self._load_form()
        self.query_one("#acc-aor", Input).focus()

    def remove_account(self) -> None:
        if self.editing is None:
            return
        del self.accounts[self.editing]
        del self.origins[self.editing]
        self.editing = (min(self.editing, len(self.accounts) - 1)
                        if self.accounts else None)
        self._show_accounts()
        self._load_form()

    # -- saving ---------------------------------------------------------------------------
    def action_save(self) -> None:
        self._store_form()
        error = self.query_one("#settings-error", Static)
        try:
            config = build_config(
                self.config, accounts=self.accounts,
                codecs=self.query_one("#codecs", Input).value,
                input_device=self.query_one("#input-device", Select).value,
                output_device=self.query_one("#output-device", Select).value,
                ring_device=self.query_one("#ring-device", Select).value,
                source=self.path, tables=self._tables())
            target = self.target
            if target.exists():  # edit just what changed; comments and layout stay
                config = edit_config(target, changes_between(
                    self.config, config, initial=self.initial, accounts=self.accounts,
                    origins=self.origins))
            else:
                save_config(config, target)
            self.saved_to = target
        except ConfigError as exc:
            error.update(f"Not saved: {exc}")
            self.notify(str(exc), title="Invalid settings", severity="error")
            return
        except OSError as exc:
            error.update(f"Not saved: {exc}")
            self.notify(str(exc), title="Cannot write the config", severity="error")
            return
        error.update("")
        self.notify(f"saved to {self.saved_to}")
        self.dismiss(config)

    def action_cancel(self) -> None:
        self.dismiss(None)


_PLACEHOLDERS = {
    "name": "office", "aor": "sip:1001@pbx.example.com (or 1001@pbx.example.com)",
    "username": "default: user of aor",
    "display_name": "optional", "password": "stored in the config file (mode 0600)",
    "password_env": "or: environment variable name", "registrar": "default: host of aor",
    "outbound_proxy": "optional, e.g. sip:proxy.example.com;lr", "expires": "600",
}
