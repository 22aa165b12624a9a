"""End to end through real audio devices on the headless PulseAudio server:
tone into the virtual mic → PyAudioSource → RTP → RtpSession → PyAudioSink →
captured from the speaker's monitor → tone detected."""

from __future__ import annotations

import math
import os
import subprocess

import numpy as np
import pytest

from media_helpers import dominant_hz, rms_dbfs, wait_for
from peers.procs import stop_popen
from peers.tone import write_tone
from softphone.media import devices
from softphone.media.devices import NullSink, NullSource
from softphone.media.rtp import MediaFormat, RtpSession

pytestmark = pytest.mark.audio
LO = "127.0.0.1"
TONE_HZ = 1000.0


@pytest.fixture
def pulse_env(headless_audio, monkeypatch):
    """This process's PortAudio talks to the headless server: mic = virtmic, speaker = spk."""
    for key, value in headless_audio.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PULSE_SOURCE", "virtmic")
    monkeypatch.setenv("PULSE_SINK", "spk")
    devices.reset_pyaudio()  # PortAudio scans devices once: rescan with this env
    yield {**headless_audio, "PULSE_SOURCE": "virtmic", "PULSE_SINK": "spk"}
    devices.reset_pyaudio()


def test_list_devices_sees_pulse(pulse_env):
    names = [d.name for d in devices.list_devices()]
    assert any("pulse" in n or "default" in n for n in names)


async def test_tone_from_mic_reaches_speaker_over_rtp(pulse_env, tmp_path):
    wav = tmp_path / "tone.wav"
    write_tone(wav, TONE_HZ, seconds=6.0, rate=48000, level_dbfs=20 * math.log10(0.5))
    cap_path = tmp_path / "spk.raw"
    env = {**os.environ, **pulse_env}
    feeder = subprocess.Popen(["paplay", "-d", "mic", str(wav)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    capture_file = open(cap_path, "wb")
    capture = subprocess.Popen(["parec", "-d", "spk.monitor", "--raw", "--format=s16le",
                                "--rate=8000", "--channels=1", "--latency-msec=20"],
                               env=env, stdout=capture_file, stderr=subprocess.DEVNULL)
    a = b = source = sink = None
    try:
        source = devices.PyAudioSource(None, 48000)
        sink = devices.PyAudioSink(None, 48000)
        a, b = await RtpSession.open(LO), await RtpSession.open(LO)
        fmt = MediaFormat("PCMU", 0, 8000)
        a.start(fmt, (LO, b.local_port), None, rtcp_mux=True, source=source, sink=NullSink())
        b.start(fmt, (LO, a.local_port), None, rtcp_mux=True, source=NullSource(), sink=sink)

        def captured_tone() -> bool:
            data = cap_path.read_bytes()
            x = np.frombuffer(data[: len(data) // 2 * 2], "<i2")
            return len(x) > 8000 and rms_dbfs(x[-4000:]) > -25

        await wait_for(captured_tone, 10, "tone at the speaker monitor", poll=0.1)
        await wait_for(lambda: cap_path.stat().st_size > 2 * 8000 * 1.0 + 16000, 5,
                       "a second of capture", poll=0.1)
        assert source.level_dbfs > -20  # the meter saw the mic
        snapshot = cap_path.read_bytes()  # while audio still flows
    finally:
        for s in (a, b):
            if s is not None:
                await s.close()
        for dev in (source, sink):
            if dev is not None:
                dev.close()
        for p in (feeder, capture):
            stop_popen(p, grace=5, group=False)
        capture_file.close()
    x = np.frombuffer(snapshot[: len(snapshot) // 2 * 2], "<i2")
    loud = x[-4000:]
    assert abs(dominant_hz(loud, 8000) - TONE_HZ) < 5
    # -9 dBFS in; G.711 and two resamplings keep it within a few dB
    assert -15 < rms_dbfs(loud) < -5
