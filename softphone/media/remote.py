"""Where our RTP and RTCP go: the addresses signalling gave, until the far end's packets
show where it really is (symmetric RTP: behind a NAT the signalled address is often
unreachable, the source of its packets is not).

One `Remote` is shared by a session's sender, receiver and RTCP reporter: the receiver
and reporter latch it, everyone sends to it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

Address = tuple[str, int]


class Remote:
    __slots__ = ("rtp", "rtcp", "mux", "signalled", "rtp_latched", "rtcp_latched")

    def __init__(self) -> None:
        self.rtp: Address | None = None
        self.rtcp: Address | None = None
        self.mux = False
        self.signalled: tuple = (None, None, False)  # (rtp, rtcp, mux) as signalling said
        self.rtp_latched = False
        self.rtcp_latched = False

    def set(self, rtp: Address, rtcp: Address | None, mux: bool) -> None:
        """Take the signalled addresses (RTCP on rtp+1 unless given or multiplexed) and
        latch afresh to the next packets."""
        self.signalled = (rtp, rtcp, mux)
        self.rtp = (rtp[0], int(rtp[1]))
        self.mux = mux
        if mux:
            self.rtcp = self.rtp
        elif rtcp is not None:
            self.rtcp = (rtcp[0], int(rtcp[1]))
        else:
            self.rtcp = (rtp[0], int(rtp[1]) + 1)
        self.unlatch()

    def unlatch(self) -> None:
        """Follow the source of the next RTP and RTCP again (a new source, a new offer)."""
        self.rtp_latched = False
        self.rtcp_latched = False

    def latch_rtp(self, addr) -> None:
        self.rtp_latched = True
        if addr[:2] != self.rtp:
            log.debug("RTP latched to %s (was %s)", addr, self.rtp)
        self.rtp = (addr[0], addr[1])
        if self.mux:
            self.rtcp = self.rtp

    def latch_rtcp(self, addr) -> None:
        self.rtcp_latched = True
        self.rtcp = (addr[0], addr[1])
