"""RTP statistics: a session's counters, per-source reception statistics (RFC 3550
A.1, A.3, A.8) and the `RtpStats` snapshot made from both.

The sender, receiver and RTCP reporter each bump their own fields of one shared
`Counters`, so a snapshot is read from one place and no part reaches into another.
"""

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
    concealed: int = 0       # slots of audio concealed (lost, late or undecodable)
    fec_recovered: int = 0   # lost slots decoded from the next packet's in-band FEC
    late: int = 0            # packets that came after their audio was played
    expansions: int = 0      # splices that lengthened the audio (the delay grew)
    compressions: int = 0    # splices that shortened it (the delay shrank)
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


class Counters:
    """Every counter of one RTP session (plain slots: they are bumped per packet)."""

    __slots__ = ("sent", "bytes_sent", "octets_sent", "dtmf_sent",
                 "received", "bytes_received", "lost_prior", "malformed", "unknown_pt",
                 "dtmf_received", "rtcp_sent", "rtcp_received")

    def __init__(self) -> None:
        self.sent = 0            # RTP packets, audio and telephone-event
        self.bytes_sent = 0      # whole datagrams
        self.octets_sent = 0     # payload only (the SR's octet count)
        self.dtmf_sent = 0       # events, not packets
        self.received = 0        # valid, in-sequence packets of the negotiated types
        self.bytes_received = 0
        self.lost_prior = 0      # loss of earlier remote sources (SSRC or clock changes)
        self.malformed = 0       # RTP and RTCP that did not parse
        self.unknown_pt = 0      # RTP of a payload type not negotiated (comfort noise aside)
        self.dtmf_received = 0
        self.rtcp_sent = 0
        self.rtcp_received = 0

    def snapshot(self, source: ReceiveStats | None, playout, *, rtt_ms: float | None,
                 codec: str, remote: tuple[str, int] | None) -> RtpStats:
        """An `RtpStats` of these counters, the current source's loss and jitter, and the
        playout buffer's depth and concealment (`playout` may be None: not started)."""
        return RtpStats(
            sent=self.sent, received=self.received,
            lost=self.lost_prior + (source.lost if source else 0),
            jitter_ms=source.jitter_ms if source else 0.0, rtt_ms=rtt_ms,
            bytes_sent=self.bytes_sent, bytes_received=self.bytes_received,
            playout_ms=playout.depth_ms if playout else 0.0,
            concealed=playout.concealed_frames if playout else 0,
            fec_recovered=playout.fec_recovered if playout else 0,
            late=playout.late_dropped if playout else 0,
            expansions=playout.expansions if playout else 0,
            compressions=playout.compressions if playout else 0,
            malformed=self.malformed + self.unknown_pt,
            dtmf_sent=self.dtmf_sent, dtmf_received=self.dtmf_received,
            rtcp_sent=self.rtcp_sent, rtcp_received=self.rtcp_received,
            codec=codec, remote=f"{remote[0]}:{remote[1]}" if remote else "")


class ReceiveStats:
    """Sequence tracking, loss and interarrival jitter for one remote SSRC, and the last
    sender report it sent (for LSR/DLSR in our report block about it)."""

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
        self.last_sr = 0           # middle 32 bits of its last SR's NTP time; 0: none yet
        self.last_sr_arrival = 0.0  # loop time that SR arrived

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
