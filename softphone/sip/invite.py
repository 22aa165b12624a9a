"""The INVITE session (RFC 3261 §13–15, RFC 3264 via the negotiator, RFC 6026), sans-IO.

One session is one call attempt and the dialog it makes, as pjsip's ``sip_inv.c`` under
its application call. It owns the dialog (and the early dialogs of forks), the ACK of
every 2xx, our 2xx retransmission until the ACK, CANCEL (deferred until the first
provisional, §9.1), BYE, re-INVITE with the §14.1 491 back-off, delayed offer, and the
offer/answer points. Inputs: :meth:`on_request`, :meth:`on_response`, :meth:`on_timeout`,
:meth:`on_timer` and the commands (:meth:`start`, :meth:`answer`, :meth:`hangup` …), each
with ``now``; outputs: a list of :mod:`~softphone.sip.actions`. Extensions (100rel,
session timers …) plug in through :class:`InviteExtension` hooks.
"""

from __future__ import annotations

import enum
import functools
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import sdp
from .actions import (AbortRequest, Action, BindDialog, Emit, SendCancel, SendRequest,
                      SendResponse, TimerSet, UnbindDialog)
from .caps import Capabilities
from .challenge import AuthFailure, Authenticator
from .dialog import Dialog, DialogError
from .dialog_requests import DialogRequests, OnFinal
from .errors import SipParseError
from .events import (CallAnswered, CallConfirmed, CallEnded, CallProgress, InfoReceived,
                     MediaAgreed, Redirected, ReinviteResult, SessionReleased)
from .ids import new_branch
from .message import Headers, Request, Response, make_response
from .negotiator import OfferState, SdpNegotiator
from .transaction import TimerConfig
from .uri import NameAddr, SipUri

if TYPE_CHECKING:
    from .auth import DigestClient

__all__ = ["InviteSession", "InviteState", "InviteExtension", "SessionOptions", "SessionError",
           "OnFinal", "sorted_contacts", "header_tokens", "add_token"]



class InviteState(enum.Enum):
    NULL = "null"
    CALLING = "calling"          # UAC: INVITE sent, no provisional with a tag yet
    INCOMING = "incoming"        # UAS: INVITE received, nothing but 100 sent
    EARLY = "early"              # a provisional with a To tag went out / came in
    CONNECTING = "connecting"    # UAS: 2xx sent, waiting for the ACK
    CONFIRMED = "confirmed"      # the dialog is confirmed
    DISCONNECTED = "disconnected"


class SessionError(Exception):
    """A command that does not fit the session's state (hold while ringing …)."""


class InviteExtension:
    """A dialog usage that rides on the INVITE session (100rel, session timers …).

    Hooks see every message the session sends or receives. ``on_outgoing_*`` may add
    headers (with ``headers.set``: a digest retry passes through them again) before the
    message is handed over, and queue actions with :meth:`InviteSession.defer`;
    ``on_incoming_*`` append actions to ``actions`` and return True when they consumed the
    message (the session then does nothing more with it). In-dialog requests of a method
    in ``methods`` reach :meth:`on_method` once the session has checked that they belong
    to the dialog (481, CSeq order). Timers named ``ext:<name>:<key>`` (armed with
    ``session.timers.start``) come back to :meth:`on_timer` as ``key``.
    """

    name = ""
    methods: tuple[str, ...] = ()  # in-dialog methods it handles (e.g. PRACK, UPDATE)

    def on_outgoing_request(self, session: "InviteSession", request: Request) -> None:
        pass

    def on_outgoing_response(self, session: "InviteSession", response: Response) -> None:
        pass

    def on_incoming_response(self, session: "InviteSession", response: Response, now: float,
                             actions: list[Action]) -> bool:
        return False

    def on_incoming_request(self, session: "InviteSession", request: Request, now: float,
                            actions: list[Action]) -> bool:
        return False

    def check_invite(self, session: "InviteSession", request: Request
                     ) -> tuple[int, str, list[tuple[str, str]]] | None:
        """UAS: refuse the initial INVITE (status, reason, extra headers), or None."""
        return None

    def on_provisional(self, session: "InviteSession", response: Response, dialog: Dialog,
                       now: float) -> list[Action]:
        """UAC: a provisional response with a To tag was taken into ``dialog``."""
        return []

    def on_method(self, session: "InviteSession", request: Request, dialog: Dialog,
                  now: float) -> list[Action]:
        """An in-dialog request of one of ``methods`` (it must be answered)."""
        return [session._respond(request, 501)]

    def on_timer(self, session: "InviteSession", key: str, now: float) -> list[Action]:
        return []

    def on_end(self, session: "InviteSession", now: float) -> list[Action]:
        return []


@dataclass
class SessionOptions:
    """What a session needs from its UA: timers, capabilities, identity on the wire."""

    contact: str                     # our Contact value, "<sip:…>"
    transport: str = "udp"           # default transport of in-dialog requests
    timers: TimerConfig = field(default_factory=TimerConfig)
    caps: Capabilities = field(default_factory=Capabilities)
    user_agent: str | None = None
    rng: random.Random = field(default_factory=lambda: _SHARED_RNG)
    extensions: list[InviteExtension] = field(default_factory=list)
    follow_redirects: bool = False   # a 3xx waits for retarget()/give_up() (the UA's policy)


_BASE_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO")
_SHARED_RNG = random.SystemRandom()  # one for all: a Random holds 2.5 KB of state
_GLARE_ATTEMPTS = 3


@dataclass
class _Pending2xx:
    """Our 2xx to an INVITE, resent until its ACK arrives (§13.3.1.4)."""

    cseq: int
    response: Response
    interval: float
    give_up_at: float
    offered: bool  # it carried our offer (delayed offer): the ACK brings the answer


@dataclass
class _Reinvite:
    """Our re-INVITE in progress (one at a time)."""

    direction: str | None
    attempts: int = 0
    request: Request | None = None  # the one in flight (None during a 491 back-off)
    chain: "DigestClient | None" = None
    authed: bool = False
    refresh: bool = False  # a session refresh (RFC 4028), not the user's hold/resume


def _entry(now_at: int):
    """Mark a public input of the session: its return carries the actions extensions
    queued with :meth:`InviteSession.defer` meanwhile; ``now_at`` is where ``now`` is
    among the positional arguments."""

    def wrap(method):
        @functools.wraps(method)
        def run(self: "InviteSession", *args, **kwargs):
            if len(args) > now_at:
                self.now = args[now_at]
            elif "now" in kwargs:
                self.now = kwargs["now"]
            actions = method(self, *args, **kwargs)
            if self._deferred:
                actions = [*actions, *self._deferred]
                self._deferred = []
            return actions

        return run

    return wrap


class InviteSession:
    """One INVITE dialog and its offer/answer. Build with :meth:`outgoing` or
    :meth:`incoming`, then feed it inputs; every method returns the actions to carry out."""

    def __init__(self, role: str, call_id: str, local_tag: str, negotiator: SdpNegotiator,
                 options: SessionOptions, authenticator: Authenticator | None = None) -> None:
        self.role = role  # "uac" | "uas"
        self.call_id = call_id
        self.local_tag = local_tag
        self.negotiator = negotiator
        self.options = options
        self.authenticator = authenticator
        self.state = InviteState.NULL
        self.dialog: Dialog | None = None
        self.ended: CallEnded | None = None
        self.timers = TimerSet()
        self.invite: Request | None = None  # the initial INVITE (UAC: the last one sent)
        self.target: SipUri | None = None   # UAC: where the initial INVITE goes
        self.answered = False
        self.now = 0.0  # the time of the input being handled (for extensions' timers)
        self.methods = set(_BASE_METHODS)
        self._ext_methods: dict[str, InviteExtension] = {}
        for ext in options.extensions:
            self.methods.update(ext.methods)
            for method in ext.methods:
                self._ext_methods.setdefault(method, ext)
        self._deferred: list[Action] = []
        self.remote_allow: set[str] = set()      # the far end's Allow, when it said
        self.remote_supported: set[str] = set()  # its Supported and Require option tags
        self.awaiting_target = False  # UAC: a 3xx (or a redirected attempt) failed: where next?
        self.retargeted = False       # UAC: we followed a redirect
        self._early_answer_final = False  # the answer came in a reliable 1xx (RFC 3262 §5)
        # UAC
        self._branch = ""
        self._chain: "DigestClient | None" = None
        self._got_provisional = False
        self._cancel_pending = False
        self._cancel_sent = False
        self._cancel_reason = "cancelled"
        self._early: dict[str, Dialog] = {}     # early dialogs by remote tag (forks)
        self._acks: dict[tuple[str, int], tuple[Request, str]] = {}  # (tag, cseq) -> ACK, branch
        self._released: set[str] = set()        # remote tags of forks we ACKed and BYEd
        # UAS
        self.request: Request | None = None     # the INVITE we answer
        self._final_sent = False
        self._pending_2xx: _Pending2xx | None = None
        self._bye_after_ack = False
        # both
        self._reinvite: _Reinvite | None = None
        self._incoming_reinvite_cseq: int | None = None
        self.requests = DialogRequests(  # our BYE, INFO … awaiting their answers
            lambda request, target: self._send(request, target), self._digest_retry,
            lambda: self.authenticator.new_chain() if self.authenticator else None)

    # ======================================================================== creation
    @classmethod
    def outgoing(cls, *, request_uri: SipUri, local: NameAddr, remote: NameAddr,
                 target: SipUri, call_id: str, local_tag: str, negotiator: SdpNegotiator,
                 options: SessionOptions, authenticator: Authenticator | None = None,
                 routes: list[str] | None = None,
                 extra_headers: list[tuple[str, str]] | None = None) -> "InviteSession":
        """A UAC session; :meth:`start` sends the INVITE (with our offer)."""
        session = cls("uac", call_id, local_tag, negotiator, options, authenticator)
        session.target = target
        headers = Headers()
        for route in routes or ():
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(local.with_tag(local_tag)))
        headers.add("To", str(remote))
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", options.contact)
        for name, value in extra_headers or ():
            headers.add(name, value)
        session.invite = Request("INVITE", str(request_uri), headers)
        return session

    @classmethod
    def incoming(cls, request: Request, *, local_tag: str, negotiator: SdpNegotiator,
                 options: SessionOptions,
                 authenticator: Authenticator | None = None) -> "InviteSession":
        """A UAS session for ``request``; :meth:`start` answers 100 and checks it."""
        session = cls("uas", request.call_id, local_tag, negotiator, options, authenticator)
        session.request = request
        return session

    # ======================================================================== helpers
    @property
    def remote_tag(self) -> str | None:
        return self.dialog.remote_tag if self.dialog else None

    @property
    def confirmed(self) -> bool:
        return self.state in (InviteState.CONNECTING, InviteState.CONFIRMED)

    @property
    def reinvite_pending(self) -> bool:
        return self._reinvite is not None

    def claims(self, request: Request) -> bool:
        """The in-dialog requests this usage handles (the dialog table asks)."""
        return request.method in self.methods

    def ext(self, name: str) -> InviteExtension | None:
        """The extension called ``name`` riding on this session, if any."""
        return next((e for e in self.options.extensions if e.name == name), None)

    def defer(self, *actions: Action) -> None:
        """Queue actions (from a hook that cannot return them) to go out with the
        actions of the input being handled."""
        self._deferred.extend(actions)

    def drain(self) -> list[Action]:
        """What :meth:`defer` queued, for an extension's own command."""
        out, self._deferred = self._deferred, []
        return out

    def remote_allows(self, method: str) -> bool:
        return method.upper() in self.remote_allow

    def remote_supports(self, tag: str) -> bool:
        return tag.lower() in self.remote_supported

    def learn_capabilities(self, message: Request | Response) -> None:
        """Note what the far end says it can do (Allow, Supported, Require)."""
        allow = message.headers.get_all("Allow")
        if allow:
            self.remote_allow = {a.strip().upper() for a in allow if a.strip()}
        tags = header_tokens(message, "Supported") | header_tokens(message, "Require")
        if tags or "Supported" in message.headers:
            self.remote_supported = tags

    def _finish_request(self, request: Request) -> Request:
        if self.options.user_agent and "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.options.user_agent)
        if request.method in ("INVITE", "UPDATE") and "Allow" not in request.headers:
            for name, value in self.options.caps.advertised():
                request.headers.add(name, value)
        for ext in self.options.extensions:
            ext.on_outgoing_request(self, request)
        return request

    def _send(self, request: Request, target: SipUri | None = None, *, branch: str | None = None,
              stateless: bool = False) -> SendRequest:
        if target is None:
            assert self.dialog is not None
            target = self.dialog.next_hop()
        return SendRequest(self._finish_request(request), target, branch or new_branch(),
                           self.options.transport, stateless)

    def _respond(self, request: Request, status: int, reason: str | None = None, *,
                 body: bytes = b"", content_type: str | None = None,
                 extra: list[tuple[str, str]] | None = None, dialog: bool = False) -> SendResponse:
        """A response to ``request``; ``dialog`` responses (1xx/2xx that make or belong to
        the dialog) carry Record-Route (UAS of the initial INVITE), Contact and caps."""
        items: list[tuple[str, str]] = []
        if dialog:
            if request is self.request:
                items += [("Record-Route", rr) for rr in request.headers.get_all("Record-Route")]
            items.append(("Contact", self.options.contact))
            if 200 <= status < 300 or 101 <= status < 200:
                items += self.options.caps.advertised()
        items += extra or []
        if body:
            items.append(("Content-Type", content_type or "application/sdp"))
        response = make_response(request, status, reason, to_tag=self.local_tag, extra=items,
                                 body=body)
        if self.options.user_agent:
            response.headers.add("Server", self.options.user_agent)
        for ext in self.options.extensions:
            ext.on_outgoing_response(self, response)
        return SendResponse(response)

    def _end(self, now: float, reason: str, status: int | None = None,
             phrase: str | None = None) -> list[Action]:
        """Enter DISCONNECTED (once): stop our timers (but the 2xx resends a pending BYE
        waits behind), keep absorbing retransmissions for 64·T1, then release the
        dialog bindings."""
        if self.ended is not None:
            return []
        self.ended = CallEnded(reason, status, phrase)
        self.state = InviteState.DISCONNECTED
        actions: list[Action] = list(self.timers.stop_all(keep={"2xx"} if self._bye_after_ack
                                                          else ()))
        for ext in self.options.extensions:
            actions += ext.on_end(self, now)
        actions.append(Emit(self.ended))
        actions.append(self.timers.start("linger", now + 64 * self.options.timers.t1))
        self._lighten()
        return actions

    def _lighten(self) -> None:
        """An ended session lingers 64·T1 only to absorb retransmissions: drop what that
        does not need (the SDP, the INVITE we answered), so thousands of them stay light."""
        self.negotiator.release()
        if self.role == "uas" and self._final_sent:
            self.request = None
        if self.invite is not None:
            self.invite.compact()
        for ack, _branch in self._acks.values():
            ack.compact()

    def _dialog_for(self, request: Request) -> Dialog | None:
        """The (early) dialog a request from the far end belongs to, by its From tag."""
        tag = request.from_.tag or ""
        if self.dialog is not None and self.dialog.remote_tag == tag:
            return self.dialog
        return self._early.get(tag)

    def _dialogs(self) -> list[Dialog]:
        seen = {id(d): d for d in self._early.values()}
        if self.dialog is not None:
            seen[id(self.dialog)] = self.dialog
        return list(seen.values())

    # ======================================================================== UAC
    @_entry(0)
    def start(self, now: float) -> list[Action]:
        """UAC: send the INVITE with our offer. UAS: 100 Trying, then check the request."""
        if self.state is not InviteState.NULL:
            return []
        if self.role == "uas":
            return self._start_uas(now)
        assert self.invite is not None and self.target is not None
        offer = self.negotiator.create_offer()
        invite = Request("INVITE", self.invite.uri, self.invite.headers.copy(), offer.to_bytes())
        invite.headers.set("Content-Type", "application/sdp")
        self.invite = invite
        self._chain = self.authenticator.new_chain() if self.authenticator else None
        self.state = InviteState.CALLING
        return [BindDialog((self.call_id, self.local_tag, "")), self._send_invite()]

    def _send_invite(self) -> SendRequest:
        assert self.invite is not None and self.target is not None
        self._branch = new_branch()
        self._got_provisional = False
        return self._send(self.invite, self.target, branch=self._branch)

    @property
    def invite_cseq(self) -> int:
        assert self.invite is not None
        return self.invite.cseq[0]

    @_entry(0)
    def cancel(self, now: float, reason: str = "cancelled") -> list[Action]:
        """UAC: abandon the call before its answer (§9.1). Before any provisional the
        CANCEL waits for one; it is given up locally after 4·T1 if none comes."""
        if self.role != "uac" or self.state not in (InviteState.CALLING, InviteState.EARLY):
            return []
        self._cancel_reason = reason
        if not self._got_provisional:
            if self._cancel_pending:
                return []
            self._cancel_pending = True
            return [self.timers.start("cancel-wait", now + 4 * self.options.timers.t1)]
        if self._cancel_sent:
            return []
        self._cancel_sent = True
        return [SendCancel(self.invite_cseq),
                self.timers.start("cancel-expiry", now + 64 * self.options.timers.t1)]

    @_entry(0)
    def abandon(self, now: float, reason: str = "timeout", phrase: str | None = None
                ) -> list[Action]:
        """UAC: give up locally with no provisional (no CANCEL may be sent yet): stop the
        INVITE's transaction quietly. A later 2xx is ACKed and released with BYE."""
        if self.role != "uac" or self.state is not InviteState.CALLING or self._got_provisional:
            return self.cancel(now, reason)
        return [AbortRequest(self.invite_cseq, "INVITE"), *self._end(now, reason, None, phrase)]

    def _on_invite_response(self, response: Response, now: float) -> list[Action]:
        status = response.status
        if status < 200:
            return self._on_provisional(response, now)
        if status < 300:
            return self._on_2xx(response, now)
        if self.ended is not None or self.answered:
            return []
        actions = self.timers.stop("cancel-expiry", "cancel-wait")
        if status in (401, 407) and not (self._cancel_sent or self._cancel_pending):
            assert self.invite is not None
            try:
                if self.authenticator is None:
                    raise AuthFailure(status, "the server asked for credentials but no "
                                              "account is in use")
                retry = self.authenticator.retry(self.invite, response, self._chain,
                                                 cseq=self.invite_cseq + 1)
            except AuthFailure as exc:
                return actions + self._end(now, "rejected", status,
                                           f"{response.reason} ({exc.reason})")
            self.invite = retry
            self._early.clear()
            self.dialog = None
            return actions + [self._send_invite()]
        if self._cancel_sent or self._cancel_pending:
            return actions + self._end(now, self._cancel_reason, status, response.reason)
        if self.options.follow_redirects and (300 <= status < 400 or self.retargeted):
            # the UA's policy says where next: retarget() or give_up() (RFC 3261 §8.1.3.4)
            self.awaiting_target = True
            contacts = sorted_contacts(response) if status < 400 else ()
            return actions + [Emit(Redirected(status, response.reason, contacts))]
        return actions + self._end(now, "rejected", status, response.reason)

    @_entry(0)
    def retarget(self, now: float, request_uri: SipUri, target: SipUri) -> list[Action]:
        """UAC, after :class:`Redirected`: send the INVITE to ``request_uri`` (through
        ``target``) in the same call: same Call-ID, From tag and offer, CSeq one up."""
        if not self.awaiting_target or self.invite is None or self.ended is not None:
            raise SessionError("no redirect to follow")
        self.awaiting_target = False
        self.retargeted = True
        headers = self.invite.headers.copy()
        headers.remove("Authorization")
        headers.remove("Proxy-Authorization")
        headers.set("CSeq", f"{self.invite_cseq + 1} INVITE")
        self.invite = Request("INVITE", str(request_uri), headers, self.invite.body)
        self.target = target
        self._early.clear()
        self.dialog = None
        self.state = InviteState.CALLING
        self._chain = self.authenticator.new_chain() if self.authenticator else None
        return [self._send_invite()]

    @_entry(0)
    def give_up(self, now: float, status: int, reason: str) -> list[Action]:
        """UAC, after :class:`Redirected`: nowhere (else) to go; the call is rejected."""
        if not self.awaiting_target:
            return []
        self.awaiting_target = False
        return self._end(now, "rejected", status, reason)

    @_entry(0)
    def resend_invite(self, now: float, headers: list[tuple[str, str]]) -> list[Action]:
        """UAC: the initial INVITE again with some headers set (a 422's larger
        Session-Expires), CSeq one up, before any answer."""
        if self.role != "uac" or self.invite is None or self.answered or self.ended is not None:
            return []
        copy = self.invite.headers.copy()
        for name, value in headers:
            copy.set(name, value)
        copy.set("CSeq", f"{self.invite_cseq + 1} INVITE")
        self.invite = Request("INVITE", self.invite.uri, copy, self.invite.body)
        self._early.clear()
        self.dialog = None
        self.state = InviteState.CALLING
        return [self._send_invite()]

    def _on_provisional(self, response: Response, now: float) -> list[Action]:
        actions: list[Action] = []
        self._got_provisional = True
        if self._cancel_pending and not self._cancel_sent:
            self._cancel_pending = False
            actions += self.timers.stop("cancel-wait")
            actions += self.cancel(now, self._cancel_reason)
        if response.status == 100 or self.ended is not None or self._cancel_sent:
            return actions
        tag = response.to.tag
        if tag:
            early = self._early.get(tag)
            if early is None:
                try:
                    early = Dialog.from_uac(self.invite, response)
                except SipParseError:
                    early = None
                if early is not None:
                    self._early[tag] = early
                    actions.append(BindDialog(early.id))
            else:
                early.on_response(response)
            if early is not None and self.dialog is None:
                self.dialog = early
            if self.state is InviteState.CALLING:
                self.state = InviteState.EARLY
            self.learn_capabilities(response)
            if early is not None:
                for ext in self.options.extensions:
                    actions += ext.on_provisional(self, response, early, now)
        actions.append(Emit(CallProgress(response.status, response.reason, response)))
        if response.body and response.content_type in (None, "application/sdp") and \
                self.negotiator.state is OfferState.LOCAL_OFFER and not self._early_answer_final:
            try:
                neg = self.negotiator.receive_answer(response.body)
            except sdp.SdpError:
                return actions  # an unusable early answer: wait for the 2xx's
            # an answer in a reliable provisional is THE answer (RFC 3262 §5): a later one
            # in the 2xx (or a fork's) is not applied over an UPDATE's
            self._early_answer_final = "100rel" in header_tokens(response, "Require")
            actions.append(Emit(MediaAgreed(neg, early=True)))
        return actions

    def _on_2xx(self, response: Response, now: float) -> list[Action]:
        tag = response.to.tag or ""
        cseq = response.cseq[0]
        sent = self._acks.get((tag, cseq))
        if sent is not None:  # a retransmitted 2xx: our ACK was lost
            ack, branch = sent
            return [self._send(ack, self._ack_target(tag), branch=branch, stateless=True)]
        if tag in self._released:
            return []
        if self.ended is not None or (self.answered and self.dialog is not None
                                      and self.dialog.remote_tag != tag):
            # a second fork answered, or an answer after we gave up (a CANCEL crossed
            # the 2xx): ACK it, then BYE it (§13.2.2.4, §9.1)
            return self._release_fork(response)
        actions: list[Action] = self.timers.stop("cancel-expiry", "cancel-wait")
        if self._cancel_sent or self._cancel_pending:
            # our CANCEL crossed the 2xx: the call was answered, and we still want out
            return actions + self._release_fork(response) + self._end(now, self._cancel_reason)
        dialog = self._early.get(tag)
        if dialog is None:
            try:
                dialog = Dialog.from_uac(self.invite, response)
            except SipParseError:
                return actions + self._end(now, "error", response.status, "2xx without a To tag")
            actions.append(BindDialog(dialog.id))
        dialog.on_response(response)
        self.dialog = dialog
        self._early = {tag: dialog}
        ack = dialog.create_ack(cseq)
        actions.append(self._send_ack(tag, cseq, ack))
        self.answered = True
        self.state = InviteState.CONFIRMED
        self.learn_capabilities(response)
        neg = None
        try:
            if response.body and not self._early_answer_final:
                neg = self.negotiator.receive_answer(response.body)
            else:
                neg = self.negotiator.active
        except sdp.SdpError as exc:
            actions.append(Emit(CallAnswered()))
            return actions + self._bye(now, "error", f"unusable SDP answer: {exc}")
        if neg is None:
            actions.append(Emit(CallAnswered()))
            return actions + self._bye(now, "error", "no SDP answer")
        # the agreement first: who hears "answered" knows the codec
        actions += [Emit(MediaAgreed(neg)), Emit(CallAnswered())]
        return actions

    def _send_ack(self, tag: str, cseq: int, ack: Request) -> SendRequest:
        branch = new_branch()
        self._acks[(tag, cseq)] = (ack, branch)
        return self._send(ack, self._ack_target(tag), branch=branch, stateless=True)

    def _ack_target(self, tag: str) -> SipUri:
        dialog = self._early.get(tag) or self.dialog
        assert dialog is not None
        return dialog.next_hop()

    def _release_fork(self, response: Response) -> list[Action]:
        try:
            fork = Dialog.from_uac(self.invite, response)
        except SipParseError:
            return []
        self._released.add(fork.remote_tag)
        ack = fork.create_ack(response.cseq[0])
        branch = new_branch()
        self._acks[(fork.remote_tag, response.cseq[0])] = (ack, branch)
        bye = fork.create_request("BYE")
        return [self._send(ack, fork.next_hop(), branch=branch, stateless=True),
                self._send(bye, fork.next_hop())]

    # ======================================================================== UAS
    def _start_uas(self, now: float) -> list[Action]:
        request = self.request
        assert request is not None
        self.state = InviteState.INCOMING
        actions: list[Action] = [self._respond(request, 100)]
        try:
            self.dialog = Dialog.from_uas(request, self.local_tag)
        except DialogError as exc:
            return actions + self._refuse(now, exc.status, exc.reason, "error")
        except SipParseError as exc:
            return actions + self._refuse(now, 400, exc.reason[:100], "error")
        actions.append(BindDialog(self.dialog.id))
        self.learn_capabilities(request)
        for ext in self.options.extensions:
            verdict = ext.check_invite(self, request)
            if verdict is not None:
                status, reason, extra = verdict
                return actions + self._refuse(now, status, reason, "rejected", extra=extra)
        if not _accepts_sdp(request):  # any answer of ours carries SDP (RFC 4475 §3.3.15)
            return actions + self._refuse(now, 406, "Not Acceptable", "rejected",
                                          extra=[("Accept", "application/sdp")])
        if request.body:
            if request.content_type not in (None, "application/sdp"):
                return actions + self._refuse(now, 415, "Unsupported Media Type", "error",
                                              extra=[("Accept", "application/sdp")])
            try:
                self.negotiator.receive_offer(request.body)
            except sdp.NoCommonCodec as exc:
                return actions + self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                              extra=[("Warning", _warning(exc))])
            except sdp.SdpError as exc:
                return actions + self._refuse(now, 400, f"Malformed SDP: {exc}"[:100], "error")
        return actions

    def _refuse(self, now: float, status: int, reason: str, end_reason: str,
                extra: list[tuple[str, str]] | None = None) -> list[Action]:
        assert self.request is not None
        self._final_sent = True
        return [self._respond(self.request, status, reason, extra=extra),
                *self._end(now, end_reason, status, reason)]

    @_entry(0)
    def media_ready(self, now: float) -> list[Action]:
        """UAS: our RTP address is known; refuse now (488) if no codec is common."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        try:
            self.negotiator.prepare_answer()
        except sdp.NoCommonCodec as exc:
            return self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                extra=[("Warning", _warning(exc))])
        except sdp.SdpError as exc:
            return self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                extra=[("Warning", _warning(exc))])
        return []

    @_entry(0)
    def ring(self, now: float, status: int = 180) -> list[Action]:
        """UAS: a provisional response with our tag (the phone rings)."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        assert self.request is not None
        self.state = InviteState.EARLY
        return [self._respond(self.request, status, dialog=True)]

    @_entry(0)
    def answer(self, now: float) -> list[Action]:
        """UAS: 200 with our answer (or our offer, when the INVITE had none), resent until
        the ACK comes."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        assert self.request is not None
        actions: list[Action] = []
        offered = self.negotiator.remote_offer is None
        try:
            if offered:
                body = self.negotiator.create_offer().to_bytes()
                neg = None
            else:
                answer, neg = self.negotiator.create_answer()
                body = answer.to_bytes()
        except sdp.SdpError as exc:
            return self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                extra=[("Warning", _warning(exc))])
        self._final_sent = True
        self.answered = True
        response = self._respond(self.request, 200, body=body, dialog=True)
        actions.append(response)
        actions += self._arm_2xx(self.request.cseq[0], response.response, now, offered)
        assert self.dialog is not None
        self.dialog.state = "confirmed"
        self.state = InviteState.CONNECTING
        if neg is not None:
            actions.append(Emit(MediaAgreed(neg, remote_hold=self.negotiator.remote_hold)))
        actions.append(Emit(CallAnswered()))
        return actions

    @_entry(0)
    def reject(self, now: float, status: int = 486, reason: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> list[Action]:
        """UAS: refuse the call (486 Busy Here, 603 Decline, 3xx with Contact …)."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        assert self.request is not None
        self._final_sent = True
        response = self._respond(self.request, status, reason, extra=extra)
        return [response, *self._end(now, "rejected", status, response.response.reason)]

    def _arm_2xx(self, cseq: int, response: Response, now: float, offered: bool) -> list[Action]:
        t = self.options.timers
        self._pending_2xx = _Pending2xx(cseq, response, t.t1, now + 64 * t.t1, offered)
        return [self.timers.start("2xx", now + t.t1)]

    def _on_2xx_timer(self, now: float) -> list[Action]:
        pending = self._pending_2xx
        if pending is None:
            return []
        if now >= pending.give_up_at:
            self._pending_2xx = None
            if self.ended is not None:  # we hung up meanwhile: send the BYE anyway
                return self._send_bye_now()
            return self._bye(now, "error", "no ACK received")
        pending.interval = min(2 * pending.interval, self.options.timers.t2)
        deadline = min(now + pending.interval, pending.give_up_at)
        return [SendResponse(pending.response), self.timers.start("2xx", deadline)]

    def _on_ack(self, ack: Request, now: float) -> list[Action]:
        pending = self._pending_2xx
        if pending is None or ack.cseq[0] != pending.cseq:
            return []
        self._pending_2xx = None
        actions: list[Action] = self.timers.stop("2xx")
        if self._bye_after_ack:
            self._bye_after_ack = False
            return actions + self._send_bye_now()
        if self.ended is not None:
            return actions
        if pending.offered:  # delayed offer: the ACK carries the answer
            if not ack.body:
                return actions + self._bye(now, "error", "no SDP answer in the ACK")
            try:
                neg = self.negotiator.receive_answer(ack.body)
            except sdp.SdpError as exc:
                return actions + self._bye(now, "error", f"bad SDP in the ACK: {exc}")
            actions.append(Emit(MediaAgreed(neg, remote_hold=self.negotiator.remote_hold)))
        if self.state is InviteState.CONNECTING:
            self.state = InviteState.CONFIRMED
            actions.append(Emit(CallConfirmed()))
        if pending.cseq == self._incoming_reinvite_cseq:
            self._incoming_reinvite_cseq = None
        return actions

    # ======================================================================== both
    @_entry(1)
    def on_request(self, request: Request, now: float) -> list[Action]:
        """An in-dialog request for this session (or a CANCEL/ACK for our INVITE)."""
        method = request.method
        actions: list[Action] = []
        for ext in self.options.extensions:
            if ext.on_incoming_request(self, request, now, actions):
                return actions
        if method == "ACK":
            return actions + self._on_ack(request, now)
        if method == "CANCEL":
            return actions + self._on_cancel(request, now)
        if self.ended is not None and self.state is InviteState.DISCONNECTED:
            return actions + [self._respond(request, 481, "Call/Transaction Does Not Exist")]
        dialog = self._dialog_for(request)
        if dialog is None:
            return actions + [self._respond(request, 481, "Call/Transaction Does Not Exist")]
        try:
            dialog.on_request(request)
        except DialogError as exc:
            return actions + [self._respond(request, exc.status, exc.reason)]
        if method == "BYE":
            actions.append(self._respond(request, 200))
            if self.role == "uas" and not self._final_sent and self.request is not None:
                self._final_sent = True
                actions.append(self._respond(self.request, 487, "Request Terminated"))
            return actions + self._end(now, "remote-hangup")
        if method == "INVITE":
            self.learn_capabilities(request)
            return actions + self._on_reinvite(request, now)
        owner = self._ext_methods.get(method)
        if owner is not None:
            return actions + owner.on_method(self, request, dialog, now)
        if method == "OPTIONS":
            return actions + [self._respond(request, 200,
                                            extra=self.options.caps.options_headers())]
        if method == "INFO":
            actions.append(self._respond(request, 200))
            return actions + [Emit(InfoReceived(request.content_type, request.body))]
        return actions + [self._respond(request, 405, extra=[("Allow", self.options.caps.allow)])]

    def _on_cancel(self, cancel: Request, now: float) -> list[Action]:
        """UAS: 200 to the CANCEL (it has its own transaction) and 487 to the INVITE."""
        actions: list[Action] = [self._respond(cancel, 200)]
        if self.role != "uas" or self._final_sent or self.request is None:
            return actions  # too late: the call is answered; the caller will BYE
        self._final_sent = True
        actions.append(self._respond(self.request, 487, "Request Terminated"))
        return actions + self._end(now, "cancelled", 487, "Request Terminated")

    def _on_reinvite(self, request: Request, now: float) -> list[Action]:
        if not self.confirmed:
            return [self._respond(request, 491, "Request Pending")]
        if self._reinvite is not None and self._reinvite.request is not None:
            return [self._respond(request, 491, "Request Pending")]  # glare (§14.2)
        if self._pending_2xx is not None:  # our 2xx to the last INVITE is not ACKed yet
            return [self._respond(request, 500, "Server Internal Error",
                                  extra=[("Retry-After", str(self.options.rng.randint(0, 10)))])]
        offered = not request.body
        try:
            if offered:
                body = self.negotiator.create_offer().to_bytes()
                neg = None
            else:
                if request.content_type not in (None, "application/sdp"):
                    return [self._respond(request, 415, extra=[("Accept", "application/sdp")])]
                self.negotiator.receive_offer(request.body)
                answer, neg = self.negotiator.create_answer()
                body = answer.to_bytes()
        except sdp.NoCommonCodec as exc:
            return [self._respond(request, 488, extra=[("Warning", _warning(exc))])]
        except sdp.SdpError as exc:
            return [self._respond(request, 400, f"Malformed SDP: {exc}"[:100])]
        response = self._respond(request, 200, body=body, dialog=True)
        self._incoming_reinvite_cseq = request.cseq[0]
        actions: list[Action] = [response,
                                 *self._arm_2xx(request.cseq[0], response.response, now, offered)]
        if neg is not None:
            actions.append(Emit(MediaAgreed(neg, remote_hold=self.negotiator.remote_hold)))
        return actions

    @_entry(1)
    def on_response(self, response: Response, now: float) -> list[Action]:
        """A response to one of our requests (through its transaction, or a stray 2xx)."""
        actions: list[Action] = []
        for ext in self.options.extensions:
            if ext.on_incoming_response(self, response, now, actions):
                return actions
        try:
            number, method = response.cseq
        except SipParseError:
            return actions
        tag = response.to.tag or ""
        if tag in self._released and (method != "INVITE" or response.status >= 300):
            return actions  # the BYE to a fork we released, and the like
        if method == "INVITE":
            if self.role == "uac" and self.invite is not None and number == self.invite_cseq:
                return actions + self._on_invite_response(response, now)
            return actions + self._on_reinvite_response(response, now)
        if method == "CANCEL":
            return actions
        return actions + self.requests.on_response(response, number, method, now)

    @_entry(2)
    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]:
        """Our request got no final answer (Timer B/F) or the transport failed."""
        number, method = request.cseq
        if method == "INVITE":
            if self.role == "uac" and self.invite is not None and number == self.invite_cseq:
                if self.answered or self.ended is not None:
                    return []
                actions = self.timers.stop("cancel-expiry", "cancel-wait")
                if reason:
                    return actions + self._end(now, "error", None, reason)
                end = "timeout" if not self._cancel_sent else self._cancel_reason
                return actions + self._end(now, end, 408, "Request Timeout")
            return self._reinvite_failed(now, 408, reason or "Request Timeout")
        return self.requests.on_timeout(number, method, reason, now)

    @_entry(1)
    def on_timer(self, key: str, now: float) -> list[Action]:
        if key.startswith("ext:"):
            self.timers.running.pop(key, None)
            _, name, sub = key.split(":", 2)
            for ext in self.options.extensions:
                if ext.name == name:
                    return ext.on_timer(self, sub, now)
            return []
        if not self.timers.fired(key):
            return []
        if key == "2xx":
            return self._on_2xx_timer(now)
        if key == "cancel-wait":  # no provisional came to let us CANCEL: give up locally
            if self.state is InviteState.CALLING and not self._got_provisional:
                return [AbortRequest(self.invite_cseq, "INVITE"),
                        *self._end(now, self._cancel_reason)]
            return []
        if key == "cancel-expiry":
            if self.ended is None and not self.answered:
                return self._end(now, self._cancel_reason, 408, "no answer to CANCEL")
            return []
        if key == "reinvite-retry":
            return self._send_reinvite(now)
        if key == "linger":
            return [*(UnbindDialog(d.id) for d in self._dialogs()),
                    UnbindDialog((self.call_id, self.local_tag, "")), Emit(SessionReleased())]
        return []

    # -------------------------------------------------------------------- ending
    @_entry(0)
    def hangup(self, now: float, reason: str = "hangup",
               phrase: str | None = None) -> list[Action]:
        """End the call whatever its state: CANCEL, 486, or BYE (``reason``/``phrase``
        say why when it is not the user's doing: an RTP timeout …)."""
        if self.ended is not None:
            return []
        if self.awaiting_target:  # between a 3xx and the next INVITE: nothing to cancel
            self.awaiting_target = False
            return self._end(now, "cancelled" if reason == "hangup" else reason)
        if self.role == "uac" and not self.answered:
            return self.cancel(now, "cancelled" if reason == "hangup" else reason)
        if self.role == "uas" and not self._final_sent:
            return self.reject(now, 486)
        return self._bye(now, reason, phrase)

    def _bye(self, now: float, reason: str, phrase: str | None = None) -> list[Action]:
        if self.dialog is None:
            return self._end(now, reason, None, phrase)
        if self.role == "uas" and self._pending_2xx is not None:
            # §15: no BYE before the ACK of our 2xx (or its give-up)
            self._bye_after_ack = True
            return self._end(now, reason, None, phrase)
        return [*self._end(now, reason, None, phrase), *self._send_bye_now()]

    def _send_bye_now(self) -> list[Action]:
        assert self.dialog is not None
        return [self.track(self.dialog.create_request("BYE"))]

    def track(self, request: Request, on_final: OnFinal | None = None,
              target: SipUri | None = None) -> SendRequest:
        """Send an in-dialog non-INVITE request and follow its answer: one digest retry,
        then ``on_final`` (an extension's PRACK, UPDATE, REFER …) or a RequestResult."""
        return self.requests.track(request, on_final, target)

    def _digest_retry(self, request: Request, response: Response,
                      chain: "DigestClient | None") -> Request | None:
        """An in-dialog request answering a 401/407 (the next CSeq of the dialog), or
        None when it is no challenge or cannot be answered."""
        if response.status not in (401, 407) or self.authenticator is None or \
                self.dialog is None:
            return None
        try:
            return self.authenticator.retry(request, response, chain, cseq=self._next_cseq())
        except AuthFailure:
            return None

    def _next_cseq(self) -> int:
        assert self.dialog is not None
        self.dialog.local_cseq += 1
        return self.dialog.local_cseq

    # -------------------------------------------------------------------- re-INVITE
    @_entry(0)
    def reinvite(self, now: float, direction: str | None = "sendrecv", *,
                 refresh: bool = False) -> list[Action]:
        """Our re-INVITE with a new offer (hold: ``sendonly``, resume: ``sendrecv``; None
        keeps the direction, as a session refresh does). Its outcome comes as
        :class:`ReinviteResult`; 491 is retried after §14.1's wait."""
        if self.ended is not None or not self.confirmed or self.dialog is None:
            raise SessionError("hold needs a connected call")
        if not self.can_offer:
            raise SessionError("a hold or resume is already in progress"
                               if self._reinvite is not None else
                               "an offer/answer exchange is in progress; try again")
        self._reinvite = _Reinvite(direction, refresh=refresh)
        return self._send_reinvite(now)

    @property
    def can_offer(self) -> bool:
        """No offer/answer exchange (re-INVITE, UPDATE, unACKed 2xx) is under way."""
        return self._reinvite is None and self._pending_2xx is None and \
            self.negotiator.state is OfferState.IDLE

    def _send_reinvite(self, now: float) -> list[Action]:
        job = self._reinvite
        if job is None or self.ended is not None or self.dialog is None:
            return []
        job.attempts += 1
        offer = self.negotiator.create_offer(job.direction)
        request = self.dialog.create_request("INVITE", contact=self.options.contact,
                                             extra=[("Content-Type", "application/sdp")],
                                             body=offer.to_bytes())
        job.request = request
        job.chain = self.authenticator.new_chain() if self.authenticator else None
        job.authed = False
        return [self._send(request)]

    def _on_reinvite_response(self, response: Response, now: float) -> list[Action]:
        job = self._reinvite
        status = response.status
        number = response.cseq[0]
        if status >= 200 and status < 300:
            sent = self._acks.get((response.to.tag or "", number))
            if sent is not None:  # retransmitted 2xx: resend our ACK
                ack, branch = sent
                return [self._send(ack, branch=branch, stateless=True)]
        if job is None or job.request is None or number != job.request.cseq[0]:
            return []
        if status < 200:
            return []
        if status < 300:
            assert self.dialog is not None
            self.dialog.on_response(response)  # a target refresh (§12.2.1.2)
            actions: list[Action] = [self._send_ack(response.to.tag or "", number,
                                                    self.dialog.create_ack(number))]
            self._reinvite = None
            try:
                neg = self.negotiator.receive_answer(response.body)
            except sdp.SdpError as exc:
                actions.append(Emit(ReinviteResult(False, 488, f"unusable SDP answer: {exc}")))
                return actions + self._bye(now, "error", f"bad SDP answer to re-INVITE: {exc}")
            actions.append(Emit(MediaAgreed(neg, remote_hold=self.negotiator.remote_hold)))
            actions.append(Emit(ReinviteResult(True, status, response.reason,
                                               refresh=job.refresh)))
            return actions
        retry = None if job.authed else self._digest_retry(job.request, response, job.chain)
        if retry is not None:
            job.request, job.authed = retry, True
            return [self._send(retry)]
        if status == 491 and job.attempts < _GLARE_ATTEMPTS:
            # §14.1: the owner of the Call-ID waits 2.1–4 s, the other side 0–2 s
            self.negotiator.cancel_offer()
            low, high = (2.1, 4.0) if self.role == "uac" else (0.0, 2.0)
            job.request = None
            return [self.timers.start("reinvite-retry", now + self.options.rng.uniform(low, high))]
        return self._reinvite_failed(now, status, response.reason)

    def _reinvite_failed(self, now: float, status: int, reason: str) -> list[Action]:
        job = self._reinvite
        if job is None:
            return []
        self._reinvite = None
        self.negotiator.cancel_offer()
        actions: list[Action] = [Emit(ReinviteResult(False, status, reason,
                                                     refresh=job.refresh))]
        if status == 481:  # the far end has no such dialog (§12.2.1.2)
            return actions + self._end(now, "error", status, f"re-INVITE: {reason}")
        if status == 408:
            return actions + self._bye(now, "error", "re-INVITE timed out")
        return actions

    # -------------------------------------------------------------------- other requests
    @_entry(0)
    def send_request(self, now: float, method: str, *, body: bytes = b"",
                     content_type: str | None = None,
                     extra: list[tuple[str, str]] | None = None) -> list[Action]:
        """A non-INVITE request in the dialog (INFO …); its outcome is a RequestResult."""
        if self.ended is not None or self.dialog is None or not self.confirmed:
            raise SessionError(f"{method} needs a connected call")
        items = list(extra or [])
        if body:
            items.append(("Content-Type", content_type or "application/octet-stream"))
        request = self.dialog.create_request(method, contact=self.options.contact, extra=items,
                                             body=body)
        return [self.track(request)]


def header_tokens(message: Request | Response, name: str) -> set[str]:
    """The option tags (or methods) of a list header, lower-cased."""
    return {v.strip().lower() for v in message.headers.get_all(name) if v.strip()}


def add_token(message: Request | Response, name: str, token: str) -> None:
    """Add an option tag to a list header (Require, Supported), once."""
    values = [v.strip() for v in message.headers.get_all(name) if v.strip()]
    if token.lower() not in (v.lower() for v in values):
        message.headers.set(name, ", ".join([*values, token]))


def sorted_contacts(response: Response) -> tuple[NameAddr, ...]:
    """A 3xx's Contacts by q-value, highest first; equal q keep their order (§8.1.3.4)."""
    try:
        contacts = response.contacts
    except SipParseError:
        return ()

    def q(contact: NameAddr) -> float:
        try:
            return float(contact.params.get("q") or 1.0)
        except ValueError:
            return 0.0

    return tuple(sorted((c for c in contacts if isinstance(c.uri, SipUri)), key=q,
                        reverse=True))


def _accepts_sdp(request: Request) -> bool:
    """No Accept means application/sdp (RFC 3261 §20.1); else it must allow it."""
    values = request.headers.get_all("Accept")
    if not values:
        return True
    for value in values:
        media = value.split(";")[0].strip().lower()
        if media in ("application/sdp", "application/*", "*/*") or not media:
            return True
    return False


def _warning(exc: Exception) -> str:
    """A Warning header value (RFC 3261 §20.43, code 304/305 for SDP trouble)."""
    text = str(exc).replace('"', "'")[:120]
    return f'304 softphone "{text}"'
