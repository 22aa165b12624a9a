"""The INVITE session as UAC, sans-IO: our initial INVITE and what comes back to it.

The INVITE with our offer (CALLING); provisionals (EARLY: an early dialog per fork, an
early answer); the 2xx that makes the call (ACKed; a second fork's is ACKed and released
with BYE, RFC 3261 §13.2.2.4); CANCEL, deferred until the first provisional (§9.1) and
given up after 4·T1 without one; a failure, a digest challenge (the INVITE again with
credentials) or a redirect (the UA's policy says where next: :meth:`UacRole.retarget` or
:meth:`UacRole.give_up`, §8.1.3.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sdp
from .actions import AbortRequest, Action, BindDialog, Emit, SendCancel, SendRequest
from .caps import header_tokens
from .challenge import AuthFailure
from .dialog import Dialog
from .errors import SipParseError
from .events import CallAnswered, CallProgress, MediaAgreed, Redirected
from .ids import new_branch
from .invite_base import InviteState, SessionBase, SessionError, session_input
from .message import Request, Response
from .negotiator import OfferState
from .uri import NameAddr, SipUri

if TYPE_CHECKING:
    from .auth import DigestClient

__all__ = ["UacRole", "sorted_contacts"]


class UacRole(SessionBase):
    """The UAC half of the INVITE session (a mixin: it drives the session's state, dialog
    and answer, which the UAS half and the in-dialog handling share)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target: SipUri | None = None  # where the initial INVITE goes
        self.awaiting_target = False  # a 3xx (or a redirected attempt) failed: where next?
        self.retargeted = False       # we followed a redirect
        self._early_answer_final = False  # the answer came in a reliable 1xx (RFC 3262 §5)
        self._branch = ""
        self._chain: "DigestClient | None" = None
        self._got_provisional = False
        self._cancel_pending = False
        self._cancel_sent = False
        self._cancel_reason = "cancelled"

    def _start_uac(self, now: float) -> list[Action]:
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

    def _is_initial_invite(self, cseq: int) -> bool:
        """An INVITE of ours with CSeq ``cseq`` is the initial one (not a re-INVITE)."""
        return self.role == "uac" and self.invite is not None and cseq == self.invite_cseq

    # ======================================================================== CANCEL
    @session_input(0)
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

    @session_input(0)
    def abandon(self, now: float, reason: str = "timeout", phrase: str | None = None
                ) -> list[Action]:
        """UAC: give up locally with no provisional (no CANCEL may be sent yet): stop the
        INVITE's transaction quietly. A later 2xx is ACKed and released with BYE."""
        if self.role != "uac" or self.state is not InviteState.CALLING or self._got_provisional:
            return self.cancel(now, reason)
        return [AbortRequest(self.invite_cseq, "INVITE"), *self._end(now, reason, None, phrase)]

    def _on_cancel_timer(self, key: str, now: float) -> list[Action]:
        if key == "cancel-wait":  # no provisional came to let us CANCEL: give up locally
            if self.state is InviteState.CALLING and not self._got_provisional:
                return [AbortRequest(self.invite_cseq, "INVITE"),
                        *self._end(now, self._cancel_reason)]
            return []
        if self.ended is None and not self.answered:  # cancel-expiry
            return self._end(now, self._cancel_reason, 408, "no answer to CANCEL")
        return []

    # ======================================================================== failures
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
            self.forks.clear()
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

    def _on_invite_timeout(self, reason: str | None, now: float) -> list[Action]:
        """Our INVITE got no final answer (Timer B) or the transport failed."""
        if self.answered or self.ended is not None:
            return []
        actions = self.timers.stop("cancel-expiry", "cancel-wait")
        if reason:
            return actions + self._end(now, "error", None, reason)
        end = "timeout" if not self._cancel_sent else self._cancel_reason
        return actions + self._end(now, end, 408, "Request Timeout")

    @session_input(0)
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
        self.forks.clear()
        self.dialog = None
        self.state = InviteState.CALLING
        self._chain = self.authenticator.new_chain() if self.authenticator else None
        return [self._send_invite()]

    @session_input(0)
    def give_up(self, now: float, status: int, reason: str) -> list[Action]:
        """UAC, after :class:`Redirected`: nowhere (else) to go; the call is rejected."""
        if not self.awaiting_target:
            return []
        self.awaiting_target = False
        return self._end(now, "rejected", status, reason)

    @session_input(0)
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
        self.forks.clear()
        self.dialog = None
        self.state = InviteState.CALLING
        return [self._send_invite()]

    # ======================================================================== success
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
            assert self.invite is not None
            early, new = self.forks.on_provisional(self.invite, response, tag)
            if new:
                assert early is not None
                actions.append(BindDialog(early.id))
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
        sent = self.forks.ack_sent(tag, cseq)
        if sent is not None:  # a retransmitted 2xx: our ACK was lost
            ack, branch = sent
            return [self._send(ack, self._ack_target(tag), branch=branch, stateless=True)]
        if tag in self.forks.released:
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
        dialog = self.forks.early.get(tag)
        if dialog is None:
            try:
                dialog = Dialog.from_uac(self.invite, response)
            except SipParseError:
                return actions + self._end(now, "error", response.status, "2xx without a To tag")
            actions.append(BindDialog(dialog.id))
        dialog.on_response(response)
        self.dialog = dialog
        self.forks.keep(tag, dialog)
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

    def _release_fork(self, response: Response) -> list[Action]:
        assert self.invite is not None
        released = self.forks.release(self.invite, response)
        if released is None:
            return []
        fork, ack, branch, bye = released
        return [self._send(ack, fork.next_hop(), branch=branch, stateless=True),
                self._send(bye, fork.next_hop())]


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
