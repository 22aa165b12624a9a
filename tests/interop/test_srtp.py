"""SRTP with SDES keys against real peers: softphone <-> softphone and softphone <-> baresip
(its srtp module, RTP/SAVP) both ways, with a tone in each direction found in what the
other end decoded, while a live capture on lo shows the wire carries no plain tone. A
peer that answers with a key it does not use (SIPp echoing our packets) is a clear
media error; an offer with no suite in common gets 488."""

from __future__ import annotations

import base64
import re
import socket
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from peers.capture import LoopbackCapture, pcmu_samples, rtp_payloads, tone_share
from peers.net import free_udp_port
from peers.phoneconfig import RTP_PORTS, write_config
from peers.sipmsg import responses, sip_request, status
from peers.tone import analyse, write_tone
from softphone.media.srtp import supported_suites

pytestmark = pytest.mark.peers

SDES = 'media_encryption = "sdes-required"\nallow_sdes_over_udp = true'


def samples_of(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data[::w.getnchannels()], w.getframerate()


def assert_heard(path: Path, freq: float) -> None:
    report = analyse(path)
    assert report.has_tone(freq), report
    x, rate = samples_of(path)
    assert tone_share(x, rate, freq) > 0.5, (path, tone_share(x, rate, freq))


def assert_wire_carries_no_tone(capture: Path, *freqs: float,
                                ports: set[int] | None = None) -> None:
    payloads = rtp_payloads(capture, payload_type=0, ports=ports)
    assert len(payloads) >= 60, f"only {len(payloads)} PCMU packets in the capture"
    heard = pcmu_samples(payloads)
    for freq in freqs:
        share = tone_share(heard, 8000, freq)
        assert share < 0.05, f"{freq} Hz makes {share:.0%} of the wire's RTP payload"


def direct_account(user: str) -> str:
    return (f'[[accounts]]\nname = "{user}"\naor = "sip:{user}@127.0.0.1"\nregister = false\n'
            f'{SDES}\n\n')


def test_softphone_to_softphone_srtp_both_ways(softphone, tmp_path):
    """Tones both ways, none on the wire; and the keys (read from B's pcap, which keeps the
    wire's bytes) appear nowhere in A's debug log, text trace or events."""
    port = free_udp_port()
    heard_b, heard_a = tmp_path / "heard-b.wav", tmp_path / "heard-a.wav"
    b_cfg = write_config(tmp_path / "b.toml", codecs=["PCMU"], listen=f"127.0.0.1:{port}")
    b_cfg.write_text(direct_account("b") + b_cfg.read_text())
    a_cfg = write_config(tmp_path / "a.toml", codecs=["PCMU"])
    a_cfg.write_text(direct_account("a") + a_cfg.read_text())
    capture, b_pcap, a_text = tmp_path / "lo.pcap", tmp_path / "b.pcap", tmp_path / "a.txt"
    with LoopbackCapture(capture, f"udp portrange {RTP_PORTS[0]}-{RTP_PORTS[1]}"):
        b = softphone("answer", "--auto", "--max-calls", "1", "--record", str(heard_b),
                      "--play", str(write_tone(tmp_path / "880.wav", 880.0)), "--sip-trace",
                      str(b_pcap), "--config", str(b_cfg))
        b.wait_event("listening", timeout=10)
        a = softphone("call", f"sip:b@127.0.0.1:{port}", "--duration", "2", "--record",
                      str(heard_a), "--play", str(write_tone(tmp_path / "1k.wav", 1000.0)),
                      "--sip-trace", str(a_text), "-vv", "--config", str(a_cfg))
        suite = a.wait_event("answered", timeout=15)["srtp"]
        assert suite in supported_suites(), a.diagnostics()
        assert b.wait_event("answered", timeout=5)["srtp"] == suite
        assert a.wait_exit(15) == 0, a.diagnostics()
        assert b.wait_exit(10) == 0, b.diagnostics()
    assert_heard(heard_b, 1000.0)
    assert_heard(heard_a, 880.0)
    # only this call's RTP: the range is every test softphone's (and other runs may share lo)
    ports = {int(p) for p in re.findall(rb"m=audio (\d+) ", b_pcap.read_bytes())}
    assert len(ports) == 2, ports
    assert_wire_carries_no_tone(capture, 1000.0, 880.0, ports=ports)
    keys = set(re.findall(rb"inline:([A-Za-z0-9+/]{20,}=*)", b_pcap.read_bytes()))
    assert len(keys) >= 2, keys  # our offer's lines and B's answer
    artefacts = a_text.read_bytes() + a.stderr_text().encode() + repr(a.events).encode()
    assert b"DEBUG" in artefacts and b"inline:****" in artefacts
    for key in keys:
        assert key not in artefacts and key[:16] not in artefacts


def ports_of(peer) -> set[int]:
    return set(range(peer.rtp_ports[0], peer.rtp_ports[1] + 1))


def srtp_baresip(baresip, profile: str, kamailio, tone_hz: int):
    return baresip(profile, kamailio=kamailio, tone_hz=tone_hz, modules=("srtp",),
                   account_params=";mediaenc=srtp-mand")


def test_softphone_calls_baresip_with_srtp(kamailio, baresip, softphone, tmp_path):
    bob = srtp_baresip(baresip, "bob", kamailio, 440)  # auto-answers, plays 440 Hz
    bob.wait_registered(timeout=10)
    record = tmp_path / "from-bob.wav"
    capture = tmp_path / "lo.pcap"
    with LoopbackCapture(capture, f"udp portrange {bob.rtp_ports[0]}-{bob.rtp_ports[1]}"):
        a = softphone("call", "sip:1002@127.0.0.1", "--play",
                      str(write_tone(tmp_path / "1k.wav", 1000.0)), "--record", str(record),
                      "--duration", "2", "--config",
                      str(write_config(tmp_path / "a.toml", kamailio, "1001", codecs=["PCMU"],
                                       account_extra=SDES)))
        answered = a.wait_event("answered", timeout=20)
        # baresip takes the first suite of our offer it runs: GCM, when our libsrtp has it
        assert answered["srtp"] == supported_suites()[0], answered
        assert a.wait_exit(20) == 0, a.diagnostics()
        bob.wait_for(r"terminated \(duration", 10)
    assert "RTP/SAVP" in bob.output and "a=crypto:" in bob.output
    assert_heard(bob.recordings("dec")[-1], 1000.0)
    assert_heard(record, 440.0)
    assert_wire_carries_no_tone(capture, 1000.0, 440.0, ports=ports_of(bob))


def test_baresip_calls_softphone_with_srtp(kamailio, baresip, softphone, tmp_path):
    record = tmp_path / "from-alice.wav"
    b = softphone("answer", "--auto", "--max-calls", "1", "--play",
                  str(write_tone(tmp_path / "880.wav", 880.0)), "--record", str(record),
                  "--config", str(write_config(tmp_path / "b.toml", kamailio, "1002",
                                               codecs=["PCMU"], account_extra=SDES)))
    b.wait_event("registered", timeout=15)
    alice = srtp_baresip(baresip, "alice", kamailio, 440)
    alice.wait_registered(timeout=10)
    capture = tmp_path / "lo.pcap"
    with LoopbackCapture(capture, f"udp portrange {alice.rtp_ports[0]}-{alice.rtp_ports[1]}"):
        mark = alice.mark()
        alice.dial("sip:1002@127.0.0.1")
        alice.wait_for("Call established", 15, since=mark)
        answered = b.wait_event("answered", timeout=5)
        # baresip offers AES_CM_128_HMAC_SHA1_80 first; we take the offerer's first we run
        assert answered["srtp"] == "AES_CM_128_HMAC_SHA1_80", answered
        alice.wait_for("incoming rtp for 'audio' established", 10, since=mark)
        time.sleep(1.5)  # the call's length, not a synchronisation: audio to analyse
        alice.hangup()
        assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    assert b.wait_exit(10) == 0, b.diagnostics()
    alice.stop()
    assert_heard(record, 440.0)
    assert_heard(alice.recordings("dec")[-1], 880.0)
    assert_wire_carries_no_tone(capture, 440.0, 880.0, ports=ports_of(alice))


def test_a_key_that_does_not_open_the_packets_is_a_clear_media_error(sipp, softphone,
                                                                     tmp_path):
    """SIPp announces a key of its own and echoes our SRTP back, protected with ours."""
    port = free_udp_port()
    key = base64.b64encode(bytes(range(30))).decode()
    tag = supported_suites().index("AES_CM_128_HMAC_SHA1_80") + 1
    uas = sipp.start("uas_srtp", local_port=port, rtp_echo=True, timeout=20,
                     keys={"crypto_tag": tag, "crypto_key": key})
    cfg = write_config(tmp_path / "a.toml", codecs=["PCMU"])
    cfg.write_text(direct_account("a") + cfg.read_text())
    a = softphone("call", f"sip:uas@127.0.0.1:{port}", "--duration", "10", "--config", str(cfg))
    assert a.wait_event("answered", timeout=15)["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    ended = a.wait_event("ended", timeout=10)
    assert ended["reason"] == "error" and ended["duration"] < 5, ended
    assert "failed authentication" in ended["phrase"], ended
    assert a.wait_exit(10) == 1, a.diagnostics()
    assert "call failed: SRTP: " in a.stderr_text()
    assert key not in a.stderr_text() and key not in str(a.events)
    assert uas.wait(15).ok


def test_no_suite_in_common_gets_488_with_the_reason(softphone, tmp_path):
    port = free_udp_port()
    cfg = write_config(tmp_path / "b.toml", listen=f"127.0.0.1:{port}")
    cfg.write_text(direct_account("b") + cfg.read_text())
    b = softphone("answer", "--auto", "--config", str(cfg))
    b.wait_event("listening", timeout=10)
    key = base64.b64encode(bytes(46)).decode()
    body = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{key}\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(sip_request("INVITE", f"sip:b@127.0.0.1:{port}", "127.0.0.1",
                                sock.getsockname()[1], body=body), ("127.0.0.1", port))
        got = responses(sock, 10, until=lambda statuses: any(s >= 200 for s in statuses))
    final = next(d for d in got if status(d) >= 200)
    assert status(final) == 488, final
    assert b"no SRTP suite in common" in final and key.encode() not in final
    assert b.find_event("incoming") is None
    assert b.terminate() == 0
