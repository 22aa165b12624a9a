"""The INVITE session (RFC 3261 §13–15, RFC 3264 via the negotiator, RFC 6026), sans-IO.

One session is one call attempt and the dialog it makes, as pjsip's ``sip_inv.c`` under
its application call. It owns the dialog (and the early dialogs of forks), the ACK of
every 2xx, our 2xx retransmission until the ACK, CANCEL (deferred until the first
provisional, §9.1), BYE, re-INVITE with the §14.1 491 back-off, delayed offer, and the
offer/answer points. Inputs: :meth:`on_request`, :meth:`on_response`, :meth:`on_timeout`,
:meth:`on_timer` and the commands (:meth:`start`, :meth:`answer`, :meth:`hangup` …), each
with ``now``; outputs: a list of :mod:`~softphone.sip.actions`. Extensions (100rel,
session timers …) plug in through :class:`InviteExtension` hooks.

The parts: the roles are mixins of this one state machine, since both drive its state,
dialog and answer (:mod:`~softphone.sip.invite_uac`, :mod:`~softphone.sip.invite_uas`, on
:mod:`~softphone.sip.invite_base`); what has state of its own is a collaborator it owns:
the fork table (:mod:`~softphone.sip.forks`), our 2xx until its ACK
(:mod:`~softphone.sip.ack_wait`), re-INVITEs and glare (:mod:`~softphone.sip.reinvite`),
our other in-dialog requests (:mod:`~softphone.sip.dialog_requests`). Here: creation, the
inputs that reach every part, and the end of the call.
"""

from __future__ import annotations

from . import sdp
from .ack_wait import AckWait
from .actions import Action, Emit, UnbindDialog
from .challenge import Authenticator
from .dialog import DialogError
from .dialog_requests import OnFinal
from .errors import SipParseError
from .events import CallConfirmed, InfoReceived, MediaAgreed, SessionReleased
from .invite_base import InviteState, SessionError, session_input
from .invite_options import InviteExtension, SessionOptions
from .invite_uac import UacRole
from .invite_uas import UasRole
from .message import Headers, Request, Response
from .negotiator import OfferState, SdpNegotiator
from .reinvite import Reinvites
from .uri import NameAddr, SipUri

__all__ = ["InviteSession", "InviteState", "InviteExtension", "SessionOptions", "SessionError",
           "OnFinal"]


class InviteSession(UacRole, UasRole):
    """One INVITE dialog and its offer/answer. Build with :meth:`outgoing` or
    :meth:`incoming`, then feed it inputs; every method returns the actions to carry out."""

    def __init__(self, role: str, call_id: str, local_tag: str, negotiator: SdpNegotiator,
                 options: SessionOptions, authenticator: Authenticator | None = None) -> None:
        super().__init__(role, call_id, local_tag, negotiator, options, authenticator)
        self.reinvites = Reinvites()  # ours in progress (and its glare back-off)

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

    @session_input(0)
    def start(self, now: float) -> list[Action]:
        """UAC: send the INVITE with our offer. UAS: 100 Trying, then check the request."""
        if self.state is not InviteState.NULL:
            return []
        if self.role == "uas":
            return self._start_uas(now)
        return self._start_uac(now)

    # ======================================================================== re-INVITE
    @property
    def reinvite_pending(self) -> bool:
        return self.reinvites.pending

    @property
    def can_offer(self) -> bool:
        """No offer/answer exchange (re-INVITE, UPDATE, unACKed 2xx) is under way."""
        return not self.reinvites.pending and self.ack_wait.pending is None and \
            self.negotiator.state is OfferState.IDLE

    @session_input(0)
    def reinvite(self, now: float, direction: str | None = "sendrecv", *,
                 refresh: bool = False) -> list[Action]:
        """Our re-INVITE with a new offer (hold: ``sendonly``, resume: ``sendrecv``; None
        keeps the direction, as a session refresh does). Its outcome comes as
        :class:`ReinviteResult`; 491 is retried after §14.1's wait."""
        return self.reinvites.start(self, now, direction, refresh)

    # ======================================================================== inputs
    @session_input(1)
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
        dialog = self.forks.dialog_for(request.from_.tag or "", self.dialog)
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
            return actions + self.reinvites.on_request(self, request, now)
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

    def _on_ack(self, ack: Request, now: float) -> list[Action]:
        """The ACK of our 2xx (to the initial INVITE or a re-INVITE)."""
        pending = self.ack_wait.acked(ack.cseq[0])
        if pending is None:
            return []
        actions: list[Action] = self.timers.stop(AckWait.TIMER)
        if self.ack_wait.bye_waiting:
            self.ack_wait.bye_waiting = False
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
        return actions

    @session_input(1)
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
        if tag in self.forks.released and (method != "INVITE" or response.status >= 300):
            return actions  # the BYE to a fork we released, and the like
        if method == "INVITE":
            if self._is_initial_invite(number):
                return actions + self._on_invite_response(response, now)
            return actions + self.reinvites.on_response(self, response, now)
        if method == "CANCEL":
            return actions
        return actions + self.requests.on_response(response, number, method, now)

    @session_input(2)
    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]:
        """Our request got no final answer (Timer B/F) or the transport failed."""
        number, method = request.cseq
        if method == "INVITE":
            if self._is_initial_invite(number):
                return self._on_invite_timeout(reason, now)
            return self.reinvites.failed(self, now, 408, reason or "Request Timeout")
        return self.requests.on_timeout(number, method, reason, now)

    @session_input(1)
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
        if key == AckWait.TIMER:
            return self._on_ack_wait_timer(now)
        if key in ("cancel-wait", "cancel-expiry"):
            return self._on_cancel_timer(key, now)
        if key == "reinvite-retry":
            return self.reinvites.send(self, now)
        if key == "linger":
            return [*(UnbindDialog(d.id) for d in self.forks.dialogs(self.dialog)),
                    UnbindDialog((self.call_id, self.local_tag, "")), Emit(SessionReleased())]
        return []

    def _on_ack_wait_timer(self, now: float) -> list[Action]:
        resend = self.ack_wait.on_timer(now)
        if resend is not None:
            return resend
        if self.ended is not None:  # we hung up meanwhile: send the BYE anyway
            return self._send_bye_now()
        return self._bye(now, "error", "no ACK received")

    # ======================================================================== commands
    @session_input(0)
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

    @session_input(0)
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
