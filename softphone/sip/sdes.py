"""SDES (RFC 4568): the ``a=crypto`` attribute, fresh keys, choosing a suite, masking.

Pure: text in, dataclasses out. Which suites the SRTP library can run is the media
layer's knowledge; it comes in as a tuple of names. Keys never print: `Crypto` and
`SrtpKeys` keep them out of ``repr()``, errors never quote a key parameter, and `mask`
blanks them in anything meant for people (text traces, the TUI's trace).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SUITES", "Crypto", "CryptoError", "SrtpKeys", "parse_crypto", "new_crypto",
           "offer_cryptos", "choose", "refusal", "keys_for_answer", "mask"]

# suite -> bytes of master key + master salt (RFC 4568 §6.2, RFC 7714 §12)
SUITES: Final[dict[str, int]] = {
    "AEAD_AES_128_GCM": 28,
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
}
# session parameters (RFC 4568 §6.3) that weaken the protection: never accepted
_WEAKENING: Final = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP")
_HARMLESS: Final = ("WSH", "FEC_ORDER")
_TAG: Final = re.compile(r"[0-9]{1,9}\Z")
_SUITE: Final = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


class CryptoError(ValueError):
    """An ``a=crypto`` line we cannot read. The message never quotes key material."""


@dataclass
class Crypto:
    """One ``a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|mki:len] [params]``."""

    tag: int
    suite: str
    key: bytes = field(repr=False)  # master key || master salt
    lifetime: str | None = None
    mki: str | None = None
    params: tuple[str, ...] = ()

    def __str__(self) -> str:
        inline = "inline:" + base64.b64encode(self.key).decode()
        if self.lifetime:
            inline += f"|{self.lifetime}"
        if self.mki:
            inline += f"|{self.mki}"
        return " ".join([str(self.tag), self.suite, inline, *self.params])


@dataclass(frozen=True)
class SrtpKeys:
    """What the media layer needs: the suite, the key we protect with and the key the far
    end protects with (both master key || salt)."""

    suite: str
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)


def parse_crypto(value: str) -> Crypto:
    """Parse the value of an ``a=crypto`` attribute (raises CryptoError)."""
    parts = value.split()
    if len(parts) < 3:
        raise CryptoError("a=crypto needs '<tag> <suite> inline:<key>'")
    tag, suite, keys, *params = parts
    if not _TAG.match(tag):
        raise CryptoError("a=crypto tag must be a number")
    if not _SUITE.match(suite):
        raise CryptoError("a=crypto suite is not a name")
    # several keys (';'-separated) come only with MKIs, which we do not do: the first
    # decides whether the line is usable
    first = keys.split(";", 1)[0]
    method, colon, info = first.partition(":")
    if not colon or method.lower() != "inline":
        raise CryptoError("a=crypto key method must be inline")
    key_text, *extra = info.split("|")
    try:
        key = base64.b64decode(key_text + "=" * (-len(key_text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"a=crypto {suite}: the key is not base64") from None
    lifetime = mki = None
    for item in extra[:2]:
        if ":" in item:
            mki = item
        else:
            lifetime = item
    return Crypto(int(tag), suite, key, lifetime, mki, tuple(params))


def new_crypto(tag: int, suite: str) -> Crypto:
    """A crypto line with a fresh random key for ``suite``."""
    return Crypto(tag, suite, secrets.token_bytes(SUITES[suite]))


def offer_cryptos(suites: tuple[str, ...]) -> list[Crypto]:
    """Our offer: one line per suite (tags 1, 2, …), each with its own fresh key."""
    return [new_crypto(tag, suite) for tag, suite in enumerate(suites, 1)]


def _unusable(crypto: Crypto, suites: tuple[str, ...]) -> str | None:
    """Why we cannot use ``crypto`` (None: we can)."""
    if crypto.suite not in suites:
        return f"suite {crypto.suite} is not one we run"
    if len(crypto.key) != SUITES[crypto.suite]:
        return f"{crypto.suite} key has {len(crypto.key)} bytes, not {SUITES[crypto.suite]}"
    if crypto.mki:
        return f"{crypto.suite} with an MKI is not supported"
    for param in crypto.params:
        name, _, value = param.partition("=")
        if param.startswith("-") or name in _HARMLESS or (name == "KDR" and value == "0"):
            continue
        if name in _WEAKENING:
            return f"{crypto.suite} with {name} would weaken the protection"
        return f"{crypto.suite} with session parameter {name} is not supported"
    return None


def choose(offered: list[Crypto], suites: tuple[str, ...]) -> Crypto | None:
    """The first offered line (the offerer's preference) we can use."""
    return next((c for c in offered if _unusable(c, suites) is None), None)


def refusal(offered: list[Crypto], suites: tuple[str, ...]) -> str:
    """Why no offered line is usable, for a 488's Warning and the user."""
    if not offered:
        return "the offer has no a=crypto (SDES keys)"
    reasons = "; ".join(dict.fromkeys(_unusable(c, suites) or "" for c in offered))
    return f"no SRTP suite in common ({reasons}); we run {', '.join(suites) or 'none'}"


def keys_for_answer(offered: Crypto) -> tuple[Crypto, SrtpKeys]:
    """Our answer line to the chosen offered line (same tag and suite, our own fresh key)
    and the keys both ways."""
    ours = new_crypto(offered.tag, offered.suite)
    return ours, SrtpKeys(offered.suite, ours.key, offered.key)


_HINT: Final = re.compile(rb"(?i)a=crypto:")
_CRYPTO_LINE: Final = re.compile(rb"^(a=crypto:[^\r\n]*)", re.M | re.I)
_INLINE: Final = re.compile(rb"(inline:)([^|;\s]+)", re.I)


def _blank(match: re.Match) -> bytes:
    return match[1] + b"*" * len(match[2])


def mask(data: bytes) -> bytes:
    """``data`` with every a=crypto key blanked (same length: Content-Length still holds)."""
    if not _HINT.search(data):
        return data
    return _CRYPTO_LINE.sub(lambda m: _INLINE.sub(_blank, m[1]), data)
