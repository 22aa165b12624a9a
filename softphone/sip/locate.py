"""Locating SIP servers (RFC 3263), the pure part: which DNS records to ask for, and in
which order to try what they name.

The asyncio resolver (``ua/resolver.py``) asks the DNS; this module decides: the transport
(from the URI, the account, or NAPTR), the NAPTR services we can use and their order, the
RFC 2782 ordering of SRV targets (priority, then a weighted random draw inside each
priority), and the failover order of the resulting addresses, with targets that failed
recently moved to the back. No clock and no randomness of its own: ``now`` and the
random source come in as arguments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Naptr", "Srv", "TRANSPORTS", "NAPTR_SERVICES", "default_port", "srv_name",
           "naptr_choices", "srv_order", "FailureMarks"]

TRANSPORTS = ("udp", "tcp", "tls")
# RFC 3263 §4.1 service fields → our transport; SIPS+D2T is the only one for sips:
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
_SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # the SRV name to look up next ("." when the record has none)


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def default_port(transport: str) -> int:
    return 5061 if transport == "tls" else 5060


def srv_name(transport: str, host: str) -> str:
    """The SRV owner name for ``transport`` at ``host`` (``_sips._tcp.`` for TLS)."""
    return _SRV_PREFIX[transport] + host.rstrip(".")


def naptr_choices(records: list[Naptr], *, secure: bool,
                  allowed: tuple[str, ...] = TRANSPORTS) -> list[tuple[str, str]]:
    """(transport, SRV name) for the NAPTR records we can follow, best first (§4.1: lowest
    order, then lowest preference; only flag "s" services we speak; sips: only over TLS)."""
    usable = []
    for rec in records:
        transport = NAPTR_SERVICES.get(rec.service.upper())
        if transport is None or transport not in allowed or rec.flags.lower() != "s":
            continue
        if secure and transport != "tls":
            continue
        name = rec.replacement.rstrip(".")
        if not name:
            continue
        usable.append((rec.order, rec.preference, transport, name))
    usable.sort(key=lambda item: (item[0], item[1]))
    out: list[tuple[str, str]] = []
    for _order, _pref, transport, name in usable:
        if (transport, name) not in out:
            out.append((transport, name))
    return out


def srv_order(records: list[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782: lowest priority first; inside one priority a weighted random draw
    (weight 0 records come first in the running sum, so they are chosen rarely). A
    single record with target "." means "no service here": no targets at all."""
    records = [r for r in records if r.target.rstrip(".")]
    out: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for index, rec in enumerate(group):
                running += rec.weight
                if running >= pick:
                    out.append(group.pop(index))
                    break
    return out


class FailureMarks:
    """Targets that failed lately (a timeout, a transport error, a 503): for ``hold``
    seconds they go to the back of every list, so new requests start where the last one
    succeeded instead of waiting on a dead server again."""

    MAX = 256

    def __init__(self, hold: float = 60.0) -> None:
        self.hold = hold
        self._until: dict[tuple, float] = {}

    def mark(self, key: tuple, now: float) -> None:
        if len(self._until) >= self.MAX:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self.MAX:
                self._until.clear()
        self._until[key] = now + self.hold

    def clear(self, key: tuple) -> None:
        self._until.pop(key, None)

    def failed(self, key: tuple, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True

    def order(self, keys: list, now: float, key=lambda item: item) -> list:
        """``keys`` with the recently failed ones moved to the back (order kept otherwise)."""
        good = [k for k in keys if not self.failed(key(k), now)]
        bad = [k for k in keys if self.failed(key(k), now)]
        return good + bad
