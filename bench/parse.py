#!/usr/bin/env python3
"""SIP message handling throughput on a fixed mix of real messages, against pyVoIP.

The mix (one each, as captured on loopback from baresip/Kamailio/SIPp traffic): REGISTER
with digest Authorization, INVITE with an SDP offer, 200 OK with Record-Route and an SDP
answer, BYE with Route.

The headline figure, ``parse.ua_handling``, measures what the UA does with each message,
so a lazy parser cannot win by parsing nothing: ours parses, reads the top Via's branch
and sent-by, the From/To tags, Call-ID, CSeq and Content-Length, the Contact URI and the
SDP body of an INVITE or its 200, serializes the message unmodified, then stamps
``received`` on the top Via and serializes it again (``ua_handles``). pyVoIP
(``pyVoIP.SIP.SIPMessage``) parses the headers and the SDP body in its constructor; the
same reads are then dictionary look-ups, and it serializes nothing (it has no serializer):
a handicap in its favour. ``parse.parse_only`` is ``parse_message`` alone against the
constructor alone. REGISTER is added to pyVoIP's accepted methods (see ``pyvoip_parser``).
Best of ``--repeat`` timed rounds.

    bench/parse.py [--rounds 1000] [--repeat 3] [--quick|--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time

from benchlib import ROOT, figure, note, ratio

sys.path.insert(0, str(ROOT))

from softphone.sip.message import Request, parse_message  # noqa: E402
from softphone.sip.sdp import parse_sdp  # noqa: E402

CRLF = "\r\n"


def _msg(lines: list[str], body: str = "") -> bytes:
    head = [ln.replace("@LEN@", str(len(body.encode()))) for ln in lines]
    return (CRLF.join(head) + CRLF + CRLF + body).encode()


SDP_OFFER = CRLF.join([
    "v=0", "o=- 1337816540 1337816540 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1",
    "t=0 0", "m=audio 10008 RTP/AVP 9 0 8 101", "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv", ""])
SDP_ANSWER = CRLF.join([
    "v=0", "o=- 1887302641 1887302642 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1",
    "t=0 0", "m=audio 10104 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv", ""])

MESSAGES: dict[str, bytes] = {
    "REGISTER": _msg([
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK6a1e7f0c8a2d4e3b;rport",
        "Contact: <sip:1001-0x55d1c1@127.0.0.1:5062;transport=udp>;expires=600;"
        "+sip.instance=\"<urn:uuid:5e2f1c3a-8b0d-4a77-9d11-2f6f9b0e4c21>\"",
        "Max-Forwards: 70",
        "To: <sip:1001@127.0.0.1>",
        "From: <sip:1001@127.0.0.1>;tag=3b2c7e1d9f0a4c6b",
        "Call-ID: 8f1b2d6c4e7a9b0c",
        "CSeq: 2 REGISTER",
        "User-Agent: baresip v1.0.0 (x86_64/linux)",
        "Authorization: Digest username=\"1001\",realm=\"127.0.0.1\","
        "nonce=\"ZbY3kGW2Nmjw1xk0d1dC9v2dAcM1HXgy\",uri=\"sip:127.0.0.1\","
        "response=\"2a3f4b0c6ad8a1f1d2b9d4e8c1f0a7b3\",algorithm=MD5,cnonce=\"4b1e9f2a\","
        "qop=auth,nc=00000001",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER",
        "Supported: outbound,path,replaces",
        "Content-Length: 0",
    ]),
    "INVITE": _msg([
        "INVITE sip:1002@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1f0e2d3c4b5a6978;rport",
        "Contact: <sip:1001-0x55d1c1@127.0.0.1:5062;transport=udp>",
        "Max-Forwards: 70",
        "To: <sip:1002@127.0.0.1>",
        "From: \"Alice\" <sip:1001@127.0.0.1>;tag=9c8b7a6f5e4d3c2b",
        "Call-ID: 2d4b6f8a0c1e3f5a7b9d",
        "CSeq: 28706 INVITE",
        "User-Agent: baresip v1.0.0 (x86_64/linux)",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER",
        "Supported: replaces,norefersub",
        "Content-Type: application/sdp",
        "Content-Length: @LEN@",
    ], SDP_OFFER),
    "200-RR": _msg([
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3a9e.5c1b2e7d0000000000000000000;i=1",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;received=127.0.0.1;branch=z9hG4bK1f0e2d3c4b5a6978;"
        "rport=5062",
        "Record-Route: <sip:127.0.0.1;lr;ftag=9c8b7a6f5e4d3c2b>",
        "Record-Route: <sip:127.0.0.1:5060;r2=on;lr>",
        "Contact: <sip:1002-0x5612ab@127.0.0.1:5064;transport=udp>",
        "To: <sip:1002@127.0.0.1>;tag=6f1d2c3b4a596877",
        "From: \"Alice\" <sip:1001@127.0.0.1>;tag=9c8b7a6f5e4d3c2b",
        "Call-ID: 2d4b6f8a0c1e3f5a7b9d",
        "CSeq: 28706 INVITE",
        "Server: baresip v1.0.0 (x86_64/linux)",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER",
        "Supported: replaces,norefersub",
        "Content-Type: application/sdp",
        "Content-Length: @LEN@",
    ], SDP_ANSWER),
    "BYE": _msg([
        "BYE sip:1002-0x5612ab@127.0.0.1:5064;transport=udp SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK7e6d5c4b3a291807;rport",
        "Route: <sip:127.0.0.1:5060;r2=on;lr>",
        "Route: <sip:127.0.0.1;lr;ftag=9c8b7a6f5e4d3c2b>",
        "Max-Forwards: 70",
        "To: <sip:1002@127.0.0.1>;tag=6f1d2c3b4a596877",
        "From: \"Alice\" <sip:1001@127.0.0.1>;tag=9c8b7a6f5e4d3c2b",
        "Call-ID: 2d4b6f8a0c1e3f5a7b9d",
        "CSeq: 28707 BYE",
        "User-Agent: baresip v1.0.0 (x86_64/linux)",
        "Content-Length: 0",
    ]),
}


def ua_handles(data: bytes) -> bytes:
    """What the UA does with each message it receives, on our side of the race: parse, read
    what the transaction and dialog layers read, parse the SDP of an INVITE or 200, send the
    unmodified message on (round trip), then stamp ``received`` on the top Via (RFC 3261
    §18.2.1, as ``ua.stack`` does) and serialize again."""
    msg = parse_message(data)
    via = msg.top_via
    via.branch, via.host, via.port  # noqa: B018 - transaction matching, response routing
    msg.from_.tag, msg.to.tag, msg.call_id, msg.cseq  # noqa: B018 - dialog matching
    msg.header_int("Content-Length")
    if _wants_contact(msg):
        msg.contacts[0].uri  # noqa: B018 - the dialog's remote target
        if msg.body:
            parse_sdp(msg.body)
    out = msg.to_bytes()
    via.params["received"] = "192.0.2.7"
    msg.replace_top_via(via)
    return out + msg.to_bytes()


def _wants_contact(msg) -> bool:
    if isinstance(msg, Request):
        return msg.method == "INVITE"
    return msg.status == 200 and msg.cseq[1] == "INVITE"


def pyvoip_handles(SIPMessage):
    """pyVoIP's side: its constructor parses the headers and the SDP body; the same reads
    are dictionary look-ups afterwards (it has no serializer, so it serializes nothing)."""
    def handle(data: bytes):
        m = SIPMessage(data)
        h = m.headers
        via = h["Via"][0]
        via["branch"], via["address"]  # noqa: B018
        h["From"]["tag"], h["To"]["tag"], h["Call-ID"], h["CSeq"]["check"]  # noqa: B018
        h["CSeq"]["method"], h["Content-Length"], h.get("Contact")  # noqa: B018
        return m
    return handle


def ours_parse(data: bytes):
    return parse_message(data)


def pyvoip_parser():
    """pyVoIP's SIPMessage class and version (its package has an import cycle: VoIP first)."""
    import pyVoIP
    import pyVoIP.VoIP  # noqa: F401 - breaks the SIP <-> VoIP import cycle
    from pyVoIP.SIP import SIPMessage

    # pyVoIP is a phone, not a registrar: it refuses to parse REGISTER ("Unable to decipher
    # SIP request"). Adding the method to its accept list lets the same parser run over the
    # same mix; its parse path for REGISTER is then the generic request path.
    if "REGISTER" not in pyVoIP.SIPCompatibleMethods:
        pyVoIP.SIPCompatibleMethods.append("REGISTER")
    return SIPMessage, pyVoIP.__version__


def throughput(fn, messages: list[bytes], rounds: int, repeat: int) -> float:
    """Best messages/second over ``repeat`` rounds of ``rounds`` passes over the mix."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(rounds):
            for m in messages:
                fn(m)
        dt = time.perf_counter() - t0
        best = max(best, rounds * len(messages) / dt)
    return best


def check(SIPMessage) -> None:
    """Both parsers must accept every message of the mix (else the race is unfair)."""
    for name, data in MESSAGES.items():
        out = parse_message(data).to_bytes()
        again = parse_message(out)
        if again.call_id != parse_message(data).call_id or again.body != parse_message(data).body:
            raise SystemExit(f"{name}: our round trip changed the message")
        both = ua_handles(data)
        stamped = parse_message(both[len(out):])
        if stamped.top_via.params.get("received") != "192.0.2.7" \
                or stamped.top_via.branch != again.top_via.branch:
            raise SystemExit(f"{name}: stamping received lost the Via")
        SIPMessage(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    rounds, repeat = a.rounds, a.repeat
    if a.quick:
        rounds, repeat = 500, 3
    if a.smoke:
        rounds, repeat = 20, 1
    SIPMessage, version = pyvoip_parser()
    check(SIPMessage)
    msgs = list(MESSAGES.values())
    note(f"mix: {', '.join(MESSAGES)} ({sum(map(len, msgs))} bytes); pyVoIP {version}")
    ua = throughput(ua_handles, msgs, rounds, repeat)
    theirs_ua = throughput(pyvoip_handles(SIPMessage), msgs, rounds, repeat)
    parse_only = throughput(ours_parse, msgs, rounds, repeat)
    theirs = throughput(SIPMessage, msgs, rounds, repeat)
    per = {name: throughput(ua_handles, [data], rounds, repeat) for name, data in MESSAGES.items()}
    figure("parse.ua_handling", ua, "msg/s", impl="softphone", mix="4")
    figure("parse.ua_handling", theirs_ua, "msg/s", impl="pyvoip", version=version, mix="4")
    figure("parse.parse_only", parse_only, "msg/s", impl="softphone", mix="4")
    figure("parse.parse_only", theirs, "msg/s", impl="pyvoip", version=version, mix="4")
    for name, rate in per.items():
        figure("parse.ua_handling_by_type", rate, "msg/s", impl="softphone", msg=name)
    ratio("parse.ratio.ua_handling", ua, theirs_ua, peer_name="pyvoip")
    ratio("parse.ratio.parse_only", parse_only, theirs, peer_name="pyvoip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
