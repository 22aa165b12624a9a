"""softphone.sip.message: RFC 3261 grammar, RFC 4475 torture messages, RFC 3665 call flow,
datagram and stream framing, serialization, make_response."""

from __future__ import annotations

import pytest

from softphone.sip.errors import SipParseError
from softphone.sip.uri import OpaqueUri
from softphone.sip.message import (
    MAX_MESSAGE_SIZE,
    Headers,
    Request,
    Response,
    StreamFramer,
    Via,
    canonical_name,
    make_response,
    parse_message,
    split_list,
)


def crlf(text: str, body: bytes = b"") -> bytes:
    """Test texts are written with LF; SIP wants CRLF. Encodes as UTF-8."""
    return text.replace("\n", "\r\n").encode("utf-8") + body


def parse_error(data: bytes, **kw) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kw)
    return info.value


SDP_150 = crlf(
    "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
)


# ---------------------------------------------------------------------------------------
# RFC 4475 §3.1.1 valid messages
# ---------------------------------------------------------------------------------------

WSINV = crlf(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : 150\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;rport;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "Content-Type: application/sdp\n"
    "Route:\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33\n"
    "\n"
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\n"
    "s=-\n"
    "c=IN IP4 192.0.2.4\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n"
)


def test_wsinv_short_tortuous_invite():
    msg = parse_message(WSINV)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    ruri = msg.request_uri
    assert (ruri.user, ruri.host, ruri.params) == ("vivekg", "chair-dnrc.example.com",
                                                   {"unknownparam": None})
    to = msg.to
    assert to.uri.user == "vivekg" and to.tag == "1918181833n" and to.display_name is None
    frm = msg.from_
    assert frm.display_name == 'J Rosenberg \\"'
    assert frm.tag == "98asjd8" and frm.uri.user == "jdrosen"
    assert msg.header_int("Max-Forwards") == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.cseq == (9, "INVITE")
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert "rport" in vias[0].params and vias[0].params["rport"] is None
    assert msg.headers.get("Subject") == ""
    # folded unknown header joined with one space, unusual value kept verbatim
    assert msg.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.content_type == "application/sdp"
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    assert len(msg.body) == 150 and msg.body.startswith(b"v=0\r\n")


def test_wsinv_serialization_expands_compact_forms_and_reparses():
    msg = parse_message(WSINV)
    out = msg.to_bytes()
    head = out.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in head.split("\r\n")[1:]]
    # compact forms expanded, known names canonical, unknown kept verbatim, order kept
    assert names == ["To", "From", "Max-Forwards", "Call-ID", "CSeq",
                     "Via", "Subject", "NewFangledHeader", "UnknownHeaderWithUnusualValue",
                     "Content-Type", "Route", "Via", "Contact", "Content-Length"]
    again = parse_message(out)
    assert again.to_bytes() == out
    assert [v.branch for v in again.vias] == [v.branch for v in msg.vias]
    assert again.from_.display_name == msg.from_.display_name
    assert again.contacts[0].display_name == msg.contacts[0].display_name
    assert again.body == msg.body


INTMETH_METHOD = "!interesting-Method0123456789_*+`.%indeed'~"
INTMETH_USER = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
INTMETH = crlf(
    f"{INTMETH_METHOD} sip:{INTMETH_USER}:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    "@example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n"
    f'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:{INTMETH_USER}@example.com>\n'
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;"
    "fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
    f"CSeq: 139122385 {INTMETH_METHOD}\n"
    "Max-Forwards: 255\n"
    "extensionHeader-!.%*+_`'~:\ufeff大停電\n"
    "Content-Length: 0\n"
    "\n"
)


def test_intmeth_wide_range_of_valid_characters():
    msg = parse_message(INTMETH)
    assert isinstance(msg, Request)
    assert msg.cseq[0] == 139122385
    assert msg.method == INTMETH_METHOD  # methods are case-sensitive (RFC 3261 §7.1)
    ruri = msg.request_uri
    assert ruri.user == INTMETH_USER  # ';' and '?' inside the user part
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ruri.host == "example.com" and ruri.params == {} and ruri.headers == {}
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"  # % is not an escape here
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to.uri.user == INTMETH_USER
    frm = msg.from_
    assert frm.display_name == "token1~` token2'+_ token3*%!.-"
    assert frm.tag == "_token~1'+`*%!-."
    assert frm.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.header_int("Max-Forwards") == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    # password never shows in a repr
    assert "weird" not in repr(ruri)


ESC01 = crlf(
    "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
    "To: sip:%75se%72@example.com\n"
    "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
    "Max-Forwards: 87\n"
    "i: esc01.239409asdfakjkn23onasd0-3234\n"
    "CSeq: 234234 INVITE\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\n"
    "C: application/sdp\n"
    "Contact:\n"
    "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
    "Content-Length: 150\n"
    "\n", SDP_150)


def test_esc01_percent_escapes_in_uris():
    msg = parse_message(ESC01)
    assert msg.request_uri.user == "sips:user@example.com"
    assert msg.request_uri.host == "example.net"
    assert msg.to.uri.user == "user"
    assert msg.from_.uri.user == "I have spaces" and msg.from_.tag == "938"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert msg.content_type == "application/sdp"
    (contact,) = msg.contacts
    assert contact.uri.user == "caller"
    # unescaping happens once: value%41 is not valueA
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert msg.body == SDP_150
    # the escaped user part survives a round trip of the whole message
    again = parse_message(msg.to_bytes())
    assert again.request_uri.user == "sips:user@example.com"
    assert again.contacts[0].uri.params == {"lr": None, "name": "value%41"}


ESCNULL = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:null-%00-null@example.com\n"
    "From: sip:null-%00-null@example.com;tag=839923423\n"
    "Max-Forwards: 70\n"
    "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n"
    "CSeq: 14398234 REGISTER\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
    "Contact: <sip:%00@host5.example.com>\n"
    "Contact: <sip:%00%00@host5.example.com>\n"
    "L:0\n"
    "\n")


def test_escnull_nulls_in_user_parts_are_not_truncated():
    msg = parse_message(ESCNULL)
    assert msg.to.uri.user == "null-\x00-null"
    assert msg.from_.uri.user == "null-\x00-null" and msg.from_.tag == "839923423"
    users = [c.uri.user for c in msg.contacts]
    assert users == ["\x00", "\x00\x00"]  # two distinct contacts
    assert msg.contacts[0].uri != msg.contacts[1].uri
    assert msg.body == b""
    assert "%00" in str(msg.contacts[0].uri)


ESC02 = crlf(
    "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
    'To: "%Z%45" <sip:resource@example.com>\n'
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
    "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n"
    "CSeq: 29344 RE%47IST%45R\n"
    "Max-Forwards: 70\n"
    "Contact: <sip:alias1@host1.example.com>\n"
    "C%6Fntact: <sip:alias2@host2.example.com>\n"
    "Contact: <sip:alias3@host3.example.com>\n"
    "l: 0\n"
    "\n")


def test_esc02_percent_is_not_an_escape_outside_uris():
    msg = parse_message(ESC02)
    assert msg.method == "RE%47IST%45R" and msg.method != "REGISTER"
    assert msg.to.display_name == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.user for c in msg.contacts] == ["alias1", "alias3"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


LWSDISP = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: caller<sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
    "\n")


def test_lwsdisp_no_space_before_angle_bracket():
    msg = parse_message(LWSDISP)
    assert msg.from_.display_name == "caller"
    assert msg.from_.uri.user == "caller" and msg.from_.tag == "323"
    assert msg.cseq == (60, "OPTIONS")


def _longreq() -> bytes:
    long_name = "name" * 25
    vias = "".join(f"{name}: SIP/2.0/TCP sip{n}.example.com\n" for n, name in zip(
        range(33, 0, -1),
        ["Via", "v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA",
         "V ", "v ", "V  ", "v  ", "Via ", "Via  "] + ["Via"] * 16))
    return crlf(
        "INVITE sip:user@example.com SIP/2.0\n"
        f'To: "I have a user name of {"extreme" * 10} proportion"<sip:user@example.com:6000;'
        f"unknownparam1=very{'long' * 20}value;longparam{long_name}=shortvalue;"
        f"very{'long' * 25}ParameterNameWithNoValue>\n"
        f"F: sip:{'amazinglylongcallername' * 5}@example.net;tag={'1298' * 40}424;"
        f"unknownheaderparam{long_name}=unknowheaderparam{'value' * 15};"
        f"unknownValueless{'paramname' * 10}\n"
        f"Call-ID: longreq.one{'really' * 20}longcallid\n"
        "CSeq: 3882340 INVITE\n"
        f"Unknown-{'Long' * 20}-Name: unknown-{'long' * 20}-value; "
        f"unknown-{'long' * 20}-parameter-name = unknown-{'long' * 20}-parameter-value\n"
        + vias +
        "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very"
        f"{'long' * 50}branchvalue\n"
        "Max-Forwards: 70\n"
        f"Contact: <sip:{'amazinglylongcallername' * 5}@host5.example.net>\n"
        "Content-Type: application/sdp\n"
        "l: 150\n"
        "\n", SDP_150)


def test_longreq_long_values_and_many_vias():
    msg = parse_message(_longreq())
    assert msg.to.display_name.startswith("I have a user name of extremeextreme")
    assert msg.to.uri.port == 6000
    assert msg.to.uri.params["longparam" + "name" * 25] == "shortvalue"
    assert msg.to.uri.params["very" + "long" * 25 + "parameternamewithnovalue"] is None
    assert msg.from_.tag == "1298" * 40 + "424"
    assert msg.from_.params["unknownvalueless" + "paramname" * 10] is None
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].params["received"] == "192.0.2.5"
    assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert msg.body == SDP_150
    # every Via survives serialization, each on its own line, in order
    again = parse_message(msg.to_bytes())
    assert [v.host for v in again.vias] == [v.host for v in vias]


DBLREQ_REGISTER = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:j.user@example.com;tag=43251j3j324\n"
    "Max-Forwards: 8\n"
    "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n"
    "Contact: sip:j.user@host.example.com\n"
    "CSeq: 8 REGISTER\n"
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n"
    "Content-Length: 0\n"
    "\n")
DBLREQ_INVITE = crlf(
    "INVITE sip:joe@example.com SIP/2.0\n"
    "t: sip:joe@example.com\n"
    "From: sip:caller@example.net;tag=141334\n"
    "Max-Forwards: 8\n"
    "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n", SDP_150)


def test_dblreq_datagram_extra_bytes_after_content_length_dropped():
    msg = parse_message(DBLREQ_REGISTER + b"\r\n" + DBLREQ_INVITE, datagram=True)
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert msg.contacts[0].uri.user == "j.user"


def test_dblreq_on_a_stream_is_two_messages():
    framer = StreamFramer()
    frames = framer.feed(DBLREQ_REGISTER + b"\r\n" + DBLREQ_INVITE)
    assert len(frames) == 2
    first, second = (parse_message(f, datagram=False) for f in frames)
    assert (first.method, second.method) == ("REGISTER", "INVITE")
    assert second.body == SDP_150


# ---------------------------------------------------------------------------------------
# RFC 4475 §3.1.2 invalid messages (and the list)
# ---------------------------------------------------------------------------------------

BASE = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-base\n"
    "Max-Forwards: 70\n"
    "From: <sip:caller@example.net>;tag=1\n"
    "To: <sip:user@example.com>\n"
    "Call-ID: base.1@192.0.2.1\n"
    "CSeq: 8 OPTIONS\n"
    "Content-Length: 0\n"
    "\n")


def with_line(old: str, new: str | None) -> bytes:
    """BASE with the header line starting ``old`` replaced (or removed when new is None)."""
    lines = BASE.decode().split("\r\n")
    idx = next(i for i, line in enumerate(lines) if line.startswith(old))
    if new is None:
        del lines[idx]
    else:
        lines[idx] = new
    return "\r\n".join(lines).encode()


def test_base_message_is_valid():
    msg = parse_message(BASE)
    assert msg.method == "OPTIONS" and msg.cseq == (8, "OPTIONS")


@pytest.mark.parametrize("name", ["Call-ID", "CSeq", "From", "To", "Via"])
def test_missing_mandatory_header_is_named(name):
    exc = parse_error(with_line(name + ":", None))
    assert "missing" in exc.reason and name in exc.reason
    assert isinstance(exc.partial, Request) and exc.partial.method == "OPTIONS"


def test_insuf_partial_carries_the_headers_for_a_400():
    data = crlf(
        "INVITE sip:user@example.com SIP/2.0\n"
        "CSeq: 193942 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n"
        "Content-Type: application/sdp\n"
        "l: 150\n"
        "\n", SDP_150)
    exc = parse_error(data)
    assert "missing" in exc.reason
    partial = exc.partial
    assert isinstance(partial, Request)
    assert partial.top_via.branch == "z9hG4bKkdj.insuf"
    # enough to build the 400 from
    resp = make_response(partial, 400, exc.reason)
    assert resp.headers.get("Via") == "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"
    assert resp.cseq == (193942, "INVITE")


@pytest.mark.parametrize("cseq", [
    "CSeq: x OPTIONS", "CSeq: 8", "CSeq: 8 OPTIONS extra", "CSeq: -8 OPTIONS",
    "CSeq: ² OPTIONS", "CSeq: ٣ OPTIONS", "CSeq: 36893488147419103232 OPTIONS",
    "CSeq: 2147483648 OPTIONS", pytest.param("CSeq: " + "9" * 5000 + " OPTIONS", id="5000-digits"),
    "CSeq: 8 OPT<IONS",
])
def test_bad_cseq(cseq):
    exc = parse_error(with_line("CSeq:", cseq))
    assert "CSeq" in exc.reason
    assert isinstance(exc.partial, Request)


def test_cseq_with_leading_zeros_and_upper_bound():
    assert parse_message(with_line("CSeq:", "CSeq: 000000000000008 OPTIONS")).cseq[0] == 8
    assert parse_message(with_line("CSeq:", "CSeq: 2147483647 OPTIONS")).cseq[0] == 2**31 - 1


def test_mismatch01_cseq_method_differs_from_request_method():
    exc = parse_error(with_line("CSeq:", "CSeq: 8 INVITE"))
    assert "CSeq method" in exc.reason


@pytest.mark.parametrize("ruri", [
    "nobodyKnowsThisScheme:totallyopaquecontent", "soap.beep://192.0.2.103:3002",
    "http://example.com/",
])
def test_unknown_request_uri_scheme_parses_and_stays_opaque(ruri):
    """RFC 3261 allows any absoluteURI as Request-URI: the message is well formed (RFC 4475
    §3.3.2/3.3.3) and the UA answers 416; it is no 400 (that is for <sip:…> and the like)."""
    data = BASE.replace(b"sip:user@example.com SIP/2.0", f"{ruri} SIP/2.0".encode(), 1)
    msg = parse_message(data)
    uri = msg.request_uri
    assert isinstance(uri, OpaqueUri) and str(uri) == ruri
    assert uri.scheme == ruri.split(":")[0].lower()


@pytest.mark.parametrize("start", [
    "OPTIONS <sip:user@example.com> SIP/2.0",     # ltgtruri
    "OPTIONS  sip:user@example.com  SIP/2.0",     # lwsstart
    "OPTIONS sip:user@example.com; lr SIP/2.0",   # lwsruri
    "OPTIONS sip:user@example.com",
    "OPT<IONS sip:user@example.com SIP/2.0",
])
def test_malformed_request_line(start):
    data = BASE.replace(b"OPTIONS sip:user@example.com SIP/2.0", start.encode(), 1)
    exc = parse_error(data)
    assert "Request-URI" in exc.reason or "request line" in exc.reason or \
        "method" in exc.reason


def test_badvers_request_unsupported_sip_version():
    exc = parse_error(BASE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1))
    assert exc.reason == "unsupported SIP version"
    assert isinstance(exc.partial, Request)


def test_response_with_bad_version_raises_without_partial():
    data = crlf("SIP/7.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n\n")
    exc = parse_error(data)
    assert exc.reason == "unsupported SIP version" and exc.partial is None


@pytest.mark.parametrize("line", ["SIP/2.0 99 Odd", "SIP/2.0 700 Odd", "SIP/2.0 2000 OK",
                                  "SIP/2.0 ٢٠٠ OK", "SIP/2.0200 OK"])
def test_bad_status_line(line):
    data = crlf(line + "\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n\n")
    exc = parse_error(data)
    assert "status" in exc.reason and exc.partial is None


def test_malformed_response_raises_and_has_no_partial():
    data = crlf(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\n"
        "To: <sip:c@d>;tag=2\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
    exc = parse_error(data)
    assert "Call-ID" in exc.reason and exc.partial is None


def test_clerr_content_length_larger_than_body():
    data = with_line("Content-Length:", "Content-Length: 9999") + b"v=0\r\n"
    exc = parse_error(data)
    assert exc.reason == "Content-Length larger than body"
    assert isinstance(exc.partial, Request)


@pytest.mark.parametrize("value", ["-999", "+5", "abc", "1" * 10, "²", "1 2", "0x10",
                                   pytest.param("9" * 5000, id="5000-digits")])
def test_ncl_negative_or_overflowing_content_length(value):
    exc = parse_error(with_line("Content-Length:", f"Content-Length: {value}"))
    assert exc.reason == "malformed Content-Length"


def test_mcl01_conflicting_content_lengths():
    data = with_line("Content-Length:", "Content-Length: 0\r\nl: 3\r\nContent-Length: 2")
    exc = parse_error(data + b"abc")
    assert "Content-Length" in exc.reason


def test_repeated_identical_content_length_is_fine():
    data = with_line("Content-Length:", "Content-Length: 3\r\nl: 3") + b"abc"
    assert parse_message(data).body == b"abc"


@pytest.mark.parametrize("value", ["abc", "300", "256", "-1", "1e3", "²",
                                   pytest.param("9" * 5000, id="5000-digits")])
def test_bad_max_forwards(value):
    exc = parse_error(with_line("Max-Forwards:", f"Max-Forwards: {value}"))
    assert exc.reason == "malformed Max-Forwards"


@pytest.mark.parametrize("value,expected", [("0", 0), ("0068", 68), ("255", 255)])
def test_good_max_forwards(value, expected):
    msg = parse_message(with_line("Max-Forwards:", f"Max-Forwards: {value}"))
    assert msg.header_int("Max-Forwards") == expected


@pytest.mark.parametrize("value", ["soon", "10000000000000000000000", "²"])
def test_scalar02_bad_expires(value):
    data = with_line("Max-Forwards:", f"Max-Forwards: 70\r\nExpires: {value}")
    exc = parse_error(data)
    assert "Expires" in exc.reason


def test_badinv01_extraneous_separators_in_via():
    data = with_line("Via:", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,")
    exc = parse_error(data)
    assert "Via" in exc.reason


@pytest.mark.parametrize("via", [
    "Via: SIP/2.0/UDP", "Via: SIP/3.0/UDP host", "Via: SIP/2.0/UDP host junk;branch=x",
    "Via: SIP/2.0/UDP host:99999;branch=x", "Via: SIP/2.0/UDP [::1;branch=x",
    "Via: SIP/2.0/UDP host;branch=x, garbage",
])
def test_malformed_via(via):
    exc = parse_error(with_line("Via:", via))
    assert "Via" in exc.reason


@pytest.mark.parametrize("name", ["Call-ID", "From", "To", "CSeq"])
def test_multi01_single_valued_header_twice(name):
    lines = BASE.decode().split("\r\n")
    line = next(line for line in lines if line.startswith(name + ":"))
    data = BASE.replace(line.encode(), (line + "\r\n" + line).encode(), 1)
    exc = parse_error(data)
    assert name in exc.reason


def test_malformed_header_line():
    exc = parse_error(with_line("Max-Forwards:", "This line has no colon"))
    assert "malformed header line" in exc.reason
    assert isinstance(exc.partial, Request)


def test_bad_from_is_named():
    exc = parse_error(with_line("From:", "From: <sip:caller@example.net;tag=1"))
    assert "From" in exc.reason


@pytest.mark.parametrize("data", [b"", b"\r\n\r\n", b"\r\n"])
def test_empty_message(data):
    assert parse_error(data).reason == "empty message"


def test_message_too_large():
    data = BASE + b"x" * MAX_MESSAGE_SIZE
    assert parse_error(data).reason == "message too large"


# ---------------------------------------------------------------------------------------
# Framing rules
# ---------------------------------------------------------------------------------------

def test_udp_missing_content_length_means_rest_of_datagram():
    data = with_line("Content-Length:", None) + b"hello body"
    msg = parse_message(data, datagram=True)
    assert msg.body == b"hello body"


def test_stream_message_without_content_length_has_empty_body():
    data = with_line("Content-Length:", None) + b"hello"
    assert parse_message(data, datagram=False).body == b""


def test_udp_extra_bytes_after_content_length_dropped():
    data = with_line("Content-Length:", "Content-Length: 5") + b"hello, and more"
    assert parse_message(data).body == b"hello"


def test_body_is_bytes_and_kept_exactly():
    body = bytes(range(256))
    data = with_line("Content-Length:", f"Content-Length: {len(body)}") + body
    msg = parse_message(data)
    assert msg.body == body
    assert parse_message(msg.to_bytes()).body == body


def test_leading_crlf_keepalives_tolerated():
    assert parse_message(b"\r\n\r\n" + BASE).method == "OPTIONS"


def test_bare_lf_line_endings_tolerated():
    msg = parse_message(BASE.replace(b"\r\n", b"\n"))
    assert msg.call_id == "base.1@192.0.2.1"


def test_stream_framer_content_length_not_the_last_header():
    # regression: the framer only found Content-Length on the header block's last line
    data = with_line("Content-Length:", None).replace(
        b"Max-Forwards: 70", b"Content-Length: 5\r\nMax-Forwards: 70") + b"hello"
    frames = StreamFramer().feed(data)
    assert frames == [data]
    assert parse_message(frames[0], datagram=False).body == b"hello"


def test_stream_framer_byte_by_byte_and_keepalives():
    msg1 = with_line("Content-Length:", "Content-Length: 3") + b"abc"
    msg2 = with_line("Content-Length:", "l:4") + b"wxyz"
    stream = b"\r\n\r\n" + msg1 + b"\r\n" + msg2
    framer = StreamFramer()
    frames: list[bytes] = []
    for i in range(len(stream)):
        frames += framer.feed(stream[i:i + 1])
    assert frames == [msg1, msg2]
    assert [parse_message(f, datagram=False).body for f in frames] == [b"abc", b"wxyz"]


def test_stream_framer_waits_for_the_body():
    msg = with_line("Content-Length:", "Content-Length: 10") + b"0123456789"
    framer = StreamFramer()
    assert framer.feed(msg[:-3]) == []
    assert framer.feed(msg[-3:]) == [msg]
    assert framer.feed(b"") == []


def test_stream_framer_missing_content_length_is_an_error():
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(with_line("Content-Length:", None))


def test_stream_framer_bounded():
    with pytest.raises(SipParseError, match="too large"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"y" * (MAX_MESSAGE_SIZE + 10))
    with pytest.raises(SipParseError, match="too large"):
        StreamFramer().feed(with_line("Content-Length:", "Content-Length: 999999999"))


# ---------------------------------------------------------------------------------------
# Headers, accessors, serialization
# ---------------------------------------------------------------------------------------

def test_canonical_names_and_compact_forms():
    assert canonical_name("i") == "Call-ID" and canonical_name("I") == "Call-ID"
    assert canonical_name("v") == "Via" and canonical_name("m") == "Contact"
    assert canonical_name("cseq") == "CSeq" and canonical_name("WWW-AUTHENTICATE") == \
        "WWW-Authenticate"
    assert canonical_name("X-Odd-Case") == "X-Odd-Case"
    assert canonical_name("z") == "z"


def test_headers_case_insensitive_and_ordered():
    h = Headers([("v", "SIP/2.0/UDP a"), ("X-Foo", "1"), ("via", "SIP/2.0/UDP b, SIP/2.0/UDP c")])
    assert "VIA" in h and "x-foo" in h and "Route" not in h
    assert h.get("x-FOO") == "1" and h.get("Route") is None and h.get("Route", "d") == "d"
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert [n for n, _ in h] == ["Via", "X-Foo", "Via"]
    h.set("Via", "SIP/2.0/UDP z")
    assert list(h) == [("Via", "SIP/2.0/UDP z"), ("X-Foo", "1")]
    h.prepend("Route", "<sip:r;lr>")
    h.add("X-Foo", "2")
    assert [n for n, _ in h] == ["Route", "Via", "X-Foo", "X-Foo"]
    assert h.get_all("x-foo") == ["1", "2"]
    copy = h.copy()
    h.remove("x-foo")
    assert len(h) == 2 and len(copy) == 4


def test_non_list_headers_keep_commas():
    h = Headers([("WWW-Authenticate", 'Digest realm="a,b", nonce="n", qop="auth,auth-int"'),
                 ("Subject", "hello, world")])
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a,b", nonce="n", qop="auth,auth-int"']
    assert h.get_all("Subject") == ["hello, world"]


def test_split_list_respects_quotes_and_brackets():
    value = '"Doe, John" <sip:j@x;a=1,2>;q=0.5, <sip:k@y>, ,"esc \\" ,"<sip:z@w>'
    assert split_list(value) == ['"Doe, John" <sip:j@x;a=1,2>;q=0.5', "<sip:k@y>",
                                 '"esc \\" ,"<sip:z@w>']


def test_contact_star_and_list():
    msg = parse_message(with_line("Max-Forwards:",
                                  'Max-Forwards: 70\r\nContact: *\r\n'
                                  'm: "A, B" <sip:a@h>;expires=5, <sip:b@h>'))
    assert [str(c.uri) for c in msg.contacts] == ["sip:a@h", "sip:b@h"]
    assert msg.contacts[0].display_name == "A, B"


def test_content_type_and_header_int():
    msg = parse_message(with_line("Max-Forwards:", "Max-Forwards: 70\r\n"
                                  "Content-Type: Application/SDP ; charset=x\r\n"
                                  "Expires: 3600;foo"))
    assert msg.content_type == "application/sdp"
    assert msg.header_int("Expires") == 3600
    assert msg.header_int("Min-Expires") is None


def test_serialization_recomputes_content_length_and_keeps_order():
    req = Request("MESSAGE", "sip:bob@example.com", [
        ("v", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx"), ("X-Custom", "keep me"),
        ("l", "999"), ("f", "<sip:a@example.com>;tag=1"), ("t", "<sip:bob@example.com>"),
        ("i", "c1"), ("CSeq", "1 MESSAGE")], b"hi there")
    out = req.to_bytes()
    assert out == (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
        b"X-Custom: keep me\r\n"
        b"From: <sip:a@example.com>;tag=1\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: c1\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Content-Length: 8\r\n\r\nhi there")
    assert bytes(req) == out
    assert parse_message(out, datagram=False).body == b"hi there"


def test_response_defaults_and_repr():
    r = Response(486)
    assert r.reason == "Busy Here" and "486" in repr(r)
    assert Response(299).reason == "Unknown"
    assert Response(200, "").to_bytes().startswith(b"SIP/2.0 200 \r\n")


def test_response_reason_phrase_with_spaces_and_no_reason():
    data = crlf("SIP/2.0 404 Not Found Here Either\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"
                "From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\n\n")
    msg = parse_message(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (404, "Not Found Here Either")
    assert parse_message(data.replace(b" Not Found Here Either", b"", 1)).reason == ""


# ---------------------------------------------------------------------------------------
# Via
# ---------------------------------------------------------------------------------------

def test_via_parse_and_str():
    via = Via.parse("SIP/2.0/udp [2001:db8::1]:5070;rport=5071;received=192.0.2.1;"
                    "Branch=z9hG4bKabc")
    assert (via.transport, via.host, via.port) == ("UDP", "[2001:db8::1]", 5070)
    assert via.params == {"rport": "5071", "received": "192.0.2.1", "branch": "z9hG4bKabc"}
    assert via.branch == "z9hG4bKabc"
    assert str(via) == ("SIP/2.0/UDP [2001:db8::1]:5070;rport=5071;received=192.0.2.1;"
                        "branch=z9hG4bKabc")
    assert Via.parse(str(via)) == via
    bare = Via("TLS", "example.com", None, {"branch": "z9hG4bK1", "rport": None})
    assert str(bare) == "SIP/2.0/TLS example.com;branch=z9hG4bK1;rport"


# ---------------------------------------------------------------------------------------
# RFC 3665 basic call flow (through two record-routing proxies, as seen by Alice)
# ---------------------------------------------------------------------------------------

ALICE_SDP = crlf(
    "v=0\no=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\ns=-\n"
    "c=IN IP4 192.0.2.101\nt=0 0\nm=audio 49172 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")
BOB_SDP = crlf(
    "v=0\no=bob 2890844527 2890844527 IN IP4 client.biloxi.example.com\ns=-\n"
    "c=IN IP4 192.0.2.201\nt=0 0\nm=audio 3456 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")

RFC3665_REGISTER = crlf(
    "REGISTER sips:ss2.biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\n"
    "Max-Forwards: 70\n"
    "From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\n"
    "To: Bob <sips:bob@biloxi.example.com>\n"
    "Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\n"
    "CSeq: 1 REGISTER\n"
    "Contact: <sips:bob@client.biloxi.example.com>\n"
    "Content-Length: 0\n\n")

RFC3665_INVITE = crlf(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\n"
    "Max-Forwards: 70\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "To: Bob <sip:bob@biloxi.example.com>\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 151\n\n", ALICE_SDP)

_RESPONSE_VIAS = (
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\n"
    " ;received=192.0.2.101\n"
)

RFC3665_180 = crlf(
    "SIP/2.0 180 Ringing\n" + _RESPONSE_VIAS +
    "Record-Route: <sip:ss2.biloxi.example.com;lr>,\n <sip:ss1.atlanta.example.com;lr>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=314159\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>\n"
    "CSeq: 1 INVITE\n"
    "Content-Length: 0\n\n")

RFC3665_200 = crlf(
    "SIP/2.0 200 OK\n" + _RESPONSE_VIAS +
    "Record-Route: <sip:ss2.biloxi.example.com;lr>\n"
    "Record-Route: <sip:ss1.atlanta.example.com;lr>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=314159\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 147\n\n", BOB_SDP)

RFC3665_ACK = crlf(
    "ACK sip:bob@client.biloxi.example.com;transport=tcp SIP/2.0\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bd5\n"
    "Max-Forwards: 70\n"
    "Route: <sip:ss1.atlanta.example.com;lr>,<sip:ss2.biloxi.example.com;lr>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=314159\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "CSeq: 1 ACK\n"
    "Content-Length: 0\n\n")

RFC3665_BYE = crlf(
    "BYE sip:alice@client.atlanta.example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bK74b43\n"
    "Max-Forwards: 70\n"
    "Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>\n"
    "From: Bob <sip:bob@biloxi.example.com>;tag=314159\n"
    "To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "CSeq: 1 BYE\n"
    "Content-Length: 0\n\n")

RFC3665_FLOW = [RFC3665_REGISTER, RFC3665_INVITE, RFC3665_180, RFC3665_200, RFC3665_ACK,
                RFC3665_BYE]


def test_rfc3665_sdp_lengths_are_right():
    assert (len(ALICE_SDP), len(BOB_SDP)) == (151, 147)


@pytest.mark.parametrize("data", RFC3665_FLOW, ids=["REGISTER", "INVITE", "180", "200",
                                                    "ACK", "BYE"])
def test_rfc3665_messages_parse_and_round_trip(data):
    msg = parse_message(data)
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    assert list(again.headers) == list(msg.headers)
    assert again.body == msg.body
    # over a stream too
    assert StreamFramer().feed(msg.to_bytes() * 2) == [msg.to_bytes()] * 2


def test_rfc3665_register_and_invite_fields():
    reg = parse_message(RFC3665_REGISTER)
    assert reg.request_uri.scheme == "sips" and reg.request_uri.default_port == 5061
    assert reg.top_via.transport == "TLS" and reg.top_via.port == 5061
    assert reg.to.display_name == "Bob" and reg.to.tag is None
    inv = parse_message(RFC3665_INVITE)
    assert inv.contacts[0].uri.transport == "tcp"
    assert inv.content_type == "application/sdp" and inv.body == ALICE_SDP


def test_rfc3665_responses_record_route_and_folded_via():
    ringing = parse_message(RFC3665_180)
    ok = parse_message(RFC3665_200)
    expected = ["<sip:ss2.biloxi.example.com;lr>", "<sip:ss1.atlanta.example.com;lr>"]
    assert ringing.record_routes == expected and ok.record_routes == expected
    assert ok.top_via.params["received"] == "192.0.2.101"
    assert ok.to.tag == "314159" and ok.body == BOB_SDP
    ack = parse_message(RFC3665_ACK)
    assert ack.headers.get_all("Route") == ["<sip:ss1.atlanta.example.com;lr>",
                                            "<sip:ss2.biloxi.example.com;lr>"]


# ---------------------------------------------------------------------------------------
# make_response
# ---------------------------------------------------------------------------------------

PROXIED_INVITE = crlf(
    "INVITE sip:bob@client.biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK721e4.1\n"
    "v: SIP/2.0/TCP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1,\n"
    " SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\n"
    "Max-Forwards: 68\n"
    "Record-Route: <sip:ss2.biloxi.example.com;lr>, <sip:ss1.atlanta.example.com;lr>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
    "To: Bob <sip:bob@biloxi.example.com>\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\n"
    "CSeq: 1 INVITE\n"
    "Timestamp: 54.2 0.1\n"
    "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\n"
    "Content-Length: 0\n\n")


def test_make_response_copies_vias_in_order_and_dialog_headers():
    req = parse_message(PROXIED_INVITE)
    resp = make_response(req, 180, to_tag="314159",
                         extra=[("Contact", "<sip:bob@client.biloxi.example.com>")])
    assert isinstance(resp, Response) and resp.reason == "Ringing"
    assert [v.branch for v in resp.vias] == ["z9hG4bK721e4.1", "z9hG4bK2d4790.1",
                                             "z9hG4bK74bf9"]
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.to.tag == "314159" and resp.to.display_name == "Bob"
    assert resp.call_id == req.call_id and resp.cseq == (1, "INVITE")
    assert resp.headers.get("Timestamp") is None
    assert resp.contacts[0].uri.host == "client.biloxi.example.com"
    # the response itself parses back
    again = parse_message(resp.to_bytes())
    assert again.status == 180 and again.to.tag == "314159"


def test_make_response_100_has_no_tag_but_timestamp():
    req = parse_message(PROXIED_INVITE)
    trying = make_response(req, 100, to_tag="314159")
    assert trying.to.tag is None and trying.reason == "Trying"
    assert trying.headers.get("Timestamp") == "54.2 0.1"


def test_make_response_keeps_existing_to_tag():
    req = parse_message(PROXIED_INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                               b"To: Bob <sip:bob@biloxi.example.com>;tag=old"))
    resp = make_response(req, 200, to_tag="new")
    assert resp.to.tag == "old"
    assert len(resp.headers.get_all("To")) == 1


def test_make_response_addr_spec_to_gets_header_param_tag():
    req = parse_message(with_line("To:", "To: sip:user@example.com"))
    resp = make_response(req, 404, "Nobody", to_tag="abc", body=b"x")
    assert resp.to.tag == "abc" and resp.to.uri.params == {}
    assert resp.reason == "Nobody" and resp.body == b"x"


def test_methods_are_case_sensitive():
    """'invite' is an extension method, not INVITE (RFC 3261 §7.1)."""
    msg = parse_message(b"invite sip:bob@example.com SIP/2.0\r\n"
                        b"Via: SIP/2.0/UDP h;branch=z9hG4bKlc\r\nFrom: <sip:a@h>;tag=1\r\n"
                        b"To: <sip:bob@example.com>\r\nCall-ID: lc\r\nCSeq: 1 invite\r\n\r\n")
    assert msg.method == "invite" and msg.cseq == (1, "invite")
    with pytest.raises(SipParseError, match="CSeq method"):
        parse_message(b"invite sip:bob@example.com SIP/2.0\r\n"
                      b"Via: SIP/2.0/UDP h;branch=z9hG4bKlc\r\nFrom: <sip:a@h>;tag=1\r\n"
                      b"To: <sip:bob@example.com>\r\nCall-ID: lc\r\nCSeq: 1 INVITE\r\n\r\n")


def test_display_name_cannot_inject_a_header_line():
    from softphone.sip.uri import NameAddr, SipUri, parse_name_addr

    value = str(NameAddr(SipUri(user="a", host="h"), "Eve\r\nX-Injected: 1"))
    assert "\r" not in value and "\n" not in value
    assert parse_name_addr(value).display_name == "Eve  X-Injected: 1"


def test_replace_first_value_keeps_position_and_further_values():
    from softphone.sip.message import Headers

    h = Headers([("Max-Forwards", "70"), ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"),
                 ("Via", "SIP/2.0/UDP c"), ("To", "<sip:x@y>")])
    h.replace_first_value("v", "SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4")
    assert list(h)[1] == ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4, SIP/2.0/UDP b")
    assert h.get_all("Via")[1:] == ["SIP/2.0/UDP b", "SIP/2.0/UDP c"]


# ---------------------------------------------------------------------------------------
# Laziness: the bytes as parsed, typed values on first read, changes drop only their own
# ---------------------------------------------------------------------------------------

ODD_SPELLING = (b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                b"v:SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKodd;rport\r\n"
                b"f: <sip:a@example.com>;tag=1\r\nt:<sip:bob@example.com>\r\n"
                b"i:   odd@192.0.2.7\r\ncseq: 3 OPTIONS\r\nX-Unknown:  kept   as is \r\n"
                b"l: 4\r\n\r\nbody")


def test_an_unmodified_message_serializes_to_the_bytes_it_was_parsed_from():
    msg = parse_message(ODD_SPELLING)
    msg.top_via, msg.from_, msg.to, msg.cseq, msg.call_id  # reading changes nothing
    assert msg.to_bytes() == ODD_SPELLING
    # extra octets past Content-Length in a datagram are not part of the message
    assert parse_message(ODD_SPELLING + b"junk").to_bytes() == ODD_SPELLING


def test_a_changed_message_is_written_again_with_canonical_names():
    for change in (lambda m: m.headers.add("Subject", "hi"),
                   lambda m: setattr(m, "body", b"other"),
                   lambda m: setattr(m, "uri", "sip:carol@example.com")):
        msg = parse_message(ODD_SPELLING)
        change(msg)
        out = msg.to_bytes()
        assert out != ODD_SPELLING and b"\r\nVia: SIP/2.0/UDP 192.0.2.7:5062" in out
        assert b"\r\nCall-ID: odd@192.0.2.7\r\n" in out
        again = parse_message(out)
        assert again.body == msg.body and again.uri == msg.uri
        assert again.headers.get("X-Unknown") == "kept   as is"


def test_stamping_the_top_via_keeps_the_other_typed_values():
    msg = parse_message(ODD_SPELLING)
    from_, to, cseq = msg.from_, msg.to, msg.cseq
    via = msg.top_via
    via.params["received"] = "198.51.100.1"
    msg.replace_top_via(via)
    assert msg.top_via is via and msg.from_ is from_ and msg.to is to
    assert msg.cseq == cseq
    out = msg.to_bytes()
    assert b"Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKodd;rport;received=198.51.100.1" \
        in out
    assert parse_message(out).top_via.params["received"] == "198.51.100.1"


def test_a_changed_header_drops_its_typed_value():
    msg = parse_message(ODD_SPELLING)
    assert msg.to.tag is None
    msg.headers.set("To", "<sip:bob@example.com>;tag=9")
    assert msg.to.tag == "9"
    msg.headers.set("CSeq", "4 OPTIONS")
    assert msg.cseq == (4, "OPTIONS")


def test_a_lower_via_is_checked_at_once_but_built_only_when_read():
    data = with_line("Via:", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKtop, "
                             "SIP/2.0/TCP lower.example.com:5070;branch=z9hG4bKlow")
    msg = parse_message(data)
    assert "vias" not in msg.headers.parsed
    assert [(v.host, v.port) for v in msg.vias] == [("192.0.2.1", None),
                                                     ("lower.example.com", 5070)]
    exc = parse_error(with_line("Via:", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKtop, "
                                        "SIP/2.0/UDP lower:70000"))
    assert "Via" in exc.reason and isinstance(exc.partial, Request)


def test_a_bad_contact_in_a_response_shows_when_it_is_read():
    ok = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
          b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
          b"Contact: <sip:b@h;transport=udp\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(ok)
    with pytest.raises(SipParseError):
        msg.contacts
