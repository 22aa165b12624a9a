"""SDP (RFC 4566) parse/serialize and RFC 3264 offer/answer for one audio stream.

Sans-IO: text in, dataclasses out, and back. We parse SDP ourselves because aiortc's
parser drops ``a=ptime`` and ``b=``, yields no codec for a static payload type without
``a=rtpmap`` and crashes on an ``a=fmtp`` for one (DESIGN.md §8).

Parsing is tolerant where real phones are sloppy (LF or CRLF, trailing blanks, blank
lines, session lines out of order, unknown line types and attributes, which are kept)
and strict where a wrong guess would break a call (numbers, ``m=``, ``c=``, ``rtpmap``):
anything malformed raises :class:`SdpError`, never another exception.

Payload-type semantics (RFC 3264 §5.1/§6.1): the numbers in an SDP say what its author
wants to *receive*, and each ``fmtp`` states the receiver's limits. So the codec in
:class:`NegotiatedMedia` carries the remote side's payload type and fmtp: it is the
recipe for what we send.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final

from . import sdes

__all__ = [
    "SdpError", "NoCommonCodec", "Codec", "Origin", "Connection", "Bandwidth", "Timing",
    "Attribute", "RtcpAddress", "MediaDescription", "SessionDescription", "NegotiatedMedia",
    "DIRECTIONS", "STATIC_PAYLOAD_TYPES", "SUPPORTED_CODECS",
    "parse_sdp", "make_offer", "answer_offer", "apply_answer",
]


class SdpError(ValueError):
    """The SDP is malformed or cannot be used (the UA answers 400/488)."""


class NoCommonCodec(SdpError):
    """No audio stream can be agreed: no codec in common, or every stream refused (488)."""


DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 §6 static payload types: name, clock rate, channels.
STATIC_PAYLOAD_TYPES: Final[dict[int, tuple[str, int, int]]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),  # RTP clock 8000 although G.722 samples at 16 kHz (RFC 3551 §4.5.2)
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1), 26: ("JPEG", 90000, 1), 28: ("nv", 90000, 1), 31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1), 33: ("MP2T", 90000, 1), 34: ("H263", 90000, 1),
}

# Protocols we can answer; anything else (UDP/TLS/RTP/SAVPF: DTLS-SRTP, …) is refused.
# An AVPF stream without rtcp-fb lines behaves as plain AVP (RFC 4585 §4.2). The SAVP
# profiles (SRTP, keys by SDES) only when the policy encrypts.
RTP_PROFILES_WE_SPEAK: Final = ("RTP/AVP", "RTP/AVPF")
SECURE_PROFILES: Final = ("RTP/SAVP", "RTP/SAVPF")
ENCRYPTIONS: Final = ("none", "sdes", "sdes-required")

_DTMF_EVENTS: Final = "0-16"  # RFC 4733 events we send and receive: digits, *, #, A-D, flash


# ---------------------------------------------------------------------------------------
# Data model


@dataclass
class Codec:
    """One RTP payload format as an SDP names it (rtpmap + fmtp, or the static table)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    # key=value parameters (``a=fmtp:111 useinbandfec=1``) or, when the format is not
    # key=value, the raw text (``a=fmtp:101 0-15``).
    fmtp: dict[str, str] | str = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """What identifies a codec across payload-type numbers: (lower-case name, rate)."""
        return (self.name.lower(), self.clock_rate)

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"

    @property
    def rtpmap(self) -> str:
        """``name/rate[/channels]`` as in ``a=rtpmap``."""
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{suffix}"

    def is_named(self, name: str) -> bool:
        return self.name.lower() == name.lower()

    def fmtp_params(self) -> dict[str, str]:
        """fmtp parameters with lower-case names ({} when fmtp is not key=value)."""
        if isinstance(self.fmtp, dict):
            return {k.lower(): v for k, v in self.fmtp.items()}
        return {}

    def fmtp_text(self) -> str:
        if isinstance(self.fmtp, dict):
            return ";".join(f"{k}={v}" for k, v in self.fmtp.items())
        return self.fmtp

    def copy(self, **changes: Any) -> Codec:
        values: dict[str, Any] = dict(payload_type=self.payload_type, name=self.name, clock_rate=self.clock_rate,
                      channels=self.channels,
                      fmtp=dict(self.fmtp) if isinstance(self.fmtp, dict) else self.fmtp)
        values.update(changes)
        return Codec(**values)


@dataclass
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``."""

    username: str
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"


@dataclass
class Connection:
    """``c=<nettype> <addrtype> <address>`` (address may carry ``/ttl`` for multicast)."""

    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        """The address without any ``/ttl/count`` suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_unspecified(self) -> bool:
        """0.0.0.0 (RFC 2543 hold) or ``::``: the peer wants no media sent to it."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False


@dataclass
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (e.g. AS in kbit/s, TIAS in bit/s)."""

    bwtype: str
    bandwidth: int


@dataclass
class Timing:
    """``t=<start> <stop>`` with its ``r=`` lines kept verbatim."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass
class Attribute:
    """An ``a=`` line we do not model, kept verbatim: ``a=name`` or ``a=name:value``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass
class RtcpAddress:
    """RFC 3605 ``a=rtcp:<port> [<nettype> <addrtype> <address>]``."""

    port: int
    connection: Connection | None = None


@dataclass
class MediaDescription:
    """One ``m=`` section. ``formats`` is the m-line's list; ``codecs`` names the RTP ones."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    codecs: list[Codec] = field(default_factory=list)
    title: str | None = None  # i=
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None  # k=
    ptime: int | None = None
    maxptime: int | None = None
    direction: str | None = None  # None: inherit the session's (default sendrecv)
    rtcp: RtcpAddress | None = None
    rtcp_mux: bool = False
    crypto: list[sdes.Crypto] = field(default_factory=list)  # a=crypto (RFC 4568)
    attributes: list[Attribute] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)  # unknown letters

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    def attribute(self, name: str) -> str | None:
        """Value of the first unmodelled attribute called ``name`` ('' for a flag)."""
        for attr in self.attributes:
            if attr.name.lower() == name.lower():
                return attr.value if attr.value is not None else ""
        return None

    def codec(self, payload_type: int) -> Codec | None:
        for codec in self.codecs:
            if codec.payload_type == payload_type:
                return codec
        return None

    def to_lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        lines = [" ".join([f"m={self.media}", port, self.proto, *self.formats])]
        if self.title is not None:
            lines.append(f"i={self.title}")
        if self.connection is not None:
            lines.append(_connection_line("c=", self.connection))
        lines += [f"b={b.bwtype}:{b.bandwidth}" for b in self.bandwidths]
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [f"{letter}={value}" for letter, value in self.extra_lines]
        for codec in self.codecs:
            lines.append(f"a=rtpmap:{codec.payload_type} {codec.rtpmap}")
            if codec.fmtp_text():
                lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp_text()}")
        if self.ptime is not None:
            lines.append(f"a=ptime:{self.ptime}")
        if self.maxptime is not None:
            lines.append(f"a=maxptime:{self.maxptime}")
        if self.rtcp is not None:
            rtcp = f"a=rtcp:{self.rtcp.port}"
            if self.rtcp.connection is not None:
                rtcp += _connection_line(" ", self.rtcp.connection)
            lines.append(rtcp)
        if self.rtcp_mux:
            lines.append("a=rtcp-mux")
        lines += [f"a=crypto:{c}" for c in self.crypto]
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        lines += [f"a={attr}" for attr in self.attributes]
        return lines


@dataclass
class SessionDescription:
    """A whole SDP body: session-level lines and the media sections in order."""

    origin: Origin
    name: str = "-"  # s=
    version: int = 0
    info: str | None = None  # i=
    uri: str | None = None  # u=
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    zone: str | None = None  # z=
    key: str | None = None  # k=
    direction: str | None = None  # session-level default for every m-line
    attributes: list[Attribute] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """Media-level c= overrides the session-level one."""
        return media.connection or self.connection

    def direction_for(self, media: MediaDescription) -> str:
        """Media-level direction overrides the session's; the default is sendrecv."""
        return media.direction or self.direction or "sendrecv"

    def to_lines(self) -> list[str]:
        o = self.origin
        lines = [f"v={self.version}",
                 f"o={o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} {o.address}",
                 f"s={self.name}"]
        if self.info is not None:
            lines.append(f"i={self.info}")
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        lines += [f"e={e}" for e in self.emails] + [f"p={p}" for p in self.phones]
        if self.connection is not None:
            lines.append(_connection_line("c=", self.connection))
        lines += [f"b={b.bwtype}:{b.bandwidth}" for b in self.bandwidths]
        for timing in self.timings:
            lines.append(f"t={timing.start} {timing.stop}")
            lines += [f"r={r}" for r in timing.repeats]
        if self.zone is not None:
            lines.append(f"z={self.zone}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [f"{letter}={value}" for letter, value in self.extra_lines]
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        lines += [f"a={attr}" for attr in self.attributes]
        for media in self.media:
            lines += media.to_lines()
        return lines

    def to_text(self) -> str:
        return "\r\n".join(self.to_lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")


@dataclass
class NegotiatedMedia:
    """What the media layer needs after offer/answer, from our point of view."""

    remote_host: str
    remote_port: int
    remote_rtcp_host: str
    remote_rtcp_port: int  # from a=rtcp, else RTP port + 1, or the RTP port with rtcp-mux
    codec: Codec  # what we send: the remote side's payload type and fmtp
    dtmf: Codec | None  # telephone-event, if negotiated
    ptime: int  # ms per packet we send
    direction: str  # OUR direction: what we may do
    rtcp_mux: bool
    hold: bool  # the remote side put us on hold (c=0.0.0.0, or sendonly/inactive from it)
    srtp: sdes.SrtpKeys | None = None  # SRTP suite and keys (SDES), None for plain RTP


# ---------------------------------------------------------------------------------------
# Parsing

_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_RTPMAP: Final = re.compile(r"([0-9]+)\s+([^/\s]+)/([0-9]+)(?:/([0-9]+))?\Z")
_PTIME: Final = re.compile(r"([0-9]+)(?:\.[0-9]*)?\Z")
_SESSION_ONLY: Final = set("vosuepztr")


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _uint(text: str, what: str, where: str, maximum: int | None = None) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise SdpError(f"{where}: {what} must be a non-negative integer, got {_show(text)}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise SdpError(f"{where}: {what} {value} is out of range (0-{maximum})")
    return value


def _connection(value: str, where: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"{where}: expected '<nettype> <addrtype> <address>', got {_show(value)}")
    return Connection(*parts)


def _connection_line(prefix: str, c: Connection) -> str:
    return f"{prefix}{c.nettype} {c.addrtype} {c.address}"


def _bandwidth(value: str, where: str) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    if not colon or not bwtype or " " in bwtype:
        raise SdpError(f"{where}: expected 'b=<type>:<kbit/s>', got {_show(value)}")
    return Bandwidth(bwtype, _uint(amount.strip(), "bandwidth", where))


def _ptime(value: str, what: str, where: str) -> int:
    match = _PTIME.match(value.strip())
    if not match or len(match[1]) > 9 or int(match[1]) == 0:
        raise SdpError(f"{where}: {what} must be a positive number of ms, got {_show(value)}")
    return int(match[1])


def _fmtp_params(text: str) -> dict[str, str] | str:
    """``a=b;c=d`` → dict; anything else (``0-15``) stays text."""
    text = text.strip()
    parts = [p.strip() for p in text.split(";")]
    parts = [p for p in parts if p]
    if not parts:
        return {}
    if all("=" in p for p in parts):
        params: dict[str, str] = {}
        for part in parts:
            name, _, value = part.partition("=")
            params[name.strip()] = value.strip()
        return params
    return text


def parse_sdp(data: bytes | bytearray | memoryview | str) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpError` (only) when it is malformed."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # old phones put Latin-1 in s=/i=; never fails
    elif isinstance(data, str):
        text = data
    else:
        raise SdpError(f"SDP must be bytes or str, not {type(data).__name__}")

    lines: list[tuple[str, str, str]] = []  # (where, letter, value)
    for number, raw_line in enumerate(text.split("\n"), 1):
        line = raw_line.rstrip(" \t\r")
        if not line:
            continue
        where = f"SDP line {number}"
        if "\r" in line or "\x00" in line:
            raise SdpError(f"{where}: stray CR or NUL in {_show(line)}")
        if line[1:2] != "=" or line[0] not in _LETTERS:
            raise SdpError(f"{where}: expected '<letter>=<value>', got {_show(line)}")
        lines.append((where, line[0], line[2:]))

    if not lines:
        raise SdpError("empty SDP")
    where, letter, value = lines[0]
    if letter != "v":
        raise SdpError(f"{where}: SDP must start with v=, got {letter}=")
    version = _uint(value.strip(), "protocol version", where)
    if version != 0:
        raise SdpError(f"{where}: unsupported SDP version {version}")

    session: dict = {"version": version, "emails": [], "phones": [], "bandwidths": [],
                     "timings": [], "attributes": [], "extra_lines": []}
    media_sections: list[tuple[str, str, list[tuple[str, str, str]]]] = []
    for where, letter, value in lines[1:]:
        if letter == "m":
            media_sections.append((where, value, []))
        elif media_sections:
            if letter in _SESSION_ONLY:
                raise SdpError(f"{where}: {letter}= is not allowed after m=")
            media_sections[-1][2].append((where, letter, value))
        else:
            _session_line(session, where, letter, value)

    if "origin" not in session:
        raise SdpError("SDP has no o= line")
    if not session["timings"]:
        session["timings"] = [Timing()]  # tolerated: some UAs omit t=
    attributes = session.pop("attributes")
    description = SessionDescription(**session)
    for attr in attributes:
        if attr.value is None and attr.name.lower() in DIRECTIONS and description.direction is None:
            description.direction = attr.name.lower()
        else:
            description.attributes.append(attr)
    description.media = [_media_section(where, value, body) for where, value, body in media_sections]
    return description


def _session_line(session: dict, where: str, letter: str, value: str) -> None:
    def once(key: str, parsed) -> None:
        if key in session:
            raise SdpError(f"{where}: more than one {letter}= line")
        session[key] = parsed

    if letter == "v":
        raise SdpError(f"{where}: more than one v= line")
    elif letter == "o":
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"{where}: o= needs 6 fields, got {_show(value)}")
        once("origin", Origin(parts[0], _uint(parts[1], "session id", where),
                              _uint(parts[2], "session version", where), *parts[3:]))
    elif letter == "s":
        once("name", value)
    elif letter == "i":
        once("info", value)
    elif letter == "u":
        once("uri", value)
    elif letter == "e":
        session["emails"].append(value)
    elif letter == "p":
        session["phones"].append(value)
    elif letter == "c":
        once("connection", _connection(value, where))
    elif letter == "b":
        session["bandwidths"].append(_bandwidth(value, where))
    elif letter == "t":
        parts = value.split()
        if len(parts) != 2:
            raise SdpError(f"{where}: expected 't=<start> <stop>', got {_show(value)}")
        session["timings"].append(Timing(_uint(parts[0], "start time", where),
                                         _uint(parts[1], "stop time", where)))
    elif letter == "r":
        if not session["timings"]:
            raise SdpError(f"{where}: r= before any t=")
        session["timings"][-1].repeats.append(value)
    elif letter == "z":
        once("zone", value)
    elif letter == "k":
        once("key", value)
    elif letter == "a":
        session["attributes"].append(_attribute(value))
    else:
        session["extra_lines"].append((letter, value))


def _attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return Attribute(name, rest if colon else None)


def _media_section(where: str, value: str, body: list[tuple[str, str, str]]) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"{where}: expected 'm=<media> <port> <proto> <fmt> …', got {_show(value)}")
    media_type, port_text, proto, formats = parts[0], parts[1], parts[2], parts[3:]
    port_text, slash, count_text = port_text.partition("/")
    port = _uint(port_text, "port", where, 65535)
    port_count = _uint(count_text, "port count", where) if slash else None
    m = MediaDescription(media=media_type, port=port, proto=proto, formats=formats,
                         port_count=port_count)
    rtp = m.is_rtp
    if rtp:
        for fmt in formats:
            _uint(fmt, "RTP payload type", where, 127)

    rtpmaps: dict[int, tuple[str, int, int]] = {}
    fmtps: dict[int, str] = {}
    # rtpmap/fmtp lines as (line, payload type, repeats an earlier one), resolved at the end
    # because some phones send fmtp before rtpmap
    pending: list[tuple[Attribute, int, bool]] = []
    payload_types = {int(f) for f in formats} if rtp else set()

    for line_where, letter, line_value in body:
        if letter == "i":
            if m.title is not None:
                raise SdpError(f"{line_where}: more than one i= line in a media section")
            m.title = line_value
        elif letter == "c":
            if m.connection is not None:
                raise SdpError(f"{line_where}: more than one c= line in a media section")
            m.connection = _connection(line_value, line_where)
        elif letter == "b":
            m.bandwidths.append(_bandwidth(line_value, line_where))
        elif letter == "k":
            if m.key is not None:
                raise SdpError(f"{line_where}: more than one k= line in a media section")
            m.key = line_value
        elif letter == "a":
            attr = _attribute(line_value)
            try:
                _media_attribute(m, rtp, attr, line_where, payload_types, rtpmaps, fmtps,
                                 pending)
            except SdpError:
                # RFC 4566 §5.13 / RFC 3264: an attribute we cannot read is ignored (kept
                # verbatim; a payload it described is unusable), never a reason to refuse
                # the whole offer. An unreadable a=crypto is dropped: it may hold a key
                if attr.name.lower() != "crypto":
                    m.attributes.append(attr)
        else:
            m.extra_lines.append((letter, line_value))

    if rtp:
        for fmt in formats:
            pt = int(fmt)
            if pt in rtpmaps:
                name, rate, channels = rtpmaps[pt]
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            else:
                continue  # dynamic type with no rtpmap: unusable, the format stays listed
            if m.codec(pt) is None:
                m.codecs.append(Codec(pt, name, rate, channels, _fmtp_params(fmtps.get(pt, ""))))
    known = {c.payload_type for c in m.codecs}
    # rtpmap/fmtp lines that describe no listed codec, or repeat one, are kept verbatim
    m.attributes[:0] = [attr for attr, pt, repeated in pending if pt not in known or repeated]
    return m


def _media_attribute(m: MediaDescription, rtp: bool, attr: Attribute, where: str,
                     payload_types: set[int], rtpmaps: dict, fmtps: dict,
                     pending: list[tuple[Attribute, int, bool]]) -> None:
    name = attr.name.lower()
    value = attr.value
    if value is None and name in DIRECTIONS and m.direction is None:
        m.direction = name
    elif value is None and name == "rtcp-mux":
        m.rtcp_mux = True
    elif value is not None and name == "crypto" and rtp:
        try:
            m.crypto.append(sdes.parse_crypto(value))
        except sdes.CryptoError as exc:
            raise SdpError(f"{where}: {exc}") from None
    elif value is not None and name == "ptime" and m.ptime is None:
        m.ptime = _ptime(value, "ptime", where)
    elif value is not None and name == "maxptime" and m.maxptime is None:
        m.maxptime = _ptime(value, "maxptime", where)
    elif value is not None and name == "rtcp" and m.rtcp is None:
        parts = value.split()
        if len(parts) not in (1, 4):
            raise SdpError(f"{where}: expected 'a=rtcp:<port> [IN IP4 <addr>]', got {_show(value)}")
        connection = _connection(" ".join(parts[1:]), where) if len(parts) == 4 else None
        m.rtcp = RtcpAddress(_uint(parts[0], "RTCP port", where, 65535), connection)
    elif value is not None and name == "rtpmap" and rtp:
        match = _RTPMAP.match(value.strip())
        if not match:
            raise SdpError(f"{where}: expected 'a=rtpmap:<pt> <name>/<rate>[/<channels>]', "
                           f"got {_show(value)}")
        pt = _uint(match[1], "payload type", where, 127)
        rate = _uint(match[3], "clock rate", where)
        channels = _uint(match[4], "channel count", where) if match[4] else 1
        if rate == 0 or channels == 0:
            raise SdpError(f"{where}: clock rate and channels must be positive in {_show(value)}")
        pending.append((attr, pt, pt in rtpmaps))
        if pt in payload_types:
            rtpmaps.setdefault(pt, (match[2], rate, channels))
    elif value is not None and name == "fmtp" and rtp:
        fmt, *rest = value.strip().split(None, 1) or [""]
        params = rest[0] if rest else ""
        pt = _uint(fmt, "fmtp payload type", where, 127)
        empty = not _fmtp_params(params)  # says nothing: kept verbatim, never the codec's
        pending.append((attr, pt, pt in fmtps or empty))
        if pt in payload_types and not empty:
            fmtps.setdefault(pt, params)
    else:
        m.attributes.append(attr)


# ---------------------------------------------------------------------------------------
# Offer / answer

# Our codecs as we offer them. opus: rtpmap must say /48000/2 (RFC 7587 §7); we send mono
# (stereo=0 is the default) and ask for in-band FEC.
SUPPORTED_CODECS: Final[dict[str, Codec]] = {
    "opus": Codec(111, "opus", 48000, 2, {"useinbandfec": "1"}),
    "g722": Codec(9, "G722", 8000),
    "pcmu": Codec(0, "PCMU", 8000),
    "pcma": Codec(8, "PCMA", 8000),
}
_TELEPHONE_EVENTS: Final = {8000: Codec(101, "telephone-event", 8000, 1, _DTMF_EVENTS),
                     48000: Codec(102, "telephone-event", 48000, 1, _DTMF_EVENTS)}
_PTIMES: Final = range(10, 130, 10)  # packet times every codec of ours can carry


def _our_codecs(names: list[str]) -> list[Codec]:
    result: list[Codec] = []
    for name in names:
        template = SUPPORTED_CODECS.get(str(name).lower())
        if template is None:
            raise ValueError(f"unsupported codec {name!r}; supported: opus, G722, PCMU, PCMA")
        if all(c.key != template.key for c in result):
            result.append(template.copy())
    return result


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")


def _net_addr(address: str) -> tuple[str, str]:
    try:
        return ("IN", "IP6" if ipaddress.ip_address(address).version == 6 else "IP4")
    except ValueError:
        return ("IN", "IP6" if ":" in address else "IP4")  # a host name, or IPv6 with a zone


def _flags(direction: str) -> tuple[bool, bool]:
    """(may send, may receive)."""
    return (direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly"))


def _direction(send: bool, recv: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly",
            (False, True): "recvonly", (False, False): "inactive"}[(send, recv)]


def _speakable_audio(m: MediaDescription, secure: bool = False) -> bool:
    profiles = RTP_PROFILES_WE_SPEAK + SECURE_PROFILES if secure else RTP_PROFILES_WE_SPEAK
    return m.media.lower() == "audio" and m.port != 0 and m.proto.upper() in profiles


def _is_secure(m: MediaDescription) -> bool:
    return m.proto.upper() in SECURE_PROFILES


def _pick_dtmf(offered: list[Codec], rate: int) -> Codec | None:
    events = [c for c in offered if c.is_telephone_event]
    for wanted in (rate, 8000):
        for codec in events:
            if codec.clock_rate == wanted:
                return codec
    return events[0] if events else None


def _small_uint(text: str | None) -> int | None:
    """A lenient read of an optional number (fmtp values are free text): None if not one."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def _packet_time(remote: MediaDescription, codec: Codec, fallback: int) -> int:
    """The remote side's ptime (a=ptime, or opus fmtp ptime, RFC 7587 §6.1), kept within
    its minptime/maxptime and on a 10 ms grid every codec of ours can packetise."""
    params = codec.fmtp_params()
    target = remote.ptime or _small_uint(params.get("ptime")) or fallback
    # a=minptime is not in RFC 4566 but baresip and others send it
    lows = [_small_uint(params.get("minptime")), _small_uint(remote.attribute("minptime"))]
    highs = [remote.maxptime, _small_uint(params.get("maxptime"))]
    low = max((x for x in lows if x), default=0)
    high = min((x for x in highs if x), default=10**9)
    allowed = [p for p in _PTIMES if low <= p <= high] or list(_PTIMES)
    return min(allowed, key=lambda p: (abs(p - target), p))


def _remote_rtcp(m: MediaDescription, host: str, mux: bool) -> tuple[str, int]:
    if mux:
        return host, m.port
    if m.rtcp is not None:
        return (m.rtcp.connection.host if m.rtcp.connection else host), m.rtcp.port
    return host, m.port + 1 if m.port < 65535 else m.port


def make_offer(*, address: str, port: int, codecs: list[str], ptime: int = 20, dtmf: bool = True,
               session_id: int, session_version: int, username: str = "-",
               direction: str = "sendrecv", rtcp_mux: bool = False,
               crypto: list[sdes.Crypto] | None = None,
               secure: bool = False) -> SessionDescription:
    """Our audio offer. Static PTs for PCMU/PCMA/G722 (with rtpmap lines anyway, as phones
    do), opus on 111, telephone-event/8000 on 101 and /48000 on 102 when opus is offered.
    ``crypto`` lines go with it (SDES); ``secure`` makes it RTP/SAVP (SRTP or nothing),
    else an RTP/AVP offer with a=crypto means "encrypted if you can"."""
    offered = _our_codecs(codecs)
    if not offered:
        raise ValueError("no codecs to offer")
    _check_direction(direction)
    if not 0 < port < 65536:
        raise ValueError(f"RTP port {port} out of range")
    if ptime <= 0:
        raise ValueError(f"ptime must be positive, not {ptime}")
    if dtmf:
        offered.append(_TELEPHONE_EVENTS[8000].copy())
        if any(c.is_named("opus") for c in offered):
            offered.append(_TELEPHONE_EVENTS[48000].copy())
    nettype, addrtype = _net_addr(address)
    if secure and not crypto:
        raise ValueError("an RTP/SAVP offer needs a=crypto lines")
    audio = MediaDescription(media="audio", port=port, proto="RTP/SAVP" if secure else "RTP/AVP",
                             formats=[str(c.payload_type) for c in offered], codecs=offered,
                             ptime=ptime, direction=direction, rtcp_mux=rtcp_mux,
                             crypto=list(crypto or []))
    return SessionDescription(
        origin=Origin(username, session_id, session_version, nettype, addrtype, address),
        connection=Connection(nettype, addrtype, address), media=[audio])


def answer_offer(offer: SessionDescription, *, address: str, port: int, codecs: list[str],
                 session_id: int, session_version: int, ptime_default: int = 20,
                 rtcp_mux_supported: bool = True, direction: str = "sendrecv", dtmf: bool = True,
                 username: str = "-", encryption: str = "none",
                 suites: tuple[str, ...] = ()) -> tuple[SessionDescription, NegotiatedMedia]:
    """RFC 3264 §6 answer: the first audio stream with a codec in common is accepted with
    the first codec of OUR preference order (keeping the offer's PT numbers); every other
    m-line is refused with port 0, in the offer's order. ``direction`` is what we want
    (e.g. sendonly when we hold); the answer never grants more than the offer allows.

    ``encryption`` (none | sdes | sdes-required) with the SRTP ``suites`` we run: an
    RTP/SAVP stream needs a usable a=crypto, and so does any stream under sdes-required;
    under sdes a usable a=crypto on RTP/AVP is taken too (best effort). The answer's
    a=crypto carries the offered tag and suite with our own fresh key (RFC 4568 §7.1)."""
    preferred = _our_codecs(codecs)
    _check_direction(direction)
    if encryption not in ENCRYPTIONS:
        raise ValueError(f"encryption must be one of {', '.join(ENCRYPTIONS)}")
    if not 0 < port < 65536:
        raise ValueError(f"RTP port {port} out of range")
    encrypting = encryption != "none"

    chosen_index, chosen, crypto = -1, None, None
    saw_audio = False
    refusals: list[str] = []
    for index, m in enumerate(offer.media):
        if not _speakable_audio(m, secure=True):
            continue
        if _is_secure(m) and not encrypting:
            refusals.append(f"{m.proto} (SRTP) was offered and media_encryption is none")
            continue
        saw_audio = True
        codec = next((c for ours in preferred for c in m.codecs if c.key == ours.key), None)
        if codec is None:
            continue
        crypto = sdes.choose(m.crypto, suites) if encrypting else None
        if crypto is None and (_is_secure(m) or encryption == "sdes-required"):
            refusals.append(sdes.refusal(m.crypto, suites))
            continue
        chosen_index, chosen = index, codec
        break
    if chosen is None:
        if refusals:
            raise NoCommonCodec("; ".join(dict.fromkeys(refusals)))
        if not saw_audio:
            raise NoCommonCodec("the offer has no RTP/AVP audio stream")
        offered = ", ".join(c.rtpmap for m in offer.media if _speakable_audio(m, True)
                            for c in m.codecs)
        raise NoCommonCodec(f"no codec in common: offered {offered or 'none we know'}; "
                            f"we support {', '.join(c.name for c in preferred)}")

    remote_m = offer.media[chosen_index]
    connection = offer.connection_for(remote_m)
    if connection is None:
        raise SdpError("the offered audio stream has no c= line")
    remote_direction = offer.direction_for(remote_m)
    they_send, they_recv = _flags(remote_direction)
    we_send, we_recv = _flags(direction)
    answer_direction = _direction(we_send and they_recv, we_recv and they_send)

    ours = next(c for c in preferred if c.key == chosen.key)
    answer_codecs = [chosen.copy(fmtp=ours.copy().fmtp)]  # our receive parameters
    dtmf_codec = _pick_dtmf(remote_m.codecs, chosen.clock_rate) if dtmf else None
    if dtmf_codec is not None:
        answer_codecs.append(dtmf_codec.copy(fmtp=_DTMF_EVENTS))
    ptime = _packet_time(remote_m, chosen, ptime_default)
    mux = remote_m.rtcp_mux and rtcp_mux_supported

    answer_crypto, keys = sdes.keys_for_answer(crypto) if crypto is not None else (None, None)
    answer_media: list[MediaDescription] = []
    for index, m in enumerate(offer.media):
        if index == chosen_index:
            answer_media.append(MediaDescription(
                media=m.media, port=port, proto=m.proto,
                formats=[str(c.payload_type) for c in answer_codecs], codecs=answer_codecs,
                ptime=ptime, direction=answer_direction, rtcp_mux=mux,
                crypto=[answer_crypto] if answer_crypto is not None else []))
        else:
            answer_media.append(MediaDescription(media=m.media, port=0, proto=m.proto,
                                                 formats=list(m.formats) or ["0"]))
    nettype, addrtype = _net_addr(address)
    answer = SessionDescription(
        origin=Origin(username, session_id, session_version, nettype, addrtype, address),
        connection=Connection(nettype, addrtype, address),
        timings=[Timing(t.start, t.stop, list(t.repeats)) for t in offer.timings],
        media=answer_media)

    host = connection.host
    rtcp_host, rtcp_port = _remote_rtcp(remote_m, host, mux)
    held = connection.is_unspecified or not they_recv
    our_direction = _direction(_flags(answer_direction)[0] and not connection.is_unspecified,
                               _flags(answer_direction)[1])
    negotiated = NegotiatedMedia(
        remote_host=host, remote_port=remote_m.port, remote_rtcp_host=rtcp_host,
        remote_rtcp_port=rtcp_port, codec=chosen.copy(),
        dtmf=dtmf_codec.copy() if dtmf_codec else None, ptime=ptime, direction=our_direction,
        rtcp_mux=mux, hold=held, srtp=keys)
    return answer, negotiated


def apply_answer(offer: SessionDescription, answer: SessionDescription, *,
                 ptime_default: int = 20) -> NegotiatedMedia:
    """UAC side: check the answer against our offer and say what the media layer does."""
    if len(answer.media) != len(offer.media):
        raise SdpError(f"the answer has {len(answer.media)} m-lines, the offer had "
                       f"{len(offer.media)} (RFC 3264 §6)")
    for number, (ours, theirs) in enumerate(zip(offer.media, answer.media), 1):
        if ours.media.lower() != theirs.media.lower():
            raise SdpError(f"answer m-line {number} is {theirs.media!r}, the offer's is {ours.media!r}")

    for ours, theirs in zip(offer.media, answer.media):
        if not _speakable_audio(ours, secure=True) or theirs.port == 0:
            continue
        if theirs.proto.upper() != ours.proto.upper():
            raise SdpError(f"the answer changed the transport from {ours.proto} to {theirs.proto}")
        keys = _answered_keys(ours, theirs)
        offered_keys = {c.key for c in ours.codecs if not c.is_telephone_event}
        codec = next((c for c in theirs.codecs
                      if c.key in offered_keys and not c.is_named("CN")), None)
        if codec is None:
            answered = ", ".join(c.rtpmap for c in theirs.codecs) or " ".join(theirs.formats)
            raise NoCommonCodec(f"the answer's codecs ({answered}) were not in our offer")
        connection = answer.connection_for(theirs)
        if connection is None:
            raise SdpError("the answered audio stream has no c= line")
        offered_events = any(c.is_telephone_event for c in ours.codecs)
        dtmf_codec = _pick_dtmf(theirs.codecs, codec.clock_rate) if offered_events else None
        our_send, our_recv = _flags(offer.direction_for(ours))
        they_send, they_recv = _flags(answer.direction_for(theirs))
        host = connection.host
        mux = ours.rtcp_mux and theirs.rtcp_mux
        rtcp_host, rtcp_port = _remote_rtcp(theirs, host, mux)
        fallback = ours.ptime or ptime_default
        return NegotiatedMedia(
            remote_host=host, remote_port=theirs.port, remote_rtcp_host=rtcp_host,
            remote_rtcp_port=rtcp_port, codec=codec.copy(),
            dtmf=dtmf_codec.copy() if dtmf_codec else None,
            ptime=_packet_time(theirs, codec, fallback),
            direction=_direction(our_send and they_recv and not connection.is_unspecified,
                                 our_recv and they_send),
            rtcp_mux=mux,
            hold=connection.is_unspecified or (our_send and not they_recv), srtp=keys)
    raise NoCommonCodec("the answer refused every audio stream (port 0)")


def _answered_keys(ours: MediaDescription, theirs: MediaDescription) -> sdes.SrtpKeys | None:
    """The SRTP keys of an answered stream: our offered line with the answer's tag (and
    suite) for sending, the answer's key for receiving. None when neither side encrypts;
    SdpError when the answer's a=crypto fits no offered line, or an RTP/SAVP offer was
    accepted without one."""
    if not theirs.crypto:
        if _is_secure(ours):
            raise SdpError(f"the answer accepted {ours.proto} without an a=crypto key")
        return None
    if not ours.crypto:
        raise SdpError("the answer has a=crypto but our offer had none")
    answered = theirs.crypto[0]
    offered = next((c for c in ours.crypto if c.tag == answered.tag), None)
    if offered is None or offered.suite != answered.suite:
        raise SdpError(f"the answer's a=crypto (tag {answered.tag}, {answered.suite}) matches "
                       f"no line of our offer")
    if len(answered.key) != sdes.SUITES.get(answered.suite, -1) or answered.mki:
        raise SdpError(f"the answer's {answered.suite} key is not usable")
    return sdes.SrtpKeys(offered.suite, offered.key, answered.key)
