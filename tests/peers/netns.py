"""Packet loss without netem: two network namespaces joined by a veth pair, with an nftables
``numgen random mod 100 < N drop`` rule on UDP input (or a seeded, repeatable pattern), and
a way to slip a user-space relay (peers/impair.py) into one UDP flow.

Namespaces and links are created with unique names (pid + counter) and removed again;
addresses come from the benchmark range 198.18.0.0/15 and exist only inside them.
Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN), ``ip`` and ``nft``.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import time
from collections.abc import Sequence

from .procs import require_binary, unavailable

_counter = itertools.count(1)
_TABLE = "sp_loss"
_DIVERT = "sp_divert"


def _run(argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


class LossyLink:
    """Namespaces ``ns_a`` (``addr_a``) and ``ns_b`` (``addr_b``) joined by one veth pair.

    ``set_loss(ns, percent)`` drops that share of UDP datagrams arriving in ``ns``.
    ``exec_argv(ns, argv)`` / ``run(ns, argv)`` / ``popen(ns, argv)`` run commands inside.
    """

    def __init__(self, subnet: int | None = None) -> None:
        self.ip = require_binary("ip")
        self.nft = require_binary("nft")
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        self.ns_a, self.ns_b = f"spA{tag}", f"spB{tag}"
        self.veth_a, self.veth_b = f"va{tag}"[:15], f"vb{tag}"[:15]
        octet = subnet if subnet is not None else (os.getpid() + n) % 250 + 1
        self.addr_a, self.addr_b = f"198.18.{octet}.1", f"198.18.{octet}.2"
        self._created: list[str] = []

    def __repr__(self) -> str:
        return f"LossyLink({self.ns_a}={self.addr_a} <-> {self.ns_b}={self.addr_b})"

    def create(self) -> LossyLink:
        try:
            for ns in (self.ns_a, self.ns_b):
                _run([self.ip, "netns", "add", ns])
                self._created.append(ns)
        except RuntimeError as exc:
            self.destroy()
            unavailable(f"cannot create network namespaces here: {exc}")
        try:
            ip = self.ip
            _run([ip, "link", "add", self.veth_a, "netns", self.ns_a,
                  "type", "veth", "peer", "name", self.veth_b, "netns", self.ns_b])
            for ns, dev, addr in ((self.ns_a, self.veth_a, self.addr_a),
                                  (self.ns_b, self.veth_b, self.addr_b)):
                _run([ip, "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
                _run([ip, "-n", ns, "link", "set", dev, "up"])
                _run([ip, "-n", ns, "link", "set", "lo", "up"])
                self._nft(ns, f"add table inet {_TABLE}\n"
                              f"add chain inet {_TABLE} input {{ type filter hook input priority 0; policy accept; }}\n")
            self._wait_carrier()
        except BaseException:
            self.destroy()
            raise
        return self

    def _wait_carrier(self, timeout: float = 5.0) -> None:
        """Both veth ends report LOWER_UP (carrier), so the first packet is not lost."""
        deadline = time.monotonic() + timeout
        for ns, dev in ((self.ns_a, self.veth_a), (self.ns_b, self.veth_b)):
            while True:
                out = _run([self.ip, "-n", ns, "-o", "link", "show", "dev", dev]).stdout
                if "LOWER_UP" in out:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{dev} in {ns} has no carrier after {timeout} s: {out}")
                time.sleep(0.02)  # polling a kernel state with a deadline, not a fixed wait

    def _nft(self, ns: str, script: str) -> None:
        out = subprocess.run([self.ip, "netns", "exec", ns, self.nft, "-f", "-"], input=script,
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(f"nft in {ns} failed: {out.stderr.strip()}\n{script}")

    def set_loss(self, ns: str, percent: int, ports: tuple[int, int] | None = None,
                 seed: int | None = None) -> None:
        """Drop ``percent`` % (0-100) of UDP datagrams arriving in ``ns``, at random; with
        ``ports`` (LOW, HIGH) only those sent to these ports (RTP, sparing SIP).

        With ``seed`` the datagrams dropped are a fixed random pattern instead: exactly
        ``percent`` % of every 1000, at positions drawn from ``seed`` and counted from this
        call on, so two runs through the link lose the same packets (paired comparisons)."""
        if not 0 <= percent <= 100:
            raise ValueError(percent)
        script = f"flush chain inet {_TABLE} input\n"
        if percent:
            match = f"udp dport {ports[0]}-{ports[1]}" if ports else "meta l4proto udp"
            if percent == 100:
                pick = ""  # nft refuses "mod 100 < 100"
            elif seed is None:
                pick = f"numgen random mod 100 < {percent}"
            else:
                lost = sorted(random.Random(seed).sample(range(1000), 10 * percent))
                pick = f"numgen inc mod 1000 {{ {', '.join(map(str, lost))} }}"
            script += f"add rule inet {_TABLE} input {match} {pick} drop\n"
        self._nft(ns, script)

    def divert_udp(self, ns: str, port: int, to_port: int) -> None:
        """Datagrams arriving in ``ns`` over the link for UDP ``port`` go to ``to_port``
        (a local relay) instead, and what that port sends back over the link leaves as from
        ``port``: a relay slipped into a flow neither end knows about.

        The ports are rewritten statelessly: with NAT, a flow the far end had started first
        (its own RTP) would carry the other direction past the relay in conntrack's reply
        path. ``undivert_udp`` ends it."""
        dev = self.veth_a if ns == self.ns_a else self.veth_b
        self._nft(ns, f"add table inet {_DIVERT}\n"
                      f"add chain inet {_DIVERT} pre {{ type filter hook prerouting priority -300; }}\n"
                      f"add chain inet {_DIVERT} out {{ type filter hook output priority -300; }}\n"
                      f'add rule inet {_DIVERT} pre iifname "{dev}" udp dport {port} udp dport set {to_port}\n'
                      f'add rule inet {_DIVERT} out oifname "{dev}" udp sport {to_port} udp sport set {port}\n')

    def undivert_udp(self, ns: str) -> None:
        self._nft(ns, f"delete table inet {_DIVERT}\n")

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return [self.ip, "netns", "exec", ns, *map(str, argv)]

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30.0, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec_argv(ns, argv), timeout=timeout, **kw)

    def popen(self, ns: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        return subprocess.Popen(self.exec_argv(ns, argv), **kw)

    def destroy(self) -> None:
        """Delete the namespaces (which deletes the veth pair and the nft tables with them)."""
        for ns in reversed(self._created):
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True, timeout=10)
        self._created.clear()

    def __enter__(self) -> LossyLink:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
