"""Next hop → transport address (RFC 3263, the A/AAAA part), with a bounded cache.

A numeric host (or ``;maddr``) needs no lookup. Names are looked up in the address family
our socket can reach: an IPv4 socket cannot send to an AAAA record, and saying so at once
beats seven retransmissions into an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from ..sip.uri import SipUri
from ..transport import Peer

__all__ = ["Resolver", "ResolveError", "is_ip"]

MAX_CACHED_NAMES = 256
TRANSPORTS = ("udp", "tcp", "tls")


class ResolveError(OSError):
    """A target we cannot send to; the message says which name or address, and why."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family  # of our listening socket
        self._cache: dict[str, str] = {}

    def pin(self, name: str, address: str) -> None:
        """Answer ``name`` with ``address`` (tests, /etc/hosts-like overrides)."""
        self._cache[name.lower()] = address

    def transport_for(self, uri: SipUri, default: str | None) -> str:
        if uri.scheme == "sips":
            return "tls"
        proto = (uri.params.get("transport") or default or "udp").lower()
        if proto not in TRANSPORTS:
            raise ResolveError(f"transport {proto!r} is not supported")
        return proto

    def lookup_now(self, uri: SipUri, default_transport: str | None = None) -> Peer | None:
        """The peer when no DNS query is needed (a literal, or a cached name), else None."""
        proto = self.transport_for(uri, default_transport)
        host, name, port = self._parts(uri, proto)
        if is_ip(host):
            self._check_family(host)
            return Peer(proto, host, port, name)
        cached = self._cache.get(host.lower())
        if cached is not None:
            return Peer(proto, cached, port, name)
        return None

    async def resolve(self, uri: SipUri, default_transport: str | None = None) -> Peer:
        peer = self.lookup_now(uri, default_transport)
        if peer is not None:
            return peer
        proto = self.transport_for(uri, default_transport)
        host, name, port = self._parts(uri, proto)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=self.family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ResolveError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not infos:
            raise ResolveError(f"cannot resolve {host}: no address")
        address = infos[0][4][0]
        if len(self._cache) >= MAX_CACHED_NAMES:
            self._cache.clear()
        self._cache[host.lower()] = address
        return Peer(proto, address, port, name)

    def _parts(self, uri: SipUri, proto: str) -> tuple[str, str | None, int]:
        host = uri.host_bare
        name = None if is_ip(host) else host
        port = uri.port or (5061 if proto == "tls" else 5060)
        maddr = uri.params.get("maddr")
        if maddr:
            host = maddr.strip("[]")
        return host, name, port

    def _check_family(self, host: str) -> None:
        v6 = ":" in host
        if v6 and self.family == socket.AF_INET:
            raise ResolveError(f"cannot reach the IPv6 address {host} from an IPv4 socket: "
                               f"listen on IPv6 too (e.g. --listen [::]:0)")
        if not v6 and self.family == socket.AF_INET6:
            raise ResolveError(f"cannot reach the IPv4 address {host} from an IPv6-only "
                               f"socket: listen on an IPv4 address (e.g. --listen 0.0.0.0:0)")
