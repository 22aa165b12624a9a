"""Everything PortAudio (through PyAudio): probing it safely, keeping ALSA/JACK quiet,
listing and picking devices, and the capture/playback streams.

PyAudio is imported on first use, never at import time; a PortAudio that cannot start
(no sound server, a broken ALSA set-up) surfaces as `AudioUnavailable`, so the caller
falls back to the null devices.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass

from .base import AudioUnavailable, Metered, PcmFifo, StreamResampler


def _silence_native_audio_logs() -> None:
    """No-op ALSA/JACK error handlers: their chatter on fd 2 wrecks a Textual screen."""
    if getattr(_silence_native_audio_logs, "done", False):
        return
    _silence_native_audio_logs.done = True  # type: ignore[attr-defined]
    import ctypes  # here, not at import: ctypes.util pulls in subprocess, shutil, tempfile
    import ctypes.util

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
        self.fifo = PcmFifo(rate * 2 * max_ms // 1000)
        self._conv: dict[int, StreamResampler] = {}
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


class PyAudioSource(_PyAudioStream, Metered):
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
                conv = self._conv[rate] = StreamResampler(self.rate, rate)
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


class PyAudioSink(_PyAudioStream, Metered):
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
                conv = self._conv[rate] = StreamResampler(rate, self.rate)
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
