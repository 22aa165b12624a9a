#!/usr/bin/env python3
"""Echo cancellers side by side on one synthetic echo path: the one the softphone uses
(WebRTC AEC3 through pywebrtc-audio, driven through softphone.media.processing exactly as
the capture callback drives it), the same AEC3 through livekit's AudioProcessingModule,
and speexdsp's MDF canceller with its preprocessor (Debian's libspeexdsp1, by ctypes).

Scene (tests/peers/echoscene.py): far-end speech (espeak-ng; --smoke: synthetic babble)
through a room impulse response (direct path after the device latency, exponential
tail), ``erl`` dB quieter than the speaker feed, plus white noise, into the microphone;
near-end speech joins for the last part (double talk). Figures per canceller and room:

    echo.erle_converged   ERLE over far-end single talk after 4 s (--smoke: half the far-end
                          part), dB (higher is better)
    echo.erle_first_2s    ERLE over the first 2 s: how fast it learns the room, dB
    echo.dt_pesq          PESQ (P.862.2 wide band) of the near end's speech in double talk,
                          the clean near-end speech as reference (needs the pesq package)
    echo.cost_per_10ms    CPU time per 10 ms of 16 kHz audio, µs

and ``echo.ratio.erle_converged``: ours / speexdsp's (the canceller baresip's and pjsip's
speex modules use). livekit (the bench extra) is measured when installed. Only stdout
carries figures.

    .venv/bin/python bench/echo_compare.py [--smoke]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import figure, note, ratio  # noqa: E402  (adds tests/ to the path)
from peers.echoscene import babble, echo_scene, speech, through  # noqa: E402
from softphone.media.processing import Processing, VoiceProcessor, erle_db  # noqa: E402

RATE = 16000
FAR_TEXT = ("The quick brown fox jumps over the lazy dog. A telephone call needs clear audio "
            "on both sides, and the echo canceller must learn the room quickly. Then both "
            "people talk at the same time, which is the hard part for any canceller.")
NEAR_TEXT = "Hello, can you hear me? I am talking at the same time as you are, please wait."
ROOMS = {  # name: (device + air delay ms, RT60 s, ERL dB)
    "laptop": (60.0, 0.25, 6.0),
    "room": (150.0, 0.5, 0.0),
}


# --------------------------------------------------------------------------- cancellers
def ours(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    """softphone.media.processing as the capture callback runs it: 20 ms blocks, AEC only."""
    return through(VoiceProcessor(RATE, Processing(True, False, False)), mic, far, RATE)


def livekit(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    """livekit.rtc.AudioProcessingModule (libwebrtc's APM over livekit's FFI), 10 ms frames."""
    from livekit import rtc

    apm = rtc.AudioProcessingModule(echo_cancellation=True)
    n = RATE // 100
    out = np.zeros(len(mic) // n * n, dtype=np.int16)
    for i in range(0, len(out), n):
        apm.process_reverse_stream(rtc.AudioFrame(far[i:i + n].tobytes(), RATE, 1, n))
        frame = rtc.AudioFrame(mic[i:i + n].tobytes(), RATE, 1, n)
        apm.process_stream(frame)
        out[i:i + n] = np.frombuffer(bytes(frame.data.cast("B")), "<i2")
    return out


def speexdsp(mic: np.ndarray, far: np.ndarray, tail_s: float = 0.5) -> np.ndarray:
    """speexdsp's MDF echo canceller (``tail_s`` filter) plus its preprocessor's residual
    echo suppression, 20 ms frames (what baresip's and pjsip's speex AEC do)."""
    lib = ctypes.CDLL(ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1")
    ptr = ctypes.c_void_p
    lib.speex_echo_state_init.restype = ptr
    lib.speex_preprocess_state_init.restype = ptr
    lib.speex_echo_cancellation.argtypes = [ptr, ptr, ptr, ptr]
    lib.speex_preprocess_run.argtypes = [ptr, ptr]
    lib.speex_echo_ctl.argtypes = [ptr, ctypes.c_int, ptr]
    lib.speex_preprocess_ctl.argtypes = [ptr, ctypes.c_int, ptr]
    lib.speex_echo_state_destroy.argtypes = [ptr]
    lib.speex_preprocess_state_destroy.argtypes = [ptr]
    n = RATE // 50
    echo = lib.speex_echo_state_init(n, int(RATE * tail_s))
    pre = lib.speex_preprocess_state_init(n, RATE)
    rate = ctypes.c_int(RATE)
    off = ctypes.c_int(0)
    lib.speex_echo_ctl(echo, 24, ctypes.byref(rate))           # SPEEX_ECHO_SET_SAMPLING_RATE
    lib.speex_preprocess_ctl(pre, 24, echo)                     # SET_ECHO_STATE
    lib.speex_preprocess_ctl(pre, 0, ctypes.byref(off))         # SET_DENOISE off: AEC only
    out = np.zeros(len(mic) // n * n, dtype=np.int16)
    buf = np.zeros(n, dtype=np.int16)
    try:
        for i in range(0, len(out), n):
            rec = np.ascontiguousarray(mic[i:i + n])
            play = np.ascontiguousarray(far[i:i + n])
            lib.speex_echo_cancellation(echo, rec.ctypes.data, play.ctypes.data, buf.ctypes.data)
            lib.speex_preprocess_run(pre, buf.ctypes.data)
            out[i:i + n] = buf
    finally:
        lib.speex_preprocess_state_destroy(pre)
        lib.speex_echo_state_destroy(echo)
    return out


CANCELLERS = {"pywebrtc": ours, "livekit": livekit, "speexdsp": speexdsp}


# --------------------------------------------------------------------------- scoring
def aligned(ref: np.ndarray, deg: np.ndarray, max_lag: int = RATE // 20) -> np.ndarray:
    """``deg`` shifted to line up with ``ref`` (a canceller may delay the capture a little)."""
    r, d = ref.astype(np.float64), deg.astype(np.float64)
    size = 1 << (len(r) + len(d)).bit_length()
    xc = np.fft.irfft(np.fft.rfft(d, size) * np.conj(np.fft.rfft(r, size)), size)
    lags = np.concatenate([xc[:max_lag + 1], xc[-max_lag:]])
    lag = int(np.argmax(lags))
    lag = lag if lag <= max_lag else lag - len(lags)
    return np.roll(deg, -lag)


def dt_pesq(near: np.ndarray, out: np.ndarray) -> float | None:
    try:
        from pesq import pesq
    except ImportError:
        note("pesq is not installed: no double-talk PESQ (pip install pesq)")
        return None
    return float(pesq(RATE, near.astype(np.float64) / 32768,
                      aligned(near, out).astype(np.float64) / 32768, "wb"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds of synthetic speech")
    ap.add_argument("--quick", action="store_true", help="the same as a full run (it is short)")
    a = ap.parse_args()
    if a.smoke:
        far, near, dt_at = babble(6.0, RATE, seed=1), babble(2.0, RATE, seed=2, pitch_hz=210), 4.0
    else:
        far = speech(FAR_TEXT, RATE, level_dbfs=-20)
        far = np.concatenate([far, far])[: 16 * RATE]
        near = speech(NEAR_TEXT, RATE, voice="en+f3", level_dbfs=-20)[: 6 * RATE]
        dt_at = 10.0
    erle: dict[tuple[str, str], float] = {}
    for room, (delay_ms, rt60, erl) in ROOMS.items():
        scene = echo_scene(far, near, rate=RATE, delay_ms=delay_ms, rt60_s=rt60, erl_db=erl,
                           noise_dbfs=-60, double_talk_at=dt_at)
        lo, hi = scene.double_talk
        figure("echo.dt_pesq", dt_pesq(scene.near[lo:hi], scene.mic[lo:hi]), "mos",
               impl="none", room=room)
        for name, cancel in CANCELLERS.items():
            try:
                started = time.process_time()
                out = cancel(scene.mic, scene.far)
                cost = (time.process_time() - started) / (len(scene.mic) / RATE * 100)
            except (ImportError, OSError) as exc:
                note(f"{name}: not available here ({exc})")
                continue
            settled = slice(min(4 * RATE, lo // 2), min(lo, len(out)))  # after learning
            erle[room, name] = erle_db(scene.mic[settled], scene.far[settled], out[settled],
                                       RATE)
            figure("echo.erle_converged", erle[room, name], "dB", impl=name, room=room)
            first = slice(0, 2 * RATE)
            figure("echo.erle_first_2s", erle_db(scene.mic[first], scene.far[first],
                                                 out[first], RATE), "dB", impl=name, room=room)
            figure("echo.dt_pesq", dt_pesq(scene.near[lo:hi], out[lo:hi]), "mos", impl=name,
                   room=room)
            figure("echo.cost_per_10ms", cost * 1e6, "us", impl=name, room=room)
        ratio("echo.ratio.erle_converged", erle.get((room, "pywebrtc")),
              erle.get((room, "speexdsp")), impl="pywebrtc", peer_name="speexdsp", room=room)
    return 0


if __name__ == "__main__":
    sys.exit(main())
