"""A user-space UDP impairment relay: delay with jitter, reordering, duplication and loss.

This kernel has no netem, so what nftables cannot do (delay, jitter, reordering,
duplication) happens here. The relay listens on one address and forwards every datagram
to ``target`` from a socket of its own per client; what comes back to that socket goes to
the client it belongs to, through the same impairments. That is how SIP over UDP with
``rport`` works through it: the far end answers the address the request came from.

Each datagram is delayed by ``delay ± jitter`` seconds (uniform), so datagrams closer
together than the jitter overtake each other; ``reorder`` holds a share back for one
more ``delay``; ``duplicate`` sends a share twice (each copy with its own delay);
``loss`` drops a share. ``duplicate_if`` / ``lose_first`` force those on chosen
datagrams, so a test knows the case it claims to cover really happened. The RNG is seeded, the queue of datagrams in flight is bounded
(``max_queue``; beyond it datagrams are dropped and counted), and so is the client table.
``listen_netns`` / ``target_netns`` put either side's sockets into a network namespace
(by name, as ``ip netns`` knows it), so one relay can join a LossyLink namespace to the
host's loopback.

Runs in one daemon thread; ``stop()`` ends it. Use as a context manager.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import random
import selectors
import socket
import threading
import time
from collections import Counter, OrderedDict
from typing import Callable

__all__ = ["ImpairRelay", "socket_in_netns"]

_CLONE_NEWNET = 0x40000000
Address = tuple[str, int]


def socket_in_netns(netns: str | None, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket living in network namespace ``netns`` (None: ours).

    setns() moves only the calling thread, so a short-lived thread does it, makes the
    socket and exits; the socket keeps its namespace wherever it is used afterwards.
    """
    if netns is None:
        return socket.socket(family, kind)
    result: dict[str, object] = {}

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(family, kind)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    t = threading.Thread(target=make, name=f"setns-{netns}", daemon=True)
    t.start()
    t.join(10)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    if "sock" not in result:
        raise OSError(f"could not open a socket in netns {netns}")
    return result["sock"]  # type: ignore[return-value]


class ImpairRelay:
    """``ImpairRelay(("127.0.0.1", 5060), delay=0.3, jitter=0.1, loss=0.2, seed=1)``."""

    def __init__(self, target: Address, *, listen: Address = ("127.0.0.1", 0),
                 delay: float = 0.3, jitter: float = 0.1, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, seed: int = 0,
                 max_queue: int = 2048, max_clients: int = 64,
                 listen_netns: str | None = None, target_netns: str | None = None,
                 target_bind: str = "0.0.0.0",
                 duplicate_if: Callable[[bytes], bool] | None = None,
                 lose_first: Callable[[bytes], bool] | None = None) -> None:
        if not 0 <= jitter <= delay:
            raise ValueError("jitter must be between 0 and delay (no negative delays)")
        self.target = target
        self.delay, self.jitter = delay, jitter
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.duplicate_if = duplicate_if  # these are always sent twice
        self.lose_first = lose_first  # the first datagram matching this is always lost
        self.rng = random.Random(seed)
        self.max_queue = max_queue
        self.max_clients = max_clients
        self.target_netns = target_netns
        self.target_bind = target_bind
        self.stats: Counter[str] = Counter()
        self.front = socket_in_netns(listen_netns)
        self.front.bind(listen)
        self.front.setblocking(False)
        self.address: Address = self.front.getsockname()[:2]
        self._clients: OrderedDict[Address, socket.socket] = OrderedDict()
        self._owner: dict[socket.socket, Address] = {}
        self._queue: list[tuple[float, int, int, socket.socket, bytes, Address, str]] = []
        self._arrivals = itertools.count()
        self._sent_max: dict[str, int] = {"up": -1, "down": -1}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.front, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="impair-relay", daemon=True)

    @property
    def port(self) -> int:
        return self.address[1]

    def __repr__(self) -> str:
        return (f"ImpairRelay({self.address[0]}:{self.port} -> {self.target[0]}:{self.target[1]},"
                f" delay={self.delay}±{self.jitter}, loss={self.loss}, dup={self.duplicate})")

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> ImpairRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sel.close()
        for sock in [self.front, *self._clients.values()]:
            sock.close()
        self._clients.clear()

    def __enter__(self) -> ImpairRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)

    # -- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.05
            if self._queue:
                timeout = min(timeout, max(0.0, self._queue[0][0] - now))
            for key, _ in self._sel.select(timeout):
                self._drain(key.fileobj)  # type: ignore[arg-type]
            self._send_due(time.monotonic())

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(256):  # bounded: the selector comes back for the rest
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors surface here on UDP: the packet is gone anyway
                return
            if sock is self.front:
                self._enqueue(data, self._client_socket(addr[:2]), self.target, "up")
            else:
                client = self._owner.get(sock)
                if client is not None:
                    self._enqueue(data, self.front, client, "down")

    def _client_socket(self, client: Address) -> socket.socket:
        sock = self._clients.get(client)
        if sock is not None:
            self._clients.move_to_end(client)
            return sock
        if len(self._clients) >= self.max_clients:
            old_client, old = self._clients.popitem(last=False)
            self._sel.unregister(old)
            self._owner.pop(old, None)
            old.close()
        sock = socket_in_netns(self.target_netns)
        sock.bind((self.target_bind, 0))
        sock.setblocking(False)
        self._clients[client] = sock
        self._owner[sock] = client
        self._sel.register(sock, selectors.EVENT_READ)
        return sock

    def _enqueue(self, data: bytes, sock: socket.socket, dest: Address, direction: str) -> None:
        rng = self.rng
        with self._lock:
            self.stats[f"{direction}.received"] += 1
            if rng.random() < self.loss or (self.lose_first and self.lose_first(data)):
                if self.lose_first and self.lose_first(data):
                    self.lose_first = None
                self.stats[f"{direction}.lost"] += 1
                return
            copies = 1
            if rng.random() < self.duplicate or (self.duplicate_if and self.duplicate_if(data)):
                copies = 2
                self.stats[f"{direction}.duplicated"] += 1
            arrival = next(self._arrivals)
            now = time.monotonic()
            for _ in range(copies):
                if len(self._queue) >= self.max_queue:
                    self.stats[f"{direction}.overflow"] += 1
                    continue
                wait = self.delay + rng.uniform(-self.jitter, self.jitter)
                if rng.random() < self.reorder:
                    wait += self.delay
                    self.stats[f"{direction}.held_back"] += 1
                heapq.heappush(self._queue, (now + wait, next(self._arrivals), arrival, sock,
                                             data, dest, direction))

    def _send_due(self, now: float) -> None:
        for _ in range(len(self._queue)):
            if not self._queue or self._queue[0][0] > now:
                return
            _, _, arrival, sock, data, dest, direction = heapq.heappop(self._queue)
            with self._lock:
                if arrival < self._sent_max[direction]:
                    self.stats[f"{direction}.reordered"] += 1  # overtaken by a later one
                self._sent_max[direction] = max(self._sent_max[direction], arrival)
                self.stats[f"{direction}.sent"] += 1
            try:
                sock.sendto(data, dest)
            except OSError:
                with self._lock:
                    self.stats[f"{direction}.send_errors"] += 1
