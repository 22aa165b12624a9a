"""re-INVITEs in a confirmed dialog, both ways, for an INVITE session, sans-IO.

Ours (hold, resume, a session refresh): one at a time, with a new offer; a 2xx is ACKed
and refreshes the target (RFC 3261 §12.2.1.2); a challenge gets one digest retry; a 491
(glare, §14.1) is retried after a random wait — 2.1–4 s by the owner of the Call-ID,
0–2 s by the other side — up to three attempts; a 481 ends the call, a timeout sends BYE.
Theirs: our answer (or our offer, when it has none) in a 200 resent until the ACK; 491
while ours is in flight, 500 with Retry-After while our last 2xx is not ACKed (§14.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import sdp
from .actions import Action, Emit
from .events import MediaAgreed, ReinviteResult
from .invite_base import SessionError, sdp_warning
from .message import Request, Response

if TYPE_CHECKING:
    from .auth import DigestClient
    from .invite import InviteSession

__all__ = ["Reinvites"]

_GLARE_ATTEMPTS = 3


@dataclass
class _Reinvite:
    """Our re-INVITE in progress (one at a time)."""

    direction: str | None
    attempts: int = 0
    request: Request | None = None  # the one in flight (None during a 491 back-off)
    chain: "DigestClient | None" = None
    authed: bool = False
    refresh: bool = False  # a session refresh (RFC 4028), not the user's hold/resume


class Reinvites:
    """Our re-INVITE in progress, if any (its back-off on the session's timer
    ``reinvite-retry``). The session is passed in, as to its extensions."""

    __slots__ = ("ours",)

    def __init__(self) -> None:
        self.ours: _Reinvite | None = None

    @property
    def pending(self) -> bool:
        return self.ours is not None

    # ------------------------------------------------------------------------ ours
    def start(self, session: "InviteSession", now: float, direction: str | None,
              refresh: bool) -> list[Action]:
        if session.ended is not None or not session.confirmed or session.dialog is None:
            raise SessionError("hold needs a connected call")
        if not session.can_offer:
            raise SessionError("a hold or resume is already in progress"
                               if self.ours is not None else
                               "an offer/answer exchange is in progress; try again")
        self.ours = _Reinvite(direction, refresh=refresh)
        return self.send(session, now)

    def send(self, session: "InviteSession", now: float) -> list[Action]:
        """Our re-INVITE (again, after a 491's wait) with a new offer."""
        job = self.ours
        if job is None or session.ended is not None or session.dialog is None:
            return []
        job.attempts += 1
        offer = session.negotiator.create_offer(job.direction)
        request = session.dialog.create_request("INVITE", contact=session.options.contact,
                                                extra=[("Content-Type", "application/sdp")],
                                                body=offer.to_bytes())
        job.request = request
        job.chain = session.authenticator.new_chain() if session.authenticator else None
        job.authed = False
        return [session._send(request)]

    def on_response(self, session: "InviteSession", response: Response,
                    now: float) -> list[Action]:
        job = self.ours
        status = response.status
        number = response.cseq[0]
        if status >= 200 and status < 300:
            sent = session.forks.ack_sent(response.to.tag or "", number)
            if sent is not None:  # retransmitted 2xx: resend our ACK
                ack, branch = sent
                return [session._send(ack, branch=branch, stateless=True)]
        if job is None or job.request is None or number != job.request.cseq[0]:
            return []
        if status < 200:
            return []
        if status < 300:
            assert session.dialog is not None
            session.dialog.on_response(response)  # a target refresh (§12.2.1.2)
            actions: list[Action] = [session._send_ack(response.to.tag or "", number,
                                                       session.dialog.create_ack(number))]
            self.ours = None
            try:
                neg = session.negotiator.receive_answer(response.body)
            except sdp.SdpError as exc:
                actions.append(Emit(ReinviteResult(False, 488, f"unusable SDP answer: {exc}")))
                return actions + session._bye(now, "error", f"bad SDP answer to re-INVITE: {exc}")
            actions.append(Emit(MediaAgreed(neg, remote_hold=session.negotiator.remote_hold)))
            actions.append(Emit(ReinviteResult(True, status, response.reason,
                                               refresh=job.refresh)))
            return actions
        retry = None if job.authed else session._digest_retry(job.request, response, job.chain)
        if retry is not None:
            job.request, job.authed = retry, True
            return [session._send(retry)]
        if status == 491 and job.attempts < _GLARE_ATTEMPTS:
            # §14.1: the owner of the Call-ID waits 2.1–4 s, the other side 0–2 s
            session.negotiator.cancel_offer()
            low, high = (2.1, 4.0) if session.role == "uac" else (0.0, 2.0)
            job.request = None
            return [session.timers.start("reinvite-retry",
                                         now + session.options.rng.uniform(low, high))]
        return self.failed(session, now, status, response.reason)

    def failed(self, session: "InviteSession", now: float, status: int,
               reason: str) -> list[Action]:
        job = self.ours
        if job is None:
            return []
        self.ours = None
        session.negotiator.cancel_offer()
        actions: list[Action] = [Emit(ReinviteResult(False, status, reason,
                                                     refresh=job.refresh))]
        if status == 481:  # the far end has no such dialog (§12.2.1.2)
            return actions + session._end(now, "error", status, f"re-INVITE: {reason}")
        if status == 408:
            return actions + session._bye(now, "error", "re-INVITE timed out")
        return actions

    # ------------------------------------------------------------------------ theirs
    def on_request(self, session: "InviteSession", request: Request,
                   now: float) -> list[Action]:
        if not session.confirmed:
            return [session._respond(request, 491, "Request Pending")]
        if self.ours is not None and self.ours.request is not None:
            return [session._respond(request, 491, "Request Pending")]  # glare (§14.2)
        if session.ack_wait.pending is not None:  # our 2xx to the last INVITE is not ACKed
            return [session._respond(request, 500, "Server Internal Error", extra=[
                ("Retry-After", str(session.options.rng.randint(0, 10)))])]
        negotiator = session.negotiator
        offered = not request.body
        try:
            if offered:
                body = negotiator.create_offer().to_bytes()
                neg = None
            else:
                if request.content_type not in (None, "application/sdp"):
                    return [session._respond(request, 415,
                                             extra=[("Accept", "application/sdp")])]
                negotiator.receive_offer(request.body)
                answer, neg = negotiator.create_answer()
                body = answer.to_bytes()
        except sdp.NoCommonCodec as exc:
            return [session._respond(request, 488, extra=[("Warning", sdp_warning(exc))])]
        except sdp.SdpError as exc:
            return [session._respond(request, 400, f"Malformed SDP: {exc}"[:100])]
        response = session._respond(request, 200, body=body, dialog=True)
        actions: list[Action] = [
            response, *session.ack_wait.arm(request.cseq[0], response.response, now, offered)]
        if neg is not None:
            actions.append(Emit(MediaAgreed(neg, remote_hold=negotiator.remote_hold)))
        return actions
