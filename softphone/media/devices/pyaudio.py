"""Everything PortAudio (through PyAudio): probing it safely, keeping ALSA/JACK quiet,
listing and picking devices, opening and closing a stream. The streams the calls share
(mixing, echo reference, fallback) are in `streams`.

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

from .base import AudioUnavailable


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


def terminate_portaudio() -> None:
    """Terminate PortAudio so the next use rescans devices (streams: close them first,
    `streams.reset_pyaudio`)."""
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


def find_device(device: str | int | None, want_input: bool) -> int | None:
    """Index of the device numbered or named ``device`` (None/"" = the default: None).

    A name matches exactly, then ignoring case, then as a part of one device's name; a part
    that several devices share is ambiguous. AudioUnavailable lists what there is."""
    devices = list_devices()
    usable = [d for d in devices
              if (d.max_input_channels if want_input else d.max_output_channels) > 0]
    kind = "input" if want_input else "output"
    if not usable:
        raise AudioUnavailable(
            f"no audio {kind} device (PortAudio found {len(devices)} device(s); "
            "is a sound server such as PulseAudio running and XDG_RUNTIME_DIR set?)")
    have = ", ".join(f"{d.index}: {d.name}" for d in usable)
    if device is None or device == "":
        if any(d.is_default_input if want_input else d.is_default_output for d in usable):
            return None
        return usable[0].index
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        idx = int(device)
        if any(d.index == idx for d in usable):
            return idx
        raise AudioUnavailable(f"no audio {kind} device with index {idx} (have {have})")
    for same in (lambda d: d.name == device, lambda d: d.name.lower() == device.lower()):
        found = [d for d in usable if same(d)]
        if found:
            return found[0].index
    found = [d for d in usable if device.lower() in d.name.lower()]
    if len(found) == 1:
        return found[0].index
    if found:
        raise AudioUnavailable(f"audio {kind} device name {device!r} is ambiguous: it is part "
                               f"of {', '.join(repr(d.name) for d in found)}; give more of it")
    raise AudioUnavailable(f"no audio {kind} device named {device!r} (have {have})")


def device_name(index: int | None, want_input: bool) -> str:
    """A device's name for messages ("the default device" for None)."""
    if index is None:
        return "the default device"
    try:
        return repr(str(_pyaudio().get_device_info_by_index(index)["name"]))
    except (OSError, IOError, AudioUnavailable):
        return f"device {index}"


_open_lock = threading.RLock()


def open_stream(index: int | None, want_input: bool, rate: int, frames: int, callback):
    """A PortAudio callback stream, mono s16 (raises OSError/ValueError as PyAudio does)."""
    import pyaudio

    pa = _pyaudio()
    with _open_lock, _stderr_to_devnull():
        return pa.open(format=pyaudio.paInt16, channels=1, rate=rate,
                       input=want_input, output=not want_input,
                       input_device_index=index if want_input else None,
                       output_device_index=None if want_input else index,
                       frames_per_buffer=frames, stream_callback=callback)


def close_stream(stream) -> None:
    """Stop and close, quietly: a stream whose device went away may fail either way."""
    try:
        with _open_lock, _stderr_to_devnull():
            try:
                stream.stop_stream()
            finally:
                stream.close()
    except (OSError, ValueError):
        pass
