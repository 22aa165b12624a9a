"""Dialogs (RFC 3261 §12): identity, CSeq spaces, route set, remote target.

A Dialog builds the in-dialog requests (BYE, re-INVITE, ACK for 2xx) so that they follow the
route set the proxies recorded; forgetting that is why in-dialog requests bypass proxies and
fail their loose_route checks. Also here: the UAS-side 2xx retransmission schedule (§13.3.1.4),
which belongs to the dialog, not to the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError
from .message import Headers, Request, Response
from .uri import NameAddr, SipUri, parse_name_addr

__all__ = ["Dialog", "DialogError", "AnswerRetransmission", "next_hop"]


class DialogError(Exception):
    """A request that does not fit the dialog (e.g. CSeq going backwards → 500)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _route_uri(value: str) -> SipUri:
    return parse_name_addr(value).uri


def next_hop(request_uri: SipUri, route_set: list[str]) -> SipUri:
    """Where a request goes first: the top Route if any, else the Request-URI (§8.1.2)."""
    return _route_uri(route_set[0]) if route_set else request_uri


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    local_cseq: int
    remote_cseq: int | None = None
    route_set: list[str] = field(default_factory=list)
    secure: bool = False
    state: str = "early"  # early | confirmed | terminated
    is_uac: bool = True

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def from_uac(cls, request: Request, response: Response) -> "Dialog":
        """Dialog created by a 1xx (early) or 2xx (confirmed) with a To tag (§12.1.2)."""
        to = response.to
        if not to.tag:
            raise SipParseError("response creates no dialog: To has no tag")
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.request_uri
        from_ = request.from_
        return cls(
            call_id=request.call_id,
            local_tag=from_.tag or "",
            remote_tag=to.tag,
            local_uri=NameAddr(from_.uri, from_.display_name),
            remote_uri=NameAddr(to.uri, to.display_name),
            remote_target=target,
            local_cseq=request.cseq[0],
            route_set=list(reversed(response.record_routes)),
            secure=request.request_uri.scheme == "sips",
            state="confirmed" if 200 <= response.status < 300 else "early",
            is_uac=True,
        )

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, local_cseq: int = 0) -> "Dialog":
        """Dialog created when we answer an INVITE (§12.1.1): route set in order."""
        contacts = request.contacts
        from_ = request.from_
        to = request.to
        if not contacts:
            # RFC 3261 §8.1.1.8 requires one; RFC 2543 did not, and a UAS keeps working
            # with such peers by sending its requests to the From address (RFC 4475 §3.4.1)
            if request.headers.get("Contact") is not None or not isinstance(from_.uri, SipUri):
                raise DialogError(400, "Missing Contact header")
            contacts = [NameAddr(from_.uri.with_(params={}, headers={}))]
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            local_uri=NameAddr(to.uri, to.display_name),
            remote_uri=NameAddr(from_.uri, from_.display_name),
            remote_target=contacts[0].uri,
            local_cseq=local_cseq,
            remote_cseq=request.cseq[0],
            route_set=list(request.record_routes),
            secure=request.request_uri.scheme == "sips",
            state="early",
            is_uac=False,
        )

    # -- updates ----------------------------------------------------------------------------
    def on_response(self, response: Response) -> None:
        """A 1xx/2xx to our INVITE or re-INVITE: confirm, refresh the target (§12.2.1.2)."""
        if 200 <= response.status < 300:
            if self.state == "early" and self.is_uac:
                # the 2xx's Record-Route is authoritative (§13.2.2.4)
                self.route_set = list(reversed(response.record_routes))
            self.state = "confirmed"
        contacts = response.contacts
        if contacts and response.cseq[1] == "INVITE":
            self.remote_target = contacts[0].uri

    def on_request(self, request: Request) -> None:
        """Check and absorb an in-dialog request (§12.2.2). Raises DialogError."""
        number, method = request.cseq
        if method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and number < self.remote_cseq:
                raise DialogError(500, "CSeq out of order")
            self.remote_cseq = number
        if method == "INVITE":
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    # -- building requests ------------------------------------------------------------------
    def request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route values per §12.2.1.1, loose and strict routing."""
        if self.route_set:
            first = _route_uri(self.route_set[0])
            if "lr" not in first.params:
                # strict router: it goes in the Request-URI, the target at the end
                routes = self.route_set[1:] + [f"<{self.remote_target}>"]
                # only `method` is barred from a Request-URI (RFC 3261 §19.1.1, table 1)
                return str(first.with_(params={k: v for k, v in first.params.items()
                                               if k != "method"}, headers={})), routes
        return str(self.remote_target), list(self.route_set)

    def next_hop(self) -> SipUri:
        """Where an in-dialog request is sent first."""
        if self.route_set:
            return _route_uri(self.route_set[0])
        return self.remote_target

    def create_request(self, method: str, *, contact: str | None = None,
                       extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                       cseq: int | None = None) -> Request:
        """An in-dialog request without Via (the UA adds it with a fresh branch)."""
        method = method.upper()
        if cseq is None:
            if method in ("ACK", "CANCEL"):
                cseq = self.local_cseq
            else:
                self.local_cseq += 1
                cseq = self.local_cseq
        uri, routes = self.request_target()
        headers = Headers()
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        headers.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact and method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.add("Contact", contact)
        for name, value in extra or ():
            headers.add(name, value)
        return Request(method, uri, headers, body)

    def create_ack(self, invite_cseq: int, body: bytes = b"",
                   extra: list[tuple[str, str]] | None = None) -> Request:
        """ACK for a 2xx: its own transaction-less request with the INVITE's CSeq number."""
        return self.create_request("ACK", cseq=invite_cseq, body=body, extra=extra)


class AnswerRetransmission:
    """UAS 2xx retransmission until the ACK comes (§13.3.1.4): T1, 2·T1 … capped at T2.

    Gives up after 64·T1; the UA then ends the call with a BYE.
    """

    def __init__(self, now: float, t1: float = 0.5, t2: float = 4.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.interval = t1
        self.deadline = now + t1
        self.give_up_at = now + 64 * t1
        self.acked = False

    def on_timer(self, now: float) -> str:
        """'retransmit' (and the next deadline is set), 'give-up', or 'idle'."""
        if self.acked:
            return "idle"
        if now >= self.give_up_at:
            return "give-up"
        if now < self.deadline:
            return "idle"
        self.interval = min(self.interval * 2, self.t2)
        self.deadline = min(now + self.interval, self.give_up_at)
        return "retransmit"

    def on_ack(self) -> None:
        self.acked = True
