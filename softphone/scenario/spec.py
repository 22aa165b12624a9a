"""Scenario files: a TOML list of steps run per call, checked whole before anything starts.

A scenario is read once and validated like the config: an unknown step, a bad value or a
missing file is a :class:`ScenarioError` naming the file, the step (``steps[3]``, counted
from 1 as the reports count) and the key. Each step kind is declared once in
:data:`STEP_KINDS` with its keys, where it may stand (placing side, answering side; before
or after the answer) and what it means; the README's table is written from the same facts.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["ScenarioError", "Scenario", "Step", "StepKind", "Key", "STEP_KINDS",
           "load_scenario", "parse_scenario"]

ON_FAILURE = ("hangup", "continue")
CODEC_NAMES = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}
_DIGITS = re.compile(r"[0-9*#A-Da-d,]+")


class ScenarioError(Exception):
    """``FILE: steps[N] (kind): key: reason`` — the parts that are known."""

    def __init__(self, reason: str, *, source: Path | None = None, where: str | None = None,
                 key: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.source, self.where, self.key = reason, source, where, key

    def __str__(self) -> str:
        parts = [str(self.source)] if self.source is not None else []
        parts += [p for p in (self.where, self.key) if p]
        return ": ".join([*parts, self.reason])


# ============================================================================ value kinds
class _Bad(ValueError):
    """A value that does not fit its key; the message says what would."""


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"must be a number of seconds (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise _Bad(f"must be 0 or more seconds (got {value!r})")
    return float(value)


def _positive_seconds(value: Any) -> float:
    number = _seconds(value)
    if number <= 0:
        raise _Bad(f"must be more than 0 seconds (got {value!r})")
    return number


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0 < value <= 1000:
        raise _Bad(f"must be a number of Hz, more than 0, at most 1000 (got {value!r})")
    return float(value)


def _hertz(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 20 <= value <= 20000:
        raise _Bad(f"must be a frequency in Hz, 20 to 20000 (got {value!r})")
    return float(value)


def _dbfs(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not -120 <= value <= 0:
        raise _Bad(f"must be a level in dBFS, -120 to 0 (got {value!r})")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string (got {value!r})")
    return value.strip()


def _digits(value: Any) -> str:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise _Bad(f"must be DTMF digits 0-9 * # A-D, ',' for a pause (got {value!r})")
    return value.upper()


def _expected_digits(value: Any) -> str:
    digits = _digits(value)
    if "," in digits:
        raise _Bad("a pause (',') cannot be received; list the digits only")
    return digits


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 300 <= value <= 699:
        raise _Bad(f"must be a final status 300-699 (got {value!r})")
    return value


def _statuses(value: Any) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _Bad("must list at least one status")
    return tuple(_status(v) for v in values)


def _codecs(value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        name = CODEC_NAMES.get(str(v).lower()) if isinstance(v, str) else None
        if name is None:
            raise _Bad(f"must be one of {', '.join(CODEC_NAMES.values())} or a list of them "
                       f"(got {v!r})")
        out.append(name)
    if not out:
        raise _Bad("must name at least one codec")
    return tuple(out)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false (got {value!r})")
    return value


def _glob(value: Any) -> str:
    """A pattern: '*' and '?' as in file names, else the exact text (case-insensitive)."""
    return _text(value)


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise _Bad('must be a table of header = "pattern" (e.g. { "X-Test" = "abc*" })')
    out = {}
    for name, pattern in value.items():
        if not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", name):
            raise _Bad(f"{name!r} is not a header name")
        if not isinstance(pattern, str):
            raise _Bad(f"{name}: must be a string pattern (got {pattern!r})")
        out[name] = pattern
    return out


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise _Bad(f"must be one of {', '.join(choices)} (got {value!r})")
        return value
    return check


# ============================================================================ step kinds
@dataclass(frozen=True)
class Key:
    name: str
    check: Callable[[Any], Any]
    help: str
    required: bool = False
    default: Any = None
    file: str | None = None  # "read" | "write": a path checked at load time


@dataclass(frozen=True)
class StepKind:
    name: str
    help: str
    keys: tuple[Key, ...] = ()
    sides: tuple[str, ...] = ("call", "answer")  # who may run it
    phase: str = "connected"  # where it may stand: "setup" (before the answer),
    #                           "connected", or "any"; see Scenario checks
    ends: bool = False        # the call is over after it: nothing may follow
    connects: bool = False    # the call is connected after it
    one_of: tuple[str, ...] = ()  # exactly one of these keys

    def key(self, name: str) -> Key:
        return next(k for k in self.keys if k.name == name)


_WITHIN = Key("within", _positive_seconds, "how long to wait for it, seconds", default=10.0)
_DURATION = Key("duration", _positive_seconds, "how long it must last, seconds", default=1.0)

STEP_KINDS: dict[str, StepKind] = {k.name: k for k in (
    # --- answering side, before the answer --------------------------------------------
    StepKind("expect_incoming", "the incoming INVITE carries these (glob patterns)", (
        Key("from", _glob, "From URI pattern, e.g. \"sip:1001@*\""),
        Key("to", _glob, "To URI pattern"),
        Key("display_name", _glob, "From display name pattern"),
        Key("headers", _headers, "header = pattern, each must match one value"),
    ), sides=("answer",), phase="setup"),
    StepKind("ring", "let it ring (180 sent) for a while", (
        Key("seconds", _seconds, "how long", required=True),), sides=("answer",),
        phase="setup"),
    StepKind("answer", "answer the call (200 OK)", sides=("answer",), phase="setup",
             connects=True),
    StepKind("reject", "reject the call", (
        Key("status", _status, "final status", default=486),), sides=("answer",),
        phase="setup", ends=True),
    # --- placing side, before the answer ------------------------------------------------
    StepKind("expect_ringing", "a 180 or 183 comes", (_WITHIN,), sides=("call",),
             phase="setup"),
    StepKind("expect_answer", "the call is answered", (
        Key("within", _positive_seconds, "how long to wait, seconds", default=30.0),),
        sides=("call",), phase="setup", connects=True),
    StepKind("expect_status", "the call fails with this final status (or one of a list)", (
        Key("status", _statuses, "status or list of statuses", required=True),
        Key("within", _positive_seconds, "how long to wait, seconds", default=30.0),
    ), sides=("call",), phase="setup", ends=True),
    # --- in the call ----------------------------------------------------------------------
    StepKind("expect_codec", "the negotiated codec is this one (or one of a list)", (
        Key("codec", _codecs, "PCMU, PCMA, G722, opus, or a list", required=True),)),
    StepKind("play", "send a WAV file or a tone", (
        Key("file", _text, "WAV file (any rate; played once unless loop)", file="read"),
        Key("tone", _hertz, "a sine of this frequency, Hz"),
        Key("level", _dbfs, "tone level, dBFS", default=-12.0),
        Key("duration", _positive_seconds, "seconds (a tone needs it; a file: cut or, with "
                                           "loop, repeat to it)"),
        Key("loop", _flag, "repeat the file until duration", default=False),
        Key("wait", _flag, "wait until it has played before the next step", default=True),
    ), one_of=("file", "tone")),
    StepKind("dtmf", "send DTMF digits", (
        Key("digits", _digits, "0-9 * # A-D, ',' pauses 1 s", required=True),
        Key("wait", _flag, "wait until they are sent", default=True),)),
    StepKind("expect_dtmf", "these digits arrive (RFC 4733 or SIP INFO), in order", (
        Key("digits", _expected_digits, "the digits, e.g. \"1234#\"", required=True),
        _WITHIN)),
    StepKind("expect_tone", "a steady tone arrives", (
        Key("frequency", _hertz, "Hz", required=True),
        Key("tolerance", _tolerance, "Hz either side (default: 2 %, at least 10 Hz)"),
        Key("level", _dbfs, "at least this loud, dBFS", default=-40.0),
        _DURATION, _WITHIN)),
    StepKind("expect_speech", "speech-like sound arrives (loud enough, not a steady tone, "
             "with the level swings of syllables)", (
        Key("level", _dbfs, "at least this loud, dBFS", default=-40.0),
        _DURATION, _WITHIN)),
    StepKind("expect_silence", "nothing louder than a level arrives for a while", (
        Key("level", _dbfs, "at most this loud, dBFS", default=-50.0),
        _DURATION, _WITHIN)),
    StepKind("record", "record what arrives to a WAV file", (
        Key("file", _text, "WAV file ({n}: the call's number)", required=True,
            file="write"),
        Key("seconds", _positive_seconds, "how long", required=True),
        Key("wait", _flag, "wait until done before the next step", default=True),)),
    StepKind("transfer", "transfer the far end (blind, REFER) and expect it to succeed; "
             "the call ends with it", (
        Key("target", _text, "where to send the far end (sip:…, user@host, a number)",
            required=True),
        Key("within", _positive_seconds, "how long the transfer may take, seconds",
            default=30.0)), ends=True),
    StepKind("hold", "put the call on hold"),
    StepKind("resume", "take the call off hold"),
    # --- anywhere ---------------------------------------------------------------------------
    StepKind("wait", "do nothing for a while", (
        Key("seconds", _seconds, "how long", required=True),), phase="any"),
    StepKind("hangup", "hang up (CANCEL before the answer, BYE after)", phase="any",
             ends=True),
    StepKind("expect_hangup", "the far end hangs up", (_WITHIN,), ends=True),
)}

_COMMON = (
    Key("on_failure", _choice(*ON_FAILURE), "hangup: end the call here (default from the "
                                            "scenario); continue: go on"),
    Key("name", _text, "a label for the reports"),
)


# ============================================================================ the scenario
@dataclass(frozen=True)
class Step:
    index: int                 # 1-based, as reports count
    kind: str
    args: dict[str, Any]
    on_failure: str
    label: str

    def __getitem__(self, key: str) -> Any:
        return self.args[key]


@dataclass(frozen=True)
class Scenario:
    name: str
    side: str                  # "call" | "answer"
    steps: tuple[Step, ...]
    source: Path | None = None
    on_failure: str = "hangup"
    records: tuple[str, ...] = field(default=())  # file templates written by record steps


def load_scenario(path: str | os.PathLike, side: str) -> Scenario:
    """Read and check ``path`` for the placing (``call``) or answering (``answer``) side."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ScenarioError("file not found", source=source) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror or exc}", source=source) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", source=source) from None
    return parse_scenario(data, side, source=source)


def parse_scenario(data: dict[str, Any], side: str, *, source: Path | None = None) -> Scenario:
    def fail(reason: str, where: str | None = None, key: str | None = None):
        raise ScenarioError(reason, source=source, where=where, key=key)

    known = {"name", "on_failure", "steps"}
    for extra in sorted(set(data) - known):
        fail(f"unknown key (a scenario has {', '.join(sorted(known))})", key=extra)
    name = data.get("name", source.stem if source is not None else "scenario")
    if not isinstance(name, str) or not name.strip():
        fail("must be a non-empty string", key="name")
    on_failure = data.get("on_failure", "hangup")
    if on_failure not in ON_FAILURE:
        fail(f"must be one of {', '.join(ON_FAILURE)} (got {on_failure!r})", key="on_failure")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        fail("a scenario needs at least one [[steps]] table", key="steps")
    base = source.parent if source is not None else Path.cwd()
    steps = []
    phase = "setup"
    records: list[str] = []
    for n, raw in enumerate(raw_steps, start=1):
        where = f"steps[{n}]"
        if not isinstance(raw, dict):
            fail("must be a table ([[steps]])", where)
        kind_name = raw.get("step")
        if kind_name is None:
            fail("missing: say which step this is (step = \"…\")", where, "step")
        kind = STEP_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            import difflib

            close = difflib.get_close_matches(str(kind_name), list(STEP_KINDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(f"unknown step {kind_name!r}{hint}", where, "step")
        where = f"steps[{n}] ({kind.name})"
        if side not in kind.sides:
            other = "softphone call" if side == "answer" else "softphone answer"
            fail(f"only for {other} scenarios", where)
        if phase == "ended":
            fail("the call is over by now (after a hangup, reject, expect_status or "
                 "expect_hangup step): nothing may follow", where)
        if kind.phase == "setup" and phase != "setup":
            fail("the call is already answered here; this step belongs before the answer",
                 where)
        if kind.phase == "connected" and phase != "connected":
            needed = "an expect_answer" if side == "call" else "an answer"
            fail(f"the call is not answered yet at this step; put {needed} step before it",
                 where)
        keys = {k.name: k for k in (*kind.keys, *_COMMON)}
        args: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "step":
                continue
            spec = keys.get(key)
            if spec is None:
                takes = ", ".join(k.name for k in kind.keys) or "no keys"
                fail(f"unknown key ({kind.name} takes: {takes})", where, key)
            try:
                args[key] = spec.check(value)
            except _Bad as exc:
                fail(str(exc), where, key)
            if spec.file == "read":
                args[key] = _readable(base, args[key], lambda r: fail(r, where, key))
            elif spec.file == "write":
                args[key] = _writable(base, args[key], lambda r: fail(r, where, key))
                records.append(args[key])
        for spec in kind.keys:
            if spec.name not in args:
                if spec.required:
                    fail(f"missing ({spec.help})", where, spec.name)
                args[spec.name] = spec.default
        if kind.one_of and sum(args.get(k) is not None for k in kind.one_of) != 1:
            fail(f"give exactly one of {' or '.join(kind.one_of)}", where)
        if kind.name == "play" and args["tone"] is not None and args["duration"] is None:
            fail("a tone needs a duration (seconds)", where, "duration")
        if kind.name == "play" and args["loop"] and args["duration"] is None:
            fail("a looping file needs a duration (seconds)", where, "duration")
        step_failure = args.pop("on_failure", None) or on_failure
        label = args.pop("name", None) or kind.name
        steps.append(Step(n, kind.name, args, step_failure, label))
        if kind.connects:
            phase = "connected"
        if kind.ends:
            phase = "ended"
    return Scenario(name.strip(), side, tuple(steps), source, on_failure, tuple(records))


def _readable(base: Path, value: str, fail: Callable[[str], None]) -> str:
    path = Path(value) if os.path.isabs(value) else base / value
    if not path.is_file():
        fail(f"no such file: {path}")
    if not os.access(path, os.R_OK):
        fail(f"cannot read {path} (permission denied)")
    return str(path)


def _writable(base: Path, value: str, fail: Callable[[str], None]) -> str:
    path = Path(value) if os.path.isabs(value) else base / value
    parent = path.parent
    if path.is_dir():
        fail(f"{path} is a directory; give a file name")
    if not parent.is_dir():
        fail(f"no such directory: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"cannot create files in {parent} (permission denied)")
    return str(path)


def matches(pattern: str, value: str | None) -> bool:
    """A glob ('*', '?') or exact text, case-insensitive (SIP names and URIs mostly are)."""
    return value is not None and fnmatch.fnmatchcase(value.lower(), pattern.lower())
