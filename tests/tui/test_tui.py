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
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_app(tmp_path: Path, **kwargs) -> SoftphoneApp:
    return SoftphoneApp(loopback_config(), audio="null", data_path=tmp_path / "data",
                        config_path=tmp_path / "config.toml", **kwargs)


async def click_in_view(pilot, selector: str) -> None:
    """Click a widget of a scrolling screen (Settings is taller than the terminal): scroll
    it into view first, as a user would."""
    screen = pilot.app.screen
    widget = screen.query_one(selector)
    widget.scroll_visible(animate=False)
    # the scroll lands after a refresh or two (more under load): click once it has
    await wait_for(pilot, lambda: widget.region.height > 0
                   and screen.region.contains_region(widget.region),
                   what=f"{selector} scrolled into view")
    await pilot.click(selector)


async def started(pilot, app: SoftphoneApp):
    await wait_for(pilot, lambda: app.ready.is_set() and app.phone is not None
                   and app.phone.started, what="the phone to start")
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
        echo_call = next(iter(phone.echo.agent.calls.values()))
        await pilot.press("1", "number_sign")
        await wait_for(pilot, lambda: call.media.live_stats().dtmf_sent >= 2, what="DTMF sent")
        await wait_for(pilot, lambda: echo_call.media.live_stats().dtmf_received >= 2,
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


async def test_hold_and_resume_from_keyboard(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        view = await dial_echo(pilot, app)
        call = phone.call(view.call_id)
        echo_call = next(iter(phone.echo.agent.calls.values()))
        await pilot.press("o")
        await wait_for(pilot, lambda: view.on_hold, what="on hold")
        await wait_for(pilot, lambda: "on hold" in table_text(app), what="row says on hold")
        assert call.media.direction == "sendonly" and echo_call.remote_hold
        await pilot.press("o")
        await wait_for(pilot, lambda: not view.on_hold and "on hold" not in table_text(app),
                       what="resumed")
        assert call.media.direction == "sendrecv" and not echo_call.remote_hold
        await pilot.press("h")
        await wait_for(pilot, lambda: view.state == "ended", what="ended")
        await pilot.press("o")  # nothing to hold: a notice, no crash
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
        await pilot.press("escape")  # DESIGN §3: Escape leaves the dial input
        assert isinstance(app.focused, CallTable)
        await pilot.press("d")
        assert isinstance(app.focused, DialInput)
        phone = app.phone
        await pilot.press("ctrl+q")  # quits from anywhere, the dial input included
        await wait_for(pilot, lambda: app.phone is None and app._exit, what="exit")
        assert phone.stopped.is_set()  # the phone was closed on the way out


class Caller:
    """A second phone in the process, calling the TUI's through its commands."""

    def __init__(self, events: list) -> None:
        from softphone.ua.phone import Phone, PhoneOptions

        self.phone = Phone(loopback_config(), PhoneOptions(listen="127.0.0.1:0", user="bob",
                                                           control=False, preload_media=False))
        self.phone.bus.subscribe(lambda e: events.append((e.name, e.to_dict())))

    async def call(self, uri: str) -> str:
        return (await self.phone.execute("dial", {"uri": uri}))["call_id"]

    async def hangup(self, call_id: str) -> None:
        await self.phone.execute("hangup", {"call_id": call_id})

    async def close(self, timeout: float) -> None:
        await self.phone.close(timeout=timeout)


async def _second_ua(events: list) -> Caller:
    caller = Caller(events)
    await caller.phone.start()
    return caller


@pytest.mark.parametrize("key", ["a", "r"])
async def test_incoming_answer_or_reject(tmp_path, key):
    app = make_app(tmp_path)
    events: list = []
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:alice@127.0.0.1:{phone.address[1]}")
            banner = app.query_one("#banner")
            await wait_for(pilot, lambda: banner.display, what="the incoming banner")
            assert "bob@127.0.0.1" in str(app.query_one("#banner-text").render())
            table = app.query_one(CallTable)
            assert app.focused is table  # focus moved so that a/r work at once
            await pilot.press(key)
            if key == "a":
                await wait_for(pilot, lambda: any(n == "answered" for n, _ in events),
                               what="the caller to see answered")
                view = app.state.calls[out]
                await wait_for(pilot, lambda: view.state == "connected", what="connected")
                await caller.hangup(out)
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
        await pilot.press("c")
        assert "ACK sip:" in app.clipboard and app.clipboard.startswith("--- ")
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


class FakeRegistrar(asyncio.DatagramProtocol):
    """Answers REGISTER on loopback with ``self.status`` (200 grants 60 s)."""

    def __init__(self) -> None:
        self.status = 403
        self.requests = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        lines = head.split("\r\n")
        if not lines[0].startswith("REGISTER"):
            return
        self.requests += 1
        keep = [l for l in lines[1:] if l.split(":", 1)[0].lower() in
                ("via", "from", "call-id", "cseq", "contact")]
        out = []
        for line in keep:
            if line.lower().startswith("contact") and self.status == 200:
                line = line.split(";expires=")[0] + ";expires=60"
            elif line.lower().startswith("contact"):
                continue
            out.append(line)
        to = next(l for l in lines if l.lower().startswith("to:"))
        phrase = "OK" if self.status == 200 else "Forbidden"
        response = "\r\n".join([f"SIP/2.0 {self.status} {phrase}", *out, to + ";tag=reg1",
                                "Content-Length: 0", "", ""])
        self.transport.sendto(response.encode(), addr)


async def test_account_panel_shows_failure_and_retry(tmp_path):
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        FakeRegistrar, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        config = loopback_config(accounts=[{
            "name": "office", "aor": f"sip:1001@127.0.0.1:{port}", "password": "pw"}])
        app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data")
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            table = app.account_table

            def row() -> str:
                return " ".join(str(c) for c in table.get_row("office")) \
                    if table.row_count else ""

            await wait_for(pilot, lambda: "failed: 403 Forbidden" in row(), what="failure")
            registrar.status = 200
            await pilot.press("ctrl+r")  # retry on demand
            await wait_for(pilot, lambda: "registered (" in row(), what="registered")
            left = app.state.accounts["office"].left()
            assert 50 < left <= 60
            assert "sip:1001@127.0.0.1" in str(app.identity_line.render())
            await app.action_quit()
        # quitting unregistered (Expires: 0) through the same registrar
        assert registrar.requests >= 3
    finally:
        transport.close()


async def test_settings_add_account_restarts_phone(tmp_path):
    from textual.widgets import Input, Switch

    from softphone.config import load_config

    path = tmp_path / "config.toml"
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 60)) as pilot:
        await started(pilot, app)
        await pilot.press("f2")
        screen = app.screen
        await click_in_view(pilot, "#account-new")
        screen.query_one("#acc-name", Input).value = "lab"
        screen.query_one("#acc-aor", Input).value = "sip:2001@127.0.0.1:5999"
        screen.query_one("#acc-register", Switch).value = False
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "lab" in app.state.accounts and app.ready.is_set(),
                       what="the restarted phone")
        assert app.state.accounts["lab"].describe() == "not registering"
        assert "sip:2001@127.0.0.1:5999" in app.state.identity
        assert load_config(path).accounts[0].name == "lab"
        await app.action_quit()


async def test_two_calls_listed_and_selectable(tmp_path):
    app = make_app(tmp_path)
    events: list = []
    async with app.run_test(size=SIZE) as pilot:
        phone = await started(pilot, app)
        echo_view = await dial_echo(pilot, app)
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:alice@127.0.0.1:{phone.address[1]}")
            await wait_for(pilot, lambda: out in app.state.calls, what="incoming")
            table = app.call_table
            assert table.row_count == 2 and table.selected_call == out
            await pilot.press("a")
            incoming = app.state.calls[out]
            await wait_for(pilot, lambda: incoming.state == "connected", what="answered")
            # move the selection to the echo call and hang that one up only
            await pilot.press("up")
            assert table.selected_call == echo_view.call_id
            await pilot.press("h")
            await wait_for(pilot, lambda: echo_view.state == "ended", what="echo ended")
            assert incoming.state == "connected"
            await pilot.press("down", "h")
            await wait_for(pilot, lambda: any(n == "ended" for n, _ in events),
                           what="the caller to see the BYE")
            assert incoming.reason == "hangup"
        finally:
            await caller.close(timeout=2)
        await app.action_quit()


def test_first_frame_imports_no_media_stack(tmp_path):
    """`import softphone.tui` and the first frame stay clear of aiortc, PyAV and numpy."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import softphone.tui\n"
        "from softphone.config import Config\n"
        "from softphone.tui.app import SoftphoneApp\n"
        "heavy = ('aiortc', 'av', 'numpy', 'softphone.ua.phone', 'softphone.ua.stack',\n"
        "         'softphone.media.rtp')\n"
        "class Probe(SoftphoneApp):\n"
        "    def _start_phone(self):\n"
        "        self.exit(result=[m for m in heavy if m in sys.modules])\n"
        f"app = Probe(Config.default(), audio='null', data_path=__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "print(app.run(headless=True))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


async def test_ctl_drives_the_running_tui(tmp_path):
    """``softphone ctl`` (a real process) talks to the TUI's phone over its socket: dial,
    list, hang up, and an unknown command answered with an error."""
    import json
    import sys

    sock = tmp_path / "tui.sock"
    config = loopback_config(control={"socket": str(sock)})
    app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data")

    async def ctl(*args: str) -> tuple[int, dict]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "softphone", "ctl", "--socket", str(sock), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode, json.loads(out.splitlines()[0])

    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        rc, reply = await ctl("dial", "echo")
        assert rc == 0 and reply["ok"], reply
        call_id = reply["result"]["call_id"]
        view = await wait_for(pilot, lambda: app.state.calls.get(call_id), what="the row")
        await wait_for(pilot, lambda: view.state == "connected", what="connected")
        await wait_for(pilot, lambda: "connected" in table_text(app), what="the row says so")
        rc, reply = await ctl("calls")
        assert [c["state"] for c in reply["result"]["calls"]] == ["connected"]
        rc, reply = await ctl("hangup")
        assert rc == 0 and reply["result"] == {"call_id": call_id, "reason": "hangup"}
        await wait_for(pilot, lambda: view.state == "ended", what="ended in the TUI")
        rc, reply = await ctl("redial")
        assert rc == 1 and "unknown command 'redial'" in reply["error"]
        assert app.phone is not None and app.phone.started  # unharmed
        # an incoming call, answered with ctl: the TUI shows it connected
        events: list = []
        caller = await _second_ua(events)
        try:
            out = await caller.call(f"sip:alice@127.0.0.1:{app.phone.address[1]}")
            banner = app.query_one("#banner")
            await wait_for(pilot, lambda: banner.display, what="the incoming banner")
            rc, reply = await ctl("answer")
            assert rc == 0 and reply["ok"], reply
            await wait_for(pilot, lambda: any(n == "answered" and d["call_id"] == out
                                              for n, d in events),
                           what="the caller to see answered")
            view = app.state.calls[out]
            await wait_for(pilot, lambda: view.state == "connected", what="connected")
            await wait_for(pilot, lambda: not banner.display, what="the banner to go")
            await caller.hangup(out)
            await wait_for(pilot, lambda: view.state == "ended", what="ended in the TUI")
        finally:
            await caller.close(timeout=3)
        await app.action_quit()
    assert not sock.exists()


async def test_a_target_of_the_other_ip_family_fails_at_once_in_the_tui(tmp_path):
    """The resolver's family check reaches the TUI's user: an IPv6 target from the IPv4
    socket says what to do in the log, at once, and leaves no call row."""
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press(*"sip:bob@[::1]:5060", "enter")
        line = await wait_for(pilot, lambda: next(
            (l for l in app.state.log if "call failed" in l), None), timeout=5,
            what="the error")
        assert "IPv6 address ::1 from an IPv4 socket" in line and "--listen [::]:0" in line
        assert not app.state.calls
        await app.action_quit()


async def test_two_accounts_each_show_their_state(tmp_path):
    """One stack carries both accounts; the panel shows each one's own state."""
    loop = asyncio.get_running_loop()
    transports = []
    registrars = []
    for status in (200, 403):
        transport, registrar = await loop.create_datagram_endpoint(
            FakeRegistrar, local_addr=("127.0.0.1", 0))
        registrar.status = status
        transports.append(transport)
        registrars.append(registrar)
    ports = [t.get_extra_info("sockname")[1] for t in transports]
    try:
        config = loopback_config(accounts=[
            {"name": "home", "aor": f"sip:1001@127.0.0.1:{ports[0]}", "password": "pw"},
            {"name": "work", "aor": f"sip:2002@127.0.0.1:{ports[1]}", "password": "pw"}])
        app = SoftphoneApp(config, audio="null", data_path=tmp_path / "data")
        async with app.run_test(size=SIZE) as pilot:
            phone = await started(pilot, app)
            table = app.account_table

            def row(name: str) -> str:
                return " ".join(str(c) for c in table.get_row(name)) \
                    if name in [k.value for k in table.rows] else ""

            await wait_for(pilot, lambda: "registered (" in row("home"), what="home registered")
            await wait_for(pilot, lambda: "failed: 403 Forbidden" in row("work"),
                           what="work refused")
            assert phone.address[1] > 0 and len(phone.agent.accounts) == 2  # one stack
            await app.action_quit()
        assert registrars[0].requests >= 2 and registrars[1].requests >= 1
    finally:
        for transport in transports:
            transport.close()
