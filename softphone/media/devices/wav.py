"""WAV files: a looping player (`--play`) and a recorder (`--record`)."""

from __future__ import annotations

import os
import threading
import wave

import numpy as np

from .base import Metered, StreamResampler

_DECODED: dict[tuple[str, int, int, int], np.ndarray] = {}
_DECODED_MAX = 8
_ENCODED: dict[tuple, bytes] = {}


def _decoded_wav(path: str, rate: int, load) -> np.ndarray:
    """One decode per (file version, rate), shared read-only by every WavSource.

    `answer --auto --play` makes a WavSource per call; decoding the file each time held
    the event loop for tens of ms per call (the top hot spot under call load).
    """
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, rate)
    data = _DECODED.get(key)
    if data is None:
        data = load(rate)
        data.flags.writeable = False
        while len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = data
    return data


class WavSource(Metered):
    """Plays a WAV (any rate, channels, sample format PyAV reads), looping by default."""

    def __init__(self, path: str | os.PathLike, loop: bool = True) -> None:
        self.path = os.fspath(path)
        self.loop = loop
        if not os.path.isfile(self.path):
            raise FileNotFoundError(self.path)
        self._cache: dict[int, np.ndarray] = {}
        self._encoded: dict[tuple[int, str], bytes] = {}  # (rate, codec): the loop encoded
        self._pos = 0
        self.finished = False

    def prepare(self, rate: int) -> None:
        """Decode and convert the file for `rate` now (not inside the first tick)."""
        if rate not in self._cache:
            self._cache[rate] = _decoded_wav(self.path, rate, self._load)

    def _load(self, rate: int) -> np.ndarray:
        import av

        chunks = []
        with av.open(self.path) as container:
            stream = container.streams.audio[0]
            res = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for f in res.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
            for f in res.resample(None):
                chunks.append(f.to_ndarray().reshape(-1))
        return np.concatenate(chunks).astype("<i2") if chunks else np.zeros(0, "<i2")

    def read(self, samples: int, rate: int) -> bytes:
        self.prepare(rate)
        data = self._cache[rate]
        if len(data) == 0 or (self.finished and not self.loop):
            self._last = bytes(samples * 2)
            return self._last
        pos = self._pos % len(data) if self.loop else self._pos
        out = data[pos:pos + samples]
        if len(out) < samples:
            if self.loop:
                idx = np.arange(pos, pos + samples) % len(data)
                out = data[idx]
            else:
                self.finished = True
                out = np.concatenate([out, np.zeros(samples - len(out), "<i2")])
        self._pos = pos + samples
        self._last = out.tobytes()
        return self._last

    def read_encoded(self, encode, key: str, samples: int, rate: int) -> bytes:
        """The next ``samples`` already encoded by a stateless codec (G.711): the looping
        file is encoded once per (file, rate, codec) and shared, then sliced per packet."""
        encoded = self._encoded.get((rate, key))
        if encoded is None:  # once per source: no stat() per packet
            self.prepare(rate)
            data = self._cache[rate]
            if len(data) == 0 or not self.loop:
                return encode(self.read(samples, rate))
            st = os.stat(self.path)
            ckey = (self.path, st.st_mtime_ns, st.st_size, rate, key)
            encoded = _ENCODED.get(ckey)
            if encoded is None:
                encoded = encode(data.tobytes())
                while len(_ENCODED) >= _DECODED_MAX:
                    _ENCODED.pop(next(iter(_ENCODED)))
                _ENCODED[ckey] = encoded
            self._encoded[(rate, key)] = encoded
        data = self._cache[rate]
        width = len(encoded) // len(data)  # bytes per sample after encoding (1 for G.711)
        pos = self._pos % len(data)
        self._pos = pos + samples
        out = encoded[pos * width:(pos + samples) * width]
        while len(out) < samples * width:  # wrap around the end of the loop
            out += encoded[:samples * width - len(out)]
        return out



class WavSink(Metered):
    """Records 16-bit mono WAV at the rate of the first write (the codec's audio rate).

    The header is patched after every write (the wave module does that), so the file is
    valid even if nobody calls close(). Audio at another rate later (re-INVITE to a new
    codec) is converted to the file's rate.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.rate: int | None = None
        self._wav: wave.Wave_write | None = None
        self._resampler: StreamResampler | None = None
        self._lock = threading.Lock()
        self.frames_written = 0

    def write(self, pcm: bytes, rate: int) -> None:
        with self._lock:
            if self._wav is None:
                if self.rate is not None:  # closed
                    return
                self.rate = rate
                self._wav = wave.open(self.path, "wb")
                self._wav.setnchannels(1)
                self._wav.setsampwidth(2)
                self._wav.setframerate(rate)
            if rate != self.rate:
                if self._resampler is None or self._resampler.from_rate != rate:
                    self._resampler = StreamResampler(rate, self.rate)
                pcm = self._resampler.process(pcm)
            self._wav.writeframes(pcm)
            self.frames_written += len(pcm) // 2
            self._last = pcm

    def close(self) -> None:
        with self._lock:
            if self._wav is not None:
                self._wav.close()
                self._wav = None
                self.rate = self.rate or 0
