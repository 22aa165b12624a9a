#!/usr/bin/env python3
"""Regenerate the codec conformance corpus (this directory is data, not a package).

Source signals are synthesised here with fixed seeds; reference encodings come from
implementations independent of ours:

- G.711 µ-law / A-law: sox (`sox -D`, no dither), raw .ul/.al; plus sox's decode of all
  256 code words (decode tables) and sox's encoding of every 16-bit value (ramp);
- G.722: FFmpeg's g722 encoder/decoder through PyAV;
- Opus: libopus through PyAV (mono, 32 kbit/s, VoIP, 20 ms), packets stored as
  [u16 big-endian length][payload]..., plus libopus's decode of them.

Run from the repository root:  .venv/bin/python codecs/regenerate.py
then check the printed SNR figures against the floors in manifest.toml
(`--measure` prints what our own path achieves, to set floors with a margin).
"""

from __future__ import annotations

import argparse
import fractions
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DURATION_S = 1.0
SIGNALS = ("tone440", "tone1000", "sweep", "speechlike")
RATES = {"g711": 8000, "g722": 16000, "opus": 48000}
OPUS_BITRATE = 32000


# --------------------------------------------------------------------------- signals
def make_signal(kind: str, rate: int) -> np.ndarray:
    n = int(DURATION_S * rate)
    t = np.arange(n) / rate
    if kind == "tone440":
        x = 0.5 * np.sin(2 * np.pi * 440 * t)
    elif kind == "tone1000":
        x = 0.5 * np.sin(2 * np.pi * 1000 * t)
    elif kind == "sweep":
        f0, f1 = 100.0, min(7000.0, 0.45 * rate)  # log sweep inside the passband
        k = np.log(f1 / f0) / DURATION_S
        x = 0.4 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    elif kind == "speechlike":
        rng = np.random.default_rng(20240611)
        white = rng.standard_normal(n + 1024)
        # roughly speech-shaped spectrum: two-pole low-pass-ish colouring (pink-ish)
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(len(white), 1 / rate)
        shape = 1.0 / np.sqrt(1 + (f / 500.0) ** 2) * (f > 80) * (f < min(7000, 0.45 * rate))
        coloured = np.fft.irfft(spec * shape, len(white))[:n]
        # syllabic envelope ~4 Hz with pauses
        env = np.clip(np.sin(2 * np.pi * 4.0 * t) * 0.7 + 0.5, 0.0, 1.0) ** 1.5
        x = coloured * env
        x = 0.3 * x / np.max(np.abs(x))
    else:
        raise ValueError(kind)
    fade = min(n // 20, int(0.01 * rate))  # 10 ms fades: no clicks at the ends
    ramp = np.linspace(0, 1, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return np.round(x * 32767).astype("<i2")


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


# --------------------------------------------------------------------------- references
def sox(*args: str) -> None:
    subprocess.run(["sox", "-D", "-V1", *args], check=True)


def g711_refs(d: Path) -> None:
    d.mkdir(exist_ok=True)
    for kind in SIGNALS:
        write_wav(d / f"{kind}.wav", make_signal(kind, 8000), 8000)
        sox(str(d / f"{kind}.wav"), "-t", "raw", "-e", "u-law", "-b", "8", str(d / f"{kind}.ul"))
        sox(str(d / f"{kind}.wav"), "-t", "raw", "-e", "a-law", "-b", "8", str(d / f"{kind}.al"))
    # every 16-bit value once, in order -32768..32767 (not stored: np.arange regenerates it)
    ramp = d / "_ramp.s16"
    np.arange(-32768, 32768, dtype="<i2").tofile(ramp)
    raw_in = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
    sox(*raw_in, str(ramp), "-t", "raw", "-e", "u-law", "-b", "8", str(d / "ramp.ul"))
    sox(*raw_in, str(ramp), "-t", "raw", "-e", "a-law", "-b", "8", str(d / "ramp.al"))
    ramp.unlink()
    # sox's decode of all 256 code words, in code order
    codes = d / "_codes.u8"
    np.arange(256, dtype=np.uint8).tofile(codes)
    for law, ext in (("u-law", "ul"), ("a-law", "al")):
        sox("-t", "raw", "-r", "8000", "-e", law, "-b", "8", "-c", "1", str(codes),
            "-t", "raw", "-e", "signed", "-b", "16", str(d / f"codes_{ext}.s16"))
    codes.unlink()


def _av_encode(codec_name: str, pcm: np.ndarray, rate: int, frame: int,
               bit_rate: int | None = None, options: dict | None = None) -> list[bytes]:
    import av

    ctx = av.CodecContext.create(codec_name, "w")
    ctx.format = "s16"
    ctx.layout = "mono"
    ctx.sample_rate = rate
    ctx.time_base = fractions.Fraction(1, rate)
    if bit_rate:
        ctx.bit_rate = bit_rate
    if options:
        ctx.options = options
    packets = []
    for i in range(0, len(pcm), frame):
        chunk = pcm[i:i + frame]
        if len(chunk) < frame:
            chunk = np.concatenate([chunk, np.zeros(frame - len(chunk), "<i2")])
        f = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        f.sample_rate = rate
        f.pts = i
        f.time_base = ctx.time_base
        packets += [bytes(p) for p in ctx.encode(f)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def _av_decode(codec_name: str, packets: list[bytes], rate: int) -> np.ndarray:
    import av

    ctx = av.CodecContext.create(codec_name, "r")
    ctx.format = "s16"
    ctx.layout = "mono"
    ctx.sample_rate = rate
    out = []
    for p in packets:
        for f in ctx.decode(av.Packet(p)):
            out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype("<i2")


def g722_refs(d: Path) -> None:
    d.mkdir(exist_ok=True)
    for kind in SIGNALS:
        pcm = make_signal(kind, 16000)
        write_wav(d / f"{kind}.wav", pcm, 16000)
        packets = _av_encode("g722", pcm, 16000, 320)
        enc = b"".join(packets)
        (d / f"{kind}.g722").write_bytes(enc)
        _av_decode("g722", [enc], 16000).tofile(d / f"{kind}.dec.s16")


def write_packets(path: Path, packets: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("!H", len(p)) + p for p in packets))


def read_packets(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 2 <= len(data):
        (n,) = struct.unpack_from("!H", data, pos)
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def opus_refs(d: Path) -> None:
    d.mkdir(exist_ok=True)
    for kind in SIGNALS:
        pcm = make_signal(kind, 48000)
        write_wav(d / f"{kind}.wav", pcm, 48000)
        packets = _av_encode("libopus", pcm, 48000, 960, OPUS_BITRATE,
                             {"application": "voip", "frame_duration": "20"})
        write_packets(d / f"{kind}.opuspkts", packets)
        _av_decode("libopus", packets, 48000).tofile(d / f"{kind}.dec.s16")


# --------------------------------------------------------------------------- measures
def align(ref: np.ndarray, test: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-lag alignment by cross-correlation (codecs add delay)."""
    r = ref.astype(np.float64)
    t = test.astype(np.float64)
    n = min(len(r), len(t))
    best, best_lag = -np.inf, 0
    for lag in range(0, max_lag + 1):
        m = n - lag
        if m <= 0:
            break
        c = float(np.dot(r[:m], t[lag:lag + m]))
        if c > best:
            best, best_lag = c, lag
    m = n - best_lag
    return r[:m], t[best_lag:best_lag + m]


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = np.sum((ref - test) ** 2)
    return float(10 * np.log10(np.sum(ref ** 2) / max(noise, 1e-9)))


def segsnr_db(ref: np.ndarray, test: np.ndarray, frame: int) -> float:
    vals = []
    for i in range(0, len(ref) - frame + 1, frame):
        r, t = ref[i:i + frame], test[i:i + frame]
        e = np.sum(r ** 2)
        if e < frame * 100.0 ** 2:  # skip near-silent frames (< -50 dBFS)
            continue
        vals.append(np.clip(10 * np.log10(e / max(np.sum((r - t) ** 2), 1e-9)), -10, 35))
    return float(np.mean(vals)) if vals else 35.0


MANIFEST = """\
# Codec conformance corpus — generated by codecs/regenerate.py; do not edit by hand.
# Each signal is {duration} s, 16-bit mono WAV at the codec's audio rate, fades of 10 ms.
# tolerance: "bit-exact" (every byte/sample equal to the reference), or "snr" with floors
# in dB for our encode→RTP→decode path against the source signal (delay-aligned)
# (snr_floor_db, segsnr_floor_db: 20 ms segments, silent ones skipped, clamped -10..35)
# and for our decode of the reference packets against the reference decode
# (ref_decode_snr_floor_db).

signals = [{signals}]
duration_s = {duration}

[PCMU]
rtpmap = "PCMU/8000"
encoding_name = "PCMU"
clock_rate = 8000
audio_rate = 8000
channels = 1
ptime = 20
payload_type = 0
payload_type_kind = "static"
reference = "sox 14.4.2 -D (no dither), raw u-law"
dir = "g711"
encoded_ext = "ul"
tolerance = "bit-exact"
ramp = "ramp.ul"            # sox's code for each int16 -32768..32767, in order
decode_table = "codes_ul.s16"  # sox's decode of codes 0..255

[PCMA]
rtpmap = "PCMA/8000"
encoding_name = "PCMA"
clock_rate = 8000
audio_rate = 8000
channels = 1
ptime = 20
payload_type = 8
payload_type_kind = "static"
reference = "sox 14.4.2 -D (no dither), raw A-law"
dir = "g711"
encoded_ext = "al"
tolerance = "bit-exact"
ramp = "ramp.al"
decode_table = "codes_al.s16"

[G722]
rtpmap = "G722/8000"          # RTP clock 8000 (RFC 3551), audio sampled at 16000
encoding_name = "G722"
clock_rate = 8000
audio_rate = 16000
channels = 1
ptime = 20
payload_type = 9
payload_type_kind = "static"
reference = "FFmpeg g722 (libavcodec {avcodec}) via PyAV {pyav}, 64 kbit/s"
dir = "g722"
encoded_ext = "g722"
decoded_ext = "dec.s16"
tolerance = "snr"
{g722_floors}

[opus]
rtpmap = "opus/48000/2"       # RFC 7587: always /48000/2 in SDP; we send mono
encoding_name = "opus"
clock_rate = 48000
audio_rate = 48000
channels = 2
ptime = 20
payload_type = 111
payload_type_kind = "dynamic"
fmtp = "useinbandfec=1; maxaveragebitrate={opus_bitrate}"
reference = "libopus (PyAV {pyav}) {opus_bitrate} bit/s mono, application=voip, 20 ms"
dir = "opus"
encoded_ext = "opuspkts"      # [u16 big-endian length][payload] per 20 ms packet
decoded_ext = "dec.s16"
tolerance = "snr"
{opus_floors}
"""


def floors_toml(measured: dict[str, dict[str, float]], margin: float) -> str:
    lines = []
    for kind in SIGNALS:
        m = measured[kind]
        lines.append(f"[{{codec}}.floors.{kind}]  # measured: snr {m['snr']:.1f}, "
                     f"segsnr {m['segsnr']:.1f}, ref decode {m['ref']:.1f}")
        lines.append(f"snr_floor_db = {max(0.0, np.floor(m['snr'] - margin)):.1f}")
        lines.append(f"segsnr_floor_db = {max(0.0, np.floor(m['segsnr'] - margin)):.1f}")
        lines.append(f"ref_decode_snr_floor_db = {min(60.0, np.floor(m['ref'] - margin)):.1f}")
    return "\n".join(lines)


def measure(codec: str) -> dict[str, dict[str, float]]:
    """What our own path (softphone.media) achieves on the fresh corpus."""
    import sys

    sys.path.insert(0, str(HERE.parent))
    from softphone.media.codecs import make_decoder, make_encoder

    rate = RATES[codec]
    name = {"g722": "G722", "opus": "opus"}[codec]
    d = HERE / codec
    out = {}
    for kind in SIGNALS:
        src, _ = read_wav(d / f"{kind}.wav")
        enc = make_encoder(name, 20, {"useinbandfec": "1"})
        dec = make_decoder(name)
        frame = rate // 50
        got = []
        for i in range(0, len(src), frame):
            chunk = src[i:i + frame]
            chunk = np.concatenate([chunk, np.zeros(frame - len(chunk), "<i2")])
            payload = enc.encode(chunk.tobytes())
            if payload:
                got.append(np.frombuffer(dec.decode(payload), "<i2"))
        y = np.concatenate(got)
        r, t = align(src, y, rate // 50)
        refdec = np.fromfile(d / f"{kind}.dec.s16", "<i2")
        if codec == "g722":
            ours = np.frombuffer(make_decoder(name).decode((d / f"{kind}.g722").read_bytes()), "<i2")
        else:
            dd = make_decoder(name)
            ours = np.concatenate([np.frombuffer(dd.decode(p), "<i2")
                                   for p in read_packets(d / f"{kind}.opuspkts")])
        n = min(len(refdec), len(ours))
        a, b = refdec[:n].astype(np.float64), ours[:n].astype(np.float64)
        ref_snr = 99.0 if np.array_equal(a, b) else snr_db(a, b)
        out[kind] = {"snr": snr_db(r, t), "segsnr": segsnr_db(r, t, rate // 50), "ref": ref_snr}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margin", type=float, default=3.0, help="dB below measured for floors")
    args = ap.parse_args()
    import av

    g711_refs(HERE / "g711")
    g722_refs(HERE / "g722")
    opus_refs(HERE / "opus")
    g722 = measure("g722")
    opus = measure("opus")
    for codec, m in (("G722", g722), ("opus", opus)):
        for kind, v in m.items():
            print(f"{codec:5s} {kind:11s} snr {v['snr']:6.2f} dB  segsnr {v['segsnr']:6.2f} dB  "
                  f"ref-decode {v['ref']:6.2f} dB")
    avcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    text = MANIFEST.format(
        duration=DURATION_S, signals=", ".join(f'"{s}"' for s in SIGNALS),
        avcodec=avcodec, pyav=av.__version__, opus_bitrate=OPUS_BITRATE,
        g722_floors=floors_toml(g722, args.margin).replace("{codec}", "G722"),
        opus_floors=floors_toml(opus, args.margin).replace("{codec}", "opus"))
    (HERE / "manifest.toml").write_text(text)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"corpus: {total / 1024:.0f} KiB in {HERE}")


if __name__ == "__main__":
    main()
