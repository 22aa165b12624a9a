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
           "IncomingBanner", "account_details", "called_text", "format_duration", "level_line",
           "meter", "state_summary", "sync_table"]

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


def sync_table(table: DataTable, rows: dict[str, tuple], height: int = 1) -> None:
    """Make the table show ``rows`` (key → cells) in place: keeps the cursor where it is."""
    columns = list(table.columns)
    present = {key.value for key in table.rows}
    for key in present - rows.keys():
        table.remove_row(key)
    for key, cells in rows.items():
        if key not in present:
            table.add_row(*cells, key=key, height=height)
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
    """One row per account: its registration state; the cursor picks the dialing account.

    The columns share the panel's width; a state that does not fit is cut short here and
    shown whole in the detail line under the table (:attr:`clipped`)."""

    BINDINGS = [Binding("slash", "app.focus_dial", "Dial", show=False, priority=True)]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self._accounts: dict[str, AccountView] = {}
        self._widths: tuple[int, int, int] | None = None
        self.clipped: list[AccountView] = []

    def on_resize(self) -> None:
        self.show(self._accounts)

    def select_row(self, name: str) -> None:
        """Put the cursor on ``name``'s row quietly: the phone has it selected already."""
        try:
            with self.prevent(DataTable.RowHighlighted):
                self.move_cursor(row=self.get_row_index(name))
        except Exception:
            pass

    def _layout(self) -> tuple[int, int, int]:
        """(name, state, address-of-record) widths; the AOR only when the panel is wide
        enough for it next to a state of 20 columns."""
        width = self.scrollable_content_region.width or 32
        names = max((len(n) for n in self._accounts), default=7)
        name_w = max(7, min(names, 14, width // 3))
        state_w = max(10, width - name_w - 4)
        aor_w = max((len(a.aor) for a in self._accounts.values()), default=0)
        if aor_w and state_w - aor_w - 2 >= 20:
            return name_w, state_w - aor_w - 2, aor_w
        return name_w, state_w, 0

    def show(self, accounts: dict[str, AccountView]) -> None:
        """Fill the rows; a rebuild keeps the cursor without announcing the rows it passes
        (a highlight is the user picking the dialing account)."""
        with self.prevent(DataTable.RowHighlighted):
            self._show(accounts)

    def _show(self, accounts: dict[str, AccountView]) -> None:
        self._accounts = accounts
        widths = self._layout()
        selected = None
        if widths != self._widths:  # new widths: new columns, the cursor kept
            selected = selected_key(self)
            self.clear(columns=True)
            self.add_column("Account", key="name", width=widths[0])
            self.add_column("Registration", key="state", width=widths[1])
            if widths[2]:
                self.add_column("Address of record", key="aor", width=widths[2])
            self._widths = widths
        name_w, state_w, aor_w = widths
        self.clipped = [acc for name, acc in accounts.items()
                        if len(acc.describe()) > state_w or len(name) > name_w]
        rows = {name: (clip(name, name_w), _account_state(acc, state_w),
                       *((acc.aor,) if aor_w else ()))
                for name, acc in accounts.items()}
        sync_table(self, rows)
        if selected is not None:
            self.select_row(selected)


def _account_state(acc: AccountView, width: int = 200) -> Text:
    style = {"registered": "green", "failed": "red", "registering": "yellow"}.get(acc.state, "")
    return Text(clip(acc.describe(), width), style=style)


def account_details(accounts: "list[AccountView]") -> Text:
    """The accounts whose state the table had to cut short, each in full (it wraps)."""
    t = Text()
    for acc in accounts:
        if t:
            t.append("\n")
        t.append(f"{acc.name}: ", style="bold")
        t.append_text(_account_state(acc, 10_000))
    return t


class DialInput(Input):
    """The dial box: Enter dials; up/down recall earlier targets; Escape leaves."""

    BINDINGS = [
        Binding("up", "recall(1)", "Previous", show=False),
        Binding("down", "recall(-1)", "Next", show=False),
        # priority: handled as the key arrives, so what is typed next lands in the call
        # list, not here (a queued key would otherwise still reach this input)
        Binding("escape", "app.leave_dial", "Leave", show=True, priority=True),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="sip:user@host · number · echo · Enter dials",
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


# (key, label, width); None: the party's column, which takes what the others leave
CALL_COLUMNS = {"dir": ("Dir", 3), "party": ("Remote party", None), "state": ("State", 0),
                "codec": ("Codec", 5), "duration": ("Time", 5), "jitter": ("Jitter", 6),
                "loss": ("Loss", 5), "mos": ("MOS", 4)}
# the layouts from widest to narrowest; the last puts party and state on two lines
CALL_LAYOUTS = (("dir", "party", "state", "codec", "duration", "jitter", "loss", "mos"),
                ("dir", "party", "state", "codec", "duration", "mos"),
                ("dir", "party", "state", "duration"),
                ("call", "duration"))
MIN_PARTY = 14


class CallTable(DataTable):
    """One row per dialog; keys act on the selected call (DESIGN §3).

    The columns follow the width: all of them when there is room; then without jitter and
    loss (the detail pane shows them), without the codec; at the narrowest each call takes
    two lines, the party over its state. A state is never cut short."""

    BINDINGS = [
        *(Binding(c.key, f"app.command('{c.name}')", c.key_label or c.palette or c.name,
                  show=c.key_label is not None)  # the rest: in the key list and palette
          for c in COMMANDS.values() if c.key and c.selects_call),
        Binding("t", "app.trace", "SIP trace"),
        Binding("x", "app.clear_ended", "Clear ended"),
        Binding("q", "app.quit", "Quit", show=False),  # ctrl+q is in the footer
        # priority: the keys typed after it must reach the dial input, not hang up (h)
        Binding("d", "app.focus_dial", "Dial", show=False, priority=True),
        Binding("slash", "app.focus_dial", "Dial", show=False, priority=True),
    ] + [Binding(key, f"app.command('dtmf', '{digit}')", f"DTMF {digit}", show=False)
         for key, digit in [(str(n), str(n)) for n in range(10)]
         + [("asterisk", "*"), ("number_sign", "#")]]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self._calls: dict[str, CallView] = {}
        self.layout_key: tuple | None = None

    def on_resize(self) -> None:
        self.show(self._calls)

    def _layout(self, calls: dict[str, CallView]) -> tuple:
        """(column keys, party width, state width) for the table's width now."""
        width = self.scrollable_content_region.width or 100
        state_w = max([len(v.state_label) for v in calls.values()] + [10])
        for keys in CALL_LAYOUTS[:-1]:
            fixed = sum(state_w if k == "state" else CALL_COLUMNS[k][1] or 0
                        for k in keys) + 2 * len(keys)
            party_w = width - fixed
            if party_w >= MIN_PARTY:
                return keys, min(party_w, 40), state_w
        fixed = CALL_COLUMNS["duration"][1] + 4
        return CALL_LAYOUTS[-1], max(MIN_PARTY, width - fixed), state_w

    def show(self, calls: dict[str, CallView]) -> None:
        self._calls = calls
        layout = self._layout(calls)
        if layout != self.layout_key:
            selected = self.selected_call
            self.clear(columns=True)
            keys, party_w, state_w = layout
            for key in keys:
                if key == "call":
                    self.add_column("Call", key="call", width=party_w)
                    continue
                label, width = CALL_COLUMNS[key]
                width = party_w if key == "party" else state_w if key == "state" else width
                self.add_column(label, key=key, width=width)
            self.layout_key = layout
            if selected is not None:
                self._fill(calls)
                self.select_call(selected)
                return
        self._fill(calls)

    def _fill(self, calls: dict[str, CallView]) -> None:
        keys, party_w, _ = self.layout_key or self._layout(calls)
        two_lines = keys[0] == "call"
        sync_table(self, {cid: _call_cells(view, keys, party_w) for cid, view in calls.items()},
                   height=2 if two_lines else 1)

    @property
    def selected_call(self) -> str | None:
        return selected_key(self)

    def select_call(self, call_id: str) -> None:
        try:
            self.move_cursor(row=self.get_row_index(call_id))
        except Exception:
            pass


STATE_STYLES = {"connected": "bold green", "ringing": "yellow", "incoming": "bold yellow",
                "early": "yellow", "calling": "cyan", "ending": "magenta",
                "cancelling": "magenta", "rejecting": "magenta", "ended": "dim"}


def _call_cells(v: CallView, keys: tuple[str, ...], party_w: int) -> tuple:
    state_style = STATE_STYLES.get(v.state, "")
    live = v.state in ("connected", "early", "ending") and not v.held
    mos_style = "" if v.mos is None else "green" if v.mos >= 4.0 else \
        "yellow" if v.mos >= 3.6 else "red"
    arrow = DIRECTION_ARROWS.get(v.direction, v.direction)
    state = v.state_label + (" 🔒" if v.srtp else "")  # the media is encrypted (SRTP)
    cells = {
        "dir": arrow,
        "party": clip(v.party, party_w),
        "state": Text(state, style=state_style),
        "codec": v.codec or "—",
        "duration": format_duration(v.duration) if v.duration or v.active else "—",
        "jitter": f"{v.jitter_ms:.1f}ms" if live else "—",
        "loss": f"{v.loss_pct:.1f}%" if live else "—",
        "mos": Text(f"{v.mos:.2f}", style=mos_style) if (v.mos is not None and live) else "—",
    }
    if "call" in keys:
        cells["call"] = Text.assemble(f"{arrow} ", clip(v.party, party_w - 2), "\n",
                                      (state, state_style))
    return tuple(cells[k] for k in keys)


def level_line(view: CallView, dbfs: float | None, audio: str, verb: str,
               width: int = 20) -> Text:
    """A meter, or why there is none: no sound device (null audio), the call is held,
    the microphone is muted, the call has ended."""
    why = None
    if audio == "null":
        why = f"not {verb}: null audio"
    elif not view.active:
        why = "call ended"
    elif view.held:
        why = "on hold" if view.on_hold else "held by remote"
    elif verb == "captured" and view.muted:
        why = "muted"
    if why is not None:
        return Text(f"— {why}", style="dim")
    return meter(dbfs, width)


class CallDetail(Static):
    """The selected call: who, state, quality, DTMF and the two level meters."""

    def show(self, view: CallView | None, audio: str) -> None:
        bar = max(8, min(20, (self.content_region.width or 60) - 5 - 12))
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
        mos = f"{view.mos:.2f}" if view.mos is not None and not view.held else "—"
        t.append(f"jitter {view.jitter_ms:.1f} ms · loss {view.loss_pct:.1f} % · "
                 f"rtt {rtt} · MOS {mos}\n")
        t.append("mic  ")
        t.append_text(level_line(view, view.input_dbfs, audio, "captured", bar))
        t.append("\nspkr ")
        t.append_text(level_line(view, view.output_dbfs, audio, "played", bar))
        t.append(f"\naudio: {audio}")
        t.append(f" · DTMF sent {view.dtmf_sent or '—'} · received {view.dtmf_received or '—'}")
        t.append(f"\n{_key_name('hangup')} hangs up from anywhere · 0-9 * # in the call list: "
                 "DTMF · F1 every key", style="dim")
        self.update(t)


def _key_name(command: str) -> str:
    key = COMMANDS[command].global_key or COMMANDS[command].key or ""
    return key.upper() if key.startswith("f") and key[1:].isdigit() else key


def called_text(view: CallView) -> Text:
    """Which of our addresses was called: the account and the address it was called at."""
    called = view.called or "us"
    if view.account:
        return Text.assemble((view.account, "bold"), f" ({called})")
    return Text(called)


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
        # the global keys: they work whatever has focus (a and r only in the call list)
        yield Static(id="banner-text")
        yield Button(f"Answer ({_key_name('answer')})", id="banner-answer", variant="success")
        yield Button(f"Reject ({_key_name('reject')})", id="banner-reject", variant="error")

    def show(self, ringing: list[CallView]) -> None:
        self.display = bool(ringing)
        if not ringing:
            self.call_id = None
            return
        first = ringing[0]
        self.call_id = first.call_id
        more = f"  (+{len(ringing) - 1} more ringing)" if len(ringing) > 1 else ""
        who = f"{first.display_name} " if first.display_name else ""
        title = "☎ Call waiting: " if first.waiting else "☎ Incoming call from "
        hint = "  (answering holds the current call)" if first.waiting else ""
        self.query_one("#banner-text", Static).update(
            Text.assemble((title, "bold"), (who, "bold"), (f"<{first.uri}>", ""),
                          ("\n  to ", "bold"), called_text(first), (more, "italic"),
                          (hint, "italic")))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.call_id is not None:
            self.post_message(self.Chosen(self.call_id, event.button.id == "banner-answer"))


class HistoryTable(DataTable):
    """Past calls, newest first; Enter (or a click) redials. Each call takes two lines (the
    party over when and how it ended), more when the outcome needs them: nothing is cut."""

    BINDINGS = [Binding("slash", "app.focus_dial", "Dial", show=False, priority=True)]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.records: dict[str, "CallRecord"] = {}
        self._shown: "list[CallRecord]" = []
        self._width: int | None = None

    def on_resize(self) -> None:
        if self._width != self._content_width():
            self.show(self._shown)

    def _content_width(self) -> int:
        return max(16, (self.scrollable_content_region.width or 32) - 2)

    def show(self, records: "list[CallRecord]") -> None:
        import textwrap

        width = self._content_width()
        selected = selected_key(self)
        self.clear(columns=self._width != width)
        if self._width != width:
            self.add_column("Call", key="call", width=width)
            self._width = width
        self._shown = list(records)
        self.records = {}
        today = date.today()
        for r in records:
            key = str(r.id)
            self.records[key] = r
            # an answered call shows how long it lasted; the others say why they did not
            outcome = format_duration(r.duration) if r.outcome == "answered" else r.outcome
            arrow = "→" if r.direction == "outgoing" else "←"
            lines = textwrap.wrap(f"{when_label(r.started_at, today)}  {outcome}", width,
                                  subsequent_indent="       ") or [""]
            style = "" if r.outcome == "answered" else \
                "yellow" if r.outcome in ("missed", "cancelled") else "red"
            cell = Text.assemble(f"{arrow} ", (clip(r.display_name or r.party, width - 2),
                                               "bold"))
            for line in lines:
                cell.append("\n")
                cell.append(line, style=style or "dim")
            self.add_row(cell, key=key, height=1 + len(lines))
        if selected in self.records:
            self.move_cursor(row=self.get_row_index(selected))

    @property
    def selected_record(self) -> "CallRecord | None":
        key = selected_key(self)
        return self.records.get(key) if key else None


def _listening_part(identity: str) -> str:
    """`127.0.0.1:5060` out of `sip:… (listening on 127.0.0.1:5060)`."""
    head, found, rest = identity.partition("(listening on ")
    return rest.rstrip(")") if found else identity


def state_summary(state: PhoneState) -> Text:
    """The identity line above the account table: who we are and where we listen; with
    several accounts, how many and which one dials; with none, how to add one."""
    t = Text()
    if len(state.accounts) > 1:
        t.append("Listening on ", style="bold")
        t.append(state.local_address or _listening_part(state.identity))
        t.append(f"\n{len(state.accounts)} accounts", style="bold")
        if state.selected_account:
            t.append(" · dialing from ")
            t.append(state.selected_account, style="bold")
        return t
    t.append("Identity: ", style="bold")
    t.append(state.identity)
    if state.dnd:
        t.append("  DND", style="bold red")
    if not state.accounts:
        t.append("\nNo account configured: you can dial sip:user@host directly or ")
        t.append("echo", style="bold")
        t.append(". Add an account in Settings (F2) or in the config file.")
    return t
