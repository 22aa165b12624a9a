"""The conference bridge mixes real RTP sessions over loopback: each leg hears the other
party and us, at each leg's own rate (PCMU 8 kHz with G.722 16 kHz); split gives each its
own devices back. Tones are found by frequency in what each far end decoded."""

from __future__ import annotations

import numpy as np
import pytest

from media_helpers import RecordingSink, dominant_hz, wait_for
from softphone.media.conference import ConferenceBridge
from softphone.media.devices import NullSink, ToneSource
from softphone.media.rtp import MediaFormat, RtpSession

PCMU = MediaFormat("PCMU", 0, 8000)
G722 = MediaFormat("G722", 9, 8000)


async def pair(fmt: MediaFormat, ours_hz: float, theirs_hz: float):
    """Our session and the far end's, each sending its tone; the far end records."""
    ours, theirs = await RtpSession.open("127.0.0.1"), await RtpSession.open("127.0.0.1")
    heard = RecordingSink()
    ours.start(fmt, ("127.0.0.1", theirs.local_port), None, rtcp_mux=False,
               source=ToneSource(ours_hz), sink=NullSink())
    theirs.start(fmt, ("127.0.0.1", ours.local_port), None, rtcp_mux=False,
                 source=ToneSource(theirs_hz), sink=heard)
    return ours, theirs, heard


def peaks(x: np.ndarray, rate: int, n: int = 3) -> list[float]:
    """The ``n`` strongest frequencies (Hz) of ``x``, 30 Hz apart at least."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    out: list[float] = []
    for k in np.argsort(spec)[::-1]:
        hz = k * rate / len(x)
        if hz > 50 and all(abs(hz - p) > 30 for p in out):
            out.append(hz)
        if len(out) == n:
            break
    return out


@pytest.mark.timeout(30)
async def test_each_leg_hears_the_other_and_us_at_its_own_rate_then_split():
    a, far_a, heard_a = await pair(PCMU, 1000.0, 660.0)   # leg A: PCMU, party A says 660 Hz
    b, far_b, heard_b = await pair(G722, 1000.0, 880.0)   # leg B: G.722, party B says 880 Hz
    bridge = ConferenceBridge()
    try:
        await wait_for(lambda: heard_a.seconds() > 0.3 and heard_b.seconds() > 0.3, 10,
                       "audio before the conference")
        bridge.join("a", a)
        bridge.join("b", b)
        assert bridge.rate == 16000
        start_a, start_b = len(heard_a.samples()), len(heard_b.samples())
        await wait_for(lambda: len(heard_a.samples()) > start_a + 9600 and
                       len(heard_b.samples()) > start_b + 19200, 10, "1.2 s of the mix")
        got_a = heard_a.samples()[start_a + 2000:]
        got_b = heard_b.samples()[start_b + 4000:]
        assert len(got_a) > 4000 and len(got_b) > 8000
        # party A hears us (1000) and party B (880); party B hears us and party A (660)
        assert all(any(abs(p - f) < 15 for p in peaks(got_a, 8000)) for f in (1000, 880)), \
            peaks(got_a, 8000)
        assert all(any(abs(p - f) < 15 for p in peaks(got_b, 16000)) for f in (1000, 660)), \
            peaks(got_b, 16000)
        bridge.set_muted("a", True)  # our microphone only: party A still hears B
        mark = len(heard_a.samples())
        await wait_for(lambda: len(heard_a.samples()) > mark + 6400, 10, "audio while muted")
        muted = heard_a.samples()[mark + 2000:]
        assert abs(dominant_hz(muted, 8000) - 880) < 15
        bridge.leave("a")
        bridge.leave("b")
        assert len(bridge) == 0 and isinstance(a.sink, NullSink)
        mark = len(heard_b.samples())
        await wait_for(lambda: len(heard_b.samples()) > mark + 12800, 10, "audio after split")
        alone = heard_b.samples()[mark + 4000:]
        assert abs(dominant_hz(alone, 16000) - 1000) < 15  # our tone alone again
    finally:
        for s in (a, far_a, b, far_b):
            await s.close()
