"""RFC 4733 telephone-events: payload packing, a paced sender and a de-duplicating receiver."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"
VOLUME = 10  # -10 dBm0
END_PACKETS = 3
GAP_MS = 60  # audio between two digits
PAUSE = ","  # in a digit string: a pause, as pjsua and linphone dial it
PAUSE_MS = 1000


def pack_event(digit: str, end: bool, duration: int, volume: int = VOLUME) -> bytes:
    return struct.pack("!BBH", EVENTS.index(digit.upper()),
                       (0x80 if end else 0) | (volume & 0x3F), min(duration, 0xFFFF))


def unpack_event(payload: bytes) -> tuple[str, bool, int] | None:
    """(digit, end, duration), or None for a short payload or a non-DTMF event."""
    if len(payload) < 4:
        return None
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(EVENTS):
        return None
    return EVENTS[event], bool(flags & 0x80), duration


@dataclass
class DtmfPacket:
    payload: bytes
    marker: bool
    timestamp: int


class DtmfSender:
    """Turns queued digits into one packet per ptime tick.

    Each event keeps the RTP timestamp of its first packet; the duration grows by one
    ptime per packet; the last packet goes out three times with the E bit. Between
    digits, `GAP_MS` of ordinary audio is sent.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[str, int]] = deque()
        self._digit: str | None = None
        self._start_ts = 0
        self._elapsed = 0      # in telephone-event clock ticks
        self._target = 0
        self._ends_left = 0
        self._gap_left_ms = 0

    def queue(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits 0-9 * # A-D; a ',' is PAUSE_MS of audio before the next one."""
        duration_ms = max(40, min(int(duration_ms), 5000))
        for d in digits:
            if d != PAUSE and d.upper() not in EVENTS:
                raise ValueError(f"not a DTMF digit: {d!r}")
        for d in digits:
            self._queue.append((d.upper(), PAUSE_MS if d == PAUSE else duration_ms))

    @property
    def busy(self) -> bool:
        """True while an event is being sent (audio must pause)."""
        return self._digit is not None

    @property
    def pending(self) -> bool:
        return self._digit is not None or bool(self._queue)

    def next_packet(self, stream_ts: int, ptime_ms: int, event_clock: int) -> DtmfPacket | None:
        """The event packet for this tick, or None to send audio this tick."""
        if self._digit is None:
            if self._gap_left_ms > 0:
                self._gap_left_ms -= ptime_ms
                return None
            if not self._queue:
                return None
            digit, duration_ms = self._queue.popleft()
            if digit == PAUSE:
                self._gap_left_ms = duration_ms - ptime_ms  # this tick is audio too
                return None
            self._digit = digit
            self._start_ts = stream_ts
            self._elapsed = 0
            self._target = min(0xFFFF, event_clock * duration_ms // 1000)
            self._ends_left = END_PACKETS
            first = True
        else:
            first = False
        step = event_clock * ptime_ms // 1000
        if self._elapsed < self._target:
            self._elapsed = min(self._target, self._elapsed + step)
        end = self._elapsed >= self._target and not first
        if end:
            self._ends_left -= 1
        pkt = DtmfPacket(pack_event(self._digit, end, self._elapsed), first, self._start_ts)
        if end and self._ends_left <= 0:
            self._digit = None
            self._gap_left_ms = GAP_MS
        return pkt


class DtmfReceiver:
    """Reports each event once: the first packet of a new timestamp carries the digit."""

    def __init__(self) -> None:
        self._last_ts: int | None = None

    def reset(self) -> None:
        self._last_ts = None

    def handle(self, timestamp: int, payload: bytes) -> str | None:
        ev = unpack_event(payload)
        if ev is None:
            return None
        if timestamp == self._last_ts:
            return None
        self._last_ts = timestamp
        return ev[0]
