"""REGISTER with digest auth, refresh before expiry, unregister on exit (RFC 3261 §10).

States: ``registering`` → ``registered`` (refreshing before the granted expiry) or
``failed`` (with the server's status and reason, retried after a back-off when the UA runs
on). ``stop()`` sends Expires: 0 and waits, bounded, for the answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .sip.auth import AuthenticationFailed, DigestClient, DigestError
from .sip.message import Headers, Request, Response
from .sip.uri import parse_uri
from .transport import Peer
from .ua import ALLOW

if TYPE_CHECKING:
    from .config import Account
    from .ua import UserAgent

__all__ = ["Registration"]

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = (5.0, 15.0, 30.0, 60.0, 120.0)


class Registration:
    def __init__(self, ua: "UserAgent", account: "Account") -> None:
        from .ua import new_tag

        self.ua = ua
        self.account = account
        self.state = "unregistered"
        self.status: int | None = None
        self.reason: str | None = None
        self.expires = account.expires
        self.granted: int | None = None
        self.registered_until: float | None = None  # loop time
        self.call_id = f"{new_tag()}{new_tag()}@softphone"
        self.local_tag = new_tag()
        self.cseq = 0
        self.auth = DigestClient(account.username, account.secret() or "")
        self._refresh: asyncio.TimerHandle | None = None
        self._failures = 0
        self._done: asyncio.Future | None = None
        self._peer: Peer | None = None
        self._stopping = False
        self.retry_after: int | None = None  # from the last 503, if any

    # -- commands -----------------------------------------------------------------------------
    def start(self) -> None:
        """(Re-)register now."""
        self._stopping = False
        if self._done is None:
            self._done = self.ua.loop.create_future()
        self.ua.loop.create_task(self._send(self.expires, fresh_auth=False))

    async def wait(self, timeout: float) -> bool:
        """Wait for the outcome of the current attempt; True when registered."""
        if self._done is None:
            return self.state == "registered"
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except asyncio.TimeoutError:
            return False
        return self.state == "registered"

    async def wait_next(self, timeout: float) -> bool:
        """Wait for the outcome of the next attempt (e.g. the retry after a 503)."""
        if self._done is None:
            self._done = self.ua.loop.create_future()
        return await self.wait(timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Unregister (Expires: 0) when registered; bounded by ``timeout``."""
        self._stopping = True
        if self._refresh:
            self._refresh.cancel()
            self._refresh = None
        if self.state not in ("registered", "registering"):
            return
        self._done = self.ua.loop.create_future()
        await self._send(0, fresh_auth=False)
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except asyncio.TimeoutError:
            log.warning("unregister got no answer within %.1f s", timeout)

    # -- protocol -----------------------------------------------------------------------------
    async def _send(self, expires: int, *, fresh_auth: bool,
                    auth_headers: list[tuple[str, str]] | None = None) -> None:
        acc = self.account
        registrar = parse_uri(acc.registrar)
        if self._peer is None:
            try:
                self._peer = await self.ua.resolve(registrar, acc.transport)
            except OSError as exc:
                self._fail(None, f"cannot reach registrar: {exc}", expires)
                return
            self.ua.trust(self._peer)
        peer = self._peer
        next_hop_routes: list[str] = []
        if acc.outbound_proxy:
            proxy = parse_uri(acc.outbound_proxy)
            try:
                peer = await self.ua.resolve(proxy, acc.transport)
            except OSError as exc:
                self._fail(None, f"cannot reach outbound proxy: {exc}", expires)
                return
            self.ua.trust(peer)
            if "lr" in proxy.params:
                next_hop_routes = [f"<{proxy}>"]
        if expires and self.state not in ("registered", "registering"):
            self.state = "registering"
            self.ua.emit("registering", account=acc.name)
        self.cseq += 1
        aor = acc.aor_uri.with_(params={})
        headers = Headers()
        for route in next_hop_routes:
            headers.add("Route", route)
        headers.add("From", f"<{aor}>;tag={self.local_tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"{self.ua.contact(peer)};expires={expires}")
        headers.add("Expires", str(expires))
        headers.add("Allow", ALLOW)
        ruri = str(registrar.with_(params={k: v for k, v in registrar.params.items()
                                          if k == "transport"}))
        request = Request("REGISTER", ruri, headers)
        self.ua.common_headers(request)
        if auth_headers:
            for name, value in auth_headers:
                request.headers.add(name, value)
        elif not fresh_auth:
            for name, value in self.auth.authorize("REGISTER", ruri):
                request.headers.add(name, value)
        self.ua.stamp_via(request, peer)
        self.ua.send_request(
            request, peer,
            on_response=lambda resp: self._on_response(request, resp, expires),
            on_timeout=lambda error: self._fail(None, error, expires) if error
            else self._fail(408, "Request Timeout", expires))

    def _on_response(self, request: Request, response: Response, expires: int) -> None:
        status = response.status
        if status < 200:
            return
        if status in (401, 407):
            name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            try:
                headers = self.auth.retry_headers(status, response.headers.get_all(name),
                                                  "REGISTER", request.uri)
            except (AuthenticationFailed, DigestError):
                self._fail(status, response.reason, expires)
                return
            self.ua.loop.create_task(self._send(expires, fresh_auth=True, auth_headers=headers))
            return
        if status == 423 and expires:
            min_expires = response.header_int("Min-Expires") or 0
            if min_expires > expires:
                self.expires = min_expires
                self.ua.loop.create_task(self._send(min_expires, fresh_auth=False))
                return
        if 200 <= status < 300:
            self.auth.accepted()
            if expires == 0:
                self._set_state("unregistered")
                self.ua.emit("unregistered", account=self.account.name)
                self._resolve()
                return
            granted = self._granted_expires(response, expires)
            self.granted = granted
            self._failures = 0
            self.status, self.reason = status, response.reason
            self.registered_until = self.ua.now() + granted
            self._set_state("registered")
            log.info("registered %s for %d s", self.account.name, granted)
            self.ua.emit("registered", account=self.account.name, expires=granted)
            self._schedule(self._refresh_delay(granted))
            self._resolve()
            return
        if status == 503:
            retry = response.header_int("Retry-After")
            self._fail(status, response.reason, expires, retry_after=retry)
            return
        self._fail(status, response.reason, expires)

    def _granted_expires(self, response: Response, asked: int) -> int:
        """The expiry the registrar granted to OUR contact (§10.2.4)."""
        ours = self.ua.contact_uri(self._peer) if self._peer else None
        for contact in response.contacts:
            if ours is not None and contact.uri.host == ours.host and \
                    contact.uri.port == ours.port and contact.uri.user == ours.user:
                value = contact.params.get("expires")
                if value and value.isdigit():
                    return int(value)
        value = response.header_int("Expires")
        return value if value is not None else asked

    @staticmethod
    def _refresh_delay(granted: int) -> float:
        """Refresh well before expiry: halfway for short leases, a minute early for long."""
        if granted <= 120:
            return max(1.0, granted / 2)
        return granted - 60

    def _schedule(self, delay: float) -> None:
        if self._refresh:
            self._refresh.cancel()
        if self._stopping:
            return
        self._refresh = self.ua.loop.call_later(delay, self.start)

    def _fail(self, status: int | None, reason: str, expires: int,
              retry_after: int | None = None) -> None:
        if expires == 0:  # the unregister failed: nothing more to do
            self._set_state("unregistered")
            self._resolve()
            return
        self.status, self.reason = status, reason
        self.retry_after = retry_after
        log.info("registration of %s failed: %s %s", self.account.name, status or "", reason)
        self._set_state("failed")
        self._peer = None  # resolve again next time (the registrar may have moved)
        self.ua.emit("registration_failed", account=self.account.name, status=status,
                     reason=reason)
        delay = retry_after or RETRY_AFTER_FAILURE[min(self._failures,
                                                       len(RETRY_AFTER_FAILURE) - 1)]
        self._failures += 1
        self.auth = DigestClient(self.account.username, self.account.secret() or "")
        self._schedule(float(delay))
        self._resolve()

    def _set_state(self, state: str) -> None:
        self.state = state

    def _resolve(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self.state)
        self._done = None

    def seconds_left(self) -> float | None:
        if self.state != "registered" or self.registered_until is None:
            return None
        return max(0.0, self.registered_until - self.ua.now())
