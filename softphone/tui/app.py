"""The Textual application: layout, key bindings, and the glue to the phone.

The phone (``softphone.ua.phone.Phone``) is driven through its command table; its events
come back as Textual messages (``bridge.py``) that update the one ``PhoneState``.

Keys (DESIGN §3, fixed): the dial input has focus at start and Enter dials; after dialing
the call list takes focus with the new call selected. In the call list: a answer,
r reject, h hang up, m mute, o hold, t SIP trace, q quit; Escape leaves the dial input; ctrl+q
quits from anywhere. From any focus (priority bindings, from the command table's
``global_key``): F5 answer, F6 reject, F7 hang up; F1 (or ? outside a text field) lists
every key of the screen.

Keys that move the focus are priority bindings: they run as the key arrives, so the keys
typed right after them go to the newly focused widget (a key already queued for the old
one would otherwise land there: a password typed after Tab into the field before it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from ..ua.commands import COMMANDS
from .state import LOCAL_ENDING, CallView, PhoneState
from .widgets import (AccountTable, CallDetail, CallTable, DialInput, HistoryTable,
                      IncomingBanner, account_details, state_summary)

if TYPE_CHECKING:
    from textual.screen import Screen
    from textual.timer import Timer

    from ..config import Config
    from ..history import History
    from ..ua.phone import Phone
    from .bridge import Bridge, LiveUpdate, PhoneEvent

__all__ = ["SoftphoneApp"]

CSS = """
#left { width: 34%; min-width: 34; max-width: 60; border-right: solid $primary-darken-2; }
#identity { height: auto; padding: 0 1; }
#accounts { height: auto; max-height: 8; }
#account-detail { height: auto; max-height: 8; padding: 0 1; display: none; }
#history-title, #calls-title { padding: 0 1; text-style: bold; background: $boost; }
#history { height: 1fr; }
#right { width: 1fr; }
#banner { height: auto; min-height: 3; background: $warning-darken-2; display: none; }
#banner-text { width: 1fr; height: auto; padding: 0 1; }
#banner Button { min-width: 14; margin: 0 1; }
#dial { margin: 0 0; }
#calls { height: 1fr; min-height: 5; }
#detail { height: auto; min-height: 8; border-top: solid $primary-darken-2; padding: 0 1; }
#notice { height: auto; color: $warning; padding: 0 1; }
#trace-title { padding: 0 1; height: auto; }
#trace-dialogs { height: auto; max-height: 7; border-bottom: solid $primary-darken-2; }
#trace-list { height: 1fr; min-height: 4; }
#trace-message-box { height: 1fr; border-top: solid $primary-darken-2; padding: 0 1;
                     overflow-x: auto; }
#trace-message { width: auto; }
TraceScreen.zoomed #trace-dialogs, TraceScreen.zoomed #trace-list { display: none; }
"""

class _LogToState(logging.Handler):
    """Log records (warnings; more with -v) into the event log, never onto the screen:
    without a handler, Python prints warnings on stderr, under Textual's feet."""

    def __init__(self, state: PhoneState, level: int) -> None:
        super().__init__(level)
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.state.log_line(f"{record.levelname.lower()}: {record.name}: "
                                f"{record.getMessage()}", when=record.created)
        except Exception:  # a log line must never take the phone down
            pass


def _global_bindings() -> list[Binding]:
    """The command table's keys that work from any focus (F5 answer …)."""
    # not in the footer, which shows the call list's a/r/h already: the banner, the detail
    # pane and the key list (F1) name them
    return [Binding(c.global_key, f"command('{c.name}')", c.key_label or c.name, show=False,
                    priority=True) for c in COMMANDS.values() if c.global_key]


class SoftphoneApp(App):
    """``live=False`` shows ``state`` without starting a UA (snapshot tests fill it)."""

    TITLE = "softphone"
    CSS = CSS
    THEME_SAVE_DELAY = 1.0  # seconds a picked theme must stay before it is written
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False,
                priority=True),
        *_global_bindings(),
        Binding("f1", "help", "Keys", priority=True),
        Binding("question_mark", "help", "Keys", show=False),
        Binding("f2", "settings", "Settings"),
        Binding("s", "settings", "Settings", show=False),
        Binding("f3", "log", "Events"),
        Binding("l", "log", "Events", show=False),
        Binding("f4", "trace_all", "SIP trace", show=False),
        Binding(COMMANDS["register"].key, "retry_registration", COMMANDS["register"].key_label),
        Binding(COMMANDS["dnd"].key, "command('dnd')", "Do not disturb", show=False),
        Binding(COMMANDS["processing"].key, "command('processing')", "Echo cancellation",
                show=False),
    ]

    def __init__(self, config: "Config", *, audio: str = "null", live: bool = True,
                 history: "History | None" = None, data_path: Path | None = None,
                 config_path: Path | None = None, state: PhoneState | None = None,
                 theme_file: Path | None = None, listen: str | None = None,
                 fallback_listen: bool = False, account: str | None = None,
                 sip_trace: str | None = None,
                 warnings: Iterable[str] = (), log_file: Path | None = None,
                 log_level: int = logging.WARNING) -> None:
        super().__init__()
        self.config = config
        self.audio = audio
        self.live = live
        self.listen = listen  # --listen (None: the config's [network] listen)
        # ``listen`` is our pick (5060), not the user's: when it is taken, any free port
        self.fallback_listen = fallback_listen
        self.account = account  # --account: the account selected at start
        self.sip_trace = sip_trace  # --sip-trace FILE
        # said before the screen was ours (config permissions …): shown once it is
        self.startup_warnings = [*config.warnings, *warnings]
        self.log_file = log_file  # -v: where the logs go
        self.state = state or PhoneState(audio_backend=audio)
        self._log_handler = _LogToState(self.state, log_level)
        self._data_path = data_path
        self.config_path = config_path
        # where a theme picked at run time (command palette) is remembered; None: not kept
        self.theme_file = theme_file
        self._theme_timer: "Timer | None" = None
        self._theme_saved: str | None = None
        self._history = history
        self.phone: "Phone | None" = None
        self.bridge: "Bridge | None" = None
        self.ready = asyncio.Event()  # the phone is up (or failed to start)
        self.start_error: str | None = None
        self._refresh_pending = False
        self._history_version = -1
        if config.ui.theme:
            try:
                self.theme = config.ui.theme
            except Exception:  # an unknown theme name: keep the default
                pass

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal():
            with Vertical(id="left"):
                yield Static(id="identity")
                yield AccountTable(id="accounts")
                yield Static(id="account-detail")
                yield Static("History (Enter redials)", id="history-title")
                yield HistoryTable(id="history")
            with Vertical(id="right"):
                yield IncomingBanner(id="banner")
                yield DialInput(id="dial")
                yield Static("Calls", id="calls-title")
                yield CallTable(id="calls")
                yield CallDetail(id="detail")
                yield Static(id="notice")
        yield Footer()

    def on_mount(self) -> None:
        # the main screen's widgets, reachable while another screen is on top
        self.dial_input = self.query_one(DialInput)
        self.call_table = self.query_one(CallTable)
        self.account_table = self.query_one(AccountTable)
        self.history_table = self.query_one(HistoryTable)
        self.banner = self.query_one(IncomingBanner)
        self.detail = self.query_one(CallDetail)
        self.identity_line = self.query_one("#identity", Static)
        self.account_detail = self.query_one("#account-detail", Static)
        self.notice_line = self.query_one("#notice", Static)
        self.dial_input.focus()
        logging.getLogger().addHandler(self._log_handler)
        self._bindings_key: tuple | None = None
        if self.log_file is not None:
            self.state.log_line(f"logs go to {self.log_file}")
            self.notify(f"logs go to {self.log_file}", timeout=6)
        for warning in self.startup_warnings:
            self.state.log_line(f"warning: {warning}")
            self.notify(warning, title="Warning", severity="warning", timeout=10)
        self._theme_saved = self.theme  # what the config gives (or Textual's default)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.refresh_views()
        self.set_interval(1.0, self._tick)
        if self.live:
            # after the first frame: open history, import the UA, start listening
            self.call_after_refresh(self._start_phone)
        else:
            self.show_history()

    def on_unmount(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Re-register shows in the footer only when there is an account; the global
        answer/reject keys only while a call rings, hang up while a call is live (else
        the key goes on to the focused widget); Settings, the event log and the trace
        open from the main screen."""
        main = self.screen is self.screen_stack[0]
        if action in ("settings", "log", "trace_all") and not main:
            return False  # not a second one on top of the screen that is open
        if action == "retry_registration":
            return bool(self.state.accounts) and main
        if action == "command" and parameters:
            name = parameters[0]
            if name in ("answer", "reject"):
                return bool(self.state.incoming_ringing())
            if name == "hangup":
                return any(c.active for c in self.state.calls.values())
        return True

    # -- startup -------------------------------------------------------------------------
    def _start_phone(self) -> None:
        self.run_worker(self._boot(), name="boot", exclusive=True)

    @property
    def data_path(self) -> Path:
        """Where history and saved traces live (resolved on first use: platformdirs)."""
        if self._data_path is None:
            from ..history import data_dir

            self._data_path = data_dir()
        return self._data_path

    @property
    def history(self) -> "History | None":
        if self._history is None:
            try:
                from ..history import History

                self._history = History(self.data_path / "history.sqlite3")
            except Exception as exc:
                self.state.log_line(f"history unavailable: {exc}")
        return self._history

    async def _boot(self) -> None:
        self.show_history()
        from .bridge import Bridge  # after the first frame: it brings history (sqlite3)

        self.bridge = Bridge(self, self.state, self.history, on_incoming=self._on_incoming)
        await self._start(self.config)

    async def _start(self, config: "Config") -> None:
        """Make the phone for ``config``, feed its events to the state, start it."""
        from ..ua.phone import MediaOptionError, MediaOptions, Phone, PhoneOptions

        assert self.bridge is not None
        self.ready.clear()
        self.start_error = None
        phone = Phone(config, PhoneOptions(listen=self.listen, trace_path=self.sip_trace,
                                           media=MediaOptions(backend=self.audio)))
        self.bridge.attach(phone.bus)
        self.phone = phone
        if self.audio == "pyaudio":
            # probing PortAudio forks a child: not on the event loop
            try:
                await asyncio.to_thread(phone.devices.check)
            except MediaOptionError as exc:  # a device named in [audio] is not there:
                # say so; calls use the default device until Settings fixes it
                self.notify(f"{exc}; using the default device", severity="error", timeout=8)
                self.state.log_line(f"{exc}; using the default device")
            if phone.devices.backend != self.audio:
                self._audio_fallback("no audio devices found")
        try:
            try:
                await phone.start()
            except OSError as exc:
                if not (self.fallback_listen and self.listen):
                    raise
                host = self.listen.rpartition(":")[0]
                self.notify(f"{exc}: listening on a free port instead", severity="warning")
                self.state.log_line(f"{exc}: listening on a free port instead")
                await phone.close(timeout=1.0)
                self.listen, self.fallback_listen = f"{host}:0", False
                await self._start(config)
                return
        except Exception as exc:
            self.start_error = str(exc)
            self.state.identity = f"not listening: {exc}"
            self.state.log_line(f"start failed: {exc}")
            self.notify(f"cannot start the phone: {exc}", severity="error")
            self.ready.set()
            self.request_refresh()
            return
        self.bridge.seed_accounts(phone.account_info())
        self.state.dnd = config.calls.dnd
        if self.account is not None:
            phone.select_account(self.account)  # --account (checked before the screen)
        self.state.selected_account = phone.selected_account
        self.state.identity = phone.identity()
        self.state.log_line(f"listening on {self.state.identity}")
        self.ready.set()
        self.request_refresh()

    def _audio_fallback(self, reason: str) -> None:
        self.audio = "null"
        self.state.audio_backend = "null"
        self.state.notice = f"audio: {reason}; using silence (null audio)"
        self.state.log_line(self.state.notice)
        self.notify(self.state.notice, severity="warning")
        self.request_refresh()

    def on_phone_event(self, message: "PhoneEvent") -> None:
        event = message.event
        if self.bridge is not None:
            self.bridge.apply(event)
        if event.name == "notice":
            self.notify(event.text, severity=event.severity)  # type: ignore[arg-type]
        self.request_refresh()

    def on_live_update(self, message: "LiveUpdate") -> None:
        if self.bridge is not None:
            self.bridge.apply_live()
        view = self.selected_view()
        if view is not None and view.active:
            self.detail.show(view, self.state.audio_backend)

    # -- refreshing ------------------------------------------------------------------------
    def request_refresh(self) -> None:
        """Coalesce redraw requests from bursts of events into one refresh."""
        if not self._refresh_pending:
            self._refresh_pending = True
            self.call_later(self._do_refresh)

    def _do_refresh(self) -> None:
        self._refresh_pending = False
        self.refresh_views()

    def refresh_views(self) -> None:
        state = self.state
        if not hasattr(self, "call_table"):
            return
        self.identity_line.update(state_summary(state))
        fresh = self.account_table.row_count == 0
        self.account_table.show(state.accounts)
        if fresh and state.selected_account in state.accounts:  # the cursor is the choice
            self.account_table.select_row(state.selected_account)
        if self.account_table.display != bool(state.accounts):
            self.account_table.display = bool(state.accounts)
            self.refresh_bindings()
        clipped = self.account_table.clipped
        self.account_detail.display = bool(clipped)
        if clipped:
            self.account_detail.update(account_details(clipped))
        bindings_key = (bool(state.incoming_ringing()),
                        any(c.active for c in state.calls.values()))
        if bindings_key != self._bindings_key:  # F5/F6/F7 in the footer when they apply
            self._bindings_key = bindings_key
            self.refresh_bindings()
        calls = self.call_table
        calls.show(state.calls)
        self.banner.show(state.incoming_ringing())
        self.detail.show(self.selected_view(), state.audio_backend)
        self.notice_line.update(state.notice or "")
        ended = sum(1 for c in state.calls.values() if not c.active)
        if ended != self._history_version:
            self._history_version = ended
            if self.live:
                self.show_history()

    def show_history(self) -> None:
        history = self.history
        if history is None:
            return
        records = history.recent(100)
        self.history_table.show(records)
        self.dial_input.recall_list = [r.party for r in records
                                                 if r.direction == "outgoing"][:50]

    def _tick(self) -> None:
        """Once a second: countdowns and durations move on the screen; a call not yet
        answered shows how long it has been calling or ringing."""
        now = time.monotonic()
        for view in self.state.calls.values():
            if view.state == "connected" and view.answered_at is not None:
                view.duration = now - view.answered_at
            elif view.active and view.answered_at is None and self.live:
                view.duration = now - view.created_at
        self.refresh_views()

    # -- selection -----------------------------------------------------------------------
    def selected_call_id(self) -> str | None:
        return self.call_table.selected_call

    def selected_view(self) -> CallView | None:
        call_id = self.selected_call_id()
        return self.state.calls.get(call_id) if call_id else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, CallTable):
            self.detail.show(self.selected_view(), self.state.audio_backend)
        elif isinstance(event.data_table, AccountTable) and self.phone is not None:
            if event.row_key is not None:
                self.phone.select_account(event.row_key.value)
                self.state.selected_account = self.phone.selected_account
                self.state.identity = self.phone.identity()
                self.request_refresh()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, HistoryTable):
            record = event.data_table.selected_record
            if record is not None:
                # what was half typed goes: the box shows what is being dialled
                self.dial_input.value = record.party
                self.dial_input.cursor_position = len(record.party)
                self.dial(record.party)

    def focus_call(self, call_id: str) -> None:
        self.refresh_views()
        table = self.call_table
        table.select_call(call_id)
        table.focus()

    # -- dialing ---------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, DialInput):
            target = event.value.strip()
            if target:
                self.dial(target)

    def dial(self, target: str) -> None:
        self.run_worker(self._dial(target), name=f"dial {target}", group="dial")

    async def _dial(self, target: str) -> None:
        from ..ua.phone import CommandError

        dial_input = self.dial_input
        try:
            await asyncio.wait_for(self.ready.wait(), 10)  # the phone is still starting
        except asyncio.TimeoutError:
            self.notify("the phone is still starting", severity="error")
            return
        if self.phone is None or not self.phone.started:
            self.notify(f"the phone is not running: {self.start_error}", severity="error")
            return
        try:
            result = await self.phone.execute("dial", {"uri": target})
        except CommandError as exc:
            message = str(exc).removeprefix("dial: ")
            self.state.log_line(f"call failed: {message}")
            self.notify(f"call failed: {message}", severity="error")
            return
        call_id = result["call_id"]
        if target.strip().lower() == "echo" and self.bridge is not None:
            self.bridge.dialled(call_id, "echo")  # remember the name, not today's port
        dial_input.remember(target)
        dial_input.value = ""
        self.focus_call(call_id)

    # -- incoming --------------------------------------------------------------------------
    def _on_incoming(self, view: CallView) -> None:
        self.bell()
        self.notify(f"Incoming call from {view.party}", title="☎ Incoming call", timeout=4)
        self.refresh_views()
        dial_input = self.dial_input
        table = self.call_table
        # take the keyboard for a/r unless the user is typing a number
        if not (self.focused is dial_input and dial_input.value):
            table.select_call(view.call_id)
            if self.screen is self.screen_stack[0]:
                table.focus()

    def on_incoming_banner_chosen(self, event: IncomingBanner.Chosen) -> None:
        self.run_command("answer" if event.answer else "reject", call_id=event.call_id)
        self.focus_call(event.call_id)

    # -- commands (the phone's command table) ------------------------------------------------
    def _target_call(self, *, ringing: bool = False, live: bool = False) -> str | None:
        """The selected call; for answer/reject a ringing call when none is selected; with
        ``live``, the newest live call when the selected one has ended."""
        call_id = self.selected_call_id()
        view = self.state.calls.get(call_id) if call_id else None
        if live and (view is None or not view.active):
            active = [c for c in self.state.calls.values() if c.active]
            if active:
                return active[-1].call_id
        if ringing and (view is None or view.state not in ("incoming", "ringing")
                        or view.direction != "incoming"):
            ring = self.state.incoming_ringing()
            if ring:
                return ring[0].call_id
        return call_id

    def action_command(self, name: str, digits: str | None = None) -> None:
        """A key bound to a command of the phone's table: fill in what the screen knows
        (the selected call; toggles for hold and mute) and run it."""
        from ..ua.commands import COMMANDS

        command = COMMANDS[name]
        args: dict[str, object] = {}
        if command.selects_call:
            call_id = self._target_call(ringing=name in ("answer", "reject"),
                                        live=name == "hangup")
            if call_id is None:
                self.notify(f"{name}: select a call first", severity="warning", timeout=2)
                return
            args["call_id"] = call_id
        if any(p.name == "toggle" for p in command.params):  # keys toggle: hold, mute, DND …
            args["toggle"] = True
        if name == "dtmf":
            args["digits"] = digits
        if name == "transfer":  # where to: a target typed, or another call
            from .transfer import TransferScreen

            call_id = str(args["call_id"])
            others = [v for v in self.state.calls.values()
                      if v.active and v.call_id != call_id and v.state == "connected"]
            self.push_screen(TransferScreen(self.state.calls[call_id], others),
                             lambda choice: self._transfer_chosen(call_id, choice))
            return
        self.run_command(name, **args)

    def _transfer_chosen(self, call_id: str, choice: "dict | None") -> None:
        if choice:
            self.run_command("transfer", call_id=call_id, **choice)

    def run_command(self, name: str, **args: object) -> None:
        if self.phone is None:
            return
        view = self.state.calls.get(str(args.get("call_id")))
        before = None
        ringing_in = view is not None and view.direction == "incoming" \
            and view.state in ("incoming", "ringing")
        if view is not None and view.active and view.state not in LOCAL_ENDING and (
                name == "hangup" or (name == "reject" and ringing_in)):
            # feedback at once (a CANCEL may have to wait for the first provisional);
            # the ended event replaces it
            before = view.state
            if view.state == "connected":
                view.state = "ending"
            elif view.direction == "outgoing":
                view.state = "cancelling"
            else:
                view.state = "rejecting"
            self.refresh_views()
        self.run_worker(self._run_command(name, args, view, before),
                        group=f"command-{name}")

    async def _run_command(self, name: str, args: dict, view: CallView | None = None,
                           before: str | None = None) -> None:
        from ..ua.phone import CommandError

        assert self.phone is not None
        try:
            result = await self.phone.execute(name, args)
        except CommandError as exc:
            if before is not None and view is not None and view.state in LOCAL_ENDING:
                view.state = before  # it did not happen: say what is true again
                self.request_refresh()
            self.notify(str(exc), severity="warning", timeout=3)
            self.state.log_line(str(exc))
            return
        view = self.state.calls.get(str(result.get("call_id"))) if result else None
        if name == "answer" and view is not None:
            self.focus_call(view.call_id)
        elif name in ("hold", "resume") and view is not None:
            self.notify("call on hold" if result.get("on_hold") else "call resumed", timeout=2)
        elif name in ("mute", "unmute"):
            self.notify("microphone muted" if result.get("muted") else "microphone on",
                        timeout=2)
        elif name == "dtmf" and view is not None:
            view.dtmf_sent = (view.dtmf_sent + str(result.get("digits", "")))[-24:]
        elif name == "register":
            self.notify("registering…", timeout=2)
        elif name == "dnd":
            self.state.dnd = bool(result.get("enabled"))
            self.notify("do not disturb: on" if self.state.dnd else "do not disturb: off",
                        timeout=2)
        elif name == "processing":
            from .settings import PROCESSING_LABELS

            on = [label for key, label in PROCESSING_LABELS if result.get(key)]
            self.notify(("on: " + ", ".join(on)) if on else "microphone processing: off",
                        timeout=2)
        elif name == "transfer":
            self.notify(f"transfer: {result.get('state')}", timeout=2)
        elif name == "quit":
            await self.action_quit()
        self.request_refresh()

    def action_trace(self) -> None:
        """The SIP trace, at the selected call's dialog (else the newest one)."""
        self._open_trace(self._target_call())

    def action_trace_all(self) -> None:
        self._open_trace(None)

    def _open_trace(self, call_id: str | None) -> None:
        from .screens import TraceScreen

        if not isinstance(self.screen, TraceScreen):
            self.push_screen(TraceScreen(self.state, call_id, self.data_path / "traces",
                                         frozen_times=not self.live))

    def action_clear_ended(self) -> None:
        """Take the ended calls off the list (the history keeps them)."""
        gone = self.state.clear_ended()
        self.refresh_views()
        self.notify(f"cleared {gone} ended call{'s' if gone != 1 else ''}" if gone
                    else "no ended call to clear", timeout=2)

    def action_help(self) -> None:
        from .screens import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_log(self) -> None:
        from .screens import LogScreen

        self.push_screen(LogScreen(self.state))

    def _theme_changed(self, theme) -> None:
        """The theme picker previews every highlighted theme and restores the old one on
        Escape, so the choice is saved once it has settled, and only if it changed."""
        if self.theme_file is None:
            return
        if self._theme_timer is not None:
            self._theme_timer.stop()
        self._theme_timer = self.set_timer(self.THEME_SAVE_DELAY, self._save_theme)

    def _save_theme(self) -> None:
        """Write ``[ui] theme``, editing only that line of the config file."""
        self._theme_timer = None
        name = self.theme
        if self.theme_file is None or name == self._theme_saved:
            return
        from ..config import ConfigError, save_config, set_config_value

        try:
            if self.theme_file.exists():
                set_config_value(self.theme_file, "ui", "theme", name)
            else:  # a new file, whole: with the header that says where the keys are
                save_config(dataclasses.replace(
                    self.config, ui=dataclasses.replace(self.config.ui, theme=name)),
                    self.theme_file)
        except (ConfigError, OSError) as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")
            return
        self._theme_saved = name
        self.config = dataclasses.replace(
            self.config, ui=dataclasses.replace(self.config.ui, theme=name))

    def action_settings(self) -> None:
        from .settings import SettingsScreen

        self.push_screen(SettingsScreen(self.config, self.config_path, live=self.live,
                                        themes=list(self.available_themes)),
                         self._settings_done)

    def _settings_done(self, config: "Config | None") -> None:
        if config is None:
            return
        if config.network.listen != self.config.network.listen:
            self.listen, self.fallback_listen = None, False  # the new setting applies
        old, self.config = self.config, config
        if config.ui.theme:
            self._theme_saved = config.ui.theme  # written already: no second save
            try:
                self.theme = config.ui.theme
            except Exception:
                pass
        if self.phone is None:
            return
        if self.phone.live_calls():
            from .settings import PROCESSING_KEYS

            switches = {key: getattr(config.audio, key) for key in PROCESSING_KEYS}
            if switches != {key: getattr(old.audio, key) for key in PROCESSING_KEYS}:
                self.run_command("processing", **switches)  # these apply at once
            self.state.notice = "settings saved; accounts and network apply after the calls end"
            self.refresh_views()
            return
        self.state.notice = None
        self.run_worker(self._restart(config), name="restart", exclusive=True)

    async def _restart(self, config: "Config") -> None:
        """Apply new settings: unregister, stop, start again with ``config``."""
        self.state.identity = "restarting…"
        self.refresh_views()
        old, self.phone = self.phone, None
        if old is not None:
            await old.close(timeout=3.0)
        self.state.accounts.clear()
        await self._start(config)
        self.refresh_views()

    def action_retry_registration(self) -> None:
        if self.phone is None:
            return
        if not self.state.accounts:
            self.notify("no account configured: add one in Settings (F2)", severity="warning")
            return
        self.run_command("register", account=self.state.selected_account)

    @staticmethod
    def _focus_now(widget) -> None:
        """Focus ``widget`` before the next key is handled (``Widget.focus`` waits for
        the message queue: keys already queued would still go to the old widget)."""
        try:
            widget.screen.set_focus(widget)
        except Exception:
            widget.focus()

    def action_focus_dial(self) -> None:
        self._focus_now(self.dial_input)

    def action_leave_dial(self) -> None:
        self._focus_now(self.call_table)

    async def action_quit(self) -> None:
        if self.phone is not None:
            self.notify("hanging up and unregistering…", timeout=2)
            phone, self.phone = self.phone, None
            await phone.close(timeout=3.0)
        if self.bridge is not None:
            self.bridge.detach()
        if self._history is not None:
            self._history.close()
            self._history = None
        self.exit()

    # -- command palette -------------------------------------------------------------------
    def get_system_commands(self, screen: "Screen") -> Iterable[SystemCommand]:
        from ..ua.commands import COMMANDS

        yield from super().get_system_commands(screen)
        yield SystemCommand("Dial", "Focus the dial input", self.action_focus_dial)
        for command in COMMANDS.values():
            if command.palette and command.name != "dial":
                keys = [k.upper() if k.startswith("f") and k[1:].isdigit() else k
                        for k in (command.key, command.global_key) if k]
                help_text = command.help[:1].upper() + command.help[1:]
                if keys:
                    help_text += f" ({' / '.join(keys)})"
                yield SystemCommand(command.palette, help_text,
                                    lambda name=command.name: self.action_command(name))
        yield SystemCommand("SIP trace", "Every SIP message, by Call-ID, as a ladder "
                            "(at the selected call)", self.action_trace)
        yield SystemCommand("Clear ended calls", "Take the ended calls off the call list "
                            "(x; the history keeps them)", self.action_clear_ended)
        yield SystemCommand("Keys", "Every key of this screen (F1 or ?)", self.action_help)
        yield SystemCommand("Echo test", "Call the built-in echo service",
                            lambda: self.dial("echo"))
        yield SystemCommand("Settings", "Audio devices, codecs, accounts",
                            self.action_settings)
        yield SystemCommand("Event log", "Every event the phone saw", self.action_log)
        for digit in "0123456789*#":
            yield SystemCommand(f"DTMF {digit}", f"Send DTMF {digit} to the selected call",
                                lambda d=digit: self.action_command("dtmf", d))
