"""The Textual application: layout, key bindings, and the glue to the phone controller.

Keys (DESIGN §3, fixed): the dial input has focus at start and Enter dials; after dialing
the call list takes focus with the new call selected. In the call list: a answer,
r reject, h hang up, m mute, o hold, t SIP trace, q quit; Escape leaves the dial input; ctrl+q
quits from anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from .state import CallView, PhoneState
from .widgets import (AccountTable, CallDetail, CallTable, DialInput, HistoryTable,
                      IncomingBanner, state_summary)

if TYPE_CHECKING:
    from textual.screen import Screen
    from textual.timer import Timer

    from ..config import Config
    from ..history import History
    from .controller import Phone

__all__ = ["SoftphoneApp"]

CSS = """
#left { width: 32; border-right: solid $primary-darken-2; }
#identity { height: auto; padding: 0 1; }
#accounts { height: auto; max-height: 8; }
#history-title, #calls-title { padding: 0 1; text-style: bold; background: $boost; }
#history { height: 1fr; }
#right { width: 1fr; }
#banner { height: auto; min-height: 3; background: $warning-darken-2; display: none; }
#banner-text { width: 1fr; height: auto; padding: 1 1; }
#banner Button { min-width: 14; margin: 0 1; }
#dial { margin: 0 0; }
#calls { height: 1fr; min-height: 5; }
#detail { height: auto; min-height: 8; border-top: solid $primary-darken-2; padding: 0 1; }
#notice { height: auto; color: $warning; padding: 0 1; }
#trace-body { height: 1fr; }
#trace-list { width: 60; }
#trace-message-box { width: 1fr; border-left: solid $primary-darken-2; padding: 0 1;
                     overflow-x: auto; }
#trace-message { width: auto; }
#trace-title { padding: 0 1; }
"""


class SoftphoneApp(App):
    """``live=False`` shows ``state`` without starting a UA (snapshot tests fill it)."""

    TITLE = "softphone"
    CSS = CSS
    THEME_SAVE_DELAY = 1.0  # seconds a picked theme must stay before it is written
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f2", "settings", "Settings"),
        Binding("s", "settings", "Settings", show=False),
        Binding("f3", "log", "Events"),
        Binding("l", "log", "Events", show=False),
        Binding("ctrl+r", "retry_registration", "Re-register"),
        Binding("slash", "focus_dial", "Dial", show=False),
    ]

    def __init__(self, config: "Config", *, audio: str = "null", live: bool = True,
                 history: "History | None" = None, data_path: Path | None = None,
                 config_path: Path | None = None, state: PhoneState | None = None,
                 theme_file: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.audio = audio
        self.live = live
        self._data_path = data_path
        self.config_path = config_path
        # where a theme picked at run time (command palette) is remembered; None: not kept
        self.theme_file = theme_file
        self._theme_timer: "Timer | None" = None
        self._theme_saved: str | None = None
        self.state = state or PhoneState(audio_backend=audio)
        self._history = history
        self.phone: "Phone | None" = None
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
        self.notice_line = self.query_one("#notice", Static)
        self.dial_input.focus()
        self._theme_saved = self.theme  # what the config gives (or Textual's default)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.refresh_views()
        self.set_interval(1.0, self._tick)
        self.set_interval(0.2, self._tick_levels)
        if self.live:
            # after the first frame: open history, import the UA, start listening
            self.call_after_refresh(self._start_phone)
        else:
            self.show_history()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Re-register shows in the footer only when there is an account."""
        if action == "retry_registration":
            return bool(self.state.accounts)
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
        from .controller import Phone

        self.show_history()
        self.phone = Phone(self.config, self.state, audio=self.audio, history=self.history,
                           on_change=self.request_refresh, on_incoming=self._on_incoming,
                           notify=self._notify)
        if self.audio == "pyaudio":
            self.run_worker(self._probe_audio, thread=True, name="audio-probe")
        try:
            await self.phone.start()
        except Exception:
            return

    def _probe_audio(self) -> None:
        """PyAudio with no devices → silence, with a notice (runs in a thread)."""
        try:
            from ..media.devices import list_devices

            devices = list_devices()
            ok = any(d.max_input_channels for d in devices) and \
                any(d.max_output_channels for d in devices)
            reason = "no audio devices found"
        except Exception as exc:
            ok, reason = False, str(exc)
        if not ok:
            self.call_from_thread(self._audio_fallback, reason)

    def _audio_fallback(self, reason: str) -> None:
        self.audio = "null"
        if self.phone is not None:
            self.phone.audio = "null"
        self.state.audio_backend = "null"
        self.state.notice = f"audio: {reason}; using silence (null audio)"
        self.state.log_line(self.state.notice)
        self.notify(self.state.notice, severity="warning")
        self.request_refresh()

    def _notify(self, text: str, severity: str) -> None:
        self.notify(text, severity=severity)  # type: ignore[arg-type]

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
        self.account_table.show(state.accounts)
        if self.account_table.display != bool(state.accounts):
            self.account_table.display = bool(state.accounts)
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
        if self.phone is not None:
            self.phone.poll()
        self.refresh_views()

    def _tick_levels(self) -> None:
        if self.phone is None:
            return
        self.phone.poll_levels()
        view = self.selected_view()
        if view is not None and view.active:
            try:
                self.detail.show(view, self.state.audio_backend)
            except Exception:
                pass

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

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, HistoryTable):
            record = event.data_table.selected_record
            if record is not None:
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
        from ..call import CallError

        dial_input = self.dial_input
        if self.phone is None or not self.phone.ready.is_set():
            for _ in range(100):  # ≤ 10 s for the UA to come up
                if self.phone is not None and self.phone.ready.is_set():
                    break
                await asyncio.sleep(0.1)
            else:
                self.notify("the phone is still starting", severity="error")
                return
        try:
            view = await self.phone.dial(target)
        except CallError as exc:
            self.state.log_line(f"call failed: {exc}")
            self.notify(f"call failed: {exc}", severity="error")
            return
        except OSError as exc:
            self.notify(f"call failed: {exc}", severity="error")
            return
        dial_input.remember(target)
        dial_input.value = ""
        self.focus_call(view.call_id)

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
        if self.phone is None:
            return
        if event.answer:
            self.phone.answer(event.call_id)
        else:
            self.phone.reject(event.call_id)
        self.focus_call(event.call_id)

    # -- call actions ----------------------------------------------------------------------
    def _target_call(self, *, ringing: bool = False) -> str | None:
        """The selected call; for answer/reject a ringing call when none is selected."""
        call_id = self.selected_call_id()
        view = self.state.calls.get(call_id) if call_id else None
        if ringing and (view is None or view.state not in ("incoming", "ringing")
                        or view.direction != "incoming"):
            ring = self.state.incoming_ringing()
            if ring:
                return ring[0].call_id
        return call_id

    def action_answer(self) -> None:
        call_id = self._target_call(ringing=True)
        if self.phone is not None and call_id and self.phone.answer(call_id):
            self.focus_call(call_id)

    def action_reject(self) -> None:
        call_id = self._target_call(ringing=True)
        if self.phone is not None and call_id:
            self.phone.reject(call_id)

    def action_hangup(self) -> None:
        call_id = self._target_call()
        if self.phone is not None and call_id:
            self.run_worker(self.phone.hangup(call_id), group="hangup")

    def action_mute(self) -> None:
        call_id = self._target_call()
        if self.phone is not None and call_id:
            muted = self.phone.toggle_mute(call_id)
            if muted is not None:
                self.notify("microphone muted" if muted else "microphone on", timeout=2)

    def action_hold(self) -> None:
        call_id = self._target_call()
        if self.phone is not None and call_id:
            self.run_worker(self._toggle_hold(call_id), group="hold")

    async def _toggle_hold(self, call_id: str) -> None:
        assert self.phone is not None
        held = await self.phone.toggle_hold(call_id)
        if held is None:
            self.notify("hold needs a connected call", severity="warning", timeout=2)
        else:
            self.notify("call on hold" if held else "call resumed", timeout=2)

    def action_dtmf(self, digit: str) -> None:
        call_id = self._target_call()
        if self.phone is not None and call_id and not self.phone.send_dtmf(call_id, digit):
            self.notify("DTMF needs a connected call", severity="warning", timeout=2)

    def action_trace(self) -> None:
        from .screens import TraceScreen

        call_id = self._target_call()
        if call_id is None:
            self.notify("select a call to see its SIP trace", severity="warning")
            return
        self.push_screen(TraceScreen(self.state, call_id, self.data_path / "traces",
                                     frozen_times=not self.live))

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
        from ..config import ConfigError, set_config_value

        try:
            set_config_value(self.theme_file, "ui", "theme", name)
        except (ConfigError, OSError) as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")
            return
        self._theme_saved = name
        self.config = dataclasses.replace(
            self.config, ui=dataclasses.replace(self.config.ui, theme=name))

    def action_settings(self) -> None:
        from .settings import SettingsScreen

        self.push_screen(SettingsScreen(self.config, self.config_path, live=self.live),
                         self._settings_done)

    def _settings_done(self, config: "Config | None") -> None:
        if config is None:
            return
        self.config = config
        if config.ui.theme:
            try:
                self.theme = config.ui.theme
            except Exception:
                pass
        if self.phone is None:
            return
        if self.phone.busy():
            self.state.notice = "settings saved; accounts and network apply after the calls end"
            self.phone.config = config
            self.refresh_views()
            return
        self.state.notice = None
        self.run_worker(self._restart(config), name="restart", exclusive=True)

    async def _restart(self, config: "Config") -> None:
        assert self.phone is not None
        self.state.identity = "restarting…"
        self.refresh_views()
        try:
            await self.phone.restart(config)
        except Exception:
            return
        self.refresh_views()

    def action_retry_registration(self) -> None:
        if self.phone is None:
            return
        if not self.state.accounts:
            self.notify("no account configured: add one in Settings (F2)", severity="warning")
            return
        self.phone.register(self.state.selected_account)
        self.notify("registering…", timeout=2)

    def action_focus_dial(self) -> None:
        self.dial_input.focus()

    def action_leave_dial(self) -> None:
        self.call_table.focus()

    async def action_quit(self) -> None:
        if self.phone is not None:
            self.notify("hanging up and unregistering…", timeout=2)
            await self.phone.close(timeout=3.0)
            self.phone = None
        if self._history is not None:
            self._history.close()
            self._history = None
        self.exit()

    # -- command palette -------------------------------------------------------------------
    def get_system_commands(self, screen: "Screen") -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Dial", "Focus the dial input", self.action_focus_dial)
        yield SystemCommand("Answer", "Answer the ringing call", self.action_answer)
        yield SystemCommand("Reject", "Reject the ringing call (486 Busy Here)",
                            self.action_reject)
        yield SystemCommand("Hang up", "Hang up the selected call", self.action_hangup)
        yield SystemCommand("Mute", "Mute or unmute the microphone", self.action_mute)
        yield SystemCommand("Hold", "Put the selected call on hold, or resume it",
                            self.action_hold)
        yield SystemCommand("SIP trace", "Show the SIP messages of the selected call",
                            self.action_trace)
        yield SystemCommand("Echo test", "Call the built-in echo service",
                            lambda: self.dial("echo"))
        yield SystemCommand("Re-register", "Register the selected account again",
                            self.action_retry_registration)
        yield SystemCommand("Settings", "Audio devices, codecs, accounts",
                            self.action_settings)
        yield SystemCommand("Event log", "Every event the phone saw", self.action_log)
        for digit in "0123456789*#":
            yield SystemCommand(f"DTMF {digit}", f"Send DTMF {digit} to the selected call",
                                lambda d=digit: self.action_dtmf(d))
