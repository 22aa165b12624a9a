"""SDES (RFC 4568) in the pure SDP code: a=crypto parsing, offers, answers, re-keying,
refusals with reasons, and keys that never print."""

from __future__ import annotations

import base64

import pytest

from softphone.sip import sdes, sdp
from softphone.sip.negotiator import MediaPolicy, SdpNegotiator

SUITES = ("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
KEY30 = base64.b64encode(bytes(range(30))).decode()
KEY28 = base64.b64encode(bytes(range(28))).decode()


def offer_text(proto: str = "RTP/SAVP", crypto: tuple[str, ...] = (), codecs: str = "0") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             f"m=audio 4000 {proto} {codecs}", "a=rtpmap:0 PCMU/8000"]
    lines += [f"a=crypto:{c}" for c in crypto]
    return ("\r\n".join(lines) + "\r\n").encode()


def negotiator(encryption: str, suites=SUITES, refused: str | None = None) -> SdpNegotiator:
    return SdpNegotiator(MediaPolicy(codecs=("PCMU",), encryption=encryption,
                                     srtp_suites=suites, sdes_refused=refused),
                         address="127.0.0.1", port=5000)


def test_crypto_line_round_trip_and_no_key_in_repr():
    c = sdes.parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20 WSH=64")
    assert (c.tag, c.suite, c.key, c.lifetime, c.params) == \
        (1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)), "2^20", ("WSH=64",))
    assert str(c) == f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20 WSH=64"
    assert KEY30 not in repr(c) and str(bytes(range(30))) not in repr(c)
    keys = sdes.SrtpKeys("AES_CM_128_HMAC_SHA1_80", b"k" * 30, b"r" * 30)
    assert "kkkk" not in repr(keys) and "rrrr" not in repr(keys)


@pytest.mark.parametrize("value", ["1 AES_CM_128_HMAC_SHA1_80", "x AES inline:AAAA",
                                   "1 AES_CM_128_HMAC_SHA1_80 inline:@@not-base64@@",
                                   "1 AES_CM_128_HMAC_SHA1_80 uri:http://x"])
def test_unreadable_crypto_lines_raise_without_quoting_the_key(value):
    with pytest.raises(sdes.CryptoError) as info:
        sdes.parse_crypto(value)
    for secret in ("AAAA", "@@not-base64@@", "http://x"):
        assert secret not in str(info.value)


def test_unreadable_crypto_line_is_dropped_not_kept_verbatim():
    parsed = sdp.parse_sdp(offer_text(crypto=("1 AES_CM_128_HMAC_SHA1_80 inline:@@secret@@",)))
    m = parsed.media[0]
    assert m.crypto == [] and all(a.name != "crypto" for a in m.attributes)
    assert "secret" not in repr(parsed)


def test_offer_is_savp_with_fresh_keys_for_each_suite_when_required():
    n = negotiator("sdes-required")
    offer = n.create_offer()
    m = offer.media[0]
    assert m.proto == "RTP/SAVP"
    assert [(c.tag, c.suite) for c in m.crypto] == list(enumerate(SUITES, 1))
    assert [len(c.key) for c in m.crypto] == [28, 30, 30]
    assert len({c.key for c in m.crypto}) == 3
    text = offer.to_text()
    assert text.count("a=crypto:") == 3
    assert sdp.parse_sdp(text).media[0].crypto[0].key == m.crypto[0].key


def test_best_effort_offer_is_avp_with_crypto_and_takes_a_plain_answer():
    n = negotiator("sdes")
    offer = n.create_offer()
    assert offer.media[0].proto == "RTP/AVP" and offer.media[0].crypto
    neg = n.receive_answer(offer_text("RTP/AVP"))
    assert neg.srtp is None  # the far end does not encrypt: plain RTP


def test_answer_to_our_offer_gives_both_keys():
    n = negotiator("sdes-required")
    offer = n.create_offer()
    ours = offer.media[0].crypto[1]
    neg = n.receive_answer(offer_text(crypto=(f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)))
    assert neg.srtp.suite == "AES_CM_128_HMAC_SHA1_80"
    assert neg.srtp.send_key == ours.key and neg.srtp.receive_key == bytes(range(30))
    assert n.srtp_suite == "AES_CM_128_HMAC_SHA1_80"


@pytest.mark.parametrize("answer,why", [
    (offer_text(), "without an a=crypto"),
    (offer_text(crypto=(f"9 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)), "matches no line"),
    (offer_text(crypto=(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}",)), "matches no line"),
    (offer_text(crypto=(f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY28}",)), "not usable"),
])
def test_bad_answers_to_a_savp_offer_are_errors(answer, why):
    n = negotiator("sdes-required")
    n.create_offer()
    with pytest.raises(sdp.SdpError, match=why):
        n.receive_answer(answer)


def test_answering_picks_the_first_offered_suite_we_run_with_our_own_key():
    n = negotiator("sdes")
    n.receive_offer(offer_text(crypto=(f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY30}{KEY30}",
                                       f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}",
                                       f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}")))
    answer, neg = n.create_answer()
    (line,) = answer.media[0].crypto
    assert (line.tag, line.suite) == (2, "AES_CM_128_HMAC_SHA1_32")
    assert answer.media[0].proto == "RTP/SAVP"
    assert neg.srtp.receive_key == bytes(range(30)) and neg.srtp.send_key == line.key
    assert line.key != bytes(range(30)) and len(line.key) == 30


@pytest.mark.parametrize("encryption,offer,reason", [
    ("sdes", offer_text(crypto=(f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY30}{KEY30}",)),
     "no SRTP suite in common"),
    ("sdes-required", offer_text("RTP/AVP"), "has no a=crypto"),
    ("sdes", offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} "
                                "UNENCRYPTED_SRTP",)), "weaken"),
    ("sdes", offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4",)), "MKI"),
    ("none", offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)),
     "media_encryption is none"),
])
def test_offers_we_cannot_encrypt_are_refused_with_the_reason(encryption, offer, reason):
    n = negotiator(encryption)
    with pytest.raises(sdp.NoCommonCodec, match=reason):
        n.receive_offer(offer)
    assert KEY30 not in str(reason)


def test_best_effort_answer_encrypts_an_avp_offer_with_crypto_and_not_one_without():
    n = negotiator("sdes")
    n.receive_offer(offer_text("RTP/AVP", crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)))
    answer, neg = n.create_answer()
    assert answer.media[0].proto == "RTP/AVP" and len(answer.media[0].crypto) == 1
    assert neg.srtp is not None
    plain = negotiator("sdes")
    plain.receive_offer(offer_text("RTP/AVP"))
    answer, neg = plain.create_answer()
    assert answer.media[0].crypto == [] and neg.srtp is None
    ignoring = negotiator("none")
    ignoring.receive_offer(offer_text("RTP/AVP", crypto=(f"1 AES_CM_128_HMAC_SHA1_80 "
                                                         f"inline:{KEY30}",)))
    answer, neg = ignoring.create_answer()
    assert answer.media[0].crypto == [] and neg.srtp is None


def test_reinvite_rekeys_and_cannot_downgrade():
    n = negotiator("sdes")
    n.receive_offer(offer_text("RTP/AVP", crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)))
    _, first = n.create_answer()
    # our re-offer (hold): fresh keys on every line
    offer = n.create_offer("sendonly")
    assert first.srtp.send_key not in {c.key for c in offer.media[0].crypto}
    n.cancel_offer()
    # their re-offer with a new key: our answer re-keys too
    other = base64.b64encode(bytes(range(100, 130))).decode()
    n.receive_offer(offer_text("RTP/AVP", crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{other}",)))
    _, second = n.create_answer()
    assert second.srtp.receive_key == bytes(range(100, 130))
    assert second.srtp.send_key != first.srtp.send_key
    # a re-offer without keys would turn encryption off: refused (488), the call stays encrypted
    with pytest.raises(sdp.NoCommonCodec, match="no a=crypto"):
        n.receive_offer(offer_text("RTP/AVP"))
    assert n.srtp_suite == "AES_CM_128_HMAC_SHA1_80"


def test_sdes_refused_over_plain_signalling():
    why = "SDES keys would cross udp in clear text"
    required = negotiator("sdes-required", refused=why)
    with pytest.raises(sdp.NoCommonCodec, match=why):
        required.receive_offer(offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",)))
    best_effort = negotiator("sdes", refused=why)
    with pytest.raises(sdp.NoCommonCodec, match=why):  # RTP/SAVP cannot be answered plain
        best_effort.receive_offer(offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 "
                                                     f"inline:{KEY30}",)))
    best_effort = negotiator("sdes", refused=why)
    best_effort.receive_offer(offer_text("RTP/AVP", crypto=(f"1 AES_CM_128_HMAC_SHA1_80 "
                                                            f"inline:{KEY30}",)))
    answer, neg = best_effort.create_answer()
    assert neg.srtp is None and answer.media[0].crypto == []
    assert best_effort.create_offer().media[0].crypto == []


def test_mask_blanks_keys_and_keeps_the_length():
    body = offer_text(crypto=(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20",
                              f"2 AEAD_AES_128_GCM inline:{KEY28}"))
    message = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    masked = sdes.mask(message)
    assert len(masked) == len(message)
    assert KEY30.encode() not in masked and KEY28.encode() not in masked
    assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + b"*" * len(KEY30) + b"|2^20" in masked
    plain = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"
    assert sdes.mask(plain) is plain
