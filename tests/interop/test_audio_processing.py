"""The device side of calls on a real sound server (headless PulseAudio): the echo
canceller in the PyAudio path, the ring and ringback tones at the speaker, a playback
device that goes away mid-call, and device names that do not exist."""

from __future__ import annotations

import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from peers.echoscene import babble
from peers.net import free_udp_port
from peers.phoneconfig import write_config
from peers.procs import stop_popen
from peers.pulse import HeadlessPulse, record_monitor
from peers.tone import write_tone

pytestmark = [pytest.mark.audio, pytest.mark.timeout(90)]


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def level_db(x: np.ndarray) -> float:
    x = x.astype(np.float64) / 32768
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


def band_db(x: np.ndarray, rate: int, freqs: tuple[float, ...], width: float = 15) -> float:
    """Energy within ``width`` Hz of ``freqs``, relative to the whole signal, dB."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    near = np.zeros(len(hz), dtype=bool)
    for f in freqs:
        near |= np.abs(hz - f) <= width
    return float(10 * np.log10(spec[near].sum() / (spec.sum() + 1e-12) + 1e-12))


def band_split_db(x: np.ndarray, rate: int, hz: float, width: float = 20) -> tuple[float, float]:
    """(power within ``width`` Hz of ``hz``, power of the rest), dBFS."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) / 32768)) ** 2 / len(x) ** 2 * 2
    near = np.abs(np.fft.rfftfreq(len(x), 1 / rate) - hz) <= width
    return (float(10 * np.log10(spec[near].sum() + 1e-12)),
            float(10 * np.log10(spec[~near].sum() + 1e-12)))


NEAR_HZ = 1000.0


def through_b(softphone, tmp_path: Path, env: dict, aec: bool) -> tuple[float, float]:
    """A (files, no devices) sends speech to B, whose microphone hears its loudspeaker
    (Pulse's default source is the speaker's monitor) and a near-end talker (a 1 kHz tone
    played into the same room). What A got back over the last seconds of the call:
    (the near end's tone, everything else: the echo of A's speech), dBFS."""
    tag = "on" if aec else "off"
    port = free_udp_port()
    switches = (f"echo_cancellation = {'true' if aec else 'false'}\n"
                "noise_suppression = false\nauto_gain_control = false\n")
    b = softphone("answer", "--auto", "--audio", "pyaudio", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / f"b-{tag}.toml", codecs=["PCMU"],
                                   listen=f"127.0.0.1:{port}", extra=switches)), env=env)
    b.wait_event("listening", timeout=20)
    far = write_wav(tmp_path / "far.wav", babble(10.0, 8000, seed=4, level_dbfs=-16), 8000)
    near = write_tone(tmp_path / "near.wav", NEAR_HZ, seconds=12.0, rate=48000, level_dbfs=-26)
    got = tmp_path / f"a-{tag}.wav"
    talker = subprocess.Popen(["paplay", "-d", "spk", str(near)], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        a = softphone("call", f"sip:b@127.0.0.1:{port}", "--play", str(far), "--record",
                      str(got), "--duration", "9", "--config",
                      str(write_config(tmp_path / f"a-{tag}.toml", codecs=["PCMU"])))
        assert a.wait_exit(30) == 0, a.diagnostics()
        assert b.wait_exit(15) == 0, b.diagnostics()
    finally:
        stop_popen(talker, grace=2)
    assert "Traceback" not in b.stderr_text(), b.stderr_text()
    back, rate = read_wav(got)
    return band_split_db(back[-5 * rate: -rate // 2], rate, NEAR_HZ)  # converged by then


def test_echo_canceller_in_the_real_pyaudio_path(headless_audio, softphone, tmp_path):
    """What B sends to the far end while its loudspeaker plays the far end's speech into
    its microphone, beside a near-end talker: the far end's own voice comes back, unless
    B cancels the echo; the near end gets through either way."""
    near_off, echo_off = through_b(softphone, tmp_path, headless_audio, aec=False)
    near_on, echo_on = through_b(softphone, tmp_path, headless_audio, aec=True)
    print(f"echo returned: {echo_off:.1f} dBFS without the canceller, {echo_on:.1f} dBFS "
          f"with it; near end {near_off:.1f} / {near_on:.1f} dBFS")
    assert echo_off > -30, f"without the canceller the echo came back at {echo_off:.1f} dBFS"
    assert echo_on < echo_off - 20, (echo_off, echo_on)
    # double talk costs the near end a few dB of suppression, not its voice
    assert near_off > -35 and near_on > near_off - 10, (near_off, near_on)


RING = (800.0, 1000.0)
RINGBACK = (440.0, 480.0)


def test_ring_tone_is_heard_at_the_speaker_while_a_call_rings(headless_audio, softphone,
                                                              tmp_path):
    port = free_udp_port()
    a = softphone("answer", "--audio", "pyaudio", "--tones", "--config",
                  str(write_config(tmp_path / "a.toml", codecs=["PCMU"],
                                   listen=f"127.0.0.1:{port}")), env=headless_audio)
    a.wait_event("listening", timeout=20)
    quiet_before = record_monitor(headless_audio, 1.0, tmp_path / "before.raw")
    b = softphone("call", f"sip:a@127.0.0.1:{port}", "--timeout", "6", "--config",
                  str(write_config(tmp_path / "b.toml", codecs=["PCMU"])))
    a.wait_event("incoming", timeout=20)
    ringing = record_monitor(headless_audio, 3.0, tmp_path / "ringing.raw")
    assert b.wait_exit(20) == 1  # nobody answered: the caller gave up
    a.wait_event("ended", timeout=10)
    after = record_monitor(headless_audio, 1.0, tmp_path / "after.raw")
    assert level_db(quiet_before) < -60
    assert level_db(ringing) > -30 and band_db(ringing, 8000, RING) > -3, \
        (level_db(ringing), band_db(ringing, 8000, RING))
    assert level_db(after) < -60, level_db(after)


def test_ringback_is_heard_while_our_call_rings(headless_audio, softphone, tmp_path):
    port = free_udp_port()
    b = softphone("answer", "--config", str(write_config(tmp_path / "b.toml", codecs=["PCMU"],
                                                         listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=20)
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--audio", "pyaudio", "--timeout", "6",
                  "--config", str(write_config(tmp_path / "a.toml", codecs=["PCMU"])),
                  env=headless_audio)
    a.wait_event("ringing", timeout=20)
    ringback = record_monitor(headless_audio, 2.5, tmp_path / "ringback.raw")
    assert a.wait_exit(20) == 1
    after = record_monitor(headless_audio, 1.0, tmp_path / "after.raw")
    assert level_db(ringback) > -30 and band_db(ringback, 8000, RINGBACK) > -3, \
        (level_db(ringback), band_db(ringback, 8000, RINGBACK))
    assert level_db(after) < -60, level_db(after)


def test_a_playback_device_lost_mid_call_falls_back_to_the_default(headless_audio, softphone,
                                                                    tmp_path):
    """The "headset" is a second PulseAudio server, reached through an ALSA device of
    its own; stopping that server mid-call is a USB headset pulled out: PortAudio's
    stream stops, the phone reopens the default device (the first server's speaker) and
    says so, and the call goes on."""
    headset = HeadlessPulse(tmp_path / "headset-pulse")
    headset.start()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(
        f'pcm.headset {{ type pulse server "{headset.env["PULSE_SERVER"]}" device spk\n'
        f'  hint {{ show on description "USB Headset" }} }}\n')
    env = {**headless_audio, "HOME": str(home)}
    try:
        port = free_udp_port()
        b = softphone("answer", "--auto", "--audio", "pyaudio", "--max-calls", "1",
                      "--config", str(write_config(
                          tmp_path / "b.toml", codecs=["PCMU"], listen=f"127.0.0.1:{port}",
                          extra='output_device = "headset"\n')), env=env)
        b.wait_event("listening", timeout=20)
        tone = write_tone(tmp_path / "tone.wav", 700.0, seconds=4.0, level_dbfs=-12)
        a = softphone("call", f"sip:b@127.0.0.1:{port}", "--play", str(tone), "--duration",
                      "10", "--config", str(write_config(tmp_path / "a.toml", codecs=["PCMU"])))
        a.wait_event("answered", timeout=20)
        on_headset = record_monitor(headset.env, 1.5, tmp_path / "headset.raw")
        on_default_before = record_monitor(headless_audio, 1.0, tmp_path / "before.raw")
        headset.stop()  # pulled out
        notice = b.wait_stderr("went away", timeout=10)  # the notice event, as printed
        on_default = record_monitor(headless_audio, 1.5, tmp_path / "after.raw")
        assert a.wait_exit(20) == 0, a.diagnostics()
    finally:
        headset.stop()
    assert "audio: the output device 'headset' went away" in notice, notice
    assert "now on the default device" in notice, notice
    assert band_db(on_headset, 8000, (700.0,)) > -3 and level_db(on_headset) > -30
    assert level_db(on_default_before) < -60  # the call played on the headset only …
    assert band_db(on_default, 8000, (700.0,)) > -3 and level_db(on_default) > -30  # … then here
    ended = a.find_event("ended")
    assert ended["reason"] == "hangup" and ended["rtp"]["received"] > 300, ended


@pytest.mark.parametrize("key", ["input_device", "output_device", "ring_device"])
def test_a_device_name_that_is_not_there_is_a_config_error(headless_audio, softphone,
                                                           tmp_path, key):
    cfg = write_config(tmp_path / "a.toml", extra=f'{key} = "no such headset"\n')
    a = softphone("call", "sip:b@127.0.0.1:9", "--audio", "pyaudio", "--config", str(cfg),
                  env=headless_audio)
    assert a.wait_exit(20) == 2
    err = a.stderr_text()
    assert f"[audio] {key}: no audio" in err and "named 'no such headset'" in err, err
    assert "pulse" in err and "default" in err, err  # the devices there are
