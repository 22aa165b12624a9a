"""UPDATE (RFC 3311): change the session (or just refresh it) without touching the INVITE
transaction, in early and confirmed dialogs, sans-IO.

Answering: an UPDATE with an offer gets our answer in its 200 (and the agreement goes to
the media layer); one without a body is a refresh (and a target refresh, §5.2) and gets a
plain 200. An offer while ours is pending gets 491; one while we still owe an answer to
theirs gets 500 with Retry-After (§5.2). Sending: with an offer (an early hold, §5.1) or
without (a session refresh, RFC 4028 §10), only to a peer whose Allow lists UPDATE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import sdp
from .actions import Action, Emit
from .caps import Capabilities
from .events import MediaAgreed, ReinviteResult
from .invite import InviteExtension, InviteSession, SessionError
from .message import Request, Response
from .negotiator import OfferState

if TYPE_CHECKING:
    from .dialog import Dialog

__all__ = ["UpdateExtension"]


class UpdateExtension(InviteExtension):
    name = "update"
    methods = ("UPDATE",)

    @staticmethod
    def advertise(caps: Capabilities) -> None:
        caps.add_method("UPDATE")

    # ------------------------------------------------------------------ receiving
    def on_method(self, session: InviteSession, request: Request, dialog: Dialog,
                  now: float) -> list[Action]:
        session.learn_capabilities(request)
        contacts = request.contacts
        if contacts:
            dialog.remote_target = contacts[0].uri  # a target refresh (§5.2)
        if not request.body:
            return [session._respond(request, 200, dialog=True)]
        if request.content_type not in (None, "application/sdp"):
            return [session._respond(request, 415, extra=[("Accept", "application/sdp")])]
        negotiator = session.negotiator
        if negotiator.state is OfferState.LOCAL_OFFER or session.reinvite_pending:
            return [session._respond(request, 491, "Request Pending")]
        if negotiator.state is OfferState.REMOTE_OFFER:  # we owe an answer already
            retry = str(session.options.rng.randint(0, 10))
            return [session._respond(request, 500, "Server Internal Error",
                                     extra=[("Retry-After", retry)])]
        try:
            negotiator.receive_offer(request.body)
            answer, neg = negotiator.create_answer()
        except sdp.NoCommonCodec as exc:
            negotiator.state = OfferState.IDLE
            return [session._respond(request, 488, extra=[
                ("Warning", f'304 softphone "{str(exc)[:100]}"')])]
        except sdp.SdpError as exc:
            negotiator.state = OfferState.IDLE
            return [session._respond(request, 400, f"Malformed SDP: {exc}"[:100])]
        return [session._respond(request, 200, body=answer.to_bytes(), dialog=True),
                Emit(MediaAgreed(neg, early=not session.confirmed,
                                 remote_hold=negotiator.remote_hold))]

    # ------------------------------------------------------------------ sending
    @staticmethod
    def usable(session: InviteSession) -> bool:
        """The far end takes UPDATE in this dialog (its Allow said so)."""
        return session.dialog is not None and session.ended is None and \
            session.remote_allows("UPDATE")

    def update(self, session: InviteSession, now: float, *, direction: str | None = None,
               offer: bool = True, refresh: bool = False) -> list[Action]:
        """Send an UPDATE: with a new offer (``direction``: hold …) or none (a refresh).
        The outcome comes as ReinviteResult(method="UPDATE")."""
        dialog = session.dialog
        if dialog is None or session.ended is not None:
            raise SessionError("UPDATE needs a dialog")
        body = b""
        extra: list[tuple[str, str]] = []
        if offer:
            if not session.can_offer:
                raise SessionError("an offer/answer exchange is in progress; try again")
            body = session.negotiator.create_offer(direction).to_bytes()
            extra.append(("Content-Type", "application/sdp"))
        request = dialog.create_request("UPDATE", contact=session.options.contact, extra=extra,
                                        body=body)

        def done(status: int, reason: str, response: Response | None,
                 at: float) -> list[Action]:
            actions: list[Action] = []
            if response is not None:
                session.learn_capabilities(response)
            if 200 <= status < 300:
                if response is not None and response.contacts:
                    dialog.remote_target = response.contacts[0].uri
                if offer:
                    try:
                        neg = session.negotiator.receive_answer(response.body if response
                                                                else b"")
                    except sdp.SdpError as exc:
                        session.negotiator.cancel_offer()
                        return [Emit(ReinviteResult(False, 488, f"unusable answer: {exc}",
                                                    refresh, "UPDATE"))]
                    actions.append(Emit(MediaAgreed(neg, early=not session.confirmed,
                                                    remote_hold=session.negotiator.remote_hold)))
                return actions + [Emit(ReinviteResult(True, status, reason, refresh, "UPDATE"))]
            if offer:
                session.negotiator.cancel_offer()
            actions.append(Emit(ReinviteResult(False, status, reason, refresh, "UPDATE")))
            if status == 481:  # the far end has no such dialog (RFC 3261 §12.2.1.2)
                actions += session._end(at, "error", status, f"UPDATE: {reason}")
            elif status == 408 and session.confirmed:
                actions += session._bye(at, "error", "UPDATE timed out")
            return actions

        return [session.track(request, on_final=done)]
