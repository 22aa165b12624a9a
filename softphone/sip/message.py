"""SIP messages (RFC 3261 §7, §20, §25): parse, access, serialize.

Parsing is lazy where it can be and strict where an answer depends on it.
:func:`parse_message` splits the start line and the header lines once and keys every line
by its header name; typed values (Via, From/To, CSeq, URIs) are built when first read and
cached. What a UA must check before it acts on a message (RFC 3261 §8.2, §8.1.3: the top
Via and the syntax of the lower ones, Call-ID, CSeq, From, To, the Request-URI, a
request's Contact, Max-Forwards, Expires, Content-Length) is checked at once; the rest
raises on access, with the reason a 400 would carry. Unknown headers are kept verbatim, compact names are
expanded, folded lines are joined. A message nobody changed serializes to the bytes it
was parsed from. Every problem surfaces as :class:`SipParseError` with a reason fit for
a 400 reason phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Iterable, Iterator

from .errors import SipParseError
from .uri import NameAddr, OpaqueUri, SipUri, parse_any_uri, parse_name_addr, parse_uri

__all__ = [
    "Headers",
    "Via",
    "Request",
    "Response",
    "Message",
    "parse_message",
    "StreamFramer",
    "make_response",
    "REASON_PHRASES",
    "MAX_MESSAGE_SIZE",
]

MAX_MESSAGE_SIZE: Final = 65535
"""The largest message we accept (a UDP datagram's worth); longer ones are refused."""

COMPACT_FORMS: Final = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires",
    "u": "Allow-Events", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}

_CANONICAL: Final = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info",
        "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires",
        "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version",
        "Organization", "P-Asserted-Identity", "Path", "Priority", "Proxy-Authenticate",
        "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
        "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "RSeq",
        "Server", "Service-Route", "Session-Expires", "Subject", "Supported", "Timestamp",
        "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1). Authentication
# headers are NOT in here: their commas separate parameters.
_LIST_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Content-Encoding", "Allow-Events", "Path", "Service-Route", "In-Reply-To",
        "Alert-Info", "Call-Info", "Error-Info", "Reply-To", "Warning",
    )
)

REASON_PHRASES: Final = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_TOKEN_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
_TOKEN: Final = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


def _is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and '٣', which int() refuses
    or reads as a number no peer meant."""
    return text.isascii() and text.isdigit()


def _small_int(text: str, max_digits: int) -> int | None:
    """The value of a run of ASCII digits (leading zeros allowed), or None when it is not
    one or has more than ``max_digits`` significant digits (int() refuses > 4300)."""
    if not _is_digits(text):
        return None
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= max_digits else None


_CANONICAL_OR_COMPACT: Final = {**_CANONICAL, **COMPACT_FORMS}

# The spellings met on the wire most (canonical, lower case, compact) -> (name, key): one
# dict look-up names a header line. The key is the canonical name in lower case.
_SPELLINGS: Final[dict[str, tuple[str, str]]] = {}
for _spelling, _name in _CANONICAL_OR_COMPACT.items():
    _SPELLINGS[_spelling] = _SPELLINGS[_name] = (_name, _name.lower())
del _spelling, _name


def canonical_name(name: str) -> str:
    """Expand compact forms and normalise the case of known header names."""
    return _CANONICAL_OR_COMPACT.get(name.lower(), name)


def _key(name: str) -> str:
    """The lookup key of a header name: canonical, lower case."""
    entry = _SPELLINGS.get(name)
    if entry is not None:
        return entry[1]
    low = name.lower()
    entry = _SPELLINGS.get(low)
    return low if entry is None else entry[1]


def _line_name(raw: str) -> tuple[str, str] | None:
    """(canonical name, key) of a header line's name as written, or None when it is no
    token (stripping every token character must leave nothing)."""
    name = raw.strip()
    if not name or name.strip(_TOKEN_CHARS):
        return None
    entry = _SPELLINGS.get(name) or _SPELLINGS.get(name.lower())
    return entry if entry is not None else (name, name.lower())


_LIST_ITEM: Final = re.compile(r'(?:"(?:[^"\\]|\\.)*"|<[^<>]*>|[^,"<>])+')


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    if '"' not in value and "<" not in value:
        if "," not in value:
            value = value.strip()
            return [value] if value else []
        return [item for item in (part.strip() for part in value.split(",")) if item]
    if "\\" not in value and value.count('"') % 2 == 0 \
            and value.count("<") == value.count(">"):
        return [item for item in (m.strip() for m in _LIST_ITEM.findall(value)) if item]
    return _split_list_slow(value)


def _split_list_slow(value: str) -> list[str]:
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            item = value[start:i].strip()
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        out.append(item)
    return out


class Headers:
    """Ordered, case-insensitive header fields. Each entry is one (name, value) line.

    ``_keys`` holds each line's lookup key (the canonical name in lower case) beside it,
    so a look-up is a scan of a short list of interned strings, done in C. ``parsed``
    caches typed values (Via, From, To …) by key for the message's accessors; a change
    drops the ones of the header it touches. ``_pristine``: nothing changed since the
    parser built these, so the message's original bytes still say what they say.
    """

    __slots__ = ("_items", "_keys", "parsed", "_pristine")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._keys: list[str] = []
        self.parsed: dict[str, object] = {}
        self._pristine = False
        for n, v in items:
            name = canonical_name(n)
            self._items.append((name, v))
            self._keys.append(name.lower())

    def _changed(self, key: str | None) -> None:
        """Forget what depended on the lines of ``key`` (None: on every line)."""
        self._pristine = False
        parsed = self.parsed
        if parsed:
            if key is None:
                parsed.clear()
            else:
                parsed.pop(key, None)
                if key == "via":
                    parsed.pop("vias", None)

    def compact(self) -> None:
        """Drop the typed values (rebuilt on the next read): for a message kept long
        after it was handled (a lingering transaction's)."""
        if self.parsed:
            self.parsed = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return _key(name) in self._keys

    def copy(self) -> "Headers":
        h = Headers()
        h._items = list(self._items)
        h._keys = list(self._keys)
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        keys = self._keys
        if key in keys:
            return self._items[keys.index(key)][1]
        return default

    def count(self, name: str) -> int:
        """How many header lines carry ``name``."""
        return self._keys.count(_key(name))

    def _values(self, key: str) -> list[str]:
        keys = self._keys
        n = keys.count(key)
        if n == 0:
            return []
        if n == 1:
            return [self._items[keys.index(key)][1]]
        return [item[1] for k, item in zip(keys, self._items) if k == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of a header; list-valued headers are split at top-level commas."""
        key = _key(name)
        values = self._values(key)
        if values and key in _LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def add(self, name: str, value: str) -> None:
        name = canonical_name(name)
        key = name.lower()
        self._items.append((name, value))
        self._keys.append(key)
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        name = canonical_name(name)
        key = name.lower()
        self._items.insert(0, (name, value))
        self._keys.insert(0, key)
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one, keeping the first one's position."""
        name = canonical_name(name)
        key = name.lower()
        self._changed(key)
        keys = self._keys
        if key not in keys:
            self._items.append((name, value))
            keys.append(key)
            return
        first = keys.index(key)
        self._items[first] = (name, value)
        if keys.count(key) > 1:
            kept = [i for i, k in enumerate(keys) if i <= first or k != key]
            self._items = [self._items[i] for i in kept]
            self._keys = [keys[i] for i in kept]

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first value of a list header in place (e.g. stamp the top Via),
        keeping the line's position and any further values on the same line."""
        key = _key(name)
        self._changed(key)
        keys = self._keys
        if key not in keys:
            self._items.append((canonical_name(name), value))
            keys.append(key)
            return
        i = keys.index(key)
        n, v = self._items[i]
        rest = split_list(v)[1:] if key in _LIST_HEADERS and "," in v else []
        self._items[i] = (n, ", ".join([value, *rest]) if rest else value)

    def remove(self, name: str) -> None:
        key = _key(name)
        keys = self._keys
        if key not in keys:
            return
        self._changed(key)
        kept = [i for i, k in enumerate(keys) if k != key]
        self._items = [self._items[i] for i in kept]
        self._keys = [keys[i] for i in kept]


_FAST_VIA: Final = re.compile(r"\s*SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9.\-_]+)(?::([0-9]{1,5}))?"
                       r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[^;\s\"]+)?)*)\s*")


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> "Via":
        m = _FAST_VIA.fullmatch(value)
        if m is not None:
            transport, host, port_text, param_text = m.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if not 0 < port < 65536:
                    raise SipParseError("malformed Via sent-by")
            params: dict[str, str | None] = {}
            if param_text:
                for item in param_text[1:].split(";"):
                    name, eq, val = item.partition("=")
                    params[name.lower()] = val if eq else None
            return cls(transport=transport.upper(), host=host, port=port, params=params)
        return cls._parse_slow(value)

    @classmethod
    def _parse_slow(cls, value: str) -> "Via":
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(.*)$", value, re.S)
        if not m:
            raise SipParseError("malformed Via header")
        transport, sent_by, rest = m.group(1).upper(), m.group(2), m.group(3)
        try:
            uri = parse_uri("sip:" + sent_by)
        except SipParseError:
            raise SipParseError("malformed Via sent-by") from None
        if rest and not rest.startswith(";"):
            raise SipParseError("malformed Via header")
        params: dict[str, str | None] = {}
        for item in rest.split(";"):
            item = item.strip()
            if not item:
                continue
            name, eq, val = item.partition("=")
            params[name.strip().lower()] = val.strip() if eq else None
        return cls(transport=transport, host=uri.host, port=uri.port, params=params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        out = f"SIP/2.0/{self.transport} {self.host}" + (f":{self.port}" if self.port else "")
        for name, value in self.params.items():
            out += f";{name}" + ("" if value is None else f"={value}")
        return out


def _check_via(value: str) -> None:
    """Raise as Via.parse would, without building the Via (a lower one nobody reads)."""
    m = _FAST_VIA.fullmatch(value)
    if m is None or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        Via.parse(value)


def _first_item(values: list[str]) -> str | None:
    """The first item of a list header's values (the top Via), or None."""
    for value in values:
        if "," not in value:
            if value:
                return value
            continue
        items = split_list(value)
        if items:
            return items[0]
    return None


class Message:
    """What requests and responses share: headers, body, and typed accessors."""

    __slots__ = ("headers", "body", "_wire")

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"") -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        # the bytes this message was parsed from, and the start line fields and body they
        # hold (to_bytes sends them again while nothing changed)
        self._wire: tuple[bytes, tuple] | None = None

    # -- typed accessors (raise SipParseError on bad values) --------------------------------
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value or not value.strip():
            raise SipParseError("missing Call-ID header")
        return value.strip()

    @property
    def cseq(self) -> tuple[int, str]:
        cache = self.headers.parsed
        value = cache.get("cseq")
        if value is None:
            value = cache["cseq"] = self._cseq()
        return value  # type: ignore[return-value]

    def _cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("missing CSeq header")
        parts = value.split()
        number = _small_int(parts[0], 10) if len(parts) == 2 else None
        if number is None or not _TOKEN.match(parts[1]):
            raise SipParseError("malformed CSeq header")
        if number >= 2**31:
            raise SipParseError("CSeq number out of range")
        return number, parts[1]  # methods are case-sensitive (RFC 3261 §7.1)

    @property
    def vias(self) -> list[Via]:
        cache = self.headers.parsed
        value = cache.get("vias")
        if value is None:
            value = cache["vias"] = [Via.parse(v) for v in self.headers.get_all("Via")]
        return value  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        cache = self.headers.parsed
        via = cache.get("via")
        if via is None:
            text = _first_item(self.headers._values("via"))
            if text is None:
                raise SipParseError("missing Via header")
            via = cache["via"] = Via.parse(text)
        return via  # type: ignore[return-value]

    def replace_top_via(self, via: Via) -> None:
        """Write ``via`` (the top Via, changed: received=, rport=) back into the headers,
        keeping it as the parsed top Via."""
        self.headers.replace_first_value("Via", str(via))
        self.headers.parsed["via"] = via

    def _address(self, name: str, key: str) -> NameAddr:
        cache = self.headers.parsed
        parsed = cache.get(key)
        if parsed is not None:
            return parsed  # type: ignore[return-value]
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        try:
            address = cache[key] = parse_name_addr(value)
        except SipParseError as exc:
            raise SipParseError(f"malformed {name} header: {exc.reason}") from None
        return address

    @property
    def from_(self) -> NameAddr:
        return self._address("From", "from")

    @property
    def to(self) -> NameAddr:
        return self._address("To", "to")

    @property
    def contacts(self) -> list[NameAddr]:
        cache = self.headers.parsed
        parsed = cache.get("contact")
        if parsed is None:
            parsed = cache["contact"] = [parse_name_addr(v) for v in
                                         self.headers.get_all("Contact") if v.strip() != "*"]
        return list(parsed)  # type: ignore[call-overload]

    @property
    def record_routes(self) -> list[str]:
        return self.headers.get_all("Record-Route")

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";")[0].strip().lower() if value else None

    def header_int(self, name: str) -> int | None:
        value = self.headers.get(name)
        if value is None:
            return None
        number = _small_int(value.split(";")[0].strip(), 10)
        if number is None:
            raise SipParseError(f"malformed {name} header")
        return number

    def compact(self) -> None:
        """Keep only what a retransmission needs: drop the typed values and the parsed
        bytes (a lingering transaction's message, for seconds)."""
        self.headers.compact()
        self._wire = None

    # -- serialization ----------------------------------------------------------------------
    def _start_line(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fields(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        wire = self._wire
        if wire is not None and self.headers._pristine and wire[1] == self._fields():
            return wire[0]
        lines = [self._start_line()]
        lines += [f"{name}: {value}" for name, value in self.headers._items
                  if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    __slots__ = ("method", "uri", "_ruri")

    def __init__(self, method: str, uri: str | SipUri, headers=None, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method  # case-sensitive: 'invite' is not INVITE (§7.1)
        self.uri = str(uri)
        self._ruri: tuple[str, SipUri | OpaqueUri] | None = None

    @property
    def request_uri(self) -> "SipUri | OpaqueUri":
        """sip:, sips: and tel: URIs parsed; another scheme kept opaque (the UA answers 416)."""
        cached = self._ruri
        if cached is not None and cached[0] is self.uri:
            return cached[1]
        parsed = parse_any_uri(self.uri)
        self._ruri = (self.uri, parsed)
        return parsed

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def _fields(self) -> tuple:
        return (self.method, self.uri, self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str | None = None, headers=None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def _fields(self) -> tuple:
        return (self.status, self.reason, self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _header_lines(head: str) -> list[str]:
    """Unfold continuation lines (RFC 3261 §7.3.1): CRLF + whitespace = one space."""
    lines: list[str] = []
    for raw in re.split(r"\r?\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        elif raw:
            lines.append(raw)
    return lines


_STATUS_LINE: Final = re.compile(r"^SIP/([0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?$")


def _request_line(start: str) -> tuple[str, str, str | None]:
    """(method, Request-URI, error): a bad request line is reported once the headers are
    read, since the 400 (505 for the version) needs their Via, From, To, Call-ID and CSeq
    (RFC 4475 §3.1.2.8-10, .16)."""
    parts = start.split(" ")
    if len(parts) == 3 and parts[2] == "SIP/2.0" and parts[0] \
            and not parts[0].strip(_TOKEN_CHARS) and parts[1].split() == [parts[1]]:
        return parts[0], parts[1], None  # the usual case
    words = start.split()
    method, uri = (words[0] if words else ""), (words[1] if len(words) > 1 else "")
    error = None
    if len(parts) != 3:
        error = "malformed request line: elements must be separated by one space" \
            if len(words) == 3 else "malformed request line"
    elif not _TOKEN.match(parts[0]):
        error = "malformed method"
    elif parts[2] != "SIP/2.0":
        error = "unsupported SIP version" if parts[2].startswith("SIP/") \
            else "malformed request line"
    return method, uri, error


def parse_message(data: bytes, *, datagram: bool = True) -> Request | Response:
    """Parse one complete message.

    ``datagram``: on UDP a missing Content-Length means "the rest of the datagram" and
    excess bytes past Content-Length are discarded (RFC 3261 §18.3); on streams the framer
    has already cut exactly one message.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("message too large")
    # tolerate leading CRLFs (keep-alives, RFC 5626) before the start line
    data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    crlf = end >= 0
    if crlf:
        head_bytes, body_at = data[:end], end + 4
    else:
        end = data.find(b"\n\n")
        head_bytes, body_at = (data[:end], end + 2) if end >= 0 else (data, len(data))
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        head = head_bytes.decode("latin-1")
    # the usual case: CRLF line ends, nothing folded; then the bytes can be sent again as is
    plain = crlf and "\n " not in head and "\n\t" not in head \
        and head.count("\n") == head.count("\r\n")
    lines = head.split("\r\n") if plain else _header_lines(head)
    if not lines or not lines[0]:
        raise SipParseError("empty message")
    start = lines[0]
    headers = Headers()
    start_error: str | None = None
    msg: Request | Response
    if start.startswith("SIP/"):
        m = _STATUS_LINE.match(start)
        if not m:
            raise SipParseError("malformed status line")
        if m.group(1) != "2.0":
            raise SipParseError("unsupported SIP version")
        status = int(m.group(2))
        if not 100 <= status <= 699:
            raise SipParseError("status code out of range")
        msg = Response(status, (m.group(3) or "").strip(), headers)
    else:
        method, uri, start_error = _request_line(start)
        msg = Request(method, uri, headers)
    # a 400 can answer a request; a bad response is only dropped, so it has no partial
    partial = msg if isinstance(msg, Request) else None
    items = headers._items
    keys = headers._keys
    spellings = _SPELLINGS
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        entry = spellings.get(name)
        if entry is None or not colon:
            entry = _line_name(name) if colon else None
            if entry is None:
                raise SipParseError(f"malformed header line {lines[i][:40]!r}", partial=partial)
        items.append((entry[0], value.strip()))
        keys.append(entry[1])
    if start_error is not None:
        raise SipParseError(start_error, partial=partial)
    body = data[body_at:]
    wire: bytes | None = None
    lengths = keys.count("content-length")
    if lengths:
        text = items[keys.index("content-length")][1]
        if lengths > 1 and len({v for v in headers._values("content-length")}) > 1:
            raise SipParseError("conflicting Content-Length headers", partial=partial)
        length = _small_int(text, 9)
        if length is None:
            raise SipParseError("malformed Content-Length", partial=partial)
        if length > len(body):
            raise SipParseError("Content-Length larger than body", partial=partial)
        if length < len(body):
            body = body[:length]
            if plain and lengths == 1:
                wire = data[:body_at + length]
        elif plain and lengths == 1:
            wire = data
    elif not datagram:
        body = b""
    msg.body = body
    _validate(msg)
    if wire is not None:
        msg._wire = (wire, msg._fields())
        headers._pristine = True
    return msg


def _validate(msg: Request | Response) -> None:
    """The checks a UA must make before it can act on a message (RFC 3261 §8.2, §8.1.3)."""
    partial = msg if isinstance(msg, Request) else None
    headers = msg.headers
    keys = headers._keys
    try:
        msg.top_via  # noqa: B018 - the transaction layer's key
        vias = headers._values("via")
        if len(vias) > 1 or "," in vias[0]:
            for value in headers.get_all("Via")[1:]:  # RFC 4475 badinv01
                _check_via(value)
        for name, key in (("Call-ID", "call-id"), ("CSeq", "cseq"), ("From", "from"),
                          ("To", "to")):
            if keys.count(key) > 1:
                raise SipParseError(f"more than one {name} header")  # RFC 4475 multi01
        msg.call_id  # noqa: B018
        number, method = msg.cseq
        msg.from_  # noqa: B018
        msg.to  # noqa: B018
        if isinstance(msg, Request):
            if method != msg.method:
                raise SipParseError("CSeq method does not match request method")
            try:
                ruri = msg.request_uri
            except SipParseError as exc:
                raise SipParseError(f"malformed Request-URI: {exc.reason}") from None
            if ruri.headers:  # RFC 3261 §19.1.1: headers never stand in a Request-URI
                raise SipParseError("headers are not allowed in a Request-URI")
            if "contact" in keys:
                try:
                    msg.contacts  # noqa: B018 - RFC 4475 regbadct
                except SipParseError as exc:
                    raise SipParseError(f"malformed Contact header: {exc.reason}") from None
            if "max-forwards" in keys:
                hops = _small_int(headers.get("Max-Forwards", "").strip(), 3)  # type: ignore[union-attr]
                if hops is None or hops > 255:
                    raise SipParseError("malformed Max-Forwards")
        if "expires" in keys:
            msg.header_int("Expires")
        if "min-expires" in keys:
            msg.header_int("Min-Expires")
    except SipParseError as exc:
        exc.partial = partial
        raise


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    Bounded: a header block or a body beyond ``MAX_MESSAGE_SIZE`` is refused with
    SipParseError, after which the connection should be closed.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes at the front already searched for the blank line
        self._need: int | None = None  # size of the message whose header block is read
        self.keepalives = 0  # CRLFs seen between messages (RFC 5626 pings and pongs)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete raw messages now available.

        Work per call is proportional to the new bytes (not the buffer), so a peer that
        trickles a message byte by byte cannot make framing quadratic.
        """
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                # RFC 5626 keep-alives: bare CRLFs between messages
                while self._buf[:2] == b"\r\n":
                    del self._buf[:2]
                    self._scanned = 0
                    self.keepalives += 1
                end = self._buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    self._scanned = len(self._buf)
                    if len(self._buf) > MAX_MESSAGE_SIZE:
                        raise SipParseError("header block too large")
                    return out
                head = bytes(self._buf[:end])
                # lines end in CRLF: allow the CR before '$' (else only the last line matched)
                m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$",
                              head)
                if not m:
                    raise SipParseError("missing Content-Length on stream transport")
                total = end + 4 + int(m.group(1))
                if total > MAX_MESSAGE_SIZE:
                    raise SipParseError("message too large")
                self._need = total
            if len(self._buf) < self._need:
                return out
            total, self._need, self._scanned = self._need, None, 0
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]


def make_response(request: Request, status: int, reason: str | None = None, *,
                  to_tag: str | None = None,
                  extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Response:
    """A response to ``request`` with the headers §8.2.6.2 says to copy."""
    headers = Headers()
    items, keys = headers._items, headers._keys
    for value in request.headers.get_all("Via"):
        items.append(("Via", value))
        keys.append("via")
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = request.headers.get(name)
        if copied is not None:
            if name == "To" and to_tag and status != 100:
                try:
                    if request.to.tag is None:
                        copied = f"{copied};tag={to_tag}"
                except SipParseError:
                    pass
            items.append((name, copied))
            keys.append(name.lower())
    if status == 100 and request.headers.get("Timestamp"):
        headers.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in extra:
        headers.add(name, value)
    return Response(status, reason, headers, body)
