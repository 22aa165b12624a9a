"""The judges of what arrives: a steady tone is told from another tone, from speech and from
noise; speech from a tone and from steady noise; silence from a click. Real speech comes
from espeak-ng, at run time."""

from __future__ import annotations

import subprocess
import wave

import numpy as np
import pytest

from peers.procs import require_binary
from softphone.scenario.audio import Analyser, judge_silence, judge_speech, judge_tone


def frames(x: np.ndarray, rate: int):
    analyser, n = Analyser(), int(rate * 0.02)
    return [analyser.frame(i / rate, x[i:i + n].astype("<i2").tobytes(), rate)
            for i in range(0, len(x) - n + 1, n)]


def tone(freq: float, seconds: float, rate: int = 8000, dbfs: float = -12.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (10 ** (dbfs / 20) * np.sqrt(2) * 32767 * np.sin(2 * np.pi * freq * t))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([require_binary("espeak-ng"), "-w", str(path),
                    "Welcome to the test line. Press one for sales or two for support."],
                   check=True, timeout=30)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float), \
            w.getframerate()


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_a_tone_is_found_and_measured(rate):
    verdict = judge_tone(frames(tone(425, 2.0, rate), rate), 425, 10, -40, 1.5)
    assert verdict.ok, verdict
    measured, _, rest = verdict.value.partition(" Hz at ")
    assert abs(float(measured) - 425) < 1.0 and rest.startswith("-12.0 dBFS"), verdict.value


def test_a_wrong_tone_fails_with_the_measured_frequency():
    verdict = judge_tone(frames(tone(523, 2.0), 8000), 440, 10, -40, 1.0)
    assert not verdict.ok and verdict.value == "heard 523 Hz at -12.0 dBFS for 1.98 s"


def test_a_tone_too_short_or_too_quiet_fails():
    assert not judge_tone(frames(tone(440, 0.5), 8000), 440, 10, -40, 1.0).ok
    quiet = judge_tone(frames(tone(440, 2.0, dbfs=-50), 8000), 440, 10, -40, 1.0)
    assert not quiet.ok and "-50.0 dBFS" in quiet.value


def test_a_lost_packet_does_not_break_a_tone_but_silence_does():
    x = tone(440, 2.0)
    x[8000:8160] = 0                        # one 20 ms frame lost, concealed as silence
    assert judge_tone(frames(x, 8000), 440, 10, -40, 1.8).ok
    x[4000:8000] = 0                        # half a second of nothing: two runs
    verdict = judge_tone(frames(x, 8000), 440, 10, -40, 1.0)
    assert not verdict.ok and verdict.seconds < 1.0


def test_speech_is_told_from_tones_and_steady_noise(speech):
    x, rate = speech
    assert judge_speech(frames(x[: int(rate * 2.5)], rate), -40, 2.0).ok
    on_tone = judge_speech(frames(tone(440, 3.0), 8000), -40, 1.0)
    assert not on_tone.ok and "a steady tone rather than speech" in on_tone.value
    noise = np.random.default_rng(7).normal(0, 3000, 24000)
    on_noise = judge_speech(frames(noise, 8000), -40, 1.0)
    assert not on_noise.ok and "level swing 0." in on_noise.value
    assert not judge_tone(frames(x, rate), 440, 10, -40, 1.0).ok


def test_silence_and_what_breaks_it():
    quiet = np.random.default_rng(3).normal(0, 20, 16000)  # about -64 dBFS: line noise
    assert judge_silence(frames(quiet, 8000), -50, 1.5).ok
    quiet[8000:8040] = 20000                               # a click
    verdict = judge_silence(frames(quiet, 8000), -50, 1.5)
    assert not verdict.ok and "the longest quiet stretch was 1.00 s" in verdict.value
    assert judge_silence([], -50, 1.0).value == "no audio arrived"
