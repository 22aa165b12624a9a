"""What a new user trips over in the TUI (issue 9): each test failed before its fix.

Pilot tests drive the real app; the layout ones read what is on the screen (the
compositor's text), not the widgets' data, so a clipped or hidden value fails them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

from softphone.config import Config, load_config
from softphone.history import CallRecord, History
from softphone.tui.app import SoftphoneApp
from softphone.tui.state import AccountView, CallView, PhoneState
from softphone.tui.widgets import CallTable, DialInput, HistoryTable

from test_tui import (FakeRegistrar, _second_ua, click_in_view, loopback_config, make_app,
                      started, table_text, wait_for)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
LONG_REASON = ("the server rejected our credentials for realm 'pbx' (check the password and "
               "auth user '1001')")


# ----------------------------------------------------------------------------- helpers
def screen_lines(app) -> list[str]:
    """The screen as text, as the terminal shows it."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()


def region_text(app, widget) -> str:
    """What the screen shows inside ``widget``'s region, lines joined, spaces squeezed."""
    r = widget.region
    lines = screen_lines(app)[r.y:r.y + r.height]
    return " ".join(" ".join(line[r.x:r.x + r.width].split()) for line in lines).strip()


async def burst(pilot, *keys: str) -> None:
    """Keys as a terminal delivers a paste or a password manager's typing: all queued at
    once, none waiting for the previous one to be handled (pilot.press waits)."""
    from textual import events

    app = pilot.app
    for key in keys:
        char = "\t" if key == "tab" else key if len(key) == 1 else None
        app._driver.send_message(events.Key(key, char))
    await pilot.pause()


def fixed_app(tmp_path: Path, config: Config | None = None, **kwargs) -> SoftphoneApp:
    """An app on a fixed state, no UA (like the snapshot tests)."""
    state = PhoneState(audio_backend=kwargs.pop("audio", "null"))
    state.identity = "sip:1001@pbx.example.com (listening on 127.0.0.1:5060)"
    state.local_address = "127.0.0.1:5060"
    return SoftphoneApp(config or Config.default(), audio=state.audio_backend, live=False,
                        data_path=tmp_path / "data", config_path=tmp_path / "config.toml",
                        state=state, **kwargs)


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


# ------------------------------------------------------------ 1. focus moves with the key
async def test_keys_typed_right_after_tab_land_in_the_next_field(tmp_path):
    """A password manager types Tab and the password at once: every character must reach
    the password field, none the display name before it (where it would show)."""
    from textual.widgets import Input

    config = Config.from_dict({"accounts": [{"name": "office", "aor": "sip:1001@pbx.example.com"}]})
    app = fixed_app(tmp_path, config)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("f2")
        screen = app.screen
        screen.query_one("#acc-display_name", Input).focus()
        await pilot.pause()
        await burst(pilot, "tab", *"s3cret")
        password = screen.query_one("#acc-password", Input)
        await wait_for(pilot, lambda: password.value, what="typing to arrive")
        assert password.value == "s3cret"
        assert screen.query_one("#acc-display_name", Input).value == ""
        assert app.focused is password
        assert not any("s3cret" in line for line in screen_lines(app))  # masked
        await burst(pilot, "shift+tab", *"Bob")
        name = screen.query_one("#acc-display_name", Input)
        await wait_for(pilot, lambda: name.value, what="typing to arrive")
        assert name.value == "Bob" and password.value == "s3cret"


async def test_keys_typed_right_after_d_go_to_the_dial_input(tmp_path):
    """`d` in the call list, then `echo` at once: the h of echo must not hang up."""
    app = fixed_app(tmp_path)
    app.state.add_call(CallView("c1", "outgoing", "sip:2002@pbx", state="connected"))
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()
        hung_up: list = []
        app.run_command = lambda name, **args: hung_up.append(name)  # type: ignore
        await burst(pilot, "d", *"echo")
        await wait_for(pilot, lambda: app.dial_input.value == "echo", what="echo typed")
        assert hung_up == [] and isinstance(app.focused, DialInput)
        await burst(pilot, "escape", "x")  # Escape, then x (clear ended) in the call list
        await wait_for(pilot, lambda: isinstance(app.focused, CallTable), what="focus")
        await wait_for(pilot, lambda: any("ended call" in n for n in notifications(app)),
                       what="x handled by the call list")
        assert app.dial_input.value == "echo"


# ----------------------------------------------------------------------- 2. the layout
def layout_state(app: SoftphoneApp) -> None:
    state = app.state
    state.accounts["office"] = AccountView("office", "sip:1001@pbx.example.com",
                                           state="registered", seconds_left=512)
    state.accounts["work"] = AccountView("work", "sip:2002@pbx.example.com", state="failed",
                                         status=401, reason=LONG_REASON)
    state.selected_account = "office"
    state.add_call(CallView("c1", "outgoing", "sip:9@relay.example.com", state="ended",
                            reason="rejected 403 Not relaying", started_at=0.0))


@pytest.mark.parametrize("size", [(80, 24), (140, 40), (180, 40)])
async def test_sidebar_and_call_list_show_states_in_full(tmp_path, size):
    history = History(tmp_path / "h.sqlite3")
    history.add(CallRecord("outgoing", "sip:9@relay.example.com", time.time(), 0.0,
                           "rejected 403 Not relaying"))
    app = fixed_app(tmp_path, history=history)
    layout_state(app)
    async with app.run_test(size=size) as pilot:
        app.refresh_views()
        app.show_history()
        await pilot.pause()
        accounts = region_text(app, app.account_table)
        assert "office" in accounts and "registered (512 s)" in accounts
        assert "work" in accounts and "failed: 401" in accounts
        # the long reason: whole, wrapped under the table
        detail = app.query_one("#account-detail")
        assert f"work: failed: 401 {LONG_REASON}" in region_text(app, detail)
        assert "ended: rejected 403 Not relaying" in region_text(app, app.call_table)
        assert "rejected 403 Not relaying" in region_text(app, app.history_table)
        left = app.query_one("#left").region.width
        assert left >= 34 if size[0] == 80 else left > 40  # more width: a wider panel
        if size[0] >= 180:  # and the addresses of record in it
            assert "sip:1001@pbx.example.com" in accounts
    history.close()


async def test_trace_message_pane_gets_the_width_at_80x24(tmp_path):
    app = fixed_app(tmp_path)
    app.state.add_call(CallView("c1@softphone", "outgoing", "sip:2002@pbx", state="connected"))
    invite = (b"INVITE sip:2002@pbx.example.com SIP/2.0\r\nCall-ID: c1@softphone\r\n"
              b"CSeq: 1 INVITE\r\n"
              b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-a-long-branch\r\n\r\n")
    app.state.trace.add("sent", invite, "udp", "203.0.113.5:5060", when=1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        app.refresh_views()
        app.call_table.focus()
        await pilot.press("t")
        box = app.screen.query_one("#trace-message-box")
        assert box.region.width >= 76
        assert "branch=z9hG4bK-a-long-branch" in region_text(app, box)


# ----------------------------------------------------------- 3. keys that work anywhere
def test_global_keys_come_from_the_command_table():
    from softphone.ua.commands import COMMANDS

    assert {n: c.global_key for n, c in COMMANDS.items() if c.global_key} == {
        "answer": "f5", "reject": "f6", "hangup": "f7"}
    bound = {b.key: b for b in SoftphoneApp.BINDINGS}
    for name in ("answer", "reject", "hangup"):
        binding = bound[COMMANDS[name].global_key]
        assert binding.priority and binding.action == f"command('{name}')"


async def test_f5_answers_and_f7_hangs_up_while_typing_in_the_dial_input(tmp_path):
    app = make_app(tmp_path)
    events: list = []
    async with app.run_test(size=(120, 40)) as pilot:
        phone = await started(pilot, app)
        await pilot.press(*"12")  # half a number: the dial input keeps the focus
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:alice@127.0.0.1:{phone.address[1]}")
            banner = app.query_one("#banner")
            await wait_for(pilot, lambda: banner.display, what="the banner")
            assert isinstance(app.focused, DialInput)
            shown = region_text(app, banner)
            assert "Answer (F5)" in shown and "Reject (F6)" in shown
            await pilot.press("f5")
            view = app.state.calls[out]
            await wait_for(pilot, lambda: view.state == "connected", what="answered by F5")
            assert app.dial_input.value == "12"
            await pilot.press("f7")
            await wait_for(pilot, lambda: view.state == "ended", what="hung up by F7")
            assert view.reason == "hangup" and app.dial_input.value == "12"
        finally:
            await caller.close(timeout=2)
        await app.action_quit()


async def test_hints_on_screen_name_keys_that_work_where_they_are_read(tmp_path):
    app = fixed_app(tmp_path)
    app.state.identity = "sip:softphone@127.0.0.1:5060 (listening on 127.0.0.1:5060)"
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_views()
        await pilot.pause()
        hint = region_text(app, app.identity_line)
        assert "Settings (F2)" in hint and "(s" not in hint
        assert isinstance(app.focused, DialInput)
        await pilot.press("f2")  # from the dial input, as the hint says
        from softphone.tui.settings import SettingsScreen

        assert isinstance(app.screen, SettingsScreen)


# ------------------------------------------------------------------------ 4. help screen
async def test_help_lists_every_binding_of_the_screen(tmp_path):
    from softphone.tui.screens import HelpScreen, key_display, key_rows

    app = fixed_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.screen
        await pilot.press("f1")  # from the dial input
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is main
        app.call_table.focus()
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        table = help_screen.query_one("#help-keys")
        shown = [(str(table.get_row(k)[1]), str(table.get_row(k)[2])) for k in table.rows]
        # every binding of the app, the call list, the dial input and the others
        for owner in (app, app.call_table, app.dial_input, app.history_table):
            for bindings in owner._bindings.key_to_bindings.values():
                for b in bindings:
                    assert (key_display(app, b), b.description or b.action) in shown, b
        assert len(shown) == len(key_rows(main))
        await pilot.press("escape")
        assert app.screen is main


def test_readme_tui_section_lists_the_keys():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The TUI"):]
    section = section[:section.index("\n## ", 5)]
    for key in ("`/`", "`d`", "`l`", "F3", "ctrl+r", "Up", "Down", "F5", "F6", "F7", "`?`",
                "F1", "F2", "F4", "`x`", "`z`", "`c`", "`w`", "`a`", "`r`", "`h`", "`m`",
                "`o`", "`t`", "`q`", "ctrl+q", "ctrl+p", "Escape", "Tab"):
        assert key in section, key


# ------------------------------------------------------------------ 5. meters and MOS
def test_hold_blanks_meters_and_mos_and_keeps_them_blank():
    from softphone.tui.bridge import Bridge
    from softphone.ua import events as ev

    state = PhoneState()
    view = CallView("c1", "outgoing", "sip:b@h", state="connected", codec="PCMU",
                    input_dbfs=-20.0, output_dbfs=-30.0, mos=4.3)
    state.add_call(view)
    bridge = Bridge(app=None, state=state, history=None)  # type: ignore[arg-type]

    def live_tick() -> None:
        bridge._live[("levels", "c1")] = ev.Levels("c1", -12.0, -14.0)
        bridge._live[("call_stats", "c1")] = ev.CallStats("c1", 5.0, 100, 100, 0, 0.0, 1.0,
                                                          20.0, 40.0, "PCMU")
        bridge.apply_live()

    for local, remote in ((True, False), (False, True)):
        bridge.apply(ev.Hold("c1", local, remote))
        assert (view.input_dbfs, view.output_dbfs, view.mos) == (None, None, None)
        live_tick()
        assert (view.input_dbfs, view.output_dbfs, view.mos) == (None, None, None)
    bridge.apply(ev.Hold("c1", False, False))
    live_tick()
    assert view.output_dbfs == -14.0 and view.mos is not None
    bridge.apply(ev.Ended("c1", "hangup"))
    assert (view.input_dbfs, view.output_dbfs, view.mos) == (None, None, None)


@pytest.mark.parametrize("audio, expected", [("null", "not played: null audio"),
                                             ("pyaudio", "silent")])
async def test_speaker_meter_says_why_it_is_quiet(tmp_path, audio, expected):
    app = fixed_app(tmp_path, audio=audio)
    app.state.add_call(CallView("c1", "outgoing", "sip:b@h", state="connected", codec="PCMU",
                                output_dbfs=-120.0, input_dbfs=-30.0))
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()
        detail = region_text(app, app.detail)
        assert expected in detail
        if audio == "null":
            assert "silent" not in detail and "not captured: null audio" in detail


# ------------------------------------------------- 6. ringing timer, feedback on hang-up
class SlowCallee(asyncio.DatagramProtocol):
    """Takes INVITEs and says nothing until told (``ring``); answers CANCEL with 200 and
    the INVITE with 487."""

    def __init__(self) -> None:
        self.invite: tuple[list[str], tuple] | None = None
        self.cancelled = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def _reply(self, lines: list[str], addr, status: str, method: str | None = None) -> None:
        keep = [l for l in lines[1:] if l.split(":", 1)[0].lower() in ("via", "from", "call-id")]
        to = next(l for l in lines if l.lower().startswith("to:"))
        cseq = next(l for l in lines if l.lower().startswith("cseq:"))
        if method:
            cseq = f"{cseq.rsplit(' ', 1)[0]} {method}"
        out = "\r\n".join([f"SIP/2.0 {status}", *keep, to + ";tag=slow1", cseq,
                           "Content-Length: 0", "", ""])
        self.transport.sendto(out.encode(), addr)

    def ring(self) -> None:
        assert self.invite is not None
        self._reply(*self.invite, "180 Ringing")

    def datagram_received(self, data: bytes, addr) -> None:
        lines = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        if lines[0].startswith("INVITE"):
            self.invite = (lines, addr)
        elif lines[0].startswith("CANCEL"):
            self.cancelled = True
            self._reply(lines, addr, "200 OK")
            if self.invite is not None:
                self._reply(*self.invite, "487 Request Terminated")


async def dial_slow_callee(pilot, app, port: int, callee: SlowCallee) -> CallView:
    await started(pilot, app)
    await pilot.press(*f"sip:bob@127.0.0.1:{port}", "enter")
    view = await wait_for(pilot, lambda: next(iter(app.state.calls.values()), None),
                          what="the call")
    await wait_for(pilot, lambda: callee.invite is not None, what="the INVITE")
    return view


@pytest.fixture
async def slow_callee():
    loop = asyncio.get_running_loop()
    transport, callee = await loop.create_datagram_endpoint(SlowCallee,
                                                            local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], callee
    transport.close()


async def test_calling_and_ringing_time_counts(tmp_path, slow_callee):
    port, callee = slow_callee
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await dial_slow_callee(pilot, app, port, callee)
        await wait_for(pilot, lambda: re.search(r"calling\s+\S+\s+00:0[1-9]", table_text(app)),
                       what="the calling time to count", timeout=5)
        callee.ring()
        await wait_for(pilot, lambda: view.state == "ringing", what="ringing")
        seconds = view.duration
        await wait_for(pilot, lambda: view.duration >= seconds + 1 and re.search(
            r"ringing\s+\S+\s+00:0[2-9]", table_text(app)), what="the ringing time to count",
            timeout=5)
        await pilot.press("h")
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        await app.action_quit()


async def test_hangup_before_any_provisional_says_cancelling_until_ended(tmp_path,
                                                                          slow_callee):
    port, callee = slow_callee
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await dial_slow_callee(pilot, app, port, callee)
        await pilot.press("h")  # no provisional yet: the CANCEL has to wait for one
        assert "cancelling" in table_text(app)  # at once
        callee.ring()  # the 180 that crossed our hang-up must not say "ringing" again
        await wait_for(pilot, lambda: any(e.summary.startswith("180") for e in
                                          app.state.trace.messages(view.call_id)),
                       what="the 180 to arrive")
        for _ in range(5):
            await pilot.pause(0.02)
            assert view.state in ("cancelling", "ended"), view.state
            if view.state == "cancelling":
                assert "cancelling" in table_text(app)
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        assert callee.cancelled and view.reason.startswith("cancelled")
        await app.action_quit()


# --------------------------------------------------------------------- 7. which account
async def test_incoming_banner_says_which_account_was_called(tmp_path):
    config = loopback_config(accounts=[
        {"name": "office", "aor": "sip:alice@127.0.0.1", "register": False},
        {"name": "lab", "aor": "sip:carol@127.0.0.1", "register": False}])
    app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data")
    events: list = []
    async with app.run_test(size=(120, 40)) as pilot:
        phone = await started(pilot, app)
        port = phone.address[1]
        await pilot.pause()
        identity = region_text(app, app.identity_line)
        assert f"Listening on 127.0.0.1:{port}" in identity and "2 accounts" in identity
        assert "dialing from office" in identity
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:carol@127.0.0.1:{port}")
            banner = app.query_one("#banner")
            await wait_for(pilot, lambda: banner.display, what="the banner")
            await wait_for(pilot, lambda: app.state.calls[out].account == "lab",
                           what="the account")
            shown = region_text(app, banner)
            assert "to lab (" in shown and "carol@127.0.0.1" in shown
            await pilot.press("f6")
            await wait_for(pilot, lambda: app.state.calls[out].state == "ended",
                           what="rejected")
        finally:
            await caller.close(timeout=2)
        await app.action_quit()


# ------------------------------------------------------------------------- 8. the trace
def test_sip_highlighting_colours_start_line_headers_and_sdp():
    from softphone.tui.screens import highlight_sip

    text = ("INVITE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h\nContent-Type: application/sdp\n\n"
            "v=0\nm=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")
    out = highlight_sip(text)
    assert out.plain == text

    def style_of(fragment: str) -> str:
        start = text.index(fragment)
        return " ".join(str(s.style) for s in out.spans if s.start <= start < s.end)

    assert "cyan" in style_of("INVITE")
    assert "blue" in style_of("Via") and "blue" in style_of("Content-Type")
    assert "magenta" in style_of("m=audio") and "magenta" in style_of("rtpmap")
    ok = highlight_sip("SIP/2.0 486 Busy Here\nCSeq: 1 INVITE\n")
    assert any("red" in str(s.style) for s in ok.spans)


async def test_trace_shows_registrations_and_options_as_a_ladder(tmp_path):
    from textual.widgets import DataTable

    from softphone.tui.screens import TraceScreen

    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        FakeRegistrar, local_addr=("127.0.0.1", 0))
    registrar.status = 200
    reg_port = transport.get_extra_info("sockname")[1]
    config = loopback_config(accounts=[{"name": "office", "password": "pw",
                                        "aor": f"sip:1001@127.0.0.1:{reg_port}"}])
    app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data")
    prober, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=("127.0.0.1", 0))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            phone = await started(pilot, app)
            await wait_for(pilot, lambda: app.state.accounts["office"].state == "registered",
                           what="registered")
            options = ("OPTIONS sip:softphone@127.0.0.1 SIP/2.0\r\n"
                       "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-probe1\r\n"
                       "From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:softphone@127.0.0.1>\r\n"
                       "Call-ID: probe-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                       "Content-Length: 0\r\n\r\n")
            prober.sendto(options.encode(), ("127.0.0.1", phone.address[1]))
            await wait_for(pilot, lambda: len(app.state.trace.messages("probe-1@127.0.0.1")) >= 2,
                           what="OPTIONS and its answer traced")
            await pilot.press("f4")  # no call needed
            screen = await wait_for(pilot, lambda: isinstance(app.screen, TraceScreen)
                                    and app.screen, what="the trace screen")
            dialogs = screen.query_one("#trace-dialogs", DataTable)
            await wait_for(pilot, lambda: dialogs.row_count >= 2, what="two Call-IDs")
            kinds = {str(dialogs.get_row(k)[0]) for k in dialogs.rows}
            assert {"REGISTER", "OPTIONS"} <= kinds
            # choose the OPTIONS dialog: its ladder has our lane and the prober's
            dialogs.focus()
            dialogs.move_cursor(row=dialogs.get_row_index("probe-1@127.0.0.1"))
            await wait_for(pilot, lambda: screen.call_id == "probe-1@127.0.0.1",
                           what="the OPTIONS dialog chosen")
            ladder = screen.query_one("#trace-list", DataTable)
            await wait_for(pilot, lambda: ladder.row_count == 2, what="two ladder rows")
            flows = [str(ladder.get_row(k)[1]) for k in ladder.rows]
            assert flows[0].startswith("│◀") and flows[0].endswith("│")  # received
            assert flows[1].endswith("▶│")  # our 200 OK, sent
            title = region_text(app, screen.query_one("#trace-title"))
            assert f"A = 127.0.0.1:{phone.address[1]} (us)" in title
            assert f"B = 127.0.0.1:{prober.get_extra_info('sockname')[1]}" in title
            message = screen.query_one("#trace-message").render()
            assert "OPTIONS sip:softphone@127.0.0.1" in str(message)
            assert any("blue" in str(s.style) for s in message.spans)  # header names
            await pilot.press("z")  # the message alone
            assert not ladder.display or ladder.region.height == 0
            await app.action_quit()
    finally:
        transport.close()
        prober.close()


# --------------------------------------------------------------------------- 9. flags
def test_tui_takes_listen_account_sip_trace_and_verbose(tmp_path, monkeypatch):
    from softphone import cli

    config = tmp_path / "config.toml"
    config.write_text('[[accounts]]\nname = "office"\naor = "sip:1@h"\nregister = false\n'
                      '[[accounts]]\nname = "lab"\naor = "sip:2@h"\nregister = false\n')
    monkeypatch.setenv("SOFTPHONE_DATA_DIR", str(tmp_path / "data"))
    seen: list[SoftphoneApp] = []
    monkeypatch.setattr(SoftphoneApp, "run", lambda self, **kw: seen.append(self))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        trace = tmp_path / "trace.txt"
        assert cli.main(["--config", str(config), "--listen", "127.0.0.1:5099", "--account",
                         "lab", "--sip-trace", str(trace), "-v"]) == 0
        app = seen[0]
        assert (app.listen, app.account, app.sip_trace) == ("127.0.0.1:5099", "lab", str(trace))
        assert app.log_file == tmp_path / "data" / "softphone.log"
        logging.getLogger("softphone.ua.test").info("a line for the log file")
        assert "a line for the log file" in app.log_file.read_text()
        assert stat.S_IMODE(app.log_file.stat().st_mode) == 0o600
        added = [h for h in root.handlers if h not in handlers]
        assert [getattr(h, "baseFilename", None) for h in added] == [str(app.log_file)]
        assert sys.stderr not in [getattr(h, "stream", None) for h in root.handlers]
    finally:
        for h in root.handlers:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)


def test_tui_flags_are_checked_before_the_screen(tmp_path, capsys, monkeypatch):
    from softphone import cli

    monkeypatch.setattr(SoftphoneApp, "run", lambda self, **kw: pytest.fail("started"))
    config = tmp_path / "config.toml"
    config.write_text('[[accounts]]\nname = "office"\naor = "sip:1@h"\n')
    assert cli.main(["--config", str(config), "--account", "nope"]) == 2
    assert "--account: no account named 'nope'" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "--listen", "nohost"]) == 2
    assert "--listen:" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "--sip-trace", "-"]) == 2
    assert "--sip-trace -: the screen is the TUI's" in capsys.readouterr().err
    monkeypatch.setenv("SOFTPHONE_AUDIO", "bogus")  # refused like the CLI does (issue 9)
    assert cli.main(["--config", str(config)]) == 2
    assert "SOFTPHONE_AUDIO: must be one of pyaudio, null (got 'bogus')" in \
        capsys.readouterr().err
    seen: list[SoftphoneApp] = []
    monkeypatch.setattr(SoftphoneApp, "run", lambda self, **kw: seen.append(self))
    assert cli.main(["--config", str(config), "--audio", "null"]) == 0  # the flag wins
    assert seen[0].audio == "null"


async def test_tui_listens_traces_and_selects_as_told(tmp_path, monkeypatch):
    """--account picks the dialing account, and it stays picked: the account table's own
    fills and re-layouts never select another row on the way (they did, for a frame)."""
    from softphone.ua.phone import Phone

    picked: list[str] = []
    select = Phone.select_account
    monkeypatch.setattr(Phone, "select_account",
                        lambda self, name: (picked.append(name), select(self, name))[1])
    trace = tmp_path / "trace.txt"
    config = loopback_config(accounts=[
        {"name": "office", "aor": "sip:alice@127.0.0.1", "register": False},
        {"name": "lab", "aor": "sip:carol@127.0.0.1", "register": False}])
    app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data",
                       listen="127.0.0.1:0", account="lab", sip_trace=str(trace))
    async with app.run_test(size=(120, 40)) as pilot:
        phone = await started(pilot, app)
        assert phone.selected_account == "lab" and app.state.selected_account == "lab"
        assert phone.address[0] == "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as callee:  # hears, never answers
            callee.bind(("127.0.0.1", 0))
            await pilot.press(*f"bob@127.0.0.1:{callee.getsockname()[1]}", "enter")
            await wait_for(pilot, lambda: trace.exists() and "INVITE sip:bob@" in
                           trace.read_text(), what="the INVITE in the trace file")
        assert set(picked) == {"lab"}, picked
        invite = trace.read_text().split("INVITE sip:bob@", 1)[1].split("\n\n", 1)[0]
        from_ = [line for line in invite.splitlines() if line.startswith("From:")]
        assert from_ and "sip:carol@127.0.0.1" in from_[0], invite  # the selected account's
        await app.action_quit()


def test_no_config_listens_on_5060_when_free(monkeypatch, tmp_path):
    import socket

    from softphone import tui

    monkeypatch.setattr(tui, "port_free", lambda host, port: True)
    assert tui.choose_listen(Config.default(), None) == ("0.0.0.0:5060", None)
    monkeypatch.setattr(tui, "port_free", lambda host, port: False)
    listen, note = tui.choose_listen(Config.default(), None)
    assert listen is None and "5060 is taken" in note
    assert tui.choose_listen(Config.default(), "127.0.0.1:7000") == ("127.0.0.1:7000", None)
    path = tmp_path / "config.toml"
    path.write_text('[network]\nlisten = "0.0.0.0:0"\n')  # port 0 on purpose: kept
    assert tui.choose_listen(load_config(path), None) == (None, None)
    monkeypatch.undo()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not tui.port_free("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert not tui.port_free("127.0.0.1", taken.getsockname()[1])


# ------------------------------------------------------------- 10. warnings on the screen
async def test_warnings_from_before_the_screen_are_shown(tmp_path):
    import dataclasses

    config = dataclasses.replace(Config.default(), warnings=(
        "/home/me/config.toml: contains a password but other users can read it",))
    app = fixed_app(tmp_path, config)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert any("other users can read it" in n for n in notifications(app))
        assert any("other users can read it" in line for line in app.state.log)
        logging.getLogger("softphone.ua.somewhere").warning("a warning while running")
        assert any("a warning while running" in line for line in app.state.log)
    logging.getLogger("softphone.ua.somewhere").warning("after the app: not in its log")
    assert not any("after the app" in line for line in app.state.log)


async def test_start_up_notes_are_shown(tmp_path):
    """What run_tui learnt before the screen (the port 5060 was taken) is shown too."""
    app = fixed_app(tmp_path, warnings=["port 5060 is taken: listening on a free port"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert any("5060 is taken" in n for n in notifications(app))
        assert any("5060 is taken" in line for line in app.state.log)


# ------------------------------------------------------------------- 11. settings screen
MINE = '''# mine
[[accounts]]
name = "office"            # the PBX
aor = "sip:1001@pbx.example.com"
password_env = "PBX_PW"

[network]
listen = "127.0.0.1:0"     # loopback only

[audio]
backend = "null"
ptime = 20
'''


async def test_settings_screen_covers_more_keys_with_human_labels(tmp_path):
    from textual.widgets import Input, Label, Select, Switch

    from softphone.tui.settings import SettingsScreen

    from peers.certs import TestCA

    path = tmp_path / "config.toml"
    mine = MINE.replace('password_env = "PBX_PW"\n',
                        'password_env = "PBX_PW"\nauth_realm = "pbx"  # not on the form\n')
    path.write_text(mine, encoding="utf-8")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cert, key = TestCA(tmp_path / "pki").issue("phone", ["127.0.0.1"])
    app = SoftphoneApp(load_config(path), audio="null", live=False, data_path=tmp_path,
                       config_path=path)
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("f2")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        assert app.focused is screen.query_one("#input-device", Select)  # the first field
        labels = {str(label.render()) for label in screen.query(Label)}
        assert {"Address of record", "Password from env var", "Listen address",
                "RTP port range", "Packet time (ms)", "DTMF as RFC 4733 events",
                "TLS CA file", "Theme", "DTMF sent as", "Accept transfers (REFER)",
                "STUN server", "TLS listen address", "TLS certificate (PEM)",
                "TLS private key (PEM)", "Media encryption", "DNS servers",
                "Keep-alive interval (s)", "UDP keep-alive as"} <= labels
        assert str(path) in region_text(app, screen.query_one("#settings-path"))
        screen.query_one("#listen", Input).value = "127.0.0.1:5070"
        screen.query_one("#rtp-ports", Input).value = "12000-12100"
        screen.query_one("#ptime", Select).value = 30
        screen.query_one("#dtmf", Switch).value = False
        screen.query_one("#tls-ca-file", Input).value = str(ca)
        screen.query_one("#theme", Select).value = "nord"
        screen.query_one("#dtmf-mode", Select).value = "info"
        screen.query_one("#accept-transfer", Switch).value = False
        screen.query_one("#stun-server", Input).value = "127.0.0.1:3478"
        screen.query_one("#dns-servers", Input).value = "127.0.0.1:5353, 127.0.0.2"
        screen.query_one("#keepalive", Input).value = "30"
        screen.query_one("#keepalive-udp", Select).value = "crlf"
        screen.query_one("#tls-listen", Input).value = "127.0.0.1:0"
        screen.query_one("#tls-cert-file", Input).value = str(cert)
        screen.query_one("#tls-key-file", Input).value = str(key)
        await click_in_view(pilot, "#account-new")
        await pilot.press(*"3001@pbx.example.com", "tab")  # completed when leaving it
        assert screen.query_one("#acc-aor", Input).value == "sip:3001@pbx.example.com"
        screen.query_one("#acc-transport", Select).value = "tls"
        screen.query_one("#acc-media-encryption", Select).value = "sdes"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen),
                       what="saved")
    saved = load_config(path)
    assert saved.network.listen == "127.0.0.1:5070"
    assert saved.network.rtp_ports == (12000, 12100)
    assert (saved.audio.ptime, saved.audio.dtmf) == (30, False)
    assert saved.sip.tls_ca_file == str(ca) and saved.ui.theme == "nord"
    assert saved.accounts[1].aor == "sip:3001@pbx.example.com"
    assert (saved.audio.dtmf_mode, saved.calls.accept_transfer) == ("info", False)
    assert saved.network.stun_server == "127.0.0.1:3478"
    assert saved.network.dns_servers == ("127.0.0.1:5353", "127.0.0.2:53")
    assert (saved.network.keepalive, saved.network.keepalive_udp) == (30, "crlf")
    assert (saved.network.tls_listen, saved.network.tls_cert_file,
            saved.network.tls_key_file) == ("127.0.0.1:0", str(cert), str(key))
    assert (saved.accounts[1].transport, saved.accounts[1].media_encryption) == ("tls", "sdes")
    assert saved.accounts[0].media_encryption == "none"
    assert saved.accounts[0].auth_realm == "pbx"  # a key the form does not show stays
    text = path.read_text(encoding="utf-8")
    # only what changed: every other line as it was, comments included
    assert [l for l in mine.splitlines() if l not in text.splitlines()] == [
        'listen = "127.0.0.1:0"     # loopback only', "ptime = 20"]
    assert 'listen = "127.0.0.1:5070"     # loopback only' in text


# --------------------------------------------------------------------------- 12. minor
async def test_redial_from_history_replaces_what_was_half_typed(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    history.add(CallRecord("outgoing", "alice", time.time(), 0.0, "answered"))
    app = make_app(tmp_path, history=history)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press(*"100")
        table = app.query_one(HistoryTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the history row")
        table.focus()
        await pilot.press("enter")  # "alice" has no host: the dial fails, the box keeps it
        await wait_for(pilot, lambda: any("call failed" in line for line in app.state.log),
                       what="the dial to fail")
        assert app.dial_input.value == "alice"
        await app.action_quit()


async def test_copy_toast_does_not_claim_what_it_cannot_know(tmp_path):
    app = fixed_app(tmp_path)
    app.state.add_call(CallView("c1@softphone", "outgoing", "sip:2002@pbx", state="connected"))
    app.state.trace.add("sent", b"INVITE sip:b@h SIP/2.0\r\nCall-ID: c1@softphone\r\n\r\n",
                        "udp", "203.0.113.5:5060", when=1000.0)
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_views()
        app.call_table.focus()
        await pilot.press("t", "c")
        toast = [n for n in notifications(app) if "clipboard" in n]
        assert toast and "if your terminal supports OSC 52" in toast[-1]
        assert "INVITE sip:b@h" in app.clipboard


def test_history_file_is_private(tmp_path):
    history = History(tmp_path / "new" / "history.sqlite3")
    history.add(CallRecord("outgoing", "sip:a@h", time.time(), 1.0, "answered"))
    history.close()
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "history.sqlite3").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700


async def test_x_clears_ended_calls(tmp_path):
    app = fixed_app(tmp_path)
    app.state.add_call(CallView("c1", "outgoing", "sip:a@h", state="ended", reason="hangup"))
    app.state.add_call(CallView("c2", "outgoing", "sip:b@h", state="connected"))
    async with app.run_test(size=(120, 40)) as pilot:
        app.refresh_views()
        app.call_table.focus()
        await pilot.press("x")
        assert list(app.state.calls) == ["c2"] and app.call_table.row_count == 1
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Clear ended calls" in titles


async def test_written_config_points_to_an_installed_example(tmp_path, monkeypatch):
    from textual.widgets import Input

    import softphone
    from softphone.tui.app import SoftphoneApp as App

    path = tmp_path / "new" / "config.toml"
    app = App(Config.default(), audio="null", live=False, data_path=tmp_path, config_path=path)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("f2")
        app.screen.query_one("#codecs", Input).value = "PCMA"
        await pilot.press("ctrl+s")
    first = path.read_text().splitlines()[0]
    named = Path(first.split(" documented in ", 1)[1])
    package = Path(softphone.__file__).resolve().parent
    assert named.is_file() and package in named.parents  # shipped with the package
    assert "[[accounts]]" in named.read_text()
    # a theme picked with no file yet: the new file gets the same header
    monkeypatch.setattr(App, "THEME_SAVE_DELAY", 0.01)
    theme_file = tmp_path / "theme" / "config.toml"
    app = App(Config.default(), audio="null", live=False, data_path=tmp_path,
              theme_file=theme_file)
    async with app.run_test(size=(120, 50)) as pilot:
        app.theme = "nord"
        await wait_for(pilot, theme_file.exists, what="the theme saved")
    assert theme_file.read_text().splitlines()[0] == first
    assert load_config(theme_file).ui.theme == "nord"
