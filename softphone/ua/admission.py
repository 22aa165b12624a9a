"""What the stack lets in: who may make us hold a transaction, a timer and a response.

Requests inside a dialog, and everything from a trusted hop (an account's registrar or
outbound proxy, which relays everyone's requests), pass; a stranger's new out-of-dialog
requests meet a token bucket per source IP (:mod:`~softphone.ua.ratelimit`); nothing
passes beyond a cap on live transactions. Which requests come from a stranger at all is
the user agent's policy (``[sip] stranger_policy``); this tells it which hops are ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.message import Request
from ..transport import Peer
from .ratelimit import ALLOW, DROP, RateLimiter

if TYPE_CHECKING:
    from ..config import NetworkSettings
    from ..transport import TransportLayer
    from .transactions import Transactions

__all__ = ["Admission", "MAX_TRANSACTIONS"]

MAX_TRANSACTIONS = 4096  # live client + server transactions; new requests beyond are dropped


class Admission:
    """Trusted hops, the per-source rate limiter and the transaction cap of one stack;
    ``stats`` counts what was kept out."""

    def __init__(self, network: "NetworkSettings", transport: "TransportLayer",
                 transactions: "Transactions", stats: dict[str, int]) -> None:
        self.rate_limiter = RateLimiter(rate=network.rate_limit, burst=network.rate_burst)
        self.transport = transport
        self.transactions = transactions
        self.stats = stats
        self._trusted_hops: set[tuple[str, int]] = set()
        self._trusted_sources: set[tuple[str, str, int]] = set()  # (proto, host, port)

    def trust(self, peer: Peer) -> None:
        """Mark an account's registrar or outbound proxy: it relays everyone's requests,
        so it is not one source to rate-limit (a handful of addresses at most)."""
        self._trusted_hops.add((peer.host, peer.port))
        self._trusted_sources.add((peer.proto, peer.host, peer.port))

    def trusted(self, peer: Peer) -> bool:
        return (peer.host, peer.port) in self._trusted_hops

    def from_trusted_hop(self, peer: Peer) -> bool:
        """``peer`` is a registrar or proxy of ours: by address and port over UDP; over
        TCP/TLS only on the connection we opened to it."""
        if (peer.proto, peer.host, peer.port) not in self._trusted_sources:
            return False
        return peer.proto == "udp" or self.transport.opened_by_us(peer)

    def check(self, request: Request, peer: Peer, now: float) -> str:
        """``ALLOW``, ``DROP``, or ``REFUSE`` (answer 503 with Retry-After
        :attr:`retry_after`, statelessly): a token bucket per source IP for new
        out-of-dialog requests, and a cap on live transactions for everything."""
        if len(self.transactions) >= MAX_TRANSACTIONS:
            self.stats["overload_dropped"] += 1
            return DROP
        if request.to.tag or self.trusted(peer):
            return ALLOW
        if request.method == "CANCEL" and \
                self.transactions.table.find_invite_for_cancel(request):
            return ALLOW
        verdict = self.rate_limiter.check(peer.host, now)
        if verdict != ALLOW:
            self.stats["rate_limited"] += 1
        return verdict

    @property
    def retry_after(self) -> int:
        return self.rate_limiter.retry_after
