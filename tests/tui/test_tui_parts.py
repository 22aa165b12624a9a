"""The TUI's pure parts (E-model, trace store, history) and the settings screen."""

from __future__ import annotations

import time

import pytest

from softphone.config import Config, load_config
from softphone.history import CallRecord, History
from softphone.tui.bridge import outcome_of, reason_text
from softphone.tui.quality import (delay_impairment, effective_equipment_impairment,
                                   estimate_mos, mos_from_r, r_factor)
from softphone.tui.state import TraceStore, call_id_of

from test_tui import click_in_view

pytestmark = pytest.mark.timeout(60)


# -- E-model ------------------------------------------------------------------------------
def test_mos_from_r_anchor_points():
    assert mos_from_r(-5) == 1.0 and mos_from_r(0) == 1.0
    assert mos_from_r(100) == 4.5 and mos_from_r(120) == 4.5
    # G.107 Annex B: R = 93.2 → MOS ≈ 4.41; R = 50 → ≈ 2.58; R = 70 → ≈ 3.60
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    assert mos_from_r(50) == pytest.approx(2.58, abs=0.01)
    assert mos_from_r(70) == pytest.approx(3.60, abs=0.01)
    values = [mos_from_r(r) for r in range(0, 101, 5)]
    assert values == sorted(values)  # monotonic


def test_delay_impairment_knee():
    assert delay_impairment(0) == 0
    assert delay_impairment(100) == pytest.approx(2.4)
    below, above = delay_impairment(177), delay_impairment(300)
    assert above - below > 0.024 * 123 * 2  # steeper past the knee


def test_effective_equipment_impairment():
    assert effective_equipment_impairment(0, 25.1, 0) == 0
    # G.711 with PLC at 1 % random loss: 95·1/(1+25.1) ≈ 3.64
    assert effective_equipment_impairment(0, 25.1, 1) == pytest.approx(3.64, abs=0.01)
    assert effective_equipment_impairment(0, 4.3, 5) > effective_equipment_impairment(0, 25.1, 5)


def test_r_factor_and_estimate():
    assert r_factor(ie=0, bpl=25.1, loss_pct=0, delay_ms=0) == pytest.approx(93.2)
    clean = estimate_mos("PCMU", loss_pct=0, rtt_ms=20, jitter_ms=1)
    lossy = estimate_mos("PCMU", loss_pct=10, rtt_ms=20, jitter_ms=1)
    slow = estimate_mos("PCMU", loss_pct=0, rtt_ms=800, jitter_ms=1)
    assert 4.3 < clean <= 4.41
    assert lossy < clean and slow < clean
    assert estimate_mos("mystery", loss_pct=0) < clean  # unknown codecs rate lower


# -- trace store ----------------------------------------------------------------------------
INVITE = (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\n"
          b"call-id:  abc@host \r\nCSeq: 1 INVITE\r\n\r\nv=0\r\ni=not a header\r\n")
OK = b"SIP/2.0 200 OK\r\ni: abc@host\r\nCSeq: 1 INVITE\r\n\r\n"


def test_history_time_labels():
    from datetime import date, datetime

    from softphone.tui.widgets import when_label

    today = date(2026, 11, 21)
    assert when_label(datetime(2026, 11, 21, 14, 5).timestamp(), today) == "14:05"
    assert when_label(datetime(2026, 11, 20, 23, 59).timestamp(), today) == "20 Nov"
    assert when_label(datetime(2025, 12, 31, 10, 0).timestamp(), today) == "2025"


def test_trace_store_groups_by_call_id():
    assert call_id_of(INVITE) == "abc@host"
    assert call_id_of(OK) == "abc@host"  # compact form
    assert call_id_of(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n") is None
    store = TraceStore(max_dialogs=2)
    store.add("sent", INVITE, "udp", "127.0.0.1:5070", when=1000.0)
    store.add("received", OK, "udp", "127.0.0.1:5070", when=1000.25)
    store.add("sent", b"OPTIONS x SIP/2.0\r\nCall-ID: other\r\n\r\n", "udp", "h:1")
    msgs = store.messages("abc@host")
    assert [m.summary for m in msgs] == ["INVITE", "200 OK (INVITE)"]
    text = store.export("abc@host")
    assert text.startswith("--- 1970-01-01T00:16:40.000+00:00 sent udp 127.0.0.1:5070\n")
    assert "--- 1970-01-01T00:16:40.250+00:00 received udp" in text and "\r" not in text
    store.add("sent", b"BYE x SIP/2.0\r\nCall-ID: third\r\n\r\n", "udp", "h:1")
    assert list(store.dialogs) == ["other", "third"]  # bounded: oldest dropped


def test_reason_and_outcome_text():
    assert reason_text({"reason": "rejected", "status": 486, "phrase": "Busy Here"}) == \
        "rejected 486 Busy Here"
    assert outcome_of("incoming", False, {"reason": "cancelled", "status": 487}) == "missed"
    assert outcome_of("outgoing", True, {"reason": "hangup"}) == "answered"
    assert outcome_of("outgoing", False, {"reason": "timeout"}) == "timeout"


# -- history ---------------------------------------------------------------------------------
def test_history_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPHONE_DATA_DIR", str(tmp_path / "d"))
    h = History()
    assert h.path == tmp_path / "d" / "history.sqlite3"
    now = time.time()
    h.add(CallRecord("outgoing", "sip:a@x", now - 10, 3.5, "answered"))
    rec = h.add(CallRecord("incoming", "sip:b@x", now, 0, "missed", display_name="Bob"))
    h.close()
    h2 = History()
    got = h2.recent()
    assert [r.party for r in got] == ["sip:b@x", "sip:a@x"]
    assert got[0].display_name == "Bob" and got[1].duration == 3.5
    assert h2.get(rec.id) == got[0]
    assert h2.dialled() == ["sip:a@x"]
    h2.close()


# -- settings screen ----------------------------------------------------------------------------
async def _theme_settled(pilot, saves: list, before: int) -> None:
    """Wait (bounded) until the app's delayed theme save has run once more."""
    for _ in range(300):
        if len(saves) > before:
            return
        await pilot.pause(0.01)
    raise AssertionError("the delayed theme save never ran")


async def test_theme_picked_at_run_time_is_remembered(tmp_path, monkeypatch):
    from softphone.tui.app import SoftphoneApp

    monkeypatch.setattr(SoftphoneApp, "THEME_SAVE_DELAY", 0.05)
    saves: list[str] = []
    real_save = SoftphoneApp._save_theme

    def counting_save(self) -> None:
        real_save(self)
        saves.append(self.theme)

    monkeypatch.setattr(SoftphoneApp, "_save_theme", counting_save)
    path = tmp_path / "config.toml"
    path.write_text("# mine\n[audio]\nptime = 30\n", encoding="utf-8")
    app = SoftphoneApp(load_config(path), audio="null", live=False, data_path=tmp_path,
                       config_path=path, theme_file=path)
    async with app.run_test(size=(120, 50)) as pilot:
        first = app.theme
        # the palette's picker previews themes and restores the old one on Escape
        app.theme = "gruvbox"
        app.theme = first
        await _theme_settled(pilot, saves, 0)
        assert "[ui]" not in path.read_text()  # nothing chosen, nothing written
        app.theme = "gruvbox"
        app.theme = "nord"  # what the command palette's "Change theme" does
        await _theme_settled(pilot, saves, 1)
        assert saves == [first, "nord"]  # one save per settled choice, not per preview
        assert load_config(path).ui.theme == "nord"
        assert path.read_text().startswith("# mine\n")  # the user's file, edited in place
        assert app.config.ui.theme == "nord"
    again = SoftphoneApp(load_config(path), audio="null", live=False, data_path=tmp_path)
    async with again.run_test(size=(120, 50)):
        assert again.theme == "nord"


async def test_settings_saves_valid_and_rejects_invalid(tmp_path):
    from textual.widgets import Input, Static

    from softphone.tui.app import SoftphoneApp
    from softphone.tui.settings import SettingsScreen

    path = tmp_path / "config.toml"
    app = SoftphoneApp(Config.default(), audio="null", live=False, data_path=tmp_path,
                       config_path=path)
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("f2")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        # an invalid codec list: nothing written, the error names the key
        screen.query_one("#codecs", Input).value = "PCMU, speex"
        await click_in_view(pilot, "#save")
        error = str(screen.query_one("#settings-error", Static).render())
        assert "audio.codecs[1]" in error and "speex" in error
        assert not path.exists()
        screen.query_one("#codecs", Input).value = "PCMU"
        for field, value, key in (("#dns-servers", "dns.example.com", "network.dns_servers[0]"),
                                  ("#keepalive", "soon", "network.keepalive")):
            screen.query_one(field, Input).value = value
            await pilot.press("ctrl+s")
            error = str(screen.query_one("#settings-error", Static).render())
            assert key in error, error
            assert not path.exists()
            screen.query_one(field, Input).value = ""
        # an account with a bad address of record is refused too
        await click_in_view(pilot, "#account-new")
        await pilot.press(*"not a uri")
        screen.query_one("#codecs", Input).value = "PCMA, PCMU"
        await pilot.press("ctrl+s")
        error = str(screen.query_one("#settings-error", Static).render())
        assert "accounts[0].aor" in error
        assert not path.exists()
        # fixed: saved, and the app now holds the new config
        screen.query_one("#acc-aor", Input).value = "sip:1001@pbx.example.com"
        screen.query_one("#acc-password_env", Input).value = "PBX_PASSWORD"
        screen.query_one("#acc-expires", Input).value = "300"
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, SettingsScreen)
    saved = load_config(path)
    assert saved.audio.codecs == ("PCMA", "PCMU")
    acc = saved.accounts[0]
    assert (acc.aor, acc.password_env, acc.expires) == \
        ("sip:1001@pbx.example.com", "PBX_PASSWORD", 300)
    assert app.config == saved


async def test_command_palette_lists_every_action(tmp_path):
    from softphone.tui.app import SoftphoneApp

    app = SoftphoneApp(Config.default(), audio="null", live=False, data_path=tmp_path)
    async with app.run_test() as pilot:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        await pilot.pause()
    for title in ("Dial", "Answer", "Reject", "Hang up", "Mute", "SIP trace", "Echo test",
                  "Re-register", "Settings", "Event log", "DTMF 5", "DTMF #", "Quit"):
        assert title in titles, title


def test_encrypted_calls_show_their_suite():
    """The answered event's SRTP suite reaches the call list (a lock) and the details."""
    from softphone.tui.bridge import Bridge
    from softphone.tui.state import PhoneState
    from softphone.tui.widgets import _call_cells
    from softphone.ua import events as ev

    state = PhoneState(audio_backend="null")
    bridge = Bridge(app=None, state=state, history=None)  # apply() needs no app
    for call_id, suite in (("c1", "AES_CM_128_HMAC_SHA1_80"), ("c2", None)):
        bridge.apply(ev.Calling(call_id, "sip:b@example.com"))
        bridge.apply(ev.Answered(call_id, "PCMU", None, suite))
    encrypted, plain = state.calls["c1"], state.calls["c2"]
    assert encrypted.srtp == "AES_CM_128_HMAC_SHA1_80" and plain.srtp is None
    assert str(_call_cells(encrypted, ("state",), 22)[0]) == "connected 🔒"
    assert str(_call_cells(plain, ("state",), 22)[0]) == "connected"


# -- the bridge's coalescing ---------------------------------------------------------------
def test_high_rate_events_are_coalesced_into_one_update_with_the_latest_values():
    """Levels (5/s) and call statistics (1/s) per call must not flood Textual's queue:
    however many arrive before the app gets to them, one LiveUpdate is posted, and
    applying it shows the latest of each kind per call; other events pass one by one."""
    import threading

    from softphone.tui.bridge import Bridge, LiveUpdate, PhoneEvent
    from softphone.tui.state import CallView, PhoneState
    from softphone.ua import events as ev

    class App:
        def __init__(self) -> None:
            self.posted: list = []

        def post_message(self, message) -> None:
            self.posted.append(message)

        def call_from_thread(self, fn, *args):  # the bus may publish from a worker thread
            return fn(*args)

    app, state = App(), PhoneState()
    for call_id in ("a", "b"):
        state.add_call(CallView(call_id=call_id, direction="outgoing", uri="sip:x@h",
                                state="connected", codec="PCMU"))
    bridge = Bridge(app, state, None)  # type: ignore[arg-type]

    def flood() -> None:
        for i in range(200):
            bridge._listen(ev.Levels("a", input_dbfs=-float(i), output_dbfs=-1.0))
            bridge._listen(ev.Levels("b", input_dbfs=-2.0, output_dbfs=-float(i)))
            if i % 40 == 0:
                bridge._listen(ev.CallStats("a", duration=float(i), sent=i, received=i, lost=0,
                                            loss_pct=i / 100, jitter_ms=1.0, rtt_ms=None,
                                            playout_ms=40.0, codec="PCMU"))

    worker = threading.Thread(target=flood)
    worker.start()
    worker.join(10)
    assert [type(m) for m in app.posted] == [LiveUpdate]  # 410 events, one message
    bridge.apply_live()
    a, b = state.calls["a"], state.calls["b"]
    assert (a.input_dbfs, a.output_dbfs) == (-199.0, -1.0)
    assert (b.input_dbfs, b.output_dbfs) == (-2.0, -199.0)
    assert (a.duration, a.loss_pct) == (160.0, 1.6)  # the last statistics
    bridge._listen(ev.Levels("a", input_dbfs=-3.0, output_dbfs=-3.0))  # applied: a new one
    bridge._listen(ev.Dtmf("a", digit="5"))  # not high-rate: its own message
    assert [type(m) for m in app.posted] == [LiveUpdate, LiveUpdate, PhoneEvent]
