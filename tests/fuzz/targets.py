"""Fuzz targets: one function per parser facing the network, plus the counters they keep.

Each target takes arbitrary bytes and may only fail through the parser's own documented
exception, which it counts as a reject; anything else propagates (a crash). Accepted
input is also checked: what parses must serialize and parse again. The RTP target drives
a real ``RtpSession`` and checks, against an independent parse, that every malformed
packet moved the session's ``malformed`` counter and nothing escaped.

Used by the atheris runner (``run_atheris.py``, the long ``make fuzz`` run) and in-process
by ``tests/test_fuzz_short.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Callable

from softphone.sip import sdp
from softphone.sip.auth import AuthenticationFailed, DigestClient, DigestError, parse_challenges
from softphone.sip.errors import SipParseError
from softphone.sip.message import Request, StreamFramer, make_response, parse_message

counters: Counter[str] = Counter()
SUMMARY: list[str] = []  # figures of the long run, printed at the end of the session

SECRET = "Fz9-not-in-any-output"

# -- seeds ----------------------------------------------------------------------------
_SDP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 111 9 0 8 101\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=fmtp:111 useinbandfec=1;minptime=10\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\na=rtcp:4001\r\n"
    "m=video 0 RTP/AVP 96\r\n")

_INVITE = (
    "INVITE sip:bob@192.0.2.2 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\nTo: Bob <sip:bob@192.0.2.2>\r\n"
    "From: \"Alice\" <sip:alice@192.0.2.1>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n"
    "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    f"Content-Type: application/sdp\r\nContent-Length: {len(_SDP_OFFER)}\r\n\r\n{_SDP_OFFER}")

_RESPONSE = (
    "SIP/2.0 401 Unauthorized\r\n"
    "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds7;received=192.0.2.9;rport=5070\r\n"
    "f: <sip:alice@example.com>;tag=456248\r\nt: <sip:alice@example.com>;tag=2493k59kd\r\n"
    "i: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\n"
    'WWW-Authenticate: Digest realm="example.com", qop="auth,auth-int", '
    'nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", algorithm=SHA-256, stale=FALSE\r\n'
    "l: 0\r\n\r\n")

_OPTIONS = (
    "OPTIONS sip:carol@chicago.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP pc33.atlanta.com;branch=z9hG4bKhjhs8ass877\r\n"
    " ;received=10.0.0.1\r\nMax-Forwards: 70\r\nTo: <sip:carol@chicago.com>\r\n"
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\n"
    "CSeq: 63104 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n")

CHALLENGES = [
    'Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth", '
    'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5',
    'Digest realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'algorithm=SHA-512-256-sess, qop="auth-int", userhash=true, charset=UTF-8',
    'Basic realm="x", Digest realm="r", nonce="n", Bearer abc==, Digest realm="r2", nonce="m"',
]


def _rtp_seed(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: int = 0) -> bytes:
    return (bytes([0x80, (marker << 7) | pt]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big")
            + ssrc.to_bytes(4, "big") + payload)


RTP_SEEDS = [
    b"\x00" + _rtp_seed(0, 1, 160, 0x1234, b"\xff" * 160, 1),
    b"\x00" + _rtp_seed(101, 2, 320, 0x1234, b"\x05\x0a\x00\xa0"),
    b"\x00" + bytes([0x90, 0]) + b"\x00\x03" + b"\x00\x00\x01\xe0" + b"\x00\x00\x12\x34"
    + b"\xbe\xde\x00\x01\x10\xaa\x00\x00" + b"\x7f" * 160,  # header extension
    b"\x00" + bytes([0xa0, 0]) + b"\x00\x04\x00\x00\x02\x80\x00\x00\x12\x34" + b"\x7f" * 10
    + b"\x00\x00\x03",  # padding
    b"\x01" + bytes.fromhex("80c80006") + b"\x00\x00\x12\x34" + b"\x00" * 20
    + bytes.fromhex("81ca0003") + b"\x00\x00\x12\x34\x01\x02ab\x00\x00"
    + bytes.fromhex("81cb0001") + b"\x00\x00\x12\x34",  # SR + SDES + BYE
    b"\x00" + bytes.fromhex("81c90007") + b"\x00\x00\x12\x34" + b"\x00" * 24,  # RR muxed
]

SEEDS: dict[str, list[bytes]] = {
    "sip": [b"\x00" + m.encode() for m in (_INVITE, _RESPONSE, _OPTIONS)]
    + [b"\x01" + (_INVITE + _OPTIONS).encode(), b"\x03" + (_RESPONSE * 2).encode()],
    "sdp": [_SDP_OFFER.encode(), _SDP_OFFER.replace("\r\n", "\n").encode(),
            b"v=0\no=- 0 0 IN IP6 ::1\ns= \nc=IN IP6 ::1\nt=0 0\nm=audio 9 RTP/AVP 0\n"
            b"a=rtcp-mux\na=inactive\n"],
    "auth": [c.encode() for c in CHALLENGES],
    "rtp": RTP_SEEDS,
}


# -- targets --------------------------------------------------------------------------
def _exercise(msg) -> None:
    for name in ("call_id", "cseq", "vias", "top_via", "from_", "to", "contacts",
                 "record_routes", "content_type"):
        try:
            getattr(msg, name)
        except SipParseError:
            counters["sip.accessor_rejected"] += 1
    for name in ("Expires", "Retry-After", "Min-Expires", "Content-Length"):
        try:
            msg.header_int(name)
        except SipParseError:
            counters["sip.accessor_rejected"] += 1


def _parse_one(data: bytes, datagram: bool) -> None:
    try:
        msg = parse_message(data, datagram=datagram)
    except SipParseError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        counters["sip.rejected"] += 1
        if isinstance(exc.partial, Request):
            counters["sip.rejected_answerable"] += 1
        return
    counters["sip.accepted"] += 1
    _exercise(msg)
    wire = msg.to_bytes()
    again = parse_message(wire, datagram=datagram)  # what we accept, we can read back
    assert type(again) is type(msg) and again.body == msg.body, (data, wire)
    if isinstance(msg, Request) and msg.method != "ACK":
        make_response(msg, 400, "Bad", to_tag="x").to_bytes()


def sip_target(data: bytes) -> None:
    """Byte 0 picks the path: even = one datagram, odd = a TCP stream cut in pieces."""
    counters["sip.inputs"] += 1
    if not data:
        return
    mode, body = data[0], data[1:]
    if not mode & 1:
        _parse_one(body, datagram=True)
        return
    framer = StreamFramer()
    pieces = 1 + (mode >> 1) % 4
    step = max(1, len(body) // pieces)
    for start in range(0, len(body) or 1, step):
        try:
            frames = framer.feed(body[start:start + step])
        except SipParseError:
            counters["framer.refused"] += 1
            return
        for frame in frames:
            counters["framer.frames"] += 1
            _parse_one(frame, datagram=False)


_OUR_CODECS = ["opus", "G722", "PCMU", "PCMA"]


def sdp_target(data: bytes) -> None:
    """The SDP as an offer (we answer it) and as an answer to our offer."""
    counters["sdp.inputs"] += 1
    try:
        parsed = sdp.parse_sdp(data)
    except sdp.SdpError:
        counters["sdp.rejected"] += 1
        return
    counters["sdp.accepted"] += 1
    sdp.parse_sdp(parsed.to_bytes())  # what we accept, we can read back
    try:
        answer, neg = sdp.answer_offer(parsed, address="192.0.2.5", port=5004,
                                       codecs=_OUR_CODECS, session_id=1, session_version=1)
    except sdp.NoCommonCodec:
        counters["sdp.no_common_codec"] += 1
    except sdp.SdpError:
        counters["sdp.offer_refused"] += 1
    else:
        counters["sdp.answered"] += 1
        assert 0 < neg.remote_port < 65536 or neg.remote_port == 0
        sdp.parse_sdp(answer.to_bytes())
    offer = sdp.make_offer(address="192.0.2.5", port=5004, codecs=_OUR_CODECS, session_id=1,
                           session_version=1)
    try:
        sdp.apply_answer(offer, parsed)
        counters["sdp.answer_applied"] += 1
    except sdp.SdpError:
        counters["sdp.answer_refused"] += 1


def auth_target(data: bytes) -> None:
    """A WWW-/Proxy-Authenticate value: parsed, then answered by a DigestClient."""
    counters["auth.inputs"] += 1
    text = data.decode("utf-8", "replace")
    try:
        parse_challenges(text)
        counters["auth.parsed"] += 1
    except DigestError:
        counters["auth.rejected"] += 1
    client = DigestClient("alice", SECRET)
    status = 407 if data[:1] == b"P" else 401
    try:
        name, value = client.respond(status, [text, text], "REGISTER", "sip:example.com")
    except (AuthenticationFailed, DigestError):
        counters["auth.refused"] += 1
        return
    counters["auth.answered"] += 1
    assert name == ("Authorization" if status == 401 else "Proxy-Authorization")
    assert "\r" not in value and "\n" not in value, value
    if SECRET not in text:
        assert SECRET not in value


# -- RTP -------------------------------------------------------------------------------
class RtpHarness:
    """A started RtpSession on loopback (PCMU + telephone-event/101), fed directly."""

    def __init__(self) -> None:
        from softphone.media import rtp
        from softphone.media.aiortc_parts import rtp_module
        from softphone.media.devices import NullSink, NullSource
        from softphone.media.rtcp import is_rtcp

        self.rtp_module, self.is_rtcp = rtp_module, is_rtcp
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(
            rtp.RtpSession.open(host="127.0.0.1", port_range=(40000, 60000)))
        fmt = rtp.MediaFormat(name="PCMU", payload_type=0, clock_rate=8000,
                              dtmf_payload_type=101)
        self.timeouts = 0
        self.session.start(fmt, ("127.0.0.1", 9), None, rtcp_mux=False, source=NullSource(),
                           sink=NullSink(), on_dtmf=lambda d: None, on_timeout=self._timeout,
                           rtp_timeout=0)
        self.rtp_port = self.session._rtp_transport.get_protocol()
        self.rtcp_port = self.session._rtcp_transport.get_protocol()
        self.n = 0

    def _timeout(self) -> None:
        self.timeouts += 1

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()

    def malformed(self) -> int:
        return self.session.stats().malformed  # unparsable + unknown payload types

    def feed(self, data: bytes) -> None:
        """Byte 0: even = RTP port (RTCP demuxed by type), odd = RTCP port."""
        counters["rtp.inputs"] += 1
        if not data:
            counters["rtp.empty"] += 1
            return
        mod = self.rtp_module()
        s = self.session
        to_rtcp_port, packet = bool(data[0] & 1), data[1:]
        rtcp = to_rtcp_port or self.is_rtcp(packet)
        try:  # the independent oracle
            parsed = mod.RtcpPacket.parse(packet) if rtcp else mod.RtpPacket.parse(packet)
            bad = not parsed if rtcp else not parsed.payload and parsed.payload_type in (
                s.fmt.payload_type, s.fmt.dtmf_payload_type)
        except Exception:  # noqa: BLE001 - whatever aiortc raises means "malformed"
            bad = True
        before = (self.malformed(), s.counters.received, s.counters.rtcp_received)
        # delivered as the event loop does: to the socket's protocol
        port = self.rtcp_port if to_rtcp_port else self.rtp_port
        port.datagram_received(packet, ("127.0.0.1", 9))
        after = (self.malformed(), s.counters.received, s.counters.rtcp_received)
        moved = [b - a for a, b in zip(before, after)]
        assert sum(moved) <= 1 and min(moved) >= 0, (moved, packet)
        if bad:
            assert moved[0] == 1, ("malformed packet not counted", packet)
            counters["rtp.malformed_counted"] += 1
        elif moved[1]:
            counters["rtp.accepted"] += 1
        elif moved[2]:
            counters["rtcp.accepted"] += 1
        elif moved[0]:
            counters["rtp.unknown_pt_counted"] += 1
        else:
            counters["rtp.ignored"] += 1  # comfort noise, or out of sequence (RFC 3550 A.1)
        self.n += 1
        if self.n % 16 == 0:  # let the playout side decode what arrived
            now = self.loop.time() + self.n * 0.02
            s.send_tick(now)  # what the shared ticker runs: send phase, then play phase
            s.receiver.play_tick(now)


_rtp: RtpHarness | None = None


def rtp_target(data: bytes) -> None:
    global _rtp
    if _rtp is None:
        _rtp = RtpHarness()
    _rtp.feed(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sip": sip_target, "sdp": sdp_target, "auth": auth_target, "rtp": rtp_target}

# for every target: counters that must have moved (rejects counted, and some accepted)
MUST_MOVE: dict[str, tuple[str, ...]] = {
    "sip": ("sip.rejected", "sip.accepted", "framer.frames", "framer.refused"),
    "sdp": ("sdp.rejected", "sdp.accepted"),
    "auth": ("auth.rejected", "auth.refused", "auth.answered"),
    "rtp": ("rtp.malformed_counted", "rtp.accepted", "rtcp.accepted"),
}


# -- a plain mutator for in-process runs (no coverage feedback) -----------------------
def mutate(rng: random.Random, seeds: list[bytes], max_len: int = 2048) -> bytes:
    """A seed with a few byte-level edits, or fresh random bytes now and then."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(0, 200))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a bit
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del data[pos:]
        elif op == 2:  # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 8))
        elif op == 3:  # delete a run
            del data[pos:pos + rng.randrange(1, 16)]
        elif op == 4:  # interesting text
            data[pos:pos] = rng.choice([b"\r\n", b"\n", b";", b",", b'"', b"\\", b"=", b":",
                                        b"99999999999", b"-1", b"\x00", b"\xff", b"\xc3\x28",
                                        b" ", b"<", b">", b"@", b"%", b"Digest ", b"0"])
        elif op == 5 and data:  # duplicate a chunk
            end = min(len(data), pos + rng.randrange(1, 64))
            data[pos:pos] = data[pos:end]
        elif op == 6:  # splice with another seed
            other = rng.choice(seeds)
            data[pos:] = other[rng.randrange(len(other) + 1):]
    return bytes(data[:max_len])


def run_inprocess(name: str, count: int, seed: int = 1) -> Counter[str]:
    """Feed ``count`` mutated inputs to one target; returns the counters it moved."""
    global _rtp
    counters.clear()
    rng = random.Random(seed)
    target = TARGETS[name]
    try:
        for data in SEEDS[name]:
            target(data)
        for _ in range(count):
            target(mutate(rng, SEEDS[name]))
    finally:
        if _rtp is not None:
            _rtp.close()
            _rtp = None
    return Counter(counters)


def dump_counters(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(counters)))
    tmp.replace(path)
