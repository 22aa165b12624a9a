"""Command line: the TUI by default; ``register``, ``call``, ``answer`` headless; ``ctl``.

The flags, exit statuses and JSON-lines events are a fixed contract (DESIGN §3): scripts
and tests drive the phone through them. Exit 0 = the job succeeded, 1 = a SIP or media
failure (one line on stderr says why), 2 = bad usage or config, found before anything
starts. The jobs talk to the phone only through its commands and events
(``softphone.ua.phone``), like every other face.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from .config import AUDIO_BACKENDS as BACKENDS
from .config import Config, ConfigError, load_config, parse_listen

__all__ = ["main", "build_parser"]

log = logging.getLogger("softphone")

HUMAN_EVENTS = ("listening", "registering", "registered", "registration_failed",
                "unregistered", "public_address", "calling", "incoming", "ringing",
                "early_media", "answered", "dtmf", "hold", "ended", "redirected", "transfer",
                "conference", "dnd")


class UsageError(Exception):
    """Bad flags or config: exit 2."""


class Failure(Exception):
    """The job failed on the SIP or media side: exit 1 with this line."""


def _version() -> str:
    from . import __version__

    return __version__


# ============================================================================ parser
class _Parser(argparse.ArgumentParser):
    """argparse in this program's one error style: ``softphone: <what>: <why>``, then
    where to read more; exit 2."""

    def error(self, message: str):  # type: ignore[override]
        where = self.prog.removeprefix("softphone").strip()
        self.exit(2, f"softphone: {where + ': ' if where else ''}{message}; "
                     f"see {self.prog} --help\n")


def _common(parser: argparse.ArgumentParser, *, tui: bool = False) -> None:
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: ~/.config/softphone/config.toml, "
                             "or the platform's config dir; no file at all is fine)")
    parser.add_argument("--audio", choices=BACKENDS, default=argparse.SUPPRESS,
                        help="audio backend (headless default: null; TUI: pyaudio)")
    if tui:
        return
    parser.add_argument("--account", metavar="NAME", default=argparse.SUPPRESS,
                        help="account to use; call: default the first; register and answer: "
                             "a comma-separated list, default all (those with register = true "
                             "register at once)")
    parser.add_argument("--listen", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="SIP listen address (default: config, else a free port)")
    parser.add_argument("--events", choices=("jsonl",), default=argparse.SUPPRESS,
                        help="print events as JSON lines on stdout")
    parser.add_argument("--sip-trace", metavar="FILE", default=argparse.SUPPRESS,
                        help="write every SIP message to FILE: text, or a capture for "
                             "Wireshark/sngrep when FILE ends in .pcap or .pcapng; - is stdout")
    parser.add_argument("--trace-rtp", action="store_true", default=argparse.SUPPRESS,
                        help="with a .pcap/.pcapng --sip-trace: capture the RTP and RTCP too")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log to stderr (-vv for debug)")


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return number


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1 (got {value!r})")
    return int(value)


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 64 (got {value!r})")
    return int(value)


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < number <= 1000:
        raise argparse.ArgumentTypeError("must be calls per second, more than 0, at most 1000")
    return number


def _digits(value: str) -> str:
    from .ua.commands import CommandError, check_digits

    try:
        return check_digits(value)
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("digits: ")) from None


def _scenario_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", metavar="FILE",
                   help="run this TOML scenario for each call: steps with expectations, a "
                        "verdict per step, exit 1 when any call failed")
    p.add_argument("--junit", metavar="FILE",
                   help="with --scenario: write a JUnit XML report (one testcase per call)")


def build_parser() -> argparse.ArgumentParser:
    from .ua.commands import COMMANDS

    parser = _Parser(
        prog="softphone", description="A terminal SIP softphone. Without a sub-command it "
        "opens the Textual interface.")
    parser.add_argument("--version", action="version", version=f"softphone {_version()}")
    _common(parser, tui=True)
    # the TUI's own flags (the sub-commands take them too, after their name)
    parser.add_argument("--account", metavar="NAME", default=argparse.SUPPRESS,
                        help="TUI: the account selected at start (default: the first)")
    parser.add_argument("--listen", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="TUI: SIP listen address (default: config, else 5060 when it "
                             "is free, else a free port)")
    parser.add_argument("--sip-trace", metavar="FILE", default=argparse.SUPPRESS,
                        help="TUI: write every SIP message to FILE (.pcap, .pcapng: a "
                             "capture; else text)")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="TUI: log to softphone.log in the data dir (-vv for debug); "
                             "never on the screen")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("register", help="register, stay, unregister")
    _common(p)
    p.add_argument("--duration", type=_positive, metavar="S",
                   help="stay registered S seconds (default: until SIGINT/SIGTERM)")

    dial = COMMANDS["dial"]
    p = sub.add_parser("call", help="place one call")
    _common(p)
    p.add_argument("uri", metavar="URI", help=dial.param("uri").help)
    p.add_argument("--duration", type=_positive, metavar="S",
                   help="hang up S seconds after the answer")
    p.add_argument("--timeout", type=_positive, metavar="S", help=dial.param("timeout").help)
    p.add_argument("--play", metavar="WAV", help="loop this WAV file into the call")
    p.add_argument("--record", metavar="WAV", help="record what the far end sends")
    p.add_argument("--dtmf", metavar="DIGITS", type=_digits,
                   help="send these digits after the answer (0-9 * # A-D; ',' pauses 1 s; "
                        "RFC 4733 or SIP INFO as [audio] dtmf_mode says)")
    p.add_argument("--transfer-to", metavar="URI",
                   help="after the answer, transfer the far end to URI (blind, REFER) and "
                        "end when the transfer has succeeded (exit 0) or failed (exit 1)")
    _scenario_flags(p)
    p.add_argument("--repeat", type=_count, metavar="N",
                   help="with --scenario: place N calls (default 1)")
    p.add_argument("--rate", type=_rate, metavar="R",
                   help="with --scenario --repeat: R new calls per second (default: one "
                        "after the other)")

    p = sub.add_parser("answer", help="wait for calls and answer them")
    _common(p)
    p.add_argument("--auto", action="store_true", help="answer every call automatically")
    p.add_argument("--delay", type=_positive, default=None, metavar="S",
                   help="with --auto: answer after S seconds (default 0)")
    p.add_argument("--max-calls", type=_count, metavar="N", help="end after N calls")
    p.add_argument("--duration", type=_positive, metavar="S", help="end after S seconds")
    p.add_argument("--play", metavar="WAV", help="loop this WAV file into each call")
    p.add_argument("--record", metavar="WAV",
                   help="record each call ({n} in the name: the call's number)")
    p.add_argument("--echo", action="store_true", help="send the received audio back")
    p.add_argument("--tones", action="store_true",
                   help="ring on the speaker while a call rings (with --audio pyaudio and "
                        "[audio] tones; off by default: nobody listens to a headless answer)")
    p.add_argument("--workers", type=_workers, metavar="N", default=1,
                   help="N answering processes behind one SIP port, for loads beyond one "
                        "core (default 1)")
    _scenario_flags(p)

    lines = [f"  {c.name:<9} {c.help}" for c in COMMANDS.values()]
    p = sub.add_parser(
        "ctl", help="send a command to a running softphone (TUI or answer)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send one command to a running softphone over its control socket and "
                    "print the JSON reply. Arguments are NAME=VALUE or, for the first "
                    "listed, a bare value (softphone ctl dial sip:bob@example.com).",
        epilog="commands:\n" + "\n".join(lines) +
               "\n  events    stream every event as JSON lines until interrupted (stats=1: "
               "the live call_stats and levels too)")
    p.add_argument("--socket", metavar="PATH", help="control socket (default: the running "
                                                    "phone's in $XDG_RUNTIME_DIR/softphone)")
    p.add_argument("ctl_command", metavar="COMMAND")
    p.add_argument("ctl_args", metavar="ARG", nargs="*")
    return parser


# ============================================================================ events
class EventPrinter:
    """JSON lines on stdout (``--events jsonl``) or short human lines; notices on stderr."""

    def __init__(self, mode: str | None) -> None:
        from .ua.bus import JsonLines

        self.mode = mode
        self.encoder = JsonLines()

    def say(self, line: str) -> None:
        """A human line on stdout (scenario verdicts); JSON-lines mode has the events."""
        if self.mode != "jsonl":
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def __call__(self, event: Any) -> None:
        if event.name == "notice":
            kind = "warning: " if event.severity == "warning" else \
                "error: " if event.severity == "error" else ""
            print(f"softphone: {kind}{event.text}", file=sys.stderr, flush=True)
            return
        if not event.jsonl:
            return
        if self.mode == "jsonl":
            sys.stdout.write(self.encoder.encode(event) + "\n")
            sys.stdout.flush()
        elif event.name in HUMAN_EVENTS:
            data = event.to_dict()
            details = " ".join(f"{k}={v}" for k, v in data.items() if k != "rtp" and v is not None)
            sys.stdout.write(f"{event.name} {details}".rstrip() + "\n")
            sys.stdout.flush()


class CallWatch:
    """The events of one call, as futures the jobs can wait on. When the far end
    transfers us, the watch follows the new call once it has taken over."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.call_id: str | None = None
        self.answered: asyncio.Future = loop.create_future()
        self.ended: asyncio.Future = loop.create_future()
        self.transfer: asyncio.Future = loop.create_future()  # our transfer's outcome
        self._successor: str | None = None  # the call a transfer of the far end's made
        self._early: list[Any] = []

    def __call__(self, event: Any) -> None:
        call_id = getattr(event, "call_id", None)
        if call_id is None:
            return
        if self.call_id is None:
            self._early.append(event)
            return
        if event.name == "transfer" and call_id == self.call_id:
            if event.role == "transferee" and event.new_call_id:
                self._successor = event.new_call_id if event.state != "failed" else None
            elif event.role == "transferor" and event.state in ("succeeded", "failed") \
                    and not self.transfer.done():
                self.transfer.set_result(event)
        if event.name == "ended" and call_id == self._successor:
            self._successor = None  # the new call failed: we stay with the old one
        if call_id != self.call_id:
            return
        if event.name == "answered" and not self.answered.done():
            self.answered.set_result(event)
        elif event.name == "ended" and not self.ended.done():
            if self._successor is not None:  # transferred: go on with the new call
                self.call_id, self._successor = self._successor, None
                return
            self.ended.set_result(event)

    def follow(self, call_id: str) -> None:
        self.call_id = call_id
        for event in self._early:
            self(event)
        self._early.clear()


# ============================================================================ jobs
def _backend(args: argparse.Namespace) -> str:
    from .config import audio_from_environment

    chosen = getattr(args, "audio", None)
    if chosen:
        return chosen
    try:
        return audio_from_environment() or "null"
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _accounts(args: argparse.Namespace, config: Config) -> list:
    """The accounts the job uses: ``--account NAME`` (``call``; default: the first), or
    for ``register`` and ``answer`` a comma-separated list or ``all`` (default: every
    account; those with ``register = true`` register at once, as in the TUI)."""
    wanted = getattr(args, "account", None)
    if wanted is None:
        if args.command in ("register", "answer"):
            return list(config.accounts)
        first = config.account(None)
        return [first] if first is not None else []
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    if args.command in ("register", "answer"):
        if names == ["all"]:
            return list(config.accounts)
    elif len(names) != 1:
        raise UsageError(f"{args.command}: --account takes one account name")
    return [config.account(name) for name in names]


def _options(args: argparse.Namespace, config: Config, accounts: list) -> Any:
    from .ua.phone import MediaOptions, PhoneOptions

    listen = getattr(args, "listen", None) or config.network.listen
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    command = args.command
    auto = bool(getattr(args, "auto", False))
    if command == "answer" and not auto:
        if args.delay is not None:
            raise UsageError("answer: --delay needs --auto")
    media = MediaOptions(backend=_backend(args), play=getattr(args, "play", None),
                         record=getattr(args, "record", None),
                         echo=bool(getattr(args, "echo", False)),
                         tones=command != "answer" or bool(getattr(args, "tones", False)))
    return PhoneOptions(
        listen=listen, media=media, auto_answer=auto,
        answer_delay=float(getattr(args, "delay", None) or 0.0),
        accounts=tuple(a.name for a in accounts),
        trace_path=getattr(args, "sip_trace", None),
        trace_rtp=bool(getattr(args, "trace_rtp", False)),
        # `call` needs media at once; an idle `answer` or `register` never loads it (the
        # first incoming call does: ~18 MB of PyAV that an idle phone need not hold)
        preload_media=command == "call",
        control=None if command == "answer" else False)


async def _run(args: argparse.Namespace, config: Config, printer: EventPrinter) -> int:
    from .ua.phone import MediaOptionError, Phone, TargetError, parse_target

    accounts = _accounts(args, config)
    account = accounts[0] if accounts else None
    if args.command == "register" and account is None:
        raise UsageError("register: no account configured (add [[accounts]] to the config)")
    options = _options(args, config, accounts)
    if args.command == "answer":
        config, options = _worker_setup(config, options)
    scenario = _scenario(args)
    if args.command == "call" and args.uri.strip().lower() != "echo":
        try:
            target = parse_target(args.uri, account.aor_uri.hostport if account else None)
        except TargetError as exc:
            raise UsageError(f"call: {exc}") from None
        _check_family(target.host_bare, options.listen)
    phone = Phone(config, options)
    phone.bus.subscribe(printer)
    try:
        phone.check()
    except MediaOptionError as exc:
        raise UsageError(str(exc)) from None
    _check_trace(options, printer)
    if args.command == "answer" and not options.auto_answer and printer.mode != "jsonl" \
            and scenario is None:
        phone.bus.subscribe(_answer_hint)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await phone.start()
    except OSError as exc:
        await phone.close(timeout=1.0)
        raise Failure(f"cannot listen: {exc}") from None
    try:
        # every account registers at once; a failure of any fails the job
        results = await asyncio.gather(*(_wait_registration(phone, a.name) for a in accounts
                                         if a.register and options.register), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if args.command == "register":
            await _wait_stop(stop, phone, args.duration)
            return 0
        if scenario is not None:
            status = await _run_scenario(phone, scenario, args, stop, printer)
        elif args.command == "call":
            status = await _call(phone, args, stop)
        else:
            status = await _answer(phone, args, stop)
        if phone.devices.recording_errors:
            return 1  # its notice said why when it happened: not twice
        return status
    finally:
        await phone.close(timeout=5.0)


def _supervise(args: argparse.Namespace, config: Config) -> int:
    """``answer --workers N``: the dispatcher in front of N workers (softphone.workers)."""
    from .workers import run_supervisor

    if getattr(args, "scenario", None):
        print("softphone: answer: --workers cannot go with --scenario", file=sys.stderr)
        return 2
    if not args.auto:
        print("softphone: answer: --workers needs --auto (workers have no control socket to "
              "answer by hand)", file=sys.stderr)
        return 2
    listen = getattr(args, "listen", None) or config.network.listen
    try:
        parse_listen(listen)
    except ValueError as exc:
        print(f"softphone: --listen: {exc}", file=sys.stderr)
        return 2
    tls_listen = config.network.tls_listen
    if tls_listen and parse_listen(tls_listen)[1] == 0:
        print("softphone: answer: --workers needs a fixed [network] tls_listen port (the "
              "workers share it; port 0 would give each its own)", file=sys.stderr)
        return 2
    try:
        from .workers import rtp_slice

        rtp_slice(tuple(config.network.rtp_ports), args.workers - 1, args.workers)
    except ValueError as exc:
        print(f"softphone: answer: --workers {args.workers}: {exc}", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "softphone", "answer", "--workers", str(args.workers)]
    for flag in ("config", "account", "audio", "delay", "play", "record", "sip_trace"):
        value = getattr(args, flag, None)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    for flag in ("auto", "echo", "trace_rtp"):
        if getattr(args, flag, False):
            argv.append(f"--{flag.replace('_', '-')}")
    argv += ["-v"] * (getattr(args, "verbose", 0) or 0)

    def human(event: dict) -> str | None:
        name = event.get("event")
        if name not in HUMAN_EVENTS:
            return None
        details = " ".join(f"{k}={v}" for k, v in event.items()
                           if k not in ("event", "t", "rtp") and v is not None)
        return f"{name} {details}".rstrip()

    return run_supervisor(args.workers, listen, argv, jsonl=getattr(args, "events", None) == "jsonl",
                          human=human, max_calls=args.max_calls, duration=args.duration)


def _worker_setup(config: Config, options: Any) -> tuple[Config, Any]:
    """In a worker of ``answer --workers``: its line to the dispatcher, its RTP ports,
    its own file names; only worker 0 registers; no control socket."""
    import dataclasses
    import socket as socketlib

    from .workers import CALL_ID_HOST, rtp_slice, worker_spec

    spec = worker_spec()
    if spec is None:
        return config, options
    network = dataclasses.replace(config.network, rtp_ports=rtp_slice(
        tuple(config.network.rtp_ports), spec.index, spec.count))
    config = dataclasses.replace(config, network=network)

    def own(path: str | None) -> str | None:
        if not path or path == "-":
            return path
        from pathlib import Path

        p = Path(path)
        return str(p.with_name(f"{p.stem}-w{spec.index}{p.suffix}"))

    media = dataclasses.replace(options.media, record=own(options.media.record))
    options = dataclasses.replace(
        options, media=media, trace_path=own(options.trace_path), control=False,
        register=spec.index == 0, call_id_host=f"{CALL_ID_HOST}{spec.index}",
        relay=socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM, fileno=spec.fd))
    return config, options


def _scenario(args: argparse.Namespace) -> Any:
    """The --scenario file, read and checked whole (exit 2 naming file, step and key),
    with the flags it cannot go with refused; None without --scenario."""
    path = getattr(args, "scenario", None)
    command = args.command
    if path is None:
        for flag in ("junit", "repeat", "rate"):
            if getattr(args, flag, None) is not None:
                raise UsageError(f"{command}: --{flag} needs --scenario")
        return None
    clashes = {"call": ("duration", "dtmf"), "answer": ("auto", "delay")}.get(command, ())
    for flag in clashes:
        if getattr(args, flag, None):
            raise UsageError(f"{command}: --{flag} cannot go with --scenario (the scenario's "
                             f"steps do that)")
    if getattr(args, "rate", None) is not None and getattr(args, "repeat", None) is None:
        raise UsageError("call: --rate needs --repeat")
    from .scenario import ScenarioError, load_scenario
    from .ua.phone import MediaOptionError, probe_audio_file

    try:
        scenario = load_scenario(path, command)
        for step in scenario.steps:
            if step.kind == "play" and step["file"]:
                try:
                    probe_audio_file(step["file"], "file")
                except MediaOptionError as exc:
                    raise ScenarioError(str(exc).removeprefix("file: "),
                                        source=scenario.source,
                                        where=f"steps[{step.index}] (play)", key="file") from None
    except ScenarioError as exc:
        raise UsageError(f"scenario error: {exc}") from None
    junit = getattr(args, "junit", None)
    if junit:
        try:
            open(junit, "ab").close()
        except OSError as exc:
            raise UsageError(f"--junit: cannot write {junit}: {exc.strerror or exc}") from None
    return scenario


async def _run_scenario(phone, scenario: Any, args: argparse.Namespace, stop: asyncio.Event,
                        printer: EventPrinter) -> int:
    from .scenario.report import write_junit
    from .scenario.runner import ScenarioRunner

    runner = ScenarioRunner(phone, scenario, say=printer.say)
    try:
        if args.command == "call":
            await runner.place(args.uri, repeat=args.repeat or 1, rate=args.rate,
                               timeout=args.timeout, stop=stop)
        else:
            ended = asyncio.Event()
            watch = asyncio.ensure_future(_first(stop.wait(), phone.stopped.wait(),
                                                 timeout=args.duration))
            watch.add_done_callback(lambda _: ended.set())
            try:
                await runner.serve(max_calls=args.max_calls, stop=ended)
            finally:
                watch.cancel()
    finally:
        runner.close()
    summary = runner.summary()
    if args.junit:
        write_junit(args.junit, scenario, runner.results, summary.duration)
    if not runner.results:
        raise Failure(f"scenario {scenario.name}: no call " +
                      ("was placed" if args.command == "call" else "came in"))
    if summary.failed:
        raise Failure(f"scenario {scenario.name}: {summary.failed} of {summary.calls} "
                      f"call{'s' if summary.calls != 1 else ''} failed")
    return 0


def _check_trace(options: Any, printer: EventPrinter) -> None:
    from .ua.phone import trace_format

    path = options.trace_path
    if options.trace_rtp and (not path or trace_format(path) == "text"):
        raise UsageError("--trace-rtp needs a capture: --sip-trace FILE.pcap or FILE.pcapng")
    if not path:
        return
    if path == "-":
        if printer.mode == "jsonl":
            raise UsageError("--sip-trace -: stdout already carries the JSON events; "
                             "give the trace a file")
        return
    try:
        open(path, "ab").close()
    except OSError as exc:
        raise UsageError(f"--sip-trace: cannot write {path}: {exc.strerror or exc}") from None


def _check_family(host: str, listen: str) -> None:
    """An IPv6 target from an IPv4 socket (or the reverse) cannot work: say so now, and
    what to do, instead of sending into an error until Timer B."""
    import ipaddress

    try:
        target = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: resolved later, in the socket's family
    bound = parse_listen(listen)[0]
    if target.version == 6 and ":" not in bound:
        raise UsageError(f"call: cannot reach the IPv6 address {host} from the IPv4 listen "
                         f"address {bound}: listen on IPv6 (e.g. --listen [::]:0)")
    if target.version == 4 and ":" in bound:
        raise UsageError(f"call: cannot reach the IPv4 address {host} from the IPv6 listen "
                         f"address {bound}: listen on IPv4 (e.g. --listen 0.0.0.0:0)")


def _answer_hint(event: Any) -> None:
    if event.name == "incoming":
        print("softphone: answer it with 'softphone ctl answer' (or refuse it with "
              "'softphone ctl reject')", file=sys.stderr, flush=True)


async def _wait_registration(phone, name: str) -> None:
    t1 = phone.config.sip.t1_ms / 1000
    ok = await phone.wait_registered(name, timeout=64 * t1 + 5)
    for _ in range(3):  # 503 + Retry-After: the registrar asked us to come back soon
        info = phone.account(name)
        retry = info["retry_after"]
        if ok or info["status"] != 503 or not retry or retry > 60:
            break
        print(f"softphone: registration: 503 {info['reason']}, retrying in {retry} s",
              file=sys.stderr)
        ok = await phone.wait_registered(name, timeout=retry + 64 * t1 + 5, next_attempt=True)
    if not ok:
        info = phone.account(name)
        prefix = f"registration of {name} failed" if len(phone.account_info()) > 1 \
            else "registration failed"
        if info["status"]:
            raise Failure(f"{prefix}: {info['status']} {info['reason']}")
        raise Failure(f"{prefix}: {info['reason'] or 'no answer'}")


async def _wait_stop(stop: asyncio.Event, phone, duration: float | None) -> None:
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(phone.stopped.wait())]
    await asyncio.wait(waits, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()


async def _first(*aws: Any, timeout: float | None = None) -> None:
    """Wait until the first of ``aws`` is done; the coroutines among them that are not
    are cancelled (futures passed in are left alone: others may wait on them)."""
    made = [asyncio.ensure_future(a) for a in aws if asyncio.iscoroutine(a)]
    given = [a for a in aws if not asyncio.iscoroutine(a)]
    await asyncio.wait([*given, *made], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in made:
        if not task.done():
            task.cancel()


def _failure_line(event: Any) -> str:
    if event.reason == "timeout":
        return "call failed: timeout" + (f" ({event.phrase})" if event.phrase else "")
    if event.status:
        return f"call failed: {event.status} {event.phrase or ''}".rstrip()
    if event.reason == "error" and event.phrase:
        return f"call failed: {event.phrase}"
    return f"call failed: {event.reason}" + (f" ({event.phrase})" if event.phrase else "")


async def _call(phone, args: argparse.Namespace, stop: asyncio.Event) -> int:
    from .ua.phone import CommandError

    watch = CallWatch()
    phone.bus.subscribe(watch)
    try:
        result = await phone.execute("dial", {"uri": args.uri, "timeout": args.timeout})
    except CommandError as exc:
        raise Failure(f"call failed: {str(exc).removeprefix('dial: ')}") from None
    call_id = result["call_id"]
    watch.follow(call_id)
    await _first(watch.answered, watch.ended, stop.wait())
    if not watch.answered.done():
        if watch.ended.done():
            raise Failure(_failure_line(watch.ended.result()))
        await phone.execute("hangup", {"call_id": call_id})  # interrupted while ringing
        raise Failure("call failed: interrupted before the answer")
    if args.dtmf:
        try:
            await phone.execute("dtmf", {"digits": args.dtmf, "call_id": call_id})
        except CommandError as exc:
            raise Failure(f"call failed: {str(exc).removeprefix('dtmf: ')}") from None
    if args.transfer_to:
        await _transfer(phone, watch, call_id, args.transfer_to, stop)
        return 0
    await _first(watch.ended, stop.wait(), timeout=args.duration)
    if not watch.ended.done():
        try:
            await phone.execute("hangup", {"call_id": watch.call_id})
        except CommandError:
            pass
    if watch.ended.done():
        end = watch.ended.result()
        if end.reason in ("error", "timeout"):  # the media died, no ACK …
            raise Failure(f"call failed: {end.phrase or end.reason}")
    return 0


async def _transfer(phone, watch: CallWatch, call_id: str, target: str,
                    stop: asyncio.Event) -> None:
    """``call --transfer-to``: REFER the far end, wait for the outcome (bounded)."""
    from .ua.phone import CommandError

    try:
        await phone.execute("transfer", {"call_id": call_id, "target": target})
    except CommandError as exc:
        raise Failure(f"transfer failed: {str(exc).removeprefix('transfer: ')}") from None
    await _first(watch.transfer, watch.ended, stop.wait(), timeout=120)
    outcome = watch.transfer.result() if watch.transfer.done() else None
    if outcome is not None and outcome.state == "succeeded":
        await _first(watch.ended, timeout=64 * phone.config.sip.t1_ms / 1000 + 1)
        return
    if not watch.ended.done():
        try:
            await phone.execute("hangup", {"call_id": call_id})
        except CommandError:
            pass
    if outcome is None:
        raise Failure("transfer failed: no outcome")
    raise Failure(f"transfer failed: {outcome.status or ''} {outcome.reason or ''}".strip())


async def _answer(phone, args: argparse.Namespace, stop: asyncio.Event) -> int:
    from .ua.events import CallTally

    tally = CallTally(args.max_calls)
    enough = asyncio.Event()

    def count(event: Any) -> None:
        if tally.feed(event.name, getattr(event, "call_id", None)):
            enough.set()

    phone.bus.subscribe(count)
    await _first(stop.wait(), enough.wait(), phone.stopped.wait(), timeout=args.duration)
    return 0


# ============================================================================ ctl
def _ctl(args: argparse.Namespace) -> int:
    """Send one command to a running phone and print its JSON reply."""
    import json
    import socket as socketlib

    from .ua.commands import COMMANDS
    from .ua.phone import default_socket_path

    name = args.ctl_command
    payload: dict[str, Any] = {}
    command = COMMANDS.get(name)
    positional = [p.name for p in command.params if p.positional] if command else []
    paths = {p.name for p in command.params if p.kind == "path"} if command else set()
    for item in args.ctl_args:
        key, eq, value = item.partition("=")
        if eq and key.replace("_", "").isalnum():
            payload[key] = value
        elif positional:
            key, value = positional.pop(0), item
            payload[key] = value
        else:
            print(f"softphone: ctl {name}: unexpected argument {item!r} (use NAME=VALUE)",
                  file=sys.stderr)
            return 2
        if key in paths:  # the phone may run in another directory: a name means ours
            payload[key] = os.path.abspath(os.path.expanduser(value))
    path = args.socket or _find_socket(default_socket_path())
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        print(f"softphone: ctl: no running softphone at {path}: {exc.strerror or exc} "
              f"(start one: softphone, or softphone answer)", file=sys.stderr)
        return 1
    stream = sock.makefile("rwb")
    stream.write(json.dumps({"command": name, "args": payload}).encode() + b"\n")
    stream.flush()
    try:
        first = stream.readline()
        if not first:
            print("softphone: ctl: the phone closed the connection", file=sys.stderr)
            return 1
        sys.stdout.write(first.decode("utf-8", "replace"))
        sys.stdout.flush()
        reply = json.loads(first)
        if name == "events" and reply.get("ok"):
            for line in stream:
                sys.stdout.write(line.decode("utf-8", "replace"))
                sys.stdout.flush()
        return 0 if reply.get("ok") else 1
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()


def _find_socket(default) -> Any:
    """The default socket, else the only other running phone's (control-<pid>.sock)."""
    if default.exists():
        return default
    others = sorted(default.parent.glob("control-*.sock")) if default.parent.is_dir() else []
    return others[0] if len(others) == 1 else default


# ============================================================================ main
class _OneStyle(logging.Formatter):
    """At default verbosity a log record is one more line for the user: in the same
    style as every other (``softphone: warning: …``), without time, logger name or
    traceback (-vv shows those); an exception is named on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"softphone: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line += f": {type(exc).__name__}: {exc}" if str(exc) else f": {type(exc).__name__}"
        return line


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneStyle() if verbosity <= 0 else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "ctl":
        return _ctl(args)
    config_path = getattr(args, "config", None)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"softphone: config error: {exc}", file=sys.stderr)
        return 2
    for warning in getattr(config, "warnings", ()) or ():
        print(f"softphone: warning: {warning}", file=sys.stderr)
    if args.command is None:
        from .tui import run_tui

        return run_tui(config, audio=getattr(args, "audio", None),
                       listen=getattr(args, "listen", None),
                       account=getattr(args, "account", None),
                       sip_trace=getattr(args, "sip_trace", None),
                       verbose=getattr(args, "verbose", 0) or 0)
    _setup_logging(getattr(args, "verbose", 0) or 0)
    if args.command == "answer" and args.workers > 1:
        from .workers import worker_spec

        if worker_spec() is None:
            return _supervise(args, config)
    printer = EventPrinter(getattr(args, "events", None))
    try:
        return asyncio.run(_run(args, config, printer))
    except UsageError as exc:
        print(f"softphone: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"softphone: config error: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"softphone: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
