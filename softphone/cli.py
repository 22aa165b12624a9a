"""Command line: the TUI by default; ``register``, ``call`` and ``answer`` headless.

The flags, exit statuses and JSON-lines events are a fixed contract (DESIGN §3): scripts
and tests drive the phone through them. Exit 0 = the job succeeded, 1 = a SIP or media
failure (one line on stderr says why), 2 = bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .config import Config, ConfigError, load_config, parse_listen

__all__ = ["main"]

log = logging.getLogger("softphone")


class UsageError(Exception):
    """Bad flags or config: exit 2."""


class Failure(Exception):
    """The job failed on the SIP or media side: exit 1 with this line."""


class EventPrinter:
    """JSON lines on stdout (``--events jsonl``) or short human lines."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode
        self.start = time.monotonic()
        self.listeners: list[Callable[[str, dict], None]] = []

    def __call__(self, name: str, data: dict) -> None:
        for listener in self.listeners:
            listener(name, data)
        if self.mode == "jsonl":
            record = {"event": name, "t": round(time.monotonic() - self.start, 3), **data}
            sys.stdout.write(json.dumps(record, separators=(", ", ": ")) + "\n")
            sys.stdout.flush()
        elif name in ("registered", "registration_failed", "unregistered", "incoming",
                      "answered", "ended", "dtmf", "listening", "hold"):
            details = " ".join(f"{k}={v}" for k, v in data.items() if k != "rtp")
            sys.stdout.write(f"{name} {details}\n")
            sys.stdout.flush()


def _common(parser: argparse.ArgumentParser, *, tui: bool = False) -> None:
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: ~/.config/softphone/config.toml, "
                             "or the platform's config dir; no file at all is fine)")
    parser.add_argument("--audio", choices=("pyaudio", "null"), default=argparse.SUPPRESS,
                        help="audio backend (headless default: null; TUI: pyaudio)")
    if tui:
        return
    parser.add_argument("--account", metavar="NAME", default=argparse.SUPPRESS,
                        help="account to use (default: the first)")
    parser.add_argument("--listen", metavar="HOST:PORT", default=argparse.SUPPRESS,
                        help="SIP listen address (default: config, else a free port)")
    parser.add_argument("--events", choices=("jsonl",), default=argparse.SUPPRESS,
                        help="print events as JSON lines on stdout")
    parser.add_argument("--sip-trace", metavar="FILE", default=argparse.SUPPRESS,
                        help="write every SIP message to FILE (.pcap: a pcap file)")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log to stderr (-vv for debug)")


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1 (got {value!r})")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softphone", description="A terminal SIP softphone. Without a sub-command it "
        "opens the Textual interface.")
    _common(parser, tui=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("register", help="register, stay, unregister")
    _common(p)
    p.add_argument("--duration", type=_positive, metavar="S",
                   help="stay registered S seconds (default: until SIGINT/SIGTERM)")

    p = sub.add_parser("call", help="place one call")
    _common(p)
    p.add_argument("uri", metavar="URI", help="sip:user@host[:port], user@host, a number, or echo")
    p.add_argument("--duration", type=_positive, metavar="S",
                   help="hang up S seconds after the answer")
    p.add_argument("--timeout", type=_positive, metavar="S",
                   help="give up (CANCEL) when no final answer came S seconds after the INVITE")
    p.add_argument("--play", metavar="WAV", help="loop this WAV file into the call")
    p.add_argument("--record", metavar="WAV", help="record what the far end sends")
    p.add_argument("--dtmf", metavar="DIGITS", help="send these RFC 4733 digits after the answer")

    p = sub.add_parser("answer", help="wait for calls and answer them")
    _common(p)
    p.add_argument("--auto", action="store_true", help="answer every call automatically")
    p.add_argument("--delay", type=_positive, default=0.0, metavar="S",
                   help="with --auto: answer after S seconds (default 0)")
    p.add_argument("--max-calls", type=_count, metavar="N", help="end after N calls")
    p.add_argument("--duration", type=_positive, metavar="S", help="end after S seconds")
    p.add_argument("--play", metavar="WAV", help="loop this WAV file into each call")
    p.add_argument("--record", metavar="WAV",
                   help="record each call ({n} in the name: the call's number)")
    p.add_argument("--echo", action="store_true", help="send the received audio back")
    return parser


def record_path(template: str, n: int) -> str:
    """``{n}`` → the call's 1-based index; else ``-2``, ``-3`` … before the extension."""
    if "{n}" in template:
        return template.replace("{n}", str(n))
    if n == 1:
        return template
    path = Path(template)
    return str(path.with_name(f"{path.stem}-{n}{path.suffix}"))


class Devices:
    """Builds each call's (source, sink) from the flags."""

    def __init__(self, args: argparse.Namespace, backend: str, notice: Callable[[str], None]):
        self.play = getattr(args, "play", None)
        self.record = getattr(args, "record", None)
        self.echo = getattr(args, "echo", False)
        self.backend = backend
        self.notice = notice
        self.config_audio = None
        for path in filter(None, [self.play]):
            if not Path(path).is_file():
                raise UsageError(f"--play: no such file: {path}")
        if self.play:
            from .media.devices import WavSource

            try:
                WavSource(self.play)
            except Exception as exc:  # unreadable or not a WAV file
                raise UsageError(f"--play: cannot read {self.play}: {exc}") from None
        if self.backend == "pyaudio" and not (self.echo or (self.play and self.record)):
            # start PortAudio now, not in the middle of a call's set-up
            from .media import devices as dev

            try:
                if not any(d.max_input_channels or d.max_output_channels
                           for d in dev.list_devices()):
                    raise dev.AudioUnavailable("no sound devices found")
            except dev.AudioUnavailable as exc:
                notice(f"audio: {exc}; using silence")
                self.backend = "null"
        if self.record:
            parent = Path(record_path(self.record, 1)).parent
            if not parent.is_dir():
                raise UsageError(f"--record: no such directory: {parent}")

    def __call__(self, call) -> tuple[Any, Any]:
        from .media import devices as dev

        source: Any = None
        sink: Any = None
        if self.echo:
            bridge = dev.EchoBridge()
            source, sink = bridge.source, bridge.sink
        if self.play:
            source = dev.WavSource(self.play, loop=True)
        if self.backend == "pyaudio" and (source is None or sink is None):
            try:
                mic, speaker = dev.open_pyaudio(
                    self.config_audio.input_device if self.config_audio else None,
                    self.config_audio.output_device if self.config_audio else None)
                source = source or mic
                sink = sink or speaker
            except dev.AudioUnavailable as exc:
                self.notice(f"audio: {exc}; using silence")
                self.backend = "null"
        source = source or dev.NullSource()
        sink = sink or dev.NullSink()
        if self.record:
            recorder = dev.WavSink(record_path(self.record, call.index))
            sink = dev.TeeSink(sink, recorder)
        return source, sink


async def _run(args: argparse.Namespace, config: Config, printer: EventPrinter) -> int:
    from .echo import EchoService
    from .trace import SipTrace
    from .ua import UserAgent

    account = config.account(getattr(args, "account", None))
    if account is not None:
        try:
            account.secret()  # resolve password_env/keyring now: a clear error, exit 2
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.command == "register" and account is None:
        raise UsageError("register: no account configured (add [[accounts]] to the config)")
    listen = getattr(args, "listen", None) or config.network.listen
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    backend = getattr(args, "audio", None) or os.environ.get("SOFTPHONE_AUDIO") or "null"

    def notice(text: str) -> None:
        print(text, file=sys.stderr)

    devices = Devices(args, backend, notice)
    devices.config_audio = config.audio
    tracer = None
    trace_path = getattr(args, "sip_trace", None)
    if trace_path:
        try:
            tracer = SipTrace(trace_path)
        except OSError as exc:
            raise UsageError(f"--sip-trace: {exc}") from None
    ua = UserAgent(config, account, listen=listen, on_event=printer, tracer=tracer,
                   media_factory=devices,
                   auto_answer=bool(getattr(args, "auto", False)),
                   answer_delay=float(getattr(args, "delay", 0.0) or 0.0),
                   preload_media=args.command != "register")
    try:
        await ua.start()
    except OSError as exc:
        raise Failure(f"cannot listen: {exc}") from None
    if tracer is not None:
        tracer.local = (ua.transport.host, ua.transport.port)
    printer("listening", {"address": ua.transport.host, "port": ua.transport.port})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    echo = EchoService(config)
    try:
        if account is not None and account.register:
            reg = ua.register()
            ok = await reg.wait(timeout=64 * ua.timers.t1 + 5)
            for _ in range(3):  # 503 + Retry-After: the registrar asked us to come back soon
                if ok or reg.status != 503 or not reg.retry_after or reg.retry_after > 60:
                    break
                notice(f"registration: 503 {reg.reason}, retrying in {reg.retry_after} s")
                ok = await reg.wait_next(timeout=reg.retry_after + 64 * ua.timers.t1 + 5)
            if not ok:
                if reg.status:
                    raise Failure(f"registration failed: {reg.status} {reg.reason}")
                raise Failure(f"registration failed: {reg.reason or 'no answer'}")
        if args.command == "register":
            await _wait_stop(stop, args.duration)
            return 0
        if args.command == "call":
            return await _call(ua, args, stop, echo)
        return await _answer(ua, args, stop, printer)
    finally:
        await ua.close(timeout=5.0)
        await echo.close()
        if tracer is not None:
            tracer.close()


async def _wait_stop(stop: asyncio.Event, duration: float | None) -> None:
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except asyncio.TimeoutError:
        pass


async def _call(ua, args, stop: asyncio.Event, echo) -> int:
    from .call import CallError
    from .echo import ECHO_TARGET

    target: Any = args.uri
    if target.strip().lower() == ECHO_TARGET:
        target = await echo.uri()
    try:
        call = await ua.call(target, timeout=args.timeout)
    except CallError as exc:
        raise Failure(f"call failed: {exc}") from None
    waiter = asyncio.ensure_future(call.wait_answered())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not waiter.done():
        waiter.cancel()
        await call.hangup()
        return 0
    if not waiter.result():
        info = call.end_info
        if info.get("reason") == "timeout":
            raise Failure("call failed: timeout")
        if info.get("status"):
            raise Failure(f"call failed: {info['status']} {info.get('phrase', '')}".rstrip())
        if info.get("reason") == "error" and info.get("phrase"):
            raise Failure(f"call failed: {info['phrase']}")
        raise Failure(f"call failed: {info.get('reason', 'error')}"
                      + (f" ({info['phrase']})" if info.get("phrase") else ""))
    if args.dtmf:
        call.send_dtmf(args.dtmf)
    ended = asyncio.ensure_future(call.wait_ended())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([ended, stopper], timeout=args.duration,
                       return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not call.ended:
        ended.cancel()
        await call.hangup()
    if call.end_info.get("reason") == "error" or call.rtp_timeout_hit:
        raise Failure(f"call failed: {call.end_info.get('phrase', 'error')}")
    return 0


async def _answer(ua, args, stop: asyncio.Event, printer: EventPrinter) -> int:
    finished = 0
    enough = asyncio.Event()

    def count(name: str, data: dict) -> None:
        nonlocal finished
        if name == "ended":
            finished += 1
            if args.max_calls and finished >= args.max_calls:
                enough.set()

    printer.listeners.append(count)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(enough.wait())]
    await asyncio.wait(waits, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    return 0


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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

        return run_tui(config, audio=getattr(args, "audio", None))
    _setup_logging(getattr(args, "verbose", 0) or 0)
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
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
