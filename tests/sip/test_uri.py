"""softphone.sip.uri: sip/sips/tel URIs, %-escaping, name-addr and addr-spec forms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.errors import SipParseError
from softphone.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri


def fields(uri: SipUri) -> tuple:
    """Everything a URI holds (SipUri.__eq__ is deliberately looser)."""
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)


# ---------------------------------------------------------------------------------------
# parse_uri
# ---------------------------------------------------------------------------------------

def test_full_sip_uri():
    uri = parse_uri("sip:alice:secret@atlanta.example.com:5070;transport=TCP;lr;maddr=239.1.1.1"
                    "?subject=project%20x&priority=urgent")
    assert fields(uri) == ("sip", "alice", "secret", "atlanta.example.com", 5070,
                           {"transport": "TCP", "lr": None, "maddr": "239.1.1.1"},
                           {"subject": "project x", "priority": "urgent"})
    assert uri.transport == "tcp" and uri.default_port == 5060
    assert uri.hostport == "atlanta.example.com:5070"
    assert uri.aor == "sip:alice@atlanta.example.com"
    assert "secret" not in repr(uri)


def test_scheme_and_param_names_case_insensitive_user_case_sensitive():
    uri = parse_uri("SIP:Bob@BILOXI.example.com;Transport=udp")
    assert uri.scheme == "sip" and uri.user == "Bob" and uri.params == {"transport": "udp"}
    assert uri == parse_uri("sip:Bob@biloxi.EXAMPLE.com;transport=udp")
    assert hash(uri) == hash(parse_uri("sip:Bob@biloxi.EXAMPLE.com;transport=udp"))
    assert uri != parse_uri("sip:bob@biloxi.example.com;transport=udp")
    assert uri != parse_uri("sip:Bob@biloxi.example.com;transport=tcp")
    assert uri != parse_uri("sip:Bob@biloxi.example.com:5060;transport=udp")


def test_sips_defaults():
    uri = parse_uri("sips:bob@biloxi.example.com")
    assert uri.scheme == "sips" and uri.transport == "tls" and uri.default_port == 5061
    assert parse_uri("sip:b@h;transport=tls").default_port == 5061


def test_host_only_and_ipv4():
    uri = parse_uri("sip:192.0.2.4")
    assert (uri.user, uri.host, uri.port) == (None, "192.0.2.4", None)
    assert str(uri) == "sip:192.0.2.4"


@pytest.mark.parametrize("text,host,bare,port", [
    ("sip:[2001:db8::10]", "[2001:db8::10]", "2001:db8::10", None),
    ("sip:alice@[2001:db8::10]:5070;transport=udp", "[2001:db8::10]", "2001:db8::10", 5070),
    ("sips:[::1]:5061", "[::1]", "::1", 5061),
    ("sip:[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", "::ffff:192.0.2.1", None),
])
def test_ipv6_references(text, host, bare, port):
    uri = parse_uri(text)
    assert (uri.host, uri.host_bare, uri.port) == (host, bare, port)
    assert fields(parse_uri(str(uri))) == fields(uri)


def test_tel_uri():
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert parse_uri("TEL:911").user == "911"


def test_escaping_unescaped_on_parse_and_equal():
    a = parse_uri("sip:%61lice@atlanta.example.com;transport=%54CP")
    b = parse_uri("sip:alice@atlanta.example.com;transport=TCP")
    assert a.user == "alice" and a.params["transport"] == "TCP"
    assert a == b


def test_user_with_spaces_and_reserved_round_trips():
    uri = SipUri(user="alice smith;x?y@z", password="p@ss:w", host="example.com")
    text = str(uri)
    assert " " not in text and text.count("@") == 1
    back = parse_uri(text)
    assert fields(back) == fields(uri)


def test_user_part_may_hold_semicolon_and_question_mark():
    # RFC 3261 §25.1 user-unreserved: & = + $ , ; ? /  (RFC 4475 intmeth)
    uri = parse_uri("sip:a;b?c/d,e@example.com;transport=tcp?h=v")
    assert uri.user == "a;b?c/d,e"
    assert uri.params == {"transport": "tcp"} and uri.headers == {"h": "v"}


def test_param_values_and_names_escaped_on_output():
    uri = SipUri(host="h", params={"a=b": "c;d", "flag": None}, headers={"X&y": "1=2"})
    back = parse_uri(str(uri))
    assert fields(back) == fields(uri)


def test_with_copies_params():
    uri = parse_uri("sip:a@h;lr")
    other = uri.with_(port=5070)
    other.params["x"] = "1"
    assert uri.params == {"lr": None} and other.port == 5070


@pytest.mark.parametrize("text", [
    "", "alice@example.com", "http://example.com", "mailto:a@b", "sip", "sip:",
    "sip:@example.com", "sip:alice@", "sip:alice@exa mple.com", "sip:alice@host:0",
    "sip:alice@host:65536", "sip:alice@host:12x", "sip:alice@host:", "sip:alice@host:²",
    "sip:alice@host:٣", "sip:alice@host:1234567", "sip:[::1", "sip:[::1]x", "sip:[zz::1]",
    "sip:[1:2:3:4:5:6:7:8:9]", "sip:%zz@host", "sip:a%2@host", "sip:a%FF@host",
    "sip:a%C3%28@host", "sip:host;=x", "sip:a@host\n;x", "tel:", "tel:abc!", "sip:ho<st",
])
def test_invalid_uris(text):
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_unknown_scheme_reason_names_scheme():
    with pytest.raises(SipParseError, match="scheme"):
        parse_uri("soap.beep://192.0.2.103:3002")


def test_equality_with_other_types():
    assert parse_uri("sip:a@h") != "sip:a@h"


# ---------------------------------------------------------------------------------------
# name-addr / addr-spec
# ---------------------------------------------------------------------------------------

def test_name_addr_quoted_display_with_escapes():
    na = parse_name_addr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert na.display_name == 'J Rosenberg \\"'
    assert na.tag == "98asjd8" and na.uri.user == "jdrosen"
    again = parse_name_addr(str(na))
    assert again.display_name == na.display_name and again.params == na.params


def test_name_addr_token_display_and_uri_params_vs_header_params():
    na = parse_name_addr("Bob <sip:bob@biloxi.example.com;transport=tcp>;tag=a6c85cf;expires=60")
    assert na.display_name == "Bob"
    assert na.uri.params == {"transport": "tcp"}
    assert na.params == {"tag": "a6c85cf", "expires": "60"}
    assert str(na) == "Bob <sip:bob@biloxi.example.com;transport=tcp>;tag=a6c85cf;expires=60"


def test_addr_spec_params_are_header_params():
    na = parse_name_addr("sip:bob@biloxi.example.com;tag=1928301774;transport=tcp")
    assert na.display_name is None
    assert na.uri.params == {}
    assert na.params == {"tag": "1928301774", "transport": "tcp"}
    assert str(na) == "<sip:bob@biloxi.example.com>;tag=1928301774;transport=tcp"


def test_lws_around_separators():
    na = parse_name_addr('  "A"   <sip:a@h>  ;  tag  =  x ;  flag ; q = 0.5 ')
    assert na.display_name == "A" and na.params == {"tag": "x", "flag": None, "q": "0.5"}
    spec = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert spec.tag == "1918181833n" and spec.uri.user == "vivekg"


def test_lwsdisp_and_multi_token_display():
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display_name == "caller"
    na = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
    assert na.display_name == "token1~` token2'+_ token3*%!.-"
    assert parse_name_addr(str(na)).display_name == na.display_name


def test_quoted_param_value_with_semicolon_kept():
    na = parse_name_addr('<sip:a@h>;note="x;y\\"z";tag=1')
    assert na.params == {"note": '"x;y\\"z"', "tag": "1"}
    assert parse_name_addr(str(na)).params == na.params


def test_display_names_needing_quotes_round_trip():
    for name in ['Doe, John', 'He said "hi"', "back\\slash", " padded ", "ümlaut", "a<b>"]:
        na = NameAddr(parse_uri("sip:a@h"), name)
        again = parse_name_addr(str(na))
        assert again.display_name == name, str(na)


def test_with_tag_is_a_copy():
    na = parse_name_addr("<sip:a@h>;tag=1;x=2")
    other = na.with_tag("9")
    assert na.tag == "1" and other.tag == "9" and other.params["x"] == "2"
    assert NameAddr(parse_uri("sip:a@h")).tag is None


@pytest.mark.parametrize("text", [
    '"unterminated <sip:a@h>', '"Bob" sip:a@h', "<sip:a@h", "<sip:a@h> junk",
    "<sip:a@h>;", "<sip:a@h>;=1", '<sip:a@h>;x="open', "",
    "sip:a@h;tag=1;;", "<>",
])
def test_invalid_name_addr(text):
    with pytest.raises(SipParseError):
        parse_name_addr(text)


# ---------------------------------------------------------------------------------------
# round trips (hypothesis)
# ---------------------------------------------------------------------------------------

_any_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=8)
_hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)


@st.composite
def sip_uris(draw) -> SipUri:
    user = draw(st.none() | _any_text)
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=draw(st.none() | _any_text) if user is not None else None,
        host=draw(_hosts),
        port=draw(st.none() | st.integers(1, 65535)),
        params=draw(st.dictionaries(_any_text.map(str.lower), st.none() | _any_text,
                                    max_size=3)),
        headers=draw(st.dictionaries(_any_text, _any_text, max_size=2)),
    )


@settings(max_examples=300, deadline=None)
@given(sip_uris())
def test_uri_round_trip(uri):
    text = str(uri)
    back = parse_uri(text)
    assert fields(back) == fields(uri)
    assert back == uri
    assert str(back) == text


@settings(max_examples=200, deadline=None)
@given(sip_uris(), st.none() | _any_text,
       st.dictionaries(_token.map(str.lower), st.none() | _token, max_size=3))
def test_name_addr_round_trip(uri, display, params):
    na = NameAddr(uri, display, params)
    back = parse_name_addr(str(na))
    assert fields(back.uri) == fields(uri)
    assert back.params == params
    expected = display if display and display.strip() else None
    if expected is not None and not any(c in display for c in "\r\n"):
        assert back.display_name == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="sip:tel@[]%0123456789abcdefABCDEF.;=?&-_~!*'()+$,/: ", max_size=40))
def test_reparse_of_parsed_text_is_stable(text):
    """str(parse(x)) parses again, to an equal URI with the same text."""
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    again = parse_uri(str(uri))
    assert fields(again) == fields(uri)
    assert str(again) == str(uri)


def test_name_addr_with_another_scheme_is_kept_opaque():
    """From/To/Contact may carry any absoluteURI (RFC 4475 §3.3.4): kept, not refused."""
    from softphone.sip.uri import OpaqueUri

    na = parse_name_addr("Bob <http://x>;tag=1")
    assert isinstance(na.uri, OpaqueUri) and str(na.uri) == "http://x"
    assert na.display_name == "Bob" and na.tag == "1"
    assert str(parse_name_addr("isbn:2983792873").uri) == "isbn:2983792873"


@pytest.mark.parametrize("text, why", [
    ('"Watson, Thomas" < sip:t.watson@example.org >', "whitespace inside <>"),
    ("Bell, Alexander <sip:a.g.bell@example.com>", "must be quoted"),
    ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", "must be enclosed in <>"),
])
def test_name_addrs_the_grammar_forbids(text, why):
    """RFC 4475 §3.1.2.14, §3.1.2.15, §3.1.2.13."""
    with pytest.raises(SipParseError, match=why):
        parse_name_addr(text)
