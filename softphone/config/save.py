"""Writing a whole config file (`save_config`), and the atomic writer edits use too."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .common import Secret, default_config_path
from .declare import tables_of
from .schema import Account, Config

__all__ = ["config_to_dict", "dumps_toml", "save_config", "write_atomic"]


def config_to_dict(config: Config) -> dict[str, Any]:
    """A TOML-ready dict holding what differs from the defaults (account names
    always, and the account keys the file set), with each password kept in the form
    the user chose."""
    out: dict[str, Any] = {}
    for name, decl in tables_of(Config).items():
        value = getattr(config, name)
        if decl.array:
            if value:
                out[name] = [_account_to_dict(a) for a in value]
            continue
        section = _changed_fields(value, type(value)())
        if section:
            out[name] = section
    return out


def _account_to_dict(account: Account) -> dict[str, Any]:
    """Name and aor always; the other keys when the file set them (even to what they
    would be anyway) or when they differ from what the aor implies."""
    derived = Account(aor=account.aor)
    given = account._origin.keys if account._origin is not None else frozenset()
    out: dict[str, Any] = {"name": account.name, "aor": account.aor}
    for f in dataclasses.fields(Account):
        if f.name in ("name", "aor", "_origin"):
            continue
        value = getattr(account, f.name)
        if value is None or (value == getattr(derived, f.name) and f.name not in given):
            continue
        out[f.name] = toml_ready(value)
    return out


def _changed_fields(value: Any, default: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if v != getattr(default, f.name) and v is not None:
            out[f.name] = toml_ready(v)
    return out


def toml_ready(value: Any) -> Any:
    """A settings value as TOML holds it: tuples as lists, a Secret revealed."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple):
        return list(value)
    return value


def save_config(config: Config, path: str | os.PathLike[str] | None = None) -> Path:
    """Write `config` as a new TOML file (atomically, mode 0600, since it may hold a
    password). `path` None → `config.source`, else the default location. Returns the
    path. This writes the whole file: to change keys of an existing file and keep its
    comments and layout, use `edit_config`."""
    file = Path(path).expanduser() if path is not None else (config.source or default_config_path())
    write_atomic(file, dumps_toml(config_to_dict(config)).encode("utf-8"))
    return file


def write_atomic(file: Path, data: bytes) -> None:
    """Replace `file` in one step, mode 0600 (it may hold a password): a temporary file
    in the same directory, flushed to disk, renamed over it."""
    import tempfile  # only when writing (it pulls in shutil, random, bz2, lzma)

    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
    _fsync_dir(file.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def example_path() -> Path:
    """The example config that documents every key, installed with the package (package
    data: softphone/config/config.example.toml)."""
    return Path(__file__).resolve().with_name("config.example.toml")


def header() -> str:
    """The comment a config file written by the program starts with: where every key is
    documented, as installed (the example file, else `softphone --help` and the README)."""
    example = example_path()
    if example.is_file():
        where = f"every key is documented in {example}"
    else:
        where = "see softphone --help and the README for the keys"
    return f"# softphone configuration: {where}\n"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise the config's shapes: top-level tables whose values are scalars or
    arrays of scalars, and arrays of such tables (written [[name]])."""
    lines = [header().rstrip("\n")]
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
    return [f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_string(text: str) -> str:
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


def toml_value(value: Any) -> str:
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
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML")
