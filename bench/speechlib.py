"""The signal side of the quality bench: speech to send, a recording aligned to it, and
its PESQ score.

- Speech comes from espeak-ng at bench time (Harvard sentences, two voices), levelled to
  -26 dBFS active speech, with silence around it (PESQ wants some, and the tail covers the
  playout delay before a file-driven sender hangs up).
- Alignment: FFT cross-correlation of the recording against the reference gives the
  delay (call set-up skew + playout delay); the reference's span is cut out of the
  recording there. PESQ realigns per utterance inside that span (P.862 §10), which is what
  absorbs the playout buffer's own delay changes.
- PESQ: ITU-T P.862 narrow band at 8 kHz (G.711), P.862.2 wide band at 16 kHz (G.722,
  Opus), through the ``pesq`` package.

Files go through sox (resampling, channel mixing); arrays are float64 in [-1, 1).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: (espeak-ng voice, sentence): IEEE Harvard sentences (list 1), a male and a female voice
SENTENCES: tuple[tuple[str, str], ...] = (
    ("en-us", "The birch canoe slid on the smooth planks."),
    ("en-us+f3", "Glue the sheet to the dark blue background."),
    ("en-us", "It is easy to tell the depth of a well."),
    ("en-us+f3", "These days a chicken leg is a rare dish."),
)
#: the near-end talker of the echo scene (list 2), the other voice order
NEAR_SENTENCES: tuple[tuple[str, str], ...] = (
    ("en-us+f3", "The boy was there when the sun rose."),
    ("en-us", "A rod is used to catch pink salmon."),
)
WORDS_PER_MIN = 160
GAP_S = 0.25
LEAD_S, TAIL_S = 0.5, 1.0
ACTIVE_DBFS = -26.0
MASTER_RATE = 16000


# --------------------------------------------------------------------------- files
def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples (channels averaged) and the rate of a 16-bit WAV."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, want 16-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    x = data.astype(np.float64) / 32768.0
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return x, rate


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def sox_convert(src: Path, dst: Path, rate: int) -> Path:
    """``src`` as 16-bit mono at ``rate`` (sox's high-quality resampler)."""
    subprocess.run(["sox", str(src), "-b", "16", "-c", "1", str(dst), "rate", "-v", str(rate)],
                   check=True, capture_output=True, timeout=60)
    return dst


def load_at(path: Path, rate: int) -> np.ndarray:
    """A WAV's mono samples at ``rate`` (converted by sox when it has another rate)."""
    x, have = read_wav(path)
    if have == rate:
        return x
    with tempfile.TemporaryDirectory() as tmp:
        return read_wav(sox_convert(path, Path(tmp) / "r.wav", rate))[0]


# --------------------------------------------------------------------------- speech
def synthesize(dest: Path, sentences: Sequence[tuple[str, str]] = SENTENCES,
               lead_s: float = LEAD_S, tail_s: float = TAIL_S) -> Path:
    """The speech sample at 16 kHz: each sentence spoken by espeak-ng, joined by short
    gaps, levelled, with ``lead_s``/``tail_s`` of silence. Cached by content in ``dest``."""
    key = hashlib.sha1(repr((sentences, WORDS_PER_MIN, GAP_S, lead_s, tail_s,
                             ACTIVE_DBFS)).encode()).hexdigest()[:12]
    out = dest / f"speech-{key}-16k.wav"
    if out.exists():
        return out
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng not installed (make setup)")
    dest.mkdir(parents=True, exist_ok=True)
    parts = [np.zeros(int(lead_s * MASTER_RATE))]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (voice, text) in enumerate(sentences):
            raw = Path(tmp) / f"s{i}.wav"
            subprocess.run([espeak, "-v", voice, "-s", str(WORDS_PER_MIN), "-w", str(raw), text],
                           check=True, capture_output=True, timeout=30)
            said = trim_silence(load_at(raw, MASTER_RATE))
            parts += [said, np.zeros(int(GAP_S * MASTER_RATE))]
    parts[-1] = np.zeros(int(tail_s * MASTER_RATE))
    x = level(np.concatenate(parts), ACTIVE_DBFS)
    tmp_out = out.with_suffix(".tmp.wav")
    write_wav(tmp_out, x, MASTER_RATE)
    tmp_out.replace(out)
    return out


def trim_silence(x: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > floor)
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def active_rms(x: np.ndarray, rate: int = MASTER_RATE) -> float:
    """RMS over the 10 ms frames within 30 dB of the loudest (a rough P.56 active level)."""
    n = rate // 100
    frames = x[: len(x) // n * n].reshape(-1, n)
    if not len(frames):
        return 0.0
    power = (frames ** 2).mean(axis=1)
    active = power[power > power.max() * 1e-3]
    return math.sqrt(float(active.mean())) if len(active) else 0.0


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = active_rms(x)
    return x * (10 ** (dbfs / 20) / rms) if rms > 0 else x


# --------------------------------------------------------------------------- scoring
def align(ref: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, int]:
    """The span of ``rec`` that lines up with ``ref`` (zero-padded where the recording is
    short), and the lag in samples (positive: the recording is late)."""
    if not len(rec) or not np.any(rec):
        return np.zeros(len(ref)), 0
    n = len(ref) + len(rec) - 1
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    # lags 0..len(rec)-1 sit at the front, negative lags (recording starts late) at the back
    lags = np.concatenate([np.arange(len(rec)), np.arange(-(len(ref) - 1), 0)])
    values = np.concatenate([xc[:len(rec)], xc[size - (len(ref) - 1):]])
    lag = int(lags[int(np.argmax(values))])
    out = np.zeros(len(ref))
    src0, dst0 = max(lag, 0), max(-lag, 0)
    count = max(0, min(len(ref) - dst0, len(rec) - src0))
    out[dst0:dst0 + count] = rec[src0:src0 + count]
    return out, lag


def pesq_mos(ref: np.ndarray, deg: np.ndarray, rate: int) -> float | None:
    """PESQ MOS-LQO: P.862 narrow band at 8 kHz, P.862.2 wide band at 16 kHz; None when
    PESQ finds no utterance (a silent recording) — the caller says so."""
    from pesq import NoUtterancesError, pesq

    mode = {8000: "nb", 16000: "wb"}[rate]
    try:
        return float(pesq(rate, ref.astype(np.float32), deg.astype(np.float32), mode))
    except NoUtterancesError:
        return None


def score_recording(reference: Path, recording: Path, rate: int) -> tuple[float | None, float]:
    """(PESQ of ``recording`` against ``reference`` at ``rate``, its delay in ms)."""
    ref = load_at(reference, rate)
    rec = load_at(recording, rate)
    deg, lag = align(ref, rec)
    return pesq_mos(ref, deg, rate), lag * 1000.0 / rate
