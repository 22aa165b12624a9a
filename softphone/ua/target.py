"""What a user typed to dial → a Request-URI (before anything starts, with a clear error)."""

from __future__ import annotations

import re

from ..sip.errors import SipParseError
from ..sip.locate import TRANSPORTS
from ..sip.uri import SipUri, parse_name_addr, parse_uri

__all__ = ["parse_target", "TargetError", "ECHO_TARGET"]

ECHO_TARGET = "echo"


class TargetError(ValueError):
    """Not something we can dial; the message says why."""


_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):(.*)", re.IGNORECASE | re.DOTALL)
_OTHER_SCHEMES = ("http", "https", "mailto", "xmpp", "h323", "im", "pres", "urn", "ws",
                  "wss", "ftp", "file", "data", "callto", "skype")


def _foreign_scheme(text: str) -> str | None:
    """The scheme of a URI that is not sip/sips/tel (``http://…``, ``mailto:…``), else
    None. ``host:port`` and ``user:password@host`` are not schemes."""
    match = _SCHEME.fullmatch(text)
    if match is None or "@" in text[:match.end(1)]:
        return None
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ("sip", "sips", "tel"):
        return None
    if rest.startswith("//") or scheme in _OTHER_SCHEMES:
        return scheme
    if "@" in rest or rest.split(";", 1)[0].isdigit():
        return None  # user:password@host, host:port
    return scheme


def parse_target(target: str, default_domain: str | None) -> SipUri:
    """A SIP URI, ``user@host[:port]``, a bare user completed with ``default_domain``, or a
    pasted name-addr (``Bob <sip:bob@example.com>``, the angle brackets' URI is used)."""
    text = target.strip()
    if not text:
        raise TargetError("empty target: type a SIP URI, user@host, a number, or echo")
    if "<" in text or text.endswith(">"):
        try:
            text = str(parse_name_addr(text).uri)
        except SipParseError as exc:
            raise TargetError(f"bad address {target!r}: {exc.reason}") from None
    scheme = _foreign_scheme(text)
    if scheme is not None:
        raise TargetError(f"{target!r} is not a SIP URI ({scheme}: is not a scheme a phone "
                          f"dials): type sip:user@host, user@host, a number, or echo")
    if text.lower().startswith(("sip:", "sips:", "tel:")):
        try:
            uri = parse_uri(text)
        except SipParseError as exc:
            raise TargetError(f"bad SIP URI {text!r}: {exc.reason}") from None
    else:
        if any(ch.isspace() for ch in text):
            raise TargetError(f"bad address {target!r}: spaces are not allowed")
        if "@" not in text:
            if not default_domain:
                raise TargetError(f"{text!r} needs a host: dial user@host, or configure an "
                                  f"account whose domain completes it")
            text = f"{text}@{default_domain}"
        try:
            uri = parse_uri("sip:" + text)
        except SipParseError as exc:
            raise TargetError(f"bad address {target!r}: {exc.reason}") from None
    if uri.scheme == "tel" and not default_domain:
        raise TargetError(f"{text!r}: a tel: URI needs an account to route it (configure "
                          f"[[accounts]], or dial sip:user@host)")
    if uri.scheme != "tel" and not uri.host:
        raise TargetError(f"bad address {target!r}: no host")
    transport = uri.params.get("transport")
    if transport is not None and transport.lower() not in TRANSPORTS:
        raise TargetError(f"bad address {target!r}: transport {transport!r} is not "
                          f"supported (use {', '.join(TRANSPORTS)})")
    return uri
