"""Negotiated payload format → audio encoder/decoder.

G.711 (PCMU/PCMA) runs through 64 Ki-entry numpy lookup tables: one fancy-index per
frame, bit-exact with sox (proven by tests/test_codecs_corpus.py) and ~10x cheaper than
a PyAV round trip.  G.722 and Opus use aiortc's encoders/decoders (PyAV/FFmpeg), set
up for telephony: mono, a sensible Opus bit rate, FEC when the far end asks for it —
except that Opus is decoded by the system's libopus (libopus.py) when it loads, for its
own loss concealment and in-band FEC, which PyAV cannot reach.

aiortc and PyAV are imported lazily (aiortc_parts: its RTP and codec parts and PyAV cost
~0.15 s and ~18 MB; the whole of aiortc, with its WebRTC stack, ~1.7 s).

Every encoder takes exactly one packet's worth of 16-bit mono PCM at the codec's audio
rate and returns one RTP payload; every decoder takes one payload and returns PCM.
"""

from __future__ import annotations

import fractions
from typing import Protocol

import numpy as np

#: audio sample rate of each codec (G.722 samples at 16 kHz but its RTP clock is 8 kHz)
AUDIO_RATES: dict[str, int] = {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}
#: RTP clock rate of each codec (RFC 3551, RFC 7587)
CLOCK_RATES: dict[str, int] = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "opus": 48000}
#: static payload types (RFC 3551); opus is dynamic
STATIC_PAYLOAD_TYPES: dict[str, int] = {"PCMU": 0, "PCMA": 8, "G722": 9}
#: frame durations libopus can produce, in ms
OPUS_FRAME_MS = (10, 20, 40, 60)

DEFAULT_OPUS_BITRATE = 32000
#: what in-band FEC gets on top, when the far end asks for it: libopus takes the FEC's
#: bits out of the total, so at 32 kbit/s with FEC (10 % expected loss) the speech itself
#: scored 0.05-0.07 PESQ lower on a clean line; 8 kbit/s more gives them back (and scores
#: 0.1 higher at 10 % loss) — bench/quality.py, bench/README.md
OPUS_FEC_BITRATE = 8000


def canonical_name(name: str) -> str:
    """SDP encoding names are case-insensitive: map to our spelling."""
    for known in AUDIO_RATES:
        if known.lower() == name.lower():
            return known
    raise ValueError(f"unsupported codec {name!r}")


def audio_rate(name: str) -> int:
    return AUDIO_RATES[canonical_name(name)]


def effective_ptime(name: str, ptime: int) -> int:
    """The packet duration we actually send (Opus can only do 10/20/40/60 ms)."""
    ptime = max(10, min(int(ptime or 20), 120))
    if canonical_name(name) == "opus" and ptime not in OPUS_FRAME_MS:
        return 20
    return ptime


# --------------------------------------------------------------------------- G.711 tables
def _ulaw_encode_table() -> np.ndarray:
    """Sun/CCITT linear2ulaw on 14-bit input, for every int16 value.

    Like sox, the 16→14-bit step rounds (half up, clipping at the top) instead of
    truncating; FFmpeg truncates, so its µ-law differs from sox on ~1.5 % of inputs.
    """
    pcm = np.minimum((np.arange(-32768, 32768, dtype=np.int32) + 2) >> 2, 8191)
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    uval = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    """Sun/CCITT linear2alaw on 13-bit input (rounded like sox), for every int16 value."""
    pcm = np.minimum((np.arange(-32768, 32768, dtype=np.int32) + 4) >> 3, 4095)
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    s = np.minimum(seg, 7)
    quant = np.where(s < 2, mag >> 1, mag >> np.maximum(s, 1)) & 0xF
    aval = (s << 4) | quant
    aval = np.where(seg >= 8, 0x7F, aval)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype("<i2")


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype("<i2")


_TABLES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def g711_tables(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(encode table indexed by uint16 view of the sample, decode table indexed by code)."""
    name = canonical_name(name)
    if name not in _TABLES:
        if name == "PCMU":
            _TABLES[name] = (_ulaw_encode_table(), _ulaw_decode_table())
        elif name == "PCMA":
            _TABLES[name] = (_alaw_encode_table(), _alaw_decode_table())
        else:
            raise ValueError(f"{name} is not G.711")
        # the encode table is built for -32768..32767; re-index it by the uint16 bit pattern
        enc = _TABLES[name][0]
        _TABLES[name] = (np.roll(enc, -32768), _TABLES[name][1])
    return _TABLES[name]


# --------------------------------------------------------------------------- protocols
class Encoder(Protocol):
    name: str
    audio_rate: int

    def encode(self, pcm: bytes) -> bytes: ...


class Decoder(Protocol):
    """A decoder may also conceal on its own: `conceal(samples) -> bytes` for a lost
    slot and `recover(next_payload, samples) -> bytes` (b"" when it cannot) for the slot
    before a packet that carries FEC. Without them the playout buffer conceals."""

    name: str
    audio_rate: int

    def decode(self, payload: bytes) -> bytes: ...


class G711Encoder:
    """Table-driven µ-law/A-law encoder: one numpy gather per frame."""

    def __init__(self, name: str) -> None:
        self.name = canonical_name(name)
        self.audio_rate = 8000
        self._table = g711_tables(self.name)[0]

    def encode(self, pcm: bytes) -> bytes:
        return self._table[np.frombuffer(pcm, dtype="<u2")].tobytes()


class G711Decoder:
    """Table-driven µ-law/A-law decoder."""

    def __init__(self, name: str) -> None:
        self.name = canonical_name(name)
        self.audio_rate = 8000
        self._table = g711_tables(self.name)[1]

    def decode(self, payload: bytes) -> bytes:
        return self._table[np.frombuffer(payload, dtype=np.uint8)].tobytes()


# --------------------------------------------------------------------------- aiortc codecs
def _aiortc_codec_params(name: str):
    from .aiortc_parts import load

    load()
    from aiortc.codecs import CODECS, G722_CODEC, PCMA_CODEC, PCMU_CODEC

    if name == "PCMU":
        return PCMU_CODEC
    if name == "PCMA":
        return PCMA_CODEC
    if name == "G722":
        return G722_CODEC
    return next(c for c in CODECS["audio"] if c.mimeType.lower() == "audio/opus")


class AiortcEncoder:
    """aiortc's encoder for `name`, reconfigured for mono telephony before first use.

    Frames are handed to the encoder with contiguous pts so its internal resampler is
    a pass-through; all payloads produced for one call are concatenated (G.722 and
    G.711 are sample-based; Opus is asked for frames of exactly ptime).
    """

    def __init__(self, name: str, ptime: int = 20, fmtp: dict[str, str] | None = None) -> None:
        import av
        from aiortc.codecs import get_encoder

        self.name = canonical_name(name)
        self.audio_rate = AUDIO_RATES[self.name]
        self.ptime = effective_ptime(self.name, ptime)
        self._samples = self.audio_rate * self.ptime // 1000
        self._inner = get_encoder(_aiortc_codec_params(self.name))
        self._av = av
        self._pts = 0
        self._time_base = fractions.Fraction(1, self.audio_rate)
        frame_size = self._samples
        if self.name == "opus":
            fmtp = {k.lower(): str(v) for k, v in (fmtp or {}).items()}
            codec = self._inner.codec
            codec.layout = "mono"
            codec.bit_rate = opus_bitrate(fmtp)
            options = {"application": "voip", "frame_duration": str(self.ptime)}
            if fmtp.get("useinbandfec") == "1":
                options.update({"fec": "1", "packet_loss": "10"})
            codec.options = options
        if self.name in ("opus", "G722", "PCMU", "PCMA"):
            self._inner.resampler = av.AudioResampler(
                format="s16", layout="mono", rate=self.audio_rate, frame_size=frame_size
            )

    def encode(self, pcm: bytes) -> bytes:
        n = len(pcm) // 2
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm)
        frame.sample_rate = self.audio_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += n
        payloads, _ = self._inner.encode(frame)
        return b"".join(payloads)


class AiortcDecoder:
    """aiortc's decoder for `name`, mono 16-bit output at the codec's audio rate."""

    def __init__(self, name: str) -> None:
        from aiortc.codecs import get_decoder
        from aiortc.jitterbuffer import JitterFrame

        self.name = canonical_name(name)
        self.audio_rate = AUDIO_RATES[self.name]
        self._inner = get_decoder(_aiortc_codec_params(self.name))
        self._frame_cls = JitterFrame
        self._inner.codec.layout = "mono"
        self._ts = 0

    def decode(self, payload: bytes) -> bytes:
        # timestamps only feed PyAV's pts bookkeeping; keep them monotonic
        self._ts += 960
        frames = self._inner.decode(self._frame_cls(payload, self._ts))
        out = []
        for f in frames:
            arr = f.to_ndarray()
            if arr.ndim == 2 and arr.shape[0] > 1:  # planar stereo, should not happen
                arr = arr.mean(axis=0).astype(np.int16)
            out.append(arr.reshape(-1).astype("<i2", copy=False).tobytes())
        return b"".join(out)


def opus_bitrate(fmtp: dict[str, str]) -> int:
    """Mono voice bit rate (more when the far end asks for in-band FEC), capped by its
    maxaveragebitrate (RFC 7587)."""
    try:
        cap = int(fmtp.get("maxaveragebitrate", "0"))
    except ValueError:
        cap = 0
    rate = DEFAULT_OPUS_BITRATE
    if fmtp.get("useinbandfec") == "1":
        rate += OPUS_FEC_BITRATE
    if cap > 0:
        rate = min(rate, cap)
    return max(6000, min(rate, 510000))


def make_encoder(name: str, ptime: int = 20, fmtp: dict[str, str] | None = None,
                 *, fast: bool = True) -> Encoder:
    name = canonical_name(name)
    if fast and name in ("PCMU", "PCMA"):
        return G711Encoder(name)
    return AiortcEncoder(name, ptime, fmtp)


def make_decoder(name: str, *, fast: bool = True) -> Decoder:
    """The decoder for `name`; `fast=False` forces aiortc's (PyAV's) for every codec."""
    name = canonical_name(name)
    if fast and name in ("PCMU", "PCMA"):
        return G711Decoder(name)
    if fast and name == "opus":
        from . import libopus

        decoder = libopus.make_decoder()
        if decoder is not None:
            return decoder
    return AiortcDecoder(name)
