"""Secondary screens: the SIP trace (after sngrep), the event log, the key list."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from .state import PhoneState, TraceEntry

__all__ = ["TraceScreen", "LogScreen", "HelpScreen", "highlight_sip", "ladder_cell",
           "key_rows", "safe_file_name"]


def safe_file_name(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:80] or "call"


LANE_GAP = 14  # columns between two lanes of the ladder


def highlight_sip(text: str) -> Text:
    """A SIP message with syntax colours: the start line (method, or status by class),
    header names, and the SDP body (line types, attribute names)."""
    out = Text(no_wrap=True)
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    first = lines[0]
    if first.startswith("SIP/2.0 "):
        code = first[8:11]
        style = {"1": "yellow", "2": "bold green"}.get(code[:1], "bold red")
        out.append("SIP/2.0 ", style="dim")
        out.append(first[8:], style=style)
    else:
        method, _, rest = first.partition(" ")
        out.append(method, style="bold cyan")
        out.append(" " + rest if rest else "", style="cyan")
    is_sdp = False
    for line in lines[1:]:
        out.append("\n")
        name, colon, value = line.partition(":")
        if colon and name and " " not in name.strip():
            out.append(name, style="bold blue")
            out.append(":")
            out.append(value)
            if name.strip().lower() in ("content-type", "c") and "sdp" in value.lower():
                is_sdp = True
        else:
            out.append(line)
    if sep:
        out.append("\n\n")
        for i, line in enumerate(body.split("\n")):
            if i:
                out.append("\n")
            if is_sdp and len(line) > 1 and line[1] == "=":
                out.append(line[:2], style="bold magenta")
                rest = line[2:]
                if line[0] == "a":
                    attr, colon, value = rest.partition(":")
                    out.append(attr, style="magenta")
                    out.append(colon + value)
                else:
                    out.append(rest)
            else:
                out.append(line)
    return out


def ladder_cell(lanes: list[str], entry: TraceEntry) -> Text:
    """One message as an arrow between its two lanes: we are lane 0, the peer its own."""
    width = LANE_GAP * (len(lanes) - 1) + 1
    peer = lanes.index(entry.peer) if entry.peer in lanes else len(lanes) - 1
    low, high = sorted((0, peer * LANE_GAP))
    cells = [" "] * width
    for lane in range(len(lanes)):
        cells[lane * LANE_GAP] = "│"
    sent = entry.direction == "sent"
    for x in range(low + 1, high):
        cells[x] = "─"
    if high - low >= 2:
        if sent:
            cells[high - 1] = "▶"
        else:
            cells[low + 1] = "◀"
    style = "cyan" if sent else "magenta"
    text = Text()
    for x, ch in enumerate(cells):
        text.append(ch, style=style if low < x < high else "dim")
    return text


class TraceScreen(Screen):
    """Every SIP message the phone sent or received, grouped by Call-ID (calls,
    registrations, OPTIONS …, as sngrep): the dialogs on top, the chosen one as a ladder
    (one lane per address, arrows between), the selected message whole below it, with
    SIP syntax colours. ``z`` gives the message the whole screen."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "app.pop_screen", "Back", show=False),
        Binding("z", "zoom", "Message only"),
        Binding("c", "copy", "Copy trace"),
        Binding("w", "save", "Save trace"),
    ]

    def __init__(self, state: PhoneState, call_id: str | None, save_dir: Path,
                 frozen_times: bool = False) -> None:
        super().__init__()
        self.state = state
        ids = state.trace.call_ids()
        self.call_id = call_id if call_id is not None else (ids[-1] if ids else "")
        self.save_dir = save_dir
        self.frozen_times = frozen_times
        self._version = -1
        self._count = 0
        self._lanes: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="trace-title")
        yield DataTable(id="trace-dialogs", cursor_type="row")
        yield DataTable(id="trace-list", cursor_type="row")
        with ScrollableContainer(id="trace-message-box"):
            yield Static(id="trace-message")
        yield Footer()

    def on_mount(self) -> None:
        dialogs = self.query_one("#trace-dialogs", DataTable)
        dialogs.add_column("Kind", key="kind")
        dialogs.add_column("Peer", key="peer")
        dialogs.add_column("Msgs", key="count")
        dialogs.add_column("Last", key="last")
        dialogs.add_column("Call-ID", key="call_id")
        self.refresh_list()
        self.set_interval(0.5, self.refresh_list)
        self.query_one("#trace-list", DataTable).focus()

    def _dialog_row(self, call_id: str) -> tuple:
        messages = self.state.trace.messages(call_id)
        first, last = messages[0], messages[-1]
        return (first.method, first.peer, str(len(messages)), last.summary, call_id)

    def refresh_list(self) -> None:
        if self.state.trace.version == self._version:
            return
        self._version = self.state.trace.version
        from .widgets import selected_key, sync_table

        dialogs = self.query_one("#trace-dialogs", DataTable)
        ids = self.state.trace.call_ids()
        sync_table(dialogs, {cid: self._dialog_row(cid) for cid in ids})
        if self.call_id in ids and selected_key(dialogs) != self.call_id:
            dialogs.move_cursor(row=dialogs.get_row_index(self.call_id))
        self._fill_ladder()

    def _title(self, messages: list[TraceEntry]) -> Text:
        count = len(self.state.trace.call_ids())
        title = Text.assemble(("SIP trace", "bold"), f" · {count} Call-ID"
                              f"{'s' if count != 1 else ''} · ", ("Call-ID ", "bold"),
                              self.call_id or "—")
        if messages and not self.frozen_times:
            started = datetime.fromtimestamp(messages[0].time).strftime(
                "%Y-%m-%d %H:%M:%S.%f")[:-3]
            title.append(f" · first message {started}")
        if self._lanes:
            title.append("\nlanes: ", style="bold")
            for i, lane in enumerate(self._lanes):
                us = " (us)" if i == 0 and lane != "us" else ""
                title.append(f"{chr(65 + i)} = {lane}{us}"
                             + ("   " if i < len(self._lanes) - 1 else ""))
        return title

    def _fill_ladder(self) -> None:
        """The chosen dialog's messages, appended as they come (rebuilt when a new peer
        adds a lane)."""
        messages = self.state.trace.messages(self.call_id)
        table = self.query_one("#trace-list", DataTable)
        lanes = [self.state.local_address or "us"]
        for e in messages:
            if e.peer not in lanes:
                lanes.append(e.peer)
        if lanes != self._lanes or len(messages) < self._count:
            self._lanes = lanes
            self._count = 0
            table.clear(columns=True)
            header = Text()
            for i in range(len(lanes)):
                header.append(chr(65 + i))
                if i < len(lanes) - 1:
                    header.append(" " * (LANE_GAP - 1))
            table.add_column("Time", key="time")
            table.add_column(header, key="flow")
            table.add_column("Peer", key="peer")
            table.add_column("Message", key="msg")
        first = messages[0].time if messages else 0.0
        for i in range(self._count, len(messages)):
            e = messages[i]
            table.add_row(f"+{e.time - first:7.3f}", ladder_cell(lanes, e), e.peer, e.summary,
                          key=str(i))
        if self._count == 0:
            if messages:
                self.show_message(0)
            else:
                self.query_one("#trace-message", Static).update(
                    Text("no SIP message yet", style="dim"))
        self._count = len(messages)
        self.query_one("#trace-title", Static).update(self._title(messages))

    def show_message(self, index: int) -> None:
        messages = self.state.trace.messages(self.call_id)
        if not 0 <= index < len(messages):
            return
        e = messages[index]
        text = e.data.decode("utf-8", "replace").replace("\r\n", "\n")
        head = "sent to" if e.direction == "sent" else "received from"
        body = Text(no_wrap=True)
        body.append(f"{head} {e.proto} {e.peer}\n\n", style="bold")
        body.append_text(highlight_sip(text))
        self.query_one("#trace-message", Static).update(body)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value is None:
            return
        if event.data_table.id == "trace-dialogs":
            if event.row_key.value != self.call_id:
                self.call_id = event.row_key.value
                self._lanes = []  # rebuild the ladder for this dialog
                self._fill_ladder()
        else:
            self.show_message(int(event.row_key.value))

    def action_zoom(self) -> None:
        self.toggle_class("zoomed")
        if self.has_class("zoomed"):
            self.query_one("#trace-message-box").focus()
        else:
            self.query_one("#trace-list", DataTable).focus()

    def action_copy(self) -> None:
        # OSC 52 asks the terminal to copy; nothing answers whether it did
        self.app.copy_to_clipboard(self.state.trace.export(self.call_id))
        self.notify("trace sent to the clipboard (if your terminal supports OSC 52)")

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


def _owner_name(node) -> str:
    from textual.app import App

    if isinstance(node, App):
        return "App (a text field keeps its keys)"
    if isinstance(node, Screen):
        return "This screen"
    label = {"CallTable": "Call list", "DialInput": "Dial input", "HistoryTable": "History",
             "AccountTable": "Accounts", "DataTable": "Tables", "Input": "Text fields"}
    return label.get(type(node).__name__, type(node).__name__)


def key_display(app, binding: Binding) -> str:
    """The key as the footer shows it, function keys as F5."""
    shown = app.get_key_display(binding)
    return shown.upper() if re.fullmatch(r"f\d{1,2}", shown) else shown


def _own_bindings(node) -> set[tuple[str, str]]:
    """(key, action) of the bindings this program declares on ``node`` (not Textual's
    built-in ones)."""
    ours: set[tuple[str, str]] = set()
    for cls in type(node).__mro__:
        if cls.__module__.startswith("softphone."):
            ours.update((b.key, b.action) for b in cls.__dict__.get("BINDINGS", ()))
    return ours


def key_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(where, key, what) for every binding of ``screen``: the app's, the screen's and
    those of every widget on it, read from the bindings themselves; this program's own
    first, Textual's built-in ones (cursor keys, editing) after them. An app binding
    marked "any focus" works even while typing in a field."""
    app = screen.app
    ours: list[tuple[str, str, str]] = []
    builtin: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for node in [app, screen, *screen.walk_children()]:
        own = _own_bindings(node)
        where = _owner_name(node)
        for bindings in node._bindings.key_to_bindings.values():
            for binding in bindings:
                place = "Any focus, even typing" if binding.priority and node is app else where
                row = (place, key_display(app, binding), binding.description or binding.action)
                if row in seen:
                    continue
                seen.add(row)
                if (binding.key, binding.action) in own:
                    ours.append(row)
                else:
                    builtin.append((f"{place} (Textual)", *row[1:]))
    return ours + builtin


class HelpScreen(Screen):
    """Every key of the screen it was opened from (its bindings, not a list kept by
    hand); Escape closes it."""

    DEFAULT_CSS = """
    HelpScreen #help-title { height: auto; padding: 0 1; }
    HelpScreen #help-keys { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "app.pop_screen", "Close"),
                Binding("q", "app.pop_screen", "Close", show=False),
                Binding("f1", "app.pop_screen", "Close", show=False, priority=True),
                Binding("question_mark", "app.pop_screen", "Close", show=False)]

    def __init__(self, of: Screen) -> None:
        super().__init__()
        self.of = of

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(Text.assemble(("Keys", "bold"), " of this screen, from its bindings: "
                                   "this program's first, Textual's own after them. "
                                   "Escape closes."), id="help-title")
        yield DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#help-keys", DataTable)
        table.add_column("Where", key="where")
        table.add_column("Key", key="key")
        table.add_column("Does", key="what")
        for i, (where, key, what) in enumerate(key_rows(self.of)):
            table.add_row(where, key, what, key=str(i))
        table.focus()
