"""The declarations (softphone/config/schema.py) and the generic walker that reads them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from softphone import config as cfg
from softphone.config import Config, ConfigError, ControlSettings, load_config
from softphone.config.declare import Invalid, Setting, setting, spec_of, tables_of
from softphone.config.load import _Reader


def all_tables():
    return {name: decl.cls for name, decl in tables_of(Config).items()}


def test_every_field_of_every_table_is_a_declared_key():
    for name, cls in all_tables().items():
        keys, _ = spec_of(cls)
        fields = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        assert list(keys) == fields, name
        for key in keys.values():
            assert key.setting.doc and "\n" not in key.setting.doc, f"{name}.{key.name}"
            assert key.kind != "custom" or key.setting.parse is not None


def test_declared_defaults_are_the_dataclass_defaults():
    """`Config.default()` and a document with every table empty are the same thing."""
    empty = Config.from_dict({name: ([] if decl.array else {})
                              for name, decl in tables_of(Config).items()})
    assert empty == Config.default()


@dataclass(frozen=True)
class _Demo:
    """A table declared the way schema.py does it: nothing else is needed to read it."""

    host: str = setting(doc="required: no default")
    port: int = setting(5060, doc="a port", range=(1, 65535))
    mode: str = setting("fast", doc="a choice", choices=("fast", "Slow"))
    ratio: float = setting(0.5, doc="a number", range=(0, 1))
    label: str | None = setting(None, doc="optional", check=lambda s: s.upper())
    _checks = ()


def read_demo(data):
    return _Reader(Path("demo.toml")).table(_Demo, data, "demo")


def test_the_walker_needs_only_the_declaration():
    d = read_demo({"host": "h", "mode": "SLOW", "ratio": 1, "label": "x"})
    assert d == _Demo("h", 5060, "Slow", 1.0, "X")
    assert isinstance(d.ratio, float)
    for data, key, reason in [
        ({}, "demo.host", "is required"),
        ({"host": 3}, "demo.host", "must be a string (got integer)"),
        ({"host": "h", "port": 0}, "demo.port", "must be between 1 and 65535 (got 0)"),
        ({"host": "h", "port": True}, "demo.port", "must be an integer (got boolean)"),
        ({"host": "h", "mode": "x"}, "demo.mode", "must be one of fast, Slow (got 'x')"),
        ({"host": "h", "ratio": 2}, "demo.ratio", "must be between 0 and 1 (got 2)"),
        ({"host": "h", "prot": 1}, "demo", "unknown key 'prot' (did you mean 'port'?)"),
        ({"host": "h", "zzz": 1}, "demo",
         "unknown key 'zzz' (known keys: host, port, mode, ratio, label)"),
    ]:
        with pytest.raises(ConfigError) as info:
            read_demo(data)
        assert str(info.value) == f"demo.toml: {key}: {reason}"


def test_validators_can_blame_a_sub_key():
    def pair(value):
        if value[0] > value[1]:
            raise Invalid("must not be larger than the next", key="[0]")
        return tuple(value)

    @dataclass(frozen=True)
    class Pair:
        p: tuple[int, int] = setting((1, 2), doc="a pair", parse=pair)

    with pytest.raises(ConfigError) as info:
        _Reader(None).table(Pair, {"p": [3, 1]}, "t")
    assert info.value.key == "t.p[0]"


def test_bad_declarations_fail_early():
    with pytest.raises(TypeError, match="one-line doc"):
        setting(1, doc="")
    with pytest.raises(TypeError, match="one-line doc"):
        setting(1, doc="two\nlines")

    @dataclass(frozen=True)
    class Odd:
        pair: tuple[int, int] = setting((1, 2), doc="no parse= for a tuple")

    with pytest.raises(TypeError, match="needs parse="):
        spec_of(Odd)


def test_password_field_is_left_out_of_repr():
    meta = next(f for f in dataclasses.fields(cfg.Account) if f.name == "password")
    assert meta.repr is False and isinstance(meta.metadata["softphone.config"], Setting)
    assert meta.metadata["softphone.config"].secret


# --------------------------------------------------------------------------- [control]


def test_control_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    c = Config.default().control
    assert c == ControlSettings(enabled=True, socket=None)
    assert c.socket_path == tmp_path / "softphone" / "control.sock"


def test_control_socket_is_read_and_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "c.toml"
    path.write_text('[control]\nenabled = false\nsocket = "~/phone.sock"\n')
    c = load_config(path).control
    assert (c.enabled, c.socket, c.socket_path) == (False, str(tmp_path / "phone.sock"),
                                                    tmp_path / "phone.sock")
    assert Config.from_dict(load_config(path).to_dict()).control == c


@pytest.mark.parametrize(("table", "key", "reason"), [
    ({"enabled": 1}, "control.enabled", "must be true or false (got integer)"),
    ({"socket": "phone.sock"}, "control.socket", "must be an absolute path"),
    ({"socket": ""}, "control.socket", "must not be empty"),
    ({"socket": "/" + "s" * 107}, "control.socket",
     "is 108 bytes long; a Unix socket path holds at most 107"),
    ({"sock": "/x"}, "control", "unknown key 'sock' (did you mean 'socket'?)"),
])
def test_control_errors(table, key, reason):
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"control": table})
    assert info.value.key == key and reason in info.value.reason


def test_longest_socket_path_is_accepted():
    path = "/" + "s" * 106
    assert len(os.fsencode(path)) == 107
    assert Config.from_dict({"control": {"socket": path}}).control.socket == path
