"""SIP digest authentication, client side (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Sans-IO: feed it the challenge header values of a 401/407 and the request being
retried; it returns the header to add. No I/O and no clock; the only randomness is the
cnonce, which comes from an injectable factory.

`DigestClient` is the policy for one request chain (a registration, or one INVITE and
its in-dialog requests). It remembers the last challenge per (header kind, realm) so a
later request can be authorised preemptively, and it refuses to answer the same realm
twice without success in between (wrong password: fail, never loop).

Not implemented: ``userhash=true`` is ignored (the plain username is sent, which RFC 7616
allows), ``charset`` is ignored (everything is UTF-8), ``domain`` is parsed but unused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Callable, Iterable

__all__ = [
    "AuthenticationFailed",
    "Challenge",
    "DigestClient",
    "DigestError",
    "SUPPORTED_ALGORITHMS",
    "authorization_value",
    "digest_response",
    "parse_challenges",
]


class DigestError(ValueError):
    """A challenge could not be parsed or a response could not be computed."""


class AuthenticationFailed(Exception):
    """The server keeps rejecting us, or offered nothing we can answer.

    Carries the response status (401 or 407) and, when known, the realm. The text
    never includes the password.
    """

    def __init__(self, status: int, reason: str, realm: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.realm = realm
        where = f" for realm {realm!r}" if realm is not None else ""
        super().__init__(f"{status} authentication failed{where}: {reason}")


# --- hash algorithms ----------------------------------------------------------------

_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
# Higher is stronger. RFC 8760 §2.4 lets a UAC take the topmost supported challenge
# "unless a local policy dictates otherwise"; our policy: the strongest, ties to the topmost.
_STRENGTH = {"MD5": 1, "SHA-256": 2, "SHA-512-256": 3}


def _hash_available(hashlib_name: str) -> bool:
    try:
        hashlib.new(hashlib_name, b"", usedforsecurity=False)
    except (ValueError, TypeError):
        return False
    return True


# SHA-512/256 comes from OpenSSL; a build without it simply cannot offer it.
_AVAILABLE = {name for name, hl in _HASHLIB_NAMES.items() if _hash_available(hl)}

SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    variant
    for base in ("MD5", "SHA-256", "SHA-512-256")
    if base in _AVAILABLE
    for variant in (base, base + "-sess")
)


def _split_algorithm(algorithm: str | None) -> tuple[str, bool]:
    """'sha-256-SESS' -> ('SHA-256', True); None -> ('MD5', False)."""
    name = algorithm or "MD5"
    if not name.isascii():
        return name, False  # unknown; never matches a supported name
    name = name.upper()
    session = name.endswith("-SESS")
    if session:
        name = name[: -len("-SESS")]
    return name, session


def _hasher(base: str) -> Callable[[str | bytes], str]:
    hashlib_name = _HASHLIB_NAMES.get(base)
    if hashlib_name is None:
        raise DigestError(f"unsupported digest algorithm {base!r}")
    if base not in _AVAILABLE:
        raise DigestError(f"digest algorithm {base} is not available in this OpenSSL build")

    def digest(data: str | bytes) -> str:
        raw = _utf8(data) if isinstance(data, str) else data
        # usedforsecurity=False keeps MD5 usable on FIPS-mode OpenSSL builds.
        return hashlib.new(hashlib_name, raw, usedforsecurity=False).hexdigest()

    return digest


def _utf8(text: str) -> bytes:
    """UTF-8 bytes; surrogateescape gives back the raw bytes of a leniently decoded header."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise DigestError(f"unencodable character at offset {exc.start}") from None


# --- challenge parsing ---------------------------------------------------------------

# RFC 3261 token characters plus the extra RFC 7230 tchar ones.
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~#$&^|]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_FOLD = re.compile(r"\r?\n[ \t]+|\r[ \t]+")
_WS = " \t"
# A lenient unquoted value: anything up to whitespace or a comma (some servers send
# unquoted nonces with '/' or '=').
_BARE_VALUE = re.compile(r'[^\s,"]+')


@dataclass(frozen=True)
class Challenge:
    """One ``Digest`` challenge from a WWW-Authenticate or Proxy-Authenticate value."""

    realm: str
    nonce: str
    algorithm: str | None = None  # as the server spelled it; None when absent (= MD5)
    qop: tuple[str, ...] = ()  # lower-cased options; empty = RFC 2069 style
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False

    @property
    def algorithm_base(self) -> str:
        """The hash family in upper case: 'MD5', 'SHA-256', 'SHA-512-256', or unknown."""
        return _split_algorithm(self.algorithm)[0]

    @property
    def session(self) -> bool:
        return _split_algorithm(self.algorithm)[1]

    @property
    def strength(self) -> int:
        return _STRENGTH.get(self.algorithm_base, 0)

    @property
    def supported(self) -> bool:
        if self.algorithm_base not in _AVAILABLE:
            return False
        return not self.qop or self.chosen_qop is not None

    @property
    def chosen_qop(self) -> str | None:
        """'auth' when offered, else 'auth-int', else None (also when qop is absent)."""
        for option in ("auth", "auth-int"):
            if option in self.qop:
                return option
        return None


class _Scanner:
    """Cursor over one header value, after line folds have been unfolded."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos - start

    def skip_list_separators(self) -> None:
        while self.peek() in (",", " ", "\t") and not self.at_end():
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if found is None:
            return None
        self.pos = found.end()
        return found.group()

    def quoted_string(self) -> str:
        """Read a quoted-string starting at the opening quote; undo backslash escapes."""
        start = self.pos
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        raise DigestError(f"unterminated quoted string at offset {start}")

    def looks_like_param(self) -> bool:
        """True when a ``token BWS '='`` follows (a parameter), not a new scheme."""
        found = _TOKEN.match(self.text, self.pos)
        if found is None:
            return False
        rest = found.end()
        while rest < len(self.text) and self.text[rest] in _WS:
            rest += 1
        return rest < len(self.text) and self.text[rest] == "="

    def looks_like_token68(self) -> bool:
        """True when the rest of this list element is one token68 (``abc/+de==``)."""
        found = _TOKEN68.match(self.text, self.pos)
        if found is None:
            return False
        rest = found.end()
        while rest < len(self.text) and self.text[rest] in _WS:
            rest += 1
        return rest == len(self.text) or self.text[rest] == ","


def _unfold(value: str) -> str:
    text = _FOLD.sub(" ", value)
    if "\r" in text or "\n" in text:
        raise DigestError("bare line break in authentication header value")
    if "\x00" in text:
        raise DigestError("NUL character in authentication header value")
    _utf8(text)  # lone surrogates cannot be hashed: refuse them here
    return text


def _parse_all(value: str) -> list[tuple[str, dict[str, str] | None]]:
    """Split one header value into (scheme, params) pairs; params None for token68."""
    scanner = _Scanner(_unfold(value))
    challenges: list[tuple[str, dict[str, str] | None]] = []
    scanner.skip_list_separators()
    while not scanner.at_end():
        scheme = scanner.match(_TOKEN)
        if scheme is None:
            raise DigestError(
                f"expected an authentication scheme at offset {scanner.pos}, "
                f"got {scanner.peek()!r}"
            )
        if not scanner.at_end() and scanner.peek() not in _WS + ",":
            if scanner.peek() == "=":
                raise DigestError(f"parameter {scheme!r} outside any challenge")
            raise DigestError(f"unexpected {scanner.peek()!r} after scheme {scheme!r}")
        scanner.skip_ws()
        if scanner.at_end() or scanner.peek() == ",":
            challenges.append((scheme, {}))
        elif scanner.looks_like_token68():
            scanner.match(_TOKEN68)
            challenges.append((scheme, None))
        elif scanner.looks_like_param():
            challenges.append((scheme, _parse_params(scanner, scheme)))
            continue  # _parse_params stops at the next scheme or the end
        else:
            raise DigestError(
                f"unexpected {scanner.peek()!r} in {scheme} challenge at offset {scanner.pos}"
            )
        scanner.skip_ws()
        if not scanner.at_end() and scanner.peek() != ",":
            raise DigestError(f"unexpected {scanner.peek()!r} at offset {scanner.pos}")
        scanner.skip_list_separators()
    return challenges


def _parse_params(scanner: _Scanner, scheme: str) -> dict[str, str]:
    """Read ``name=value`` pairs until the next scheme or the end of the value."""
    params: dict[str, str] = {}
    while True:
        name = scanner.match(_TOKEN)
        assert name is not None  # the caller checked looks_like_param()
        scanner.skip_ws()
        scanner.pos += 1  # the '=' looks_like_param() saw
        scanner.skip_ws()
        if scanner.peek() == '"':
            value = scanner.quoted_string()
        else:
            bare = scanner.match(_BARE_VALUE)
            if bare is None:
                raise DigestError(f"missing value for parameter {name!r} in {scheme} challenge")
            value = bare
        key = name.lower()
        if key in params:
            raise DigestError(f"duplicate parameter {name!r} in {scheme} challenge")
        params[key] = value
        scanner.skip_ws()
        if scanner.at_end():
            return params
        if scanner.peek() != ",":
            raise DigestError(
                f"expected ',' after parameter {name!r} in {scheme} challenge, "
                f"got {scanner.peek()!r}"
            )
        scanner.skip_list_separators()
        if scanner.at_end() or not scanner.looks_like_param():
            return params


def _digest_challenge(params: dict[str, str]) -> Challenge:
    for required in ("realm", "nonce"):
        if required not in params:
            raise DigestError(f"Digest challenge has no {required}")
    if not params["nonce"]:
        raise DigestError("Digest challenge has an empty nonce")
    qop = tuple(
        option.strip().lower() for option in params.get("qop", "").split(",") if option.strip()
    )
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
        userhash=params.get("userhash", "").lower() == "true",
    )


def parse_challenges(value: str) -> list[Challenge]:
    """Digest challenges in one WWW-Authenticate / Proxy-Authenticate value.

    Other schemes (Basic, Bearer, ...) are skipped; unknown parameters are ignored.
    Raises DigestError, and nothing else, for malformed input.
    """
    if not isinstance(value, str):
        raise DigestError(f"header value must be str, not {type(value).__name__}")
    challenges = []
    for scheme, params in _parse_all(value):
        if scheme.lower() != "digest":
            continue
        if params is None:
            raise DigestError("Digest challenge carries a token68 instead of parameters")
        challenges.append(_digest_challenge(params))
    return challenges


# --- response computation -------------------------------------------------------------


def digest_response(
    challenge: Challenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    body: bytes = b"",
    nc: int = 1,
    cnonce: str = "",
) -> str:
    """The ``response`` hex value for one request (RFC 7616 §3.4.1, RFC 2069 without qop)."""
    base, session = _split_algorithm(challenge.algorithm)
    h = _hasher(base)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if session:
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    qop = challenge.chosen_qop
    if challenge.qop and qop is None:
        raise DigestError(f"no supported qop among {', '.join(challenge.qop)}")
    if qop == "auth-int":
        a2 = f"{method}:{uri}:{h(body)}"
    else:
        a2 = f"{method}:{uri}"
    ha2 = h(a2)
    if qop is None:
        return h(f"{ha1}:{challenge.nonce}:{ha2}")
    return h(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def _quote(value: str) -> str:
    if any(char in value for char in "\r\n\x00"):
        raise DigestError("line break or NUL in a value for the Authorization header")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization_value(
    challenge: Challenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    body: bytes = b"",
    nc: int = 1,
    cnonce: str = "",
) -> str:
    """The full ``Digest ...`` credentials for an Authorization/Proxy-Authorization header."""
    if not challenge.supported:
        raise DigestError(
            f"cannot answer challenge with algorithm {challenge.algorithm!r} "
            f"and qop {','.join(challenge.qop) or 'none'}"
        )
    if not 1 <= nc <= 0xFFFFFFFF:
        raise DigestError(f"nonce count {nc} out of range")
    qop = challenge.chosen_qop
    response = digest_response(
        challenge, username, password, method, uri, body=body, nc=nc, cnonce=cnonce
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f'response="{response}"',
    ]
    if challenge.algorithm is not None:
        parts.append(f"algorithm={challenge.algorithm}")  # a supported token: safe bare
    # -sess needs the cnonce for HA1 even in the (non-RFC 7616) no-qop case.
    if qop is not None or challenge.session:
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc:08x}")
    return "Digest " + ", ".join(parts)


# --- the per-chain policy ------------------------------------------------------------

_HEADER_FOR_STATUS = {401: "Authorization", 407: "Proxy-Authorization"}


def _default_cnonce() -> str:
    return secrets.token_hex(16)


@dataclass
class _RealmState:
    """What we know about one (header kind, realm) pair."""

    challenge: Challenge
    nc: int = 0  # last nonce count used with challenge.nonce
    answered: bool = False  # answered a challenge since the last accepted()
    stale_answers: int = 0  # consecutive stale=true re-answers since accepted()


class DigestClient:
    """Digest credentials and answer policy for one request chain.

    Use :meth:`respond` (or :meth:`retry_headers`) on each 401/407, :meth:`accepted` on
    any final response that is not a 401/407, and :meth:`authorize` for preemptive
    credentials on a later request of the same chain. State is kept per header kind
    (Authorization / Proxy-Authorization) and realm, so a proxy and a registrar can
    both challenge the same request.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce_factory: Callable[[], str] | None = None,
        max_stale_answers: int = 3,
        max_rounds: int = 6,
    ) -> None:
        if any(char in username for char in "\r\n\x00"):
            raise DigestError("username contains a line break or NUL")
        self.username = username
        self._password = password
        self._cnonce_factory = cnonce_factory or _default_cnonce
        self._max_stale_answers = max_stale_answers  # stale=true re-answers per realm
        self._max_rounds = max_rounds  # challenges answered between two accepted()
        self._states: dict[tuple[str, str], _RealmState] = {}
        self._rounds = 0

    def __repr__(self) -> str:
        realms = sorted({realm for _, realm in self._states})
        return f"DigestClient(username={self.username!r}, password=<hidden>, realms={realms!r})"

    __str__ = __repr__

    # -- answering challenges

    def respond(
        self, status: int, challenge_values: list[str], method: str, uri: str, body: bytes = b""
    ) -> tuple[str, str]:
        """(header name, value) answering a 401/407, for the first realm it challenges.

        'Authorization' for 401, 'Proxy-Authorization' for 407. Raises
        AuthenticationFailed (with the status) when nothing can be answered (no Digest
        challenge, unsupported algorithm/qop, malformed), when the same realm challenges
        again after we answered it and the challenge is not stale=true (wrong
        credentials), or when the retry budget is spent.
        """
        answers = self._answer(status, challenge_values, method, uri, body, all_realms=False)
        return answers[0][1]

    def retry_headers(
        self, status: int, challenge_values: list[str], method: str, uri: str, body: bytes = b""
    ) -> list[tuple[str, str]]:
        """Every credential header for the retried request.

        Answers each realm challenged in this response (a forking proxy may aggregate
        several) and re-authorises, with a fresh nc, every other (kind, realm) already
        known -- e.g. the Proxy-Authorization still needed when a 401 follows a 407.
        Replace all Authorization/Proxy-Authorization headers of the request with these.
        """
        answers = self._answer(status, challenge_values, method, uri, body, all_realms=True)
        fresh = {key for key, _ in answers}
        others = [
            self._credentials(key, method, uri, body) for key in self._states if key not in fresh
        ]
        return [header for _, header in answers] + others

    def authorize(self, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """Preemptive credentials for a later request in the chain (e.g. a REGISTER
        refresh), from the last challenge of each (kind, realm) with nc+1. Empty before
        any challenge was answered. A 401/407 to it must still go to respond()."""
        return [self._credentials(key, method, uri, body) for key in self._states]

    def accepted(self) -> None:
        """A final response other than 401/407 arrived: a later challenge (for instance
        after nonce expiry) may be answered once more."""
        self._rounds = 0
        for state in self._states.values():
            state.answered = False
            state.stale_answers = 0

    # -- internals

    def _answer(
        self,
        status: int,
        challenge_values: Iterable[str],
        method: str,
        uri: str,
        body: bytes,
        *,
        all_realms: bool,
    ) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        header = _HEADER_FOR_STATUS.get(status)
        if header is None:
            raise AuthenticationFailed(status, "not a 401 or 407 response")
        if isinstance(challenge_values, str):
            challenge_values = [challenge_values]
        by_realm = _strongest_by_realm(status, challenge_values)
        if self._rounds >= self._max_rounds:
            raise AuthenticationFailed(status, f"gave up after {self._rounds} challenges")
        realms = list(by_realm) if all_realms else list(by_realm)[:1]
        for realm in realms:  # check every realm before changing any state
            self._check_may_answer(status, header, by_realm[realm])
        self._rounds += 1
        answers = []
        for realm in realms:
            challenge = by_realm[realm]
            key = (header, realm)
            previous = self._states.get(key)
            stale_answers = previous.stale_answers if previous is not None else 0
            if previous is not None and previous.answered and challenge.stale:
                stale_answers += 1
            self._states[key] = _RealmState(
                challenge=challenge, answered=True, stale_answers=stale_answers
            )
            answers.append((key, self._credentials(key, method, uri, body)))
        return answers

    def _check_may_answer(self, status: int, header: str, challenge: Challenge) -> None:
        state = self._states.get((header, challenge.realm))
        if state is None or not state.answered:
            return
        if not challenge.stale:
            raise AuthenticationFailed(status, "credentials rejected", challenge.realm)
        if state.stale_answers >= self._max_stale_answers:
            raise AuthenticationFailed(
                status, f"nonce still stale after {state.stale_answers} retries", challenge.realm
            )

    def _credentials(
        self, key: tuple[str, str], method: str, uri: str, body: bytes
    ) -> tuple[str, str]:
        state = self._states[key]
        state.nc += 1
        value = authorization_value(
            state.challenge,
            self.username,
            self._password,
            method,
            uri,
            body=body,
            nc=state.nc,
            cnonce=self._cnonce_factory(),
        )
        return key[0], value


def _strongest_by_realm(status: int, values: Iterable[str]) -> dict[str, Challenge]:
    """Per realm (in order of first appearance), the strongest supported challenge."""
    offered: list[Challenge] = []
    errors: list[str] = []
    for value in values:
        try:
            offered.extend(parse_challenges(value))
        except DigestError as exc:
            errors.append(str(exc))
    best: dict[str, Challenge] = {}
    for challenge in offered:
        if not challenge.supported:
            continue
        current = best.get(challenge.realm)
        if current is None or challenge.strength > current.strength:
            best[challenge.realm] = challenge
    if not best:
        if errors:
            raise AuthenticationFailed(status, "malformed challenge: " + "; ".join(errors))
        if offered:
            algorithms = ", ".join(sorted({c.algorithm or "MD5" for c in offered}))
            raise AuthenticationFailed(status, f"no supported digest challenge ({algorithms})")
        raise AuthenticationFailed(status, "no Digest challenge offered")
    return best
