"""The RFC 4475 and RFC 5118 torture messages, byte-exact, against the parser: each must
be accepted or refused as the RFC says (tests/sip/torture/manifest.toml). What a running
phone answers to each is tests/interop/test_torture_answers.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from softphone.sip.errors import SipParseError
from softphone.sip.message import Request, parse_message

TORTURE = Path(__file__).resolve().parent / "torture"
MANIFEST = tomllib.loads((TORTURE / "manifest.toml").read_text())
CASES = [(rfc, name, case) for rfc, cases in MANIFEST.items() for name, case in cases.items()]


def load(rfc: str, name: str) -> bytes:
    return (TORTURE / rfc / f"{name}.dat").read_bytes()


def test_the_corpus_is_complete():
    assert len(MANIFEST["rfc4475"]) == 49 and len(MANIFEST["rfc5118"]) == 12
    on_disk = {(p.parent.name, p.stem) for p in TORTURE.glob("rfc*/*.dat")}
    assert on_disk == {(rfc, name) for rfc, name, _ in CASES}
    # byte-exact: CRLF line ends survive (an editor that normalises them breaks the corpus)
    assert b"\r\n" in load("rfc4475", "wsinv") and b"\n" not in load(
        "rfc4475", "wsinv").replace(b"\r\n", b"")


@pytest.mark.parametrize("rfc, name, case", CASES, ids=[f"{r}-{n}" for r, n, _ in CASES])
def test_parser_verdict(rfc, name, case):
    data = load(rfc, name)
    if case["parse"] == "ok":
        message = parse_message(data)
        # what the UA reads of every request must be readable too
        if isinstance(message, Request):
            message.top_via, message.cseq, message.call_id
            message.from_, message.to
    else:
        with pytest.raises(SipParseError):
            message = parse_message(data)
            if isinstance(message, Request):  # some faults show when a header is read
                message.top_via, message.cseq, message.call_id, message.from_, message.to
                message.contacts
            raise AssertionError(f"{name} parsed: {message!r}")


def test_esc01_unescapes_what_it_should():
    message = parse_message(load("rfc4475", "esc01"))
    assert message.request_uri.user == "sips:user@example.com"
    assert message.to.uri.user == "user"
    assert message.from_.uri.user == "I have spaces"


def test_dblreq_ignores_the_trailing_octets():
    message = parse_message(load("rfc4475", "dblreq"))
    assert message.method == "REGISTER" and message.body == b""


def test_port_ambiguity_resolved_as_rfc_5118_says():
    ambiguous = parse_message(load("rfc5118", "port-ambiguous")).request_uri
    assert (ambiguous.host_bare, ambiguous.port) == ("2001:db8::10:5070", None)
    clear = parse_message(load("rfc5118", "port-unambiguous")).request_uri
    assert (clear.host_bare, clear.port) == ("2001:db8::10", 5070)


def test_three_colon_reference_is_tolerated_and_names_the_right_address():
    uri = parse_message(load("rfc5118", "ipv6-bug-abnf-3-colons")).request_uri
    import ipaddress
    assert ipaddress.ip_address(uri.host_bare.replace(":::", "::")) == \
        ipaddress.ip_address("2001:db8::192.0.2.1")
