"""Call transfer with REFER (RFC 3515), Referred-By (RFC 3892) and Refer-Sub (RFC 4488),
sans-IO: the REFER method on the INVITE session, and the "refer" event package.

Transferor: :meth:`ReferExtension.refer` sends ``REFER`` in the call's dialog with
``Refer-To`` (for an attended transfer its URI carries ``?Replaces=…``, RFC 3891 §5) and
``Referred-By``; a :class:`ReferSubscriber` (the implicit subscription, §2.4.4) takes the
NOTIFYs whose ``message/sipfrag`` bodies say how the new call goes (:func:`parse_sipfrag`).
The final answer to the REFER comes as :class:`~softphone.sip.events.ReferResult`.

Transferee: a REFER in the dialog (never outside one: the UA refuses those) is checked
(exactly one ``Refer-To``, a SIP URI, §2.4.1) and accepted with 202, or declined with 603
when the user does not take transfers. Accepted, it becomes a
:class:`~softphone.sip.events.ReferReceived` with the :class:`Notifier` of the implicit
subscription; the UA calls the target and reports each step with :func:`report`
(``SIP/2.0 100 Trying`` at once, §2.4.4; the final status ends the subscription). A REFER
with ``Refer-Sub: false`` gets ``Refer-Sub: false`` back and no subscription (RFC 4488 §4).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .actions import Action, Emit
from .caps import Capabilities
from .errors import SipParseError
from .events import ReferReceived, ReferResult
from .invite import InviteExtension, InviteSession, SessionError
from .message import REASON_PHRASES, Request, Response
from .subscription import EventPackage, Notifier, Subscriber, SubscriptionOptions, event_of
from .uri import NameAddr, SipUri, parse_name_addr

if TYPE_CHECKING:
    from .dialog import Dialog

__all__ = ["ReferExtension", "ReferSubscriber", "REFER_PACKAGE", "parse_sipfrag", "sipfrag",
           "report", "refer_target"]

REFER_PACKAGE = EventPackage("refer", accept=("message/sipfrag",), default_expires=120,
                             min_expires=1, subscribable=False)
SIPFRAG = "message/sipfrag;version=2.0"
_STATUS_LINE = re.compile(r"\s*SIP/2\.0\s+(\d{3})(?:[ \t]+([^\r\n]*))?")


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The NOTIFY body for a status of the new call (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason or REASON_PHRASES.get(status, '')}".rstrip().encode() \
        + b"\r\n"


def parse_sipfrag(body: bytes) -> tuple[int, str] | None:
    """The status line of a ``message/sipfrag`` body, None when it has none."""
    match = _STATUS_LINE.match(body.decode("utf-8", "replace"))
    if match is None:
        return None
    return int(match.group(1)), (match.group(2) or "").strip()


def refer_target(value: str) -> NameAddr:
    """The Refer-To value as a name-addr (a bare URI is allowed, §2.1). Raises
    SipParseError."""
    value = value.strip()
    if not value.startswith("<") and "<" not in value:
        value = f"<{value}>"
    return parse_name_addr(value)


class ReferSubscriber(Subscriber):
    """The transferor's side of the implicit subscription: NOTIFYs with ``Event: refer``,
    with no id or the id of our REFER's CSeq (§2.4.6: peers differ on the first one)."""

    def __init__(self, options: SubscriptionOptions, dialog: Dialog, refer_cseq: int,
                 expires: int = REFER_PACKAGE.default_expires) -> None:
        super().__init__(REFER_PACKAGE, options, dialog=dialog, implicit=True, expires=expires)
        self.refer_cseq = refer_cseq

    def claims(self, request: Request) -> bool:
        if request.method != "NOTIFY":
            return False
        package, ident = event_of(request)
        return package == "refer" and ident in (None, str(self.refer_cseq))


def report(notifier: Notifier, now: float, status: int, reason: str | None = None
           ) -> list[Action]:
    """A NOTIFY with the new call's status; a final one ends the subscription."""
    final = status >= 200
    return notifier.notify(now, sipfrag(status, reason), SIPFRAG, final=final,
                           reason="noresource")


class ReferExtension(InviteExtension):
    name = "refer"
    methods = ("REFER",)

    def __init__(self, accept: bool = True, *, subscription: SubscriptionOptions | None = None,
                 expires: int = REFER_PACKAGE.default_expires) -> None:
        self.accept = accept
        self.subscription = subscription  # contact, timers … for the notifiers we make
        self.expires = expires
        self.last_cseq: int | None = None  # of the REFER we sent last
        self._refers_seen = 0

    @staticmethod
    def advertise(caps: Capabilities) -> None:
        caps.add_method("REFER", "NOTIFY")
        caps.add_event("refer")
        caps.add_option_tag("norefersub")
        caps.add_accept("message/sipfrag")

    # ------------------------------------------------------------------ transferor
    def refer(self, session: InviteSession, now: float, target: SipUri | str, *,
              referred_by: str | None = None, replaces: str | None = None) -> list[Action]:
        """REFER the far end to ``target`` (with ``replaces``: attended, RFC 3891 §5).
        Returns the actions; the REFER's CSeq is :attr:`last_cseq`."""
        dialog = session.dialog
        if dialog is None or session.ended is not None or not session.confirmed:
            raise SessionError("transfer needs a connected call")
        uri = target if isinstance(target, SipUri) else refer_target(target).uri
        if not isinstance(uri, SipUri):
            raise SessionError(f"cannot transfer to {target}: not a SIP URI")
        if replaces:
            uri = uri.with_(headers={**uri.headers, "Replaces": replaces})
        extra = [("Refer-To", f"<{uri}>")]
        if referred_by:
            extra.append(("Referred-By", f"<{referred_by}>"))
        request = dialog.create_request("REFER", contact=session.options.contact, extra=extra)
        self.last_cseq = request.cseq[0]

        def done(status: int, reason: str, response: Response | None,
                 at: float) -> list[Action]:
            subscription = True
            if response is not None and 200 <= status < 300:
                subscription = (response.headers.get("Refer-Sub") or "").strip().lower() \
                    != "false"
            return [Emit(ReferResult(status, reason, subscription))]

        return [session.track(request, on_final=done)]

    # ------------------------------------------------------------------ transferee
    def on_method(self, session: InviteSession, request: Request, dialog: Dialog,
                  now: float) -> list[Action]:
        values = request.headers.get_all("Refer-To")
        if len(values) != 1:  # §2.4.1: exactly one
            return [session._respond(request, 400, "Exactly one Refer-To header needed")]
        try:
            target = refer_target(values[0])
        except SipParseError:
            return [session._respond(request, 400, "Malformed Refer-To")]
        uri = target.uri
        if not isinstance(uri, SipUri) or uri.scheme not in ("sip", "sips"):
            return [session._respond(request, 416, "Refer-To is not a SIP URI")]
        method = (uri.params.get("method") or "INVITE").upper()
        if method != "INVITE":
            return [session._respond(request, 501, f"REFER for {method} not supported")]
        headers = {k.lower(): v for k, v in uri.headers.items()}
        replaces = headers.get("replaces")
        referred_by = request.headers.get("Referred-By")
        if not self.accept or not session.confirmed:
            reason = "Transfer declined" if not self.accept else "Call not established"
            return [session._respond(request, 603, reason),
                    Emit(ReferReceived(target, referred_by, replaces, False))]
        self._refers_seen += 1
        no_sub = (request.headers.get("Refer-Sub") or "").strip().lower() == "false"
        extra = [("Refer-Sub", "false")] if no_sub else []
        actions: list[Action] = [session._respond(request, 202, "Accepted", extra=extra)]
        notifier = None
        if not no_sub:
            options = self.subscription or SubscriptionOptions(
                contact=session.options.contact, transport=session.options.transport,
                timers=session.options.timers, caps=session.options.caps,
                user_agent=session.options.user_agent)
            # §2.4.6: the second and later REFERs in a dialog get id=<CSeq> in their NOTIFYs
            event_id = str(request.cseq[0]) if self._refers_seen > 1 else None
            notifier = Notifier(REFER_PACKAGE, options, dialog, expires=self.expires,
                                event_id=event_id, implicit=True)
        plain = target.uri.with_(headers={}, params={k: v for k, v in uri.params.items()
                                                     if k != "method"})
        actions.append(Emit(ReferReceived(NameAddr(plain, target.display_name), referred_by,
                                          replaces, True, notifier)))
        return actions
