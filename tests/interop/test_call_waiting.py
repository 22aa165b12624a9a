"""Call waiting, swap, the local conference and do-not-disturb between three softphone
processes, with tones found by frequency in what each end recorded (and, for the
call-waiting tone, at the speaker of a real audio device, headless PulseAudio)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from peers.net import free_udp_port
from peers.phoneconfig import write_config
from peers.pulse import record_monitor
from peers.softphone import controlled, ctl
from peers.tone import write_tone

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]


def tones(x: np.ndarray, rate: int, freqs: tuple[float, ...], floor_db: float = -20) -> dict:
    """For each frequency: its level in dB relative to the strongest one in ``x``."""
    x = x.astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    top = spec.max() + 1e-12
    out = {}
    for f in freqs:
        k = int(round(f * len(x) / rate))
        out[f] = 20 * np.log10(spec[max(1, k - 3): k + 4].max() / top + 1e-12)
    return out


def zero_run(x: np.ndarray, n: int) -> bool:
    """Whether ``x`` holds ``n`` or more consecutive zero samples."""
    run = np.convolve((x == 0).astype(np.int32), np.ones(n, dtype=np.int32), "valid")
    return bool(run.size and run.max() >= n)


def tail(path, seconds: float, skip_end: float = 0.3) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    end = len(data) - int(skip_end * rate)
    return data[max(0, end - int(seconds * rate)): end], rate


def caller(softphone, tmp_path, name: str, port: int, hz: float):
    wav = write_tone(tmp_path / f"{name}-tone.wav", hz, seconds=4.0)
    cfg = write_config(tmp_path / f"{name}.toml", codecs=["PCMU"])
    return softphone("call", f"sip:a@127.0.0.1:{port}", "--play", str(wav), "--record",
                     str(tmp_path / f"{name}.wav"), "--duration", "40", "--config", str(cfg))


def test_call_waiting_answer_holds_the_first_swap_then_conference_and_split(softphone,
                                                                            tmp_path):
    port = free_udp_port()
    a_tone = write_tone(tmp_path / "a-tone.wav", 1000.0, seconds=4.0)
    a = controlled(softphone, tmp_path, "a", "--play", str(a_tone), "--record",
                   str(tmp_path / "a-{n}.wav"), listen=f"127.0.0.1:{port}")
    b = caller(softphone, tmp_path, "b", port, 660.0)
    first = a.wait_event("incoming", timeout=20)
    assert "call_waiting" not in first  # nothing else going on
    assert ctl(a.socket, "answer")[0] == 0
    b.wait_event("answered", timeout=10)
    c = caller(softphone, tmp_path, "c", port, 880.0)
    waiting = a.wait_event("incoming", timeout=20, call_waiting=True)
    rc, reply, err = ctl(a.socket, "answer", f"call_id={waiting['call_id']}")
    assert rc == 0, (reply, err)
    held = b.wait_event("hold", timeout=10)
    assert (held["local"], held["remote"]) == (False, True)  # answering C held B
    c.wait_event("answered", timeout=10)
    rc, reply, err = ctl(a.socket, "swap")
    assert rc == 0 and reply["result"]["active"] == first["call_id"], (reply, err)
    assert b.wait_event("hold", timeout=10, remote=False)
    assert c.wait_event("hold", timeout=10, remote=True)
    swapped = max(e["t"] for e in a.events if e["event"] == "hold")  # A's clock
    time.sleep(1.5)  # the stretch of swapped audio A's recordings are checked over
    rc, reply, err = ctl(a.socket, "conference")
    assert rc == 0 and sorted(reply["result"]["call_ids"]) == sorted(
        [first["call_id"], waiting["call_id"]]), (reply, err)
    assert c.wait_event("hold", timeout=10, remote=False)  # joined: nobody is held
    joined = a.wait_event("conference", timeout=5, state="joined")
    assert len(joined["call_ids"]) == 2
    time.sleep(2.5)  # the stretch of conference audio the recordings are checked over
    rc, reply, _ = ctl(a.socket, "split")
    assert rc == 0 and a.wait_event("conference", timeout=5, state="split")
    for phone in (b, c):
        ctl(a.socket, "hangup", f"call_id={first['call_id']}")
        ctl(a.socket, "hangup", f"call_id={waiting['call_id']}")
        assert phone.wait_exit(15) == 0, phone.diagnostics()
    # B heard A (1000) and C (880) in the conference; C heard A and B (660): the last
    # seconds before the split, within 12 dB of the strongest tone each
    b_heard, rate = tail(tmp_path / "b.wav", 1.5, skip_end=0.6)
    c_heard, _ = tail(tmp_path / "c.wav", 1.5, skip_end=0.6)
    at_b = tones(b_heard, rate, (1000.0, 880.0, 660.0))
    at_c = tones(c_heard, rate, (1000.0, 660.0, 880.0))
    assert at_b[1000.0] > -12 and at_b[880.0] > -12 and at_b[660.0] < -25, at_b
    assert at_c[1000.0] > -12 and at_c[660.0] > -12 and at_c[880.0] < -25, at_c
    # after the swap A hears the party it talks to again (B, 660 Hz) and nothing of the one
    # it holds (C): A's recording of each call is what it played of it, 20 ms a tick while
    # it was not held, so B's resumed audio starts where its first stretch ended, and C's
    # recording lacks the time C was held
    holds = {n: [e for e in a.events if e["event"] == "hold" and e["call_id"] == i["call_id"]]
             for n, i in ((1, first), (2, waiting))}
    t = {n: (a.find_event("answered", call_id=i["call_id"])["t"],
             a.find_event("ended", call_id=i["call_id"])["t"])
         for n, i in ((1, first), (2, waiting))}
    held_b = next(e["t"] for e in holds[1] if e["local"])
    resumed, rate = window(tmp_path / "a-1.wav", held_b - t[1][0] + 0.3, 0.8)
    assert level_db(resumed) > -30 and tones(resumed, rate, (660.0, 880.0))[880.0] < -25, \
        (level_db(resumed), tones(resumed, rate, (660.0, 880.0)))
    held_c = next(e["t"] for e in holds[2] if e["local"])
    back_c = next(e["t"] for e in holds[2] if not e["local"] and e["t"] > held_c)
    assert back_c - held_c >= 1.5  # the swapped stretch
    played_c = seconds_of(tmp_path / "a-2.wav")
    assert played_c < (t[2][1] - t[2][0]) - (back_c - held_c) + 0.5, \
        (played_c, t[2], held_c, back_c)


def window(path, start: float, seconds: float) -> tuple[np.ndarray, int]:
    """``seconds`` of a recording from ``start`` seconds in."""
    import wave

    with wave.open(str(path)) as w:
        rate = w.getframerate()
        w.setpos(min(w.getnframes(), max(0, int(start * rate))))
        data = np.frombuffer(w.readframes(int(seconds * rate)), dtype="<i2")
    assert len(data) >= int(seconds * rate) - 1, (path, start, len(data))
    return data, rate


def seconds_of(path) -> float:
    import wave

    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def level_db(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0
    return 20 * np.log10(rms / 32768 + 1e-12)


def test_dnd_refuses_calls_with_486_or_its_status_and_notes_them(softphone, tmp_path):
    port = free_udp_port()
    a = controlled(softphone, tmp_path, "a", listen=f"127.0.0.1:{port}")
    rc, reply, _ = ctl(a.socket, "dnd")
    assert rc == 0 and reply["result"] == {"enabled": True, "status": 486}
    assert a.wait_event("dnd", timeout=5) == {**a.find_event("dnd"), "enabled": True}
    cfg = str(write_config(tmp_path / "b.toml"))
    b = softphone("call", f"sip:a@127.0.0.1:{port}", "--config", cfg)
    assert b.wait_exit(15) == 1
    assert "call failed: 486 Do Not Disturb" in b.stderr_text()
    incoming = a.wait_event("incoming", timeout=5, dnd=True)
    ended = a.wait_event("ended", timeout=5, call_id=incoming["call_id"])
    assert (ended["reason"], ended["status"]) == ("rejected", 486)
    # another status for the refusals (ctl dnd status=603): the caller gets that one
    rc, reply, _ = ctl(a.socket, "dnd", "status=603")
    assert rc == 0 and reply["result"] == {"enabled": True, "status": 603}
    mark = a.mark()
    b603 = softphone("call", f"sip:a@127.0.0.1:{port}", "--config", cfg)
    assert b603.wait_exit(15) == 1
    assert "call failed: 603 Do Not Disturb" in b603.stderr_text(), b603.stderr_text()
    refused = a.wait_event("incoming", timeout=5, dnd=True, since=mark)
    ended = a.wait_event("ended", timeout=5, call_id=refused["call_id"])
    assert (ended["reason"], ended["status"]) == ("rejected", 603)
    rc, reply, _ = ctl(a.socket, "dnd", "on=false")
    assert rc == 0 and reply["result"]["enabled"] is False
    mark = a.mark()
    b2 = softphone("call", f"sip:a@127.0.0.1:{port}", "--timeout", "2", "--config", cfg)
    assert "dnd" not in a.wait_event("incoming", timeout=15, since=mark)
    assert b2.wait_event("ringing", timeout=10)  # it rings again


@pytest.mark.audio
def test_call_waiting_tone_is_heard_at_the_speaker(headless_audio, softphone, tmp_path):
    """The 440 Hz call-waiting beeps are laid over the call's audio at the real output
    device while the second call rings, and not before."""
    env = {**headless_audio, "PULSE_SINK": "spk"}
    port = free_udp_port()
    a_tone = write_tone(tmp_path / "a-tone.wav", 1000.0, seconds=4.0)
    sock = tmp_path / "a.sock"
    cfg = write_config(tmp_path / "a.toml", codecs=["PCMU"], listen=f"127.0.0.1:{port}",
                       extra=f'[control]\nsocket = "{sock}"\n')
    a = softphone("answer", "--audio", "pyaudio", "--play", str(a_tone), "--config", str(cfg),
                  env=env)
    a.wait_event("listening", timeout=20)
    b = caller(softphone, tmp_path, "b", port, 660.0)
    a.wait_event("incoming", timeout=20)
    assert ctl(sock, "answer")[0] == 0
    b.wait_event("answered", timeout=10)

    def capture(seconds: float) -> np.ndarray:
        return record_monitor(env, seconds, tmp_path / f"spk-{time.monotonic_ns()}.raw")

    before = capture(1.5)
    c = caller(softphone, tmp_path, "c", port, 880.0)
    a.wait_event("incoming", timeout=20, call_waiting=True)
    during = capture(3.5)
    assert ctl(sock, "reject")[0] == 0
    assert c.wait_exit(15) == 1
    def beeps(x: np.ndarray) -> float:
        """The loudest 440 Hz relative to B's 660 Hz over 100 ms windows (the beeps are
        200 ms long, three seconds apart). A window holding a run of digital silence (the
        capture's start before the monitor delivers audio) is left out: the edge where
        the tone starts spreads energy over every frequency and reads as a beep."""
        windows = x[: len(x) // 800 * 800].reshape(-1, 800)
        whole = [w for w in windows if not zero_run(w, 16)]
        assert len(whole) >= len(windows) // 2, f"{len(windows) - len(whole)} windows with gaps"
        return max(tones(w, 8000, (660.0, 440.0))[440.0] - tones(w, 8000, (660.0, 440.0))
                   [660.0] for w in whole)

    assert tones(before, 8000, (660.0,))[660.0] > -1  # B's audio at the speaker …
    assert beeps(before) < -22, beeps(before)           # … and no beeps
    assert beeps(during) > -12, beeps(during)           # the beeps, over B's audio
