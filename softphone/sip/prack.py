"""Reliable provisional responses: 100rel and PRACK (RFC 3262), both directions, sans-IO.

As UAC we offer ``Supported: 100rel`` (``Require`` in "required" mode) and acknowledge each
reliable provisional (``Require: 100rel`` + ``RSeq``) with a PRACK whose ``RAck`` names it
(§7.2), in order and once per response: a retransmission, or one out of order, is not
processed again (§4). The SDP answer such a response carries is the answer (§5; the
INVITE session keeps it). As UAS, when the INVITE requires 100rel (or supports it and we
require it) our provisional responses go out reliably: ``RSeq`` from a random start,
resent at T1, 2·T1 … until the PRACK that matches (§3), which gets 200 (others 481); after
64·T1 with no PRACK the INVITE is refused 5xx. An INVITE that requires 100rel when we have
it disabled gets 420 from the stack (the tag is not in our capabilities); in "required"
mode an INVITE that does not support it gets 421 Extension Required.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .actions import Action, SendResponse
from .caps import Capabilities, add_token, header_tokens
from .errors import SipParseError
from .invite import InviteExtension, InviteSession
from .message import Request, Response

if TYPE_CHECKING:
    from .dialog import Dialog

__all__ = ["PrackExtension", "MODES", "parse_rack"]

MODES = ("supported", "required", "disabled")
TAG = "100rel"
_RSEQ_MAX = 2**31 - 1
_RNG = random.SystemRandom()  # one for every session (a Random object holds 2.5 KB)


def parse_rack(value: str | None) -> tuple[int, int, str] | None:
    """``RAck: 776656 1 INVITE`` → (776656, 1, "INVITE"), None when malformed."""
    parts = (value or "").split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2].upper()


@dataclass
class _Unacked:
    """Our reliable provisional response waiting for its PRACK (§3)."""

    response: Response
    rseq: int
    interval: float
    give_up_at: float


class PrackExtension(InviteExtension):
    name = "100rel"
    methods = ("PRACK",)

    def __init__(self, mode: str = "supported", rng: random.Random | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"reliable_provisional must be one of {', '.join(MODES)}")
        self.mode = mode
        self.rng = rng or _RNG
        # UAS
        self.reliable = False           # our provisionals go out reliably
        self._next_rseq = self.rng.randint(1, 2**31 // 2)
        self._unacked: _Unacked | None = None
        # UAC: the last RSeq acknowledged, per early dialog (remote tag)
        self._acked: dict[str, int] = {}

    @staticmethod
    def advertise(caps: Capabilities, mode: str) -> None:
        if mode != "disabled":
            caps.add_method("PRACK")
            caps.add_option_tag(TAG)

    # ------------------------------------------------------------------ UAC
    def on_outgoing_request(self, session: InviteSession, request: Request) -> None:
        if request.method == "INVITE" and session.role == "uac" and self.mode == "required" \
                and not session.answered:
            add_token(request, "Require", TAG)

    def on_incoming_response(self, session: InviteSession, response: Response, now: float,
                             actions: list[Action]) -> bool:
        """A reliable provisional already acknowledged (a retransmission) or out of order
        is not processed again (§4)."""
        rseq = self._reliable_rseq(session, response)
        if rseq is None:
            return False
        last = self._acked.get(response.to.tag or "")
        return last is not None and rseq != last + 1

    def on_provisional(self, session: InviteSession, response: Response, dialog: Dialog,
                       now: float) -> list[Action]:
        rseq = self._reliable_rseq(session, response)
        if rseq is None:
            return []
        self._acked[dialog.remote_tag] = rseq
        number = response.cseq[0]
        prack = dialog.create_request("PRACK", extra=[("RAck", f"{rseq} {number} INVITE")])
        return [session.track(prack, on_final=lambda status, reason, resp, at: [],
                              target=dialog.next_hop())]

    @staticmethod
    def _reliable_rseq(session: InviteSession, response: Response) -> int | None:
        if session.role != "uac" or not 100 < response.status < 200 or not response.to.tag:
            return None
        try:
            if response.cseq[1] != "INVITE" or session.invite is None or \
                    response.cseq[0] != session.invite_cseq:
                return None
        except SipParseError:
            return None
        if TAG not in header_tokens(response, "Require"):
            return None
        value = (response.headers.get("RSeq") or "").strip()
        return int(value) if value.isdigit() and 0 < int(value) <= _RSEQ_MAX else None

    # ------------------------------------------------------------------ UAS
    def check_invite(self, session: InviteSession, request: Request
                     ) -> tuple[int, str, list[tuple[str, str]]] | None:
        if self.mode == "disabled":
            return None  # a Require: 100rel was answered 420 before it reached us
        required = TAG in header_tokens(request, "Require")
        supported = required or TAG in header_tokens(request, "Supported")
        if self.mode == "required" and not supported:
            return 421, "Extension Required", [("Require", TAG)]
        self.reliable = required or (supported and self.mode == "required")
        return None

    def on_outgoing_response(self, session: InviteSession, response: Response) -> None:
        if session.role != "uas" or not self.reliable or session.request is None:
            return
        try:
            number, method = response.cseq
        except SipParseError:
            return
        if method != "INVITE" or number != session.request.cseq[0]:
            return
        if response.status >= 200:  # the final answer: nothing more to resend
            if self._unacked is not None:
                self._unacked = None
                session.defer(*session.timers.stop("ext:100rel:resend"))
            return
        if response.status == 100:
            return
        rseq = self._next_rseq
        self._next_rseq = rseq + 1 if rseq < _RSEQ_MAX else 1
        add_token(response, "Require", TAG)
        response.headers.set("RSeq", str(rseq))
        t1 = session.options.timers.t1
        self._unacked = _Unacked(response, rseq, t1, session.now + 64 * t1)
        session.defer(session.timers.start("ext:100rel:resend", session.now + t1))

    def on_timer(self, session: InviteSession, key: str, now: float) -> list[Action]:
        pending = self._unacked
        if key != "resend" or pending is None or session.ended is not None:
            return []
        if now >= pending.give_up_at:  # §3: no PRACK for 64·T1: refuse the INVITE
            self._unacked = None
            return session.reject(now, 500, "No PRACK for the reliable provisional response")
        pending.interval *= 2
        return [SendResponse(pending.response),
                session.timers.start("ext:100rel:resend",
                                     min(now + pending.interval, pending.give_up_at))]

    def on_method(self, session: InviteSession, request: Request, dialog: Dialog,
                  now: float) -> list[Action]:
        pending = self._unacked
        rack = parse_rack(request.headers.get("RAck"))
        if rack is None:
            return [session._respond(request, 400, "Missing or malformed RAck")]
        invite = session.request
        if pending is None or invite is None or \
                rack != (pending.rseq, invite.cseq[0], "INVITE"):
            return [session._respond(request, 481, "Call/Transaction Does Not Exist")]
        self._unacked = None
        return [*session.timers.stop("ext:100rel:resend"), session._respond(request, 200)]
