"""SrtpStreams on pylibsrtp: both directions, a wrong key counted as failing, duplicates
not mistaken for a wrong key, a re-key that still opens packets sent before the switch."""

from __future__ import annotations

import os
import struct

import pytest

from softphone.media.srtp import AUTH_FAILURES_BEFORE_ERROR, SrtpStreams, supported_suites

KEY_BYTES = {"AEAD_AES_128_GCM": 28, "AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30}


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([0xFF]) * 160


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def pair(suite: str):
    a_key, b_key = os.urandom(KEY_BYTES[suite]), os.urandom(KEY_BYTES[suite])
    return SrtpStreams(suite, a_key, b_key), SrtpStreams(suite, b_key, a_key), (a_key, b_key)


@pytest.mark.parametrize("suite", supported_suites())
def test_both_directions_rtp_and_rtcp(suite):
    a, b, keys = pair(suite)
    for seq in range(1, 4):
        wire = a.protect(rtp(seq))
        assert wire != rtp(seq) and wire[:12] == rtp(seq)[:12]  # header in clear
        assert b.unprotect(wire) == rtp(seq)
        assert a.unprotect(b.protect(rtp(seq, 0x99))) == rtp(seq, 0x99)
    assert b.unprotect_rtcp(a.protect_rtcp(rtcp_rr())) == rtcp_rr()
    assert (b.opened, b.auth_failures) == (4, 0)
    assert all(k.hex() not in repr(a) for k in keys)


def test_a_wrong_key_fails_and_says_so_after_a_burst():
    a, _, _ = pair("AES_CM_128_HMAC_SHA1_80")
    stranger = SrtpStreams("AES_CM_128_HMAC_SHA1_80", os.urandom(30), os.urandom(30))
    for seq in range(1, AUTH_FAILURES_BEFORE_ERROR):
        assert stranger.unprotect(a.protect(rtp(seq))) is None
    assert not stranger.failing
    stranger.unprotect(a.protect(rtp(AUTH_FAILURES_BEFORE_ERROR)))
    assert stranger.failing and stranger.auth_failures == AUTH_FAILURES_BEFORE_ERROR
    assert stranger.unprotect(b"\x80\x00") is None  # too short: counted, never raised


def test_a_replayed_packet_is_dropped_without_counting_as_a_failure():
    a, b, _ = pair("AES_CM_128_HMAC_SHA1_80")
    wire = a.protect(rtp(7))
    assert b.unprotect(wire) == rtp(7)
    assert b.unprotect(wire) is None
    assert (b.replays, b.auth_failures) == (1, 0)


def test_rekey_keeps_the_old_receive_key_for_late_packets():
    a, b, (a_key, b_key) = pair("AES_CM_128_HMAC_SHA1_80")
    late = a.protect(rtp(1))  # sent with a's old key, arrives after b learned the new one
    new_a_key = os.urandom(30)
    b.rekey("AES_CM_128_HMAC_SHA1_80", b_key, new_a_key)
    a.rekey("AES_CM_128_HMAC_SHA1_80", new_a_key, b_key)
    assert b.unprotect(late) == rtp(1)
    assert b.unprotect(a.protect(rtp(2))) == rtp(2)
    assert b.auth_failures == 0
    assert b.same("AES_CM_128_HMAC_SHA1_80", b_key, new_a_key)
