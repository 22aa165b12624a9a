"""Our encode → RTP packetise → parse → decode path over the codec corpus (codecs/).

G.711 must be bit-exact with sox in both directions; G.722 and Opus must keep their
decoded SNR above the floors in codecs/manifest.toml.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pytest

from softphone.media.codecs import make_decoder, make_encoder

CORPUS = Path(__file__).resolve().parents[2] / "codecs"
MANIFEST = tomllib.loads((CORPUS / "manifest.toml").read_text())
SIGNALS = MANIFEST["signals"]


def _load_regenerate():
    # codecs/ is data, not a package (the stdlib owns the name): load the script by path
    spec = importlib.util.spec_from_file_location("_codec_corpus_tools", CORPUS / "regenerate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tools = _load_regenerate()


def rtp_roundtrip(name: str, pcm: np.ndarray, entry: dict) -> np.ndarray:
    """Encode per ptime, wrap each payload in an RTP packet, parse it, decode in order."""
    from aiortc.rtp import RtpPacket

    rate = entry["audio_rate"]
    frame = rate * entry["ptime"] // 1000
    step = entry["clock_rate"] * entry["ptime"] // 1000
    enc = make_encoder(name, entry["ptime"], {"useinbandfec": "1"})
    dec = make_decoder(name)
    out = []
    ts, seq = 0xFFFFFF00, 0xFFF0  # cross both wraps on the way
    for i in range(0, len(pcm), frame):
        chunk = pcm[i:i + frame]
        if len(chunk) < frame:
            chunk = np.concatenate([chunk, np.zeros(frame - len(chunk), "<i2")])
        payload = enc.encode(chunk.astype("<i2").tobytes())
        wire = RtpPacket(payload_type=entry["payload_type"], sequence_number=seq, timestamp=ts,
                         ssrc=0x1234, payload=payload).serialize()
        pkt = RtpPacket.parse(wire)
        assert (pkt.sequence_number, pkt.timestamp, pkt.payload_type) == \
            (seq, ts, entry["payload_type"])
        out.append(np.frombuffer(dec.decode(pkt.payload), "<i2"))
        seq = (seq + 1) & 0xFFFF
        ts = (ts + step) & 0xFFFFFFFF
    return np.concatenate(out)


def test_manifest_describes_every_codec():
    assert set(MANIFEST) >= {"PCMU", "PCMA", "G722", "opus"}
    for name in ("PCMU", "PCMA", "G722", "opus"):
        e = MANIFEST[name]
        assert e["encoding_name"] == name
        assert e["rtpmap"].split("/")[0] == name
        assert int(e["rtpmap"].split("/")[1]) == e["clock_rate"]
        assert e["tolerance"] in ("bit-exact", "snr")
    assert MANIFEST["opus"]["payload_type_kind"] == "dynamic"
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024
    assert not (CORPUS / "__init__.py").exists()


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
@pytest.mark.parametrize("signal", SIGNALS)
def test_g711_bit_exact_with_sox(name, signal):
    entry = MANIFEST[name]
    d = CORPUS / entry["dir"]
    src, rate = tools.read_wav(d / f"{signal}.wav")
    assert rate == entry["audio_rate"]
    ref = np.fromfile(d / f"{signal}.{entry['encoded_ext']}", np.uint8)
    ours = np.frombuffer(make_encoder(name).encode(src.tobytes()), np.uint8)
    assert np.array_equal(ours, ref), f"{(ours != ref).sum()} codes differ from sox"
    # through RTP: what comes out is sox's decode of sox's codes
    table = np.fromfile(d / entry["decode_table"], "<i2")
    got = rtp_roundtrip(name, src, entry)[:len(src)]
    assert np.array_equal(got, table[ref])


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_tables_match_sox_for_every_value(name):
    entry = MANIFEST[name]
    d = CORPUS / entry["dir"]
    ramp = np.arange(-32768, 32768, dtype="<i2")
    ref = np.fromfile(d / entry["ramp"], np.uint8)
    ours = np.frombuffer(make_encoder(name).encode(ramp.tobytes()), np.uint8)
    assert np.array_equal(ours, ref), f"{(ours != ref).sum()} of 65536 values differ"
    codes = bytes(range(256))
    table = np.fromfile(d / entry["decode_table"], "<i2")
    assert np.array_equal(np.frombuffer(make_decoder(name).decode(codes), "<i2"), table)
    # the aiortc (FFmpeg) decoder agrees with sox on decoding
    assert np.array_equal(np.frombuffer(make_decoder(name, fast=False).decode(codes), "<i2"),
                          table)


@pytest.mark.parametrize("name", ["G722", "opus"])
@pytest.mark.parametrize("signal", SIGNALS)
def test_lossy_codec_snr_above_floor(name, signal):
    entry = MANIFEST[name]
    floors = entry["floors"][signal]
    d = CORPUS / entry["dir"]
    src, rate = tools.read_wav(d / f"{signal}.wav")
    assert rate == entry["audio_rate"]
    got = rtp_roundtrip(name, src, entry)
    ref, test = tools.align(src, got, rate // 50)
    snr = tools.snr_db(ref, test)
    seg = tools.segsnr_db(ref, test, rate // 50)
    assert snr >= floors["snr_floor_db"], f"SNR {snr:.2f} dB"
    assert seg >= floors["segsnr_floor_db"], f"segmental SNR {seg:.2f} dB"


@pytest.mark.parametrize("name", ["G722", "opus"])
@pytest.mark.parametrize("signal", SIGNALS)
def test_we_decode_reference_encodings(name, signal):
    entry = MANIFEST[name]
    d = CORPUS / entry["dir"]
    refdec = np.fromfile(d / f"{signal}.{entry['decoded_ext']}", "<i2")
    dec = make_decoder(name)
    if name == "G722":
        data = (d / f"{signal}.g722").read_bytes()
        payloads = [data[i:i + 160] for i in range(0, len(data), 160)]  # 20 ms packets
    else:
        payloads = tools.read_packets(d / f"{signal}.{entry['encoded_ext']}")
    ours = np.concatenate([np.frombuffer(dec.decode(p), "<i2") for p in payloads])
    n = min(len(ours), len(refdec))
    assert n >= 0.9 * len(refdec)
    a, b = refdec[:n].astype(np.float64), ours[:n].astype(np.float64)
    snr = 200.0 if np.array_equal(a, b) else tools.snr_db(a, b)
    assert snr >= entry["floors"][signal]["ref_decode_snr_floor_db"]
