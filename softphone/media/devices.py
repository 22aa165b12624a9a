"""Audio sources and sinks: 16-bit mono PCM at whatever rate the codec asks for.

A source hands out exactly `samples` samples per `read`, silence when it has nothing; a
sink takes whatever `write` gives it. Both run on the event loop's ticker thread and
must never block: the PyAudio ones exchange audio with PortAudio's callback thread
through small bounded buffers.

`level_dbfs` (RMS of the last frame) feeds the TUI meters; it is computed only when
read, so the audio path pays nothing for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import sys
import threading
import wave
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SILENCE_DBFS = -120.0


class AudioUnavailable(RuntimeError):
    """No usable audio device (the caller falls back to the null devices)."""


class AudioSource(Protocol):
    def read(self, samples: int, rate: int) -> bytes: ...


class AudioSink(Protocol):
    def write(self, pcm: bytes, rate: int) -> None: ...


def rms_dbfs(pcm: bytes) -> float:
    if not pcm:
        return SILENCE_DBFS
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(x * x))) / 32768.0
    return 20 * math.log10(rms) if rms > 1e-6 else SILENCE_DBFS


class _Metered:
    """Keeps the last frame; `level_dbfs` is its RMS in dBFS."""

    _last: bytes = b""

    @property
    def level_dbfs(self) -> float:
        return rms_dbfs(self._last)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """One-shot rate conversion of a whole buffer (PyAV's swresample)."""
    if from_rate == to_rate or not pcm:
        return pcm
    return _StreamResampler(from_rate, to_rate).process(pcm, flush=True)


class _StreamResampler:
    """Streaming s16 mono rate converter built on PyAV's AudioResampler."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        import av

        self._av = av
        self.from_rate, self.to_rate = from_rate, to_rate
        self._r = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
        self._pts = 0

    def process(self, pcm: bytes, flush: bool = False) -> bytes:
        av = self._av
        n = len(pcm) // 2
        if n == 0 and not flush:
            return b""
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm[: n * 2])
        frame.sample_rate = self.from_rate
        frame.pts = self._pts
        self._pts += n
        frames = self._r.resample(frame)
        if flush:
            frames += self._r.resample(None)
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)


# --------------------------------------------------------------------------- simple devices
class NullSource(_Metered):
    def read(self, samples: int, rate: int) -> bytes:
        return bytes(samples * 2)


class NullSink(_Metered):
    discards = True  # the session may skip decoding and playout altogether

    def write(self, pcm: bytes, rate: int) -> None:
        pass


class ToneSource(_Metered):
    """A continuous sine; one cycle-aligned table per rate so reads are slices."""

    def __init__(self, freq_hz: float = 440.0, level_dbfs: float = -12.0) -> None:
        self.freq_hz = freq_hz
        self.amplitude = 32767 * 10 ** (level_dbfs / 20) * math.sqrt(2)  # RMS level
        self.amplitude = min(self.amplitude, 32767.0)
        self._tables: dict[int, np.ndarray] = {}
        self._pos: dict[int, int] = {}

    def _table(self, rate: int) -> np.ndarray:
        t = self._tables.get(rate)
        if t is None:
            # one second holds a whole number of cycles for integral frequencies;
            # otherwise the wrap is a tiny phase step once a second
            n = np.arange(rate)
            t = (self.amplitude * np.sin(2 * np.pi * self.freq_hz * n / rate)).astype("<i2")
            self._tables[rate] = t
            self._pos[rate] = 0
        return t

    def read(self, samples: int, rate: int) -> bytes:
        t = self._table(rate)
        pos = self._pos[rate]
        end = pos + samples
        if end <= len(t):
            out = t[pos:end].tobytes()
        else:
            idx = np.arange(pos, end) % len(t)
            out = t[idx].tobytes()
        self._pos[rate] = end % len(t)
        self._last = out
        return out


_DECODED: dict[tuple[str, int, int, int], np.ndarray] = {}
_DECODED_MAX = 8


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


class WavSource(_Metered):
    """Plays a WAV (any rate, channels, sample format PyAV reads), looping by default."""

    def __init__(self, path: str | os.PathLike, loop: bool = True) -> None:
        self.path = os.fspath(path)
        self.loop = loop
        if not os.path.isfile(self.path):
            raise FileNotFoundError(self.path)
        self._cache: dict[int, np.ndarray] = {}
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
        width = len(encoded) // len(data)  # bytes per sample after encoding (1 for G.711)
        pos = self._pos % len(data)
        self._pos = pos + samples
        out = encoded[pos * width:(pos + samples) * width]
        while len(out) < samples * width:  # wrap around the end of the loop
            out += encoded[:samples * width - len(out)]
        return out


_ENCODED: dict[tuple, bytes] = {}


class WavSink(_Metered):
    """Records 16-bit mono WAV at the rate of the first write (the codec's audio rate).

    The header is patched after every write (the wave module does that), so the file is
    valid even if nobody calls close(). Audio at another rate later (re-INVITE to a new
    codec) is converted to the file's rate.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.rate: int | None = None
        self._wav: wave.Wave_write | None = None
        self._resampler: _StreamResampler | None = None
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
                    self._resampler = _StreamResampler(rate, self.rate)
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


class TeeSink(_Metered):
    """Writes the same audio to several sinks."""

    def __init__(self, *sinks: AudioSink) -> None:
        self.sinks = list(sinks)

    def write(self, pcm: bytes, rate: int) -> None:
        self._last = pcm
        for s in self.sinks:
            s.write(pcm, rate)

    def close(self) -> None:
        for s in self.sinks:
            close = getattr(s, "close", None)
            if close:
                close()


class _PcmFifo:
    """Thread-safe bounded byte FIFO; the oldest audio goes when it overflows."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.overflows = 0
        self.underruns = 0

    def put(self, data: bytes) -> None:
        with self._lock:
            self._buf += data
            extra = len(self._buf) - self.max_bytes
            if extra > 0:
                extra += extra & 1
                del self._buf[:extra]
                self.overflows += 1

    def get(self, n: int) -> bytes:
        with self._lock:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        if len(out) < n:
            self.underruns += 1
            out += bytes(n - len(out))
        return out

    def __len__(self) -> int:
        return len(self._buf)

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()


class EchoBridge:
    """`sink` receives the far end's audio, `source` sends it straight back."""

    def __init__(self, max_ms: int = 200) -> None:
        self._max_ms = max_ms
        self._fifo: _PcmFifo | None = None
        self._rate = 0
        bridge = self

        class _Sink(_Metered):
            def write(self, pcm: bytes, rate: int) -> None:
                self._last = pcm
                bridge._fifo_for(rate).put(pcm)

        class _Source(_Metered):
            def read(self, samples: int, rate: int) -> bytes:
                out = bridge._fifo_for(rate).get(samples * 2)
                self._last = out
                return out

        self.sink = _Sink()
        self.source = _Source()

    def _fifo_for(self, rate: int) -> _PcmFifo:
        if self._fifo is None or rate != self._rate:
            self._rate = rate
            self._fifo = _PcmFifo(rate * 2 * self._max_ms // 1000)
        return self._fifo


# --------------------------------------------------------------------------- PyAudio
def _silence_native_audio_logs() -> None:
    """No-op ALSA/JACK error handlers: their chatter on fd 2 wrecks a Textual screen."""
    if getattr(_silence_native_audio_logs, "done", False):
        return
    _silence_native_audio_logs.done = True  # type: ignore[attr-defined]
    try:
        asound = ctypes.cdll.LoadLibrary(ctypes.util.find_library("asound") or "libasound.so.2")
        handler_t = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_char_p)
        _silence_native_audio_logs.alsa_cb = handler_t(lambda *a: None)  # type: ignore[attr-defined]
        asound.snd_lib_error_set_handler(_silence_native_audio_logs.alsa_cb)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass
    try:
        jack = ctypes.cdll.LoadLibrary(ctypes.util.find_library("jack") or "libjack.so.0")
        cb_t = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
        _silence_native_audio_logs.jack_cb = cb_t(lambda msg: None)  # type: ignore[attr-defined]
        jack.jack_set_error_function(_silence_native_audio_logs.jack_cb)  # type: ignore[attr-defined]
        jack.jack_set_info_function(_silence_native_audio_logs.jack_cb)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _stderr_to_devnull():
    """libjack's shm messages ignore the error callback: hide fd 2 around PyAudio()."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_pa_lock = threading.Lock()
_pa_instance = None
_probe_verdict: str | None = None  # None: not probed; "": PortAudio starts; else why not

_PROBE = "import pyaudio; p = pyaudio.PyAudio(); print(p.get_device_count()); p.terminate()"


def _probe_portaudio() -> str:
    """Start PortAudio once in a child process first: a broken ALSA set-up makes alsa-lib
    abort() inside Pa_Initialize, which would kill us with no word said. '' means fine."""
    global _probe_verdict
    if _probe_verdict is None:
        import subprocess

        try:
            out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True,
                                 timeout=15, env=os.environ.copy())
        except (OSError, subprocess.TimeoutExpired) as exc:
            _probe_verdict = f"PortAudio did not start ({exc.__class__.__name__})"
        else:
            if out.returncode == 0:
                _probe_verdict = ""
            elif out.returncode < 0:
                _probe_verdict = (f"PortAudio crashed while looking for sound devices "
                                  f"(signal {-out.returncode}); check the ALSA/PulseAudio set-up")
            else:
                last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
                _probe_verdict = f"PortAudio did not start: {last[:200]}"
    return _probe_verdict


def _pyaudio():
    """The process-wide PyAudio instance, created quietly on first use."""
    global _pa_instance
    with _pa_lock:
        if _pa_instance is None:
            try:
                import pyaudio
            except ImportError as exc:
                raise AudioUnavailable(f"PyAudio is not installed: {exc}") from exc
            problem = _probe_portaudio()
            if problem:
                raise AudioUnavailable(problem)
            _silence_native_audio_logs()
            with _stderr_to_devnull():
                _pa_instance = pyaudio.PyAudio()
        return _pa_instance


def reset_pyaudio() -> None:
    """Terminate PortAudio so the next use rescans devices (e.g. a sound server started)."""
    global _pa_instance, _probe_verdict
    with _pa_lock:
        _probe_verdict = None
        if _pa_instance is not None:
            with _stderr_to_devnull():
                _pa_instance.terminate()
            _pa_instance = None


@dataclass
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: float
    is_default_input: bool = False
    is_default_output: bool = False


def list_devices() -> list[DeviceInfo]:
    """PortAudio's devices; an empty list when PortAudio sees none."""
    pa = _pyaudio()
    try:
        din = pa.get_default_input_device_info()["index"]
    except (OSError, IOError):
        din = -1
    try:
        dout = pa.get_default_output_device_info()["index"]
    except (OSError, IOError):
        dout = -1
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        out.append(DeviceInfo(i, str(d["name"]), int(d["maxInputChannels"]),
                              int(d["maxOutputChannels"]), float(d["defaultSampleRate"]),
                              i == din, i == dout))
    return out


def _find_device(device: str | int | None, want_input: bool) -> int | None:
    """Index of the device named (substring) or numbered `device`; None = default."""
    devices = list_devices()
    usable = [d for d in devices
              if (d.max_input_channels if want_input else d.max_output_channels) > 0]
    kind = "input" if want_input else "output"
    if not usable:
        raise AudioUnavailable(
            f"no audio {kind} device (PortAudio found {len(devices)} device(s); "
            "is a sound server such as PulseAudio running and XDG_RUNTIME_DIR set?)")
    if device is None or device == "":
        if any(d.is_default_input if want_input else d.is_default_output for d in usable):
            return None
        return usable[0].index
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        idx = int(device)
        if any(d.index == idx for d in usable):
            return idx
        raise AudioUnavailable(f"no audio {kind} device with index {idx}")
    for d in usable:
        if d.name == device:
            return d.index
    for d in usable:
        if device.lower() in d.name.lower():
            return d.index
    raise AudioUnavailable(f"no audio {kind} device named {device!r}; "
                           f"have: {', '.join(d.name for d in usable)}")


class _PyAudioStream:
    """Shared open/close logic: a callback stream at `rate`, 20 ms per buffer."""

    def __init__(self, device: str | int | None, rate: int, want_input: bool,
                 max_ms: int) -> None:
        import pyaudio

        self.rate = rate
        self.fifo = _PcmFifo(rate * 2 * max_ms // 1000)
        self._conv: dict[int, _StreamResampler] = {}
        pa = _pyaudio()
        index = _find_device(device, want_input)
        frames = rate // 50
        try:
            with _stderr_to_devnull():
                self._stream = pa.open(
                    format=pyaudio.paInt16, channels=1, rate=rate,
                    input=want_input, output=not want_input,
                    input_device_index=index if want_input else None,
                    output_device_index=None if want_input else index,
                    frames_per_buffer=frames, stream_callback=self._callback)
        except (OSError, ValueError) as exc:
            kind = "input" if want_input else "output"
            raise AudioUnavailable(f"cannot open audio {kind} device {device!r} at {rate} Hz: "
                                   f"{exc}") from exc
        self._closed = False

    def _callback(self, in_data, frame_count, time_info, status):  # PortAudio thread
        raise NotImplementedError

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with _stderr_to_devnull():
                self._stream.stop_stream()
                self._stream.close()
        except OSError:
            pass


class PyAudioSource(_PyAudioStream, _Metered):
    """Microphone capture; `read` never blocks (silence on underrun)."""

    def __init__(self, device: str | int | None = None, rate: int = 48000,
                 max_ms: int = 120) -> None:
        super().__init__(device, rate, True, max_ms)

    def _callback(self, in_data, frame_count, time_info, status):
        import pyaudio

        self.fifo.put(in_data)
        return None, pyaudio.paContinue

    def read(self, samples: int, rate: int) -> bytes:
        if rate == self.rate:
            out = self.fifo.get(samples * 2)
        else:
            conv = self._conv.get(rate)
            if conv is None:
                conv = self._conv[rate] = _StreamResampler(self.rate, rate)
                conv.pending = bytearray()  # type: ignore[attr-defined]
            pending = conv.pending  # type: ignore[attr-defined]
            need_in = samples * self.rate // rate
            while len(pending) < samples * 2:
                pending += conv.process(self.fifo.get(need_in * 2))
                if len(pending) < samples * 2 and len(self.fifo) == 0:
                    break
            out = bytes(pending[:samples * 2]).ljust(samples * 2, b"\0")
            del pending[:samples * 2]
        self._last = out
        return out


class PyAudioSink(_PyAudioStream, _Metered):
    """Speaker playback; `write` queues (bounded), PortAudio's thread drains."""

    def __init__(self, device: str | int | None = None, rate: int = 48000,
                 max_ms: int = 160) -> None:
        super().__init__(device, rate, False, max_ms)

    def _callback(self, in_data, frame_count, time_info, status):
        import pyaudio

        return self.fifo.get(frame_count * 2), pyaudio.paContinue

    def write(self, pcm: bytes, rate: int) -> None:
        self._last = pcm
        if rate != self.rate:
            conv = self._conv.get(rate)
            if conv is None:
                conv = self._conv[rate] = _StreamResampler(rate, self.rate)
            pcm = conv.process(pcm)
        self.fifo.put(pcm)


def open_pyaudio(input: str | int | None = None, output: str | int | None = None,
                 rate: int = 48000) -> tuple[PyAudioSource, PyAudioSink]:
    """Open capture and playback; AudioUnavailable says why when that is impossible."""
    source = PyAudioSource(input, rate)
    try:
        sink = PyAudioSink(output, rate)
    except AudioUnavailable:
        source.close()
        raise
    return source, sink
