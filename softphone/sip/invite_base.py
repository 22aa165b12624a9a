"""What every part of the INVITE session shares, sans-IO: its states, the dialog and its
forks, how it sends requests and responses (through the extensions' hooks), how it ends
(BYE, DISCONNECTED, the 64·T1 linger), and the in-dialog requests it tracks.

The roles (:mod:`~softphone.sip.invite_uac`, :mod:`~softphone.sip.invite_uas`) build on
this; :class:`~softphone.sip.invite.InviteSession` joins them.
"""

from __future__ import annotations

import enum
import functools
from typing import TYPE_CHECKING

from .ack_wait import AckWait
from .actions import Action, Emit, SendRequest, SendResponse, TimerSet
from .caps import header_tokens
from .challenge import AuthFailure, Authenticator
from .dialog import Dialog
from .dialog_requests import DialogRequests, OnFinal
from .events import CallEnded
from .forks import ForkTable
from .ids import new_branch
from .invite_options import InviteExtension, SessionOptions
from .message import Request, Response, make_response
from .negotiator import SdpNegotiator
from .uri import SipUri

if TYPE_CHECKING:
    from .auth import DigestClient

__all__ = ["InviteState", "SessionError", "SessionBase", "session_input", "sdp_warning"]


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


_BASE_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO")


def session_input(now_at: int):
    """Mark a public input of the session: its return carries the actions extensions
    queued with :meth:`SessionBase.defer` meanwhile; ``now_at`` is where ``now`` is
    among the positional arguments."""

    def wrap(method):
        @functools.wraps(method)
        def run(self: "SessionBase", *args, **kwargs):
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


class SessionBase:
    """The state and the means every role of the session uses."""

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
        self.invite: Request | None = None   # UAC: the initial INVITE (the last one sent)
        self.request: Request | None = None  # UAS: the INVITE we answer
        self._final_sent = False             # UAS: our final response to it went out
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
        self.forks = ForkTable()                 # early dialogs, our ACKs, released forks
        self.ack_wait = AckWait(self.timers, options.timers)  # our 2xx until its ACK
        self.requests = DialogRequests(  # our BYE, INFO … awaiting their answers
            lambda request, target: self._send(request, target), self._digest_retry,
            lambda: self.authenticator.new_chain() if self.authenticator else None)

    # ======================================================================== what it is
    @property
    def remote_tag(self) -> str | None:
        return self.dialog.remote_tag if self.dialog else None

    @property
    def confirmed(self) -> bool:
        return self.state in (InviteState.CONNECTING, InviteState.CONFIRMED)

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

    # ======================================================================== sending
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

    def _send_ack(self, tag: str, cseq: int, ack: Request) -> SendRequest:
        """The ACK of a 2xx to our INVITE (no transaction), kept to be resent."""
        branch = self.forks.remember_ack(tag, cseq, ack)
        return self._send(ack, self._ack_target(tag), branch=branch, stateless=True)

    def _ack_target(self, tag: str) -> SipUri:
        dialog = self.forks.early.get(tag) or self.dialog
        assert dialog is not None
        return dialog.next_hop()

    # ======================================================================== ending
    def _end(self, now: float, reason: str, status: int | None = None,
             phrase: str | None = None) -> list[Action]:
        """Enter DISCONNECTED (once): stop our timers (but the 2xx resends a pending BYE
        waits behind), keep absorbing retransmissions for 64·T1, then release the
        dialog bindings."""
        if self.ended is not None:
            return []
        self.ended = CallEnded(reason, status, phrase)
        self.state = InviteState.DISCONNECTED
        keep = {AckWait.TIMER} if self.ack_wait.bye_waiting else ()
        actions: list[Action] = list(self.timers.stop_all(keep=keep))
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
        self.forks.compact()

    def _bye(self, now: float, reason: str, phrase: str | None = None) -> list[Action]:
        """End the confirmed call with BYE (after the ACK of our 2xx, if one is awaited)."""
        if self.dialog is None:
            return self._end(now, reason, None, phrase)
        if self.role == "uas" and self.ack_wait.pending is not None:
            # §15: no BYE before the ACK of our 2xx (or its give-up)
            self.ack_wait.bye_waiting = True
            return self._end(now, reason, None, phrase)
        return [*self._end(now, reason, None, phrase), *self._send_bye_now()]

    def _send_bye_now(self) -> list[Action]:
        assert self.dialog is not None
        return [self.track(self.dialog.create_request("BYE"))]

    # ======================================================================== our requests
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


def sdp_warning(exc: Exception) -> str:
    """A Warning header value (RFC 3261 §20.43, code 304/305 for SDP trouble)."""
    text = str(exc).replace('"', "'")[:120]
    return f'304 softphone "{text}"'
