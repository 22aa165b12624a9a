"""Echo cancellation, noise suppression and gain control of the microphone: WebRTC's
audio processing module (AEC3, NS, AGC2) through the `pywebrtc-audio` binding.

The capture is processed in 10 ms frames together with the far-end reference: what the
speaker actually played, taken where PortAudio pulls the playback (after every mix:
calls, conference, tones), on the devices' own clock. The delay from playout to capture
is not assumed: AEC3's delay estimator finds it; we only give it PortAudio's reported
output + input latency as a starting hint.

The library is imported on first use (headless commands never pay for it); when it is
missing, `ProcessingUnavailable` says so and the caller goes on unprocessed with a notice.
Importing this module costs nothing: numpy and the library load when audio is processed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Processing", "ProcessingUnavailable", "VoiceProcessor", "erle_db", "load_library",
           "OFF"]


@dataclass(frozen=True)
class Processing:
    """Which of the three run on the microphone."""

    echo_cancellation: bool = True
    noise_suppression: bool = True
    auto_gain_control: bool = True

    @property
    def enabled(self) -> bool:
        return self.echo_cancellation or self.noise_suppression or self.auto_gain_control

    def with_(self, **changes: bool | None) -> "Processing":
        """A copy with the given switches changed (None: left as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, bool]:
        return {"echo_cancellation": self.echo_cancellation,
                "noise_suppression": self.noise_suppression,
                "auto_gain_control": self.auto_gain_control}


OFF = Processing(False, False, False)


class ProcessingUnavailable(RuntimeError):
    """The processing library cannot be loaded (the reason says why)."""


_library: Any = None


def load_library() -> Any:
    """The `pywebrtc_audio` module, imported once; ProcessingUnavailable when missing."""
    global _library
    if _library is None:
        try:
            import pywebrtc_audio
        except ImportError as exc:
            raise ProcessingUnavailable(
                f"echo cancellation, noise suppression and gain control need the "
                f"pywebrtc-audio package ({exc})") from None
        _library = pywebrtc_audio
    return _library


class VoiceProcessor:
    """The microphone's processing at one rate. ``process`` runs on the capture thread;
    ``configure`` and ``delay_hint_ms`` may come from another thread (a lock keeps them
    apart). Switching a feature rebuilds the processor: AEC3 learns the room again in a
    second or two."""

    def __init__(self, rate: int, settings: Processing, delay_hint_ms: int = 0) -> None:
        self._lib = load_library()
        self.rate = rate
        self.settings = settings
        self._delay_hint_ms = max(0, int(delay_hint_ms))
        self._lock = threading.Lock()
        self._ap = self._make(settings)

    def _make(self, settings: Processing) -> Any:
        if not settings.enabled:
            return None
        return self._lib.AudioProcessor(
            sample_rate=self.rate, echo_cancellation=settings.echo_cancellation,
            noise_suppression=settings.noise_suppression,
            auto_gain_control=settings.auto_gain_control,
            stream_delay_ms=self._delay_hint_ms)

    def configure(self, settings: Processing) -> None:
        if settings == self.settings:
            return
        ap = self._make(settings)
        with self._lock:
            self.settings, self._ap = settings, ap

    @property
    def delay_hint_ms(self) -> int:
        return self._delay_hint_ms

    @delay_hint_ms.setter
    def delay_hint_ms(self, value: int) -> None:
        self._delay_hint_ms = max(0, int(value))
        with self._lock:
            if self._ap is not None and self.settings.echo_cancellation:
                self._ap.stream_delay_ms = self._delay_hint_ms

    def process(self, near: bytes, far: bytes | None) -> bytes:
        """``near`` (the capture) cleaned with ``far`` (what the speaker played over the
        same stretch, same length; None or short: silence) as the echo reference."""
        with self._lock:
            ap, aec = self._ap, self.settings.echo_cancellation
            if ap is None or not near:
                return near
            import numpy as np

            x = np.frombuffer(near, dtype="<i2")
            if aec:
                if far is None or len(far) != len(near):
                    f = np.zeros(len(x), dtype=np.int16)
                    if far:
                        g = np.frombuffer(far[: len(near) // 2 * 2], dtype="<i2")
                        f[: len(g)] = g
                else:
                    f = np.frombuffer(far, dtype="<i2")
                return ap.process(x, f).astype("<i2").tobytes()
            return ap.process(x).astype("<i2").tobytes()


def erle_db(near: np.ndarray, far: np.ndarray, out: np.ndarray, rate: int = 16000,
            far_floor_db: float = -40.0) -> float:
    """Echo return loss enhancement, dB: how much quieter the canceller's output ``out``
    is than the microphone ``near``, over the windows where the far end ``far`` was
    playing (its energy, held for 0.3 s to cover the echo's delay and tail, within
    ``far_floor_db`` of its loudest window). Score far-end single talk only: near-end
    speech in ``near`` is not echo."""
    import numpy as np

    window = max(1, rate // 100)  # 10 ms
    n = min(len(near), len(far), len(out)) // window * window
    if n == 0:
        return 0.0

    def energy(x: np.ndarray) -> np.ndarray:
        y = x[:n].astype(np.float64).reshape(-1, window)
        return (y * y).sum(axis=1)

    e_near, e_far, e_out = energy(near), energy(far), energy(out)
    hold = 30  # windows: 0.3 s
    held = np.array([e_far[max(0, i - hold): i + 1].max() for i in range(len(e_far))])
    active = held > held.max() * 10 ** (far_floor_db / 10) if held.max() > 0 else held > 0
    if not active.any():
        return 0.0
    return float(10 * np.log10(e_near[active].sum() / max(e_out[active].sum(), 1e-9)))
