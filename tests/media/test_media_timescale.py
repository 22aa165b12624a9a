"""Time-scaling: whole pitch periods in or out keep the pitch, change the duration by
what was asked, and leave no click; the playout buffer uses it to follow its target."""

from __future__ import annotations

import random

import numpy as np
import pytest

from media_helpers import L16Decoder, dominant_hz, max_step, tone
from softphone.media.playout import PlayoutBuffer
from softphone.media.timescale import compress, expand
from softphone.media.waveform import lag_range


def voiced(rate: int, seconds: float, f0: float = 150.0) -> np.ndarray:
    """A steady vowel: ten harmonics of `f0` falling off at 12 dB per octave."""
    t = np.arange(int(rate * seconds)) / rate
    return 6000 * sum(np.sin(2 * np.pi * k * f0 * t + k) / k ** 2 for k in range(1, 11))


def scale(x: np.ndarray, rate: int, change: int) -> np.ndarray:
    """`x` in 20 ms frames, each spliced by what is still to do, as the playout does."""
    frame = rate // 50
    out: list[np.ndarray] = []
    done = 0
    for i in range(0, len(x) - frame + 1, frame):
        f = x[i:i + frame]
        left = change - done
        if left > 0 and out:
            y = expand(np.concatenate(out)[-2 * lag_range(rate)[1]:], f, rate, left)
        elif left < 0:
            y = compress(f, rate, -left)
        else:
            y = None
        if y is not None:
            done += len(y) - len(f)
            f = y
        out.append(np.asarray(f, dtype=np.float64))
    return np.concatenate(out)


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("signal", ["tone", "vowel"])
@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_splices_keep_the_pitch_and_change_the_duration_as_asked(rate, signal, factor):
    x = tone(rate, 1.0, hz=440.0) if signal == "tone" else voiced(rate, 1.0)
    hz = 440.0 if signal == "tone" else 150.0
    change = round(len(x) * (factor - 1))
    y = scale(x, rate, change)
    period = lag_range(rate)[1]  # whole periods: within one (longest) period of the ask
    assert abs(len(y) - len(x) - change) < period, (len(y) - len(x), change)
    assert abs(dominant_hz(y, rate) - hz) < 0.005 * hz, dominant_hz(y, rate)
    assert max_step(y) <= 1.1 * max_step(x), (max_step(y), max_step(x))


def test_quiet_audio_is_cut_by_any_amount_and_loud_noise_is_left_alone():
    rng = np.random.default_rng(3)
    hush = rng.normal(0, 30, 320)            # ~-60 dBFS room noise: any amount may go
    y = compress(hush, 8000, 97, quiet_only=True)
    assert y is not None and len(y) == 320 - 97
    hiss = rng.normal(0, 3000, 320)          # a loud fricative: nothing repeats
    assert compress(hiss, 8000, 80) is None
    assert expand(hiss, hiss, 8000, 80) is None
    assert compress(hiss, 8000, 80, force=True) is not None  # unless the buffer insists


def test_playout_follows_jitter_by_time_scaling_without_clicks():
    """Jittery arrivals raise the target (the buffer grows), calm ones lower it again
    (it shrinks): both by splicing periods of the tone, never by a frame's jump. The
    buffer remembers 5 s of transits and then cuts a tone (never quiet) only after 3 s
    of waiting for a pause, so the calm stretch is long."""
    rate = 8000
    x = tone(rate, 13.0, hz=440.0)
    pcm = np.round(x).astype("<i2")
    buf = PlayoutBuffer(L16Decoder(rate), rate)
    rng = random.Random(11)
    pending: list[tuple[float, int]] = []
    out = []
    frames = len(pcm) // 160
    for i in range(frames):
        now = i * 0.02
        jitter = rng.uniform(0, 0.08) if 50 <= i < 150 else 0.0
        pending.append((now + jitter, i))
        pending.sort()
        while pending and pending[0][0] <= now:
            _, k = pending.pop(0)
            buf.push(k * 160, pcm[k * 160:(k + 1) * 160].tobytes(), now)
        out.append(buf.pull(160))
    y = np.frombuffer(b"".join(out), "<i2").astype(np.float64)
    assert buf.expansions > 0 and buf.compressions > 0, (buf.expansions, buf.compressions)
    assert buf.depth_ms <= buf.target_ms + 40  # back near the target once calm
    assert max_step(y) <= 1.1 * max_step(x), (max_step(y), max_step(x))


def test_a_burst_trimmed_after_a_stall_is_blended_in():
    """Packets held up for 400 ms then delivered at once overflow the buffer: the oldest
    are skipped, and what plays next is blended in from the repetition, not jumped to."""
    rate = 8000
    x = tone(rate, 3.0, hz=440.0)
    pcm = np.round(x).astype("<i2")
    buf = PlayoutBuffer(L16Decoder(rate), rate, max_delay_ms=200)
    out = []
    for i in range(len(pcm) // 160):
        if not 40 <= i < 60:
            for k in range(40, 61) if i == 60 else (i,):
                buf.push(k * 160, pcm[k * 160:(k + 1) * 160].tobytes(), i * 0.02)
        out.append(buf.pull(160))
    y = np.frombuffer(b"".join(out), "<i2").astype(np.float64)
    assert buf.overflow_dropped > 0
    assert max_step(y) <= 1.1 * max_step(x), (max_step(y), max_step(x))
