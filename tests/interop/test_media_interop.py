"""Real audio across real peers: baresip and SIPp through Kamailio, every codec between two
softphones, and 10 % packet loss between network namespaces. A tone goes in at one end
and is found (frequency, level, gaps) in what the other end recorded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from peers.net import free_udp_port
from peers.phoneconfig import write_config
from peers.tone import analyse, write_tone

pytestmark = pytest.mark.peers

CALL_SECONDS = "2"


@pytest.fixture
def tone_1k(tmp_path) -> Path:
    return write_tone(tmp_path / "tone1k.wav", 1000.0, seconds=3.0)


# -- every codec between two softphones --------------------------------------------------------
@pytest.mark.parametrize("codec,rate", [("PCMU", 8000), ("PCMA", 8000), ("G722", 16000),
                                        ("opus", 48000)])
def test_each_codec_between_two_softphones(codec, rate, softphone, tmp_path, tone_1k):
    port = free_udp_port()
    record = tmp_path / "heard.wav"
    callee_cfg = write_config(tmp_path / "b.toml", codecs=[codec], listen=f"127.0.0.1:{port}")
    caller_cfg = write_config(tmp_path / "a.toml", codecs=[codec])
    b = softphone("answer", "--auto", "--max-calls", "1", "--record", str(record),
                  "--config", str(callee_cfg))
    b.wait_event("listening", timeout=10)
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--play", str(tone_1k), "--duration",
                  CALL_SECONDS, "--config", str(caller_cfg))
    assert a.wait_event("answered", timeout=15)["codec"] == codec
    assert b.wait_event("answered", timeout=5)["codec"] == codec
    assert a.wait_exit(15) == 0, a.diagnostics()
    ended = b.wait_event("ended", timeout=10)
    assert ended["rtp"]["received"] >= 50, ended
    assert b.wait_exit(10) == 0, b.diagnostics()
    report = analyse(record)
    assert report.rate == rate, report
    assert report.has_tone(1000.0), report
    assert report.active_seconds > 1.0 and report.longest_gap_ms <= 60, report


def test_dtmf_between_two_softphones(softphone, tmp_path):
    port = free_udp_port()
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", codecs=["PCMU"],
                                   listen=f"127.0.0.1:{port}")))
    b.wait_event("listening", timeout=10)
    a = softphone("call", f"sip:b@127.0.0.1:{port}", "--dtmf", "12#", "--duration", CALL_SECONDS,
                  "--config", str(write_config(tmp_path / "a.toml", codecs=["PCMU"])))
    assert a.wait_exit(15) == 0, a.diagnostics()
    b.wait_event("ended", timeout=10)
    digits = [e["digit"] for e in b.events if e["event"] == "dtmf"]
    assert digits == ["1", "2", "#"], b.diagnostics()


def test_echo_service_returns_the_tone(softphone, tmp_path):
    record = tmp_path / "echoed.wav"
    tone = write_tone(tmp_path / "t.wav", 700.0, seconds=3.0)
    a = softphone("call", "echo", "--play", str(tone), "--record", str(record), "--duration",
                  CALL_SECONDS, "--config", str(write_config(tmp_path / "a.toml")))
    assert a.wait_event("answered", timeout=15)["codec"] == "opus"
    assert a.wait_exit(15) == 0, a.diagnostics()
    assert analyse(record).has_tone(700.0), analyse(record)


# -- baresip, both directions, through Kamailio ------------------------------------------------
def test_softphone_calls_baresip(kamailio, baresip, softphone, tmp_path, tone_1k):
    bob = baresip("bob", kamailio=kamailio, tone_hz=440)  # auto-answers, plays 440 Hz
    bob.wait_registered(timeout=10)
    record = tmp_path / "from-bob.wav"
    a = softphone("call", "sip:1002@127.0.0.1", "--play", str(tone_1k), "--record", str(record),
                  "--duration", CALL_SECONDS, "--config",
                  str(write_config(tmp_path / "a.toml", kamailio, "1001")))
    assert a.wait_event("answered", timeout=20)["codec"] in ("PCMU", "PCMA")
    assert a.wait_exit(20) == 0, a.diagnostics()
    bob.wait_for(r"terminated \(duration", 10)
    heard_by_bob = analyse(bob.recordings("dec")[-1])
    assert heard_by_bob.has_tone(1000.0), heard_by_bob
    heard_by_us = analyse(record)
    assert heard_by_us.has_tone(440.0), heard_by_us


def test_baresip_calls_softphone(kamailio, baresip, softphone, tmp_path):
    record = tmp_path / "from-alice.wav"
    tone = write_tone(tmp_path / "t880.wav", 880.0, seconds=3.0)
    b = softphone("answer", "--auto", "--max-calls", "1", "--play", str(tone), "--record",
                  str(record), "--config", str(write_config(tmp_path / "b.toml", kamailio, "1002")))
    b.wait_event("registered", timeout=15)
    alice = baresip("alice", kamailio=kamailio, tone_hz=440)
    alice.wait_registered(timeout=10)
    mark = alice.mark()
    alice.dial("sip:1002@127.0.0.1")
    alice.wait_for("Call established", 15, since=mark)
    b.wait_event("answered", timeout=5)
    alice.wait_for("incoming rtp for 'audio' established", 10, since=mark)
    time.sleep(1.5)  # the call's length, not a synchronisation: 1.5 s of audio to analyse
    assert b.find_event("ended") is None
    alice.hangup()
    assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    assert b.wait_exit(10) == 0, b.diagnostics()
    alice.stop()
    assert analyse(record).has_tone(440.0), analyse(record)
    assert analyse(alice.recordings("dec")[-1]).has_tone(880.0)


# -- SIPp with -rtp_echo --------------------------------------------------------------------------
def test_softphone_to_sipp_rtp_echo(kamailio, sipp, softphone, tmp_path, tone_1k):
    kamailio.restart()
    port = free_udp_port()
    uas = sipp.start("uas", local_port=port, rtp_echo=True, timeout=20)
    assert sipp.register(kamailio, "1002", contact_port=port).ok
    record = tmp_path / "echoed.wav"
    a = softphone("call", "sip:1002@127.0.0.1", "--play", str(tone_1k), "--record", str(record),
                  "--duration", CALL_SECONDS, "--config",
                  str(write_config(tmp_path / "a.toml", kamailio, "1001")))
    assert a.wait_exit(20) == 0, a.diagnostics()
    assert uas.wait(10).ok
    report = analyse(record)
    assert report.has_tone(1000.0), report
    sipp.register(kamailio, "1002", contact_port=port, expires=0)


# -- 10 % loss between network namespaces --------------------------------------------------------
def test_ten_percent_loss_keeps_audio_flowing(lossy_link, softphone, tmp_path, tone_1k):
    link = lossy_link
    port = free_udp_port()
    record = tmp_path / "lossy.wav"
    b_cfg = write_config(tmp_path / "b.toml", codecs=["PCMU"], listen=f"{link.addr_b}:{port}")
    a_cfg = write_config(tmp_path / "a.toml", codecs=["PCMU"], listen=f"{link.addr_a}:{port}")
    b = softphone("answer", "--auto", "--max-calls", "1", "--record", str(record), "--config",
                  str(b_cfg), prefix=link.exec_argv(link.ns_b, []))
    b.wait_event("listening", timeout=10)
    link.set_loss(link.ns_a, 10)
    link.set_loss(link.ns_b, 10)
    a = softphone("call", f"sip:b@{link.addr_b}:{port}", "--play", str(tone_1k), "--duration", "4",
                  "--config", str(a_cfg), prefix=link.exec_argv(link.ns_a, []))
    assert a.wait_exit(40) == 0, a.diagnostics()
    ended = b.wait_event("ended", timeout=20)
    assert b.wait_exit(10) == 0, b.diagnostics()
    rtp = ended["rtp"]
    assert rtp["received"] > 100 and rtp["lost"] > 0, rtp  # loss really happened
    assert rtp["concealed"] > 0, rtp  # and was concealed
    assert rtp["playout_ms"] <= 200, rtp  # the buffer stayed bounded
    report = analyse(record)
    assert report.has_tone(1000.0), report
    assert report.longest_gap_ms <= 60, report
