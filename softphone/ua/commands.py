"""The command table every face draws from (as baresip's ``struct cmd``).

One entry per thing a user can ask the phone to do: its name, arguments (typed, checked
here once), help, TUI keys (one for the call list, and for the most urgent a global one that
works whatever has focus) and palette title. ``softphone ctl NAME ARGS`` sends it over the
control socket, the TUI binds its key and lists it in the command palette, the CLI's
``call`` takes its flags from ``dial``. The Phone implements each one as a method of the
same name; a wrong argument is a :class:`CommandError` saying which and why, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Param", "Command", "CommandError", "COMMANDS", "check_args", "check_digits",
           "DTMF_DIGITS"]

DTMF_DIGITS = "0123456789*#ABCD"
_DIGITS_RE = re.compile(r"[0-9*#A-Da-d,]+")


class CommandError(Exception):
    """A command that cannot run: unknown, bad arguments, or not possible now."""


def check_digits(text: str) -> str:
    """DTMF digits 0-9 * # A-D, with ',' for a pause (as pjsua and linphone)."""
    if not isinstance(text, str) or not text:
        raise CommandError("digits: give at least one of 0-9 * # A-D (',' pauses)")
    if not _DIGITS_RE.fullmatch(text):
        bad = next(ch for ch in text if not _DIGITS_RE.fullmatch(ch))
        raise CommandError(f"digits: {bad!r} is not a DTMF digit (use 0-9 * # A-D, ',' "
                           f"for a pause)")
    return text.upper()


def _status(value: Any) -> int:
    try:
        status = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"status: not a number: {value!r}") from None
    if not 300 <= status <= 699:
        raise CommandError(f"status: must be a final status 300-699 (got {status})")
    return status


def _seconds(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CommandError(f"not a number of seconds: {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise CommandError(f"must be 0 or more seconds (got {value!r})")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CommandError("must not be empty")
    return value.strip()


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise CommandError(f"must be true or false (got {value!r})")


def _number(name: str, low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise CommandError(f"not a number: {value!r}") from None
        if not low <= number <= high:
            raise CommandError(f"must be {name} from {low:g} to {high:g} (got {value!r})")
        return number
    return check


KINDS: dict[str, Callable[[Any], Any]] = {
    "text": _text, "digits": check_digits, "status": _status, "seconds": _seconds,
    "flag": _flag, "path": _text, "hertz": _number("a frequency in Hz", 20, 20000),
    "dbfs": _number("a level in dBFS", -120, 0),
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # a key of KINDS ("path": a file name, made absolute by ctl)
    help: str
    required: bool = False
    default: Any = None
    positional: bool = False  # on the ctl command line: a bare word, not --name


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    params: tuple[Param, ...] = ()
    key: str | None = None        # TUI key binding
    key_label: str | None = None  # footer text (None: not shown in the footer)
    global_key: str | None = None  # TUI key that works from any focus (the dial input too)
    palette: str | None = None    # command palette title (None: not listed)
    selects_call: bool = False    # the TUI fills call_id from the selected call
    returns: str = ""             # what the reply holds, for --help

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


_CALL = Param("call_id", "text", "the call (default: the only live call, or the newest)")
_ACCOUNT = Param("account", "text", "account name (default: the selected/first one)")

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("dial", "place a call", (
        Param("uri", "text", "sip:user@host[:port], user@host, a number, or echo",
              required=True, positional=True),
        _ACCOUNT,
        Param("timeout", "seconds", "give up when no final answer came S seconds after the "
                                    "INVITE"),
    ), palette="Dial", returns="call_id"),
    Command("answer", "answer a ringing call (a waiting call: the current one is held "
                      "first)", (
        _CALL, Param("hold_others", "flag", "hold the calls we are talking on first (call "
                                            "waiting); false: each call on its own",
                     default=True),
    ), key="a", key_label="Answer", global_key="f5", palette="Answer", selects_call=True),
    Command("reject", "reject a ringing call", (
        _CALL, Param("status", "status", "final status to send", default=486),
    ), key="r", key_label="Reject", global_key="f6", palette="Reject", selects_call=True),
    Command("hangup", "hang up a call (CANCEL, reject or BYE, as its state needs)", (_CALL,),
            key="h", key_label="Hang up", global_key="f7", palette="Hang up",
            selects_call=True),
    Command("mute", "mute the microphone of a call; toggle: unmute if muted", (
        _CALL, Param("toggle", "flag", "unmute when already muted", default=False),
    ), key="m", key_label="Mute", palette="Mute", selects_call=True),
    Command("unmute", "unmute the microphone of a call", (_CALL,), selects_call=True),
    Command("hold", "put a call on hold (re-INVITE sendonly); toggle: resume if held", (
        _CALL, Param("toggle", "flag", "resume when the call is already held", default=False),
    ), key="o", key_label="Hold", palette="Hold", selects_call=True),
    Command("resume", "take a call off hold", (_CALL,), palette="Resume", selects_call=True),
    Command("dtmf", "send DTMF digits (RFC 4733); ',' pauses", (
        Param("digits", "digits", "0-9 * # A-D, ',' for a pause", required=True,
              positional=True), _CALL,
    ), selects_call=True),
    Command("transfer", "transfer a call: blind to a target, or attended to another call "
                        "(that call's party takes ours over)", (
        Param("target", "text", "blind: where to send the far end (sip:…, user@host, a number)",
              positional=True),
        Param("to_call", "text", "attended: the call (id) whose party the far end is joined "
                                 "to; default with neither: the only other connected call"),
        _CALL,
    ), key="f", palette="Transfer", selects_call=True,
        returns="call_id, state"),
    Command("conference", "join calls into a local 3-way conference; toggle: split if "
                          "already joined", (
        _CALL, Param("with_call", "text", "the call to join it with (default: every other "
                                          "connected call)"),
        Param("toggle", "flag", "split when the call is already in the conference",
              default=False),
    ), key="c", palette="Conference", selects_call=True,
        returns="call_ids"),
    Command("split", "split the conference: each call on its own again", (_CALL,),
            palette="Split conference", selects_call=True, returns="call_ids"),
    Command("swap", "swap calls: hold the active call and resume the held one", (_CALL,),
            key="w", palette="Swap calls", selects_call=True,
            returns="active, held"),
    Command("dnd", "do not disturb: refuse incoming calls (486, or status)", (
        Param("on", "flag", "on or off (default: on, or the other way with toggle)"),
        Param("status", "status", "the status to refuse calls with (480, 486, 603)"),
        Param("toggle", "flag", "switch it the other way", default=False),
    ), key="n", palette="Do not disturb", returns="enabled, status"),
    Command("processing", "the microphone's echo cancellation, noise suppression and gain "
                          "control: switch each on or off (none given: say how they are); "
                          "toggle: echo cancellation the other way", (
        Param("echo_cancellation", "flag", "cancel the speaker's echo"),
        Param("noise_suppression", "flag", "suppress steady background noise"),
        Param("auto_gain_control", "flag", "level the microphone"),
        Param("toggle", "flag", "switch echo cancellation the other way", default=False),
    ), key="e", palette="Echo cancellation on/off",
        returns="echo_cancellation, noise_suppression, auto_gain_control, active"),
    Command("play", "send a WAV file or a tone into a call instead of its own audio", (
        Param("file", "path", "WAV file (any rate); played once unless loop",
              positional=True),
        Param("tone", "hertz", "a sine of this frequency, Hz (instead of a file)"),
        Param("level", "dbfs", "the tone's level, dBFS", default=-12.0),
        Param("duration", "seconds", "stop after S seconds (default: the file's length; a "
                                     "tone: until stop_playing)"),
        Param("loop", "flag", "repeat the file (until duration or stop_playing)",
              default=False),
        _CALL,
    ), selects_call=True, returns="call_id, seconds"),
    Command("stop_playing", "go back to the call's own audio after play", (_CALL,),
            selects_call=True),
    Command("calls", "list the calls", returns="calls"),
    Command("accounts", "list the accounts and their registration state",
            returns="accounts"),
    Command("register", "register an account again now (all when none is named)", (_ACCOUNT,),
            key="ctrl+r", key_label="Re-register", palette="Re-register"),
    Command("quit", "hang up every call, unregister and stop the phone"),
)}


def check_args(command: Command, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments checked and converted per the declaration; defaults filled in."""
    if not isinstance(args, dict):
        raise CommandError(f"{command.name}: arguments must be an object")
    known = {p.name for p in command.params}
    extra = sorted(set(args) - known)
    if extra:
        hint = ", ".join(sorted(known)) or "none"
        raise CommandError(f"{command.name}: unknown argument {extra[0]!r} (takes: {hint})")
    out: dict[str, Any] = {}
    for p in command.params:
        value = args.get(p.name)
        if value is None:
            if p.required:
                raise CommandError(f"{command.name}: missing {p.name} ({p.help})")
            out[p.name] = p.default
            continue
        try:
            out[p.name] = KINDS[p.kind](value)
        except CommandError as exc:
            message = str(exc)
            prefix = "" if message.startswith(f"{p.name}:") else f"{p.name}: "
            raise CommandError(f"{command.name}: {prefix}{message}") from None
    return out


@dataclass
class CommandResult:
    """What a command returns to a face (JSON-ready)."""

    ok: bool = True
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
