"""Hold and resume against real peers: a SIPp UAS that challenges the re-INVITE and the
BYE, and baresip through Kamailio (RFC 3264 §8.4)."""

from __future__ import annotations

import hashlib
import re

import pytest

from media_helpers import wait_for
from peers.phoneconfig import write_config
from agents import make_agent, register
from softphone.config import Config, load_config


@pytest.mark.peers
async def test_challenged_reinvite_and_bye_are_answered(sipp):
    """A UAS that challenges the re-INVITE (407) and the BYE (401, qop=auth) and verifies
    our digest with SIPp's verifyauth: both go through, with a fresh digest client each."""
    from peers.net import free_udp_port

    port = free_udp_port()
    uas = sipp.start("uas_challenge_indialog", local_port=port, timeout=20,
                     keys={"digest_user": "alice", "digest_pw": "in-dialog-s3cret"})
    cfg = Config.from_dict({
        "accounts": [{"name": "a", "aor": "sip:alice@127.0.0.1", "password": "in-dialog-s3cret",
                      "register": False}],
        "network": {"listen": "127.0.0.1:0", "rate_limit": 0}, "audio": {"codecs": ["PCMU"]}})
    ua = make_agent(cfg, cfg.accounts[0])
    await ua.start(preload_media=False)
    try:
        call = await ua.dial(f"sip:uas@127.0.0.1:{port}")
        assert await call.wait_answered(10), call.end_info
        await call.set_hold(True)
        assert call.on_hold and call.media.direction == "sendonly"
        await call.hangup()
        assert call.end_info["reason"] == "hangup"
    finally:
        await ua.close(timeout=3)
    result = uas.wait(15)
    assert result.ok, result.explain()
    log = result.messages()
    verified = re.findall(r"^X-Digest-Verified: (\S*)", log, re.M)
    assert verified == ["true"], log[-3000:]  # SIPp checked the BYE's digest (qop=auth)
    # the re-INVITE's Proxy-Authorization, recomputed here (RFC 2617 §3.2.2, no qop)
    header = re.search(r"^Proxy-Authorization: Digest (.*)$", log, re.M).group(1)
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1 = md5("alice:sipp.test:in-dialog-s3cret")
    assert params["response"] == md5(f"{ha1}:{params['nonce']}:{md5('INVITE:' + params['uri'])}")


@pytest.mark.peers
async def test_hold_and_resume_with_baresip(kamailio, baresip, tmp_path):
    bob = baresip("bob", kamailio=kamailio, tone_hz=440)  # auto-answers
    bob.wait_registered(timeout=10)
    cfg = load_config(write_config(tmp_path / "a.toml", kamailio, "1001"))
    wire: list[tuple[str, bytes]] = []
    ua = make_agent(cfg, cfg.accounts[0], wire=wire)
    await ua.start(preload_media=False)
    try:
        assert await register(ua, 10)
        call = await ua.dial("sip:1002@127.0.0.1")
        assert await call.wait_answered(15), call.end_info
        await wait_for(lambda: call.stats()["received"] > 10, 10, "baresip's RTP")
        await call.set_hold(True)
        assert call.media.direction == "sendonly"  # baresip answered recvonly
        reinvite = [d for direction, d in wire if direction == "sent"
                    and d.startswith(b"INVITE ") and b"a=sendonly" in d][-1]
        cseq = re.search(rb"CSeq: (\d+) INVITE", reinvite).group(0)
        answer = [d for direction, d in wire if direction == "received"
                  and d.startswith(b"SIP/2.0 200") and cseq in d][-1]
        assert b"a=recvonly" in answer, answer.decode(errors="replace")
        await call.set_hold(False)
        assert call.media.direction == "sendrecv"
        resumed_at = call.stats()["received"]
        await wait_for(lambda: call.stats()["received"] >= resumed_at + 10, 10,
                       "baresip's RTP after resume")
        await call.hangup()
        assert call.end_info["reason"] == "hangup"
        # baresip says "terminated (duration …)" or, for a short call, "session closed"
        bob.wait_for(r"terminated \(duration|session closed", 10)
    finally:
        await ua.close(timeout=3)
