"""The TUI's call control against real in-process UAs on loopback: do-not-disturb (key n,
noted in the history), the call-waiting banner, the transfer screen (key f) and a
transfer the far end makes, shown in the call list."""

from __future__ import annotations

import pytest

from softphone.history import History
from softphone.tui.transfer import TransferScreen
from test_tui import SIZE, _second_ua, make_app, started, table_text, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_dnd_key_refuses_calls_and_the_history_says_so(tmp_path):
    app = make_app(tmp_path, history=History(tmp_path / "h.sqlite3"))
    events: list = []
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        caller = await _second_ua(events)
        try:
            app.call_table.focus()
            await pilot.press("n")
            await wait_for(pilot, lambda: app.state.dnd, what="DND on")
            assert "DND" in str(app.identity_line.render())
            await caller.call(f"sip:alice@127.0.0.1:{phone.address[1]}")
            ended = await wait_for(pilot, lambda: [d for n, d in events if n == "ended"],
                                   what="the caller refused")
            assert ended[0]["status"] == 486
            assert not app.query_one("#banner").display  # nothing rang
            records = await wait_for(pilot, lambda: app.history.recent(5), what="history")
            assert records[0].outcome == "do not disturb (486)"
            await pilot.press("n")
            await wait_for(pilot, lambda: not app.state.dnd, what="DND off")
        finally:
            await caller.close(timeout=2)
        await app.action_quit()


async def test_call_waiting_banner_transfer_screen_and_a_remote_transfer(tmp_path):
    app = make_app(tmp_path)
    events: list = []
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        bob = await _second_ua(events)
        carol = await _second_ua([])
        try:
            uri = f"sip:alice@127.0.0.1:{phone.address[1]}"
            first = await bob.call(uri)
            await wait_for(pilot, lambda: app.query_one("#banner").display, what="ringing")
            await pilot.press("a")
            view = await wait_for(pilot, lambda: app.state.calls.get(first), what="the call")
            await wait_for(pilot, lambda: view.state == "connected", what="connected")
            second = await carol.call(uri)
            await wait_for(pilot, lambda: second in app.state.calls, what="the second call")
            text = str(app.query_one("#banner-text").render())
            assert "Call waiting" in text and "holds the current call" in text
            assert "call waiting" in table_text(app)
            await carol.phone.execute("hangup", {"call_id": second})
            # f opens the transfer screen on the selected call; Escape leaves it
            app.call_table.select_call(first)
            app.call_table.focus()
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, TransferScreen),
                           what="the transfer screen")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, TransferScreen),
                           what="back")
            # bob transfers us to carol: the call list says so, and the new call appears
            carol_port = carol.phone.address[1]
            await bob.phone.execute("transfer", {"call_id": first,
                                                 "target": f"sip:carol@127.0.0.1:{carol_port}"})
            await wait_for(pilot, lambda: view.transfer is not None, what="transfer shown")
            assert "transferred to sip:carol@" in view.transfer
            incoming = await wait_for(
                pilot, lambda: [c for c in carol.phone.live_calls()
                                if c.direction == "incoming"], what="carol rings")
            await carol.phone.execute("answer", {"call_id": incoming[0].call_id})
            await wait_for(pilot, lambda: view.state == "ended", what="the old call ends")
            assert "succeeded" in view.transfer
            outgoing = [v for v in app.state.calls.values() if v.direction == "outgoing"]
            assert outgoing and outgoing[0].state == "connected"
        finally:
            await bob.close(timeout=2)
            await carol.close(timeout=2)
        await app.action_quit()
