"""Small widgets of the main screen; each renders part of ``PhoneState`` and nothing else."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Static

from ..ua.commands import COMMANDS
from .state import AccountView, CallView, PhoneState

if TYPE_CHECKING:
    from ..history import CallRecord

__all__ = ["AccountTable", "CallTable", "CallDetail", "DialInput", "HistoryTable",
           "IncomingBanner", "format_duration", "meter", "sync_table"]

DIRECTION_ARROWS = {"outgoing": "→", "incoming": "←"}


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def when_label(timestamp: float, today: date) -> str:
    """A call-log time: "14:05" today, "20 Nov" before, "2025" in another year."""
    at = datetime.fromtimestamp(timestamp)
    if at.date() == today:
        return at.strftime("%H:%M")
    return at.strftime("%d %b") if at.year == today.year else str(at.year)


def meter(dbfs: float | None, width: int = 20, floor: float = -60.0) -> Text:
    """A level bar from ``floor`` dBFS to 0 dBFS: green, then yellow, red near clipping."""
    if dbfs is None:
        return Text("·" * width + "   —   ", style="dim")
    fill = round(width * min(1.0, max(0.0, (dbfs - floor) / -floor)))
    text = Text()
    for i in range(width):
        if i < fill:
            style = "green" if i < width * 0.7 else "yellow" if i < width * 0.9 else "red"
            text.append("█", style=style)
        else:
            text.append("░", style="dim")
    text.append("  silent" if dbfs <= -90 else f" {dbfs:5.0f} dBFS")
    return text


def sync_table(table: DataTable, rows: dict[str, tuple]) -> None:
    """Make the table show ``rows`` (key → cells) in place: keeps the cursor where it is."""
    columns = list(table.columns)
    present = {key.value for key in table.rows}
    for key in present - rows.keys():
        table.remove_row(key)
    for key, cells in rows.items():
        if key not in present:
            table.add_row(*cells, key=key)
            continue
        current = table.get_row(key)
        for column, old, new in zip(columns, current, cells):
            if str(old) != str(new):
                table.update_cell(key, column, new)


def selected_key(table: DataTable) -> str | None:
    if table.row_count == 0:
        return None
    try:
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except Exception:
        return None
    return row_key.value


class AccountTable(DataTable):
    """One row per account: its registration state; the cursor picks the dialing account."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("Account", key="name")
        self.add_column("Registration", key="state")

    def show(self, accounts: dict[str, AccountView]) -> None:
        rows = {name: (name, _account_state(acc)) for name, acc in accounts.items()}
        sync_table(self, rows)


def _account_state(acc: AccountView) -> Text:
    style = {"registered": "green", "failed": "red", "registering": "yellow"}.get(acc.state, "")
    return Text(acc.describe(), style=style)


class DialInput(Input):
    """The dial box: Enter dials; up/down recall earlier targets; Escape leaves."""

    BINDINGS = [
        Binding("up", "recall(1)", "Previous", show=False),
        Binding("down", "recall(-1)", "Next", show=False),
        Binding("escape", "app.leave_dial", "Leave", show=True),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="sip:user@host · user@host · number · echo   (Enter dials)",
                         **kwargs)
        self.recall_list: list[str] = []
        self._recall_at = -1

    def remember(self, target: str) -> None:
        if target in self.recall_list:
            self.recall_list.remove(target)
        self.recall_list.insert(0, target)
        self._recall_at = -1

    def action_recall(self, step: int) -> None:
        if not self.recall_list:
            return
        self._recall_at = max(-1, min(len(self.recall_list) - 1, self._recall_at + step))
        self.value = "" if self._recall_at < 0 else self.recall_list[self._recall_at]
        self.cursor_position = len(self.value)


CALL_COLUMNS = (("dir", "Dir", 3), ("party", "Remote party", 22), ("state", "State", 20),
                ("codec", "Codec", 5), ("duration", "Time", 5), ("jitter", "Jitter", 6),
                ("loss", "Loss", 5), ("mos", "MOS", 4))


class CallTable(DataTable):
    """One row per dialog; keys act on the selected call (DESIGN §3)."""

    BINDINGS = [
        *(Binding(c.key, f"app.command('{c.name}')", c.key_label or c.name)
          for c in COMMANDS.values() if c.key and c.selects_call),
        Binding("t", "app.trace", "SIP trace"),
        Binding("q", "app.quit", "Quit", show=False),  # ctrl+q is in the footer
        Binding("d", "app.focus_dial", "Dial", show=False),
    ] + [Binding(key, f"app.command('dtmf', '{digit}')", f"DTMF {digit}", show=False)
         for key, digit in [(str(n), str(n)) for n in range(10)]
         + [("asterisk", "*"), ("number_sign", "#")]]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for key, label, width in CALL_COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, calls: dict[str, CallView]) -> None:
        sync_table(self, {cid: _call_cells(view) for cid, view in calls.items()})

    @property
    def selected_call(self) -> str | None:
        return selected_key(self)

    def select_call(self, call_id: str) -> None:
        try:
            self.move_cursor(row=self.get_row_index(call_id))
        except Exception:
            pass


def _call_cells(v: CallView) -> tuple:
    state_style = {"connected": "bold green", "ringing": "yellow", "incoming": "bold yellow",
                   "early": "yellow", "calling": "cyan", "ended": "dim"}.get(v.state, "")
    live = v.state in ("connected", "early", "ending")
    mos_style = "" if v.mos is None else "green" if v.mos >= 4.0 else \
        "yellow" if v.mos >= 3.6 else "red"
    return (DIRECTION_ARROWS.get(v.direction, v.direction), clip(v.party, 22),
            Text(clip(v.state_label + (" 🔒" if v.srtp else ""), 20), style=state_style),
            v.codec or "—",
            format_duration(v.duration) if v.duration or v.state == "connected" else "—",
            f"{v.jitter_ms:.1f}ms" if live else "—",
            f"{v.loss_pct:.1f}%" if live else "—",
            Text(f"{v.mos:.2f}", style=mos_style) if (v.mos is not None and live) else "—")


class CallDetail(Static):
    """The selected call: who, state, quality, DTMF and the two level meters."""

    def show(self, view: CallView | None, audio: str) -> None:
        if view is None:
            self.update(Text.from_markup(
                "[dim]No call selected. Type a target above and press Enter; "
                "[b]echo[/b] tests your audio.[/dim]"))
            return
        t = Text()
        t.append(f"{view.party}\n", style="bold")
        t.append(f"{view.state_label}", style="bold")
        if view.codec:
            t.append(f" · {view.codec}")
        if view.srtp:
            t.append(f" · encrypted (SRTP {view.srtp})", style="green")
        t.append(f" · {format_duration(view.duration)}")
        if view.muted:
            t.append(" · MUTED", style="bold red")
        t.append("\n")
        rtt = f"{view.rtt_ms:.0f} ms" if view.rtt_ms is not None else "—"
        mos = f"{view.mos:.2f}" if view.mos is not None else "—"
        t.append(f"jitter {view.jitter_ms:.1f} ms · loss {view.loss_pct:.1f} % · "
                 f"rtt {rtt} · MOS {mos}\n")
        t.append("mic  ")
        t.append_text(meter(None if view.muted else view.input_dbfs))
        t.append("\nspkr ")
        t.append_text(meter(view.output_dbfs))
        t.append(f"\naudio: {audio}")
        t.append(f" · DTMF sent {view.dtmf_sent or '—'} · received {view.dtmf_received or '—'}")
        t.append("\nkeypad: 0-9 * # send DTMF (call list focused)", style="dim")
        self.update(t)


class IncomingBanner(Horizontal):
    """Shown while a call rings in: who is calling, and Answer / Reject buttons."""

    class Chosen(Message):
        def __init__(self, call_id: str, answer: bool) -> None:
            super().__init__()
            self.call_id = call_id
            self.answer = answer

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.call_id: str | None = None

    def compose(self):
        yield Static(id="banner-text")
        yield Button("Answer (a)", id="banner-answer", variant="success")
        yield Button("Reject (r)", id="banner-reject", variant="error")

    def show(self, ringing: list[CallView]) -> None:
        self.display = bool(ringing)
        if not ringing:
            self.call_id = None
            return
        first = ringing[0]
        self.call_id = first.call_id
        more = f"  (+{len(ringing) - 1} more ringing)" if len(ringing) > 1 else ""
        who = f"{first.display_name} " if first.display_name else ""
        self.query_one("#banner-text", Static).update(
            Text.assemble(("☎ Incoming call from ", "bold"), (who, "bold"),
                          (f"<{first.uri}>", ""), (more, "italic")))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.call_id is not None:
            self.post_message(self.Chosen(self.call_id, event.button.id == "banner-answer"))


class HistoryTable(DataTable):
    """Past calls, newest first; Enter (or a click) redials."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("When", key="when", width=6)
        self.add_column("", key="dir", width=1)
        self.add_column("Party", key="party")
        self.add_column("Outcome", key="outcome")
        self.records: dict[str, "CallRecord"] = {}

    def show(self, records: "list[CallRecord]") -> None:
        self.clear()
        self.records = {}
        today = date.today()
        for r in records:
            key = str(r.id)
            self.records[key] = r
            # an answered call shows how long it lasted; the others say why they did not
            outcome = format_duration(r.duration) if r.outcome == "answered" else r.outcome
            self.add_row(when_label(r.started_at, today), "→" if r.direction == "outgoing" else "←",
                         clip(r.display_name or r.party, 18), outcome, key=key)

    @property
    def selected_record(self) -> "CallRecord | None":
        key = selected_key(self)
        return self.records.get(key) if key else None


def state_summary(state: PhoneState) -> Text:
    """The identity line above the account table; says how to add an account."""
    t = Text()
    t.append("Identity: ", style="bold")
    t.append(state.identity)
    if not state.accounts:
        t.append("\nNo account configured: you can dial sip:user@host directly or ")
        t.append("echo", style="bold")
        t.append(". Add an account in Settings (s / F2) or in the config file.")
    return t
