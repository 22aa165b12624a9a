"""Beyond one machine (issue: performance and scale): Kamailio's dispatcher module in front
of three `softphone answer` endpoints acts as one endpoint — calls go round-robin, OPTIONS
probes take a dead endpoint out of rotation (its calls fail over), and put it back when it
answers again. The balancer runs tests/peers/kamailio/dispatcher.cfg, the README's recipe."""

from __future__ import annotations

import signal

from peers.balancer import Balancer
from peers.net import free_port_block, free_udp_port
from peers.phoneconfig import write_config
from peers.sipp import Sipp


def endpoint(softphone, tmp_path, port: int):
    cfg = write_config(tmp_path / f"e{port}.toml", listen=f"127.0.0.1:{port}",
                       extra="[control]\nenabled = false\n")
    p = softphone("answer", "--auto", "--config", str(cfg))
    p.wait_event("listening", timeout=20)
    return p


def load(tmp_path, balancer: Balancer, calls: int, name: str):
    return Sipp("uac_perf", tmp_path, remote=balancer.addr, service="perf", calls=calls,
                media_port=free_port_block(4, udp=True, tcp=False), duration_ms=200,
                extra=["-r", "5"], timeout=30, name=name).run()


def answered(p) -> int:
    return sum(1 for e in p.events if e["event"] == "answered")


def test_round_robin_probing_and_failover(softphone, tmp_path):
    ports = [free_udp_port() for _ in range(3)]
    uris = [f"sip:127.0.0.1:{port}" for port in ports]
    phones = [endpoint(softphone, tmp_path, port) for port in ports]
    with Balancer(tmp_path / "balancer", uris) as balancer:
        balancer.wait_states({uri: "AP" for uri in uris})
        first = load(tmp_path, balancer, 6, "round")
        assert first.ok, first.explain()
        assert [answered(p) for p in phones] == [2, 2, 2]  # round-robin, one set
        # one endpoint dies: the probes take it out of rotation
        phones[1].send_signal(signal.SIGKILL)
        phones[1].wait_exit(10)
        balancer.wait_states({uris[1]: "IP", uris[0]: "AP", uris[2]: "AP"})
        second = load(tmp_path, balancer, 4, "failover")
        assert second.ok, second.explain()
        assert answered(phones[0]) + answered(phones[2]) == 8
        # it comes back on the same port: the next probe puts it back
        phones[1] = endpoint(softphone, tmp_path, ports[1])
        balancer.wait_states({uri: "AP" for uri in uris})
        third = load(tmp_path, balancer, 3, "back")
        assert third.ok, third.explain()
        assert answered(phones[1]) >= 1
