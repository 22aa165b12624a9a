"""libopus's own decoder, through ctypes: its loss concealment and its in-band FEC.

PyAV decodes Opus but cannot ask libopus to conceal a lost packet (opus_decode with no
data) or to decode the forward error correction a packet carries for the one before it
(opus_decode with decode_fec=1), so the decoder is bound here directly: four functions
of the system's libopus.so.0 (Debian's libopus0). The binding is ours rather than a
package's because the maintained Python bindings wrap the same calls with per-call
copies through Python lists and cannot pass NULL for concealment in their high-level API.

When the library cannot be loaded, `load()` returns None (logged once) and the caller
falls back to PyAV's decoder and our own waveform concealment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import numpy as np

log = logging.getLogger(__name__)

RATE = 48000
MAX_FRAME = RATE * 120 // 1000  # the longest Opus packet: 120 ms
_STEP = RATE // 400              # decode sizes are multiples of 2.5 ms

_lib: ctypes.CDLL | None = None
_tried = False


def load() -> ctypes.CDLL | None:
    """The system's libopus with our prototypes set, or None (logged once)."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("opus") or "libopus.so.0")
        lib.opus_decoder_create.argtypes = (ctypes.c_int32, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int))
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_destroy.argtypes = (ctypes.c_void_p,)
        lib.opus_decoder_destroy.restype = None
        lib.opus_decode.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                    ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_packet_parse.argtypes = (ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p,
                                          ctypes.POINTER(ctypes.c_void_p),
                                          ctypes.POINTER(ctypes.c_int16), ctypes.c_void_p)
        lib.opus_packet_parse.restype = ctypes.c_int
        lib.opus_get_version_string.restype = ctypes.c_char_p
    except (OSError, AttributeError) as exc:
        log.warning("libopus not loadable (%s): Opus loss is concealed by waveform "
                    "substitution, without Opus's own PLC and FEC", exc)
        return None
    _lib = lib
    log.debug("using %s for Opus decoding", lib.opus_get_version_string().decode())
    return lib


def _silk_frame_ms(toc: int) -> int | None:
    """Duration of one Opus frame of a SILK-only or hybrid packet (None: CELT only)."""
    config = toc >> 3
    if config < 12:
        return (10, 20, 40, 60)[config & 3]
    if config < 16:
        return (10, 20)[config & 1]
    return None


def has_fec(payload: bytes) -> bool:
    """Whether an Opus packet carries in-band FEC (SILK LBRR data) for the one before
    it: the LBRR flag after the VAD flags at the start of its first SILK frame (what
    libopus 1.5's opus_packet_has_lbrr reads)."""
    if len(payload) < 2:
        return False
    toc = payload[0]
    frame_ms = _silk_frame_ms(toc)
    if frame_ms is None:  # CELT only: no SILK layer, no LBRR
        return False
    silk_frames = max(1, frame_ms // 20)
    stereo = bool(toc & 0x04)
    lib = load()
    if lib is None:
        first = payload[1] if toc & 3 == 0 else None
    else:
        frames = (ctypes.c_void_p * 48)()
        sizes = (ctypes.c_int16 * 48)()
        n = lib.opus_packet_parse(payload, len(payload), None, frames, sizes, None)
        if n <= 0 or sizes[0] == 0:
            return False
        first = ctypes.c_ubyte.from_address(frames[0]).value
    if first is None:
        return False
    lbrr = (first >> (7 - silk_frames)) & 1
    if stereo:
        lbrr |= (first >> (6 - 2 * silk_frames)) & 1
    return bool(lbrr)


class LibopusDecoder:
    """Mono 16-bit Opus decoding at 48 kHz with libopus's concealment and FEC."""

    name = "opus"
    audio_rate = RATE

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        err = ctypes.c_int(0)
        state = lib.opus_decoder_create(RATE, 1, ctypes.byref(err))
        if err.value != 0 or not state:
            raise RuntimeError(f"opus_decoder_create failed ({err.value})")
        self._state = state
        self._buf = np.zeros(MAX_FRAME, dtype="<i2")
        self._ptr = self._buf.ctypes.data

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)

    def _run(self, data: bytes | None, samples: int, fec: int) -> bytes:
        n = self._lib.opus_decode(self._state, data, len(data) if data else 0, self._ptr,
                                  samples, fec)
        if n < 0:
            raise ValueError(f"opus_decode failed ({n})")
        return self._buf[:n].tobytes()

    def decode(self, payload: bytes) -> bytes:
        return self._run(payload, MAX_FRAME, 0)

    def conceal(self, samples: int) -> bytes:
        """`samples` of libopus's packet loss concealment (for a lost packet)."""
        size = min(MAX_FRAME, -(-max(samples, 1) // _STEP) * _STEP)
        return self._run(None, size, 0)[:samples * 2]

    def recover(self, payload: bytes, samples: int) -> bytes:
        """The lost `samples` before `payload`, from the FEC it carries; b"" when it has none."""
        frame_ms = _silk_frame_ms(payload[0]) if payload else None
        if (frame_ms is None or not has_fec(payload) or samples % _STEP
                or not RATE * frame_ms // 1000 <= samples <= MAX_FRAME):
            return b""  # libopus would conceal instead: not a recovery
        return self._run(payload, samples, 1)


def make_decoder() -> LibopusDecoder | None:
    lib = load()
    return LibopusDecoder(lib) if lib is not None else None
