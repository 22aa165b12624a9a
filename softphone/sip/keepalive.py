"""Keep-alive OPTIONS to the next hop (the registrar or outbound proxy), sans-IO.

Over UDP a CRLF keeps a NAT binding open but nobody answers it: a dead server or a NAT
that gave us a new binding goes unnoticed until the next re-REGISTER. An OPTIONS to the
next hop is answered (any status will do: the hop is alive), and the answer's top Via
says, through ``received``/``rport``, the address the hop sees us at now. The schedule
(every N seconds) is the account's; this builds and tracks one request at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import Action, Emit, SendRequest
from .errors import SipParseError
from .ids import new_branch, new_call_id, new_tag
from .message import Headers, Request, Response
from .uri import SipUri

__all__ = ["OptionsPing", "PingAnswered", "PingFailed", "via_address"]


@dataclass(frozen=True)
class PingAnswered:
    response: Response


@dataclass(frozen=True)
class PingFailed:
    reason: str


def via_address(response: Response) -> tuple[str, str | None, int | None]:
    """(transport, received host or None, rport or None) from our Via in ``response``."""
    via = response.top_via
    received = via.params.get("received") or None
    rport = via.params.get("rport")
    return via.transport.lower(), received, int(rport) if rport and rport.isdigit() else None


class OptionsPing:
    fail_fast = True  # an ICMP "nothing listens" fails the ping at once (no retransmitting)

    def __init__(self, aor: SipUri, hop: SipUri, *, transport: str | None = None,
                 user_agent: str | None = None) -> None:
        self.aor = aor.with_(params={}, headers={})
        self.hop = hop.with_(params={k: v for k, v in hop.params.items() if k == "transport"},
                             headers={})
        self.transport = transport
        self.user_agent = user_agent
        self.call_id = new_call_id()
        self.tag = new_tag()
        self.cseq = 0
        self._sent: int | None = None  # CSeq in flight

    def ping(self, now: float, target: SipUri | None = None) -> list[Action]:
        """One OPTIONS now (none while the previous one is still out), to ``target``:
        the very server the registration went to (a keep-alive tests that flow, so it
        must not fail over to another server)."""
        if self._sent is not None:
            return []
        self.cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self.tag}")
        headers.add("To", f"<{self.hop}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} OPTIONS")
        if self.user_agent:
            headers.add("User-Agent", self.user_agent)
        self._sent = self.cseq
        return [SendRequest(Request("OPTIONS", str(self.hop), headers), target or self.hop,
                            new_branch(), self.transport)]

    def on_response(self, response: Response, now: float) -> list[Action]:
        try:
            cseq = response.cseq[0]
        except SipParseError:
            return []
        if cseq != self._sent or response.status < 200:
            return []
        self._sent = None
        return [Emit(PingAnswered(response))]

    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]:
        try:
            cseq = request.cseq[0]
        except SipParseError:
            return []
        if cseq != self._sent:
            return []
        self._sent = None
        return [Emit(PingFailed(reason or "no answer to the keep-alive OPTIONS"))]

    def on_timer(self, key: str, now: float) -> list[Action]:
        return []

    def on_request(self, request: Request, now: float) -> list[Action]:
        return []
