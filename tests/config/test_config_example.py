"""config.example.toml documents every declared key, loads, and shows true defaults."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from softphone.config import Config, load_config
from softphone.config.declare import Table, keys_of, tables_of

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
_HEADER = re.compile(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(?:#.*)?$")


def blocks(text: str) -> dict[str, str]:
    """The text of each table (all its [[blocks]] for an array), by name. A commented
    header ('# [[accounts]]') opens nothing: its lines belong to the table around it."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            current = m[1]
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


def undocumented(text: str, tables: dict[str, Table]) -> list[str]:
    """Declared keys the example neither sets (``key = …``) nor shows commented out
    (``# key = …``) inside their own table; ``[name]`` for a missing table."""
    found = blocks(text)
    missing: list[str] = []
    for name, decl in tables.items():
        if name not in found:
            missing.append(f"[{name}]")
            continue
        missing += [f"{name}.{key}" for key in keys_of(decl.cls)
                    if not re.search(rf"^(# )?{re.escape(key)} = ", found[name], re.M)]
    return missing


def test_example_documents_every_declared_key():
    assert undocumented(EXAMPLE.read_text(), tables_of(Config)) == []


def test_the_check_notices_what_is_missing():
    text = EXAMPLE.read_text()
    tables = tables_of(Config)
    assert undocumented(text.replace("\nrate_burst = 100\n", "\n"), tables) == \
        ["network.rate_burst"]
    assert undocumented(text.replace("\n# socket = ", "\n# sockets = "), tables) == \
        ["control.socket"]
    # set in the wrong table does not count
    moved = text.replace("\nptime = 20\n", "\n").replace("[sip]\n", "[sip]\nptime = 20\n")
    assert undocumented(moved, tables) == ["audio.ptime"]
    # a key mentioned in prose is not documented
    prose = text.replace("\ndtmf = true\n", "\n# set dtmf = true for digits\n")
    assert undocumented(prose, tables) == ["audio.dtmf"]
    assert undocumented(text.replace("[control]", "[kontrol]"), tables) == ["[control]"]


def test_example_loads():
    c = load_config(EXAMPLE)
    assert c.warnings == ()
    assert c.source == EXAMPLE and len(c.accounts) == 1


def _paragraph(lines: list[str], index: int) -> str:
    start = index
    while start > 0 and lines[start - 1].strip():
        start -= 1
    return "\n".join(lines[start:index + 1])


def undeclared_non_defaults(text: str) -> tuple[list[str], int]:
    """Keys of the (non-array) tables set to something other than the declared default
    without a 'Default' note in their paragraph; and how many keys showed the default."""
    data = tomllib.loads(text)
    lines = text.splitlines()
    default = Config.default()
    bad: list[str] = []
    same = 0
    for name, decl in tables_of(Config).items():
        if decl.array:
            continue  # the account is an example, not defaults
        for key, value in data.get(name, {}).items():
            loaded = getattr(getattr(Config.from_dict({name: {key: value}}), name), key)
            if loaded == getattr(getattr(default, name), key):
                same += 1
                continue
            at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key} = "))
            if "Default" not in _paragraph(lines, at):
                bad.append(f"{name}.{key}")
    return bad, same


def test_values_shown_are_the_defaults_unless_a_comment_says_otherwise():
    """The example's header promises it; each table's keys are held to it."""
    text = EXAMPLE.read_text()
    bad, same = undeclared_non_defaults(text)
    assert bad == [] and same >= 15
    assert undeclared_non_defaults(text.replace("max_calls = 8", "max_calls = 9"))[0] == \
        ["network.max_calls"]
    # listen differs from its default, and its paragraph says so
    assert "Default: \"0.0.0.0:0\"" in text and 'listen = "0.0.0.0:5060"' in text


@pytest.mark.parametrize("name", sorted(tables_of(Config)))
def test_each_table_has_a_header_in_the_example(name):
    decl = tables_of(Config)[name]
    header = f"[[{name}]]" if decl.array else f"[{name}]"
    assert re.search(rf"^{re.escape(header)}$", EXAMPLE.read_text(), re.M)
