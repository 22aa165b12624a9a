"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10).

Values are stored unescaped and escaped again on output, so two URIs that differ only in
%-escaping compare equal and a user part such as ``alice smith`` survives a round trip.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import quote, unquote

from .errors import SipParseError

__all__ = ["SipUri", "OpaqueUri", "NameAddr", "parse_uri", "parse_any_uri", "parse_name_addr",
           "SIP_SCHEMES"]

# RFC 3261 §25.1: characters that may stand unescaped in the user part / params / headers.
_USER_SAFE: Final = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE: Final = "-_.!~*'()&=+$,"
_PARAM_SAFE: Final = "-_.!~*'()[]/:&+$"
_HEADER_SAFE: Final = "-_.!~*'()[]/?:+$"
_SCHEMES: Final = ("sip", "sips", "tel")
SIP_SCHEMES: Final = _SCHEMES
_ABSOLUTE_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_TOKENS: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_EMBEDDED_V4: Final = re.compile(r"(.*?):::(\d{1,3}(?:\.\d{1,3}){3})")
_HOST_RE: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise SipParseError(f"bad %-escape in {text!r}")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise SipParseError(f"%-escape is not UTF-8 in {text[:80]!r}") from None


@dataclass(slots=True)
class SipUri:
    """A parsed sip:, sips: or tel: URI."""

    scheme: str = "sip"
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        return parse_uri(text)

    @property
    def host_bare(self) -> str:
        """Host without IPv6 brackets, as sockets want it."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def default_port(self) -> int:
        return 5061 if self.scheme == "sips" or self.transport == "tls" else 5060

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """The address of record: scheme, user and host, nothing else."""
        return str(SipUri(scheme=self.scheme, user=self.user, host=self.host))

    def with_(self, **changes) -> "SipUri":
        changes.setdefault("params", dict(self.params))
        changes.setdefault("headers", dict(self.headers))
        return replace(self, **changes)

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = "tel:" + quote(self.user or "", safe=_USER_SAFE)
        else:
            out = self.scheme + ":"
            if self.user is not None:
                out += quote(self.user, safe=_USER_SAFE.replace(";", "").replace("?", ""))
                if self.password is not None:
                    out += ":" + quote(self.password, safe=_PASSWORD_SAFE)
                out += "@"
            out += self.hostport
        for name, value in self.params.items():
            out += ";" + quote(name, safe=_PARAM_SAFE)
            if value is not None:
                out += "=" + quote(value, safe=_PARAM_SAFE)
        if self.headers:
            out += "?" + "&".join(
                f"{quote(k, safe=_HEADER_SAFE)}={quote(v, safe=_HEADER_SAFE)}"
                for k, v in self.headers.items()
            )
        return out

    def __eq__(self, other: object) -> bool:
        # RFC 3261 §19.1.4, simplified: scheme/host case-insensitive, user case-sensitive,
        # params compared when present in both; transport/user/ttl/method/maddr must match.
        if not isinstance(other, SipUri):
            return NotImplemented
        if (self.scheme, self.user, self.host.lower(), self.port, self.password) != (
            other.scheme, other.user, other.host.lower(), other.port, other.password
        ):
            return False
        for name in ("transport", "user", "ttl", "method", "maddr"):
            if self.params.get(name) != other.params.get(name):
                return False
        return self.headers == other.headers

    def __hash__(self) -> int:
        return hash((self.scheme, self.user, self.host.lower(), self.port))


@dataclass(frozen=True, slots=True)
class OpaqueUri:
    """An absoluteURI of a scheme we do not speak (``isbn:``, ``http:``, ``soap.beep:``).

    RFC 3261 lets From, To, Contact and the Request-URI carry any scheme; we keep it as
    written so a message that carries one still parses, and answer 416 where we must use
    it. It looks enough like a SipUri (no user, no host) for code that only reads."""

    scheme: str
    text: str
    user: None = None
    host: str = ""
    port: None = None
    password: None = None

    @property
    def params(self) -> dict[str, str | None]:
        return {}

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def host_bare(self) -> str:
        return ""

    @property
    def hostport(self) -> str:
        return ""

    @property
    def transport(self) -> str:
        return "udp"

    def with_(self, **changes) -> "OpaqueUri":
        return self

    def __str__(self) -> str:
        return self.text


def parse_any_uri(text: str) -> "SipUri | OpaqueUri":
    """A sip:, sips: or tel: URI parsed, or any other well-formed absoluteURI kept as is."""
    scheme = text.partition(":")[0].lower()
    if scheme in _SCHEMES:
        return parse_uri(text)
    if not _ABSOLUTE_URI.fullmatch(text):
        raise SipParseError(f"malformed URI {text[:80]!r}")
    return OpaqueUri(scheme, text)


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = _unescape(name.strip()).lower()
        if not name:
            raise SipParseError(f"empty parameter name in {what}")
        params[name] = _unescape(value.strip()) if eq else None
    return params


# The shape nearly every URI on the wire has: no %-escapes, password, headers or IPv6.
# It is parsed by one regex; anything else takes the careful path below.
_FAST_URI: Final = re.compile(
    r"((?i:sips?)):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9.\-_]+)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]*)?)*)")


def parse_uri(text: str) -> SipUri:
    """Parse an addr-spec (no angle brackets). Raises SipParseError."""
    m = _FAST_URI.fullmatch(text)
    if m is not None:
        scheme, user, host, port_text, param_text = m.groups()
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536:
                raise SipParseError(f"port out of range in {text[:80]!r}")
        params: dict[str, str | None] = {}
        if param_text:
            for item in param_text[1:].split(";"):
                name, eq, value = item.partition("=")
                params[name.lower()] = value if eq else None
        return SipUri(scheme=scheme.lower(), user=user, host=host, port=port, params=params)
    return _parse_uri_slow(text)


def _parse_uri_slow(text: str) -> SipUri:
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in _SCHEMES:
        raise SipParseError(f"unsupported URI scheme in {text[:80]!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number or not re.fullmatch(r"[+0-9A-Fa-f*#().\-pPwW]+", number):
            raise SipParseError(f"bad tel URI {text[:80]!r}")
        return SipUri(scheme="tel", user=number, params=_parse_params(params, "tel URI"))
    user = password = None
    if "@" in rest:
        # userinfo ends at the first '@' (user and password never hold a bare '@', but
        # the user part may hold ';' and '?', RFC 3261 §25.1), so cut it off first
        userinfo, _, rest = rest.partition("@")
        user_raw, pcolon, pw = userinfo.partition(":")
        if not user_raw:
            raise SipParseError(f"empty user part in {text[:80]!r}")
        user = _unescape(user_raw)
        password = _unescape(pw) if pcolon else None
    headers: dict[str, str] = {}
    rest, qmark, hdrs = rest.partition("?")
    if qmark:
        for pair in hdrs.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            headers[_unescape(name)] = _unescape(value)
    hostport, _, params = rest.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {text[:80]!r}")
        host, after = hostport[: end + 1], hostport[end + 1 :]
    else:
        host, sep, port_text = hostport.partition(":")
        after = ":" + port_text if sep else ""
    port = None
    if after:
        digits = after[1:]
        if not after.startswith(":") or not (digits.isascii() and digits.isdigit()) \
                or len(after) > 6:
            raise SipParseError(f"bad port in {text[:80]!r}")
        port = int(after[1:])
        if not 0 < port < 65536:
            raise SipParseError(f"port out of range in {text[:80]!r}")
    if not host:
        raise SipParseError(f"missing host in {text[:80]!r}")
    if not _HOST_RE.fullmatch(host):
        raise SipParseError(f"bad host in {text[:80]!r}")
    if host.startswith("["):
        host = _ipv6_reference(host, text)
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_params(params, "URI"),
        headers=headers,
    )


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters."""

    uri: "SipUri | OpaqueUri"
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "NameAddr":
        return parse_name_addr(text)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> "NameAddr":
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.uri, self.display_name, params)

    def __str__(self) -> str:
        out = ""
        if self.display_name:
            # CR/LF would start a new header line: never let a display name carry one
            name = self.display_name.replace("\r", " ").replace("\n", " ")
            if _TOKEN_RE.fullmatch(name.replace(" ", "")) and name == name.strip():
                out = name + " "
            else:
                escaped = name.replace("\\", "\\\\").replace('"', '\\"')
                out = f'"{escaped}" '
        out += f"<{self.uri}>"
        for name, value in self.params.items():
            out += ";" + name + ("" if value is None else "=" + value)
        return out


def _split_header_params(text: str) -> dict[str, str | None]:
    """Split ``;a=b;c="x;y"`` respecting quoted strings."""
    params: dict[str, str | None] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] != ";":
            raise SipParseError(f"unexpected text {text[i:i + 20]!r} after address")
        i += 1
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip().lower()
        if not name:
            raise SipParseError("empty header parameter")
        value: str | None = None
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':
                k = j + 1
                while k < n and text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
                if k >= n:
                    raise SipParseError("unterminated quoted parameter")
                value = text[j : k + 1]
                j = k + 1
                while j < n and text[j] != ";":
                    j += 1
            else:
                k = j
                while k < n and text[k] != ";":
                    k += 1
                value = text[j:k].strip()
                j = k
        params[name] = value
        i = j
    return params


def _ipv6_reference(host: str, text: str) -> str:
    """A valid "[IPv6]" reference. RFC 3261's ABNF lets three colons stand before an
    embedded IPv4 address ("2001:db8:::192.0.2.1"); RFC 5118 §4.10 asks us to tolerate
    that one spelling, and we read it as the RFC 4291 form it means."""
    inner = host[1:-1]
    try:
        ipaddress.IPv6Address(inner)
        return host
    except ValueError:
        pass
    m = _EMBEDDED_V4.fullmatch(inner)
    if m is not None:
        fixed = f"{m.group(1)}::{m.group(2)}" if m.group(1) else f"::{m.group(2)}"
        try:
            ipaddress.IPv6Address(fixed)
            return f"[{fixed}]"
        except ValueError:
            pass
    raise SipParseError(f"bad IPv6 reference in {text[:80]!r}")


_FAST_NAME_ADDR: Final = re.compile(
    r'\s*(?:"((?:[^"\\\r\n]|\\[^\r\n])*)"\s*|([^"<>;]*))<([^<>"]*)>([^"]*)')
_UNESCAPE_QUOTED: Final = re.compile(r"\\(.)")


def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec with header params. Raises SipParseError."""
    m = _FAST_NAME_ADDR.fullmatch(text)
    if m is not None:
        quoted, bare, uri_text, rest = m.groups()
        rest = rest.strip()
        if not rest or rest[0] == ";":
            params: dict[str, str | None] = {}
            for item in rest[1:].split(";") if rest else ():
                name, eq, value = item.partition("=")
                name = name.strip().lower()
                if not name:
                    break  # an empty name: let the careful parser say what is wrong
                params[name] = value.strip() if eq else None
            else:
                if quoted is None:
                    display = bare.strip() if bare else None
                    if display and not _TOKENS.fullmatch(display):
                        raise SipParseError("a display name with characters other than "
                                            "token ones must be quoted")
                elif "\\" in quoted:
                    display = _UNESCAPE_QUOTED.sub(r"\1", quoted)
                else:
                    display = quoted
                return NameAddr(uri=_enclosed_uri(uri_text), display_name=display or None,
                                params=params)
    return _parse_name_addr_slow(text)


def _enclosed_uri(text: str) -> "SipUri | OpaqueUri":
    """The addr-spec between < and >: nothing but the URI (RFC 3261 LAQUOT/RAQUOT allow
    whitespace outside the brackets only)."""
    if text != text.strip():
        raise SipParseError("whitespace inside <> around the URI")
    return parse_any_uri(text)


def _parse_name_addr_slow(text: str) -> NameAddr:
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        i = 1
        chars: list[str] = []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chars.append(text[i])
            i += 1
        if i >= len(text):
            raise SipParseError("unterminated display name")
        display = "".join(chars)
        text = text[i + 1 :].lstrip()
        if not text.startswith("<"):
            raise SipParseError("display name without <URI>")
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("missing '>' in address")
        if display is None and text[:lt].strip():
            display = text[:lt].strip()
            if not _TOKENS.fullmatch(display):
                raise SipParseError("a display name with characters other than token ones "
                                    "must be quoted")
        uri = _enclosed_uri(text[lt + 1 : gt])
        params = _split_header_params(text[gt + 1 :])
    else:
        # addr-spec: everything after the first ';' is a header parameter (§20.10)
        uri_text, semi, rest = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise SipParseError("a URI with '?' or ',' must be enclosed in <> (RFC 3261 "
                                "§20.10)")
        uri = parse_any_uri(uri_text.strip())
        params = _split_header_params(semi + rest) if semi else {}
    return NameAddr(uri=uri, display_name=display or None, params=params)
