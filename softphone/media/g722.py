"""G.722 decoding through spandsp (Debian's libspandsp2), whose decoder state we can
bring back in step with the far end's encoder after a lost packet.

G.722 is ADPCM: each band's decoder predicts the next sample and adapts its step size
from the codes it has decoded, in lock-step with the encoder. A lost packet breaks the
lock-step — the decoder still holds the state of 20 ms ago, so the packet after the gap
is decoded with a wrong predictor and step size: too loud at first, then too quiet for
tens of ms. FFmpeg's decoder (PyAV) hides its state; spandsp's is a plain C struct, and
its encoder keeps the very same per-band state. So after a loss, as G.722 Appendix III/IV
concealment does, the audio that stood in for the lost packet is encoded by an encoder
that starts from the decoder's state, and the decoder then decodes those codes: its
state follows the concealed audio, as the far end's followed the lost speech.

The binding is ours (a few ctypes calls) because the maintained Python package of the
same code (``g722``, sippy's libg722) exposes encode/decode only, not the state. On clean
packets this decoder is bit-exact with FFmpeg's (tests/media/test_media_g722.py).
When the library cannot be loaded, `make_decoder()` returns None (logged once) and the
caller falls back to PyAV's decoder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import numpy as np

log = logging.getLogger(__name__)

RATE = 16000
BIT_RATE = 64000
#: spandsp 0.0.6's g722_{en,de}code_state_t (private/g722.h): four ints, the QMF
#: history (2 x 12 int16 and an int), then the two bands' ADPCM state (2 x 22 int16),
#: then the bit packing fields; the encoder's and decoder's structs are laid out alike
STATE_SIZE = 172
BANDS = slice(68, 156)
#: the input history the encoder's band-splitting filter looks back on (12 pairs)
QMF_SAMPLES = 24

_lib: ctypes.CDLL | None = None
_tried = False


def load() -> ctypes.CDLL | None:
    """The system's libspandsp with our prototypes set, or None (logged once)."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("spandsp") or "libspandsp.so.2")
        for name in ("g722_encode_init", "g722_decode_init"):
            fn = getattr(lib, name)
            fn.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
            fn.restype = ctypes.c_void_p
        lib.g722_decode.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.c_int)
        lib.g722_decode.restype = ctypes.c_int
        lib.g722_encode.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_int)
        lib.g722_encode.restype = ctypes.c_int
        _check_layout(lib)
    except (OSError, AttributeError, RuntimeError) as exc:
        log.warning("libspandsp not usable (%s): G.722 is decoded by PyAV, whose state "
                    "stays stale after a lost packet", exc)
        return None
    _lib = lib
    return lib


def _check_layout(lib: ctypes.CDLL) -> None:
    """The state layout assumed above, checked on a fresh decoder (64 kbit/s: 8 bits
    per sample; the bands' initial step sizes 32 and 8), so another spandsp version is
    refused rather than corrupted."""
    state = ctypes.create_string_buffer(STATE_SIZE)
    lib.g722_decode_init(state, BIT_RATE, 0)
    words = np.frombuffer(state.raw, dtype="<i2")
    bits = int.from_bytes(state.raw[12:16], "little")
    if (bits, int(words[35]), int(words[57])) != (8, 32, 8):
        raise RuntimeError("unexpected g722 state layout in this libspandsp")


class SpandspG722Decoder:
    """G.722 at 64 kbit/s, 16 kHz 16-bit mono out, with `resync` after a loss."""

    name = "G722"
    audio_rate = RATE

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._dec = ctypes.create_string_buffer(STATE_SIZE)
        self._enc = ctypes.create_string_buffer(STATE_SIZE)
        lib.g722_decode_init(self._dec, BIT_RATE, 0)
        lib.g722_encode_init(self._enc, BIT_RATE, 0)
        self._out = np.zeros(2 * 1920, dtype="<i2")  # 120 ms: the longest packet we take

    def decode(self, payload: bytes) -> bytes:
        n = len(payload)
        if 2 * n > len(self._out):
            self._out = np.zeros(2 * n, dtype="<i2")
        got = self._lib.g722_decode(self._dec, self._out.ctypes.data, payload, n)
        return self._out[:got].tobytes()

    def resync(self, timeline: np.ndarray, lost: int) -> None:
        """Bring the state to where the far end's would be after the last `lost`
        samples of `timeline`, which stood in for a lost packet (what precedes them was
        played just before: `QMF_SAMPLES` of it feed the encoder's band-splitting filter)."""
        lib, enc = self._lib, self._enc
        lost -= lost % 2  # the codec works on pairs of samples
        history = np.ascontiguousarray(timeline[-lost - QMF_SAMPLES:-lost], dtype="<i2")
        audio = np.ascontiguousarray(timeline[len(timeline) - lost:], dtype="<i2")
        codes = ctypes.create_string_buffer(max(len(audio), len(history)) // 2)
        lib.g722_encode(enc, codes, history.ctypes.data, len(history))  # the filter's past
        enc[BANDS] = self._dec[BANDS]                                      # the ADPCM's
        n = lib.g722_encode(enc, codes, audio.ctypes.data, len(audio))
        if 2 * n > len(self._out):
            self._out = np.zeros(2 * n, dtype="<i2")
        lib.g722_decode(self._dec, self._out.ctypes.data, codes, n)


def make_decoder() -> SpandspG722Decoder | None:
    lib = load()
    return SpandspG722Decoder(lib) if lib is not None else None
