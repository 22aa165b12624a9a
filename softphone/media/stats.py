"""RTP reception statistics (RFC 3550 A.1, A.3, A.8) and the stats snapshot."""

from __future__ import annotations

from dataclasses import asdict, dataclass

_SEQ_MOD = 1 << 16
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100


@dataclass
class RtpStats:
    """One snapshot of a session's counters."""

    sent: int = 0
    received: int = 0
    lost: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    playout_ms: float = 0.0
    concealed: int = 0
    late: int = 0
    malformed: int = 0
    dtmf_sent: int = 0
    dtmf_received: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    codec: str = ""
    remote: str = ""

    def as_event(self) -> dict[str, int | float]:
        """The `rtp` object of the `ended` event (DESIGN §3)."""
        return {"sent": self.sent, "received": self.received, "lost": self.lost,
                "jitter_ms": round(self.jitter_ms, 2)}

    def as_dict(self) -> dict:
        return asdict(self)


class ReceiveStats:
    """Sequence tracking, loss and interarrival jitter for one remote SSRC."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq = _SEQ_MOD + 1
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0  # in RTP timestamp units
        self._transit: float | None = None

    def update_seq(self, seq: int) -> bool:
        """RFC 3550 A.1 without probation; False for a packet to ignore."""
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
            self.received = 1
            return True
        udelta = (seq - self.max_seq) % _SEQ_MOD
        if udelta < _MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += _SEQ_MOD
            self.max_seq = seq
        elif udelta <= _SEQ_MOD - _MAX_MISORDER:
            if seq == self.bad_seq:  # two in a row: the source restarted
                self.base_seq = self.max_seq = seq
                self.cycles = 0
                self.received = self.expected_prior = self.received_prior = 0
            else:
                self.bad_seq = (seq + 1) % _SEQ_MOD
                return False
        # else: duplicate or reordered packet
        self.received += 1
        return True

    def update_jitter(self, timestamp: int, arrival: float) -> None:
        """RFC 3550 A.8; `arrival` in seconds."""
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = transit - self._transit
            # timestamps wrap at 2^32: fold the difference
            if d > 1 << 31:
                d -= 1 << 32
            elif d < -(1 << 31):
                d += 1 << 32
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.base_seq is None:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def report_interval(self) -> tuple[int, int]:
        """(fraction_lost 0..255, cumulative lost) for a report block; advances priors."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        cumulative = max(-(1 << 23), min(expected - self.received, (1 << 23) - 1))
        return fraction, cumulative
