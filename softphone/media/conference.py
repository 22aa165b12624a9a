"""A local conference: several RTP sessions mixed so each party hears every other one,
and us (as pjsua's conference bridge, on a small scale).

Each leg's audio path is wrapped, nothing else changes: what a party sends (its
session's sink) still plays to our speaker and recording, and is also converted to the
bridge's common rate (the highest of the legs' audio rates, which every other divides)
and queued for every other leg; what a party is sent (its session's source) is our
microphone plus the sum of the other legs at the common rate, converted to that leg's
rate. Muting a leg silences only our microphone on it. :meth:`ConferenceBridge.leave`
puts the leg's own source and sink back ("split"). Everything runs on the media ticker
(sends first, then playout), so the mix is one 20 ms tick behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable

import numpy as np

from .devices.base import Metered, PcmFifo, StreamResampler

if TYPE_CHECKING:
    from .rtp import RtpSession

__all__ = ["ConferenceBridge"]

_QUEUE_MS = 200  # at most this much of one party is queued for another (then the oldest goes)


class _Converter:
    """Rate conversion that follows the rate it is given (a leg's codec may change)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._resampler: StreamResampler | None = None

    def __call__(self, pcm: bytes, from_rate: int, to_rate: int) -> bytes:
        if from_rate == to_rate:
            return pcm
        if self._key != (from_rate, to_rate):
            self._key = (from_rate, to_rate)
            self._resampler = StreamResampler(from_rate, to_rate)
        return self._resampler.process(pcm)


class _Leg:
    def __init__(self, bridge: "ConferenceBridge", key: Hashable, rtp: "RtpSession") -> None:
        self.bridge = bridge
        self.key = key
        self.rtp = rtp
        self.own_source = rtp.source
        self.own_sink = rtp.sink
        self.own_muted = False
        self.inbox: dict[Hashable, PcmFifo] = {}  # what each other party said, common rate
        self.to_bridge = _Converter()
        self.from_bridge = _Converter()
        self.outgoing = PcmFifo(1 << 20)  # the mix converted to this leg's rate, not yet sent
        self.source = _LegSource(self)
        self.sink = _LegSink(self)

    def heard(self, pcm: bytes, rate: int) -> None:
        """The party of this leg said ``pcm``: queue it for every other leg."""
        bridge = self.bridge
        common = self.to_bridge(pcm, rate, bridge.rate)
        for other in bridge.legs.values():
            if other is not self:
                fifo = other.inbox.get(self.key)
                if fifo is None:
                    fifo = other.inbox[self.key] = PcmFifo(bridge.rate * 2 * _QUEUE_MS // 1000)
                fifo.put(common)

    def mix(self, samples: int, rate: int) -> bytes:
        """Our microphone plus every other party, ``samples`` at ``rate``."""
        own = self.own_source.read(samples, rate)
        bridge = self.bridge
        wanted = samples * bridge.rate // rate
        total = np.zeros(wanted, dtype=np.int32)
        for fifo in self.inbox.values():
            total += np.frombuffer(fifo.get(wanted * 2), dtype="<i2")
        mixed = np.clip(total, -32768, 32767).astype("<i2").tobytes()
        self.outgoing.put(self.from_bridge(mixed, bridge.rate, rate))
        others = np.frombuffer(self.outgoing.get(samples * 2), dtype="<i2").astype(np.int32)
        if not self.own_muted:
            others += np.frombuffer(own, dtype="<i2")
        return np.clip(others, -32768, 32767).astype("<i2").tobytes()


class _LegSource(Metered):
    def __init__(self, leg: _Leg) -> None:
        self.leg = leg

    def read(self, samples: int, rate: int) -> bytes:
        out = self.leg.mix(samples, rate)
        self._last = out
        return out


class _LegSink(Metered):
    discards = False  # the other legs need this party's audio decoded

    def __init__(self, leg: _Leg) -> None:
        self.leg = leg

    def write(self, pcm: bytes, rate: int) -> None:
        self._last = pcm
        own = self.leg.own_sink
        if own is not None and not getattr(own, "discards", False):
            own.write(pcm, rate)
        self.leg.heard(pcm, rate)


class ConferenceBridge:
    def __init__(self) -> None:
        self.legs: dict[Hashable, _Leg] = {}
        self.rate = 8000

    def __contains__(self, key: Hashable) -> bool:
        return key in self.legs

    def __len__(self) -> int:
        return len(self.legs)

    def join(self, key: Hashable, rtp: "RtpSession") -> None:
        """Put a started RTP session into the mix."""
        if key in self.legs:
            return
        leg = _Leg(self, key, rtp)
        self.legs[key] = leg
        self.rate = max(self.rate, int(rtp.audio_rate or 8000))
        for other in self.legs.values():  # a new common rate: queued audio is dropped
            other.inbox.clear()
        rtp.source = leg.source
        rtp.sink = leg.sink

    def leave(self, key: Hashable) -> None:
        """Give the leg its own source and sink back."""
        leg = self.legs.pop(key, None)
        if leg is None:
            return
        for other in self.legs.values():
            other.inbox.pop(key, None)
        if not getattr(leg.rtp, "_closed", False):
            leg.rtp.source = leg.own_source
            leg.rtp.sink = leg.own_sink

    def set_muted(self, key: Hashable, muted: bool) -> None:
        leg = self.legs.get(key)
        if leg is not None:
            leg.own_muted = muted

    def stats(self) -> dict[str, Any]:
        return {"legs": len(self.legs), "rate": self.rate}
