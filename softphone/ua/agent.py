"""The user agent: one stack, every account on it, the calls, and what to do with new
requests (the policy of an endpoint: busy, overload, merged requests, capabilities).

No ghost calls: while an account registers, a new out-of-dialog request is taken only
from its registrar or outbound proxy, or when it is addressed to the exact Contact we
registered; anyone else is a stranger (SIP scanners dial phones directly) and gets 403,
or nothing, or is let in, as ``[sip] stranger_policy`` says.

The Phone (``phone.py``) is the public face; this is the engine under it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from ..config import Account as AccountSettings, Config
from ..sip.caps import Capabilities
from ..sip.message import Request
from ..sip.uri import NameAddr, SipUri
from ..transport import Peer
from . import events as ev
from .account import Account
from .errors import CallError
from . import waiting
from .addressing import host_literal
from .stack import Stack, Tracer
from .target import TargetError, parse_target

if TYPE_CHECKING:  # calls load with the first one: `softphone register` never needs them
    from .call import Call
    from .conference import LocalConference

__all__ = ["UserAgent", "MAX_LIVE_CALLS", "MAX_ENDED_RECORDS"]

log = logging.getLogger(__name__)

MAX_LIVE_CALLS = 1024     # calls not yet ended: beyond this, new INVITEs get 503
MAX_ENDED_RECORDS = 4096  # ended calls kept (64·T1) to absorb retransmissions; oldest go first
_OUT_OF_DIALOG_ONLY_IN_DIALOG = ("BYE", "INFO", "NOTIFY", "PRACK", "UPDATE")
_KNOWN_UNSUPPORTED = ("REGISTER", "MESSAGE", "PUBLISH")

Devices = Callable[["Call"], tuple[Any, Any]]


def base_capabilities(config: Config | None = None) -> Capabilities:
    """What we advertise: the core methods, and each extension only when it is on."""
    from ..sip.prack import PrackExtension
    from ..sip.refer import ReferExtension
    from ..sip.session_timer import SessionTimer
    from ..sip.update import UpdateExtension

    caps = Capabilities()
    caps.add_method("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO")
    caps.add_accept("application/sdp")
    if config is None:
        return caps
    PrackExtension.advertise(caps, config.sip.reliable_provisional)
    UpdateExtension.advertise(caps)
    ReferExtension.advertise(caps)
    caps.add_option_tag("replaces")
    SessionTimer.advertise(caps, config.sip.session_timers)
    return caps


class UserAgent:
    def __init__(self, config: Config, *, listen: str | None = None,
                 accounts: list[AccountSettings] | None = None,
                 publish: Callable[[ev.Event], None] = lambda event: None,
                 tracer: Tracer | None = None, devices: Devices | None = None,
                 auto_answer: bool = False, answer_delay: float = 0.0,
                 user: str | None = None,
                 media_tap: Callable[[str, bytes, tuple, tuple], None] | None = None) -> None:
        self.config = config
        self.media_tap = media_tap  # every call's RTP/RTCP, for a capture
        self.publish = publish
        self.devices = devices
        self.auto_answer = auto_answer
        self.answer_delay = answer_delay
        self.caps = base_capabilities(config)
        self.stack = Stack(config, listen=listen, tracer=tracer, on_request=self._on_new_request,
                           caps=self.caps)
        self.accounts: dict[str, Account] = {
            a.name: Account(self.stack, a, publish) for a in (accounts or [])}
        self.calls: dict[str, Call] = {}
        self.conference: "LocalConference | None" = None
        self.dnd = config.calls.dnd
        self.dnd_status = config.calls.dnd_status
        self.local_tone: tuple[str | None, Any] = (None, None)  # alerts: ring or ringback
        self.call_count = 0
        self._live = 0
        self._ended: dict[Call, None] = {}  # an ordered set: the oldest first
        self._preload: asyncio.Task | None = None
        first = next(iter(self.accounts.values()), None)
        self.user = user or (first.user if first else None) or "softphone"

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def start(self, *, preload_media: bool = False) -> None:
        """Listen. ``preload_media``: load aiortc's RTP parts and PyAV (~18 MB, ~0.15 s in
        a worker thread, the loop stalls at most ~25 ms) now, in the background, for a
        phone whose first call is about to start; otherwise the first call's media loads
        them, so an idle phone never holds them."""
        if preload_media:
            self._preload = self.loop.create_task(self._preload_media())
        await self.stack.start()

    async def media_ready(self) -> None:
        """Wait for a started media preload (if any): a paced run of calls takes its
        start time after it, so the first call does not start late by the import."""
        if self._preload is not None:
            await asyncio.shield(self._preload)

    @staticmethod
    async def _preload_media() -> None:
        try:
            from ..media import rtp

            await rtp.preload()
        except Exception:  # the first call will import (and report) it again
            log.debug("media preload failed", exc_info=True)

    async def close(self, *, unregister: bool = True, timeout: float = 5.0) -> None:
        """Hang up every call, unregister every account, stop; bounded by ``timeout``."""
        if self.stack.closing:
            return
        self.stack.closing = True
        if self._preload is not None:
            self._preload.cancel()
        deadline = self.loop.time() + timeout
        waits = [call.hangup() for call in list(self.calls.values()) if not call.ended]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits],
                               timeout=max(0.1, deadline - self.loop.time()))
        if unregister:
            jobs = [acc.unregister(max(0.1, deadline - self.loop.time()))
                    for acc in self.accounts.values()]
            if jobs:
                await asyncio.wait([asyncio.ensure_future(j) for j in jobs],
                                   timeout=max(0.1, deadline - self.loop.time()))
        await self.stack.close(deadline)
        tone = self.local_tone[1]
        if tone is not None:  # a call that did not end in time may still ring
            self.local_tone = (None, None)
            tone.close()

    # -- addressing -------------------------------------------------------------------------
    def local_identity(self, peer: Peer | None = None) -> NameAddr:
        """Our From address when no account is used: user@our-address."""
        host = self.stack.addresses.local_ip_for(peer.host) if peer else "127.0.0.1"
        return NameAddr(SipUri(user=self.user, host=host_literal(host),
                               port=self.stack.transport.port))

    def account(self, name: str | None) -> Account | None:
        """The named account; None → the first (None when there are none)."""
        if name is None:
            return next(iter(self.accounts.values()), None)
        found = self.accounts.get(name)
        if found is None:
            have = ", ".join(repr(n) for n in self.accounts) or "none configured"
            raise CallError(f"no account named {name!r} (accounts: {have})")
        return found

    def account_for(self, request: Request) -> Account | None:
        """The account an incoming request is for: by Request-URI, then To; else the first."""
        best, score = None, 0
        for account in self.accounts.values():
            s = account.match(request)
            if s > score:
                best, score = account, s
        return best or next(iter(self.accounts.values()), None)

    # -- calls ------------------------------------------------------------------------------
    async def dial(self, target: str | SipUri, *, account: str | None = None,
                   timeout: float | None = None,
                   extra_headers: list[tuple[str, str]] | None = None) -> Call:
        from .call import Call

        acc = self.account(account)
        if isinstance(target, SipUri):
            ruri = target
        else:
            try:
                ruri = parse_target(target, acc.aor.hostport if acc else None)
            except TargetError as exc:
                raise CallError(str(exc)) from None
        return await Call.outgoing(self, ruri, account=acc, timeout=timeout,
                                   extra_headers=extra_headers)

    def media_devices(self, call: Call) -> tuple[Any, Any]:
        """(source, sink) for a call: from the factory the phone gave, else silence."""
        if self.devices is not None:
            return self.devices(call)
        from ..media.devices import NullSink, NullSource

        return NullSource(), NullSink()

    def live_calls(self) -> int:
        return self._live

    def add_call(self, call: Call) -> None:
        self.calls[call.call_id] = call
        self._live += 1

    def discard_call(self, call: Call) -> None:
        """A call that never got going (no RTP port): forget it at once."""
        if self.calls.get(call.call_id) is call and not call.ended:
            del self.calls[call.call_id]
            self._live -= 1
            self.stack.detach(call.session)

    def call_ended(self, call: Call) -> None:
        """Kept until its session stops absorbing retransmissions (64·T1), in a bounded
        table that never refuses a new call."""
        self._live -= 1
        self._ended[call] = None
        while len(self._ended) > MAX_ENDED_RECORDS:
            self.release_call(next(iter(self._ended)))

    def release_call(self, call: Call) -> None:
        """Forget an ended call: its session no longer absorbs retransmissions."""
        self._ended.pop(call, None)
        self.stack.detach(call.session)
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]

    def set_dnd(self, enabled: bool, status: int | None = None) -> None:
        self.dnd = enabled
        if status is not None:
            self.dnd_status = status
        self.publish(ev.Dnd(self.dnd, self.dnd_status))

    def _on_replacing_invite(self, request: Request, peer: Peer) -> None:
        """An INVITE with Replaces (RFC 3891 §3): it takes over one of our dialogs, or is
        refused by the RFC's rules (481, 486, 603; 400 when it names none or several)."""
        from ..sip.errors import SipParseError
        from ..sip.replaces import Replaces, verdict
        from .call import Call

        values = request.headers.get_all("Replaces")
        try:
            if len(values) != 1:
                raise SipParseError("one Replaces header needed")
            replaces = Replaces.parse(values[0])
        except SipParseError as exc:
            self.stack.answer(request, 400, f"Bad Replaces: {exc.reason}"[:80])
            return
        old = self.calls.get(replaces.call_id)
        refused = verdict(replaces, old.session if old is not None else None)
        if refused is not None:
            self.stack.answer(request, *refused)
            return
        Call.incoming(self, request, peer, old.account if old else self.account_for(request),
                      replaces=old)

    def _live_call_with(self, invite: Request) -> bool:
        call = self.calls.get(invite.call_id)
        return call is not None and not call.ended

    # -- new requests -------------------------------------------------------------------------
    def stranger(self, request: Request, peer: Peer) -> bool:
        """Neither from a registering account's registrar/proxy nor to its Contact (with
        no registering account nobody is a stranger: the test-endpoint mode)."""
        guarded = [a for a in self.accounts.values() if a.settings.register]
        if not guarded or self.stack.admission.from_trusted_hop(peer):
            return False
        try:
            ruri = request.request_uri
        except Exception:  # a URI we cannot read is no Contact of ours
            return True
        return not (isinstance(ruri, SipUri) and any(a.is_contact(ruri) for a in guarded))

    def _on_new_request(self, request: Request, peer: Peer) -> None:
        method = request.method
        stack = self.stack
        policy = self.config.sip.stranger_policy
        if policy != "accept" and self.stranger(request, peer):
            stack.stats["strangers"] += 1
            log.debug("%s from stranger %s %s: %s", method, peer.proto, peer, policy)
            if policy == "drop":
                stack.discard(request)
            else:
                stack.answer(request, 403, "Forbidden")
            return
        if method == "INVITE":
            if stack.closing:
                stack.answer(request, 503, extra=[("Retry-After", "5")])
            elif self._live_call_with(request):
                # the same call again (not a retransmission: another branch or CSeq)
                stack.answer(request, 482, "Loop Detected")
            elif self._live >= self.config.network.max_calls:
                stack.answer(request, 486)
            elif self._live >= MAX_LIVE_CALLS:
                stack.answer(request, 503, extra=[("Retry-After", "5")])
            elif request.headers.get("Replaces") is not None:
                self._on_replacing_invite(request, peer)
            elif not self.dnd and waiting.busy(self):
                stack.answer(request, 486)  # call waiting is off
            else:
                from .call import Call

                refuse = (self.dnd_status, "Do Not Disturb") if self.dnd else None
                Call.incoming(self, request, peer, self.account_for(request), refuse=refuse)
            return
        if method == "REFER":  # RFC 3515 allows it; we follow a REFER only within a call
            stack.answer(request, 403, "REFER outside a dialog is not accepted")
            return
        if method == "OPTIONS":
            stack.answer(request, 200, extra=self.caps.options_headers())
            return
        if method in _OUT_OF_DIALOG_ONLY_IN_DIALOG:
            stack.answer(request, 481, "Call/Transaction Does Not Exist")
            return
        if method == "SUBSCRIBE" and self.caps.allows("SUBSCRIBE"):
            # we take subscriptions, but not to that package (RFC 6665 §4.2.1.1)
            stack.answer(request, 489, "Bad Event",
                         extra=[("Allow-Events", self.caps.allow_events)])
            return
        if method in _KNOWN_UNSUPPORTED or method == "SUBSCRIBE":
            stack.answer(request, 405, extra=[("Allow", self.caps.allow)])
            return
        stack.answer(request, 501, extra=[("Allow", self.caps.allow)])
