"""SRTP (SDES) between two user agents in-process on loopback: every suite both ways, the
wire carries no plain RTP, hold/resume re-keys and the audio keeps flowing, refusals say
why, and SDES over plain-text signalling is refused at dial time."""

from __future__ import annotations

import pytest

from agents import make_agent, port_of
from media_helpers import wait_for
from softphone.config import Config
from softphone.media.srtp import supported_suites
from softphone.sip import sdes
from softphone.ua.errors import CallError


def config(encryption: str, *, allow: bool = True, user: str = "a", **account) -> Config:
    return Config.from_dict({
        "accounts": [{"name": user, "aor": f"sip:{user}@127.0.0.1", "register": False,
                      "media_encryption": encryption, "allow_sdes_over_udp": allow,
                      **account}],
        "network": {"listen": "127.0.0.1:0", "rate_limit": 0},
        "audio": {"codecs": ["PCMU"]}})


async def pair(caller_enc: str, callee_enc: str, *, wire: list | None = None,
               callee_events: list | None = None):
    callee_cfg = config(callee_enc, user="b")
    caller_cfg = config(caller_enc)
    callee = make_agent(callee_cfg, callee_cfg.accounts[0], auto_answer=True,
                        events=callee_events)
    caller = make_agent(caller_cfg, caller_cfg.accounts[0], wire=wire)
    await callee.start(preload_media=False)
    await caller.start(preload_media=False)
    return caller, callee, f"sip:b@127.0.0.1:{port_of(callee)}"


def test_the_libsrtp_build_runs_the_issue_suites():
    assert {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"} <= set(supported_suites())
    assert set(supported_suites()) <= set(sdes.SUITES)


@pytest.mark.parametrize("suite", supported_suites())
async def test_each_suite_carries_media_both_ways_and_no_plain_rtp(suite, monkeypatch):
    from softphone.media import srtp as media_srtp

    # offer only this suite: the callee must pick it
    monkeypatch.setattr(media_srtp, "supported_suites", lambda: (suite,))
    wire: list = []
    events: list = []
    caller, callee, target = await pair("sdes-required", "sdes", wire=wire, callee_events=events)
    captured: list[tuple[str, bytes]] = []
    caller.media_tap = lambda direction, data, local, remote: captured.append((direction, data))
    try:
        call = await caller.dial(target)
        assert await call.wait_answered(5), call.end_info
        assert call.media.srtp == suite
        await wait_for(lambda: call.stats()["received"] >= 25 and call.stats()["sent"] >= 25, 10,
                       "SRTP both ways")
        answered = [fields for name, fields in events if name == "answered"]
        assert answered and answered[0]["srtp"] == suite
        rtp_out = [d for direction, d in captured if direction == "sent" and d[1] & 0x7F == 0]
        assert len(rtp_out) >= 20
        # encrypted PCMU of a null source (silence, 0xff) never shows as a run of 0xff
        assert all(d[12:20] != b"\xff" * 8 for d in rtp_out)
        tag = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4,
               "AEAD_AES_128_GCM": 16}[suite]
        assert {len(d) for d in rtp_out} == {12 + 160 + tag}
        # SRTCP: a report each way now (the first is otherwise seconds away), opened
        remote = next(iter(callee.calls.values()))
        for rtp in (call.media.rtp, remote.media.rtp):
            rtp.rtcp.due = 0.0
        await wait_for(lambda: call.media.rtp.counters.rtcp_received >= 1
                       and remote.media.rtp.counters.rtcp_received >= 1, 5, "SRTCP both ways")
        assert call.media.rtp.counters.malformed == remote.media.rtp.counters.malformed == 0
        rtcp_out = [d for direction, d in captured if direction == "sent" and 200 <= d[1] <= 204]
        # the SRTCP E flag and index: before the 80-bit tag (RFC 3711 §3.4, even for _32),
        # at the very end with GCM (RFC 7714 §9)
        e_flag = -4 if suite.startswith("AEAD") else -14
        assert rtcp_out and all(d[e_flag] & 0x80 for d in rtcp_out)
        invite = next(d for direction, d in wire if d.startswith(b"INVITE "))
        assert b"RTP/SAVP" in invite and f"a=crypto:1 {suite} inline:".encode() in invite
        await call.hangup()
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)


async def test_hold_and_resume_rekey_and_media_survives():
    wire: list = []
    caller, callee, target = await pair("sdes", "sdes-required", wire=wire)
    try:
        call = await caller.dial(target)
        assert await call.wait_answered(5), call.end_info
        assert call.media.srtp is not None
        remote = next(iter(callee.calls.values()))
        await wait_for(lambda: remote.stats()["received"] >= 10, 10, "RTP before hold")
        first_keys = call.media.negotiated.srtp
        await call.set_hold(True)
        await call.set_hold(False)
        keys = call.media.negotiated.srtp
        assert keys.send_key != first_keys.send_key and keys.receive_key != first_keys.receive_key
        offers = [d for direction, d in wire if direction == "sent" and d.startswith(b"INVITE ")]
        assert len(offers) == 3 and all(b"a=crypto:" in d for d in offers)
        before = remote.stats()["received"]
        caller_before = call.stats()["received"]
        await wait_for(lambda: remote.stats()["received"] >= before + 25
                       and call.stats()["received"] >= caller_before + 25, 10,
                       "SRTP both ways after the re-key")
        assert remote.media.rtp._srtp.auth_failures <= 5  # at most the switch-over
        await call.hangup()
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)


@pytest.mark.parametrize("caller_enc,status", [("sdes-required", 488), ("sdes", None)])
async def test_against_a_peer_that_does_not_encrypt(caller_enc, status):
    """Required: refused with 488. Best effort: a plain call."""
    caller, callee, target = await pair(caller_enc, "none")
    try:
        call = await caller.dial(target)
        assert await call.wait_answered(5) is (status is None), call.end_info
        if status is None:
            assert call.media.srtp is None
            await call.hangup()
        else:
            assert call.end_info["status"] == status, call.end_info
    finally:
        await caller.close(timeout=3)
        await callee.close(timeout=3)


async def test_sdes_over_udp_refused_at_dial_time():
    cfg = Config.from_dict({
        "accounts": [{"name": "a", "aor": "sip:a@127.0.0.1", "register": False,
                      "media_encryption": "sdes", "transport": "tls"}],
        "network": {"listen": "127.0.0.1:0"}})
    ua = make_agent(cfg, cfg.accounts[0])
    await ua.start(preload_media=False)
    try:
        with pytest.raises(CallError, match="udp signalling in clear text"):
            await ua.dial("sip:b@127.0.0.1:5999;transport=udp")
        assert ua.calls == {}
    finally:
        await ua.close(timeout=3)
