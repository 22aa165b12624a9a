"""The TUI's call control against real in-process UAs on loopback: do-not-disturb (key n,
noted in the history), the call-waiting banner, the transfer screen (key f) and a
transfer the far end makes, shown in the call list."""

from __future__ import annotations

import contextlib

import pytest
from textual.command import CommandPalette
from textual.widgets import Input, OptionList

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


# ============================================================================ transfer,
# conference, swap and split driven from the TUI's own keys, screen and palette
class Party:
    """A phone in this process that answers at once (``auto``) or is answered by
    command; its calls as the test needs them."""

    def __init__(self, user: str, auto: bool = False) -> None:
        from softphone.ua.phone import Phone, PhoneOptions

        from test_tui import loopback_config

        self.events: list = []
        self.phone = Phone(loopback_config(), PhoneOptions(
            listen="127.0.0.1:0", user=user, auto_answer=auto, control=False,
            preload_media=False))
        self.phone.bus.subscribe(lambda e: self.events.append((e.name, e.to_dict())))
        self.uri = ""

    async def start(self) -> "Party":
        await self.phone.start()
        self.uri = f"sip:{self.phone.options.user}@127.0.0.1:{self.phone.address[1]}"
        return self

    def connected(self) -> list:
        return [c for c in self.phone.live_calls() if c.state == "connected"]

    async def close(self) -> None:
        await self.phone.close(timeout=2)


@contextlib.asynccontextmanager
async def tui_with_bob_and_carol(tmp_path, *, carol_answers: bool = False):
    """The TUI's app and pilot with two more phones in this process; alice is the
    TUI's address."""
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        bob = await Party("bob").start()
        carol = await Party("carol", auto=carol_answers).start()
        try:
            yield app, pilot, f"sip:alice@127.0.0.1:{phone.address[1]}", bob, carol
        finally:
            await bob.close()
            await carol.close()
        await app.action_quit()


async def _answered_from(pilot, app, party: Party, alice: str):
    """``party`` calls the TUI; the TUI answers with its key; the TUI's view of the call."""
    before = set(app.state.calls)
    await party.phone.execute("dial", {"uri": alice})
    view = await wait_for(pilot, lambda: next((v for k, v in app.state.calls.items()
                                               if k not in before and v.state == "ringing"),
                                              None), what="the call to ring")
    app.call_table.select_call(view.call_id)
    app.call_table.focus()
    await pilot.press("a")
    await wait_for(pilot, lambda: view.state == "connected" and party.connected(),
                   what=f"{party.uri} connected")
    return view


async def _open_transfer(pilot, app, view) -> TransferScreen:
    app.call_table.select_call(view.call_id)
    app.call_table.focus()
    await pilot.press("f")
    return await wait_for(pilot, lambda: isinstance(app.screen, TransferScreen) and app.screen,
                          what="the transfer screen")


async def test_blind_transfer_to_a_target_typed_in_the_transfer_screen(tmp_path):
    async with tui_with_bob_and_carol(tmp_path, carol_answers=True) as (app, pilot, alice,
                                                                          bob, carol):
        view = await _answered_from(pilot, app, bob, alice)
        await _open_transfer(pilot, app, view)
        await pilot.press(*carol.uri, "enter")  # typed, key by key; Enter: blind
        await wait_for(pilot, lambda: not isinstance(app.screen, TransferScreen),
                       what="the screen closed")
        # bob got our REFER and called carol, who answered: our call ends with it
        await wait_for(pilot, lambda: view.state == "ended", what="our call ended")
        assert [d["target"] for n, d in bob.events
                if n == "transfer" and d["role"] == "transferee"][0] == carol.uri
        [moved] = await wait_for(pilot, bob.connected, what="bob talks to carol")
        assert str(moved.remote.uri).startswith("sip:carol@")
        assert "succeeded" in (view.transfer or ""), view.transfer


async def test_attended_transfer_joins_two_calls_from_the_transfer_screen(tmp_path):
    async with tui_with_bob_and_carol(tmp_path) as (app, pilot, alice, bob, carol):
        first = await _answered_from(pilot, app, bob, alice)
        second = await _answered_from(pilot, app, carol, alice)  # holds bob's call
        await wait_for(pilot, lambda: first.on_hold, what="bob held")
        screen = await _open_transfer(pilot, app, first)
        [join] = screen.query("Button")
        assert "carol@" in str(join.label) and "attended" in str(join.label)
        await pilot.click(f"#{join.id}")
        # bob calls carol with Replaces: carol's call with us is replaced, ours end
        await wait_for(pilot, lambda: first.state == "ended" and second.state == "ended",
                       what="both our calls ended", timeout=15)
        [bobs] = await wait_for(pilot, bob.connected, what="bob talks to carol")
        [carols] = carol.connected()
        assert str(bobs.remote.uri).startswith("sip:carol@")
        assert carols.replaces is not None  # it took over the call carol had with us


async def test_swap_and_conference_keys_and_split_from_the_palette(tmp_path):
    async with tui_with_bob_and_carol(tmp_path) as (app, pilot, alice, bob, carol):
        first = await _answered_from(pilot, app, bob, alice)
        second = await _answered_from(pilot, app, carol, alice)
        await wait_for(pilot, lambda: first.on_hold and not second.on_hold,
                       what="answering carol held bob")
        # w: swap — carol's call is held, bob's resumed
        app.call_table.select_call(second.call_id)
        app.call_table.focus()
        await pilot.press("w")
        await wait_for(pilot, lambda: second.on_hold and not first.on_hold,
                       what="swapped")
        assert "on hold" in table_text(app)
        # c: conference — both mixed, none held
        await pilot.press("c")
        await wait_for(pilot, lambda: first.conference and second.conference
                       and not first.on_hold and not second.on_hold,
                       what="the conference")
        assert set(app.phone.agent.conference.calls) == {first.call_id, second.call_id}
        assert table_text(app).count("conference") == 2
        # the command palette: "Split conference"
        await pilot.press("ctrl+p")
        # typed into its search box (set, not pressed key by key: with three phones'
        # media in this process the pilot waits up to 2 s per key for the CPU to idle)
        palette = await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette)
                                 and app.screen, what="the palette")
        palette.query_one(Input).value = "split"
        await wait_for(pilot, lambda: _palette_text(app).startswith("Split conference"),
                       what="the palette offers it first")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not first.conference and not second.conference,
                       what="split")
        assert not app.phone.agent.conference or not app.phone.agent.conference.calls


def _palette_text(app) -> str:
    if not isinstance(app.screen, CommandPalette):
        return ""
    options = app.screen.query_one(OptionList)
    return "\n".join(str(options.get_option_at_index(i).prompt)
                     for i in range(options.option_count))


async def test_processing_key_switches_echo_cancellation_for_the_next_call(tmp_path):
    """The processing command's key (``e``) toggles the canceller where the phone keeps it
    (what the next call's microphone gets) and says what is on now."""
    from softphone.ua.commands import COMMANDS

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        before = phone.devices.processing
        app.call_table.focus()
        await pilot.press(COMMANDS["processing"].key)
        await wait_for(pilot, lambda: phone.devices.processing.echo_cancellation
                       is not before.echo_cancellation, what="the canceller switched")
        note = await wait_for(pilot, lambda: [n.message for n in app._notifications
                                              if n.message.startswith(("on: ", "microphone"))],
                              what="the notice")
        assert ("echo cancellation" in note[-1]) is (not before.echo_cancellation), note
        await pilot.press(COMMANDS["processing"].key)
        await wait_for(pilot, lambda: phone.devices.processing == before, what="switched back")
        await app.action_quit()
