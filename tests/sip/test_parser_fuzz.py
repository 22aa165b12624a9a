"""Nothing but SipParseError may leave the parsers, whatever the bytes.

Random bytes and text, and mutations of valid messages (byte flips, truncation, duplicated
and deleted lines, huge numbers, odd unicode), go through parse_message, StreamFramer.feed,
parse_uri, parse_name_addr, Via.parse and every typed accessor. Whatever parses must also
serialize, and the serialized form must parse again.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from softphone.sip.errors import SipParseError
from softphone.sip.message import Request, StreamFramer, Via, make_response, parse_message
from softphone.sip.uri import parse_name_addr, parse_uri

from test_message import (DBLREQ_REGISTER, ESC01, ESCNULL, INTMETH, LWSDISP, RFC3665_FLOW,
                          WSINV, _longreq)

VALID = [WSINV, INTMETH, ESC01, ESCNULL, LWSDISP, DBLREQ_REGISTER, _longreq(), *RFC3665_FLOW]

# SIP_FUZZ_EXAMPLES=5000 for a deeper run; the default keeps the suite fast
FUZZ = settings(max_examples=int(os.environ.get("SIP_FUZZ_EXAMPLES", "250")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ODD_TEXT = [
    "\x00", "\x7f", "\u00b2", "\u0663", "\u00bd", "\u2167", "\ufeff", "\u202e", "\ud7ff",
    "\U0001f600", "\u0301", "\u3000", "\u00a0", "\u2028", "%", "%FF", "%C3%28", "%00",
    '"', "\\", "<", ">", ";", ",", ":", "@", "?", "&", "=", "[", "]", "\t", "\r", "\n",
    "\r\n ", " ",
]
HUGE = ["9" * 12, "9" * 5000, "18446744073709551616", "-1", "0" * 40 + "1", "4294967296",
        "2147483648", "1e9", "0x10"]


def exercise(msg) -> None:
    """Touch every typed accessor; each may only raise SipParseError."""
    for name in ("call_id", "cseq", "vias", "top_via", "from_", "to", "contacts",
                 "record_routes", "content_type"):
        try:
            getattr(msg, name)
        except SipParseError:
            pass
    for name in ("Expires", "Min-Expires", "Max-Forwards", "Content-Length", "RSeq"):
        try:
            msg.header_int(name)
        except SipParseError:
            pass
    if isinstance(msg, Request):
        try:
            msg.request_uri
        except SipParseError:
            pass


def check_message(data: bytes, datagram: bool = True) -> None:
    try:
        msg = parse_message(data, datagram=datagram)
    except SipParseError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        if exc.partial is not None:
            assert isinstance(exc.partial, Request)
            exercise(exc.partial)
        return
    exercise(msg)
    out = msg.to_bytes()
    again = parse_message(out, datagram=datagram)  # what we accept, we can re-read
    assert type(again) is type(msg)
    assert again.body == msg.body
    assert again.to_bytes() == out
    if isinstance(msg, Request):
        exercise(make_response(msg, 200, to_tag="x"))


def check_framer(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        try:
            frames = framer.feed(data[start:cut])
        except SipParseError:
            return
        start = cut
        for frame in frames:
            check_message(frame, datagram=False)


@st.composite
def mutated(draw) -> bytes:
    """A valid message with a few random edits."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "dup_line", "del_line", "huge",
                                     "unicode", "insert", "swap_lines"]))
        lines = bytes(data).split(b"\r\n")
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind in ("dup_line", "del_line", "swap_lines") and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(i, lines[i])
            elif kind == "del_line":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\r\n".join(lines))
        elif kind == "huge":
            digits = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
            if digits:
                i = draw(st.sampled_from(digits))
                data[i:i + 1] = draw(st.sampled_from(HUGE)).encode()
        elif kind in ("unicode", "insert"):
            i = draw(st.integers(0, len(data)))
            piece = draw(st.sampled_from(ODD_TEXT)) if kind == "unicode" else \
                draw(st.text(max_size=6))
            data[i:i] = piece.encode("utf-8", "surrogatepass")
    return bytes(data)


@FUZZ
@given(st.binary(max_size=600), st.booleans())
@example(b"SIP/2.0 200 OK\r\n\r\n", True)
@example(b"INVITE sip:a@b SIP/2.0\r\nl: \xc2\xb2\r\n\r\n", True)
@example(b"\xff\xfe\r\n\r\n", False)
def test_random_bytes(data, datagram):
    check_message(data, datagram)


@FUZZ
@given(mutated(), st.booleans())
def test_mutated_valid_messages(data, datagram):
    check_message(data, datagram)


@FUZZ
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=5))
def test_mutated_messages_through_stream_framer(data, cuts):
    check_framer(data, cuts)


@FUZZ
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=4),
       st.lists(st.integers(0, 10_000), max_size=8))
def test_valid_stream_cut_anywhere_yields_every_message(messages, cuts):
    wire = [parse_message(m).to_bytes() for m in messages]
    stream = b"\r\n".join(wire)
    framer = StreamFramer()
    frames: list[bytes] = []
    start = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        frames += framer.feed(stream[start:cut])
        start = cut
    assert frames == wire


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 1000), max_size=4))
def test_random_bytes_through_stream_framer(data, cuts):
    check_framer(data, cuts)


def _text_for_uris():
    alphabet = st.sampled_from(list("sipteltel:@[]%0123456789aAfF.;=?&-_~!*'()+$,/<>\" ")
                               + ODD_TEXT)
    return st.one_of(st.text(max_size=60),
                     st.lists(alphabet, max_size=40).map("".join),
                     st.sampled_from(["sip:", "sips:", "tel:"]).flatmap(
                         lambda s: st.lists(alphabet, max_size=30).map(
                             lambda xs: s + "".join(xs))))


@FUZZ
@given(_text_for_uris())
@example("sip:a%C3%28@h")
@example("sip:a@h:\u00b2")
def test_parse_uri_only_raises_sip_parse_error(text):
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    text2 = str(uri)
    again = parse_uri(text2)
    assert again == uri
    assert str(again) == text2


@FUZZ
@given(_text_for_uris())
def test_parse_name_addr_only_raises_sip_parse_error(text):
    for candidate in (text, f"<{text}>", f'"x" <{text}>;tag=1', f"{text};tag=1"):
        try:
            na = parse_name_addr(candidate)
        except SipParseError:
            continue
        again = parse_name_addr(str(na))
        assert again.uri == na.uri and again.params == na.params


@FUZZ
@given(st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(["SIP", "/", "2.0", "UDP", "TCP", " ", "\t", "host", "[::1]",
                              ":", "5060", ";", "branch", "=", "z9hG4bK", ",", "rport",
                              *ODD_TEXT, *HUGE]), max_size=20).map("".join)))
def test_via_parse_only_raises_sip_parse_error(text):
    try:
        via = Via.parse(text)
    except SipParseError:
        return
    assert Via.parse(str(via)).host == via.host


@FUZZ
@given(st.sampled_from(["Call-ID", "CSeq", "Via", "From", "To", "Contact", "Record-Route",
                        "Content-Type", "Expires", "Max-Forwards"]),
       st.one_of(st.text(max_size=60), st.sampled_from(ODD_TEXT + HUGE)))
def test_typed_accessors_on_arbitrary_header_values(name, value):
    msg = Request("OPTIONS", "sip:a@b", [(name, value), (name, value + " 7")])
    exercise(msg)
    # and a message carrying it on the wire behaves the same
    check_message(msg.to_bytes())
