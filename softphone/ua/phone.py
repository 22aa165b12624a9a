"""The Phone: the one object the CLI, the TUI and the control socket talk to.

Commands (``commands.COMMANDS``) go in through :meth:`Phone.execute` or the method of the
same name; events (``events``) come out on :attr:`Phone.bus`. Under it, one user agent
carries every account on one stack and socket.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..config import Config
from ..sip.uri import SipUri
from ..sip.sdes import mask as mask_keys
from ..transport import Peer
from . import events as ev
from .agent import UserAgent
from .bus import EventBus, JsonLines
from .errors import CallError
from .commands import COMMANDS, CommandError, check_args, check_digits
from .devices import DeviceFactory, MediaOptionError, MediaOptions, record_path
from .echo import EchoService
from .target import ECHO_TARGET, TargetError, parse_target
from .trace import trace_format

if TYPE_CHECKING:
    from .call import Call

__all__ = ["Phone", "PhoneOptions", "CallError", "CommandError",
           "TargetError", "MediaOptions", "MediaOptionError", "EventBus", "JsonLines", "COMMANDS",
           "parse_target", "check_digits", "record_path", "ev", "default_socket_path",
           "audio_devices", "trace_format", "probe_audio_file"]

log = logging.getLogger(__name__)

LIVE_STATES = ("calling", "ringing", "early", "incoming", "connected", "ending")


def default_socket_path():
    """Where a running phone's control socket is, unless [control] socket says otherwise."""
    from .control import default_socket_path as path

    return path()


def probe_audio_file(path: str, what: str = "--play") -> float:
    """Decode an audio file once: its length in seconds. MediaOptionError (naming
    ``what``) when it is missing or not audio."""
    return DeviceFactory._check_play(path, what)


def audio_devices() -> list:
    """The sound devices PortAudio sees (name, index, channels), for pickers; raises
    AudioUnavailable when PortAudio cannot start."""
    from ..media.devices import list_devices

    return list_devices()


@dataclass(frozen=True)
class PhoneOptions:
    listen: str | None = None                 # default: [network] listen
    media: MediaOptions = field(default_factory=MediaOptions)
    auto_answer: bool = False
    answer_delay: float = 0.0
    accounts: tuple[str, ...] | None = None   # accounts to bring up (None: all)
    register: bool = True                     # register those with register = true
    trace_path: str | None = None             # --sip-trace FILE (- : stdout)
    trace_rtp: bool = False                   # the capture carries RTP/RTCP too
    preload_media: bool = True                # load the media parts in the background
    control: bool | None = None               # None: [control] enabled
    control_path: str | None = None           # None: [control] socket, else the default
    user: str | None = None                   # our user part when no account is used
    relay: Any = None                         # a worker's socket to its dispatcher
    call_id_host: str | None = None           # after '@' in our Call-IDs (a worker's mark)


class Phone:
    def __init__(self, config: Config, options: PhoneOptions | None = None) -> None:
        self.config = config
        self.options = options or PhoneOptions()
        self.bus = EventBus()
        self.devices = DeviceFactory(self.options.media, config.audio, notice=self._notice)
        self.agent: UserAgent | None = None
        self.echo = EchoService(config)
        self.control: Any = None
        self.selected_account: str | None = None
        self.started = False
        self.stopped = asyncio.Event()  # set by the quit command (and close)
        self._trace_file: Any = None
        self._tickers: dict[str, asyncio.TimerHandle] = {}

    # ======================================================================== lifecycle
    def check(self) -> None:
        """Everything that can be checked before starting (raises MediaOptionError,
        ConfigError): files to play and record, audio devices, account passwords."""
        self.devices.check()
        for account in self._account_settings():
            account.secret()  # password_env unset, keyring locked …: say so now

    def _account_settings(self) -> list:
        wanted = self.options.accounts
        accounts = list(self.config.accounts)
        if wanted is not None:
            accounts = [a for a in accounts if a.name in wanted]
        return accounts

    async def start(self) -> None:
        """Listen, open the control socket, register the accounts that ask for it."""
        from .trace import SipTrace

        o = self.options
        if o.trace_path:
            self._trace_file = SipTrace(o.trace_path)
        tap = self._trace_file.media if o.trace_rtp and self._trace_file is not None else None
        self.agent = UserAgent(self.config, listen=o.listen, accounts=self._account_settings(),
                               publish=self.bus.publish, tracer=self._trace,
                               devices=self.devices, auto_answer=o.auto_answer,
                               answer_delay=o.answer_delay, user=o.user, media_tap=tap)
        self.agent.stack.relay = o.relay
        if o.call_id_host:
            from ..sip.ids import set_call_id_host

            set_call_id_host(o.call_id_host)
        await self.agent.start(preload_media=o.preload_media)
        stack = self.agent.stack
        if self._trace_file is not None:
            self._trace_file.local = (stack.transport.host, stack.transport.port)
        self.selected_account = next(iter(self.agent.accounts), None)
        control_path = None
        enabled = self.config.control.enabled if o.control is None else o.control
        if enabled:
            from .control import ControlServer

            self.control = ControlServer(self, o.control_path or self.config.control.socket)
            try:
                control_path = await self.control.start()
            except OSError as exc:
                self._notice(f"control socket: {exc}")
                self.control = None
        self.started = True
        tls_port = stack.transport.tls_port
        tls = None
        if tls_port:
            from .addressing import host_literal, split_hostport

            tls = f"{host_literal(split_hostport(self.config.network.tls_listen)[0])}:{tls_port}"
        self.bus.publish(ev.Listening(stack.transport.host, stack.transport.port,
                                      control_path, tls))
        self._every("stats", 1.0, self._stats_event)
        self._every("levels", 0.2, self._levels_event)
        for account in self.agent.accounts.values():
            if not account.settings.register:
                continue
            if o.register:
                await account.register()
                continue
            try:  # another process registers: still guard the Contact it registers
                await account.prepare()
            except OSError as exc:
                self._notice(f"{account.name}: {exc}")

    async def close(self, timeout: float = 5.0) -> None:
        """Hang up, unregister, stop (bounded by ``timeout``)."""
        for handle in self._tickers.values():
            handle.cancel()
        self._tickers.clear()
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.agent is not None:
            await self.agent.close(timeout=timeout)
        await self.echo.close()
        if self._trace_file is not None:
            self._trace_file.close()
            self._trace_file = None
        self.stopped.set()

    # ======================================================================== introspection
    @property
    def address(self) -> tuple[str, int]:
        assert self.agent is not None
        return self.agent.stack.transport.host, self.agent.stack.transport.port

    def call(self, call_id: str) -> Call | None:
        return self.agent.calls.get(call_id) if self.agent is not None else None

    def live_calls(self) -> list[Call]:
        if self.agent is None:
            return []
        return [c for c in self.agent.calls.values() if not c.ended]

    def identity(self) -> str:
        """What the phone is, for a status line: the selected account's AOR, else our
        address, and where we listen."""
        if self.agent is None:
            return "not started"
        host, port = self.address
        account = self.agent.accounts.get(self.selected_account or "")
        who = account.settings.aor if account is not None else str(self.agent.local_identity().uri)
        return f"{who} (listening on {host}:{port})"

    def call_info(self, call: Call) -> dict[str, Any]:
        info: dict[str, Any] = {
            "call_id": call.call_id, "index": call.index, "direction": call.direction,
            "state": call.state, "account": call.account_name, "remote": str(call.remote.uri),
            "display_name": call.remote.display_name, "codec": call.codec,
            "srtp": call.media.srtp,
            "duration": round(call.duration, 1), "muted": call.muted, "on_hold": call.on_hold,
            "remote_hold": call.remote_hold, "conference": call.in_conference}
        job = call.transferor
        if job is not None:
            info["transfer"] = {"target": job.target, "state": job.state, "status": job.status}
        if call.ended:
            info["ended"] = {k: v for k, v in call.end_info.items() if k != "call_id"}
        return info

    def account_info(self) -> list[dict[str, Any]]:
        assert self.agent is not None
        out = []
        for account in self.agent.accounts.values():
            left = account.seconds_left()
            out.append({"name": account.name, "aor": account.settings.aor,
                        "register": account.settings.register, "state": account.state,
                        "status": account.status, "reason": account.reason,
                        "expires_in": None if left is None else int(left),
                        "retry_after": account.retry_after,
                        "public_address": account.public_address,
                        "selected": account.name == self.selected_account})
        return out

    def account(self, name: str) -> dict[str, Any]:
        """One account's entry of :meth:`account_info`."""
        return next(a for a in self.account_info() if a["name"] == name)

    # ======================================================================== commands
    async def execute(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one command of the table; raises CommandError with what went wrong."""
        command = COMMANDS.get(name)
        if command is None:
            import difflib

            close = difflib.get_close_matches(str(name), list(COMMANDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CommandError(f"unknown command {name!r}{hint}; commands: "
                               f"{', '.join(COMMANDS)}")
        if self.agent is None:
            raise CommandError("the phone is not started")
        checked = check_args(command, args or {})
        try:
            result = await getattr(self, f"cmd_{name}")(**checked)
        except (CallError, TargetError) as exc:
            raise CommandError(f"{name}: {exc}") from None
        return result or {}

    def _pick(self, call_id: str | None, *, ringing: bool = False) -> Call:
        """The call a command means: the named one; else a ringing incoming call (for
        answer/reject), the only live call, or the newest live call."""
        if call_id is not None:
            call = self.call(call_id)
            if call is None:
                raise CallError(f"no call {call_id!r}")
            return call
        live = self.live_calls()
        if ringing:
            for call in live:
                if call.direction == "incoming" and call.state in ("incoming", "ringing"):
                    return call
            raise CallError("no incoming call is ringing")
        if not live:
            raise CallError("no call in progress")
        return live[-1]

    async def cmd_dial(self, uri: str, account: str | None = None,
                       timeout: float | None = None) -> dict[str, Any]:
        assert self.agent is not None
        if account is not None:
            self.agent.account(account)  # a wrong name is an error, not the first account
        account = account or self.selected_account
        target: Any = uri
        if uri.strip().lower() == ECHO_TARGET:
            target = await self.echo.uri()
            account = None
        call = await self.agent.dial(target, account=account,
                                     timeout=timeout if timeout else None)
        return {"call_id": call.call_id}

    def _ringing(self, call_id: str | None) -> Call:
        call = self._pick(call_id, ringing=True)
        if call.direction != "incoming" or call.state not in ("incoming", "ringing"):
            raise CallError(f"call {call.call_id} is not ringing ({call.state})")
        return call

    async def cmd_answer(self, call_id: str | None = None,
                         hold_others: bool = True) -> dict[str, Any]:
        from . import waiting

        call = self._ringing(call_id)
        assert self.agent is not None
        if hold_others:  # a waiting call: the calls we talk on are held first
            await waiting.answer(self.agent, call)
        else:
            call.answer()
        return {"call_id": call.call_id}

    async def cmd_reject(self, call_id: str | None = None, status: int = 486) -> dict[str, Any]:
        call = self._ringing(call_id)
        call.reject(status)
        return {"call_id": call.call_id}

    async def cmd_hangup(self, call_id: str | None = None) -> dict[str, Any]:
        call = self._pick(call_id)
        if call.ended:
            raise CallError(f"call {call.call_id} has already ended")
        await call.hangup()
        return {"call_id": call.call_id, "reason": call.end_info.get("reason")}

    async def cmd_hold(self, call_id: str | None = None, toggle: bool = False) -> dict[str, Any]:
        call = self._pick(call_id)
        await call.set_hold(not call.on_hold if toggle else True)
        return {"call_id": call.call_id, "on_hold": call.on_hold}

    async def cmd_resume(self, call_id: str | None = None) -> dict[str, Any]:
        call = self._pick(call_id)
        await call.set_hold(False)
        return {"call_id": call.call_id, "on_hold": call.on_hold}

    async def cmd_mute(self, call_id: str | None = None, toggle: bool = False) -> dict[str, Any]:
        call = self._pick(call_id)
        if call.ended:
            raise CallError(f"call {call.call_id} has ended")
        call.set_muted(not call.muted if toggle else True)
        return {"call_id": call.call_id, "muted": call.muted}

    async def cmd_unmute(self, call_id: str | None = None) -> dict[str, Any]:
        call = self._pick(call_id)
        call.set_muted(False)
        return {"call_id": call.call_id, "muted": call.muted}

    async def cmd_dtmf(self, digits: str, call_id: str | None = None) -> dict[str, Any]:
        call = self._pick(call_id)
        method = call.send_dtmf(digits)
        return {"call_id": call.call_id, "digits": digits, "method": method}

    def _connected(self, call_id: str | None) -> Call:
        call = self._pick(call_id)
        if call.ended or call.state != "connected":
            raise CallError(f"call {call.call_id} is not connected ({call.state})")
        return call

    def _others(self, call: Call) -> list[Call]:
        return [c for c in self.live_calls() if c is not call and c.state == "connected"]

    async def cmd_transfer(self, target: str | None = None, to_call: str | None = None,
                           call_id: str | None = None) -> dict[str, Any]:
        from . import transfer

        assert self.agent is not None
        call = self._connected(call_id)
        if target is not None and to_call is not None:
            raise CallError("give a target (blind) or to_call (attended), not both")
        if target is not None:
            account = call.account
            uri = parse_target(target, account.aor.hostport if account else None)
            return await transfer.start(call, uri)
        if to_call is not None:
            other = self.call(to_call)
            if other is None:
                raise CallError(f"no call {to_call!r}")
        else:
            others = self._others(call)
            if len(others) != 1:
                raise CallError("give a target to transfer to, or to_call: the call to join "
                                "it with" + (" (there are several)" if others else ""))
            other = others[0]
        remote = other.remote.uri
        if not isinstance(remote, SipUri):
            raise CallError(f"call {other.call_id} has no SIP address to transfer to")
        result = await transfer.start(call, remote, other=other)
        return {**result, "to_call": other.call_id}

    async def cmd_conference(self, call_id: str | None = None, with_call: str | None = None,
                             toggle: bool = False) -> dict[str, Any]:
        from .conference import LocalConference

        agent = self.agent
        assert agent is not None
        call = self._connected(call_id)
        if toggle and call.in_conference:
            return await self.cmd_split(call.call_id)
        if with_call is not None:
            other = self.call(with_call)
            if other is None:
                raise CallError(f"no call {with_call!r}")
            others = [other]
        else:
            others = self._others(call)
        if not others:
            raise CallError("a conference needs another connected call")
        if agent.conference is None or not agent.conference.calls:
            agent.conference = LocalConference(agent)
        ids = await agent.conference.join([call, *others])
        return {"call_ids": ids}

    async def cmd_split(self, call_id: str | None = None) -> dict[str, Any]:
        agent = self.agent
        assert agent is not None
        if agent.conference is None or not agent.conference.calls:
            raise CallError("no conference to split")
        if call_id is not None and call_id not in agent.conference.calls:
            raise CallError(f"call {call_id} is not in the conference")
        ids = agent.conference.split()
        return {"call_ids": ids}

    async def cmd_swap(self, call_id: str | None = None) -> dict[str, Any]:
        from . import waiting

        assert self.agent is not None
        to = self.call(call_id) if call_id is not None else None
        if call_id is not None and to is None:
            raise CallError(f"no call {call_id!r}")
        active, held = await waiting.swap(self.agent, to)
        return {"active": active.call_id, "held": held.call_id}

    async def cmd_dnd(self, on: bool | None = None, status: int | None = None,
                      toggle: bool = False) -> dict[str, Any]:
        agent = self.agent
        assert agent is not None
        if status is not None and status not in (480, 486, 603):
            raise CallError("status: do not disturb refuses with 480, 486 or 603")
        enabled = (not agent.dnd) if toggle else (True if on is None else on)
        agent.set_dnd(enabled, status)
        return {"enabled": agent.dnd, "status": agent.dnd_status}

    async def cmd_processing(self, echo_cancellation: bool | None = None,
                             noise_suppression: bool | None = None,
                             auto_gain_control: bool | None = None,
                             toggle: bool = False) -> dict[str, Any]:
        """Switch the microphone processing now (the calls up and the next ones);
        ``active``: whether it runs at all (only on real devices)."""
        devices = self.devices
        if toggle:
            echo_cancellation = not devices.processing.echo_cancellation
        settings = devices.set_processing(echo_cancellation=echo_cancellation,
                                          noise_suppression=noise_suppression,
                                          auto_gain_control=auto_gain_control)
        return {**settings.as_dict(), "active": devices.backend == "pyaudio"}

    async def cmd_play(self, file: str | None = None, tone: float | None = None,
                       level: float = -12.0, duration: float | None = None,
                       loop: bool = False, call_id: str | None = None) -> dict[str, Any]:
        from ..media.devices import ToneSource, WavSource

        if (file is None) == (tone is None):
            raise CallError("give a file or a tone (one of them)")
        call = self._pick(call_id)
        if call.ended or call.state != "connected":
            raise CallError(f"call {call.call_id} is not connected ({call.state})")
        source: Any
        if tone is not None:
            source, seconds = ToneSource(tone, level), duration
        else:
            try:
                length = probe_audio_file(file, "file")
            except MediaOptionError as exc:
                raise CallError(str(exc)) from None
            source = WavSource(file, loop=loop)
            source.prepare(call.media.rtp.audio_rate)
            seconds = duration if duration is not None else (None if loop else length)
        call.play(source, seconds)
        return {"call_id": call.call_id, "seconds": seconds}

    async def cmd_stop_playing(self, call_id: str | None = None) -> dict[str, Any]:
        call = self._pick(call_id)
        return {"call_id": call.call_id, "stopped": call.media.stop_playing()}

    def tap_audio(self, call_id: str, sink: Any) -> Callable[[], None]:
        """``sink.write(pcm, rate)`` hears the call's received audio, decoded, from now on
        (for test faces such as scenarios); returns the remover. CallError when the call
        is not connected."""
        call = self.call(call_id)
        if call is None:
            raise CallError(f"no call {call_id!r}")
        return call.add_audio_tap(sink)

    def request_headers(self, call_id: str) -> list[tuple[str, str]]:
        """The header lines of the INVITE of an incoming call (name, value)."""
        call = self.call(call_id)
        if call is None:
            raise CallError(f"no call {call_id!r}")
        return call.request_headers()

    async def cmd_calls(self) -> dict[str, Any]:
        assert self.agent is not None
        return {"calls": [self.call_info(c) for c in self.agent.calls.values()]}

    async def cmd_accounts(self) -> dict[str, Any]:
        return {"accounts": self.account_info()}

    async def cmd_register(self, account: str | None = None) -> dict[str, Any]:
        assert self.agent is not None
        if not self.agent.accounts:
            raise CallError("no account configured")
        names = [account] if account else list(self.agent.accounts)
        for name in names:
            self.agent.account(name)  # unknown → CallError
        for name in names:
            await self.agent.accounts[name].register()
        return {"accounts": names}

    async def cmd_quit(self) -> dict[str, Any]:
        self.stopped.set()
        return {}

    def select_account(self, name: str | None) -> None:
        if self.agent is not None and (name is None or name in self.agent.accounts):
            self.selected_account = name

    # ======================================================================== waiting (CLI)
    async def wait_registered(self, name: str, timeout: float, *,
                              next_attempt: bool = False) -> bool:
        """Wait (bounded) for the outcome of the registration attempt under way, or of
        the next one (a retry after 503); True when registered."""
        assert self.agent is not None
        account = self.agent.accounts[name]
        if next_attempt:
            return await account.wait_next(timeout)
        return await account.wait_registered(timeout)

    # ======================================================================== events
    def _notice(self, text: str, severity: str = "warning") -> None:
        self.bus.publish(ev.Notice(text, severity))

    def _trace(self, direction: str, data: bytes, peer: Peer) -> None:
        """SIP to the trace file and the TUI's trace. SDES keys are blanked in what people
        read (the text trace, the TUI); a capture keeps the wire's bytes, so Wireshark
        can decrypt the SRTP: keep captures as secret as the calls."""
        text = None
        if self._trace_file is not None:
            if self._trace_file.capture:
                self._trace_file(direction, data, peer)
            else:
                text = mask_keys(data)
                self._trace_file(direction, text, peer)
        if self.bus.wants_high_rate:
            self.bus.publish(ev.SipMessage(direction, peer.proto, str(peer),
                                           text if text is not None else mask_keys(data)))

    def _every(self, name: str, period: float,
               event_of: Callable[[Call], ev.Event | None]) -> None:
        """Every ``period`` s, while someone listens to high-rate events: one event per
        live call (statistics once a second, levels five times)."""
        if self.agent is None:
            return
        self._tickers[name] = self.agent.loop.call_later(period, self._every, name, period,
                                                         event_of)
        if not self.bus.wants_high_rate:
            return
        for call in self.live_calls():
            event = event_of(call)
            if event is not None:
                self.bus.publish(event)

    @staticmethod
    def _stats_event(call: Call) -> ev.Event | None:
        stats = call.media.live_stats()
        if stats is None:
            return None
        expected = stats.received + stats.lost
        return ev.CallStats(
            call.call_id, round(call.duration, 1), stats.sent, stats.received, stats.lost,
            100.0 * stats.lost / expected if expected else 0.0, float(stats.jitter_ms),
            stats.rtt_ms, float(stats.playout_ms), call.codec)

    @staticmethod
    def _levels_event(call: Call) -> ev.Event | None:
        if not call.media.started:
            return None
        return ev.Levels(call.call_id, *call.media.levels())


Listener = Callable[[ev.Event], None]
