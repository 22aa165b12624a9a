"""Next hop → an ordered list of transport addresses (RFC 3263), with a TTL-bound cache.

A numeric host (or ``;maddr``) needs no lookup. For a name: a ``;transport=`` (or the
account's transport, or ``sips:``) fixes the transport, an explicit port skips SRV;
otherwise NAPTR picks the transport, then SRV gives the servers (priority and weight, RFC
2782) and A/AAAA their addresses. No NAPTR: SRV for UDP, TCP and TLS, the first one that
exists wins. No SRV: the name's own A/AAAA at the transport's default port. The order
and the service rules are pure code (:mod:`softphone.sip.locate`); this does the queries
(dnspython, imported on first need) and keeps the answers for their TTL.

The DNS servers are the system's (``/etc/resolv.conf``) unless ``[network] dns_servers``
names others (tests run dnsmasq on a high port). With the system's servers, address
records come from ``getaddrinfo`` (so ``/etc/hosts`` works); with configured servers
everything is asked of them. Names are looked up in the address family our socket can
reach: an IPv4 socket cannot send to an AAAA record, and saying so at once beats seven
retransmissions into an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from typing import Any

from ..config.validators import server_address
from ..sip.locate import (TRANSPORTS, FailureMarks, Naptr, Srv, default_port, naptr_choices,
                          srv_name, srv_order)
from ..sip.uri import SipUri
from ..transport import Peer

__all__ = ["Resolver", "ResolveError", "is_ip"]

log = logging.getLogger(__name__)

MAX_CACHED_NAMES = 256
NEGATIVE_TTL = 2.0      # s: a name without records is asked again after (RFC 2308: the
MAX_NEGATIVE_TTL = 300.0  # SOA's minimum when the answer has one, up to this)
ERROR_TTL = 2.0         # s: a DNS server that did not answer is asked again after
ADDRESS_TTL = 60.0      # s: getaddrinfo tells no TTL; the system caches on its own
MIN_TTL = 1.0
DNS_TIMEOUT = 2.0       # s per query (all servers, retries included)


class ResolveError(OSError):
    """A target we cannot send to; the message says which name or address, and why."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Failure(Exception):
    """One DNS question had no usable answer; ``kind`` says how (for the message)."""

    def __init__(self, kind: str, ttl: float) -> None:
        super().__init__(kind)
        self.kind = kind  # "nxdomain" | "empty" | "timeout" | "error"
        self.ttl = ttl


class Resolver:
    def __init__(self, family: int = socket.AF_INET, *, servers: tuple[str, ...] = (),
                 failover_hold: float = 60.0, rng: random.Random | None = None) -> None:
        self.family = family  # of our listening socket
        self.servers = tuple(server_address(s, 53) for s in servers)
        self.marks = FailureMarks(failover_hold)
        self._rng = rng or random.Random()
        self._pinned: dict[str, str] = {}
        # (name, port, transport, secure) -> (expiry, [Peer] | ResolveError)
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._dns: Any = None
        self._pending: dict[tuple, asyncio.Future] = {}

    def pin(self, name: str, address: str) -> None:
        """Answer ``name`` with ``address`` (tests, /etc/hosts-like overrides)."""
        self._pinned[name.lower()] = address

    # -- the transport ------------------------------------------------------------------
    def transport_for(self, uri: SipUri, default: str | None) -> str | None:
        """The transport the URI or the caller fixes; None: RFC 3263 chooses."""
        if uri.scheme == "sips":
            return "tls"
        proto = (uri.params.get("transport") or default or "").lower()
        if not proto:
            return None
        if proto not in TRANSPORTS:
            raise ResolveError(f"transport {proto!r} is not supported")
        return proto

    # -- lookups ------------------------------------------------------------------------
    def lookup_now(self, uri: SipUri, default_transport: str | None = None) -> list[Peer] | None:
        """The targets when no DNS query is needed (a literal, a pinned or cached name),
        else None. Raises ResolveError for a cached failure."""
        proto = self.transport_for(uri, default_transport)
        host, name = self._host(uri)
        if is_ip(host):
            self._check_family(host)
            proto = proto or "udp"
            return [Peer(proto, host, uri.port or default_port(proto), name)]
        pinned = self._pinned.get(host.lower())
        if pinned is not None:
            proto = proto or "udp"
            return [Peer(proto, pinned, uri.port or default_port(proto), name)]
        key = (host.lower(), uri.port, proto, uri.scheme == "sips")
        hit = self._cache.get(key)
        if hit is None:
            return None
        expiry, value = hit
        if expiry <= time.monotonic():
            del self._cache[key]
            return None
        if isinstance(value, ResolveError):
            raise ResolveError(str(value))
        return self.marks.order(list(value), time.monotonic(), key=_mark_key)

    async def resolve_all(self, uri: SipUri, default_transport: str | None = None) -> list[Peer]:
        """Every target for ``uri`` in the order to try them (never empty; ResolveError
        names the name and what the DNS said)."""
        now = self.lookup_now(uri, default_transport)
        if now is not None:
            return now
        proto = self.transport_for(uri, default_transport)
        host, _name = self._host(uri)
        key = (host.lower(), uri.port, proto, uri.scheme == "sips")
        pending = self._pending.get(key)
        if pending is None:  # one query per name at a time, however many requests wait
            pending = asyncio.ensure_future(self._locate(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        await asyncio.shield(pending)
        found = self.lookup_now(uri, default_transport)
        if found is None:  # a zero TTL: use the answer once
            value = pending.result()
            if isinstance(value, ResolveError):
                raise ResolveError(str(value))
            return list(value)
        return found

    async def resolve(self, uri: SipUri, default_transport: str | None = None) -> Peer:
        """The first target (where a new request goes first)."""
        return (await self.resolve_all(uri, default_transport))[0]

    def failed(self, peer: Peer) -> None:
        """``peer`` timed out, refused the connection or answered 503: try others first."""
        self.marks.mark(_mark_key(peer), time.monotonic())

    def succeeded(self, peer: Peer) -> None:
        self.marks.clear(_mark_key(peer))

    # -- RFC 3263 -----------------------------------------------------------------------
    async def _locate(self, key: tuple) -> list[Peer] | ResolveError:
        host, port, proto, secure = key
        ttls: list[float] = []
        try:
            if port is not None:  # an explicit port: no SRV (§4.2)
                targets = await self._addresses(host, port, proto or "udp", ttls)
            elif proto is not None:  # the transport is fixed: SRV for it, else A
                targets = await self._by_srv(host, proto, srv_name(proto, host), ttls)
            else:
                targets = await self._by_naptr(host, secure, ttls)
            if not targets:
                raise _Failure("empty", NEGATIVE_TTL)
            # TLS checks the SIP domain of the URI, not the SRV target (RFC 5922 §4.2)
            value: list[Peer] | ResolveError = [Peer(p.proto, p.host, p.port, host)
                                                for p in targets]
            ttl = min(ttls) if ttls else ADDRESS_TTL
        except _Failure as exc:
            value = ResolveError(self._reason(host, exc, proto, port))
            ttl = min([exc.ttl, *ttls])
        except ResolveError as exc:
            value, ttl = exc, NEGATIVE_TTL
        except Exception as exc:  # never leave a request waiting on a broken lookup
            log.exception("DNS lookup of %s failed", host)
            value, ttl = ResolveError(f"DNS: lookup of {host} failed: {exc}"), ERROR_TTL
        self._store(key, value, ttl)
        if isinstance(value, list):
            log.debug("DNS: %s -> %s", host, ", ".join(f"{p.proto}:{p}" for p in value))
        return value

    def _reason(self, host: str, exc: _Failure, proto: str | None, port: int | None) -> str:
        if exc.kind == "timeout":
            servers = ", ".join(f"{a}:{p}" for a, p in self.servers) or "the system's"
            return f"DNS: no answer for {host} from DNS server {servers} (timeout)"
        if exc.kind == "error":
            return f"DNS: lookup of {host} failed (the DNS server refused or failed)"
        family = "AAAA" if self.family == socket.AF_INET6 else "A"
        if port is not None:
            return f"DNS: no {family} record for {host}"
        return f"DNS: no SRV or {family} record for {host}"

    async def _by_naptr(self, host: str, secure: bool, ttls: list[float]) -> list[Peer]:
        try:
            records = await self._query(host, "NAPTR", ttls)
        except _Failure as exc:
            if exc.kind == "timeout":
                raise
            records = []
        naptrs = [Naptr(r.order, r.preference, _text(r.flags), _text(r.service),
                        r.replacement.to_text()) for r in records]
        for transport, name in naptr_choices(naptrs, secure=secure):
            srvs = await self._srv(name, ttls)
            if srvs:
                targets = await self._expand(srvs, transport, ttls)
                if targets:
                    return targets
        # no (usable) NAPTR: SRV for each transport, the first that exists wins (§4.1)
        order = ("tls",) if secure else TRANSPORTS
        answers = await asyncio.gather(*(self._srv(srv_name(t, host), ttls) for t in order))
        for transport, srvs in zip(order, answers):
            if srvs:
                targets = await self._expand(srvs, transport, ttls)
                if targets:
                    return targets
        transport = "tls" if secure else "udp"
        return await self._addresses(host, default_port(transport), transport, ttls)

    async def _by_srv(self, host: str, proto: str, name: str, ttls: list[float]) -> list[Peer]:
        srvs = await self._srv(name, ttls)
        if srvs:
            targets = await self._expand(srvs, proto, ttls)
            if targets:
                return targets
        return await self._addresses(host, default_port(proto), proto, ttls)

    async def _srv(self, name: str, ttls: list[float]) -> list[Srv]:
        try:
            records = await self._query(name, "SRV", ttls)
        except _Failure as exc:
            if exc.kind == "timeout":
                raise
            return []
        return srv_order([Srv(r.priority, r.weight, r.port, r.target.to_text())
                          for r in records], self._rng)

    async def _expand(self, srvs: list[Srv], proto: str, ttls: list[float]) -> list[Peer]:
        """SRV targets → their addresses, in SRV order (a target without one is skipped)."""
        out: list[Peer] = []
        answers = await asyncio.gather(
            *(self._addresses(s.target.rstrip("."), s.port, proto, ttls) for s in srvs),
            return_exceptions=True)
        for srv, found in zip(srvs, answers):
            if isinstance(found, _Failure) and found.kind == "timeout":
                raise found
            if isinstance(found, BaseException):
                log.info("DNS: SRV target %s has no address", srv.target)
                continue
            out.extend(p for p in found if p not in out)
        return out

    async def _addresses(self, host: str, port: int, proto: str, ttls: list[float]) -> list[Peer]:
        pinned = self._pinned.get(host.lower())
        if pinned is not None:
            return [Peer(proto, pinned, port, host)]
        if is_ip(host):
            return [Peer(proto, host, port, None)]
        if self.servers:
            rdtype = "AAAA" if self.family == socket.AF_INET6 else "A"
            records = await self._query(host, rdtype, ttls)
            return [Peer(proto, r.address, port, host) for r in records]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=self.family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise _Failure("nxdomain" if isinstance(exc, socket.gaierror) else "error",
                           NEGATIVE_TTL) from None
        ttls.append(ADDRESS_TTL)
        out: list[Peer] = []
        for info in infos:
            peer = Peer(proto, info[4][0], port, host)
            if peer not in out:
                out.append(peer)
        if not out:
            raise _Failure("empty", NEGATIVE_TTL)
        return out

    async def _query(self, name: str, rdtype: str, ttls: list[float]) -> list:
        resolver = self._dns_resolver()
        import dns.exception
        import dns.resolver

        try:
            answer = await resolver.resolve(name.rstrip(".") + ".", rdtype, search=False,
                                            lifetime=DNS_TIMEOUT)
        except dns.resolver.NXDOMAIN as exc:
            raise _Failure("nxdomain", _negative_ttl(exc)) from None
        except dns.resolver.NoAnswer as exc:
            raise _Failure("empty", _negative_ttl(exc)) from None
        except dns.exception.Timeout:
            raise _Failure("timeout", ERROR_TTL) from None
        except dns.resolver.NoNameservers:
            raise _Failure("error", ERROR_TTL) from None
        except dns.exception.DNSException as exc:
            log.info("DNS: %s %s: %s", rdtype, name, exc)
            raise _Failure("error", ERROR_TTL) from None
        ttls.append(max(MIN_TTL, float(answer.rrset.ttl if answer.rrset is not None else 0)))
        return list(answer)

    def _dns_resolver(self) -> Any:
        if self._dns is None:
            import dns.asyncresolver  # ~80 ms: only when a name needs it
            import dns.nameserver

            if self.servers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [dns.nameserver.Do53Nameserver(addr, port)
                                        for addr, port in self.servers]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver()
                except Exception as exc:  # no /etc/resolv.conf: nothing to ask
                    raise _Failure("error", ERROR_TTL) from exc
            resolver.timeout = DNS_TIMEOUT / 2
            self._dns = resolver
        return self._dns

    def _store(self, key: tuple, value: Any, ttl: float) -> None:
        if len(self._cache) >= MAX_CACHED_NAMES:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHED_NAMES:
                self._cache.clear()
        self._cache[key] = (time.monotonic() + ttl, value)

    # -- helpers ------------------------------------------------------------------------
    def _host(self, uri: SipUri) -> tuple[str, str | None]:
        """(where to send, the name for TLS checks): ``;maddr`` wins over the host."""
        host = uri.host_bare
        name = None if is_ip(host) else host
        maddr = uri.params.get("maddr")
        if maddr:
            host = maddr.strip("[]")
        return host, name

    def _check_family(self, host: str) -> None:
        v6 = ":" in host
        if v6 and self.family == socket.AF_INET:
            raise ResolveError(f"cannot reach the IPv6 address {host} from an IPv4 socket: "
                               f"listen on IPv6 too (e.g. --listen [::]:0)")
        if not v6 and self.family == socket.AF_INET6:
            raise ResolveError(f"cannot reach the IPv4 address {host} from an IPv6-only "
                               f"socket: listen on an IPv4 address (e.g. --listen 0.0.0.0:0)")


def _negative_ttl(exc: Exception) -> float:
    """RFC 2308 §5: a negative answer lives as long as its SOA says (TTL, capped by the
    SOA's minimum); without one, briefly."""
    try:
        response = exc.response() if hasattr(exc, "response") and callable(exc.response) \
            else None
    except Exception:
        response = None
    if response is None and hasattr(exc, "responses"):
        try:
            response = next(iter(exc.responses().values()), None)
        except Exception:
            response = None
    for rrset in getattr(response, "authority", None) or ():
        for rdata in rrset:
            minimum = getattr(rdata, "minimum", None)
            if minimum is not None:
                return max(MIN_TTL, min(float(rrset.ttl), float(minimum), MAX_NEGATIVE_TTL))
    return NEGATIVE_TTL


def _mark_key(peer: Peer) -> tuple:
    return (peer.proto, peer.host, peer.port)


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
