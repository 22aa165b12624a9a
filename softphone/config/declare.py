"""How a setting is declared: once, on its dataclass field.

    expires: int = setting(600, range=(10, 86400), doc="registration lifetime asked for, s")

The field's annotation gives the type (``bool``, ``int``, ``float``, ``str``, each maybe
``| None``); `setting()` gives the default (none: the key is required), an inclusive
``range`` or the allowed ``choices``, a one-line ``doc``, and optionally a named
validator: ``check`` runs on the typed value and returns it (normalised), ``parse``
replaces the type reading for values no annotation can describe (a port pair, a codec
list, a device name or index). Validators raise `Invalid` (a ValueError) with a reason;
the loader adds the file and the key path. Checks that need several keys of a table
(``set only one of password, password_env, keyring``) are named functions listed in the
class's ``_checks`` attribute; they get the table's values and may raise `Invalid` naming
the key they blame.

A table of the file is a field declared with `table(cls)`, an array of tables
(``[[accounts]]``) one declared with `tables(cls)`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any

__all__ = [
    "REQUIRED", "Invalid", "Key", "Setting", "Table", "choices_text", "keys_of", "read_bool",
    "read_int", "read_number", "read_str", "setting", "spec_of", "table", "tables",
    "tables_of", "type_name",
]

META = "softphone.config"
REQUIRED: Any = dataclasses.MISSING
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Invalid(ValueError):
    """A validator's verdict: the reason, and where in the value or table it applies
    (``key``: a sub-key such as ``"transport"``, or an index such as ``"[1]"``)."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


class _Plain:
    """A small record (plain slots: a dataclass per record type costs start-up time)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *args: Any) -> None:
        for name, value in zip(self.__slots__, args, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Setting(_Plain):
    """The declaration of one key (what `setting()` stores in the field's metadata):
    doc, range, choices, check, parse, secret (a password: no check may quote it),
    allow_empty."""

    __slots__ = ("doc", "range", "choices", "check", "parse", "secret", "allow_empty")
    doc: str
    range: tuple[float | None, float | None] | None
    choices: tuple[Any, ...] | None
    check: Callable[[Any], Any] | None
    parse: Callable[[Any], Any] | None
    secret: bool
    allow_empty: bool


class Table(_Plain):
    """The declaration of a table (``[network]``) or array of tables (``[[accounts]]``):
    its class, doc, whether it is an array, a check of the whole array, and defaults
    that depend on the position (arrays only)."""

    __slots__ = ("cls", "doc", "array", "check", "defaults")
    cls: type
    doc: str
    array: bool
    check: Callable[[tuple[Any, ...]], None] | None
    defaults: Callable[[int], dict[str, Any]] | None


def setting(default: Any = REQUIRED, *, doc: str, range: tuple[float | None, float | None]
            | None = None, choices: tuple[Any, ...] | None = None,
            check: Callable[[Any], Any] | None = None, parse: Callable[[Any], Any] | None = None,
            secret: bool = False, allow_empty: bool = False) -> Any:
    """Declare a key: a dataclass field carrying its `Setting`."""
    if not doc or "\n" in doc:
        raise TypeError("a setting needs a one-line doc")
    meta = Setting(doc, range, choices, check, parse, secret, allow_empty)
    return dataclasses.field(default=default, repr=not secret, metadata={META: meta})


def table(cls: type, *, doc: str) -> Any:
    """Declare a table of the file, read into an instance of `cls`."""
    return dataclasses.field(default_factory=cls, metadata={META: Table(cls, doc, False, None, None)})


def tables(cls: type, *, doc: str, check: Callable[[tuple[Any, ...]], None] | None = None,
           defaults: Callable[[int], dict[str, Any]] | None = None) -> Any:
    """Declare an array of tables (``[[name]]``), read into a tuple of `cls`. `check`
    validates the whole array; `defaults(index)` gives defaults that depend on the
    position (``name = "account2"``)."""
    return dataclasses.field(default=(), metadata={META: Table(cls, doc, True, check, defaults)})


# --------------------------------------------------------------------------- the specs


class Key(_Plain):
    """One declared key with what its annotation says: the spec the loader walks."""

    __slots__ = ("name", "setting", "kind", "optional", "default")
    name: str
    setting: Setting
    kind: str  # bool | int | float | str | custom
    optional: bool  # None is a valid value (the default)
    default: Any  # REQUIRED when the key must be given

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def read(self, value: Any) -> Any:
        """The typed, validated value of a TOML value, or `Invalid`."""
        s = self.setting
        if s.parse is not None:
            return s.parse(value)
        if self.kind == "bool":
            result: Any = read_bool(value)
        elif self.kind == "int":
            result = read_int(value, s.range)
        elif self.kind == "float":
            result = read_number(value, s.range)
        else:
            result = read_str(value, secret=s.secret, empty=s.allow_empty)
        if s.choices is not None:
            result = _pick(result, s.choices)
        if s.check is not None:
            result = s.check(result)
        return result


_SIMPLE = {"bool", "int", "float", "str"}
_specs: dict[type, tuple[dict[str, Key], tuple[Callable[..., None], ...]]] = {}


def _kind(annotation: Any) -> tuple[str, bool]:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                   str(annotation))
    parts = {p.strip() for p in text.split("|")}
    optional = "None" in parts
    parts.discard("None")
    if len(parts) == 1 and (name := parts.pop()) in _SIMPLE:
        return name, optional
    return "custom", optional


def spec_of(cls: type) -> tuple[dict[str, Key], tuple[Callable[..., None], ...]]:
    """The declared keys of a settings class (in declaration order) and its table checks."""
    spec = _specs.get(cls)
    if spec is None:
        keys: dict[str, Key] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata.get(META)
            if not isinstance(meta, Setting):
                continue
            kind, optional = _kind(f.type)
            if kind == "custom" and meta.parse is None:
                raise TypeError(f"{cls.__name__}.{f.name}: a {f.type} setting needs parse=")
            keys[f.name] = Key(f.name, meta, kind, optional, f.default)
        spec = _specs[cls] = (keys, tuple(getattr(cls, "_checks", ())))
    return spec


def keys_of(cls: type) -> tuple[str, ...]:
    """The names of the keys a settings class declares."""
    return tuple(spec_of(cls)[0])


def tables_of(cls: type) -> dict[str, Table]:
    """The tables (and arrays of tables) a document class declares, by name."""
    return {f.name: f.metadata[META] for f in dataclasses.fields(cls)
            if isinstance(f.metadata.get(META), Table)}


# --------------------------------------------------------------------------- readers


def type_name(value: object) -> str:
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


def choices_text(options: tuple[object, ...]) -> str:
    return ", ".join(str(o) for o in options)


def read_str(value: Any, *, secret: bool = False, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string (got {type_name(value)})")
    if secret:  # a password may hold anything, and no reason may quote it
        return value
    if not value and not empty:
        raise Invalid("must not be empty")
    if _CONTROL.search(value):
        raise Invalid("must not contain control characters")
    return value


def read_int(value: Any, range: tuple[float | None, float | None] | None = None) -> int:
    if type(value) is not int:
        raise Invalid(f"must be an integer (got {type_name(value)})")
    if range is not None:
        check_range(value, *range)
    return value


def read_number(value: Any, range: tuple[float | None, float | None] | None = None) -> float:
    if type(value) not in (int, float):
        raise Invalid(f"must be a number (got {type_name(value)})")
    if value != value or value in (float("inf"), float("-inf")):
        raise Invalid(f"must be a finite number (got {value!r})")
    if range is not None:
        check_range(value, *range)
    return float(value)


def read_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false (got {type_name(value)})")
    return value


def check_range(value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise Invalid(f"must be between {lo} and {hi} (got {value!r})")
    if lo is not None and value < lo:
        raise Invalid(f"must be at least {lo} (got {value!r})")
    if hi is not None and value > hi:
        raise Invalid(f"must be at most {hi} (got {value!r})")


def _pick(value: Any, options: tuple[Any, ...]) -> Any:
    """The option `value` names (strings: whatever the case), or `Invalid`."""
    for option in options:
        if value == option or (isinstance(value, str) and isinstance(option, str)
                               and value.lower() == option.lower()):
            return option
    raise Invalid(f"must be one of {choices_text(options)} (got {value!r})")
