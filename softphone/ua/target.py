"""What a user typed to dial → a Request-URI (before anything starts, with a clear error)."""

from __future__ import annotations

from ..sip.errors import SipParseError
from ..sip.uri import SipUri, parse_name_addr, parse_uri

__all__ = ["parse_target", "TargetError", "ECHO_TARGET"]

ECHO_TARGET = "echo"


class TargetError(ValueError):
    """Not something we can dial; the message says why."""


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
    if uri.scheme != "tel" and not uri.host:
        raise TargetError(f"bad address {target!r}: no host")
    return uri
