"""Loss concealment heard through the playout buffer: no clicks where it starts and ends,
the energy of what fills a gap, the fade over a long loss, and Opus's own PLC and FEC."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from media_helpers import L16Decoder, max_step, tone
from softphone.media import libopus
from softphone.media.codecs import make_decoder, make_encoder
from softphone.media.plc import WaveformConcealer
from softphone.media.playout import PlayoutBuffer


def speech_like(rate: int, seconds: float) -> np.ndarray:
    """Voiced-speech stand-in: 14 harmonics of a gliding 110..170 Hz pitch falling off
    at 12 dB per octave (as voiced speech does), with a syllable-rate envelope that
    never falls silent."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase + k) / k ** 2 for k in range(1, 15))
    return 6000 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))


def play(x: np.ndarray, rate: int, lost: set[int], clock_rate: int | None = None) -> np.ndarray:
    """`x` sent in 20 ms packets (those numbered in `lost` never arrive) through a
    playout buffer pulled 20 ms at a time; what the speaker gets, aligned with `x` (it
    starts playing on the second pull, and the concealer runs `output_delay` behind)."""
    clock_rate = clock_rate or rate
    frame, ticks = rate // 50, clock_rate // 50
    buf = PlayoutBuffer(L16Decoder(rate), clock_rate)
    pcm = np.round(x).astype("<i2")
    out = []
    for i in range(len(pcm) // frame):
        if i not in lost:
            buf.push(i * ticks, pcm[i * frame:(i + 1) * frame].tobytes(), i * 0.02)
        out.append(buf.pull(frame))
    assert buf.concealed_frames > 0
    y = np.frombuffer(b"".join(out), "<i2").astype(np.float64)
    return y[frame + buf.output_delay:]


def block_rms(x: np.ndarray, n: int) -> np.ndarray:
    m = len(x) // n
    return np.sqrt((x[:m * n].reshape(m, n) ** 2).mean(axis=1))


# --------------------------------------------------------------------------- no clicks
@pytest.mark.parametrize("signal", ["tone", "speech"])
@pytest.mark.parametrize("rate,clock", [(8000, 8000), (16000, 8000)])  # G.711, G.722
@pytest.mark.parametrize("lost", [{7}, {10, 11}, {10, 11, 12, 13, 14}, {13, 15, 21}])
def test_no_click_where_concealment_starts_or_ends(signal, rate, clock, lost):
    """Every sample-to-sample step of the played audio stays within what the signal
    itself does (repeating a 20 ms frame of a 440 Hz tone jumps by most of its swing)."""
    x = tone(rate, 0.6) if signal == "tone" else speech_like(rate, 0.6)
    y = play(x, rate, lost, clock)
    assert max_step(y) <= 1.1 * max_step(x), (max_step(y), max_step(x))


# --------------------------------------------------------------------------- energy
@pytest.mark.parametrize("signal", ["tone", "speech"])
def test_one_lost_frame_keeps_its_neighbours_energy(signal):
    rate = 8000
    x = tone(rate, 0.6) if signal == "tone" else speech_like(rate, 0.6)
    y = play(x, rate, {10})
    e = block_rms(y, 160)  # 20 ms blocks
    # between its neighbours (the envelope may slope), give or take the fade's 10 %
    assert 0.75 * min(e[9], e[11]) <= e[10] <= 1.1 * max(e[9], e[11]), e[8:13]


def test_long_loss_fades_as_g711_appendix_i_then_resumes():
    """Full level for 10 ms, then 20 % less per 10 ms, silence after 60 ms; the audio
    after the loss comes back at its own level."""
    rate, unit = 8000, 80  # 10 ms
    x = tone(rate, 0.5)
    plc = WaveformConcealer(rate)
    y = np.concatenate([plc.good(x[:1600]), plc.lost(800), plc.good(x[2400:])])
    y = y[plc.delay:].astype(np.float64)  # the output runs `delay` samples behind
    e = block_rms(y[1600:2400], unit) / (8000 / np.sqrt(2))  # relative to the tone's rms
    # a linear fade from g to g-0.2 over a block has rms sqrt(mean(g(t)²))
    want = [1.0] + [np.sqrt(np.mean(np.linspace(1 - 0.2 * k, 0.8 - 0.2 * k, unit) ** 2))
                    for k in range(5)] + [0.0] * 4
    assert np.allclose(e, want, atol=0.03), (e.round(3), np.round(want, 3))
    after = block_rms(y[2400 + unit:3600], unit) / (8000 / np.sqrt(2))
    assert np.allclose(after, 1.0, atol=0.02), after
    assert max_step(y) <= 1.1 * max_step(x)  # the fade-in after silence is no click


def test_concealment_repeats_the_pitch_not_the_frame():
    """The gap of a tone is filled by the tone itself, in phase: the played audio
    matches the lost one closely (a repeated 20 ms frame is out of phase)."""
    rate = 8000
    x = tone(rate, 0.6, hz=220.0)
    y = play(x, rate, {10})
    gap = slice(10 * 160, 10 * 160 + 80)  # the first 10 ms: not faded yet
    err = np.sqrt(np.mean((y[gap] - x[gap]) ** 2))
    assert err < 0.05 * 8000, err


# --------------------------------------------------------------------------- Opus
def opus_stream(seconds: float, fec: bool) -> tuple[np.ndarray, list[bytes]]:
    x = speech_like(48000, seconds)
    enc = make_encoder("opus", 20, {"useinbandfec": "1"} if fec else {})
    pcm = np.round(x).astype("<i2")
    return x, [enc.encode(pcm[i:i + 960].tobytes()) for i in range(0, len(pcm), 960)]


def test_our_opus_encoder_sends_fec_when_asked():
    _, with_fec = opus_stream(1.0, True)
    _, without = opus_stream(1.0, False)
    assert sum(map(libopus.has_fec, with_fec)) > len(with_fec) // 2
    assert not any(map(libopus.has_fec, without))


class NoFec:
    """libopus's decoder with its FEC withheld (PLC only), to compare against."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.audio_rate = inner, inner.name, inner.audio_rate

    def decode(self, payload: bytes) -> bytes:
        return self.inner.decode(payload)

    def conceal(self, samples: int) -> bytes:
        return self.inner.conceal(samples)


def opus_play(packets: list[bytes], lost: set[int], decoder) -> tuple[np.ndarray, PlayoutBuffer]:
    buf = PlayoutBuffer(decoder, 48000)
    out = []
    for i, p in enumerate(packets):
        if i not in lost:
            buf.push(i * 960, p, i * 0.02)
        out.append(buf.pull(960))
    return np.frombuffer(b"".join(out), "<i2").astype(np.float64), buf


def test_opus_fec_recovers_a_lost_packet_better_than_plc():
    decoder = make_decoder("opus")
    assert isinstance(decoder, libopus.LibopusDecoder), "libopus0 must be installed"
    _, packets = opus_stream(1.0, True)
    k = next(i for i in range(20, 40) if libopus.has_fec(packets[i + 1]))
    clean, _ = opus_play(packets, set(), make_decoder("opus"))
    fec, buf = opus_play(packets, {k}, decoder)
    plc, plc_buf = opus_play(packets, {k}, NoFec(make_decoder("opus")))
    assert buf.fec_recovered == 1 and buf.concealed_frames == 0
    assert plc_buf.fec_recovered == 0 and plc_buf.concealed_frames == 1
    assert buf.expansions == buf.compressions == 0  # no time-scaling: slots line up
    # packet k plays on the pull after the next one arrives (40 ms prebuffered)
    slot = slice((k + 1) * 960, (k + 2) * 960)
    assert np.sqrt(np.mean(clean[slot] ** 2)) > 500  # a voiced slot, not a pause
    err_fec = np.sqrt(np.mean((fec[slot] - clean[slot]) ** 2))
    err_plc = np.sqrt(np.mean((plc[slot] - clean[slot]) ** 2))
    assert err_fec < 0.5 * err_plc, (err_fec, err_plc)


def test_opus_plc_fills_a_lost_packet_without_fec():
    _, packets = opus_stream(1.0, False)
    y, buf = opus_play(packets, {25}, make_decoder("opus"))
    assert buf.concealed_frames == 1 and buf.fec_recovered == 0
    e = block_rms(y, 960)
    assert e[26] > 0.5 * (e[25] + e[27]) / 2, e[24:29]  # the gap is filled, not silent


def test_without_libopus_opus_falls_back_to_waveform_concealment(monkeypatch, caplog):
    """The library really fails to load (a path that does not exist): a log line says
    so, PyAV decodes, and the buffer conceals by itself."""
    monkeypatch.setattr(libopus, "_tried", False)
    monkeypatch.setattr(libopus, "_lib", None)
    find = libopus.ctypes.util.find_library
    monkeypatch.setattr(libopus.ctypes.util, "find_library",
                        lambda name: "/nonexistent/libopus.so.0" if name == "opus" else find(name))
    with caplog.at_level(logging.WARNING, logger="softphone.media.libopus"):
        decoder = make_decoder("opus")
    assert not isinstance(decoder, libopus.LibopusDecoder)
    assert "libopus not loadable" in caplog.text
    _, packets = opus_stream(0.6, True)
    y, buf = opus_play(packets, {12}, decoder)
    assert buf.concealed_frames == 1 and buf.fec_recovered == 0
    e = block_rms(y, 960)
    assert e[13] > 0.5 * (e[12] + e[14]) / 2, e[11:16]
