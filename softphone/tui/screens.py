"""Secondary screens: the SIP trace of one call (after sngrep) and the event log."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from .state import PhoneState

__all__ = ["TraceScreen", "LogScreen", "safe_file_name"]


def safe_file_name(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:80] or "call"


class TraceScreen(Screen):
    """The messages of one call in order; the selected one is shown whole."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "app.pop_screen", "Back", show=False),
        Binding("c", "copy", "Copy trace"),
        Binding("w", "save", "Save trace"),
    ]

    def __init__(self, state: PhoneState, call_id: str, save_dir: Path,
                 frozen_times: bool = False) -> None:
        super().__init__()
        self.state = state
        self.call_id = call_id
        self.save_dir = save_dir
        self.frozen_times = frozen_times
        self._version = -1
        self._count = 0

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(Text.assemble(("SIP trace · Call-ID ", "bold"), self.call_id),
                     id="trace-title")
        with Horizontal(id="trace-body"):
            yield DataTable(id="trace-list", cursor_type="row")
            with ScrollableContainer(id="trace-message-box"):
                yield Static(id="trace-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#trace-list", DataTable)
        table.add_column("Time", key="time")
        table.add_column("", key="dir")
        table.add_column("Peer", key="peer")
        table.add_column("Message", key="msg")
        self.refresh_list()
        self.set_interval(0.5, self.refresh_list)
        table.focus()

    def refresh_list(self) -> None:
        if self.state.trace.version == self._version:
            return
        self._version = self.state.trace.version
        messages = self.state.trace.messages(self.call_id)
        table = self.query_one("#trace-list", DataTable)
        first = messages[0].time if messages else 0.0
        if messages and self._count == 0 and not self.frozen_times:
            started = datetime.fromtimestamp(first).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            self.query_one("#trace-title", Static).update(Text.assemble(
                ("SIP trace · Call-ID ", "bold"), self.call_id, f" · first message {started}"))
        for i in range(self._count, len(messages)):
            e = messages[i]
            arrow = Text("──▶", style="cyan") if e.direction == "sent" else \
                Text("◀──", style="magenta")
            table.add_row(f"+{e.time - first:7.3f}", arrow, e.peer, e.summary, key=str(i))
        if self._count == 0 and messages:
            self.show_message(0)
        self._count = len(messages)

    def show_message(self, index: int) -> None:
        messages = self.state.trace.messages(self.call_id)
        if not 0 <= index < len(messages):
            return
        e = messages[index]
        text = e.data.decode("utf-8", "replace").replace("\r\n", "\n")
        head = "sent to" if e.direction == "sent" else "received from"
        peer = e.peer
        body = Text(no_wrap=True)
        body.append(f"{head} {e.proto} {peer}\n\n", style="bold")
        body.append(text)
        self.query_one("#trace-message", Static).update(body)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.show_message(int(event.row_key.value))

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.state.trace.export(self.call_id))
        self.notify("trace copied to the clipboard")

    def action_save(self) -> None:
        path = self.save_trace()
        self.notify(f"trace saved to {path}")

    def save_trace(self) -> Path:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"trace-{safe_file_name(self.call_id)}.txt"
        path.write_text(self.state.trace.export(self.call_id), encoding="utf-8")
        return path


class LogScreen(Screen):
    """Every UA event and notice, newest at the bottom."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"),
                Binding("l", "app.pop_screen", "Back", show=False)]

    def __init__(self, state: PhoneState) -> None:
        super().__init__()
        self.state = state
        self._shown = 0

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield RichLog(id="event-log", wrap=True, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self._append()
        self.set_interval(0.5, self._append)

    def _append(self) -> None:
        log = self.query_one(RichLog)
        new = self.state.log_count - self._shown
        if new <= 0:
            return
        lines = list(self.state.log)
        for line in lines[-min(new, len(lines)):]:
            log.write(line)
        self._shown = self.state.log_count
