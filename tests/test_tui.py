"""Pilot tests of the TUI against a real in-process UA on loopback (audio: null)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from softphone.config import Config
from softphone.history import History
from softphone.tui.app import SoftphoneApp
from softphone.tui.widgets import CallTable, DialInput, HistoryTable

pytestmark = pytest.mark.timeout(60)

SIZE = (120, 40)


def loopback_config(**extra) -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                             "audio": {"backend": "null", "codecs": ["PCMU", "PCMA"]}, **extra})


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition"):
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            import os
            if os.environ.get("TUI_TIMING"):
                print(f"{time.monotonic():.2f} {what}")
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_app(tmp_path: Path, **kwargs) -> SoftphoneApp:
    return SoftphoneApp(loopback_config(), audio="null", data_path=tmp_path / "data",
                        config_path=tmp_path / "config.toml", **kwargs)


async def started(pilot, app: SoftphoneApp):
    await wait_for(pilot, lambda: app.phone is not None and app.phone.ready.is_set()
                   and app.phone.uas, what="the UA to start")
    return app.phone


async def dial_echo(pilot, app: SoftphoneApp):
    assert isinstance(app.focused, DialInput)  # DESIGN §3: the dial input has focus
    await pilot.press(*"echo", "enter")
    view = await wait_for(pilot, lambda: next(iter(app.state.calls.values()), None),
                          what="the call to appear")
    await wait_for(pilot, lambda: view.state == "connected", what="connected")
    return view


def table_text(app: SoftphoneApp) -> str:
    table = app.query_one(CallTable)
    return "\n".join(" ".join(str(c) for c in table.get_row(k)) for k in table.rows)


async def test_dial_echo_mute_dtmf_hangup(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        view = await dial_echo(pilot, app)
        table = app.query_one(CallTable)
        assert app.focused is table and table.selected_call == view.call_id
        await wait_for(pilot, lambda: "connected" in table_text(app), what="row update")
        assert view.codec in ("opus", "G722", "PCMU", "PCMA")
        assert view.codec in table_text(app)
        call = phone.call(view.call_id)
        # mute
        await pilot.press("m")
        await wait_for(pilot, lambda: call.muted and call.media.muted, what="muted")
        assert "muted" in table_text(app)
        await pilot.press("m")
        await wait_for(pilot, lambda: not call.muted, what="unmuted")
        # DTMF over RFC 4733: the echo UA's call sees the digits
        echo_ua = phone.echo.ua
        echo_call = next(iter(echo_ua.calls.values()))
        await pilot.press("1", "number_sign")
        await wait_for(pilot, lambda: call.media.stats().dtmf_sent >= 2, what="DTMF sent")
        await wait_for(pilot, lambda: echo_call.media.stats().dtmf_received >= 2,
                       what="DTMF received by the echo UA")
        assert view.dtmf_sent == "1#"
        # quality numbers arrive from the once-a-second poll
        await wait_for(pilot, lambda: view.mos is not None, what="MOS")
        assert 1.0 <= view.mos <= 4.5
        # hang up
        await pilot.press("h")
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        assert view.reason == "hangup"
        await wait_for(pilot, lambda: "ended: hangup" in table_text(app), what="row ended")
        await wait_for(pilot, lambda: echo_call.ended, what="echo side ended")
        await app.action_quit()


async def test_dial_error_is_shown(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press(*"alice", "enter")  # no account: a bare user has no domain
        await wait_for(pilot, lambda: any("needs a host" in line for line in app.state.log),
                       what="the error")
        assert not app.state.calls
        assert isinstance(app.focused, DialInput)
        await app.action_quit()


async def _second_ua(events: list):
    from softphone.ua import UserAgent

    caller = UserAgent(loopback_config(), None, listen="127.0.0.1:0",
                       on_event=lambda name, data: events.append((name, data)), user="bob")
    await caller.start()
    return caller


@pytest.mark.parametrize("key", ["a", "r"])
async def test_incoming_answer_or_reject(tmp_path, key):
    app = make_app(tmp_path)
    events: list = []
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        ua = next(iter(phone.uas.values()))
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:alice@127.0.0.1:{ua.transport.port}")
            banner = app.query_one("#banner")
            await wait_for(pilot, lambda: banner.display, what="the incoming banner")
            assert "bob@127.0.0.1" in str(app.query_one("#banner-text").render())
            table = app.query_one(CallTable)
            assert app.focused is table  # focus moved so that a/r work at once
            await pilot.press(key)
            if key == "a":
                await wait_for(pilot, lambda: any(n == "answered" for n, _ in events),
                               what="the caller to see answered")
                view = app.state.calls[out.call_id]
                await wait_for(pilot, lambda: view.state == "connected", what="connected")
                await out.hangup()
                await wait_for(pilot, lambda: view.state == "ended", what="remote hangup")
                assert view.reason == "remote-hangup"
            else:
                ended = await wait_for(pilot, lambda: [d for n, d in events if n == "ended"],
                                       what="the caller to see ended")
                assert ended[0]["status"] == 486
                assert ended[0]["reason"] == "rejected"
            await wait_for(pilot, lambda: not banner.display, what="banner gone")
        finally:
            await caller.close(timeout=2)
        await app.action_quit()


async def test_trace_pane_shows_invite_200_ack(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        view = await dial_echo(pilot, app)
        await wait_for(pilot, lambda: any(e.summary == "ACK" for e in
                                          app.state.trace.messages(view.call_id)),
                       what="ACK traced")
        await pilot.press("t")
        from textual.widgets import DataTable

        from softphone.tui.screens import TraceScreen

        screen = await wait_for(pilot, lambda: isinstance(app.screen, TraceScreen)
                                and app.screen, what="the trace screen")
        rows = screen.query_one("#trace-list", DataTable)
        await wait_for(pilot, lambda: rows.row_count >= 3, what="trace rows")
        summaries = [str(rows.get_row(k)[3]) for k in rows.rows]
        assert summaries[0] == "INVITE"
        assert "200 OK (INVITE)" in summaries
        assert "ACK" in summaries
        assert summaries.index("200 OK (INVITE)") < summaries.index("ACK")
        # the first message is shown whole; moving down shows the next one
        body = str(screen.query_one("#trace-message").render())
        assert body.startswith("sent to udp") and "INVITE sip:echo@" in body
        assert "Call-ID: " + view.call_id in body
        await pilot.press("w")
        saved = screen.save_dir / f"trace-{view.call_id.replace('@', '_')}.txt"
        await wait_for(pilot, saved.exists, what="saved trace")
        text = saved.read_text()
        assert text.startswith("--- ") and " sent udp 127.0.0.1:" in text and "ACK sip:" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, TraceScreen), what="back")
        await pilot.press("h")
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        await app.action_quit()


async def test_history_persists_and_redials(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        view = await dial_echo(pilot, app)
        await pilot.press("h")
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        await app.action_quit()
    db = tmp_path / "data" / "history.sqlite3"
    records = History(db).recent()
    assert len(records) == 1 and records[0].outcome == "answered"
    assert records[0].party == "echo" and records[0].direction == "outgoing"
    # a second app instance sees it, and Enter on the row redials it
    app2 = make_app(tmp_path)
    async with app2.run_test(size=SIZE) as pilot:
        await started(pilot, app2)
        table = app2.query_one(HistoryTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="history row")
        assert "echo" in " ".join(str(c) for c in table.get_row_at(0))
        table.focus()
        await pilot.press("enter")
        view2 = await wait_for(pilot, lambda: next(iter(app2.state.calls.values()), None),
                               what="redial")
        await wait_for(pilot, lambda: view2.state == "connected", what="redial connected")
        assert view2.target == "echo" and view2.uri.startswith("sip:echo@127.0.0.1")
        await pilot.press("h")
        await wait_for(pilot, lambda: view2.state == "ended", what="ended")
        # recall in the dial input
        app2.query_one(DialInput).focus()
        await pilot.press("up")
        assert app2.query_one(DialInput).value == records[0].party
        await app2.action_quit()
    assert len(History(db).recent()) == 2
