"""Audio sources and sinks: 16-bit mono PCM at whatever rate the codec asks for.

One module per device kind (`null`, `tone`, `wav`, `echo`, `tee`, `pyaudio` and the
shared PortAudio `streams`) on top of `base` (the protocols, metering, rate conversion). The names are re-exported here, so
callers import from `softphone.media.devices` and never care where a device lives.
Importing this package loads numpy but neither PyAudio nor PyAV: those load on first use.
"""

from .base import (SILENCE_DBFS, AudioSink, AudioSource, AudioUnavailable, rms_dbfs,
                   resample)
from .echo import EchoBridge
from .null import NullSink, NullSource
from .overlay import OverlaySink
from .pyaudio import DeviceInfo, find_device, list_devices
from .streams import (PyAudioSink, PyAudioSource, open_pyaudio, open_speaker, reset_pyaudio,
                      set_processing)
from .tee import TeeSink
from .tone import CadencedTone, ToneSource, call_waiting_tone
from .wav import WavSink, WavSource

__all__ = [
    "SILENCE_DBFS", "AudioSink", "AudioSource", "AudioUnavailable", "CadencedTone",
    "DeviceInfo", "EchoBridge", "NullSink", "NullSource", "OverlaySink", "PyAudioSink",
    "PyAudioSource", "TeeSink", "ToneSource", "WavSink", "WavSource", "call_waiting_tone",
    "find_device", "list_devices", "open_pyaudio", "open_speaker", "reset_pyaudio",
    "set_processing", "resample", "rms_dbfs",
]
