"""Snapshots of the main views, fed fixed state (no live UA) so they are deterministic.

Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update`` after a
deliberate change to the layout, and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softphone.config import Config
from softphone.tui.app import SoftphoneApp
from softphone.tui.state import AccountView, CallView, PhoneState
from softphone.tui.widgets import DialInput

pytestmark = pytest.mark.timeout(60)

SIZE = (120, 40)
IDENTITY = "sip:1001@pbx.example.com (listening on 127.0.0.1:5060)"
ACCOUNT_CONFIG = {"accounts": [{"name": "office", "aor": "sip:1001@pbx.example.com",
                                "password_env": "PBX_PASSWORD"}],
                  "network": {"listen": "127.0.0.1:5060"}}


def make_app(tmp_path, *, accounts: bool = True) -> SoftphoneApp:
    config = Config.from_dict(ACCOUNT_CONFIG) if accounts else Config.default()
    state = PhoneState(audio_backend="null")
    if accounts:
        state.identity = IDENTITY
        state.accounts["office"] = AccountView("office", "sip:1001@pbx.example.com",
                                               state="registered", seconds_left=512)
        state.selected_account = "office"
    else:
        state.identity = "sip:softphone@127.0.0.1:5060 (listening on 127.0.0.1:5060)"
    # a fixed path (the settings screen shows it); nothing is saved in these tests
    return SoftphoneApp(config, audio="null", live=False, data_path=tmp_path / "data",
                        config_path=Path("/home/me/.config/softphone/config.toml"),
                        state=state)


def still(app: SoftphoneApp) -> None:
    """No blinking cursor in a picture."""
    for widget in app.query(DialInput):
        widget.cursor_blink = False


def connected_call() -> CallView:
    return CallView(call_id="c1@softphone", direction="outgoing", uri="sip:2002@pbx.example.com",
                    display_name="Reception", state="connected", codec="PCMU", duration=65.0,
                    jitter_ms=1.4, loss_pct=0.5, rtt_ms=24.0, mos=4.36, started_at=0.0,
                    dtmf_sent="12#", input_dbfs=-18.0, output_dbfs=-31.0)


def test_snapshot_idle(snap_compare, tmp_path):
    app = make_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: still(app))


def test_snapshot_no_config(snap_compare, tmp_path):
    app = make_app(tmp_path, accounts=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: still(app))


def test_snapshot_incoming(snap_compare, tmp_path):
    app = make_app(tmp_path)
    app.state.add_call(connected_call())
    app.state.add_call(CallView(call_id="in1@pbx", direction="incoming",
                                uri="sip:3003@pbx.example.com", display_name="Alice Example",
                                state="ringing", started_at=0.0, account="office",
                                called="sip:1001@pbx.example.com"))

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.select_call("in1@pbx")
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_snapshot_connected(snap_compare, tmp_path):
    app = make_app(tmp_path)
    app.state.add_call(connected_call())

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


INVITE = ("INVITE sip:2002@pbx.example.com SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfixed;rport\r\n"
          "From: <sip:1001@pbx.example.com>;tag=abc\r\nTo: <sip:2002@pbx.example.com>\r\n"
          "Call-ID: c1@softphone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
RINGING = ("SIP/2.0 180 Ringing\r\nCall-ID: c1@softphone\r\nCSeq: 1 INVITE\r\n"
           "To: <sip:2002@pbx.example.com>;tag=xyz\r\n\r\n").encode()
OK = ("SIP/2.0 200 OK\r\nCall-ID: c1@softphone\r\nCSeq: 1 INVITE\r\n"
      "To: <sip:2002@pbx.example.com>;tag=xyz\r\n\r\n").encode()
ACK = ("ACK sip:2002@127.0.0.1:5070 SIP/2.0\r\nCall-ID: c1@softphone\r\nCSeq: 1 ACK\r\n"
       "\r\n").encode()


def test_snapshot_trace_open(snap_compare, tmp_path):
    app = make_app(tmp_path)
    app.state.add_call(connected_call())
    for i, (direction, data) in enumerate([("sent", INVITE), ("received", RINGING),
                                           ("received", OK), ("sent", ACK)]):
        app.state.trace.add(direction, data, "udp", "203.0.113.5:5060", when=1_700_000_000 + i)

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, press=["t"], run_before=before)


def test_snapshot_settings(snap_compare, tmp_path):
    app = make_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, press=["f2"],
                        run_before=lambda pilot: still(app))


LONG_REASON = ("the server rejected our credentials for realm 'pbx' (check the password and "
               "auth user '2002')")


def test_snapshot_narrow_80x24(snap_compare, tmp_path):
    """80×24: two accounts (one refused with a long reason), a connected call and one
    refused by a proxy; nothing cut that is not shown whole somewhere."""
    app = make_app(tmp_path)
    app.state.local_address = "127.0.0.1:5060"
    app.state.accounts["work"] = AccountView("work", "sip:2002@pbx.example.com",
                                             state="failed", status=401, reason=LONG_REASON)
    app.state.add_call(connected_call())
    app.state.add_call(CallView(call_id="c2@softphone", direction="outgoing",
                                uri="sip:9@relay.example.com", state="ended",
                                reason="rejected 403 Not relaying", started_at=0.0))

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.select_call("c1@softphone")
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def _traced(app: SoftphoneApp) -> None:
    app.state.local_address = "127.0.0.1:5060"
    app.state.add_call(connected_call())
    register = ("REGISTER sip:pbx.example.com SIP/2.0\r\nCall-ID: reg1@softphone\r\n"
                "CSeq: 1 REGISTER\r\n\r\n").encode()
    registered = ("SIP/2.0 200 OK\r\nCall-ID: reg1@softphone\r\nCSeq: 1 REGISTER\r\n"
                  "\r\n").encode()
    app.state.trace.add("sent", register, "udp", "203.0.113.5:5060", when=1_699_999_990)
    app.state.trace.add("received", registered, "udp", "203.0.113.5:5060", when=1_699_999_990.1)
    for i, (direction, data) in enumerate([("sent", INVITE), ("received", RINGING),
                                           ("received", OK), ("sent", ACK)]):
        app.state.trace.add(direction, data, "udp", "203.0.113.5:5060", when=1_700_000_000 + i)


def test_snapshot_trace_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path)
    _traced(app)

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), press=["t"], run_before=before)


def test_snapshot_help(snap_compare, tmp_path):
    app = make_app(tmp_path)

    async def before(pilot):
        still(app)
        app.refresh_views()
        app.call_table.focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, press=["question_mark"], run_before=before)
