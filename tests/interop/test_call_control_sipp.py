"""100rel/PRACK, UPDATE, session timers and redirects against SIPp (a real SIP peer that
checks what we send with its regexps), each test citing the RFC section it follows."""

from __future__ import annotations

import pytest

from agents import make_agent
from media_helpers import wait_for
from peers.net import free_udp_port
from peers.phoneconfig import write_config
from softphone.config import Config

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]


def config(tmp_path, name: str = "a.toml", **kw):
    return str(write_config(tmp_path / name, codecs=["PCMU"], **kw))


def caller(softphone, tmp_path, port: int, *args: str):
    return softphone("call", f"sip:uas@127.0.0.1:{port}", *args, "--config", config(tmp_path))


def completed_call_to(sipp, softphone, tmp_path, scenario: str, *args: str):
    """A SIPp UAS running ``scenario`` on a free port, our call to it (answered, exit 0),
    and the UAS's result, which must have passed (its checks are in the scenario)."""
    port = free_udp_port()
    uas = sipp.start(scenario, local_port=port, timeout=20, media_port=free_udp_port())
    a = caller(softphone, tmp_path, port, *args)
    assert a.wait_event("answered", timeout=15)
    assert a.wait_exit(15) == 0, a.diagnostics()
    result = uas.wait(10)
    assert result.ok, result.explain()
    return a, result


def test_rfc3262_s3_uac_requiring_100rel_gets_a_reliable_180(softphone, sipp, tmp_path):
    port = free_udp_port()
    b = softphone("answer", "--auto", "--delay", "0.5", "--max-calls", "1", "--config",
                  config(tmp_path, listen=f"127.0.0.1:{port}"))
    b.wait_event("listening", timeout=15)
    result = sipp.run("uac_100rel", remote=f"127.0.0.1:{port}", service="b", timeout=15)
    assert result.ok, result.explain()
    assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    log = result.messages()
    assert "RSeq:" in log and "PRACK sip:" in log


def test_rfc3262_s3_reliable_provisional_required_from_config_both_ways(softphone, sipp,
                                                                        tmp_path):
    """``[sip] reliable_provisional = "required"``: our INVITE says Require: 100rel, and a
    UAS without it refuses with 420 (we do not retry without it: it was required); a
    caller without 100rel gets our 421 Extension Required (Require: 100rel)."""
    required = '[sip]\nreliable_provisional = "required"\n'
    uas = sipp.start("uas_420", timeout=15)
    a = softphone("call", f"sip:uas@127.0.0.1:{uas.local_port}", "--config",
                  config(tmp_path, "a.toml", extra=required))
    assert a.wait_exit(15) == 1, a.diagnostics()
    assert "call failed: 420 Bad Extension" in a.stderr_text()
    result = uas.wait(10)
    assert result.ok, result.explain()  # it checked Require: 100rel; one INVITE only
    port = free_udp_port()
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  config(tmp_path, "b.toml", listen=f"127.0.0.1:{port}", extra=required))
    b.wait_event("listening", timeout=15)
    result = sipp.run("uac_no100rel", remote=f"127.0.0.1:{port}", service="b", timeout=10)
    assert result.ok, result.explain()  # it got 421 with Require: 100rel
    assert b.find_event("answered") is None


def test_rfc3262_s4_reliable_183_with_sdp_is_pracked_and_gives_early_media(softphone, sipp,
                                                                           tmp_path):
    port = free_udp_port()
    uas = sipp.start("uas_183_100rel", local_port=port, timeout=20, media_port=free_udp_port())
    a = caller(softphone, tmp_path, port, "--duration", "1")
    assert a.wait_event("early_media", timeout=15)["codec"] == "PCMU"
    assert a.wait_event("answered", timeout=10)
    assert a.wait_exit(15) == 0, a.diagnostics()
    result = uas.wait(10)
    assert result.ok, result.explain()  # it checked Supported: 100rel and our RAck
    assert result.messages().count("PRACK sip:") == 1


def test_rfc3311_s5_2_update_with_and_without_sdp_is_answered(softphone, sipp, tmp_path):
    port = free_udp_port()
    uas = sipp.start("uas_update", local_port=port, timeout=20, media_port=free_udp_port())
    a = caller(softphone, tmp_path, port, "--duration", "2")
    assert a.wait_event("answered", timeout=15)
    hold = a.wait_event("hold", timeout=10)
    assert (hold["local"], hold["remote"]) == (False, True)  # the UPDATE's a=sendonly
    assert a.wait_exit(15) == 0, a.diagnostics()
    result = uas.wait(10)
    assert result.ok, result.explain()  # it checked our a=recvonly answer


async def test_rfc3311_s5_1_hold_before_the_answer_is_an_update_in_the_early_dialog(
        sipp, tmp_path):
    """Our phone (in this process, to hold while it is early) against SIPp's reliable 183:
    the hold goes out as an UPDATE with a=sendonly in the early dialog; SIPp's own UPDATE
    without SDP there gets a plain 200; the hold holds after the answer."""
    uas = sipp.start("uas_early_update", timeout=20, media_port=free_udp_port())
    agent = make_agent(Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                                         "audio": {"codecs": ["PCMU"]}}), user="alice")
    await agent.start(preload_media=False)
    try:
        call = await agent.dial(f"sip:uas@127.0.0.1:{uas.local_port}")
        await wait_for(lambda: call.state == "early", 10, "the early dialog")
        await call.set_hold(True)
        assert call.on_hold and call.state == "early"
        assert await call.wait_answered(10), call.end_info
        assert call.on_hold
        await call.hangup()
    finally:
        await agent.close(timeout=2)
    result = uas.wait(10)
    # it checked, in this order: our UPDATE in the early dialog with a=sendonly before its
    # 2xx to the INVITE, and a bodiless 200 to its own UPDATE
    assert result.ok, result.explain()
    log = result.messages()
    assert "UPDATE sip:uas@" in log and "UPDATE sip:alice@" in log


def test_rfc4488_s4_a_202_with_refer_sub_false_ends_the_transfer_as_accepted(softphone, sipp,
                                                                              tmp_path):
    """SIPp takes our blind transfer with ``Refer-Sub: false`` (no NOTIFY will come): the
    scenario's transfer step passes on the 202 alone and our call ends with a BYE."""
    uas = sipp.start("uas_refer_nosub", timeout=20, media_port=free_udp_port())
    path = tmp_path / "transfer.toml"
    path.write_text('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "transfer"\n'
                    'target = "sip:carol@127.0.0.1:5999"\nwithin = 10\n')
    a = softphone("call", f"sip:uas@127.0.0.1:{uas.local_port}", "--scenario", str(path),
                  "--config", config(tmp_path))
    assert a.wait_exit(20) == 0, a.diagnostics()
    states = [(e["state"], e.get("reason")) for e in a.events if e["event"] == "transfer"]
    assert states[-1] == ("succeeded", "accepted without a subscription"), states
    assert a.wait_event("ended", timeout=5)["reason"] == "hangup"
    result = uas.wait(10)
    assert result.ok, result.explain()  # it checked the hold, Refer-To and Referred-By


def test_rfc4028_s10_a_short_interval_is_refreshed_by_update(softphone, sipp, tmp_path):
    _, result = completed_call_to(sipp, softphone, tmp_path, "uas_timer_refresh",
                                  "--duration", "3")
    log = result.messages()
    assert "Session-Expires: 1800" in log and "Min-SE: 90" in log  # what we asked first
    assert "UPDATE sip:" in log


def test_rfc4028_s10_without_update_the_refresh_is_a_re_invite(softphone, sipp, tmp_path):
    """The far end allows no UPDATE: our refresh (at half the 4 s interval) is a re-INVITE
    with Session-Expires and the same SDP, answered, ACKed, and the call goes on."""
    a, result = completed_call_to(sipp, softphone, tmp_path, "uas_timer_reinvite",
                                  "--duration", "3")
    assert a.find_event("ended")["reason"] == "hangup"
    assert "UPDATE sip:" not in result.messages()


def test_rfc4028_s10_no_refresh_from_the_refresher_ends_the_call_with_bye(softphone, sipp,
                                                                          tmp_path):
    port = free_udp_port()
    uas = sipp.start("uas_timer_expire", local_port=port, timeout=20,
                     media_port=free_udp_port())
    a = caller(softphone, tmp_path, port, "--duration", "20")
    answered = a.wait_event("answered", timeout=15)
    ended = a.wait_event("ended", timeout=10)
    assert ended["reason"] == "timeout" and "RFC 4028" in ended["phrase"], ended
    # 4 s interval: BYE min(32, 4/3) s before it runs out
    assert 2.2 <= ended["t"] - answered["t"] <= 3.6, (answered, ended)
    assert a.wait_exit(10) == 1
    result = uas.wait(10)
    assert result.ok, result.explain()


def test_rfc4028_s7_4_a_422_is_retried_with_its_min_se(softphone, sipp, tmp_path):
    # the UAS checks Session-Expires/Min-SE: 1900
    completed_call_to(sipp, softphone, tmp_path, "uas_422", "--duration", "1")


def test_rfc3261_s8_1_3_4_302_with_two_contacts_is_followed_by_q_value(softphone, sipp,
                                                                       tmp_path):
    busy_port, answer_port, redirect_port = free_udp_port(), free_udp_port(), free_udp_port()
    busy = sipp.start("uas_busy", local_port=busy_port, timeout=20)  # q=0.8: tried first
    b = softphone("answer", "--auto", "--max-calls", "1", "--config",
                  config(tmp_path, "b.toml", listen=f"127.0.0.1:{answer_port}"))
    b.wait_event("listening", timeout=15)
    redirect = sipp.start("uas_302", local_port=redirect_port, timeout=20,
                          keys={"high_port": busy_port, "low_port": answer_port})
    a = caller(softphone, tmp_path, redirect_port, "--duration", "1")
    first = a.wait_event("redirected", timeout=15)
    assert (first["status"], first["target"]) == (302, f"sip:high@127.0.0.1:{busy_port}")
    assert first["contacts"] == [f"sip:high@127.0.0.1:{busy_port}",
                                 f"sip:low@127.0.0.1:{answer_port}"]
    second = a.wait_event("redirected", timeout=10, target=f"sip:low@127.0.0.1:{answer_port}")
    assert second["status"] == 486  # the first target was busy: the next one
    assert a.wait_event("answered", timeout=10)
    assert a.wait_exit(15) == 0, a.diagnostics()
    assert b.wait_event("ended", timeout=10)["reason"] == "remote-hangup"
    for peer in (redirect, busy):
        result = peer.wait(10)
        assert result.ok, result.explain()


def test_max_redirects_0_treats_a_302_as_a_rejection(softphone, sipp, tmp_path):
    redirect_port = free_udp_port()
    redirect = sipp.start("uas_302", local_port=redirect_port, timeout=20,
                          keys={"high_port": free_udp_port(), "low_port": free_udp_port()})
    a = softphone("call", f"sip:uas@127.0.0.1:{redirect_port}", "--config",
                  str(write_config(tmp_path / "a.toml", extra="[calls]\nmax_redirects = 0")))
    assert a.wait_exit(15) == 1
    assert "call failed: 302 Moved Temporarily" in a.stderr_text()
    assert a.find_event("redirected") is None
    assert redirect.wait(10).ok


def test_rfc6086_dtmf_as_sip_info_when_the_answer_has_no_telephone_event(softphone, sipp,
                                                                        tmp_path):
    """dtmf_mode auto: the far end (SIPp) answered without telephone-event, so `--dtmf 42`
    goes as two SIP INFO application/dtmf-relay requests, one digit each, in order (SIPp
    checks the Content-Type and each Signal=)."""
    _, result = completed_call_to(sipp, softphone, tmp_path, "uas_info_dtmf",
                                  "--dtmf", "42", "--duration", "2")
    log = result.messages()
    assert log.count("INFO sip:") == 2 and "Signal=4" in log and "Signal=2" in log
