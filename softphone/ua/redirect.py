"""Following 3xx redirects (RFC 3261 §8.1.3.4): the policy, per call.

The INVITE session stops at a 3xx (or at a failure after a redirect) and asks where to
go next; this answers from the redirect's Contacts, highest q-value first, then the
targets of earlier redirects still untried (a target set, as pjsip keeps one). Each 3xx
followed counts against ``[calls] max_redirects``; a URI is never tried twice (a
redirect that points back, or two that point at each other, end the search).
:func:`on_redirected` applies it to a call: the next target is resolved, then the
session sends its INVITE there (or gives up with the status).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..sip.uri import SipUri
from . import events as ev

if TYPE_CHECKING:
    from ..sip.events import Redirected
    from .call import Call

__all__ = ["RedirectPolicy", "on_redirected"]

log = logging.getLogger(__name__)


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


def on_redirected(call: "Call", event: "Redirected") -> None:
    """Where next after a 3xx (or a failed redirect target): the call's policy says."""
    session = call.session
    if call.redirects is None:
        first = session.invite.request_uri if session.invite is not None else None
        call.redirects = RedirectPolicy(call.agent.config.calls.max_redirects,
                                        first if isinstance(first, SipUri) else SipUri())
    uri = call.redirects.next_target(event)
    if uri is None or call.ended:
        call._run(session.give_up(call.agent.stack.now(), event.status, event.reason))
        return
    call._publish(ev.Redirected(call.call_id, event.status, str(uri),
                                [str(c.uri) for c in event.contacts]))
    call._spawn(_retarget(call, uri, event))


async def _retarget(call: "Call", uri: SipUri, event: "Redirected") -> None:
    stack = call.agent.stack
    account = call.account
    hop = account.route(uri)[0] if account is not None else uri
    try:
        await stack.resolve(hop, account.transport if account else None)
    except OSError as exc:
        log.info("call %s: redirect target %s unreachable: %s", call.call_id, uri, exc)
        call._run(call.session.give_up(stack.now(), event.status, event.reason))
        return
    if call.session.awaiting_target:
        call._run(call.session.retarget(stack.now(), uri, hop))
