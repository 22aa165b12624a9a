"""One Authenticator for every 401/407 retry: REGISTER, INVITE, re-INVITE, BYE, SUBSCRIBE …

An account has one Authenticator (its credentials and realm policy). Each logical request
starts a *chain* (a ``DigestClient``): the request and its retries. A second challenge for
a realm the chain already answered means the credentials were wrong, so a chain never
loops; a new request (a BYE after the INVITE) starts a fresh chain. The registration keeps
its chain across refreshes for preemptive credentials.

Failures carry a sentence a user can act on, never the password.
"""

from __future__ import annotations

from .auth import AuthenticationFailed, DigestClient, DigestError, parse_challenges
from .message import Request, Response

__all__ = ["Authenticator", "AuthFailure"]

_CHALLENGE_HEADER = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}


class AuthFailure(Exception):
    """A 401/407 we cannot (or must not) answer. ``str()`` says why in plain words."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Authenticator:
    def __init__(self, account: str, username: str | None, password: str | None, *,
                 realm: str | None = None) -> None:
        self.account = account
        self.username = username or ""
        self._password = password
        self.realm = realm  # answer only this realm (config: auth_realm)

    def __repr__(self) -> str:
        return f"Authenticator(account={self.account!r}, username={self.username!r})"

    @property
    def has_password(self) -> bool:
        return bool(self._password)

    def new_chain(self) -> DigestClient | None:
        if not self._password:
            return None
        try:
            return DigestClient(self.username, self._password)
        except DigestError:
            return None

    def retry(self, request: Request, response: Response, chain: DigestClient | None, *,
              cseq: int) -> Request:
        """A new request answering ``response``'s challenge: ``request`` with CSeq
        ``cseq``, its credentials replaced, no Via. Raises AuthFailure."""
        status = response.status
        header = _CHALLENGE_HEADER.get(status)
        if header is None:
            raise AuthFailure(status, f"{status} is not a challenge")
        values = response.headers.get_all(header)
        realms = _realms(values)
        where = f" for realm {realms[0]!r}" if realms else ""
        if chain is None:
            raise AuthFailure(status, f"the server asked for credentials{where} but account "
                                      f"{self.account!r} has no password")
        if self.realm is not None and realms and self.realm not in realms:
            raise AuthFailure(status, f"the server challenged realm {realms[0]!r}, but account "
                                      f"{self.account!r} answers only realm {self.realm!r} "
                                      f"(auth_realm)")
        try:
            credentials = chain.retry_headers(status, values, request.method, request.uri,
                                              request.body)
        except AuthenticationFailed as exc:
            if "credentials rejected" in exc.reason:
                realm = f" for realm {exc.realm!r}" if exc.realm else where
                raise AuthFailure(status, f"the server rejected our credentials{realm} (check "
                                          f"the password and auth user "
                                          f"{self.username!r})") from None
            raise AuthFailure(status, f"cannot answer the challenge: {exc.reason}") from None
        except DigestError as exc:
            raise AuthFailure(status, f"cannot answer the challenge: {exc}") from None
        return with_credentials(request, credentials, cseq=cseq)

    @staticmethod
    def preauthorize(request: Request, chain: DigestClient | None) -> Request:
        """``request`` with the chain's cached credentials (nc+1), or itself if none."""
        if chain is None:
            return request
        credentials = chain.authorize(request.method, request.uri, request.body)
        return with_credentials(request, credentials) if credentials else request


def with_credentials(request: Request, credentials: list[tuple[str, str]], *,
                     cseq: int | None = None) -> Request:
    """A copy of ``request`` with its Authorization/Proxy-Authorization replaced (and,
    given ``cseq``, a new CSeq number), without Via."""
    headers = request.headers.copy()
    for name in ("Via", "Authorization", "Proxy-Authorization"):
        headers.remove(name)
    if cseq is not None:
        headers.set("CSeq", f"{cseq} {request.method}")
    for name, value in credentials:
        headers.add(name, value)
    return Request(request.method, request.uri, headers, request.body)


def _realms(values: list[str]) -> list[str]:
    realms: list[str] = []
    for value in values:
        try:
            for challenge in parse_challenges(value):
                if challenge.realm not in realms:
                    realms.append(challenge.realm)
        except DigestError:
            continue
    return realms
