"""Reading the file: TOML → the declared settings, every problem a ConfigError.

The walker is generic: it knows tables, arrays of tables and keys only from the
declarations in schema.py (see declare.py), so no key is listed twice.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .common import ConfigError, default_config_path
from .declare import Invalid, Table, choices_text, spec_of, tables_of, type_name
from .schema import Config, _Origin

__all__ = ["load_config", "loads", "read_config"]


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
    config = loads(decode(raw, file), file)
    warnings = _permission_warnings(file, config)
    return dataclasses.replace(config, warnings=warnings) if warnings else config


def decode(raw: bytes, file: Path | None) -> str:
    """The file's text; ConfigError (with the line) when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", source=file, line=line,
                          column=exc.start - raw.rfind(b"\n", 0, exc.start)) from None


def loads(text: str, source: Path | None = None) -> Config:
    """Validate a config document given as text; errors name `source`."""
    return read_config(parse_toml(text, source), source)


def parse_toml(text: str, source: Path | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(source, text, exc) from None


_TOML_POS = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)


def _syntax_error(file: Path | None, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
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


# --------------------------------------------------------------------------- the walker


def read_config(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document (or an equivalent dict) into a Config."""
    return _Reader(source).document(Config, data)


def _join(path: str, key: str | None) -> str:
    if not key:
        return path
    if not path or key.startswith("["):
        return path + key
    return f"{path}.{key}"


class _Reader:
    """Walks the document along the declarations, turning each problem into a
    ConfigError naming the file and the key path (``accounts[0].transport``)."""

    def __init__(self, source: Path | None) -> None:
        self.source = source

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, source=self.source, key=key or None)

    def mapping(self, value: object, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a table (got {type_name(value)})")
        for key in value:
            if key not in allowed:
                import difflib  # only for the hint

                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else f"known keys: {choices_text(allowed)}")
                raise self.error(path, f"unknown key {key!r} ({hint})")
        return value

    def document(self, cls: type, data: Mapping[str, Any]) -> Any:
        declared = tables_of(cls)
        top = self.mapping(data, "", tuple(declared))
        values: dict[str, Any] = {}
        for name, decl in declared.items():
            if name in top:
                values[name] = (self.array(decl, top[name], name) if decl.array
                                else self.table(decl.cls, top[name], name))
        return cls(**values, source=self.source)

    def array(self, decl: Table, value: object, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise self.error(path, f"must be an array of tables, written [[{path}]] "
                                   f"(got {type_name(value)})")
        items = tuple(self.table(decl.cls, raw, f"{path}[{index}]", index=index,
                                 defaults=decl.defaults(index) if decl.defaults else None)
                      for index, raw in enumerate(value))
        if decl.check is not None:
            self.run(decl.check, items, path)
        return items

    def table(self, cls: type, value: object, path: str, *, index: int | None = None,
              defaults: dict[str, Any] | None = None) -> Any:
        keys, checks = spec_of(cls)
        t = self.mapping(value, path, tuple(keys))
        given: dict[str, Any] = {}
        for name, key in keys.items():
            if name in t:
                given[name] = self.run(key.read, t[name], _join(path, name))
            elif key.required:
                raise self.error(_join(path, name), "is required")
        values = {name: key.default for name, key in keys.items() if not key.required}
        values.update(defaults or {})
        values.update(given)
        for check in checks:
            self.run(check, values, path)
        if "_origin" in cls.__dataclass_fields__:  # where it came from, for late errors
            values["_origin"] = _Origin(self.source, index or 0, frozenset(t))
        return cls(**values)

    def run(self, fn: Any, value: Any, path: str) -> Any:
        try:
            return fn(value)
        except Invalid as exc:
            raise self.error(_join(path, exc.key), exc.reason) from None
