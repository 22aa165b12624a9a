"""Audio sources and sinks: 16-bit mono PCM at whatever rate the codec asks for.

One module per device kind (`null`, `tone`, `wav`, `echo`, `tee`, `pyaudio`) on top of
`base` (the protocols, metering, rate conversion). The names are re-exported here, so
callers import from `softphone.media.devices` and never care where a device lives.
Importing this package loads numpy but neither PyAudio nor PyAV: those load on first use.
"""

from .base import (SILENCE_DBFS, AudioSink, AudioSource, AudioUnavailable, rms_dbfs,
                   resample)
from .echo import EchoBridge
from .null import NullSink, NullSource
from .pyaudio import (DeviceInfo, PyAudioSink, PyAudioSource, list_devices, open_pyaudio,
                      reset_pyaudio)
from .tee import TeeSink
from .tone import ToneSource
from .wav import WavSink, WavSource

__all__ = [
    "SILENCE_DBFS", "AudioSink", "AudioSource", "AudioUnavailable", "DeviceInfo",
    "EchoBridge", "NullSink", "NullSource", "PyAudioSink", "PyAudioSource", "TeeSink",
    "ToneSource", "WavSink", "WavSource", "list_devices", "open_pyaudio", "reset_pyaudio",
    "resample", "rms_dbfs",
]
