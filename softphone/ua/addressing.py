"""Where each peer reaches us: the address that goes in our Via, Contact and SDP.

The configured public address wins; else what a hop told us (the received/rport of its
Via, per flow), else what a STUN server saw of our SIP socket (UDP, not for loopback
peers), else the local address the route to the peer leaves from (asked of the kernel
with a connected UDP probe, and remembered per remote host).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..sip.uri import SipUri
from ..transport import Peer

if TYPE_CHECKING:
    from ..config import NetworkSettings
    from ..transport import TransportLayer
    from .resolver import Resolver

__all__ = ["Addressing", "split_hostport", "host_literal", "MAX_CACHED_ROUTES"]

MAX_CACHED_ROUTES = 256  # remote hosts whose outgoing local address we remember


class Addressing:
    """Our address per peer, for one stack's sockets."""

    def __init__(self, network: "NetworkSettings", transport: "TransportLayer",
                 resolver: "Resolver") -> None:
        self.network = network
        self.transport = transport
        self.resolver = resolver
        # NAT: our address as a hop sees it (its Via received/rport), per flow, and as a
        # STUN server sees our SIP socket; both go into the Contacts we send that way
        self._public: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.stun_mapped: tuple[str, int] | None = None
        self._local_ip_cache: dict[str, str] = {}

    def local_ip_for(self, remote_host: str) -> str:
        """The address the far end can reach us on (what goes in Via, Contact and SDP)."""
        if self.network.public_address:
            return self.network.public_address
        if self.transport.host not in ("0.0.0.0", "::"):
            return self.transport.host
        cached = self._local_ip_cache.get(remote_host)
        if cached:
            return cached
        family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((remote_host, 9))
                ip = probe.getsockname()[0]
        except OSError:
            ip = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        if len(self._local_ip_cache) >= MAX_CACHED_ROUTES:
            self._local_ip_cache.clear()
        self._local_ip_cache[remote_host] = ip
        return ip

    def contact_uri(self, peer: Peer, user: str, *, secure: bool = False) -> SipUri:
        """Where ``peer`` reaches us. ``secure``: a dialog that started with a sips: URI,
        whose Contacts must be sips: too (RFC 3261 §8.1.1.8, §12.1.1; no ;transport=tls
        then, RFC 5630 §3.1.3)."""
        host, port = self.public_address(peer)
        if secure:
            return SipUri(scheme="sips", user=user, host=host_literal(host), port=port)
        uri = SipUri(user=user, host=host_literal(host), port=port)
        if peer.proto != "udp":
            uri.params["transport"] = peer.proto
        return uri

    def public_address(self, peer: Peer) -> tuple[str, int]:
        """Where ``peer`` reaches us: the configured public address, else what the hop
        told us (received/rport), else what STUN saw (UDP), else our local address."""
        if not self.network.public_address:
            learned = self._public.get((peer.proto, peer.host, peer.port))
            if learned is not None:
                return learned
            if self.stun_mapped is not None and peer.proto == "udp" and \
                    not _loopback(peer.host):
                return self.stun_mapped
        return self.local_ip_for(peer.host), self.transport.port_for(peer.proto)

    def learn_public(self, peer: Peer, address: tuple[str, int] | None) -> None:
        """``peer`` sees us at ``address`` (None: forget it)."""
        key = (peer.proto, peer.host, peer.port)
        if address is None:
            self._public.pop(key, None)
        elif len(self._public) < MAX_CACHED_ROUTES or key in self._public:
            self._public[key] = address

    async def stun_server(self) -> tuple[str, int] | None:
        """``[network] stun_server`` resolved (A/AAAA), or None when it is not set."""
        text = self.network.stun_server
        if not text:
            return None
        host, port = split_hostport(text)
        peer = await self.resolver.resolve(SipUri(host=host_literal(host), port=port), "udp")
        return peer.host, peer.port

    async def stun_binding(self, timeout: float = 3.0) -> tuple[str, int]:
        """Our SIP socket's address as the STUN server sees it (kept for Contacts)."""
        server = await self.stun_server()
        if server is None:
            raise OSError("no STUN server configured")
        self.stun_mapped = await self.transport.stun.binding(server, timeout)
        return self.stun_mapped


def _loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def split_hostport(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port or 0)
    host, _, port = text.rpartition(":")
    if not host:
        return text, 0
    return host, int(port or 0)


def host_literal(ip: str) -> str:
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
