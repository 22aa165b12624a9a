"""The PortAudio streams the calls share: one speaker and one microphone per device.

Every call, the ring tone and the ringback are voices of one output stream: its callback
mixes them, so what it hands PortAudio is exactly what the loudspeaker plays — the echo
canceller's reference, taken there on the device's clock. Every call's microphone is a
listener of one input stream: its callback cleans the capture (echo cancellation, noise
suppression, gain control, `..processing`) once, then hands it to each.

A stream opens with its first client and closes with its last. A watchdog notices a
stream that PortAudio stopped (the device is gone: a USB headset pulled out) or that
stalls, reopens it on the default device and says so through the clients' notice
callbacks (called from the watchdog's thread); the calls go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from .base import AudioUnavailable, Metered, PcmFifo, StreamResampler
from .pyaudio import close_stream, device_name, find_device, open_stream, terminate_portaudio

__all__ = ["PyAudioSource", "PyAudioSink", "ToneVoice", "open_pyaudio", "open_speaker",
           "set_processing", "close_all", "reset_pyaudio", "DEVICE_RATE"]

log = logging.getLogger(__name__)

DEVICE_RATE = 48000
BLOCK_MS = 20          # PortAudio buffer: one callback per 20 ms
STALL_S = 3.0          # no callback for this long (after the first one): the device hangs
WATCH_S = 0.2          # how often the watchdog looks
REOPEN_TRIES = 10      # then it gives up, with a notice; the calls go on without the device
REOPEN_PAUSE_S = 1.0
PA_CONTINUE = 0        # pyaudio.paContinue, without importing pyaudio in the callbacks

Notice = Callable[[str], None]


class _SharedStream:
    """One direction on one device. Subclasses say what the callback does."""

    want_input = False

    def __init__(self, key: Any, device: str | int | None, rate: int) -> None:
        self.key = key
        self.device = device        # as configured
        self.index: int | None = None  # what is open (None: the default device)
        self.rate = rate
        self.clients: list[Any] = []
        self.notices: list[Notice] = []
        self.fallbacks = 0          # times it was reopened after the device was lost
        self.dead = False           # lost, and nothing else opened: new clients start afresh
        self._stream: Any = None
        self._first_callback = 0.0
        self._last_callback = 0.0
        self._stop = threading.Event()
        self._swap = threading.Lock()  # the watchdog's reopen against close()
        self._watchdog: threading.Thread | None = None

    @property
    def kind(self) -> str:
        return "input" if self.want_input else "output"

    def open(self, notice: Notice | None) -> None:
        """Open on the configured device, else (it cannot open) on the default one."""
        try:
            self.index = find_device(self.device, self.want_input)
            self._stream = self._open(self.index)
        except AudioUnavailable as exc:
            if self.device in (None, ""):
                raise
            default = find_device(None, self.want_input)
            self._stream = self._open(default)
            self.index = default
            if notice is not None:
                notice(f"audio: {exc}; using the default {self.kind} device")
        self._watchdog = threading.Thread(target=self._watch, name=f"audio-{self.kind}-watch",
                                          daemon=True)
        self._watchdog.start()

    def _open(self, index: int | None) -> Any:
        frames = self.rate * BLOCK_MS // 1000
        self._first_callback = self._last_callback = 0.0
        try:
            return open_stream(index, self.want_input, self.rate, frames, self._callback)
        except (OSError, ValueError) as exc:
            raise AudioUnavailable(f"cannot open audio {self.kind} device "
                                   f"{device_name(index, self.want_input)} at {self.rate} Hz: "
                                   f"{exc}") from exc

    def _tick(self) -> None:
        now = time.monotonic()
        if not self._first_callback:
            self._first_callback = now
        self._last_callback = now

    def _callback(self, in_data, frame_count, time_info, status):  # PortAudio's thread
        raise NotImplementedError

    # ------------------------------------------------------------------ the watchdog
    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            stream = self._stream
            if stream is None:
                continue
            try:
                active = stream.is_active()
            except (OSError, ValueError):
                active = False
            last = self._last_callback
            stalled = bool(last) and time.monotonic() - last > STALL_S
            if not active or stalled:
                self._recover("it stopped" if not active else
                              f"no audio for {STALL_S:g} s")
                if self._stream is None:
                    self.dead = True
                    return

    def _recover(self, why: str) -> None:
        """Reopen on the default device (bounded tries); the clients' audio keeps
        queueing in their bounded FIFOs meanwhile."""
        lost = device_name(self.index, self.want_input)
        with self._swap:
            old, self._stream = self._stream, None
        if old is not None:
            close_stream(old)
        log.warning("audio %s device %s: %s; reopening on the default device", self.kind,
                    lost, why)
        for attempt in range(REOPEN_TRIES):
            if self._stop.is_set():
                return
            try:
                index = find_device(None, self.want_input)
                stream = self._open(index)
            except AudioUnavailable as exc:
                log.info("reopening the %s device failed (%d): %s", self.kind, attempt + 1, exc)
                self._stop.wait(REOPEN_PAUSE_S)
                continue
            with self._swap:
                closed = self._stop.is_set()  # the last client left while we reopened
                if not closed:
                    self._stream = stream
            if closed:
                close_stream(stream)
                return
            self.index = index
            self.fallbacks += 1
            self._say(f"audio: the {self.kind} device {lost} went away ({why}); now on "
                      f"{device_name(index, self.want_input)}")
            return
        self._say(f"audio: the {self.kind} device {lost} went away ({why}) and no other "
                  f"opened; the call goes on without it")

    def _say(self, text: str) -> None:
        for notice in list(self.notices):
            try:
                notice(text)
            except Exception:  # a face's bug must not stop the audio
                log.exception("audio notice failed")

    # ------------------------------------------------------------------ clients
    def attach(self, client: Any, notice: Notice | None) -> None:
        self.clients = [*self.clients, client]  # copy on write: the callback reads it bare
        if notice is not None and notice not in self.notices:
            self.notices.append(notice)

    def detach(self, client: Any) -> bool:
        """Remove ``client``; True when it was the last (the stream is closed)."""
        self.clients = [c for c in self.clients if c is not client]
        if self.clients:
            return False
        self.close()
        return True

    def close(self) -> None:
        with self._swap:
            self._stop.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            close_stream(stream)

    @property
    def stream(self) -> Any:
        return self._stream


class _Reference:
    """What the speaker played, handed to the microphone's canceller block by block.

    Both callbacks run every 20 ms on the same clock, in either order: the FIFO between
    them holds about one block. When it has grown (the speaker ran while the microphone
    did not), the oldest audio goes, so the reference never lags the echo by more than
    the device latencies that AEC3's delay estimator follows."""

    def __init__(self, rate: int) -> None:
        self.fifo = PcmFifo(rate * 2 // 2)  # 500 ms
        self.skipped = 0

    def take(self, nbytes: int) -> bytes:
        level = len(self.fifo)
        if level > 3 * nbytes:
            self.fifo.get(level - nbytes)
            self.skipped += 1
        return self.fifo.get(nbytes)


class _Speaker(_SharedStream):
    want_input = False

    def __init__(self, key: Any, device: str | int | None, rate: int) -> None:
        super().__init__(key, device, rate)
        self.references: list[_Reference] = []
        self._silence = b""

    def reference(self) -> _Reference:
        ref = _Reference(self.rate)
        self.references = [*self.references, ref]
        return ref

    def drop_reference(self, ref: _Reference) -> None:
        self.references = [r for r in self.references if r is not ref]

    def _callback(self, in_data, frame_count, time_info, status):
        self._tick()
        voices = self.clients
        if not voices:
            if len(self._silence) != frame_count * 2:
                self._silence = bytes(frame_count * 2)
            out = self._silence
        elif len(voices) == 1:
            out = voices[0].pull(frame_count)
        else:
            total = np.zeros(frame_count, dtype=np.int32)
            for voice in voices:
                total += np.frombuffer(voice.pull(frame_count), dtype="<i2")
            out = np.clip(total, -32768, 32767).astype("<i2").tobytes()
        for ref in self.references:
            ref.fifo.put(out)
        return out, PA_CONTINUE


class _Microphone(_SharedStream):
    want_input = True

    def __init__(self, key: Any, device: str | int | None, rate: int) -> None:
        super().__init__(key, device, rate)
        self.processor: Any = None     # processing.VoiceProcessor
        self.speaker: _Speaker | None = None
        self.reference: _Reference | None = None

    def _callback(self, in_data, frame_count, time_info, status):
        self._tick()
        data = in_data
        processor = self.processor
        if processor is not None:
            ref = self.reference
            far = ref.take(len(data)) if ref is not None else None
            try:
                data = processor.process(data, far)
            except Exception:  # never lose the microphone to the processing
                log.exception("audio processing failed; the microphone goes on unprocessed")
                self.processor = None
        for listener in self.clients:
            listener.fifo.put(data)
        return None, PA_CONTINUE

    def process_with(self, speaker: _Speaker, settings: Any, notice: Notice | None) -> None:
        """Clean the capture with ``settings``, the echo reference from ``speaker``."""
        if speaker is not self.speaker:
            if self.speaker is not None and self.reference is not None:
                self.speaker.drop_reference(self.reference)
            self.speaker, self.reference = speaker, None
            if self.processor is not None and speaker.rate == self.rate:
                self.reference = speaker.reference()
        self.configure(settings, notice)

    def configure(self, settings: Any, notice: Notice | None) -> None:
        from ..processing import ProcessingUnavailable, VoiceProcessor

        if self.processor is not None:
            self.processor.configure(settings)
        elif settings is not None and settings.enabled:
            try:
                processor = VoiceProcessor(self.rate, settings, self._delay_hint_ms())
            except ProcessingUnavailable as exc:
                if notice is not None:
                    notice(f"audio: {exc}; the microphone goes unprocessed")
                return
            speaker = self.speaker
            if speaker is not None and speaker.rate == self.rate and self.reference is None:
                self.reference = speaker.reference()
            self.processor = processor

    def _delay_hint_ms(self) -> int:
        """PortAudio's own figure for playout → capture: output plus input latency."""
        try:
            out = self.speaker.stream.get_output_latency() if self.speaker else 0.0
            return int(1000 * (out + self.stream.get_input_latency()))
        except (AttributeError, OSError):
            return 0

    def close(self) -> None:
        super().close()
        if self.speaker is not None and self.reference is not None:
            self.speaker.drop_reference(self.reference)
        self.reference = self.processor = None


# ---------------------------------------------------------------------- the registry
_registry: dict[Any, _SharedStream] = {}
_registry_lock = threading.Lock()


def _acquire(cls: type, device: str | int | None, rate: int, client: Any,
             notice: Notice | None) -> Any:
    key = (cls.want_input, device if device != "" else None)
    with _registry_lock:
        shared = _registry.get(key)
        if shared is None or shared.dead:
            shared = cls(key, key[1], rate)
            shared.open(notice)
            _registry[key] = shared
        shared.attach(client, notice)
        return shared


def _release(shared: _SharedStream, client: Any) -> None:
    with _registry_lock:
        if shared.detach(client) and _registry.get(shared.key) is shared:
            del _registry[shared.key]


def close_all() -> None:
    """Close every shared stream (PortAudio is about to be terminated)."""
    with _registry_lock:
        streams = list(_registry.values())
        _registry.clear()
    for shared in streams:
        shared.close()


def reset_pyaudio() -> None:
    """Close every stream and terminate PortAudio, so the next use rescans the devices
    (a sound server started, another environment)."""
    close_all()
    terminate_portaudio()


def set_processing(settings: Any, notice: Notice | None = None) -> None:
    """New switches for the microphones open now (the next ones get them from their
    caller)."""
    with _registry_lock:
        mics = [s for s in _registry.values() if isinstance(s, _Microphone)]
    for mic in mics:
        mic.configure(settings, notice)


# ---------------------------------------------------------------------- the clients
class PyAudioSource(Metered):
    """A call's microphone; ``read`` never blocks (silence on underrun)."""

    def __init__(self, device: str | int | None = None, rate: int = DEVICE_RATE,
                 max_ms: int = 120, *, notice: Notice | None = None) -> None:
        self.fifo = PcmFifo(rate * 2 * max_ms // 1000)  # before the callback can fill it
        self.microphone: _Microphone = _acquire(_Microphone, device, rate, self, notice)
        self.rate = self.microphone.rate
        self._conv: dict[int, StreamResampler] = {}
        self._pending: dict[int, bytearray] = {}
        self._closed = False

    def read(self, samples: int, rate: int) -> bytes:
        if rate == self.rate:
            out = self.fifo.get(samples * 2)
        else:
            conv = self._conv.get(rate)
            if conv is None:
                conv = self._conv[rate] = StreamResampler(self.rate, rate)
                self._pending[rate] = bytearray()
            pending = self._pending[rate]
            need_in = samples * self.rate // rate
            while len(pending) < samples * 2:
                pending += conv.process(self.fifo.get(need_in * 2))
                if len(pending) < samples * 2 and len(self.fifo) == 0:
                    break
            out = bytes(pending[:samples * 2]).ljust(samples * 2, b"\0")
            del pending[:samples * 2]
        self._last = out
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.microphone, self)


class PyAudioSink(Metered):
    """A call's loudspeaker: ``write`` queues (bounded), the shared stream mixes it in."""

    def __init__(self, device: str | int | None = None, rate: int = DEVICE_RATE,
                 max_ms: int = 160, *, notice: Notice | None = None) -> None:
        self.fifo = PcmFifo(rate * 2 * max_ms // 1000)
        self.speaker: _Speaker = _acquire(_Speaker, device, rate, self, notice)
        self.rate = self.speaker.rate
        self._conv: dict[int, StreamResampler] = {}
        self._closed = False

    def pull(self, frames: int) -> bytes:  # the speaker's thread
        return self.fifo.get(frames * 2)

    def write(self, pcm: bytes, rate: int) -> None:
        self._last = pcm
        if rate != self.rate:
            conv = self._conv.get(rate)
            if conv is None:
                conv = self._conv[rate] = StreamResampler(rate, self.rate)
            pcm = conv.process(pcm)
        self.fifo.put(pcm)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.speaker, self)


class ToneVoice:
    """A local tone (ring, ringback) played on a speaker until ``close``."""

    def __init__(self, source: Any, device: str | int | None = None,
                 rate: int = DEVICE_RATE, *, notice: Notice | None = None) -> None:
        self.source = source
        self.speaker: _Speaker = _acquire(_Speaker, device, rate, self, notice)
        self._closed = False

    def pull(self, frames: int) -> bytes:  # the speaker's thread
        return self.source.read(frames, self.speaker.rate)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self.speaker, self)


def open_pyaudio(input: str | int | None = None, output: str | int | None = None,
                 rate: int = DEVICE_RATE, *, processing: Any = None,
                 notice: Notice | None = None) -> tuple[PyAudioSource, PyAudioSink]:
    """A call's microphone and speaker; AudioUnavailable says why when that is impossible.
    ``processing`` (a `processing.Processing`) cleans the microphone, with this speaker's
    output as the echo reference."""
    source = PyAudioSource(input, rate, notice=notice)
    try:
        sink = PyAudioSink(output, rate, notice=notice)
    except AudioUnavailable:
        source.close()
        raise
    if processing is not None:
        source.microphone.process_with(sink.speaker, processing, notice)
    return source, sink


def open_speaker(device: str | int | None, source: Any, *,
                 notice: Notice | None = None) -> ToneVoice:
    """Play ``source`` (a tone) on ``device`` until the returned voice is closed."""
    return ToneVoice(source, device, notice=notice)
