"""The INVITE session as UAS, sans-IO: the INVITE we answer.

100 Trying and the checks of the request (dialog, extensions' Require, Accept, SDP offer)
(INCOMING); ringing (EARLY); the 200 with our answer, or our offer when the INVITE had
none (CONNECTING, resent until the ACK by :class:`~softphone.sip.ack_wait.AckWait`); a
refusal (486, 488 …); the caller's CANCEL (487, RFC 3261 §9.2).
"""

from __future__ import annotations

from . import sdp
from .actions import Action, BindDialog, Emit
from .dialog import Dialog, DialogError
from .errors import SipParseError
from .events import CallAnswered, MediaAgreed
from .invite_base import InviteState, SessionBase, sdp_warning, session_input
from .message import Request

__all__ = ["UasRole"]


class UasRole(SessionBase):
    """The UAS half of the INVITE session (a mixin: it drives the session's state, dialog
    and answer, which the UAC half and the in-dialog handling share)."""

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
                                              extra=[("Warning", sdp_warning(exc))])
            except sdp.SdpError as exc:
                return actions + self._refuse(now, 400, f"Malformed SDP: {exc}"[:100], "error")
        return actions

    def _refuse(self, now: float, status: int, reason: str, end_reason: str,
                extra: list[tuple[str, str]] | None = None) -> list[Action]:
        assert self.request is not None
        self._final_sent = True
        return [self._respond(self.request, status, reason, extra=extra),
                *self._end(now, end_reason, status, reason)]

    @session_input(0)
    def media_ready(self, now: float) -> list[Action]:
        """UAS: our RTP address is known; refuse now (488) if no codec is common."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        try:
            self.negotiator.prepare_answer()
        except sdp.NoCommonCodec as exc:
            return self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                extra=[("Warning", sdp_warning(exc))])
        except sdp.SdpError as exc:
            return self._refuse(now, 488, "Not Acceptable Here", "rejected",
                                extra=[("Warning", sdp_warning(exc))])
        return []

    @session_input(0)
    def ring(self, now: float, status: int = 180) -> list[Action]:
        """UAS: a provisional response with our tag (the phone rings)."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        assert self.request is not None
        self.state = InviteState.EARLY
        return [self._respond(self.request, status, dialog=True)]

    @session_input(0)
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
                                extra=[("Warning", sdp_warning(exc))])
        self._final_sent = True
        self.answered = True
        response = self._respond(self.request, 200, body=body, dialog=True)
        actions.append(response)
        actions += self.ack_wait.arm(self.request.cseq[0], response.response, now, offered)
        assert self.dialog is not None
        self.dialog.state = "confirmed"
        self.state = InviteState.CONNECTING
        if neg is not None:
            actions.append(Emit(MediaAgreed(neg, remote_hold=self.negotiator.remote_hold)))
        actions.append(Emit(CallAnswered()))
        return actions

    @session_input(0)
    def reject(self, now: float, status: int = 486, reason: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> list[Action]:
        """UAS: refuse the call (486 Busy Here, 603 Decline, 3xx with Contact …)."""
        if self.role != "uas" or self._final_sent or self.ended is not None:
            return []
        assert self.request is not None
        self._final_sent = True
        response = self._respond(self.request, status, reason, extra=extra)
        return [response, *self._end(now, "rejected", status, response.response.reason)]

    def _on_cancel(self, cancel: Request, now: float) -> list[Action]:
        """UAS: 200 to the CANCEL (it has its own transaction) and 487 to the INVITE."""
        actions: list[Action] = [self._respond(cancel, 200)]
        if self.role != "uas" or self._final_sent or self.request is None:
            return actions  # too late: the call is answered; the caller will BYE
        self._final_sent = True
        actions.append(self._respond(self.request, 487, "Request Terminated"))
        return actions + self._end(now, "cancelled", 487, "Request Terminated")


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
