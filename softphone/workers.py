"""``softphone answer --workers N``: N answering processes behind one SIP port.

One process cannot use more than one core (the GIL), so a load test that needs more
calls than a core can carry runs N workers. This process (the dispatcher) owns the UDP
port; every datagram goes to a worker chosen by its Call-ID, so a dialog — and every
retransmission, ACK, CANCEL and BYE of it — always meets the same worker, whatever address
it came from (a proxy in front sends everything from one). The Call-IDs a worker makes
itself end in ``@softphone-w<i>``, so the answers to its own requests come back to it.
Workers send through the dispatcher too, so every datagram leaves from the SIP port
(symmetric signalling). TCP is shared by the kernel (SO_REUSEPORT): a connection stays
with the worker that accepted it. Each worker has its own slice of the RTP port range
and sends and receives its media itself. Their events are merged here, each with its
``worker``; ``--max-calls`` and ``--duration`` count for the whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import sys
import zlib
from dataclasses import dataclass, field
from typing import Callable

from .ua.events import CallTally

__all__ = ["WORKER_ENV", "WorkerSpec", "worker_spec", "route", "rtp_slice", "Supervisor"]

WORKER_ENV = "SOFTPHONE_WORKER"   # "INDEX/COUNT/FD" in a worker's environment
# a secret the workers share, so each knows the Contact (its random token) that worker 0
# registered: the stranger policy of every worker accepts what the registrar sends
CONTACT_SEED_ENV = "SOFTPHONE_CONTACT_SEED"  # read by softphone.ua.account
CALL_ID_HOST = "softphone-w"      # + the worker's index
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
STOP_GRACE = 10.0                 # s a worker has to hang up and unregister when told to stop


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    count: int
    fd: int


def worker_spec() -> WorkerSpec | None:
    """What this process is, when a dispatcher started it (else None)."""
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    try:
        index, count, fd = (int(x) for x in value.split("/"))
    except ValueError:
        raise ValueError(f"{WORKER_ENV}: expected INDEX/COUNT/FD (got {value!r})") from None
    if not 0 <= index < count:
        raise ValueError(f"{WORKER_ENV}: index {index} out of range for {count} workers")
    return WorkerSpec(index, count, fd)


def route(data: bytes, count: int) -> int:
    """The worker a datagram belongs to: the one whose Call-IDs end in -w<i>, else a
    stable hash of the Call-ID; no Call-ID (keep-alives, garbage): worker 0."""
    m = _CALL_ID.search(data)
    if m is None:
        return 0
    call_id = m.group(1)
    at = call_id.rfind(b"@" + CALL_ID_HOST.encode())
    if at >= 0:
        tail = call_id[at + 1 + len(CALL_ID_HOST):]
        if tail.isdigit() and int(tail) < count:
            return int(tail)
    return zlib.crc32(call_id) % count


def rtp_slice(ports: tuple[int, int], index: int, count: int) -> tuple[int, int]:
    """Worker ``index``'s share of the RTP range: even-sized, even-aligned, disjoint."""
    low, high = ports
    base = low + low % 2  # RTP on the even port of each pair, RTCP on the odd one above
    size = (high - base + 1) // count
    size -= size % 2
    if size < 2:
        raise ValueError(f"[network] rtp_ports {low}-{high} is too small for {count} workers")
    start = base + index * size
    return start, start + size - 1


# ============================================================================ dispatcher
class _SipPort(asyncio.DatagramProtocol):
    """The SIP port: each datagram to the worker its Call-ID belongs to."""

    def __init__(self, supervisor: "Supervisor") -> None:
        self.supervisor = supervisor

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        sup = self.supervisor
        line = sup.lines[route(data, len(sup.lines))]
        try:
            line.send(f"{addr[0]} {addr[1]}\n".encode("ascii") + data)
            sup.stats["in"] += 1
        except (BlockingIOError, InterruptedError):
            sup.stats["dropped"] += 1  # the worker is behind: as a full socket buffer would
        except OSError:
            sup.stats["dropped"] += 1

    def error_received(self, exc: Exception) -> None:
        pass


def _forward(supervisor: "Supervisor", line: socket.socket) -> None:
    """What a worker sends (``HOST PORT\\n`` + the datagram), out of the SIP port."""
    udp = supervisor.udp
    for _ in range(64):  # bounded per wake-up
        try:
            data = line.recv(1 << 17)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        head, _, payload = data.partition(b"\n")
        try:
            host, port = head.decode("ascii").rsplit(" ", 1)
            target = (host, int(port))
        except ValueError:
            continue
        if udp is not None:
            udp.sendto(payload, target)
            supervisor.stats["out"] += 1


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    listening: asyncio.Future
    events: int = 0
    exit: int | None = None


@dataclass
class Supervisor:
    """Starts the workers, dispatches their datagrams, merges their output, stops them."""

    count: int
    host: str
    port: int
    argv: list[str]                      # a worker's command line (python -m softphone …)
    emit: Callable[[dict], None]         # one merged event
    say: Callable[[str], None]           # one line for stderr
    max_calls: int | None = None
    duration: float | None = None
    lines: list = field(default_factory=list)
    udp: asyncio.DatagramTransport | None = None
    stats: dict = field(default_factory=lambda: {"in": 0, "out": 0, "dropped": 0})
    contact_seed: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.udp, _ = await loop.create_datagram_endpoint(
            lambda: _SipPort(self), local_addr=(self.host, self.port), family=family)
        sock = self.udp.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.port = self.udp.get_extra_info("sockname")[1]
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        workers: list[_Worker] = []
        tally = CallTally(self.max_calls)
        enough = asyncio.Event()

        def on_event(worker: _Worker, event: dict) -> None:
            name = event.get("event")
            if name == "listening":
                if not worker.listening.done():
                    worker.listening.set_result(event)
                return  # one listening line for the whole, below
            if tally.feed(str(name), event.get("call_id")):
                enough.set()
            event["worker"] = worker.index
            self.emit(event)

        try:
            for index in range(self.count):
                workers.append(await self._spawn(index, on_event))
            waits = [w.listening for w in workers]
            stopper = asyncio.ensure_future(stop.wait())
            deadline = loop.time() + 60
            while not all(w.done() for w in waits) and not stop.is_set() and \
                    not any(w.done() and w.exception() for w in waits if not w.cancelled()):
                await asyncio.wait([*[w for w in waits if not w.done()], stopper],
                                   timeout=max(0.0, deadline - loop.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
                if loop.time() >= deadline:
                    break
            stopper.cancel()
            if not all(w.done() and not w.exception() for w in waits):
                if not stop.is_set():
                    failed = [w.index for w in workers if w.exit is not None]
                    self.say(f"worker {failed[0] if failed else '?'} did not start")
                return await self._stop(workers, status=1)
            self.emit({"event": "listening", "address": self.host, "port": self.port,
                       "workers": self.count})
            exits = [asyncio.ensure_future(w.proc.wait()) for w in workers]
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(enough.wait()),
                       *exits]
            await asyncio.wait(waiters, timeout=self.duration,
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waiters[:2]:
                w.cancel()
            crashed = [w for w in workers if w.proc.returncode not in (None, 0)]
            for w in crashed:
                self.say(f"worker {w.index} exited with status {w.proc.returncode}")
            return await self._stop(workers, status=1 if crashed else 0)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for line in self.lines:
                loop.remove_reader(line.fileno())
                line.close()
            if self.udp is not None:
                self.udp.close()

    async def _spawn(self, index: int, on_event) -> _Worker:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), _forward, self, ours)
        self.lines.append(ours)
        env = {**os.environ, WORKER_ENV: f"{index}/{self.count}/{theirs.fileno()}",
               "PYTHONUNBUFFERED": "1"}
        host = f"[{self.host}]" if ":" in self.host else self.host
        proc = await asyncio.create_subprocess_exec(
            *self.argv, "--listen", f"{host}:{self.port}", "--events", "jsonl", env=env, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        theirs.close()
        worker = _Worker(index, proc, loop.create_future())
        asyncio.ensure_future(self._read_events(worker, on_event))
        asyncio.ensure_future(self._read_errors(worker))
        return worker

    async def _read_events(self, worker: _Worker, on_event) -> None:
        assert worker.proc.stdout is not None
        async for raw in worker.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                worker.events += 1
                on_event(worker, event)
        if not worker.listening.done():
            worker.exit = await worker.proc.wait()
            worker.listening.set_exception(RuntimeError(f"worker {worker.index} exited"))

    async def _read_errors(self, worker: _Worker) -> None:
        assert worker.proc.stderr is not None
        async for raw in worker.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.say(f"worker {worker.index}: {text.removeprefix('softphone: ')}")

    async def _stop(self, workers: list[_Worker], status: int) -> int:
        """SIGTERM every worker (each hangs up and unregisters), SIGKILL the late ones."""
        for w in workers:
            if w.proc.returncode is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                self.say(f"worker {w.index} did not stop in {STOP_GRACE:g} s: killed")
                w.proc.kill()
                await w.proc.wait()
                status = 1
        for w in workers:
            if not w.listening.done():
                w.listening.cancel()
            elif not w.listening.cancelled():
                w.listening.exception()  # seen: a worker that never started was reported
        return max([status, *[w.proc.returncode or 0 for w in workers]])


def run_supervisor(count: int, listen: str, argv: list[str], *, jsonl: bool,
                   human: Callable[[dict], str | None], max_calls: int | None,
                   duration: float | None) -> int:
    from .config import parse_listen

    host, port = parse_listen(listen)

    def emit(event: dict) -> None:
        if jsonl:
            sys.stdout.write(json.dumps(event) + "\n")
        else:
            line = human(event)
            if line is None:
                return
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def say(line: str) -> None:
        print(f"softphone: {line}", file=sys.stderr, flush=True)

    sup = Supervisor(count, host, port, argv, emit, say, max_calls=max_calls, duration=duration)
    return asyncio.run(sup.run())
