"""PlayoutBuffer driven directly: order, loss, lateness, wrap, bounds, resync."""

from __future__ import annotations

import random

import numpy as np

from softphone.media.codecs import G711Decoder, G711Encoder
from softphone.media.playout import PlayoutBuffer

FRAME = 160  # 20 ms at 8 kHz


class LabelDecoder:
    """Payload = one label byte; decodes to a frame whose samples all equal label*100."""

    name = "test"
    audio_rate = 8000

    def decode(self, payload: bytes) -> bytes:
        return np.full(FRAME, payload[0] * 100, "<i2").tobytes()


def labels(pcm: bytes, frame: int = FRAME) -> list[int]:
    """Each frame's dominant label: the value most of its samples hold. (The waveform
    concealer delays its output by 3.75 ms and blends into the audio after a loss, so a
    frame starts with the end of the one before.)"""
    out = []
    for f in np.frombuffer(pcm, "<i2").reshape(-1, frame):
        values, counts = np.unique(f, return_counts=True)
        out.append(int(round(values[np.argmax(counts)] / 100)))
    return out


def filled(buf: PlayoutBuffer, start_ts: int, labels_: list[int], t0: float = 0.0) -> None:
    for i, lab in enumerate(labels_):
        buf.push((start_ts + i * FRAME) & 0xFFFFFFFF, bytes([lab]), t0 + i * 0.02)


def test_silence_until_prebuffered_then_in_order():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    assert buf.pull(FRAME) == bytes(FRAME * 2)  # empty: silence
    buf.push(1000, bytes([1]), 0.0)
    assert labels(buf.pull(FRAME)) == [0]  # 20 ms buffered < 40 ms target
    filled(buf, 1000 + FRAME, [2, 3, 4], 0.02)
    assert labels(buf.pull(FRAME * 4)) == [1, 2, 3, 4]


def test_reordered_packets_play_in_timestamp_order():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    out = []
    for k in range(0, 8, 2):  # pairs arrive swapped: 2,1, 4,3, ...
        buf.push((k + 1) * FRAME, bytes([k + 2]), k * 0.02 + 0.02)
        buf.push(k * FRAME, bytes([k + 1]), k * 0.02 + 0.021)
        out += labels(buf.pull(FRAME * 2))
    assert out == list(range(1, 9))
    assert buf.duplicates == 0 and buf.late_dropped == 0 and buf.concealed_frames == 0


def test_lost_packet_is_concealed_and_timing_kept():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [1, 2])
    buf.push(3 * FRAME, bytes([4]), 0.06)  # label 3 lost
    buf.push(4 * FRAME, bytes([5]), 0.08)
    out = labels(buf.pull(FRAME * 5))
    assert out == [1, 2, 2, 4, 5]  # repeat of the previous frame fills the hole
    assert buf.concealed_frames == 1


def test_long_loss_fades_to_silence_and_resumes_on_time():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [50, 50])
    assert labels(buf.pull(FRAME * 2)) == [50, 50]
    x = np.frombuffer(buf.pull(FRAME * 8), "<i2").reshape(-1, FRAME).mean(axis=1)
    assert 4500 < x[0] < 5000 and 0 < x[2] < x[1] < x[0]  # fading repeats
    assert not x[4:].any()  # then silence (G.711 Appendix I: after 60 ms)
    buf.push(10 * FRAME, bytes([60]), 0.2)  # slots 2..9 were lost: the stall covered them
    assert labels(buf.pull(FRAME)) == [60]
    assert buf.depth_ms == 0


def test_far_end_gone_quiet_stays_silent_after_the_fade():
    """Pulled 20 ms at a time, as the sink does: once the fade has run out, nothing
    comes back (depth adaptation must not replay the last frame every 200 ms)."""
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [50, 50, 50])
    pulled = [buf.pull(FRAME) for _ in range(60)]  # 1.2 s
    assert labels(b"".join(pulled[:3])) == [50, 50, 50]
    frames = [np.frombuffer(pcm, "<i2").mean() for pcm in pulled]
    faded = frames.index(0.0)
    assert faded <= 10 and not any(frames[faded:]), frames


def test_late_and_duplicate_packets_are_dropped():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [1, 2, 3])
    buf.push(2 * FRAME, bytes([3]), 0.07)  # duplicate
    assert buf.duplicates == 1
    assert labels(buf.pull(FRAME * 3)) == [1, 2, 3]
    buf.push(FRAME, bytes([9]), 0.1)  # its slot has been played
    assert buf.late_dropped == 1


def test_timestamp_wrap():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    start = (1 << 32) - 2 * FRAME
    filled(buf, start, [1, 2, 3, 4, 5])
    assert labels(buf.pull(FRAME * 5)) == [1, 2, 3, 4, 5]
    assert buf.concealed_frames == 0


def test_depth_is_bounded_when_flooded():
    buf = PlayoutBuffer(LabelDecoder(), 8000, max_delay_ms=200)
    filled(buf, 0, [i % 250 + 1 for i in range(100)], 0.0)  # 2 s arriving at once
    buf.pull(FRAME)
    assert buf.depth_ms <= 200
    assert buf.overflow_dropped > 0


def test_dry_buffer_stalls_then_plays_the_late_packets():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [1, 2])
    assert labels(buf.pull(FRAME * 2)) == [1, 2]
    x = np.frombuffer(buf.pull(FRAME * 2), "<i2").reshape(-1, FRAME).mean(axis=1)
    assert 150 < x[0] <= 200 and 0 < x[1] < x[0]  # nothing yet: conceal (fading), clock stalls
    filled(buf, 2 * FRAME, [3, 4], 0.2)  # the delayed packets arrive
    assert labels(buf.pull(FRAME * 2)) == [3, 4]
    assert buf.late_dropped == 0


def test_timestamp_jump_resyncs():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [1, 2, 3])
    buf.pull(FRAME * 3)
    filled(buf, 5_000_000, [7, 8, 9], 1.0)
    out = labels(buf.pull(FRAME * 3))
    assert out[-1] in (7, 8, 9) and buf.late_dropped == 0


def test_reset_forgets_everything():
    buf = PlayoutBuffer(LabelDecoder(), 8000)
    filled(buf, 0, [1, 2, 3])
    buf.reset()
    assert buf.depth_ms == 0 and not buf.playing
    assert buf.pull(FRAME) == bytes(FRAME * 2)


def test_g722_ratio_audio_vs_clock():
    class Wide(LabelDecoder):
        audio_rate = 16000

        def decode(self, payload):
            return np.full(2 * FRAME, payload[0] * 100, "<i2").tobytes()

    buf = PlayoutBuffer(Wide(), 8000)
    for i in range(4):
        buf.push(i * FRAME, bytes([i + 1]), i * 0.02)  # 160 RTP ticks = 320 samples
    assert labels(buf.pull(4 * 2 * FRAME), 2 * FRAME) == [1, 2, 3, 4]


def test_jitter_raises_target_and_depth_follows():
    buf = PlayoutBuffer(G711Decoder("PCMU"), 8000)
    enc = G711Encoder("PCMU")
    rng = random.Random(5)
    payload = enc.encode(np.full(FRAME, 1000, "<i2").tobytes())
    t = 0.0
    for i in range(200):
        buf.push(i * FRAME, payload, i * 0.02 + rng.uniform(0, 0.06))
        t += 0.02
        buf.pull(FRAME)
    assert buf.jitter_ms > 5
    assert buf.target_ms > 50
    assert buf.depth_ms <= buf.max_delay_ms


def test_packet_flood_is_bounded():
    """Distinct timestamps inside the resync window must not pile up without limit."""
    from softphone.media.codecs import make_decoder
    from softphone.media.playout import MAX_PACKETS, PlayoutBuffer

    buf = PlayoutBuffer(make_decoder("PCMU"), 8000)
    for ts in range(0, 10_000, 2):  # 5,000 packets, 2 ticks apart: all within ±2 s
        buf.push(ts, b"\xff" * 160, now=0.0)
    assert len(buf._payloads) == MAX_PACKETS
    assert buf.overflow_dropped == 5_000 - MAX_PACKETS


def jittery_playout(buf: PlayoutBuffer, seconds: float, jitter, seed: int = 12,
                    on_pull=None) -> list[bytes]:
    """A 440 Hz tone (G.711) sent every 20 ms, each packet delayed by `jitter(i, rng)`
    seconds, pulled 20 ms at a time on the receiver's clock (7 ms off the sender's);
    `on_pull(i, buf)` after each pull."""
    enc = G711Encoder("PCMU")
    rng = random.Random(seed)
    t = np.arange(8000 * seconds) / 8000
    pcm = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    frames = len(pcm) // FRAME
    events = [(i * 0.02 + jitter(i, rng), 0, i) for i in range(frames)]
    events += [(k * 0.02 + 0.007, 1, k) for k in range(frames)]
    out = []
    for when, kind, i in sorted(events):
        if kind == 0:
            buf.push(i * FRAME, enc.encode(pcm[i * FRAME:(i + 1) * FRAME].tobytes()), when)
        else:
            out.append(buf.pull(FRAME, when))
            if on_pull is not None:
                on_pull(i, buf)
    return out


def test_steady_jitter_plays_every_packet_in_time_once_learnt():
    """60 ± 30 ms of uniform jitter (packets overtake each other): once the buffer has
    seen a second of it, no packet comes too late, nothing is concealed and the delay
    neither creeps up nor hunts — about the 60 ms spread plus a frame, not a maximum."""
    buf = PlayoutBuffer(G711Decoder("PCMU"), 8000)
    settled: dict[str, int] = {}
    depths: list[float] = []

    def watch(i: int, b: PlayoutBuffer) -> None:
        if i == 50:  # 1 s in
            settled.update(late=b.late_dropped, concealed=b.concealed_frames,
                           splices=b.expansions + b.compressions)
        elif i > 50:
            depths.append(b.depth_ms)

    jittery_playout(buf, 12.0, lambda i, rng: 0.06 + rng.uniform(-0.03, 0.03), on_pull=watch)
    assert buf.late_dropped == settled["late"], buf.late_dropped
    # the stream ends dry: the last pulls conceal (fewer than the 7 ms clock offset's one)
    assert buf.concealed_frames - settled["concealed"] <= 1, buf.concealed_frames
    assert buf.expansions + buf.compressions - settled["splices"] <= 1
    assert 70 <= buf.target_ms <= 90, buf.target_ms
    assert max(depths) <= 120, max(depths)


def test_delay_grows_for_new_jitter_and_shrinks_when_it_is_gone():
    """Jitter that starts mid-call raises the delay by splicing (packets come late only
    while it learns: in the first second); once the path is calm again for the window
    (5 s), the delay comes back down to the minimum."""
    buf = PlayoutBuffer(G711Decoder("PCMU"), 8000)
    seen: dict[int, tuple[float, int]] = {}

    def jitter(i: int, rng: random.Random) -> float:
        return 0.02 + (rng.uniform(0, 0.08) if 100 <= i < 250 else 0.0)

    jittery_playout(buf, 14.0, jitter,
                    on_pull=lambda i, b: seen.setdefault(i, (b.target_ms, b.late_dropped)))
    assert seen[240][0] >= 95 and buf.expansions >= 1
    assert seen[150][1] == seen[250][1], (seen[150], seen[250])  # learnt within 1 s
    assert buf.compressions >= 1
    assert buf.target_ms == buf.min_delay_ms
    assert buf.depth_ms <= buf.min_delay_ms + 20, buf.depth_ms


def test_transit_window_quantile_floor_and_forgetting():
    """The 99 % quantile ignores the odd outlier, a packet slower than it raises it at
    once, and the window forgets after 5 s of packets."""
    from softphone.media.transit import REFRESH, TransitWindow

    w = TransitWindow(20.0)  # 250 packets
    for i in range(250):
        w.add(1000.0 + i % 50)  # transits 1000..1049 ms: a 49 ms spread
    assert w.spread == 49.0 and w.high == 1049.0
    w.add(5000.0)  # one spike in 250: above the quantile
    assert w.high == 1049.0
    for _ in range(3):
        w.add(5000.0)
    assert w.high == 5000.0  # four of 250: within the top 1 %, now counted
    for _ in range(250 + REFRESH):  # (the quantile is recomputed every REFRESH packets)
        w.add(1000.0)
    assert w.spread == 0.0  # 5 s of calm: the spikes are forgotten
    w.clear()
    assert len(w) == 0 and w.spread == 0.0
