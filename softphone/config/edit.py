"""Editing the config file in place: only the keys that change, the rest byte for byte.

    edit_config(path, [Set("audio.ptime", 30), Remove("accounts[0].username"),
                       AddAccount({"aor": "sip:1002@pbx.example.com"}), RemoveAccount(1)])

Changes apply in order (an index counts the accounts as the earlier changes left them).
The result is validated by the loader before anything is written: a ConfigError naming
the file and the key, and the file untouched, when it would not load. The file is
replaced atomically, mode 0600, and its previous content kept as ``<name>.bak``.

tomlkit (comment-preserving TOML) is imported here only, when an edit is made, so
start-up never pays for it. Where a new key goes: after the table's last key, before
the comments that follow it (they usually introduce what comes next), or right after
the header in a table that has no key yet. A new [[accounts]] block goes after the
last one, before the comments that followed it; a removed block takes its header and
keys with it and leaves those trailing comments where they were.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import ConfigError, Secret, default_config_path
from .declare import tables_of
from .load import decode, loads, parse_toml
from .save import toml_ready, write_atomic
from .schema import Config

__all__ = ["AddAccount", "Change", "Remove", "RemoveAccount", "Set", "edit_config",
           "set_config_value"]


@dataclass(frozen=True)
class Set:
    """Set ``key`` ("network.listen", "accounts[0].expires") to ``value``."""

    key: str
    value: Any

    def __repr__(self) -> str:  # a password set here must not show in a log
        value = "***" if "password" in self.key and self.value is not None else repr(self.value)
        return f"Set({self.key!r}, {value})"


@dataclass(frozen=True)
class Remove:
    """Remove ``key`` (back to its default); nothing happens when it is not set."""

    key: str


@dataclass(frozen=True)
class AddAccount:
    """Append an [[accounts]] block with these keys."""

    values: Mapping[str, Any]

    def __repr__(self) -> str:
        shown = {k: "***" if k == "password" else v for k, v in self.values.items()}
        return f"AddAccount({shown!r})"


@dataclass(frozen=True)
class RemoveAccount:
    """Remove accounts[index]."""

    index: int


Change = Set | Remove | AddAccount | RemoveAccount

_KEY = re.compile(r"(?:(?P<table>[A-Za-z0-9_-]+)|accounts\[(?P<index>\d+)\])"
                  r"\.(?P<key>[A-Za-z0-9_-]+)")


def edit_config(path: str | os.PathLike[str] | None, changes: Iterable[Change]) -> Config:
    """Apply `changes` to the config file (created when missing; `path` None → the
    default location) and return the Config it now holds. See the module doc."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    target = file.resolve() if file.is_symlink() else file  # edit what the link points to
    try:
        raw: bytes | None = target.read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=file) from None
    text = decode(raw, file) if raw is not None else ""
    parse_toml(text, file)  # a broken file is reported as the loader reports it

    import tomlkit  # only now: editing is rare, start-up is not

    doc = _parse(text, file)
    for change in changes:
        try:
            _apply(doc, change, file)
            # parse what it now reads as: what was moved by hand (comments kept from a
            # removed block) becomes ordinary comments again for the next change
            doc = _parse(doc.as_string(), file)
        except ConfigError:
            raise
        except (tomlkit.exceptions.TOMLKitError, TypeError, KeyError) as exc:
            key = getattr(change, "key", None) or "accounts"
            reason = f"cannot edit: {type(exc).__name__}"
            secret = "password" in key or "password" in getattr(change, "values", {})
            if not secret:  # tomlkit's messages may quote a value
                reason += f": {exc}"
            raise ConfigError(reason, source=file, key=key) from None
    new_text = doc.as_string()
    if "\r\n" in text and text.count("\n") == text.count("\r\n"):
        new_text = re.sub(r"(?<!\r)\n", "\r\n", new_text)  # keep the file's line ends
    config = loads(new_text, file)  # raises ConfigError naming the file and key
    if new_text != text or raw is None:
        if raw is not None:
            write_atomic(target.with_name(target.name + ".bak"), raw)
        write_atomic(target, new_text.encode("utf-8"))
    return config


def set_config_value(path: str | os.PathLike[str] | None, table: str, key: str,
                     value: str | int | bool) -> Path:
    """Set one ``[table] key`` in the config file, editing only that line so the user's
    comments and layout survive (`edit_config` with one `Set`). The file is created if
    missing; the result must still load, else nothing is written and ConfigError says
    why. `path` None → the default location. Returns the path."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    edit_config(file, [Set(f"{table}.{key}", value)])
    return file


# --------------------------------------------------------------------------- applying


def _parse(text: str, file: Path) -> Any:
    import tomlkit

    doc = tomlkit.parse(text)
    if doc.as_string() != text:  # tomlkit would not keep the file as it is: refuse
        raise ConfigError("cannot edit this file without changing other lines; "
                          "edit it by hand", source=file)
    return doc


def _apply(doc: Any, change: Change, file: Path) -> None:
    import tomlkit

    if isinstance(change, AddAccount):
        _add_account(doc, {k: _value(v) for k, v in change.values.items()})
        return
    if isinstance(change, RemoveAccount):
        _remove_account(doc, _account(doc, change.index, file), change.index)
        return
    m = _KEY.fullmatch(change.key)
    if m is None:
        raise ValueError(f"not a key path like 'audio.ptime' or 'accounts[0].expires': "
                         f"{change.key!r}")
    key = m["key"]
    decl = tables_of(Config).get(m["table"] or "")
    if decl is not None and decl.array:
        raise ValueError(f"{change.key!r}: name the element, like 'accounts[0].{key}'")
    if m["index"] is not None:
        container = _account(doc, int(m["index"]), file)[int(m["index"])]
    else:
        container = doc.get(m["table"])
        if container is None:
            if isinstance(change, Set):
                new = tomlkit.table()
                new.add(key, _value(change.value))
                doc.append(m["table"], new)
            return
        if not hasattr(container, "items") or isinstance(container, tomlkit.items.AoT):
            raise ConfigError("is not a table", source=file, key=m["table"])
    if isinstance(change, Set):
        _set(container, key, _value(change.value))
    elif key in container:
        del container[key]


def _value(value: Any) -> Any:
    if value is None:
        raise ValueError("None is no TOML value: use Remove to unset a key")
    if isinstance(value, Secret):
        return value.reveal()
    return toml_ready(value)


def _account(doc: Any, index: int, file: Path) -> Any:
    accounts = doc.get("accounts")
    count = len(accounts) if accounts is not None else 0
    if index >= count:
        raise ConfigError(f"no such account (the file has {count})", source=file,
                          key=f"accounts[{index}]")
    return accounts


def _tail(table: Any) -> list[tuple[Any, Any]]:
    """Cut off and return the comments and blank lines after a table's last key."""
    body = table.value.body
    last = max((i for i, (k, _) in enumerate(body) if k is not None), default=-1)
    tail = body[last + 1:]
    del body[last + 1:]  # nothing keyed follows, so tomlkit's key index stays right
    return tail


def _set(container: Any, key: str, value: Any) -> None:
    import tomlkit

    if key in container or not isinstance(container, tomlkit.items.Table) \
            or container.is_super_table():
        container[key] = value  # in place: tomlkit keeps the line's comment
        return
    body = container.value.body
    keyed = [item for k, item in body if k is not None]
    tail = _tail(container)
    item = tomlkit.item(value)
    if keyed:
        item.trivia.indent = keyed[-1].trivia.indent  # the table's own indentation
    container[key] = item
    body.extend(tail)


def _add_account(doc: Any, values: dict[str, Any]) -> None:
    import tomlkit
    from tomlkit.items import AoT, Whitespace

    table = tomlkit.table()
    for k, v in values.items():
        table.add(k, v)
    accounts = doc.get("accounts")
    if accounts is None:
        aot = tomlkit.aot()
        aot.append(table)
        doc.append("accounts", aot)
    elif isinstance(accounts, AoT) and len(accounts):
        last = accounts[-1]
        tail = _tail(last)
        last.value.body.append((None, Whitespace("\n")))  # a blank line between blocks
        accounts.append(table)
        table.value.body.extend(tail)
    else:
        accounts.append(table if isinstance(accounts, AoT) else values)


def _remove_account(doc: Any, accounts: Any, index: int) -> None:
    from tomlkit.items import AoT, Table, Whitespace

    if not isinstance(accounts, AoT):  # accounts = [{…}, …]
        del accounts[index]
        return
    removed = accounts[index]
    kept = removed.trivia.indent + "".join(item.as_string() for _, item in _tail(removed))
    del accounts[index]
    if len(accounts) > index:  # what stood between this block and the next stays
        nxt = accounts[index]
        nxt.trivia.indent = kept + nxt.trivia.indent
        return
    if len(accounts):
        if kept:
            accounts[index - 1].value.body.append((None, Whitespace(kept)))
        return
    # the last block: the array goes, what followed its keys stays in its place
    body = doc.body
    at = next(i for i, (k, item) in enumerate(body) if item is accounts)
    after = next((item for k, item in body[at + 1:] if k is not None), None)
    del doc["accounts"]
    if not kept:
        return
    if isinstance(after, Table):
        after.trivia.indent = kept + after.trivia.indent
    elif isinstance(after, AoT) and len(after):
        after[0].trivia.indent = kept + after[0].trivia.indent
    else:
        doc.body.append((None, Whitespace(kept)))
