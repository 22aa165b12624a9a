"""RtpSession over loopback: codecs, DTMF, latching, wraps, SSRC change, impairment,
malformed input, RTCP, hold/mute, timeout, close."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from media_helpers import (LossyRelay, RawUdp, RecordingSink, dominant_hz, longest_gap_ms,
                           wait_for)
from softphone.media.devices import NullSource, ToneSource
from softphone.media.rtp import MediaFormat, RtpSession

LO = "127.0.0.1"
FORMATS = {
    "PCMU": MediaFormat("PCMU", 0, 8000, dtmf_payload_type=101),
    "PCMA": MediaFormat("PCMA", 8, 8000, dtmf_payload_type=101),
    "G722": MediaFormat("G722", 9, 8000, dtmf_payload_type=101),
    "opus": MediaFormat("opus", 111, 48000, channels=2,
                        fmtp={"useinbandfec": "1", "maxaveragebitrate": "24000"},
                        dtmf_payload_type=101, dtmf_clock_rate=48000),
}


@pytest.fixture
async def pair():
    sessions = [await RtpSession.open(LO), await RtpSession.open(LO)]
    yield sessions
    for s in sessions:
        await s.close()


def start_pair(a, b, fmt, *, src_a=None, src_b=None, mux=False, **kw_b):
    sink_a, sink_b = RecordingSink(), RecordingSink()
    a.start(fmt, (LO, b.local_port), None, rtcp_mux=mux, source=src_a or ToneSource(1000),
            sink=sink_a)
    b.start(fmt, (LO, a.local_port), None, rtcp_mux=mux, source=src_b or NullSource(),
            sink=sink_b, **kw_b)
    return sink_a, sink_b


async def test_open_binds_even_port_with_rtcp_pair():
    s = await RtpSession.open(LO, (30000, 30010))
    try:
        assert s.local_port % 2 == 0 and 30000 <= s.local_port <= 30009
        other = await RtpSession.open(LO, (s.local_port, s.local_port + 3))
        assert other.local_port == s.local_port + 2  # the taken pair is skipped
        await other.close()
    finally:
        await s.close()
    await s.close()  # idempotent


@pytest.mark.parametrize("codec", list(FORMATS))
async def test_tone_crosses_for_each_codec(pair, codec):
    a, b = pair
    fmt = FORMATS[codec]
    _, sink_b = start_pair(a, b, fmt, src_a=ToneSource(1000, -12))
    await wait_for(lambda: sink_b.seconds() > 1.0 and b.stats().received > 40, 5, "audio")
    x = sink_b.samples()[-sink_b.rate // 2:]
    assert sink_b.rate == {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}[codec]
    assert abs(dominant_hz(x, sink_b.rate) - 1000) < 5
    level = 20 * np.log10(np.sqrt(np.mean((x / 32768.0) ** 2)) + 1e-12)
    assert -15 < level < -9
    st = a.stats()
    assert st.sent >= 40 and st.codec == codec
    assert b.stats().lost == 0 and b.stats().malformed == 0


async def test_opus_sends_mono_at_negotiated_bitrate(pair):
    a, b = pair
    start_pair(a, b, FORMATS["opus"])
    await wait_for(lambda: a.stats().sent >= 50, 5, "packets")
    enc = a.encoder._inner.codec
    assert enc.layout.name == "mono" and enc.bit_rate == 24000
    # 24 kbit/s in 20 ms frames is ~60 bytes of payload; 96k stereo would be ~240
    per_packet = a.stats().bytes_sent / a.stats().sent - 12
    assert per_packet < 120


@pytest.mark.parametrize("fmtp,rate", [
    ({}, 32000),                                                  # speech only
    ({"useinbandfec": "1"}, 40000),                               # + 8 kbit/s for the FEC
    ({"useinbandfec": "1", "maxaveragebitrate": "24000"}, 24000),  # the far end's cap wins
    ({"maxaveragebitrate": "64000"}, 32000),                      # a cap is no request
])
def test_opus_bitrate_gives_fec_its_own_bits(fmtp, rate):
    from softphone.media.codecs import opus_bitrate

    assert opus_bitrate(fmtp) == rate


async def test_pacing_follows_the_clock(pair):
    a, b = pair
    start_pair(a, b, FORMATS["PCMU"])
    loop = asyncio.get_running_loop()
    await wait_for(lambda: a.stats().sent >= 1, 2, "first packet")
    t0, n0 = loop.time(), a.stats().sent
    await asyncio.sleep(1.0)
    elapsed, sent = loop.time() - t0, a.stats().sent - n0
    assert abs(sent - elapsed / 0.02) <= 2


async def test_dtmf_send_and_receive(pair):
    a, b = pair
    digits: list[str] = []
    start_pair(a, b, FORMATS["PCMU"], on_dtmf=digits.append)
    a.send_dtmf("159#*D", duration_ms=80)
    await wait_for(lambda: len(digits) >= 6, 5, "digits")
    await asyncio.sleep(0.1)
    assert digits == list("159#*D")
    assert a.stats().dtmf_sent == 6 and b.stats().dtmf_received == 6
    with pytest.raises(ValueError):
        a.send_dtmf("x")


async def test_rfc4733_packets_and_marker_bits():
    from aiortc.rtp import RtpPacket

    a = await RtpSession.open(LO)
    raw = await RawUdp.open()
    try:
        a.start(FORMATS["PCMU"], (LO, raw.port), None, rtcp_mux=True, source=ToneSource(),
                sink=RecordingSink())
        await wait_for(lambda: len(raw.received) >= 5, 2, "audio")
        a.send_dtmf("7", duration_ms=100)
        await wait_for(lambda: a.sender.dtmf.pending is False and len(raw.received) > 20, 3, "dtmf")
        await wait_for(lambda: sum(1 for d, _ in raw.received
                                   if d[1] & 0x7F == 0 and not (192 <= d[1] <= 223)) > 12,
                       2, "audio after")
        pkts = [RtpPacket.parse(d) for d, _ in raw.received if not (192 <= d[1] <= 223)]
        seqs = [p.sequence_number for p in pkts]
        assert all((y - x) & 0xFFFF == 1 for x, y in zip(seqs, seqs[1:]))
        assert pkts[0].marker == 1 and pkts[0].payload_type == 0
        ev = [p for p in pkts if p.payload_type == 101]
        assert len({p.timestamp for p in ev}) == 1
        assert ev[0].marker == 1 and all(p.marker == 0 for p in ev[1:])
        fields = [struct.unpack("!BBH", p.payload) for p in ev]
        assert all(f[0] == 7 for f in fields)
        durations = [f[2] for f in fields]
        assert durations == sorted(durations) and durations[-1] == 800
        ends = [f for f in fields if f[1] & 0x80]
        assert len(ends) == 3 and len({f[2] for f in ends}) == 1
        after = [p for p in pkts if p.payload_type == 0 and p.sequence_number
                 == (ev[-1].sequence_number + 1) & 0xFFFF]
        audio_markers = [p.marker for p in pkts if p.payload_type == 0]
        assert after and after[0].marker == 1
        assert sum(audio_markers) == 2  # first packet, first after the event
    finally:
        await a.close()
        raw.close()


async def test_latching_answers_the_source_address(pair):
    a, b = pair
    dead = await RawUdp.open()  # what signalling said; B's packets come from elsewhere
    sink_a, sink_b = RecordingSink(), RecordingSink()
    a.start(FORMATS["PCMU"], (LO, dead.port), None, rtcp_mux=True, source=ToneSource(440),
            sink=sink_a)
    b.start(FORMATS["PCMU"], (LO, a.local_port), None, rtcp_mux=True, source=ToneSource(1000),
            sink=sink_b)
    await wait_for(lambda: b.stats().received > 25, 5, "latched audio at B")
    assert a.remote == (LO, b.local_port)
    assert abs(dominant_hz(sink_b.samples()[-4000:], 8000) - 440) < 5
    n_dead = len(dead.received)
    await asyncio.sleep(0.2)
    assert len(dead.received) - n_dead == 0  # nothing goes to the stale address any more
    dead.close()


async def test_sequence_and_timestamp_wrap(pair):
    a, b = pair
    a.sender.seq, a.sender.timestamp = 0xFFF0, 0xFFFFFC00  # both wrap within the first second
    _, sink_b = start_pair(a, b, FORMATS["PCMU"], src_a=ToneSource(1000))
    await wait_for(lambda: b.stats().received > 60, 5, "packets across the wraps")
    st = b.stats()
    assert st.lost == 0 and st.late == 0
    assert b.receiver.source_stats.cycles == 1 << 16
    x = sink_b.samples()
    assert longest_gap_ms(x, 8000) <= 10
    assert abs(dominant_hz(x[-4000:], 8000) - 1000) < 5


async def test_ssrc_change_resets_the_stream(pair):
    a, b = pair
    _, sink_b = start_pair(a, b, FORMATS["PCMU"], src_a=ToneSource(440))
    await wait_for(lambda: b.stats().received > 20, 5, "first stream")
    first = b.remote_ssrc
    # the far end restarts: new SSRC, sequence and timestamp base, new tone
    a.ssrc, a.sender.seq, a.sender.timestamp = (first ^ 0x5A5A5A5A) or 1, 7, 123456
    a.source = ToneSource(1000)
    await wait_for(lambda: b.remote_ssrc == a.ssrc, 2, "new SSRC seen")
    n = len(sink_b.samples())
    await wait_for(lambda: len(sink_b.samples()) - n > 6000, 3, "new stream audio")
    assert abs(dominant_hz(sink_b.samples()[-4000:], 8000) - 1000) < 5
    assert b.stats().lost <= 1


async def test_loss_jitter_reorder_conceal_and_stay_bounded(pair):
    a, b = pair
    relay = await LossyRelay(loss=0.10, jitter_ms=30, seed=7).start()
    try:
        sink_a, sink_b = RecordingSink(), RecordingSink()
        b.start(FORMATS["PCMU"], (LO, relay.port_b), None, rtcp_mux=True, source=NullSource(),
                sink=sink_b)
        # B must send first so the relay knows where B is
        await wait_for(lambda: relay.peer["b"] is not None, 2, "B at the relay")
        a.start(FORMATS["PCMU"], (LO, relay.port_a), None, rtcp_mux=True,
                source=ToneSource(440, -12), sink=sink_a)
        depths = []
        loop = asyncio.get_running_loop()
        t_end = loop.time() + 3.0
        while loop.time() < t_end:
            await asyncio.sleep(0.05)
            depths.append(b.stats().playout_ms)
        st = b.stats()
        assert relay.dropped > 10
        assert st.lost >= relay.dropped // 2 - 5
        assert st.concealed > 0
        assert max(depths) <= b.playout.max_delay_ms
        x = sink_b.samples()
        assert longest_gap_ms(x, 8000) <= 60
        assert abs(dominant_hz(x[-8000:], 8000) - 440) < 10
        assert st.jitter_ms > 1.0
    finally:
        relay.close()


async def test_malformed_packets_are_dropped_and_counted(pair):
    a, b = pair
    _, sink_b = start_pair(a, b, FORMATS["PCMU"])
    await wait_for(lambda: b.stats().received > 5, 3, "audio")
    raw = await RawUdp.open()
    good = bytes([0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]) + bytes(160)
    bad_rtp = [
        b"\x80\x00\x00",                                  # short
        bytes([0x40]) + good[1:],                         # version 1
        bytes([0x80, 77]) + good[2:],                     # unknown payload type
        bytes([0x8F]) + good[1:12],                       # 15 CSRCs announced, none there
        bytes([0x90]) + good[1:12] + b"\x00\x01\x00\x09",  # extension longer than packet
        bytes([0xA0]) + good[1:12] + b"\x00",             # padding length 0
    ]
    bad_rtcp = [
        bytes([0x40, 200, 0, 6]) + bytes(24),             # RTCP version 1
        bytes([0x81, 201, 0, 40]) + bytes(8),             # truncated RR
        bytes([0x80, 200, 0, 1]) + bytes(4),              # SR far too short
    ]
    for d in bad_rtp + bad_rtcp:
        raw.transport.sendto(d, (LO, b.local_port))
    for d in bad_rtcp:
        raw.transport.sendto(d, (LO, b.local_port + 1))
    total = len(bad_rtp) + 2 * len(bad_rtcp)
    await wait_for(lambda: b.stats().malformed >= total, 2, "malformed counted")
    assert b.stats().malformed == total
    n = b.stats().received
    await wait_for(lambda: b.stats().received > n + 5, 2, "audio still flowing")
    assert b.remote == (LO, a.local_port)  # garbage does not re-latch
    raw.close()


async def test_packets_with_csrcs_or_an_extension_are_read_like_plain_ones():
    """The receiver reads a plain fixed header in place; anything else goes through
    aiortc's parser: both kinds count, and their audio plays."""
    from aiortc.rtp import RtpPacket

    b = await RtpSession.open(LO)
    raw = await RawUdp.open()
    sink = RecordingSink()
    try:
        b.start(FORMATS["PCMU"], (LO, raw.port), None, rtcp_mux=False, source=NullSource(),
                sink=sink)
        for i in range(30):
            pkt = RtpPacket(payload_type=0, sequence_number=100 + i, timestamp=160 * i,
                            ssrc=0x1234, payload=bytes([0x7F]) * 160, marker=int(i == 0))
            if i % 3 == 1:
                pkt.csrc = [0xABCD, 0x1234567]
            data = pkt.serialize()
            if i % 3 == 2:  # X bit, one-byte-header extension (RFC 8285): id 1, 1 byte
                data = bytes([0x90]) + data[1:12] + b"\xbe\xde\x00\x01\x10\x1e\x00\x00" \
                    + data[12:]
            raw.transport.sendto(data, (LO, b.local_port))
        await wait_for(lambda: b.stats().received == 30, 3, "every packet")
        assert b.stats().malformed == 0 and b.stats().lost == 0
        assert b.receiver.remote_ssrc == 0x1234
    finally:
        raw.close()
        await b.close()


@pytest.mark.parametrize("mux", [False, True])
async def test_rtcp_reports_and_rtt(pair, mux):
    a, b = pair
    a.rtcp_interval = b.rtcp_interval = 0.2
    start_pair(a, b, FORMATS["PCMU"], mux=mux, src_b=ToneSource(300))
    await wait_for(lambda: a.stats().rtt_ms is not None and b.stats().rtt_ms is not None,
                   5, "RTT from SR/RR")
    for s in (a, b):
        st = s.stats()
        assert st.rtcp_sent >= 1 and st.rtcp_received >= 1
        assert 0 <= st.rtt_ms < 200


async def test_receiver_only_sends_rr_and_sender_gets_rtt():
    from aiortc.rtp import RtcpPacket, RtcpRrPacket, RtcpSrPacket

    a, b = await RtpSession.open(LO), await RtpSession.open(LO)
    spy = await RawUdp.open()
    try:
        b.rtcp_interval = a.rtcp_interval = 0.2
        b.set_hold("recvonly")
        start_pair(a, b, FORMATS["PCMA"])
        await wait_for(lambda: a.stats().rtt_ms is not None, 5, "RTT at the sender")
        # b sent nothing: its reports are RRs
        assert b.stats().sent == 0
        b.remote_rtcp = (LO, spy.port)
        await wait_for(lambda: len(spy.received) >= 1, 3, "RR at the spy")
        kinds = [type(p) for p in RtcpPacket.parse(spy.received[0][0])]
        assert RtcpRrPacket in kinds and RtcpSrPacket not in kinds
    finally:
        await a.close()
        await b.close()
        spy.close()


async def test_close_sends_rtcp_bye():
    from aiortc.rtp import RtcpByePacket, RtcpPacket

    a = await RtpSession.open(LO)
    raw_rtp, raw_rtcp = await RawUdp.open(), await RawUdp.open()
    a.start(FORMATS["PCMU"], (LO, raw_rtp.port), (LO, raw_rtcp.port), rtcp_mux=False,
            source=ToneSource(), sink=RecordingSink())
    await wait_for(lambda: len(raw_rtp.received) > 3, 2, "audio")
    await a.close()
    await a.close()
    await wait_for(lambda: any(any(isinstance(p, RtcpByePacket) and a.ssrc in p.sources
                                   for p in RtcpPacket.parse(d)) for d, _ in raw_rtcp.received),
                   2, "BYE")
    n = len(raw_rtp.received)
    await asyncio.sleep(0.1)
    assert len(raw_rtp.received) == n  # nothing after close
    raw_rtp.close()
    raw_rtcp.close()


async def test_hold_and_mute(pair):
    a, b = pair
    _, sink_b = start_pair(a, b, FORMATS["PCMU"], src_a=ToneSource(1000))
    await wait_for(lambda: b.stats().received > 10, 3, "audio")
    a.set_muted(True)
    n = len(sink_b.samples())
    await wait_for(lambda: len(sink_b.samples()) - n > 4000, 3, "muted audio")
    assert np.abs(sink_b.samples()[-1600:]).max() < 50  # silence while muted
    a.set_muted(False)
    a.set_hold("recvonly")
    await asyncio.sleep(0.1)
    before = b.stats().received
    await asyncio.sleep(0.3)
    assert b.stats().received == before  # on hold: nothing sent
    a.set_hold("sendrecv")
    await wait_for(lambda: b.stats().received > before + 5, 2, "resumed")
    with pytest.raises(ValueError):
        a.set_hold("sideways")


async def test_rtp_timeout_fires_once():
    a, b = await RtpSession.open(LO), await RtpSession.open(LO)
    fired = []
    try:
        a.start(FORMATS["PCMU"], (LO, b.local_port), None, rtcp_mux=True, source=NullSource(),
                sink=RecordingSink(), on_timeout=lambda: fired.append(1), rtp_timeout=0.3)
        await wait_for(lambda: fired, 3, "timeout callback")
        await asyncio.sleep(0.4)
        assert fired == [1]
    finally:
        await a.close()
        await b.close()


async def test_update_switches_codec_and_remote(pair):
    a, b = pair
    _, sink_b = start_pair(a, b, FORMATS["PCMU"], src_a=ToneSource(1000))
    await wait_for(lambda: b.stats().received > 10, 3, "PCMU")
    a.update(FORMATS["G722"], (LO, b.local_port), None, rtcp_mux=False)
    b.update(FORMATS["G722"], (LO, a.local_port), None, rtcp_mux=False)
    await wait_for(lambda: sink_b.rate == 16000 and sink_b.seconds() > 1.5, 4, "G.722 audio")
    x = sink_b.samples()[-8000:]
    assert abs(dominant_hz(x, 16000) - 1000) < 5
    assert b.stats().codec == "G722"


async def test_stats_as_event(pair):
    a, b = pair
    start_pair(a, b, FORMATS["PCMU"])
    await wait_for(lambda: b.stats().received >= 10, 3, "packets")
    ev = b.stats().as_event()
    assert set(ev) == {"sent", "received", "lost", "jitter_ms"}
    assert ev["received"] >= 10 and isinstance(ev["jitter_ms"], float)
    assert a.stats().bytes_sent >= 10 * 172


def test_preload_skips_the_webrtc_stack():
    """aiortc's packets and codecs load without DTLS/ICE (0.3 s and ~20 MB we never use)."""
    import subprocess
    import sys

    code = ("import asyncio, sys; from softphone.media import rtp; asyncio.run(rtp.preload()); "
            "from softphone.media.codecs import make_encoder; make_encoder('opus'); "
            "print(sorted(m for m in ('cryptography', 'aioice', 'OpenSSL', 'dns') "
            "if m in sys.modules)); print('aiortc.rtp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout


async def test_a_discarding_sink_skips_decoding_but_keeps_statistics(pair):
    """Headless with nothing listening: no decode or playout work, loss/jitter still kept."""
    from softphone.media.devices import NullSink

    a, b = pair
    fmt = MediaFormat("PCMU", 0, 8000)
    a.start(fmt, (LO, b.local_port), None, rtcp_mux=False, source=ToneSource(1000),
            sink=NullSink())
    b.start(fmt, (LO, a.local_port), None, rtcp_mux=False, source=NullSource(), sink=NullSink())
    await wait_for(lambda: b.stats().received >= 25, 5, "25 packets at b")
    stats = b.stats()
    assert stats.jitter_ms >= 0 and stats.lost == 0
    assert stats.playout_ms == 0 and stats.concealed == 0  # nothing was decoded or played
    assert len(b.playout._payloads) == 0


def test_dtmf_comma_pauses_one_second_of_audio():
    """'1,2': digit 1, then 1 s of ordinary audio (50 ticks of 20 ms), then digit 2 — the
    pause of pjsua's and linphone's dial strings; digits alone keep the 60 ms gap."""
    from softphone.media.dtmf import GAP_MS, PAUSE_MS, DtmfSender, unpack_event

    def timeline(digits: str) -> list[str | None]:
        sender = DtmfSender()
        sender.queue(digits)
        ticks: list[str | None] = []
        for n in range(200):  # bounded: 4 s of 20 ms ticks
            pkt = sender.next_packet(n * 160, 20, 8000)
            ticks.append(unpack_event(pkt.payload)[0] if pkt else None)
            if not sender.pending:
                break
        return ticks

    def audio_between(ticks: list[str | None]) -> int:
        first_end = max(i for i, t in enumerate(ticks) if t == "1")
        second = ticks.index("2")
        return second - first_end - 1

    assert audio_between(timeline("12")) == GAP_MS // 20
    assert audio_between(timeline("1,2")) == GAP_MS // 20 + PAUSE_MS // 20
    with pytest.raises(ValueError, match="not a DTMF digit"):
        DtmfSender().queue("1;2")
