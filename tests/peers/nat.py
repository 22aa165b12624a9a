"""A NAT for real: three network namespaces, the middle one masquerading with nftables.

    inside (phone)  addr_in   --veth--  nat  --veth--  outside (registrar, STUN, callers)
    198.18.N.2/24             .1 | 198.19.N.1 (masquerade)       198.19.N.2/24

The NAT maps UDP/TCP sources to random ports in ``PUBLIC_PORTS`` (Linux keeps one mapping
per source address and port while its conntrack entry lives, whatever the destination: a
STUN binding learns the port RTP will leave with). ``reset_bindings()`` flushes the
conntrack table, as a home router's reboot or timeout would: the next packet gets a new
public port. Names are unique (pid + counter) and removed again; addresses come from the
benchmark range 198.18.0.0/15 and exist only inside these namespaces. Needs root, ``ip``,
``nft`` and ``conntrack``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Sequence

from .netns import _run
from .procs import require_binary, unavailable

_counter = itertools.count(1)
PUBLIC_PORTS = (40000, 49999)


class NatTopology:
    def __init__(self) -> None:
        self.ip = require_binary("ip")
        self.nft = require_binary("nft")
        self.conntrack = require_binary("conntrack")
        n = next(_counter)
        tag = f"{os.getpid() % 100000}n{n}"
        self.ns_in, self.ns_nat, self.ns_out = f"spI{tag}", f"spN{tag}", f"spO{tag}"
        octet = (os.getpid() + 7 * n) % 250 + 1
        self.addr_in, self.gw_in = f"198.18.{octet}.2", f"198.18.{octet}.1"
        self.public, self.addr_out = f"198.19.{octet}.1", f"198.19.{octet}.2"
        self._veth = (f"vi{tag}"[:15], f"vn{tag}"[:15], f"vo{tag}"[:15], f"vm{tag}"[:15])
        self._created: list[str] = []

    def __repr__(self) -> str:
        return (f"NatTopology({self.ns_in}={self.addr_in} -> {self.ns_nat} masquerade "
                f"{self.public} -> {self.ns_out}={self.addr_out})")

    def create(self) -> NatTopology:
        ip = self.ip
        try:
            for ns in (self.ns_in, self.ns_nat, self.ns_out):
                _run([ip, "netns", "add", ns])
                self._created.append(ns)
        except RuntimeError as exc:
            self.destroy()
            unavailable(f"cannot create network namespaces here: {exc}")
        try:
            v_in, v_nat_in, v_out, v_nat_out = self._veth
            _run([ip, "link", "add", v_in, "netns", self.ns_in, "type", "veth",
                  "peer", "name", v_nat_in, "netns", self.ns_nat])
            _run([ip, "link", "add", v_out, "netns", self.ns_out, "type", "veth",
                  "peer", "name", v_nat_out, "netns", self.ns_nat])
            for ns, dev, addr in ((self.ns_in, v_in, self.addr_in),
                                  (self.ns_nat, v_nat_in, self.gw_in),
                                  (self.ns_nat, v_nat_out, self.public),
                                  (self.ns_out, v_out, self.addr_out)):
                _run([ip, "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
                _run([ip, "-n", ns, "link", "set", dev, "up"])
            for ns in (self.ns_in, self.ns_nat, self.ns_out):
                _run([ip, "-n", ns, "link", "set", "lo", "up"])
            _run([ip, "-n", self.ns_in, "route", "add", "default", "via", self.gw_in])
            self.run(self.ns_nat, ["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
            lo, hi = PUBLIC_PORTS
            self._nft(f"""table ip sp_nat {{
  chain post {{
    type nat hook postrouting priority 100; policy accept;
    oifname "{v_nat_out}" meta l4proto {{ tcp, udp }} masquerade to :{lo}-{hi}
    oifname "{v_nat_out}" masquerade
  }}
}}
""")
            self._wait_carrier()
        except BaseException:
            self.destroy()
            raise
        return self

    def _nft(self, script: str) -> None:
        out = subprocess.run([self.ip, "netns", "exec", self.ns_nat, self.nft, "-f", "-"],
                             input=script, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(f"nft in {self.ns_nat} failed: {out.stderr.strip()}\n{script}")

    def _wait_carrier(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        pairs = ((self.ns_in, self._veth[0]), (self.ns_nat, self._veth[1]),
                 (self.ns_out, self._veth[2]), (self.ns_nat, self._veth[3]))
        for ns, dev in pairs:
            while "LOWER_UP" not in _run([self.ip, "-n", ns, "-o", "link", "show", "dev",
                                          dev]).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{dev} in {ns} has no carrier after {timeout} s")
                time.sleep(0.02)  # polling a kernel state with a deadline, not a fixed wait

    def bindings(self) -> str:
        """The NAT's conntrack table (``conntrack -L``)."""
        out = self.run(self.ns_nat, [self.conntrack, "-L"], capture_output=True, text=True)
        return out.stdout

    def reset_bindings(self) -> None:
        """Forget every NAT mapping at once (``conntrack -F``)."""
        out = self.run(self.ns_nat, [self.conntrack, "-F"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"conntrack -F failed: {out.stderr.strip()}")

    def listening(self, ns: str, port: int, proto: str = "udp") -> bool:
        """Something in ``ns`` listens on ``port`` (``ss``)."""
        flag = "-Huln" if proto == "udp" else "-Htln"
        out = self.run(ns, ["ss", flag, f"sport = :{port}"], capture_output=True, text=True)
        return bool(out.stdout.strip())

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return [self.ip, "netns", "exec", ns, *map(str, argv)]

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30.0,
            **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec_argv(ns, argv), timeout=timeout, **kw)

    def destroy(self) -> None:
        for ns in reversed(self._created):
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True, timeout=10)
        self._created.clear()

    def __enter__(self) -> NatTopology:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
