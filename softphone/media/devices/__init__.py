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
from .overlay import OverlaySink
from .pyaudio import (DeviceInfo, PyAudioSink, PyAudioSource, list_devices, open_pyaudio,
                      reset_pyaudio)
from .tee import TeeSink
from .tone import CadencedTone, ToneSource, call_waiting_tone
from .wav import WavSink, WavSource

__all__ = [
    "SILENCE_DBFS", "AudioSink", "AudioSource", "AudioUnavailable", "CadencedTone",
    "DeviceInfo", "EchoBridge", "NullSink", "NullSource", "OverlaySink", "PyAudioSink",
    "PyAudioSource", "TeeSink", "ToneSource", "WavSink", "WavSource", "call_waiting_tone",
    "list_devices", "open_pyaudio", "reset_pyaudio", "resample", "rms_dbfs",
]
