"""Shared helpers for the media tests: recording sink, tone analysis, waiting, UDP relay."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Callable

import numpy as np


class RecordingSink:
    """Keeps everything written to it (thread-safe: PyAudio tests write from threads)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.rate = 0
        self._lock = threading.Lock()

    def write(self, pcm: bytes, rate: int) -> None:
        with self._lock:
            self.chunks.append(pcm)
            self.rate = rate

    def samples(self) -> np.ndarray:
        with self._lock:
            return np.frombuffer(b"".join(self.chunks), dtype="<i2")

    def seconds(self) -> float:
        with self._lock:
            n = sum(len(c) for c in self.chunks) // 2
        return n / self.rate if self.rate else 0.0


def dominant_hz(x: np.ndarray, rate: int) -> float:
    x = x.astype(np.float64)
    if len(x) < 16 or not np.any(x):
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:]) + 1)
    if 1 <= k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-20)
        den = a - 2 * b + c
        if den:
            k = k + 0.5 * (a - c) / den
    return k * rate / len(x)


def tone(rate: int, seconds: float, hz: float = 440.0, amp: float = 8000.0) -> np.ndarray:
    """A sine of `hz` at `rate`, as float samples."""
    return amp * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def max_step(x: np.ndarray) -> float:
    """The largest sample-to-sample step: a click shows as one far above the signal's own."""
    return float(np.max(np.abs(np.diff(x))))


class L16Decoder:
    """Payload = 16-bit PCM as it is: what the buffer does to the audio is all we hear."""

    name = "L16"

    def __init__(self, rate: int) -> None:
        self.audio_rate = rate

    def decode(self, payload: bytes) -> bytes:
        return payload


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12)) if len(x) else -240.0


def longest_gap_ms(x: np.ndarray, rate: int, window_ms: int = 5,
                   threshold_dbfs: float = -40.0) -> float:
    """Longest run of near-silent windows inside the audio (after it first starts)."""
    w = rate * window_ms // 1000
    n = len(x) // w
    if n == 0:
        return 0.0
    blocks = x[: n * w].astype(np.float64).reshape(n, w) / 32768.0
    loud = 20 * np.log10(np.sqrt((blocks ** 2).mean(axis=1)) + 1e-12) > threshold_dbfs
    idx = np.nonzero(loud)[0]
    if len(idx) == 0:
        return float("inf")
    loud = loud[idx[0]: idx[-1] + 1]
    longest = run = 0
    for v in loud:
        run = 0 if v else run + 1
        longest = max(longest, run)
    return longest * window_ms


async def wait_for(cond: Callable[[], bool], timeout: float, what: str = "condition",
                   poll: float = 0.01) -> None:
    """Poll `cond` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(poll)


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, relay: "LossyRelay", side: str) -> None:
        self.relay, self.side = relay, side

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay._got(self.side, data, addr)


class LossyRelay:
    """In-process UDP relay: A talks to `port_a`, B to `port_b` (each learns its peer
    from the first datagram). Each datagram is dropped with `loss`, and delayed by a
    uniform 0..`jitter_ms` (which also reorders), from a seeded RNG."""

    def __init__(self, loss: float = 0.0, jitter_ms: float = 0.0, seed: int = 1,
                 b_addr: tuple[str, int] | None = None) -> None:
        self.loss, self.jitter_ms = loss, jitter_ms
        self.rng = random.Random(seed)
        self.peer = {"a": None, "b": b_addr}
        self.forwarded = 0
        self.dropped = 0

    async def start(self) -> "LossyRelay":
        loop = asyncio.get_running_loop()
        self.ta, pa = await loop.create_datagram_endpoint(lambda: _RelaySide(self, "a"),
                                                          local_addr=("127.0.0.1", 0))
        self.tb, pb = await loop.create_datagram_endpoint(lambda: _RelaySide(self, "b"),
                                                          local_addr=("127.0.0.1", 0))
        self.port_a = self.ta.get_extra_info("sockname")[1]
        self.port_b = self.tb.get_extra_info("sockname")[1]
        self.loop = loop
        return self

    def _got(self, side: str, data: bytes, addr) -> None:
        self.peer[side] = addr
        other = "b" if side == "a" else "a"
        dest = self.peer[other]
        if dest is None:
            return
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        out = self.tb if side == "a" else self.ta
        delay = self.rng.uniform(0, self.jitter_ms) / 1000.0
        self.forwarded += 1
        if delay <= 0:
            out.sendto(data, dest)
        else:
            self.loop.call_later(delay, lambda: out.is_closing() or out.sendto(data, dest))

    def close(self) -> None:
        self.ta.close()
        self.tb.close()


class RawUdp(asyncio.DatagramProtocol):
    """A bare UDP endpoint that records what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((data, addr))

    @classmethod
    async def open(cls) -> "RawUdp":
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        proto.port = proto.transport.get_extra_info("sockname")[1]
        return proto

    def close(self) -> None:
        self.transport.close()
