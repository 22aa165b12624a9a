"""Config loading, validation, secrets and saving (softphone/config.py)."""

from __future__ import annotations

import importlib.machinery
import os
import re
import stat
import sys
import tomllib
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone import config as cfg
from softphone.config import (
    Account,
    AudioSettings,
    Config,
    ConfigError,
    NetworkSettings,
    SipSettings,
    UiSettings,
    load_config,
    parse_listen,
    save_config,
    set_config_value,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
PASSWORD = "hunter2-Sup3rSecret"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> tuple[Path, ConfigError]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return path, info.value


# --------------------------------------------------------------------------- defaults


def test_default_config_values():
    c = Config.default()
    assert c.accounts == ()
    assert c.account() is None
    assert c.network.listen == "0.0.0.0:0"
    assert (c.network.listen_host, c.network.listen_port) == ("0.0.0.0", 0)
    assert c.network.rtp_ports == (10000, 20000)
    assert c.network.public_address is None
    assert c.network.rtp_timeout == 30
    assert c.network.max_calls == 8
    assert c.audio == AudioSettings("pyaudio", None, None, ("opus", "G722", "PCMU", "PCMA"), 20, True)
    assert c.sip == SipSettings("softphone/0.1", 500, 4000, 5000)
    assert c.ui.theme is None
    assert c.source is None


def test_missing_default_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cfg.default_config_path() == tmp_path / "xdg" / "softphone" / "config.toml"
    c = load_config(None)
    assert c == Config.default()
    assert c.source is None


def test_default_file_is_read_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "softphone" / "config.toml"
    path.parent.mkdir()
    path.write_text('[network]\nlisten = "127.0.0.1:5070"\n')
    c = load_config()
    assert c.network.listen == "127.0.0.1:5070"
    assert c.source == path


def test_explicit_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_empty_file_gives_defaults_with_source(tmp_path):
    path = write(tmp_path, "")
    c = load_config(str(path))
    assert c == Config.default()
    assert c.source == path


# --------------------------------------------------------------------------- example


def test_example_loads_cleanly():
    c = load_config(EXAMPLE)
    acc = c.account()
    assert acc is not None and acc.aor == "sip:1001@127.0.0.1"
    assert acc.name == "local" and acc.username == "1001"
    assert acc.password_env == "SOFTPHONE_PASSWORD" and acc.password is None
    assert c.network.rtp_ports == (10000, 20000)
    assert c.warnings == ()


def test_example_documents_every_key():
    text = EXAMPLE.read_text()
    sections = {
        "accounts": cfg._ACCOUNT_KEYS,
        "network": cfg._NETWORK_KEYS,
        "audio": cfg._AUDIO_KEYS,
        "sip": cfg._SIP_KEYS,
        "ui": cfg._UI_KEYS,
    }
    for section, keys in sections.items():
        assert re.search(rf"^\[\[?{section}\]\]?$", text, re.M), section
        for key in keys:
            # set, or shown commented out, in the file
            assert re.search(rf"^(# )?{key} = ", text, re.M), f"{section}.{key} undocumented"


def test_example_keys_match_dataclass_fields():
    """The parser's key lists and the settings classes must not drift apart."""
    import dataclasses

    def names(klass):
        return tuple(f.name for f in dataclasses.fields(klass) if not f.name.startswith("_"))

    assert set(names(Account)) == set(cfg._ACCOUNT_KEYS)
    assert set(names(NetworkSettings)) == set(cfg._NETWORK_KEYS)
    assert set(names(AudioSettings)) == set(cfg._AUDIO_KEYS)
    assert set(names(SipSettings)) == set(cfg._SIP_KEYS)
    assert set(names(UiSettings)) == set(cfg._UI_KEYS)


# --------------------------------------------------------------------------- accounts


def test_account_defaults_are_derived_from_aor(tmp_path):
    c = load_config(write(tmp_path, """
[[accounts]]
aor = "sip:1001@pbx.example.com:5080"
[[accounts]]
aor = "sips:alice%40corp@[2001:db8::1]"
register = false
"""))
    a, b = c.accounts
    assert (a.name, a.username, a.registrar, a.transport) == (
        "account1", "1001", "sip:pbx.example.com:5080", "udp")
    assert (a.register, a.expires, a.secret()) == (True, 600, None)
    assert (a.domain, a.hostport, a.user) == ("pbx.example.com", "pbx.example.com:5080", "1001")
    assert (b.name, b.username, b.registrar, b.transport) == (
        "account2", "alice@corp", "sips:[2001:db8::1]", "tls")
    assert b.domain == "2001:db8::1" and b.register is False


def test_aor_transport_parameter_sets_default_transport():
    c = Config.from_dict({"accounts": [
        {"aor": "sip:a@b.example;transport=TCP"},
        {"aor": "sip:a@c.example;transport=tcp", "transport": "udp"},
    ]})
    assert [a.transport for a in c.accounts] == ["tcp", "udp"]
    assert Config.from_dict(c.to_dict()) == c  # an explicit udp is kept on save
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.aor: transport parameter must be one"):
        Config.from_dict({"accounts": [{"aor": "sip:a@b;transport=sctp"}]})


def test_account_lookup(tmp_path):
    path = write(tmp_path, """
[[accounts]]
name = "home"
aor = "sip:1@a.example"
[[accounts]]
name = "office"
aor = "sip:2@b.example"
""")
    c = load_config(path)
    assert c.account().name == "home"
    assert c.account(None).name == "home"
    assert c.account("office").aor == "sip:2@b.example"
    with pytest.raises(ConfigError) as info:
        c.account("x")
    assert str(info.value).startswith(f"{path}: no account named 'x'")
    assert "'home'" in str(info.value) and "'office'" in str(info.value)


def test_codecs_are_normalised():
    c = Config.from_dict({"audio": {"codecs": ["pcmu", "OPUS", "g722"]}})
    assert c.audio.codecs == ("PCMU", "opus", "G722")


def test_choices_are_case_insensitive():
    c = Config.from_dict({"accounts": [{"aor": "sip:a@b", "transport": "TCP"}],
                          "audio": {"backend": "NULL"}})
    assert c.accounts[0].transport == "tcp" and c.audio.backend == "null"


def test_device_name_or_index():
    c = Config.from_dict({"audio": {"input_device": "pulse", "output_device": 0}})
    assert (c.audio.input_device, c.audio.output_device) == ("pulse", 0)


# --------------------------------------------------------------------------- errors

ACC = '[[accounts]]\naor = "sip:1001@127.0.0.1"\n'


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (ACC + 'transport = "sctp"', "accounts[0].transport",
         "must be one of udp, tcp, tls (got 'sctp')"),
        ("[[accounts]]\nname = 'x'", "accounts[0].aor", "is required"),
        ('[[accounts]]\naor = "1001@127.0.0.1"', "accounts[0].aor", "must be a sip: or sips: URI"),
        ('[[accounts]]\naor = "sip:127.0.0.1"', "accounts[0].aor", "must have a user part"),
        ('[[accounts]]\naor = "sip:1001@"', "accounts[0].aor", "has no host"),
        ('[[accounts]]\naor = "sip:1001@host:99999"', "accounts[0].aor", "invalid port"),
        ('[[accounts]]\naor = "sip:1001@bad_host!"', "accounts[0].aor", "invalid host"),
        ('[[accounts]]\naor = 1001', "accounts[0].aor", "must be a string (got integer)"),
        (ACC + 'expires = "600"', "accounts[0].expires", "must be an integer (got string)"),
        (ACC + "expires = 5", "accounts[0].expires", "must be between 10 and 86400 (got 5)"),
        (ACC + "register = 1", "accounts[0].register", "must be true or false (got integer)"),
        (ACC + 'registrar = "sip:1001@127.0.0.1"', "accounts[0].registrar",
         "must not have a user part"),
        (ACC + 'outbound_proxy = "http://proxy"', "accounts[0].outbound_proxy",
         "must be a sip: or sips: URI"),
        (ACC + 'password_env = "NOT A NAME"', "accounts[0].password_env",
         "must be an environment variable name"),
        (ACC + 'name = ""', "accounts[0].name", "must not be empty"),
        (ACC + 'display_name = "a\\r\\nVia: evil"', "accounts[0].display_name",
         "must not contain control characters"),
        (ACC + 'name = "a"\n' + ACC + 'name = "a"', "accounts[1].name",
         "duplicate account name 'a'"),
        (ACC + 'name = "account2"\n' + ACC, "accounts[1].name",
         "duplicate account name 'account2' (also accounts[0])"),
        ('[[accounts]]\naor = "sips:a@b"\ntransport = "udp"', "accounts[0].transport",
         "a sips: address of record needs 'tls'"),
        ('accounts = "x"', "accounts", "must be an array of tables"),
        ('[accounts]\naor = "sip:a@b"', "accounts", "must be an array of tables"),
        ('network = 3', "network", "must be a table (got integer)"),
        ('[network]\nlisten = "0.0.0.0"', "network.listen", "must be HOST:PORT"),
        ('[network]\nlisten = "::1:5060"', "network.listen", "IPv6 addresses must be in brackets"),
        ('[network]\nlisten = "[::1]"', "network.listen", "must be HOST:PORT"),
        ('[network]\nlisten = "[::zz]:5060"', "network.listen", "is not an IPv6 address"),
        ('[network]\nlisten = "1.2.3.4:65536"', "network.listen", "port must be 0..65535"),
        ('[network]\nlisten = "300.1.1.1:5060"', "network.listen", "not a valid IPv4 address"),
        ('[network]\nrtp_ports = [20000, 10000]', "network.rtp_ports", "LOW < HIGH"),
        ('[network]\nrtp_ports = [10001, 10002]', "network.rtp_ports", "even/odd port pair"),
        ('[network]\nrtp_ports = [10000]', "network.rtp_ports", "must be [LOW, HIGH]"),
        ('[network]\nrtp_ports = [80, 10000]', "network.rtp_ports[0]",
         "must be between 1024 and 65535 (got 80)"),
        ('[network]\nrtp_ports = [10000, "x"]', "network.rtp_ports[1]", "must be an integer"),
        ('[network]\npublic_address = "not valid!"', "network.public_address",
         "must be a host name or IP address"),
        ('[network]\nrtp_timeout = -1', "network.rtp_timeout", "must be at least 0"),
        ('[network]\nrtp_timeout = nan', "network.rtp_timeout", "must be a finite number"),
        ('[network]\nmax_calls = 0', "network.max_calls", "must be between 1 and"),
        ('[audio]\nbackend = "alsa"', "audio.backend", "must be one of pyaudio, null (got 'alsa')"),
        ('[audio]\ncodecs = []', "audio.codecs", "must name at least one codec"),
        ('[audio]\ncodecs = ["PCMU", "gsm"]', "audio.codecs[1]",
         "must be one of opus, G722, PCMU, PCMA (got 'gsm')"),
        ('[audio]\ncodecs = ["PCMU", "pcmu"]', "audio.codecs[1]", "duplicate codec 'PCMU'"),
        ('[audio]\ncodecs = "PCMU"', "audio.codecs", "must be an array"),
        ('[audio]\nptime = 25', "audio.ptime", "must be one of 10, 20, 30, 40, 60 (got 25)"),
        ('[audio]\ninput_device = 1.5', "audio.input_device", "must be a device name or index"),
        ('[audio]\noutput_device = -1', "audio.output_device", "must be at least 0"),
        ('[audio]\ndtmf = "yes"', "audio.dtmf", "must be true or false (got string)"),
        ('[sip]\nt1_ms = 500\nt2_ms = 100', "sip.t2_ms", "must be at least t1_ms"),
        ('[sip]\nuser_agent = ""', "sip.user_agent", "must not be empty"),
        ('[ui]\ntheme = 3', "ui.theme", "must be a string (got integer)"),
    ],
)
def test_validation_error_names_file_key_and_reason(tmp_path, text, key, reason):
    path, err = load_error(tmp_path, text)
    assert str(err).startswith(f"{path}: {key}: "), str(err)
    assert reason in str(err)
    assert (err.source, err.key) == (path, key)


def test_unknown_top_level_key(tmp_path):
    path, err = load_error(tmp_path, '[[acounts]]\naor = "sip:a@b"\n')
    assert str(err) == f"{path}: unknown key 'acounts' (did you mean 'accounts'?)"


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ('[network]\nlisten_on = "0.0.0.0:0"', "network", "listen_on"),
        (ACC + 'pasword = "x"', "accounts[0]", "pasword"),
        ('[audio]\ncodec = ["PCMU"]', "audio", "codec"),
        ('[sip]\nt3_ms = 1', "sip", "t3_ms"),
        ('[ui]\ncolour = "red"', "ui", "colour"),
    ],
)
def test_unknown_nested_key(tmp_path, text, where, key):
    path, err = load_error(tmp_path, text)
    assert str(err).startswith(f"{path}: {where}: unknown key '{key}'")


def test_syntax_error_has_line_and_column(tmp_path):
    path, err = load_error(tmp_path, '[network]\nlisten = "0.0.0.0:0"\nrtp_ports = [1,\n')
    assert err.line is not None and err.column is not None
    assert str(err).startswith(f"{path}: line {err.line}, column {err.column}: invalid TOML: ")
    path, err = load_error(tmp_path, '[network]\n\nlisten = \n')
    assert err.line == 3
    assert str(err) == f"{path}: line 3, column 10: invalid TOML: Invalid value"


def test_invalid_utf8_is_reported_with_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[sip]\nuser_agent = "a\xffb"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: line 2, ")
    assert "not valid UTF-8" in str(info.value)


# --------------------------------------------------------------------------- secrets


def test_password_env_is_resolved_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("SP_TEST_PW", raising=False)
    path = write(tmp_path, ACC + 'password_env = "SP_TEST_PW"\n')
    acc = load_config(path).account()  # loading needs no variable yet
    assert acc.secret_source == "password_env"
    with pytest.raises(ConfigError) as info:
        acc.secret()
    assert str(info.value) == (
        f"{path}: accounts[0].password_env: environment variable 'SP_TEST_PW' is not set")
    monkeypatch.setenv("SP_TEST_PW", PASSWORD)
    assert acc.secret() == PASSWORD
    assert PASSWORD not in repr(acc)


def test_plain_password_never_shows(tmp_path):
    path = write(tmp_path, ACC + f'password = "{PASSWORD}"\n')
    c = load_config(path)
    acc = c.account()
    assert acc.secret() == PASSWORD and acc.secret_source == "password"
    for text in (repr(c), str(c), repr(acc), str(acc), repr(acc.password), str(acc.password),
                 f"{acc.password}", repr(c.accounts)):
        assert PASSWORD not in text
    assert repr(acc.password) == "***"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("password = 12345678\n", "accounts[0].password"),
        (f'password = "{PASSWORD}"\npassword_env = "X"\n', "accounts[0]"),
        (f'password = "{PASSWORD}"\nkeyring = true\n', "accounts[0]"),
        (f'password = "{PASSWORD}"\nexpires = "x"\n', "accounts[0].expires"),
        (f'password = "{PASSWORD}"\nbogus = 1\n', "accounts[0]"),
    ],
)
def test_password_never_in_errors(tmp_path, text, key):
    path, err = load_error(tmp_path, ACC + text)
    assert str(err).startswith(f"{path}: {key}: ")
    assert PASSWORD not in str(err) and "12345678" not in str(err)
    assert PASSWORD not in repr(err)


def test_password_in_uri_is_refused_without_quoting_it(tmp_path):
    for field_ in ("aor", "outbound_proxy"):
        text = (f'[[accounts]]\n{field_} = "sip:1001:{PASSWORD}@127.0.0.1"\n'
                if field_ == "aor" else ACC + f'{field_} = "sip:u:{PASSWORD}@127.0.0.1"\n')
        path, err = load_error(tmp_path, text)
        assert str(err).startswith(f"{path}: accounts[0].{field_}: must not contain a password")
        assert PASSWORD not in str(err)
    # a malformed URI that also carries a password is quoted with the password masked
    path, err = load_error(tmp_path, f'[[accounts]]\naor = "1001:{PASSWORD}@127.0.0.1"\n')
    assert PASSWORD not in str(err) and "1001:***@127.0.0.1" in str(err)


def test_syntax_error_on_password_line_quotes_nothing(tmp_path):
    path, err = load_error(tmp_path, ACC + 'password = "x"Z\n')
    assert err.line == 3
    assert "'Z'" not in str(err) and "Z" not in err.reason


def test_keyring_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keyring", None)  # makes the import fail
    monkeypatch.setattr(cfg.importlib.util, "find_spec", lambda name: None)
    path, err = load_error(tmp_path, ACC + "keyring = true\n")
    assert str(err).startswith(f"{path}: accounts[0].keyring: the 'keyring' package is not installed")
    # and an account built some other way fails the same way when asked
    acc = Account(aor="sip:a@b", name="x", keyring=True)
    with pytest.raises(ConfigError, match="'keyring' package is not installed"):
        acc.secret()


def _fake_keyring(store: dict[tuple[str, str], str]) -> types.ModuleType:
    module = types.ModuleType("keyring")
    module.__spec__ = importlib.machinery.ModuleSpec("keyring", None)
    module.get_password = lambda service, user: store.get((service, user))
    return module


def test_keyring_lookup(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keyring", _fake_keyring({("softphone", "office"): PASSWORD}))
    path = write(tmp_path, ACC + 'name = "office"\nkeyring = true\n' + ACC + "keyring = true\n")
    office, other = load_config(path).accounts
    assert office.secret_source == "keyring"
    assert office.secret() == PASSWORD
    with pytest.raises(ConfigError) as info:
        other.secret()
    assert str(info.value).startswith(f"{path}: accounts[1].keyring: no password in the keyring")
    assert "keyring set softphone account2" in str(info.value)


def test_keyring_backend_failure_is_a_config_error(monkeypatch):
    module = _fake_keyring({})

    def broken(service, user):
        raise RuntimeError("no backend")

    module.get_password = broken
    monkeypatch.setitem(sys.modules, "keyring", module)
    acc = Config.from_dict({"accounts": [{"aor": "sip:a@b", "keyring": True}]}).account()
    with pytest.raises(ConfigError, match="keyring lookup failed: RuntimeError: no backend"):
        acc.secret()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_readable_password_file_warns(tmp_path):
    path = write(tmp_path, ACC + f'password = "{PASSWORD}"\n')
    path.chmod(0o644)
    warnings = load_config(path).warnings
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and PASSWORD not in warnings[0]
    path.chmod(0o600)
    assert load_config(path).warnings == ()
    env_path = write(tmp_path, ACC + 'password_env = "X"\n', "env.toml")
    env_path.chmod(0o644)
    assert load_config(env_path).warnings == ()


# --------------------------------------------------------------------------- listen


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("[::1]:5060", "::1", 5060),
        ("[::]:0", "::", 0),
        ("127.0.0.1:5062", "127.0.0.1", 5062),
        ("localhost:65535", "localhost", 65535),
    ],
)
def test_parse_listen(text, host, port):
    assert parse_listen(text) == (host, port)


def test_ipv6_listen_in_config(tmp_path):
    c = load_config(write(tmp_path, '[network]\nlisten = "[::1]:5060"\npublic_address = "::1"\n'))
    assert c.network.listen == "[::1]:5060"
    assert (c.network.listen_host, c.network.listen_port) == ("::1", 5060)
    assert c.network.public_address == "::1"


@pytest.mark.parametrize("text", ["", ":5060", "host", "[::1]5060", "1.2.3.4:port", "a b:1"])
def test_parse_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_listen(text)


# --------------------------------------------------------------------------- saving

FULL = f"""
[[accounts]]
name = "office"
aor = "sip:1001@pbx.example.com"
username = "auth1001"
password = "{PASSWORD}"
display_name = "Ann \\"The Phone\\" Smith"
registrar = "sip:reg.example.com:5070"
outbound_proxy = "sip:proxy.example.com;lr"
transport = "tcp"
register = false
expires = 3600
auth_realm = "pbx.example.com"

[[accounts]]
aor = "sips:alice@secure.example.com"
password_env = "ALICE_PW"

[[accounts]]
name = "kr"
aor = "sip:bob@[2001:db8::5]:5062"
keyring = true

[network]
listen = "[::1]:5090"
rtp_ports = [30000, 30100]
public_address = "203.0.113.7"
rtp_timeout = 12.5
max_calls = 2

[audio]
backend = "null"
input_device = "pulse"
output_device = 3
codecs = ["PCMA", "opus"]
ptime = 40
dtmf = false

[sip]
user_agent = "test-agent/1"
t1_ms = 250
t2_ms = 2000
t4_ms = 3000

[ui]
theme = "nord"
"""


def test_save_then_load_round_trips(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keyring", _fake_keyring({}))
    original = load_config(write(tmp_path, FULL))
    out = tmp_path / "sub" / "saved.toml"
    assert save_config(original, out) == out
    again = load_config(out)
    assert again == original
    assert again.source == out
    text = out.read_text()
    # each password stays in the form the user chose
    assert f'password = "{PASSWORD}"' in text
    assert 'password_env = "ALICE_PW"' in text and text.count("password =") == 1
    assert "keyring = true" in text
    # derived values are not written out
    assert "sips:secure.example.com" not in text
    if os.name == "posix":
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["saved.toml"]  # no temp files left


def test_save_defaults_and_overwrite(tmp_path):
    out = tmp_path / "c.toml"
    save_config(Config.default(), out)
    assert load_config(out) == Config.default()
    changed = Config.from_dict({"network": {"listen": "127.0.0.1:5061"}})
    save_config(changed, out)
    assert load_config(out).network.listen == "127.0.0.1:5061"


def test_save_defaults_to_source(tmp_path):
    path = write(tmp_path, '[audio]\nptime = 30\n')
    c = load_config(path)
    assert save_config(c) == path
    assert load_config(path).audio.ptime == 30


def test_set_value_edits_one_line_and_keeps_comments(tmp_path):
    text = ('# my phone\n[audio]\nptime = 30  # keep\n\n[ui]\n# dark at night\n'
            'theme = "nord"\n\n[network]\nlisten = "127.0.0.1:5062"\n')
    path = write(tmp_path, text)
    assert set_config_value(path, "ui", "theme", "gruvbox") == path
    after = path.read_text()
    assert after == text.replace('theme = "nord"', 'theme = "gruvbox"')
    assert load_config(path).ui.theme == "gruvbox"


def test_set_value_adds_key_or_table_and_creates_file(tmp_path):
    path = write(tmp_path, "[ui]\n# no theme yet\n\n[audio]\nptime = 30\n")
    set_config_value(path, "ui", "theme", "nord")
    assert path.read_text().startswith('[ui]\ntheme = "nord"\n# no theme yet\n')
    assert load_config(path).audio.ptime == 30
    other = write(tmp_path, "# only audio\n[audio]\nptime = 30\n", "b.toml")
    set_config_value(other, "ui", "theme", "nord")
    assert other.read_text() == '# only audio\n[audio]\nptime = 30\n\n[ui]\ntheme = "nord"\n'
    fresh = tmp_path / "new" / "c.toml"
    set_config_value(fresh, "ui", "theme", "nord")
    assert load_config(fresh).ui.theme == "nord" and load_config(fresh).accounts == ()


def test_set_value_refuses_what_would_not_load(tmp_path):
    dotted = 'ui.theme = "nord"\n'  # edited where it stands (tomlkit knows dotted keys)
    path = write(tmp_path, dotted)
    set_config_value(path, "ui", "theme", "gruvbox")
    assert path.read_text() == 'ui.theme = "gruvbox"\n'
    before = path.read_text()
    with pytest.raises(ConfigError) as err:
        set_config_value(path, "audio", "ptime", 25)
    assert str(path) in str(err.value) and err.value.key == "audio.ptime"
    assert path.read_text() == before  # untouched
    with pytest.raises(ConfigError) as err:
        set_config_value(path, "ui", "colour", "red")
    assert path.read_text() == before


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_password_survives_a_round_trip(tmp_path_factory, password):
    c = Config.from_dict({"accounts": [{"aor": "sip:u@example.com", "password": password}]})
    path = tmp_path_factory.mktemp("rt") / "c.toml"
    save_config(c, path)
    assert load_config(path).account().secret() == password


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_toml_string_writer_matches_tomllib(text):
    assert tomllib.loads(f"k = {cfg._toml_string(text)}")["k"] == text
