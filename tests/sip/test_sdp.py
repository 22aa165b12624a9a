"""SDP parse/serialize and RFC 3264 offer/answer (softphone.sip.sdp), sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softphone.sip.sdp import (
    Codec, Connection, NoCommonCodec, SdpError, SessionDescription, answer_offer, apply_answer,
    make_offer, parse_sdp,
)

OURS = ["opus", "G722", "PCMU", "PCMA"]


def sdp(text: str, newline: str = "\r\n") -> bytes:
    """Test helper: indented multi-line text → SDP bytes with the given line ending."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return (newline.join(lines) + newline).encode()


def answer(offer_bytes: bytes, **kwargs):
    args = dict(address="127.0.0.1", port=40000, codecs=OURS, session_id=7, session_version=1)
    args.update(kwargs)
    return answer_offer(parse_sdp(offer_bytes), **args)


# Captured from baresip 1.0.0 (Debian 12) dialing a UDP socket on this machine, with the
# opus, g722 and g711 modules loaded.
BARESIP_OFFER = sdp("""
    v=0
    o=- 2978822727 1632091208 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    a=tool:baresip 1.0.0
    m=audio 10960 RTP/AVP 96 9 0 8 101
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv
    a=label:1
    a=rtcp-rsize
    a=ssrc:2432987147 cname:sip:bs@127.0.0.1
    a=minptime:20
    a=ptime:20
""")

# Asterisk (chan_sip style) offer: G.711 both laws, GSM, RFC 4733 events, maxptime.
ASTERISK_OFFER = sdp("""
    v=0
    o=root 1821430283 1821430283 IN IP4 127.0.0.1
    s=Asterisk PBX 16.28.0
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 17208 RTP/AVP 0 8 3 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

# What a UA's offer looks like after Kamailio + rtpengine: media-level c=, a=rtcp with an
# address, the nortpproxy marker at session level.
KAMAILIO_RTPENGINE_OFFER = sdp("""
    v=0
    o=1001 4211 4212 IN IP4 127.0.0.1
    s=Talk
    c=IN IP4 127.0.0.1
    t=0 0
    a=nortpproxy:yes
    m=audio 30000 RTP/AVP 8 0 101
    c=IN IP4 127.0.0.2
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv
    a=rtcp:30003 IN IP4 127.0.0.3
    a=ptime:20
""")

# linphone 5.x with video enabled: opus on PT 96 in audio *and* VP8 on PT 96 in video,
# rtcp-fb, several telephone-event clock rates, an extra session attribute.
LINPHONE_OFFER = sdp("""
    v=0
    o=1003 3512 1203 IN IP4 127.0.0.1
    s=Talk
    c=IN IP4 127.0.0.1
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    a=record:off
    m=audio 10800 RTP/AVP 96 97 98 0 8 18 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 SILK/16000
    a=rtpmap:98 speex/16000
    a=fmtp:98 vbr=on
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=yes
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
    a=rtcp-fb:* ccm tmmbr
    m=video 10900 RTP/AVP 96 97
    a=rtpmap:96 VP8/90000
    a=rtpmap:97 H264/90000
    a=fmtp:97 profile-level-id=42801F
    a=rtcp-fb:* trr-int 1000
    a=rtcp-fb:* ccm tmmbr
    a=rtcp-fb:96 nack pli
    a=rtcp-fb:96 ccm fir
""")

# SIPp's minimal uac: one static payload type, no rtpmap at all.
SIPP_MINIMAL_OFFER = sdp("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 0
""", newline="\n")

SIPP_PCMA_OFFER = sdp("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 8
    a=rtpmap:8 PCMA/8000
""", newline="\n")

SAMPLES = [BARESIP_OFFER, ASTERISK_OFFER, KAMAILIO_RTPENGINE_OFFER, LINPHONE_OFFER,
           SIPP_MINIMAL_OFFER, SIPP_PCMA_OFFER]


# --- parsing --------------------------------------------------------------------------

def test_baresip_offer_parses_codecs_fmtp_and_kept_attributes():
    desc = parse_sdp(BARESIP_OFFER)
    assert desc.origin.session_id == 2978822727
    assert [a.name for a in desc.attributes] == ["tool"]
    (audio,) = desc.media
    assert audio.formats == ["96", "9", "0", "8", "101"]
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in audio.codecs] == [
        (96, "opus", 48000, 2), (9, "G722", 8000, 1), (0, "PCMU", 8000, 1),
        (8, "PCMA", 8000, 1), (101, "telephone-event", 8000, 1)]
    assert audio.codecs[0].fmtp == {"stereo": "1", "sprop-stereo": "1"}
    assert audio.codecs[-1].fmtp == "0-15"
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    # unknown attributes are kept verbatim and in order
    assert [str(a) for a in audio.attributes] == [
        "label:1", "rtcp-rsize", "ssrc:2432987147 cname:sip:bs@127.0.0.1", "minptime:20"]


def test_asterisk_offer_parses_gsm_and_maxptime():
    (audio,) = parse_sdp(ASTERISK_OFFER).media
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "GSM", "telephone-event"]
    assert audio.maxptime == 150 and audio.ptime == 20


@pytest.mark.parametrize("pt, name, rate", [
    (0, "PCMU", 8000), (8, "PCMA", 8000), (9, "G722", 8000), (3, "GSM", 8000),
    (18, "G729", 8000), (13, "CN", 8000), (4, "G723", 8000), (6, "DVI4", 16000)])
def test_static_payload_type_without_rtpmap_is_understood(pt, name, rate):
    desc = parse_sdp(SIPP_MINIMAL_OFFER.replace(b"RTP/AVP 0", f"RTP/AVP {pt}".encode()))
    (codec,) = desc.media[0].codecs
    assert (codec.payload_type, codec.name, codec.clock_rate, codec.channels) == (pt, name, rate, 1)


def test_fmtp_on_static_type_without_rtpmap_attaches_to_it():
    data = SIPP_MINIMAL_OFFER.replace(b"RTP/AVP 0\n", b"RTP/AVP 18 0\na=fmtp:18 annexb=no\n")
    g729, pcmu = parse_sdp(data).media[0].codecs
    assert g729.name == "G729" and g729.fmtp == {"annexb": "no"}
    assert pcmu.fmtp == {}


def test_fmtp_for_dynamic_type_without_rtpmap_is_kept_not_fatal():
    data = SIPP_MINIMAL_OFFER.replace(b"RTP/AVP 0\n", b"RTP/AVP 0 97\na=fmtp:97 mode=30\n")
    audio = parse_sdp(data).media[0]
    assert audio.formats == ["0", "97"]
    assert [c.payload_type for c in audio.codecs] == [0]
    assert [str(a) for a in audio.attributes] == ["fmtp:97 mode=30"]
    assert b"a=fmtp:97 mode=30\r\n" in parse_sdp(data).to_bytes()


def test_fmtp_before_rtpmap_still_attaches():
    data = SIPP_MINIMAL_OFFER.replace(
        b"RTP/AVP 0\n", b"RTP/AVP 96\na=fmtp:96 useinbandfec=1\na=rtpmap:96 OPUS/48000/2\n")
    (codec,) = parse_sdp(data).media[0].codecs
    assert codec.is_named("opus") and codec.fmtp_params() == {"useinbandfec": "1"}


def test_payload_types_are_scoped_per_m_line():
    audio, video = parse_sdp(LINPHONE_OFFER).media
    assert audio.codec(96).name == "opus" and video.codec(96).name == "VP8"
    assert video.codec(97).fmtp == {"profile-level-id": "42801F"}
    assert [str(a) for a in audio.attributes] == ["rtcp-fb:* trr-int 1000", "rtcp-fb:* ccm tmmbr"]


def test_lf_and_crlf_and_trailing_blanks_parse_the_same():
    crlf = parse_sdp(ASTERISK_OFFER)
    lf = parse_sdp(ASTERISK_OFFER.replace(b"\r\n", b"\n"))
    sloppy = parse_sdp(ASTERISK_OFFER.replace(b"\r\n", b"  \t\r\n") + b"\r\n\r\n")
    assert crlf == lf == sloppy
    assert crlf.to_bytes() == lf.to_bytes()


def test_unknown_line_types_are_kept():
    data = ASTERISK_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\nx=vendor thing\r\n")
    data = data.replace(b"a=maxptime:150\r\n", b"a=maxptime:150\r\ny=media thing\r\n")
    desc = parse_sdp(data)
    assert desc.extra_lines == [("x", "vendor thing")]
    assert desc.media[0].extra_lines == [("y", "media thing")]
    again = desc.to_bytes()
    assert b"x=vendor thing\r\n" in again and b"y=media thing\r\n" in again
    assert parse_sdp(again) == desc


def test_session_level_direction_and_media_level_override():
    data = sdp("""
        v=0
        o=- 1 1 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        a=sendonly
        m=audio 5000 RTP/AVP 0
        m=audio 5002 RTP/AVP 0
        a=inactive
    """)
    desc = parse_sdp(data)
    first, second = desc.media
    assert desc.direction == "sendonly"
    assert desc.direction_for(first) == "sendonly" and desc.direction_for(second) == "inactive"


def test_rtcp_attribute_with_and_without_address():
    desc = parse_sdp(KAMAILIO_RTPENGINE_OFFER)
    rtcp = desc.media[0].rtcp
    assert rtcp.port == 30003 and rtcp.connection == Connection("IN", "IP4", "127.0.0.3")
    bare = parse_sdp(KAMAILIO_RTPENGINE_OFFER.replace(b"a=rtcp:30003 IN IP4 127.0.0.3",
                                                      b"a=rtcp:30005"))
    assert bare.media[0].rtcp.port == 30005 and bare.media[0].rtcp.connection is None


def test_bandwidth_and_port_count():
    data = ASTERISK_OFFER.replace(b"m=audio 17208 RTP/AVP", b"m=audio 17208/2 RTP/AVP")
    data = data.replace(b"a=rtpmap:0", b"b=AS:64\r\nb=TIAS:64000\r\na=rtpmap:0", 1)
    audio = parse_sdp(data).media[0]
    assert audio.port_count == 2
    assert [(b.bwtype, b.bandwidth) for b in audio.bandwidths] == [("AS", 64), ("TIAS", 64000)]


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty"),
    (b"o=- 1 1 IN IP4 127.0.0.1\r\n", "v="),
    (b"v=1\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "version"),
    (b"v=0\r\ns=-\r\n", "o="),
    (b"v=0\r\no=- 1 IN IP4 127.0.0.1\r\n", "o="),
    (b"v=0\r\no=- x 1 IN IP4 127.0.0.1\r\n", "session id"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nthis is not sdp\r\n", "line 3"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4\r\n", "nettype"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n", "port"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio \xd9\xa3 RTP/AVP 0\r\n", "port"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 5000 RTP/AVP PCMU\r\n", "payload type"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 5000 RTP/AVP 200\r\n", "payload type"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 5000\r\n", "m="),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nb=AS:lots\r\n", "bandwidth"),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nr=7d 1h 0 25h\r\n", "r="),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\nt=0 0\r\n", "t="),
    (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=a\rb\r\n", "CR"),
])
def test_malformed_sdp_raises_sdp_error_with_a_clear_message(data, fragment):
    with pytest.raises(SdpError) as info:
        parse_sdp(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize("line, unusable", [
    ("a=rtpmap:96 opus", 96),     # no clock rate: payload 96 cannot be used
    ("a=rtpmap:31 LPC", None),    # RFC 4475 esc01/longreq carry this one
    ("a=ptime:fast", None),
    ("a=rtcp:x", None),
    ("a=fmtp:abc x=1", None),
])
def test_an_attribute_we_cannot_read_is_ignored_not_fatal(line, unusable):
    """RFC 4566 §5.13 and RFC 3264: an unparseable attribute leaves the rest of the
    description usable (the first version refused the whole INVITE with 400)."""
    sdp = parse_sdp(("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\n"
                     "m=audio 5000 RTP/AVP 0 96\r\n" + line + "\r\n").encode())
    (audio,) = sdp.media
    assert [str(a) for a in audio.attributes] == [line[2:]]  # kept verbatim
    assert audio.ptime is None and audio.rtcp is None
    assert [c.payload_type for c in audio.codecs] == [0]  # PCMU still usable
    if unusable is not None:
        assert audio.codec(unusable) is None


def test_non_sdp_input_type_is_an_sdp_error():
    with pytest.raises(SdpError):
        parse_sdp(12345)  # type: ignore[arg-type]


# --- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("data", SAMPLES)
def test_round_trip_keeps_meaning_and_is_stable(data):
    first = parse_sdp(data)
    text = first.to_bytes()
    assert text.endswith(b"\r\n") and b"\n" not in text.replace(b"\r\n", b"")
    again = parse_sdp(text)
    assert again == first
    assert again.to_bytes() == text


def test_baresip_offer_serializes_back_byte_for_byte_apart_from_attribute_order():
    out = parse_sdp(BARESIP_OFFER).to_bytes()
    assert sorted(out.split(b"\r\n")) == sorted(BARESIP_OFFER.split(b"\r\n"))


def test_our_offer_bytes_are_a_fixed_point():
    offer = make_offer(address="127.0.0.1", port=4000, codecs=OURS, session_id=1,
                       session_version=2)
    data = offer.to_bytes()
    assert parse_sdp(data) == offer
    assert parse_sdp(data).to_bytes() == data


# --- make_offer -----------------------------------------------------------------------

def test_offer_payload_types_and_lines():
    offer = make_offer(address="127.0.0.1", port=4000, codecs=["opus", "G722", "PCMU", "PCMA"],
                       ptime=20, session_id=11, session_version=12, username="alice")
    text = offer.to_text()
    assert "o=alice 11 12 IN IP4 127.0.0.1\r\n" in text
    assert "c=IN IP4 127.0.0.1\r\n" in text
    assert "m=audio 4000 RTP/AVP 111 9 0 8 101 102\r\n" in text
    for line in ("a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1", "a=rtpmap:9 G722/8000",
                 "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                 "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
                 "a=rtpmap:102 telephone-event/48000", "a=ptime:20", "a=sendrecv"):
        assert line + "\r\n" in text
    assert "rtcp-mux" not in text


def test_offer_without_opus_or_dtmf_and_with_options():
    offer = make_offer(address="::1", port=4002, codecs=["pcma", "PCMU"], dtmf=False, ptime=30,
                       session_id=1, session_version=1, direction="sendonly", rtcp_mux=True)
    text = offer.to_text()
    assert "o=- 1 1 IN IP6 ::1\r\n" in text and "c=IN IP6 ::1\r\n" in text
    assert "m=audio 4002 RTP/AVP 8 0\r\n" in text
    assert "telephone-event" not in text
    assert "a=ptime:30\r\n" in text and "a=sendonly\r\n" in text and "a=rtcp-mux\r\n" in text
    offer2 = make_offer(address="127.0.0.1", port=4002, codecs=["PCMU"], session_id=1,
                        session_version=1)
    assert [c.rtpmap for c in offer2.media[0].codecs] == ["PCMU/8000", "telephone-event/8000"]


@pytest.mark.parametrize("kwargs", [dict(codecs=["GSM"]), dict(codecs=[]),
                                    dict(direction="both"), dict(port=0)])
def test_offer_rejects_bad_arguments(kwargs):
    args = dict(address="127.0.0.1", port=4000, codecs=OURS, session_id=1, session_version=1)
    args.update(kwargs)
    with pytest.raises(ValueError):
        make_offer(**args)


# --- answer_offer ---------------------------------------------------------------------

def test_answer_baresip_picks_our_first_choice_with_offer_payload_type():
    ans, media = answer(BARESIP_OFFER)
    (m,) = ans.media
    assert m.formats == ["96", "101"]  # opus kept on the offerer's PT 96, not our 111
    assert m.codecs[0].rtpmap == "opus/48000/2" and m.codecs[0].payload_type == 96
    assert m.codecs[0].fmtp == {"useinbandfec": "1"}  # our receive parameters
    assert media.codec.payload_type == 96 and media.codec.is_named("opus")
    assert media.codec.fmtp_params()["sprop-stereo"] == "1"  # theirs, for our encoder
    assert media.dtmf.payload_type == 101 and media.dtmf.clock_rate == 8000
    assert (media.remote_host, media.remote_port) == ("127.0.0.1", 10960)
    assert (media.remote_rtcp_host, media.remote_rtcp_port) == ("127.0.0.1", 10961)
    assert media.ptime == 20 and media.direction == "sendrecv" and not media.hold
    assert not media.rtcp_mux
    text = ans.to_text()
    assert "o=- 7 1 IN IP4 127.0.0.1\r\n" in text and "m=audio 40000 RTP/AVP 96 101\r\n" in text


def test_answer_follows_our_preference_order_not_the_offers():
    _, media = answer(BARESIP_OFFER, codecs=["PCMA", "PCMU"])
    assert media.codec.name == "PCMA" and media.codec.payload_type == 8
    _, media = answer(ASTERISK_OFFER)  # no opus/G722 offered: PCMU is our next choice
    assert media.codec.name == "PCMU" and media.dtmf.fmtp == "0-16"


def test_answer_sipp_minimal_offer_without_rtpmap():
    ans, media = answer(SIPP_MINIMAL_OFFER)
    assert media.codec == Codec(0, "PCMU", 8000)
    assert media.dtmf is None and ans.media[0].formats == ["0"]
    assert "a=rtpmap:0 PCMU/8000\r\n" in ans.to_text()
    _, media = answer(SIPP_PCMA_OFFER)
    assert media.codec.name == "PCMA" and media.remote_port == 6000


def test_answer_linphone_refuses_video_and_matches_dtmf_rate():
    ans, media = answer(LINPHONE_OFFER)
    audio, video = ans.media
    assert (video.media, video.port, video.formats) == ("video", 0, ["96", "97"])
    assert audio.port == 40000 and audio.formats == ["96", "101"]
    assert media.dtmf.clock_rate == 48000 and media.dtmf.payload_type == 101
    _, media = answer(LINPHONE_OFFER, codecs=["PCMU"])
    assert media.codec.payload_type == 0 and media.dtmf.payload_type == 100  # the /8000 one


def test_answer_media_level_c_and_rtcp_address():
    _, media = answer(KAMAILIO_RTPENGINE_OFFER)
    assert media.codec.name == "PCMU"  # our order wins over the offer's (PCMA first)
    assert (media.remote_host, media.remote_port) == ("127.0.0.2", 30000)
    assert (media.remote_rtcp_host, media.remote_rtcp_port) == ("127.0.0.3", 30003)


def test_answer_rtcp_port_without_address_uses_the_media_host():
    data = KAMAILIO_RTPENGINE_OFFER.replace(b"a=rtcp:30003 IN IP4 127.0.0.3", b"a=rtcp:30009")
    _, media = answer(data)
    assert (media.remote_rtcp_host, media.remote_rtcp_port) == ("127.0.0.2", 30009)


@pytest.mark.parametrize("supported", [True, False])
def test_rtcp_mux_echoed_only_when_offered_and_supported(supported):
    data = ASTERISK_OFFER.replace(b"a=sendrecv\r\n", b"a=sendrecv\r\na=rtcp-mux\r\n")
    ans, media = answer(data, rtcp_mux_supported=supported)
    assert media.rtcp_mux is supported and ans.media[0].rtcp_mux is supported
    assert media.remote_rtcp_port == (17208 if supported else 17209)
    _, plain = answer(ASTERISK_OFFER, rtcp_mux_supported=True)
    assert plain.rtcp_mux is False and plain.remote_rtcp_port == 17209


@pytest.mark.parametrize("offered, answered, ours, hold", [
    ("sendrecv", "sendrecv", "sendrecv", False),
    ("sendonly", "recvonly", "recvonly", True),
    ("recvonly", "sendonly", "sendonly", False),
    ("inactive", "inactive", "inactive", True),
])
def test_answer_direction_mapping(offered, answered, ours, hold):
    data = ASTERISK_OFFER.replace(b"a=sendrecv", f"a={offered}".encode())
    ans, media = answer(data)
    assert ans.media[0].direction == answered
    assert media.direction == ours and media.hold is hold


def test_answer_direction_never_grants_more_than_we_want():
    ans, media = answer(ASTERISK_OFFER, direction="sendonly")  # we hold them
    assert ans.media[0].direction == "sendonly" and media.direction == "sendonly"
    assert not media.hold
    data = ASTERISK_OFFER.replace(b"a=sendrecv", b"a=recvonly")
    ans, media = answer(data, direction="recvonly")
    assert ans.media[0].direction == "inactive" and media.direction == "inactive"


def test_session_level_direction_is_honoured_in_the_answer():
    data = ASTERISK_OFFER.replace(b"a=sendrecv\r\n", b"").replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    ans, media = answer(data)
    assert ans.media[0].direction == "recvonly" and media.hold


def test_old_style_hold_with_zero_address():
    data = ASTERISK_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
    ans, media = answer(data)
    assert media.hold and media.remote_host == "0.0.0.0"
    assert media.direction == "recvonly"  # nowhere to send to
    assert ans.media[0].direction == "sendrecv" and ans.connection.address == "127.0.0.1"


@pytest.mark.parametrize("extra, default, expected", [
    (b"a=ptime:30\r\n", 20, 30),
    (b"", 20, 20),
    (b"", 40, 40),
    (b"a=ptime:20.0\r\n", 30, 20),
    (b"a=ptime:60\r\na=maxptime:40\r\n", 20, 40),
])
def test_ptime_from_the_offer_else_our_default(extra, default, expected):
    data = ASTERISK_OFFER.replace(b"a=ptime:20\r\na=maxptime:150\r\n", extra)
    ans, media = answer(data, ptime_default=default)
    assert media.ptime == expected and ans.media[0].ptime == expected


def test_opus_fmtp_ptime_and_minptime_are_honoured():
    data = BARESIP_OFFER.replace(b"a=ptime:20\r\n", b"").replace(b"a=minptime:20\r\n", b"")
    ptime_fmtp = data.replace(b"stereo=1;sprop-stereo=1", b"ptime=40;useinbandfec=1")
    assert answer(ptime_fmtp)[1].ptime == 40
    minptime_fmtp = data.replace(b"stereo=1;sprop-stereo=1", b"minptime=30")
    assert answer(minptime_fmtp)[1].ptime == 30
    assert answer(data.replace(b"a=sendrecv", b"a=sendrecv\r\na=minptime:60"))[1].ptime == 60


def test_second_audio_and_video_m_lines_are_refused_in_order():
    data = ASTERISK_OFFER + sdp("""
        m=video 17210 RTP/AVP 34
        m=audio 17212 RTP/AVP 0
        m=application 17214 UDP/BFCP *
    """)
    ans, media = answer(data)
    assert [(m.media, m.port) for m in ans.media] == [
        ("audio", 40000), ("video", 0), ("audio", 0), ("application", 0)]
    assert ans.media[3].formats == ["*"] and ans.media[3].proto == "UDP/BFCP"
    assert media.remote_port == 17208
    assert parse_sdp(ans.to_bytes()).media[2].port == 0


def test_unsupported_profile_is_refused_and_the_next_audio_line_used():
    data = ASTERISK_OFFER.replace(b"m=audio 17208 RTP/AVP", b"m=audio 17208 RTP/SAVP")
    data += sdp("""
        m=audio 17220 RTP/AVP 8
        c=IN IP4 127.0.0.5
    """)
    ans, media = answer(data)
    assert [(m.proto, m.port) for m in ans.media] == [("RTP/SAVP", 0), ("RTP/AVP", 40000)]
    assert media.codec.name == "PCMA" and media.remote_host == "127.0.0.5"


def test_audio_line_with_nothing_in_common_is_skipped_for_a_later_one():
    data = ASTERISK_OFFER.replace(b"RTP/AVP 0 8 3 101", b"RTP/AVP 3") + sdp("m=audio 17230 RTP/AVP 9")
    ans, media = answer(data)
    assert [m.port for m in ans.media] == [0, 40000] and media.codec.name == "G722"


@pytest.mark.parametrize("data", [
    SIPP_MINIMAL_OFFER.replace(b"RTP/AVP 0", b"RTP/AVP 18 3"),
    SIPP_MINIMAL_OFFER.replace(b"m=audio 6000 RTP/AVP 0", b"m=video 6000 RTP/AVP 34"),
    SIPP_MINIMAL_OFFER.replace(b"m=audio 6000", b"m=audio 0"),
    SIPP_MINIMAL_OFFER.replace(b"RTP/AVP", b"RTP/SAVP"),
    SIPP_MINIMAL_OFFER.replace(b"RTP/AVP 0", b"RTP/AVP 96\na=rtpmap:96 G722/16000"),
])
def test_nothing_in_common_raises_no_common_codec(data):
    with pytest.raises(NoCommonCodec) as info:
        answer(data)
    assert isinstance(info.value, SdpError) and str(info.value)


def test_only_telephone_event_in_common_is_no_common_codec():
    data = SIPP_MINIMAL_OFFER.replace(
        b"RTP/AVP 0", b"RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000")
    with pytest.raises(NoCommonCodec):
        answer(data)


def test_answer_without_any_c_line_is_an_sdp_error():
    with pytest.raises(SdpError, match="c="):
        answer(SIPP_MINIMAL_OFFER.replace(b"c=IN IP4 127.0.0.1\n", b""))


def test_answer_copies_the_offers_timing_and_dtmf_can_be_refused():
    data = ASTERISK_OFFER.replace(b"t=0 0", b"t=3034423619 0")
    ans, media = answer(data, dtmf=False)
    assert ans.timings[0].start == 3034423619
    assert media.dtmf is None and ans.media[0].formats == ["0"]


def test_answer_with_ipv6_address():
    data = ASTERISK_OFFER.replace(b"IN IP4 127.0.0.1", b"IN IP6 ::1")
    ans, media = answer(data, address="::1")
    assert media.remote_host == "::1"
    assert "c=IN IP6 ::1\r\n" in ans.to_text()


# --- apply_answer (UAC) ----------------------------------------------------------------

def our_offer(**kwargs) -> SessionDescription:
    args = dict(address="127.0.0.1", port=4000, codecs=OURS, session_id=1, session_version=1)
    args.update(kwargs)
    return make_offer(**args)


def test_full_offer_answer_loop_agrees_on_both_sides():
    offer = our_offer(rtcp_mux=True)
    ans, theirs = answer_offer(parse_sdp(offer.to_bytes()), address="127.0.0.1", port=5000,
                               codecs=["G722", "PCMU"], session_id=9, session_version=1)
    ours = apply_answer(offer, parse_sdp(ans.to_bytes()))
    assert ours.codec.name == theirs.codec.name == "G722"
    assert ours.codec.payload_type == theirs.codec.payload_type == 9
    assert ours.dtmf.clock_rate == 8000 and ours.dtmf.payload_type == 101
    assert (ours.remote_host, ours.remote_port) == ("127.0.0.1", 5000)
    assert (ours.remote_rtcp_host, ours.remote_rtcp_port) == ("127.0.0.1", 5000)
    assert (theirs.remote_port, theirs.remote_rtcp_port) == (4000, 4000)
    assert ours.rtcp_mux and theirs.rtcp_mux
    assert ours.direction == theirs.direction == "sendrecv"
    assert not ours.hold and not theirs.hold


def test_apply_answer_from_baresip_style_answer():
    answer_bytes = sdp("""
        v=0
        o=- 3 4 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 10100 RTP/AVP 111 101
        a=rtpmap:111 opus/48000/2
        a=fmtp:111 stereo=1;sprop-stereo=1;maxaveragebitrate=32000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        a=ptime:40
        a=sendrecv
    """)
    media = apply_answer(our_offer(), parse_sdp(answer_bytes))
    assert media.codec.is_named("opus") and media.codec.fmtp_params()["maxaveragebitrate"] == "32000"
    assert media.ptime == 40 and media.dtmf.payload_type == 101
    assert (media.remote_rtcp_host, media.remote_rtcp_port) == ("127.0.0.1", 10101)
    assert not media.rtcp_mux  # they did not echo it (and we did not offer it)


def test_apply_answer_uses_the_answers_first_codec_and_ignores_cn():
    answer_bytes = sdp("""
        v=0
        o=- 3 4 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 10100 RTP/AVP 13 8 0
    """)
    media = apply_answer(our_offer(), parse_sdp(answer_bytes))
    assert media.codec.name == "PCMA" and media.dtmf is None and media.ptime == 20


@pytest.mark.parametrize("answered, ours, hold", [
    ("sendrecv", "sendrecv", False), ("recvonly", "sendonly", False),
    ("sendonly", "recvonly", True), ("inactive", "inactive", True)])
def test_apply_answer_direction(answered, ours, hold):
    offer = our_offer()
    ans, _ = answer_offer(offer, address="127.0.0.1", port=5000, codecs=["PCMU"],
                          session_id=2, session_version=1)
    ans.media[0].direction = answered
    media = apply_answer(offer, parse_sdp(ans.to_bytes()))
    assert media.direction == ours and media.hold is hold


def test_apply_answer_when_we_hold_is_not_remote_hold():
    offer = our_offer(direction="sendonly")
    ans, theirs = answer_offer(offer, address="127.0.0.1", port=5000, codecs=["PCMU"],
                               session_id=2, session_version=1)
    assert ans.media[0].direction == "recvonly" and theirs.hold
    media = apply_answer(offer, ans)
    assert media.direction == "sendonly" and not media.hold


def test_apply_answer_rejections():
    offer = our_offer()
    ans, _ = answer_offer(offer, address="127.0.0.1", port=5000, codecs=["PCMU"],
                          session_id=2, session_version=1)
    refused = parse_sdp(ans.to_bytes())
    refused.media[0].port = 0
    with pytest.raises(NoCommonCodec, match="port 0"):
        apply_answer(offer, refused)
    extra = parse_sdp(ans.to_bytes() + b"m=video 0 RTP/AVP 34\r\n")
    with pytest.raises(SdpError, match="m-lines"):
        apply_answer(offer, extra)
    foreign = parse_sdp(ans.to_bytes().replace(b"RTP/AVP 0 101", b"RTP/AVP 3 101")
                        .replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:3 GSM/8000"))
    with pytest.raises(NoCommonCodec, match="GSM"):
        apply_answer(offer, foreign)
    video = parse_sdp(ans.to_bytes().replace(b"m=audio", b"m=video"))
    with pytest.raises(SdpError, match="video"):
        apply_answer(offer, video)


def test_apply_answer_accepts_a_renumbered_codec_and_sends_with_its_number():
    offer = our_offer()
    ans = parse_sdp(sdp("""
        v=0
        o=- 3 4 IN IP4 127.0.0.1
        s=-
        c=IN IP4 0.0.0.0
        t=0 0
        m=audio 10100 RTP/AVP 120
        a=rtpmap:120 OPUS/48000/2
    """))
    media = apply_answer(offer, ans)
    assert media.codec.payload_type == 120 and media.hold and media.direction == "recvonly"


# --- fuzzing: malformed input must only ever raise SdpError ----------------------------

_ALPHABET = st.sampled_from(list("vosictbmaerkzpu=:/ -0123456789.\r\n\tIPNABCDGTUVWXYZ;*"))
_LINE_PIECES = st.sampled_from([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0",
    "c=IN IP6 ::1", "t=0 0", "r=7d 1h 0 25h", "b=AS:64", "m=audio 5000 RTP/AVP 0 8 96 101",
    "m=audio 0 RTP/AVP 0", "m=video 5002 RTP/AVP 96", "m=audio 5004 RTP/SAVP 0",
    "m=audio 5006/2 RTP/AVPF 9", "m=application 9 UDP/BFCP *", "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=fmtp:96 useinbandfec=1;x",
    "a=fmtp:0", "a=fmtp:8 ;;", "a=ptime:20", "a=ptime:0", "a=maxptime:10", "a=minptime:120",
    "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=rtcp:5001",
    "a=rtcp:5001 IN IP4 127.0.0.1", "a=rtcp-mux", "a=ssrc:1 cname:x", "a=", "a=:",
    "x=unknown", "i=info", "k=prompt", "z=0 0", "u=http://x", "e=a@b", "p=+1"])


def _check_only_sdp_errors(data) -> None:
    try:
        desc = parse_sdp(data)
    except SdpError:
        return
    text = desc.to_bytes()
    again = parse_sdp(text)  # what we write, we must read back, unchanged
    assert again == desc and again.to_bytes() == text
    for codecs in (OURS, ["PCMA"]):
        try:
            ans, media = answer_offer(desc, address="127.0.0.1", port=40000, codecs=codecs,
                                      session_id=1, session_version=1)
        except SdpError:
            pass
        else:
            assert len(ans.media) == len(desc.media) and media.ptime > 0
    try:
        apply_answer(make_offer(address="127.0.0.1", port=4000, codecs=OURS, session_id=1,
                                session_version=1), desc)
    except SdpError:
        pass


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _check_only_sdp_errors(data)


@FUZZ
@given(st.text(_ALPHABET, max_size=300))
def test_fuzz_sdp_alphabet(text):
    _check_only_sdp_errors("v=0\no=- 1 1 IN IP4 127.0.0.1\n" + text)


_OFFER_HEAD = ["c=IN IP4 127.0.0.1", "m=audio 5000 RTP/AVP 0 8 96 101"]


@FUZZ
@given(st.booleans(), st.lists(_LINE_PIECES, max_size=25), st.sampled_from(["\n", "\r\n"]))
def test_fuzz_line_soup(offer_head, lines, newline):
    head = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", *(_OFFER_HEAD if offer_head else [])]
    _check_only_sdp_errors(newline.join([*head, *lines]))


@FUZZ
@given(st.sampled_from(SAMPLES), st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "replace", "drop-line", "dup-line"]),
              st.integers(0, 10_000), st.characters(codec="utf-8")), min_size=1, max_size=6))
def test_fuzz_mutated_real_samples(sample, mutations):
    data = sample.decode()
    for op, position, char in mutations:
        lines = data.split("\n")
        if op == "drop-line":
            del lines[position % len(lines)]
            data = "\n".join(lines)
        elif op == "dup-line":
            index = position % len(lines)
            lines.insert(index, lines[index])
            data = "\n".join(lines)
        else:
            i = position % (len(data) + 1)
            if op == "insert":
                data = data[:i] + char + data[i:]
            elif op == "delete":
                data = data[:i] + data[i + 1:]
            else:
                data = data[:i] + char + data[i + 1:]
    _check_only_sdp_errors(data)
    _check_only_sdp_errors(data.encode("utf-8", "surrogatepass"))
