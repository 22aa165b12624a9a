"""Audio sources/sinks, and WAV play/record and the echo bridge through real RTP."""

from __future__ import annotations

import math
import subprocess
import sys
import wave

import numpy as np
import pytest

from media_helpers import RecordingSink, dominant_hz, longest_gap_ms, rms_dbfs, wait_for
from peers.tone import write_tone
from softphone.media import devices
from softphone.media.devices import (AudioUnavailable, EchoBridge, NullSink, NullSource,
                                     TeeSink, ToneSource, WavSink, WavSource)
from softphone.media.rtp import MediaFormat, RtpSession

LO = "127.0.0.1"


def write_stereo_wav(path, rate=44100, freq=700.0, seconds=0.5):
    return write_tone(path, freq, seconds, rate, level_dbfs=20 * math.log10(0.3), channels=2)


def test_import_does_not_pull_in_aiortc():
    code = ("import sys, softphone.media, softphone.media.rtp, softphone.media.devices, "
            "softphone.media.playout; print('aiortc' in sys.modules, 'av' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_null_devices():
    assert NullSource().read(160, 8000) == bytes(320)
    NullSink().write(b"\x01\x00" * 10, 8000)
    assert NullSource().level_dbfs <= -100


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_tone_source_frequency_level_and_continuity(rate):
    src = ToneSource(1000, level_dbfs=-12)
    x = np.concatenate([np.frombuffer(src.read(rate // 50, rate), "<i2") for _ in range(60)])
    assert len(x) == rate // 50 * 60
    assert abs(dominant_hz(x, rate) - 1000) < 2
    assert abs(rms_dbfs(x) + 12) < 0.2
    assert abs(src.level_dbfs + 12) < 0.5
    # phase continuity across reads: no sample-to-sample jump bigger than the sine's slope
    assert np.abs(np.diff(x.astype(np.int32))).max() <= 2 * np.pi * 1000 / rate * 32767 * 0.36


def test_wav_source_converts_and_loops(tmp_path):
    path = tmp_path / "in.wav"
    write_stereo_wav(path, 44100, 700, 0.5)
    src = WavSource(path)
    src.prepare(8000)
    x = np.concatenate([np.frombuffer(src.read(160, 8000), "<i2") for _ in range(60)])  # 1.2 s
    assert abs(dominant_hz(x[:3200], 8000) - 700) < 3
    assert abs(dominant_hz(x[5000:8000], 8000) - 700) < 3  # looped
    once = WavSource(path, loop=False)
    y = np.concatenate([np.frombuffer(once.read(160, 8000), "<i2") for _ in range(60)])
    assert np.abs(y[-1600:]).max() == 0 and once.finished
    with pytest.raises(FileNotFoundError):
        WavSource(tmp_path / "missing.wav")


def test_wav_sink_writes_mono_16bit_at_first_rate(tmp_path):
    path = tmp_path / "out.wav"
    sink = WavSink(path)
    tone = ToneSource(500)
    for _ in range(25):
        sink.write(tone.read(320, 16000), 16000)
    with wave.open(str(path)) as w:  # readable before close: header patched per write
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 25 * 320
    for _ in range(25):
        sink.write(tone.read(160, 8000), 8000)  # codec changed: converted to 16 kHz
    sink.close()
    sink.close()
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert 45 * 320 <= len(x) <= 50 * 320
    assert abs(dominant_hz(x[-4000:], 16000) - 500) < 3


def test_tee_and_echo_bridge():
    a, b = RecordingSink(), RecordingSink()
    tee = TeeSink(a, b)
    tee.write(b"\x10\x00" * 160, 8000)
    assert a.chunks == b.chunks == [b"\x10\x00" * 160]
    bridge = EchoBridge(max_ms=100)
    assert bridge.source.read(160, 8000) == bytes(320)  # nothing yet: silence
    for i in range(10):  # 200 ms in, only 100 ms kept (bounded)
        bridge.sink.write(bytes([i, 0]) * 160, 8000)
    out = [bridge.source.read(160, 8000) for _ in range(6)]
    assert out[0] == bytes([5, 0]) * 160 and out[4] == bytes([9, 0]) * 160
    assert out[5] == bytes(320)


def test_no_device_raises_audio_unavailable(monkeypatch):
    from softphone.media.devices import pyaudio as portaudio  # where device lookup lives

    monkeypatch.setattr(portaudio, "list_devices", lambda: [])
    with pytest.raises(AudioUnavailable, match="no audio input device"):
        portaudio.find_device(None, True)
    monkeypatch.setattr(portaudio, "list_devices", lambda: [
        devices.DeviceInfo(0, "pulse", 32, 32, 44100.0, True, True)])
    assert portaudio.find_device("pul", False) == 0
    with pytest.raises(AudioUnavailable, match="named 'nope'"):
        portaudio.find_device("nope", True)


@pytest.mark.parametrize("codec,pt,rate", [("PCMU", 0, 8000), ("G722", 9, 16000)])
async def test_wav_play_and_record_through_rtp(tmp_path, codec, pt, rate):
    src_path, rec_path = tmp_path / "play.wav", tmp_path / "rec.wav"
    write_stereo_wav(src_path, 44100, 700, 0.4)
    a, b = await RtpSession.open(LO), await RtpSession.open(LO)
    fmt = MediaFormat(codec, pt, 8000)
    rec = WavSink(rec_path)
    try:
        a.start(fmt, (LO, b.local_port), None, rtcp_mux=True, source=WavSource(src_path),
                sink=NullSink())
        b.start(fmt, (LO, a.local_port), None, rtcp_mux=True, source=NullSource(), sink=rec)
        await wait_for(lambda: rec.frames_written > rate * 1.2, 5, "recording")
    finally:
        await a.close()
        await b.close()
        rec.close()
    with wave.open(str(rec_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, rate)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    tail = x[-rate // 2:]
    assert abs(dominant_hz(tail, rate) - 700) < 3
    assert longest_gap_ms(x, rate) <= 20


async def test_echo_bridge_through_rtp():
    a, b = await RtpSession.open(LO), await RtpSession.open(LO)
    heard = RecordingSink()
    bridge = EchoBridge()
    fmt = MediaFormat("PCMA", 8, 8000)
    try:
        a.start(fmt, (LO, b.local_port), None, rtcp_mux=False, source=ToneSource(850),
                sink=heard)
        b.start(fmt, (LO, a.local_port), None, rtcp_mux=False, source=bridge.source,
                sink=bridge.sink)
        await wait_for(lambda: heard.seconds() > 1.2, 5, "echo")
        x = heard.samples()[-4000:]
        assert abs(dominant_hz(x, 8000) - 850) < 4
        assert rms_dbfs(x) > -20
    finally:
        await a.close()
        await b.close()


def test_wav_read_encoded_matches_encoding_each_frame(tmp_path):
    """The pre-encoded loop gives the same bytes as reading and encoding frame by frame,
    across the wrap-around at the end of the file."""
    import wave

    import numpy as np

    from softphone.media.codecs import G711Encoder
    from softphone.media.devices import WavSource

    path = tmp_path / "t.wav"
    x = (np.sin(np.arange(8000 + 37) / 5) * 12000).astype("<i2")  # not a multiple of 160
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(x.tobytes())
    enc = G711Encoder("PCMU")
    fast, slow = WavSource(path), WavSource(path)
    for _ in range(120):  # 2.4 s: wraps the 1 s file twice
        assert fast.read_encoded(enc.encode, "PCMU", 160, 8000) == enc.encode(slow.read(160, 8000))
