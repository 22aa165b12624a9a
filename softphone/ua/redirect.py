"""Following 3xx redirects (RFC 3261 §8.1.3.4): the policy, per call.

The INVITE session stops at a 3xx (or at a failure after a redirect) and asks where to
go next; this answers from the redirect's Contacts, highest q-value first, then the
targets of earlier redirects still untried (a target set, as pjsip keeps one). Each 3xx
followed counts against ``[calls] max_redirects``; a URI is never tried twice (a
redirect that points back, or two that point at each other, end the search).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.uri import SipUri

if TYPE_CHECKING:
    from ..sip.events import Redirected

__all__ = ["RedirectPolicy"]


def _key(uri: SipUri) -> tuple:
    return (uri.scheme, uri.user, uri.host.lower(), uri.port or uri.default_port)


class RedirectPolicy:
    def __init__(self, max_redirects: int, first: SipUri) -> None:
        self.left = max_redirects
        self.tried = {_key(first)}
        self.queue: list[SipUri] = []
        self.followed = 0

    def next_target(self, event: "Redirected") -> SipUri | None:
        """Where to send the INVITE next, or None: the call ends with ``event``'s status."""
        if 300 <= event.status < 400:
            if self.left <= 0:
                return None
            self.left -= 1
            self.followed += 1
            fresh: list[SipUri] = []
            for contact in event.contacts:
                uri = contact.uri
                if isinstance(uri, SipUri) and _key(uri) not in self.tried and \
                        all(_key(uri) != _key(u) for u in fresh + self.queue):
                    fresh.append(uri.with_(headers={}))
            self.queue = fresh + self.queue
        while self.queue:
            uri = self.queue.pop(0)
            if _key(uri) not in self.tried:
                self.tried.add(_key(uri))
                return uri
        return None
