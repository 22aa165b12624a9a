"""Which audio each call gets: files to play and record, the echo bridge, PyAudio, silence;
and the local tones (ring, ringback) on the speaker.

Checked before anything starts (:meth:`DeviceFactory.check`): a file to play must decode,
a recording path must be creatable, PortAudio must have a device (else silence, with a
notice), and each device named in ``[audio]`` must exist (else an error naming the key and
the devices there are). During a call a recording that cannot be written stops with a
``notice`` and marks the job failed — never a traceback in the middle of the audio path.
The microphone is cleaned (echo cancellation, noise suppression, gain control) as
``[audio]`` says; the switches can change during a call (:meth:`DeviceFactory.set_processing`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..config import AudioSettings

__all__ = ["MediaOptions", "DeviceFactory", "MediaOptionError", "record_path"]

log = logging.getLogger(__name__)


class MediaOptionError(ValueError):
    """A --play/--record/--audio choice that cannot work; the message names the flag."""


@dataclass(frozen=True)
class MediaOptions:
    backend: str = "null"      # pyaudio | null
    play: str | None = None    # loop this file into each call
    record: str | None = None  # record each call ({n}: the call's number)
    echo: bool = False         # send the received audio back
    tones: bool = True         # ring and ringback on the speaker ([audio] tones too)


def record_path(template: str, n: int) -> str:
    """``{n}`` → the call's 1-based index; else ``-2``, ``-3`` … before the extension."""
    if "{n}" in template:
        return template.replace("{n}", str(n))
    if n == 1:
        return template
    path = Path(template)
    return str(path.with_name(f"{path.stem}-{n}{path.suffix}"))


class _Recorder:
    """A WAV sink that, when the disk says no, stops recording and says so once."""

    def __init__(self, path: str, on_error: Callable[[str, str], None]) -> None:
        from ..media.devices import WavSink

        self.path = path
        self.sink = WavSink(path)
        self.on_error = on_error
        self.failed: str | None = None

    @property
    def level_dbfs(self) -> float:
        return self.sink.level_dbfs

    def write(self, pcm: bytes, rate: int) -> None:
        if self.failed is not None:
            return
        try:
            self.sink.write(pcm, rate)
        except OSError as exc:
            self.failed = exc.strerror or str(exc)
            try:
                self.sink.close()
            except OSError:
                pass
            self.on_error(self.path, self.failed)

    def close(self) -> None:
        if self.failed is None:
            try:
                self.sink.close()
            except OSError as exc:
                self.failed = exc.strerror or str(exc)
                self.on_error(self.path, self.failed)


class DeviceFactory:
    """Builds each call's (source, sink) from the options."""

    def __init__(self, options: MediaOptions, audio: "AudioSettings | None" = None, *,
                 notice: Callable[[str], None] = lambda text: None) -> None:
        self.options = options
        self.audio = audio
        self.backend = options.backend
        self.notice = notice
        self.recording_errors: list[str] = []
        from ..media.processing import OFF, Processing

        self.processing = OFF if audio is None else Processing(
            audio.echo_cancellation, audio.noise_suppression, audio.auto_gain_control)
        self._thread_notice: Callable[[str], None] | None = None

    def check(self) -> None:
        """Probe every choice now; raises MediaOptionError naming the flag."""
        o = self.options
        if o.play:
            self._check_play(o.play)
        if o.record:
            self._check_record(record_path(o.record, 1))
        if self.backend == "pyaudio" and not (o.echo or (o.play and o.record)):
            # start PortAudio now, not in the middle of a call's set-up
            from ..media import devices as dev

            try:
                if not any(d.max_input_channels or d.max_output_channels
                           for d in dev.list_devices()):
                    raise dev.AudioUnavailable("no sound devices found")
            except dev.AudioUnavailable as exc:
                self.notice(f"audio: {exc}; using silence")
                self.backend = "null"
                return
            self._check_device_names()

    def _check_device_names(self) -> None:
        """Each device named in [audio] exists (MediaOptionError naming the key)."""
        from ..media import devices as dev

        audio = self.audio
        if audio is None:
            return
        for key, want_input in (("input_device", True), ("output_device", False),
                                ("ring_device", False)):
            name = getattr(audio, key)
            if name is None or name == "":
                continue
            try:
                dev.find_device(name, want_input)
            except dev.AudioUnavailable as exc:
                raise MediaOptionError(f"[audio] {key}: {exc}") from None

    @staticmethod
    def _check_play(path: str, what: str = "--play") -> float:
        """Decode ``path`` once; its length in seconds (MediaOptionError naming ``what``)."""
        from ..media.devices import WavSource

        if not os.path.exists(path):
            raise MediaOptionError(f"{what}: no such file: {path}")
        if not os.path.isfile(path):
            raise MediaOptionError(f"{what}: not a file: {path}")
        try:
            source = WavSource(path)
            source.prepare(8000)  # decodes it: a file that is not audio fails here
        except Exception as exc:  # PyAV's InvalidDataError, PermissionError …
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise MediaOptionError(f"{what}: cannot read {path} as audio: {reason}") from None
        samples = len(source._cache[8000])
        if not samples:
            raise MediaOptionError(f"{what}: {path} holds no audio")
        return samples / 8000

    @staticmethod
    def _check_record(path: str) -> None:
        target = Path(path)
        if target.is_dir():
            raise MediaOptionError(f"--record: {path} is a directory; give a file name "
                                   f"such as {target / 'call-{n}.wav'}")
        parent = target.parent
        if not parent.is_dir():
            raise MediaOptionError(f"--record: no such directory: {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise MediaOptionError(f"--record: cannot create files in {parent} "
                                   f"(permission denied)")
        if target.exists() and not os.access(target, os.W_OK):
            raise MediaOptionError(f"--record: cannot overwrite {path} (permission denied)")

    def _recording_failed(self, path: str, reason: str) -> None:
        message = f"recording to {path} stopped: {reason}"
        self.recording_errors.append(message)
        log.info("%s", message)  # the notice is what the user sees, once
        self.notice(message)

    def _device_notice(self) -> Callable[[str], None]:
        """``notice`` for the audio threads: it runs on the event loop. One per phone, so
        a stream its calls share keeps it once and says a thing once."""
        if self._thread_notice is None:
            loop = asyncio.get_running_loop()

            def notice(text: str) -> None:
                try:
                    loop.call_soon_threadsafe(self.notice, text)
                except RuntimeError:  # the loop is closed: the phone is gone
                    pass
            self._thread_notice = notice
        return self._thread_notice

    def _pyaudio(self, mic: bool, speaker: bool) -> tuple[Any, Any]:
        """The shared microphone and/or speaker for one call (None for those not asked)."""
        from ..media import devices as dev

        audio = self.audio
        inp = audio.input_device if audio else None
        out = audio.output_device if audio else None
        notice = self._device_notice()
        if mic and speaker:
            return dev.open_pyaudio(inp, out, processing=self.processing, notice=notice)
        if mic:  # no speaker of ours (the far end goes to a file): no echo to cancel,
            # but noise suppression and gain control still apply
            source = dev.PyAudioSource(inp, notice=notice)
            source.microphone.configure(self.processing, notice)
            return source, None
        return None, dev.PyAudioSink(out, notice=notice)

    def set_processing(self, **switches: bool | None) -> Any:
        """Turn echo_cancellation, noise_suppression, auto_gain_control on or off (None:
        as they are), for the calls up now and the next ones; the new Processing."""
        self.processing = self.processing.with_(**switches)
        if self.backend == "pyaudio":
            from ..media import devices as dev

            dev.set_processing(self.processing, self._device_notice())
        return self.processing

    @property
    def tones(self) -> bool:
        """Ring and ringback play on a real speaker (not for silence or files)."""
        return (self.backend == "pyaudio" and self.options.tones
                and (self.audio is None or self.audio.tones))

    def play_tone(self, tone: Any) -> Any:
        """Play ``tone`` on the ring device (or the speaker) until the returned handle's
        ``close()``; None when there is no speaker to play it on."""
        if not self.tones:
            return None
        from ..media import devices as dev

        audio = self.audio
        device = None
        if audio is not None:
            device = audio.ring_device if audio.ring_device not in (None, "") else \
                audio.output_device
        try:
            return dev.open_speaker(device, tone, notice=self._device_notice())
        except dev.AudioUnavailable as exc:
            self.notice(f"audio: cannot play the ring tone: {exc}")
            return None

    def __call__(self, call: Any) -> tuple[Any, Any]:
        from ..media import devices as dev

        o = self.options
        source: Any = None
        sink: Any = None
        if o.echo:
            bridge = dev.EchoBridge()
            source, sink = bridge.source, bridge.sink
        if o.play:
            source = dev.WavSource(o.play, loop=True)
        if self.backend == "pyaudio" and (source is None or sink is None):
            try:
                mic, speaker = self._pyaudio(source is None, sink is None)
                source = source or mic
                sink = sink or speaker
            except dev.AudioUnavailable as exc:
                self.notice(f"audio: {exc}; using silence")
                self.backend = "null"
        source = source or dev.NullSource()
        sink = sink or dev.NullSink()
        if o.record:
            sink = dev.TeeSink(sink, _Recorder(record_path(o.record, call.index),
                                               self._recording_failed))
        return source, sink
