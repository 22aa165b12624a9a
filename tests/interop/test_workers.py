"""``answer --workers N``: one SIP port, N answering processes, calls split by Call-ID.

SIPp sends every call from ONE socket (as a proxy in front would): the split must come
from the dispatcher, not from the kernel's hash of the source address. Only worker 0
registers; a call through Kamailio (one source again) still reaches a worker; stopping
the dispatcher stops every worker (no process is left behind)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from peers.net import free_port_block, free_udp_port
from peers.phoneconfig import write_config
from peers.sipp import Sipp


def children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def loopback(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "w.toml", listen=f"127.0.0.1:{port}",
                        extra="[control]\nenabled = false\n")


def test_calls_from_one_socket_are_split_over_two_workers(softphone, tmp_path):
    port = free_udp_port()
    cfg = loopback(tmp_path, port)
    cfg.write_text(cfg.read_text().replace("[network]", "[network]\nrate_limit = 0", 1))
    p = softphone("answer", "--auto", "--workers", "2", "--max-calls", "20",
                  "--config", str(cfg))
    listening = p.wait_event("listening", timeout=30)
    assert listening["port"] == port and listening["workers"] == 2
    pids = children(p.proc.pid)
    assert len(pids) == 2, pids
    uac = Sipp("uac_perf", tmp_path, remote=f"127.0.0.1:{port}", service="perf",
               media_port=free_port_block(4, udp=True, tcp=False), calls=20,
               duration_ms=300, extra=["-r", "10"], timeout=30).run()
    assert uac.ok, uac.explain()
    assert p.wait_exit(30) == 0, p.diagnostics()  # --max-calls counts over both workers
    ended = [e for e in p.events if e["event"] == "ended"]
    assert len(ended) == 20 and {e["reason"] for e in ended} == {"remote-hangup"}
    by_worker = {w: sum(1 for e in ended if e["worker"] == w) for w in (0, 1)}
    assert by_worker[0] and by_worker[1], by_worker  # 2**-19 to fail by chance
    # every message of a call met one worker: incoming, answered and ended agree
    owner = {e["call_id"]: e["worker"] for e in p.events if e["event"] == "incoming"}
    assert all(owner[e["call_id"]] == e["worker"] for e in ended)
    assert not any(alive(pid) for pid in pids)


def test_only_worker_0_registers_and_calls_through_the_proxy_reach_a_worker(
        kamailio, softphone, tmp_path):
    port = free_udp_port()
    cfg = write_config(tmp_path / "b.toml", kamailio, "1002", listen=f"127.0.0.1:{port}",
                       extra="[control]\nenabled = false\n")
    b = softphone("answer", "--auto", "--workers", "2", "--config", str(cfg))
    b.wait_event("registered", timeout=30)
    assert b.wait_event("listening", timeout=30)["workers"] == 2
    contacts = kamailio.wait_registered("1002", timeout=10)
    assert len(contacts) == 1 and f":{port}" in contacts[0], contacts
    registered = [e for e in b.events if e["event"] == "registered"]
    assert [e["worker"] for e in registered] == [0]
    for n in range(2):
        a = softphone("call", f"sip:1002@{kamailio.domain}", "--duration", "0.3", "--config",
                      str(write_config(tmp_path / f"a{n}.toml", kamailio, "1001")))
        assert a.wait_exit(30) == 0, a.diagnostics() + b.diagnostics()
    assert len([e for e in b.events if e["event"] == "answered"]) == 2
    pids = children(b.proc.pid)
    b.send_signal(signal.SIGTERM)
    assert b.wait_exit(30) == 0, b.diagnostics()
    assert b.find_event("unregistered") is not None  # worker 0 unregistered on the way out
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("args, message", [
    (("--workers", "0", "--auto"), "argument --workers: must be a whole number from 1 to 64"),
    (("--workers", "2"), "answer: --workers needs --auto"),
])
def test_bad_worker_flags_exit_2(softphone, tmp_path, args, message):
    p = softphone("answer", *args, "--config", str(loopback(tmp_path, free_udp_port())))
    assert p.wait_exit(20) == 2 and message in p.stderr_text(), p.stderr_text()
