"""The softphone process with real audio devices (headless PulseAudio): the microphone
reaches the far end and comes back to the speaker; no device at all is a notice, not a crash.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from peers.net import free_udp_port
from peers.phoneconfig import write_config
from peers.procs import stop_popen
from peers.tone import write_tone

pytestmark = pytest.mark.audio


def test_pyaudio_mic_to_echo_and_back_to_speaker(headless_audio, softphone, tmp_path):
    env = {**headless_audio, "PULSE_SOURCE": "virtmic", "PULSE_SINK": "spk"}
    port = free_udp_port()
    echo = softphone("answer", "--auto", "--echo", "--max-calls", "1", "--config",
                     str(write_config(tmp_path / "b.toml", codecs=["PCMU"],
                                      listen=f"127.0.0.1:{port}")))
    echo.wait_event("listening", timeout=10)
    tone = write_tone(tmp_path / "t.wav", 1000.0, seconds=8.0, rate=48000, level_dbfs=-9)
    capture_path = tmp_path / "spk.raw"
    feeder = subprocess.Popen(["paplay", "-d", "mic", str(tone)], env={**env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(capture_path, "wb") as capture_file:
        capture = subprocess.Popen(["parec", "-d", "spk.monitor", "--raw", "--format=s16le",
                                    "--rate=8000", "--channels=1", "--latency-msec=20"],
                                   env=env, stdout=capture_file, stderr=subprocess.DEVNULL)
        try:
            a = softphone("call", f"sip:echo@127.0.0.1:{port}", "--audio", "pyaudio",
                          "--duration", "3", "--config",
                          str(write_config(tmp_path / "a.toml", codecs=["PCMU"])), env=env)
            assert a.wait_event("answered", timeout=20)["codec"] == "PCMU"
            assert a.wait_exit(20) == 0, a.diagnostics()
        finally:
            stop_popen(capture, grace=2)
            stop_popen(feeder, grace=2)
    err = a.stderr_text()
    assert "ALSA lib" not in err and "jack" not in err.lower(), err  # no PortAudio noise
    assert "using silence" not in err, err
    ended = a.find_event("ended")
    assert ended["rtp"]["sent"] > 100 and ended["rtp"]["received"] > 100, ended
    data = capture_path.read_bytes()
    x = np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float64) / 32768
    # the loud part of the speaker's output is our mic's tone, back from the echo service
    windows = x[: len(x) // 400 * 400].reshape(-1, 400)
    loud = windows[np.sqrt((windows ** 2).mean(axis=1)) > 10 ** (-30 / 20)].ravel()
    assert len(loud) > 8000, f"only {len(loud)} loud samples at the speaker"
    spectrum = np.abs(np.fft.rfft(loud * np.hanning(len(loud))))
    assert abs(np.argmax(spectrum[1:]) + 1 - 1000 * len(loud) / 8000) <= 5 * len(loud) / 8000


def test_no_sound_device_falls_back_to_silence(softphone, tmp_path):
    port = free_udp_port()
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)
    nowhere = {"PULSE_SERVER": "unix:/nonexistent/pulse", "XDG_RUNTIME_DIR": str(tmp_path),
               "ALSA_CONFIG_PATH": str(tmp_path / "none.conf")}
    (tmp_path / "none.conf").write_text("")  # ALSA with no devices at all
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--audio", "pyaudio", "--duration", "1",
                  "--config", str(write_config(tmp_path / "a.toml")), env=nowhere)
    assert a.wait_exit(20) == 0, a.diagnostics()
    err = a.stderr_text()
    assert "audio:" in err and "using silence" in err, err
    assert "Traceback" not in err
