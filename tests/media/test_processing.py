"""The microphone processing (WebRTC AEC3/NS/AGC2 through pywebrtc-audio) on a synthetic
room echo: far-end speech through a room impulse response plus noise, with and without
near-end speech (tests/peers/echoscene.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from peers.echoscene import babble, echo_scene, gain_db, through
from softphone.media import processing
from softphone.media.processing import (OFF, Processing, ProcessingUnavailable, VoiceProcessor,
                                        erle_db)

AEC_ONLY = Processing(echo_cancellation=True, noise_suppression=False, auto_gain_control=False)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_echo_canceller_removes_a_room_echo(rate):
    far = babble(8.0, rate, seed=1)
    scene = echo_scene(far, rate=rate, delay_ms=80, rt60_s=0.3, erl_db=6, noise_dbfs=-65)
    out = through(VoiceProcessor(rate, AEC_ONLY, delay_hint_ms=80), scene.mic, scene.far, rate)
    settled = slice(3 * rate, 8 * rate)  # after the canceller has converged
    erle = erle_db(scene.mic[settled], scene.far[settled], out[settled], rate)
    assert erle >= 15, f"ERLE {erle:.1f} dB"
    # without the canceller the same measure finds no enhancement at all
    assert abs(erle_db(scene.mic[settled], scene.far[settled], scene.mic[settled], rate)) < 0.1


@pytest.mark.parametrize("true_delay_ms,hint_ms", [(150, 20), (30, 120)])
def test_the_echo_delay_is_estimated_not_taken_from_the_hint(true_delay_ms, hint_ms):
    """The hint (PortAudio's latency) can be far off on a real device: the canceller finds
    the echo path's real delay itself."""
    rate = 16000
    far = babble(8.0, rate, seed=3)
    scene = echo_scene(far, rate=rate, delay_ms=true_delay_ms, rt60_s=0.3, erl_db=6,
                       noise_dbfs=-65)
    out = through(VoiceProcessor(rate, AEC_ONLY, delay_hint_ms=hint_ms), scene.mic, scene.far,
                  rate)
    settled = slice(4 * rate, 8 * rate)
    erle = erle_db(scene.mic[settled], scene.far[settled], out[settled], rate)
    assert erle >= 15, f"ERLE {erle:.1f} dB with the echo at {true_delay_ms} ms, hint {hint_ms}"


def test_near_end_speech_survives_double_talk():
    rate = 16000
    far, near = babble(10.0, rate, seed=1), babble(4.0, rate, seed=2, pitch_hz=210)
    scene = echo_scene(far, near, rate=rate, double_talk_at=6.0, noise_dbfs=-65)
    out = through(VoiceProcessor(rate, AEC_ONLY), scene.mic, scene.far, rate)
    lo, hi = scene.double_talk
    kept = gain_db(scene.near[lo:hi], out[lo:hi])
    assert kept > -10, f"the near end came out {kept:.1f} dB down"


def test_disabled_is_a_passthrough_and_can_be_switched():
    rate = 16000
    far = babble(3.0, rate, seed=1)
    scene = echo_scene(far, rate=rate)
    block = scene.mic[: rate // 50].tobytes()
    proc = VoiceProcessor(rate, OFF)
    assert proc.process(block, scene.far[: rate // 50].tobytes()) == block
    proc.configure(AEC_ONLY)
    assert proc.process(block, scene.far[: rate // 50].tobytes()) != block
    proc.configure(OFF)
    assert proc.process(block, None) == block


def test_noise_suppression_lowers_steady_noise():
    rate = 16000
    rng = np.random.default_rng(5)
    noise = (rng.standard_normal(4 * rate) * 300).astype(np.int16)  # about -40 dBFS
    ns = Processing(False, True, False)
    out = through(VoiceProcessor(rate, ns), noise, np.zeros_like(noise), rate)
    tail = slice(2 * rate, 4 * rate)
    drop = -gain_db(noise[tail], out[tail])
    assert drop > 6, f"noise only {drop:.1f} dB lower"


def test_gain_control_lifts_a_quiet_talker():
    rate = 16000
    quiet = babble(8.0, rate, seed=3, level_dbfs=-45)
    agc = Processing(False, False, True)
    out = through(VoiceProcessor(rate, agc), quiet, np.zeros_like(quiet), rate)
    tail = slice(5 * rate, 8 * rate)
    gain = gain_db(quiet[tail], out[tail])
    assert gain > 6, f"only {gain:.1f} dB of gain"


def test_erle_measure():
    rate = 8000
    far = babble(2.0, rate, seed=1)
    mic = (far.astype(float) * 0.5).astype(np.int16)
    assert erle_db(mic, far, mic // 10, rate) == pytest.approx(20, abs=0.3)
    assert erle_db(mic, np.zeros_like(far), mic, rate) == 0.0  # no far end: nothing to score


def test_a_missing_library_is_reported_not_raised_elsewhere(monkeypatch):
    monkeypatch.setattr(processing, "_library", None)
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # import fails as if missing
    with pytest.raises(ProcessingUnavailable, match="pywebrtc-audio"):
        VoiceProcessor(16000, AEC_ONLY)
