"""The Phone API in-process: the command table, its checks, the events, the JSON lines.

Two phones on loopback (and the built-in echo service), driven only through ``execute``
and the bus, as the faces drive them."""

from __future__ import annotations

import asyncio
import json

import pytest

from media_helpers import wait_for
from softphone.config import Config
from softphone.ua.bus import JsonLines
from softphone.ua.commands import COMMANDS, CommandError, check_args
from softphone.ua.phone import Phone, PhoneOptions


def config() -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0},
                             "audio": {"codecs": ["PCMU"]}})


class Recorder:
    def __init__(self, phone: Phone) -> None:
        self.events: list = []
        phone.bus.subscribe(self.events.append)

    def names(self, call_id: str | None = None) -> list[str]:
        return [e.name for e in self.events
                if call_id is None or getattr(e, "call_id", None) == call_id]

    def first(self, name: str):
        return next(e for e in self.events if e.name == name)


@pytest.fixture
async def phones():
    a = Phone(config(), PhoneOptions(control=False, preload_media=False, user="alice"))
    b = Phone(config(), PhoneOptions(control=False, preload_media=False, user="bob"))
    await a.start()
    await b.start()
    yield a, b
    await a.close(timeout=3)
    await b.close(timeout=3)


def test_every_command_has_its_method_and_checked_arguments():
    for name, command in COMMANDS.items():
        assert callable(getattr(Phone, f"cmd_{name}", None)), name
        for param in command.params:
            assert param.help, (name, param.name)
    assert check_args(COMMANDS["reject"], {}) == {"call_id": None, "status": 486}
    assert check_args(COMMANDS["dtmf"], {"digits": "1,2#"})["digits"] == "1,2#"


@pytest.mark.parametrize("name, args, message", [
    ("dtmf", {"digits": "12Z"}, "'Z' is not a DTMF digit"),
    ("dtmf", {}, "missing digits"),
    ("reject", {"status": 200}, "must be a final status 300-699"),
    ("reject", {"status": "busy"}, "not a number"),
    ("dial", {"uri": "sip:x@127.0.0.1", "timeout": "soon"}, "not a number of seconds"),
    ("hangup", {"callid": "x"}, "unknown argument 'callid'"),
    ("dial", {"uri": "   "}, "uri: must not be empty"),
])
def test_bad_arguments_say_which_and_why(name, args, message):
    with pytest.raises(CommandError, match=message):
        check_args(COMMANDS[name], args)


async def test_unknown_and_impossible_commands_are_errors_not_crashes(phones):
    a, _ = phones
    with pytest.raises(CommandError, match="unknown command 'dail'.*did you mean 'dial'"):
        await a.execute("dail", {"uri": "echo"})
    with pytest.raises(CommandError, match="no call in progress"):
        await a.execute("hangup")
    with pytest.raises(CommandError, match="no incoming call is ringing"):
        await a.execute("answer")
    with pytest.raises(CommandError, match="no call 'nope'"):
        await a.execute("mute", {"call_id": "nope"})
    with pytest.raises(CommandError, match="needs a host"):
        await a.execute("dial", {"uri": "bob"})
    with pytest.raises(CommandError, match="no account named 'x'"):
        await a.execute("dial", {"uri": "echo", "account": "x"})
    with pytest.raises(CommandError, match="no account configured"):
        await a.execute("register")
    assert (await a.execute("calls")) == {"calls": []}  # still fine after all that


async def test_ring_answer_dtmf_mute_hold_hangup_through_commands(phones):
    a, b = phones
    seen_a, seen_b = Recorder(a), Recorder(b)
    call_id = (await a.execute("dial", {"uri": f"sip:bob@127.0.0.1:{b.address[1]}"}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(call_id), 5, "bob's phone to ring")
    incoming = seen_b.first("incoming")
    assert incoming.to_dict()["from"].startswith("sip:alice@")
    listed = (await b.execute("calls"))["calls"]
    assert [(c["call_id"], c["direction"], c["state"]) for c in listed] == [
        (call_id, "incoming", "ringing")]
    await b.execute("answer")  # the only ringing call
    await wait_for(lambda: "answered" in seen_a.names(call_id), 5, "answered")
    assert seen_a.names(call_id)[:3] == ["calling", "ringing", "answered"]
    assert seen_a.first("answered").codec == "PCMU"
    await a.execute("dtmf", {"digits": "4#"})
    await wait_for(lambda: [e.digit for e in seen_b.events if e.name == "dtmf"] == ["4", "#"],
                   5, "bob to hear the digits")
    assert (await a.execute("mute", {"toggle": True}))["muted"] is True
    assert (await a.execute("mute", {"toggle": True}))["muted"] is False
    assert [e.muted for e in seen_a.events if e.name == "mute"] == [True, False]
    assert (await a.execute("hold"))["on_hold"] is True
    assert seen_b.events[-1].name == "hold" and seen_b.events[-1].remote is True
    assert (await a.execute("resume"))["on_hold"] is False
    assert (await b.execute("hangup", {"call_id": call_id}))["reason"] == "hangup"
    await wait_for(lambda: "ended" in seen_a.names(call_id), 5, "alice to see the BYE")
    ended = [e for e in seen_a.events if e.name == "ended"][0]
    assert ended.reason == "remote-hangup" and ended.rtp["received"] > 0


class Heard:
    """A tap's sink: every frame of what the far end sends, decoded."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.rate = 0

    def write(self, pcm: bytes, rate: int) -> None:
        self.pcm += pcm
        self.rate = rate

    def strongest_hz(self, seconds: float = 0.5) -> float:
        import numpy as np

        x = np.frombuffer(bytes(self.pcm), "<i2")[-int(self.rate * seconds):].astype(float)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return float(np.argmax(spectrum)) * self.rate / len(x)


async def test_play_replaces_the_audio_and_a_tap_hears_the_far_end(phones):
    a, b = phones
    seen_a, seen_b = Recorder(a), Recorder(b)
    call_id = (await a.execute("dial", {"uri": f"sip:bob@127.0.0.1:{b.address[1]}"}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(call_id), 5, "bob's phone to ring")
    with pytest.raises(CommandError, match="is not connected"):
        await b.execute("play", {"tone": 600, "duration": 1})
    await b.execute("answer")
    await wait_for(lambda: "answered" in seen_a.names(call_id), 5, "answered")
    heard = Heard()
    untap = a.tap_audio(call_id, heard)
    reply = await b.execute("play", {"tone": 600, "duration": 5})
    assert reply == {"call_id": call_id, "seconds": 5.0}
    await wait_for(lambda: len(heard.pcm) >= 2 * 8000, 5, "a second of bob's tone")
    assert abs(heard.strongest_hz() - 600) < 20
    assert (await b.execute("stop_playing"))["stopped"] is True
    assert (await b.execute("stop_playing"))["stopped"] is False
    before = len(heard.pcm)
    await wait_for(lambda: len(heard.pcm) >= before + 2 * 8000, 5, "another second")
    import numpy as np

    quiet = np.frombuffer(bytes(heard.pcm[-8000:]), "<i2")  # bob's own audio: silence
    assert int(np.abs(quiet).max()) < 50
    untap()
    after = len(heard.pcm)
    other = Heard()  # a second tap proves audio still flows while the first hears nothing
    a.tap_audio(call_id, other)
    await wait_for(lambda: len(other.pcm) >= 8000, 5, "half a second on the second tap")
    assert len(heard.pcm) == after
    headers = b.request_headers(call_id)  # the INVITE as it came in
    assert headers[0][0] == "Via" and ("CSeq", "1 INVITE") in headers
    with pytest.raises(CommandError, match="give a file or a tone"):
        await b.execute("play", {})
    with pytest.raises(CommandError, match="file: no such file: /nonexistent.wav"):
        await b.execute("play", {"file": "/nonexistent.wav"})
    with pytest.raises(CommandError, match="tone: must be a frequency in Hz from 20 to 20000"):
        await b.execute("play", {"tone": 5})
    await a.execute("hangup")


async def test_reject_with_a_status(phones):
    a, b = phones
    seen_a, seen_b = Recorder(a), Recorder(b)
    call_id = (await a.execute("dial", {"uri": f"sip:bob@127.0.0.1:{b.address[1]}"}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(), 5, "ringing")
    await b.execute("reject", {"status": "603"})
    await wait_for(lambda: "ended" in seen_a.names(call_id), 5, "ended")
    ended = seen_a.first("ended")
    assert (ended.reason, ended.status, ended.phrase) == ("rejected", 603, "Decline")


async def test_the_json_lines_are_the_contract(phones):
    a, _ = phones
    lines: list[str] = []
    encoder = JsonLines()
    a.bus.subscribe(lambda e: lines.append(encoder.encode(e)) if e.jsonl else None)
    call_id = (await a.execute("dial", {"uri": "echo"}))["call_id"]
    await wait_for(lambda: any('"answered"' in line for line in lines), 5, "answered")
    await a.execute("hangup", {"call_id": call_id})
    await wait_for(lambda: any('"ended"' in line for line in lines), 5, "ended")
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r["t"], float) and r["event"] for r in records)
    answered = next(r for r in records if r["event"] == "answered")
    assert answered["call_id"] == call_id and answered["codec"] == "PCMU"
    ended = next(r for r in records if r["event"] == "ended")
    assert set(ended) >= {"event", "t", "call_id", "reason", "duration", "rtp"}
    assert "status" not in ended  # only for rejected calls
    assert set(ended["rtp"]) >= {"sent", "received", "lost", "jitter_ms"}


async def test_high_rate_events_only_for_those_who_ask(phones):
    a, _ = phones
    low, high = [], []
    a.bus.subscribe(low.append)
    a.bus.subscribe(high.append, high_rate=True)
    call_id = (await a.execute("dial", {"uri": "echo"}))["call_id"]
    await wait_for(lambda: any(e.name == "call_stats" for e in high)
                   and any(e.name == "levels" for e in high), 5, "stats and levels")
    assert any(e.name == "sip_message" and e.data.startswith(b"INVITE ") for e in high)
    assert not any(e.high_rate for e in low)
    stats = next(e for e in high if e.name == "call_stats")
    assert stats.call_id == call_id and stats.codec == "PCMU"
    await a.execute("hangup", {"call_id": call_id})


async def test_timers_of_a_call_go_away_with_it():
    """The set-up timeout and the auto-answer delay are cancelled when their reason goes
    (the first version left the set-up timer and the CANCEL expiry armed)."""
    a = Phone(config(), PhoneOptions(control=False, preload_media=False))
    b = Phone(config(), PhoneOptions(control=False, preload_media=False, auto_answer=True,
                                     answer_delay=0.2))
    await a.start()
    await b.start()
    try:
        loop = asyncio.get_running_loop()
        call_id = (await a.execute("dial", {"uri": f"sip:x@127.0.0.1:{b.address[1]}",
                                            "timeout": 30}))["call_id"]
        call = a.call(call_id)
        assert "setup" in call._timers
        assert await call.wait_answered(5)
        assert call._timers == {}

        def handles_of(obj) -> list:
            return [h for h in loop._scheduled if not h.cancelled()
                    and getattr(h._callback, "__self__", None) is obj]

        assert handles_of(call) == []
        theirs = b.call(call_id)
        assert handles_of(theirs) == []  # the auto-answer delay fired and is gone
        await a.execute("hangup", {"call_id": call_id})
        assert handles_of(call) == [] and call.session.timers.running.keys() == {"linger"}
    finally:
        await a.close(timeout=3)
        await b.close(timeout=3)


async def test_a_target_of_the_other_ip_family_is_refused_at_dial():
    """The resolver's family check, through the UA as every face reaches it: an IPv6
    target from an IPv4 socket (and the reverse) fails at once, saying what to do —
    not after Timer B, and no call is left behind."""
    for listen, target, message in (
            ("127.0.0.1:0", "sip:bob@[::1]:5060",
             r"IPv6 address ::1 from an IPv4 socket: listen on IPv6 too \(e.g. --listen"),
            ("[::1]:0", "sip:bob@127.0.0.1:5060",
             r"IPv4 address 127.0.0.1 from an IPv6-only socket: listen on an IPv4")):
        cfg = Config.from_dict({"network": {"listen": listen}})
        phone = Phone(cfg, PhoneOptions(control=False, preload_media=False))
        await phone.start()
        try:
            with pytest.raises(CommandError, match=message):
                await asyncio.wait_for(phone.execute("dial", {"uri": target}), 5)
            assert (await phone.execute("calls")) == {"calls": []}
        finally:
            await phone.close(timeout=3)


async def test_an_incoming_call_for_no_account_goes_to_the_first_account():
    """Matching an incoming request to an account: by Request-URI (or To), else the
    first account — a call to a name we do not own still has an account (issue 8)."""
    cfg = Config.from_dict({
        "network": {"listen": "127.0.0.1:0", "rate_limit": 0}, "audio": {"codecs": ["PCMU"]},
        "accounts": [{"name": "home", "aor": "sip:alice@example.com", "register": False},
                     {"name": "work", "aor": "sip:carol@127.0.0.1", "register": False}]})
    callee = Phone(cfg, PhoneOptions(control=False, preload_media=False))
    caller = Phone(config(), PhoneOptions(control=False, preload_media=False, user="bob"))
    await callee.start()
    await caller.start()
    try:
        seen = Recorder(callee)
        port = callee.address[1]
        for user, account in (("carol", "work"), ("nobody", "home")):
            out = (await caller.execute("dial", {"uri": f"sip:{user}@127.0.0.1:{port}"}))
            await wait_for(lambda: any(e.name == "incoming" and e.to.startswith(f"sip:{user}@")
                                       for e in seen.events), 5, f"the call to {user}")
            incoming = next(e for e in seen.events
                            if e.name == "incoming" and e.to.startswith(f"sip:{user}@"))
            assert incoming.account == account, (user, incoming)
            await caller.execute("hangup", {"call_id": out["call_id"]})
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)


def test_call_tally_counts_incoming_calls_and_waits_for_every_call_to_end():
    """``answer --max-calls``: only incoming calls count, and the job ends when the last
    one has ended and no other call (one a transfer placed) is still up."""
    from softphone.ua.events import CallTally

    tally = CallTally(1)
    assert not tally.feed("incoming", "in-1")
    assert not tally.feed("calling", "out-1")   # a transfer's new call
    assert not tally.feed("ended", "in-1")      # the count is reached, out-1 is up
    assert tally.ended == 1
    assert not tally.feed("ringing", "out-1")
    assert tally.feed("ended", "out-1")
    assert tally.feed("listening", None)        # and stays done
    two = CallTally(2)
    for name, call in (("calling", "o"), ("ended", "o"), ("incoming", "a"), ("ended", "a")):
        assert not two.feed(name, call)         # outgoing calls never count
    assert CallTally(None).feed("ended", "x") is False


async def test_processing_switches_are_reported_set_and_toggled(phones):
    from softphone.media.processing import Processing

    a, _ = phones
    everything = {"echo_cancellation": True, "noise_suppression": True,
                  "auto_gain_control": True}
    assert await a.execute("processing") == {**everything, "active": False}  # null audio
    assert await a.execute("processing", {"noise_suppression": "off"}) == {
        **everything, "noise_suppression": False, "active": False}
    assert (await a.execute("processing", {"toggle": True}))["echo_cancellation"] is False
    assert (await a.execute("processing", {"toggle": True}))["echo_cancellation"] is True
    assert a.devices.processing == Processing(True, False, True)  # what the next call gets
    with pytest.raises(CommandError, match="echo_cancellation: must be true or false"):
        await a.execute("processing", {"echo_cancellation": "maybe"})


class Speaker:
    """Stands in for the ring device: which tone plays now (the real one is heard on
    PulseAudio in tests/interop/test_audio_processing.py)."""

    def __init__(self) -> None:
        self.playing: list[str] = []
        self.played: list[str] = []

    def play_tone(self, tone):
        from softphone.ua.alerts import ring_tone

        kind = "ring" if tone.freq_hz == ring_tone().freq_hz else "ringback"
        self.playing.append(kind)
        self.played.append(kind)
        speaker = self

        class Handle:
            def close(self) -> None:
                speaker.playing.remove(kind)
        return Handle()


async def test_ring_and_ringback_play_while_the_call_rings_then_stop(phones):
    a, b = phones
    speaker_a, speaker_b = Speaker(), Speaker()
    a.devices.play_tone, b.devices.play_tone = speaker_a.play_tone, speaker_b.play_tone
    seen_a, seen_b = Recorder(a), Recorder(b)
    call_id = (await a.execute("dial", {"uri": f"sip:bob@127.0.0.1:{b.address[1]}"}))["call_id"]
    await wait_for(lambda: "ringing" in seen_a.names(call_id), 5, "alice to hear the 180")
    assert speaker_a.playing == ["ringback"] and speaker_b.playing == ["ring"]
    await b.execute("answer")
    await wait_for(lambda: "answered" in seen_a.names(call_id), 5, "answered")
    assert speaker_a.playing == [] and speaker_b.playing == []
    await b.execute("hangup")
    await wait_for(lambda: "ended" in seen_a.names(call_id), 5, "ended")
    assert speaker_a.played == ["ringback"] and speaker_b.played == ["ring"]
    assert "ended" in seen_b.names(call_id)


async def test_a_ring_device_that_cannot_play_is_tried_once_per_tone(phones):
    """A ring device that fails (play_tone gives None: no device) is tried again only
    when the tone wanted changes, not on every call event (each try posted another
    'cannot play the ring tone' notice)."""
    a, b = phones
    tries: list[str] = []

    def no_device(tone):
        tries.append("try")
        return None
    b.devices.play_tone = no_device
    seen_b = Recorder(b)
    call_id = (await a.execute("dial", {"uri": f"sip:bob@127.0.0.1:{b.address[1]}"}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(call_id), 5, "the call at bob")
    from softphone.ua import alerts

    for _ in range(5):  # more call events while it rings: no new tries
        alerts.refresh(b.agent)
    assert tries == ["try"]
    await b.execute("answer")
    await wait_for(lambda: "answered" in seen_b.names(call_id), 5, "answered")
    assert tries == ["try"]
    await b.execute("hangup")


def test_the_audio_threads_notice_is_one_per_phone():
    """A stream its calls share keeps a notice once per phone: a new notice callback for
    every call made a device that went away say so once per call that ever used it."""
    import asyncio

    from softphone.ua.devices import DeviceFactory, MediaOptions

    async def notices():
        factory = DeviceFactory(MediaOptions())
        return factory._device_notice(), factory._device_notice()

    first, second = asyncio.run(notices())
    assert first is second


async def test_a_call_waiting_gets_the_beeps_over_the_call_not_the_ring(phones):
    """A second call ringing in during a call: the ring device stays quiet and the beeps
    are laid over the active call's audio; both stop when the waiting call is refused."""
    a, b = phones
    speaker_b = Speaker()
    b.devices.play_tone = speaker_b.play_tone
    seen_b = Recorder(b)
    uri = f"sip:bob@127.0.0.1:{b.address[1]}"
    first = (await a.execute("dial", {"uri": uri}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(first), 5, "the first call at bob")
    assert speaker_b.playing == ["ring"]
    await b.execute("answer", {"call_id": first})
    await wait_for(lambda: "answered" in seen_b.names(first), 5, "answered")
    assert speaker_b.playing == []
    active = b.call(first)
    assert not active.media.alerting
    second = (await a.execute("dial", {"uri": uri}))["call_id"]
    await wait_for(lambda: "incoming" in seen_b.names(second), 5, "the second call at bob")
    await wait_for(lambda: active.media.alerting, 5, "the beeps on the first call")
    assert speaker_b.played == ["ring"]  # only the first call's: no ring for the waiting one
    await b.execute("reject", {"call_id": second})
    await wait_for(lambda: not active.media.alerting, 5, "the beeps to stop")
    assert speaker_b.playing == []
    await b.execute("hangup", {"call_id": first})
