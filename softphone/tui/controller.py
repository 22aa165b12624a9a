"""The phone behind the TUI: user agents, the echo service, history, the trace.

It runs on Textual's asyncio loop. UA events update ``PhoneState`` and ask the app to
redraw (``on_change``); live numbers (durations, jitter, loss, levels) are read by
``poll()``/``poll_levels()`` on the app's timers instead of per packet. The UA and the
media layer are imported here, lazily, so the first frame never waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from ..history import CallRecord, History
from .quality import estimate_mos
from .state import AccountView, CallView, PhoneState

if TYPE_CHECKING:
    from ..call import Call
    from ..config import Account, Config
    from ..ua import UserAgent

__all__ = ["Phone", "outcome_of", "reason_text"]

log = logging.getLogger(__name__)


def reason_text(info: dict[str, Any]) -> str:
    """`rejected 486 Busy Here`, `hangup`, `remote-hangup`, `timeout` …"""
    parts = [str(info.get("reason", "ended"))]
    if info.get("status"):
        parts.append(str(info["status"]))
    if info.get("phrase"):
        parts.append(str(info["phrase"]))
    return " ".join(parts)


def outcome_of(direction: str, answered: bool, info: dict[str, Any]) -> str:
    """The history's outcome column: answered calls say so; unanswered ones say why."""
    if answered:
        return "answered"
    if direction == "incoming" and info.get("reason") == "cancelled":
        return "missed"
    return reason_text(info)


class Phone:
    def __init__(self, config: "Config", state: PhoneState, *, audio: str = "null",
                 history: History | None = None,
                 on_change: Callable[[], None] = lambda: None,
                 on_incoming: Callable[[CallView], None] = lambda view: None,
                 notify: Callable[[str, str], None] = lambda text, severity: None) -> None:
        self.config = config
        self.state = state
        self.audio = audio
        self.history = history
        self.on_change = on_change
        self.on_incoming = on_incoming
        self.notify = notify
        self.uas: dict[str | None, "UserAgent"] = {}  # by account name (None: local)
        self.echo: Any = None
        self.ready = asyncio.Event()
        self.start_error: str | None = None
        self._devices: dict[str, tuple[Any, Any]] = {}  # call_id → (source, sink)
        self._answered: set[str] = set()
        self._recorded: set[str] = set()
        state.audio_backend = audio

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start one UA per account (the first on the configured listen address), or one
        local UA when there are none; register the accounts that ask for it."""
        try:
            await self._start()
        except Exception as exc:
            self.start_error = str(exc)
            self.state.identity = f"not listening: {exc}"
            self.state.log_line(f"start failed: {exc}")
            self.notify(f"cannot start the phone: {exc}", "error")
            raise
        finally:
            self.ready.set()
            self.on_change()

    async def _start(self) -> None:
        from ..config import parse_listen
        from ..echo import EchoService
        from ..ua import UserAgent

        listen = self.config.network.listen
        host, _port = parse_listen(listen)
        accounts: list["Account | None"] = list(self.config.accounts) or [None]
        for index, account in enumerate(accounts):
            name = account.name if account else None
            addr = listen if index == 0 else f"{'[' + host + ']' if ':' in host else host}:0"
            ua = UserAgent(self.config, account, listen=addr,
                           on_event=lambda ev, data, n=name: self._on_event(n, ev, data),
                           tracer=self._trace, media_factory=self._media_for)
            await ua.start()
            self.uas[name] = ua
            if account is not None:
                self.state.accounts[name] = AccountView(name, account.aor, account.register)
        if self.state.selected_account is None:
            self.state.selected_account = next(iter(self.uas))
        self.echo = EchoService(self.config)
        self.state.identity = self.identity()
        self.state.log_line(f"listening on {self.state.identity}")
        for name, ua in self.uas.items():
            if ua.account is not None and ua.account.register:
                self.register(name)

    def identity(self) -> str:
        ua = self.uas.get(self.state.selected_account) or next(iter(self.uas.values()), None)
        if ua is None:
            return "not started"
        if ua.account is not None:
            return f"{ua.account.aor} (listening on {ua.transport.host}:{ua.transport.port})"
        return str(ua.local_identity().uri) + f" (listening on {ua.transport.host}:" \
                                              f"{ua.transport.port})"

    async def close(self, timeout: float = 3.0) -> None:
        waits = [ua.close(timeout=timeout) for ua in self.uas.values()]
        if self.echo is not None:
            waits.append(self.echo.close())
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout + 1)
        self.uas.clear()

    def busy(self) -> bool:
        return any(c.active for c in self.state.calls.values())

    async def restart(self, config: "Config") -> None:
        """Apply new settings: unregister, stop, start again with ``config``."""
        await self.close()
        self.config = config
        self.state.accounts.clear()
        self.state.selected_account = None
        self.ready.clear()
        await self.start()

    # -- accounts --------------------------------------------------------------------------
    def select_account(self, name: str | None) -> None:
        if name in self.uas:
            self.state.selected_account = name
            self.state.identity = self.identity()
            self.on_change()

    def register(self, name: str | None = None) -> None:
        """(Re-)register an account now; None → the selected one, else every account."""
        names = [name] if name is not None else [n for n in self.uas if n is not None]
        for n in names:
            ua = self.uas.get(n)
            if ua is None or ua.account is None:
                continue
            try:
                ua.account.secret()
            except Exception as exc:  # ConfigError: password_env unset, keyring …
                view = self.state.accounts[n]
                view.state, view.status, view.reason = "failed", None, str(exc)
                self.notify(str(exc), "error")
                continue
            ua.register()
        self.on_change()

    # -- calls -----------------------------------------------------------------------------
    def _ua(self) -> "UserAgent":
        ua = self.uas.get(self.state.selected_account)
        if ua is None:
            ua = next(iter(self.uas.values()), None)
        if ua is None:
            from ..call import CallError

            raise CallError("the phone is not started")
        return ua

    async def dial(self, target: str) -> CallView:
        """Place a call; raises CallError with a message fit for the user."""
        from ..call import CallError

        text = target.strip()
        if not text:
            raise CallError("type a SIP URI, user@host, a number, or echo")
        ua = self._ua()
        dest: Any = text
        if text.lower() == "echo":
            dest = await self.echo.uri()
        call = await ua.call(dest)
        view = self._view_for(call, ua)
        if dest is not text:  # the echo service: remember the name, not today's port
            view.target = text.lower()
        self.state.log_line(f"calling {view.uri}")
        self.on_change()
        return view

    def call(self, call_id: str) -> "Call | None":
        for ua in self.uas.values():
            call = ua.calls.get(call_id)
            if call is not None:
                return call
        return None

    def answer(self, call_id: str) -> bool:
        call = self.call(call_id)
        if call is None or call.direction != "incoming" or call.ended:
            return False
        call.answer()
        return True

    def reject(self, call_id: str, status: int = 486) -> bool:
        call = self.call(call_id)
        if call is None or call.direction != "incoming" or call.ended:
            return False
        call.reject(status)
        self._sync(call_id)
        return True

    async def hangup(self, call_id: str) -> None:
        call = self.call(call_id)
        if call is not None and not call.ended:
            await call.hangup()
            self._sync(call_id)

    def toggle_mute(self, call_id: str) -> bool | None:
        call = self.call(call_id)
        if call is None or call.ended:
            return None
        call.set_muted(not call.muted)
        view = self.state.calls.get(call_id)
        if view is not None:
            view.muted = call.muted
        self.on_change()
        return call.muted

    async def toggle_hold(self, call_id: str) -> bool | None:
        """Hold or resume; the new state, or None when the call cannot be held. A refusal
        from the far end is reported and leaves the call as it was."""
        from ..call import CallError

        call = self.call(call_id)
        if call is None or call.ended or call.state != "connected":
            return None
        try:
            await call.set_hold(not call.on_hold)
        except CallError as exc:
            self.notify(f"{'resume' if call.on_hold else 'hold'} failed: {exc}", "warning")
            self.state.log_line(f"hold {call_id}: {exc}")
        self._sync(call_id)
        return call.on_hold

    def send_dtmf(self, call_id: str, digits: str) -> bool:
        call = self.call(call_id)
        if call is None or call.state != "connected":
            return False
        call.send_dtmf(digits)
        view = self.state.calls.get(call_id)
        if view is not None:
            view.dtmf_sent = (view.dtmf_sent + digits)[-24:]
        self.on_change()
        return True

    # -- media ----------------------------------------------------------------------------
    def _media_for(self, call: "Call") -> tuple[Any, Any]:
        from ..media import devices as dev

        source = sink = None
        if self.audio == "pyaudio":
            try:
                source, sink = dev.open_pyaudio(self.config.audio.input_device,
                                                self.config.audio.output_device)
            except dev.AudioUnavailable as exc:
                self.audio = self.state.audio_backend = "null"
                self.notify(f"audio: {exc}; using silence", "warning")
                self.state.log_line(f"audio unavailable ({exc}); using silence")
        if source is None or sink is None:
            source, sink = dev.NullSource(), dev.NullSink()
        self._devices[call.call_id] = (source, sink)
        return source, sink

    # -- UA events -------------------------------------------------------------------------
    def _trace(self, direction: str, data: bytes, peer: Any) -> None:
        self.state.trace.add(direction, data, peer.proto, str(peer))

    def _on_event(self, account: str | None, name: str, data: dict[str, Any]) -> None:
        details = " ".join(f"{k}={v}" for k, v in data.items() if k != "rtp")
        self.state.log_line(f"{name} {details}".rstrip())
        acc = self.state.accounts.get(account) if account else None
        if name == "registering" and acc:
            acc.state = "registering"
        elif name == "registered" and acc:
            acc.state, acc.status, acc.reason = "registered", None, None
            acc.seconds_left = float(data.get("expires") or 0)
        elif name == "registration_failed" and acc:
            acc.state, acc.status, acc.reason = "failed", data.get("status"), data.get("reason")
            acc.seconds_left = None
        elif name == "unregistered" and acc:
            acc.state, acc.seconds_left = "unregistered", None
        elif "call_id" in data:
            self._on_call_event(account, name, data)
        self.on_change()

    def _on_call_event(self, account: str | None, name: str, data: dict[str, Any]) -> None:
        call_id = data["call_id"]
        call = self.call(call_id)
        view = self.state.calls.get(call_id)
        if view is None and call is not None:
            view = self._view_for(call, self.uas.get(account))
        if view is None:
            return
        if name == "answered":
            self._answered.add(call_id)
        if name == "dtmf":
            view.dtmf_received = (view.dtmf_received + str(data.get("digit", "")))[-24:]
        if call is not None:
            self._sync_view(view, call)
        if name == "ended":
            view.state = "ended"
            view.reason = reason_text(data)
            view.duration = float(data.get("duration", view.duration))
            self._record(view, data)
            self._devices.pop(call_id, None)
        if name == "incoming":
            self.on_incoming(view)

    def _view_for(self, call: "Call", ua: "UserAgent | None") -> CallView:
        view = self.state.calls.get(call.call_id)
        if view is None:
            remote = call.remote
            view = CallView(call_id=call.call_id, direction=call.direction,
                            uri=str(remote.uri) if remote else "?",
                            display_name=remote.display_name if remote else None,
                            account=ua.account.name if ua is not None and ua.account else None)
            self.state.add_call(view)
        self._sync_view(view, call)
        return view

    def _sync(self, call_id: str) -> None:
        call, view = self.call(call_id), self.state.calls.get(call_id)
        if call is not None and view is not None:
            self._sync_view(view, call)
        self.on_change()

    @staticmethod
    def _sync_view(view: CallView, call: "Call") -> None:
        view.state = call.state
        view.codec = call.codec or view.codec
        view.muted = call.muted
        view.on_hold, view.remote_hold = call.on_hold, call.remote_hold
        view.duration = call.duration
        if call.ended and call.end_info:
            view.reason = reason_text(call.end_info)

    def _record(self, view: CallView, info: dict[str, Any]) -> None:
        if self.history is None or view.call_id in self._recorded:
            return
        self._recorded.add(view.call_id)
        answered = view.call_id in self._answered
        try:
            self.history.add(CallRecord(
                direction=view.direction, party=view.target or view.uri, display_name=view.display_name,
                started_at=view.started_at, duration=float(info.get("duration", 0.0)),
                outcome=outcome_of(view.direction, answered, info), account=view.account))
        except Exception as exc:  # a full disk must not take the phone down
            self.state.log_line(f"history: {exc}")

    # -- polling (timers) --------------------------------------------------------------------
    def poll(self) -> None:
        """Once a second: durations, RTP quality, registration countdowns."""
        for name, ua in self.uas.items():
            acc = self.state.accounts.get(name) if name else None
            reg = ua.registration
            if acc is not None and reg is not None and reg.state == "registered":
                acc.seconds_left = reg.seconds_left()
        for call_id, view in self.state.calls.items():
            if not view.active:
                continue
            call = self.call(call_id)
            if call is None:
                continue
            self._sync_view(view, call)
            if call.media is None or call.state not in ("connected", "early", "ending"):
                continue
            try:
                stats = call.media.stats()
            except Exception:
                continue
            expected = stats.received + stats.lost
            view.loss_pct = 100.0 * stats.lost / expected if expected else 0.0
            view.jitter_ms = float(stats.jitter_ms)
            view.rtt_ms = stats.rtt_ms
            if stats.received:
                view.mos = estimate_mos(view.codec, loss_pct=view.loss_pct, rtt_ms=stats.rtt_ms,
                                        jitter_ms=view.jitter_ms, playout_ms=stats.playout_ms)

    def poll_levels(self) -> None:
        """Five times a second: the microphone and speaker levels of live calls."""
        for call_id, (source, sink) in list(self._devices.items()):
            view = self.state.calls.get(call_id)
            if view is None:
                continue
            try:
                view.input_dbfs = float(source.level_dbfs)
                view.output_dbfs = float(sink.level_dbfs)
            except Exception:
                view.input_dbfs = view.output_dbfs = None
