"""Our in-dialog non-INVITE requests awaiting their answers, for an INVITE session: BYE,
INFO, and the extensions' PRACK, UPDATE and REFER.

Each gets one digest retry when challenged (RFC 3261 §22.2, with the dialog's next
CSeq); then its final answer goes to the request's ``on_final`` (an extension's) or comes
out as a :class:`~softphone.sip.events.RequestResult`; a timeout or a transport error
alike, as 408. The session sends; this remembers what is outstanding and what came of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .actions import Action, Emit, SendRequest
from .events import RequestResult
from .message import Request, Response
from .uri import SipUri

if TYPE_CHECKING:
    from .auth import DigestClient

__all__ = ["DialogRequests", "OnFinal"]

OnFinal = Callable[[int, str, "Response | None", float], "list[Action]"]
"""Called with the final answer to a request an extension sent (status, reason, the
response or None when it timed out, now); returns the actions to carry out."""

Send = Callable[[Request, "SipUri | None"], SendRequest]
Retry = Callable[[Request, Response, "DigestClient | None"], "Request | None"]


@dataclass
class _Outstanding:
    """A non-INVITE request of ours in the dialog awaiting its answer."""

    request: Request
    chain: "DigestClient | None"
    retried: bool = False  # one digest retry per request
    on_final: OnFinal | None = None  # an extension's request: its answer goes there
    target: SipUri | None = None     # where it went (an early dialog's next hop)


class DialogRequests:
    """``send`` puts a request on its way (to ``target``, else the dialog's next hop);
    ``retry`` answers a challenge (None: none to answer); ``new_chain`` starts a digest
    chain for a request (None without credentials)."""

    def __init__(self, send: Send, retry: Retry,
                 new_chain: Callable[[], "DigestClient | None"]) -> None:
        self._send = send
        self._retry = retry
        self._new_chain = new_chain
        self._waiting: dict[tuple[int, str], _Outstanding] = {}  # (CSeq, method)

    def track(self, request: Request, on_final: OnFinal | None = None,
              target: SipUri | None = None) -> SendRequest:
        """Send ``request`` and follow its answer."""
        self._waiting[(request.cseq[0], request.method)] = _Outstanding(
            request, self._new_chain(), on_final=on_final, target=target)
        return self._send(request, target)

    def on_response(self, response: Response, number: int, method: str,
                    now: float) -> list[Action]:
        job = self._waiting.get((number, method))
        if job is None or response.status < 200:
            return []
        del self._waiting[(number, method)]
        retry = None if job.retried else self._retry(job.request, response, job.chain)
        if retry is not None:
            self._waiting[(retry.cseq[0], method)] = _Outstanding(
                retry, job.chain, True, job.on_final, job.target)
            return [self._send(retry, job.target)]
        if job.on_final is not None:
            return job.on_final(response.status, response.reason, response, now)
        return [Emit(RequestResult(method, response.status, response.reason))]

    def on_timeout(self, number: int, method: str, reason: str | None,
                   now: float) -> list[Action]:
        job = self._waiting.pop((number, method), None)
        if job is None:
            return []  # a CANCEL, or the BYE to a fork we released
        if job.on_final is not None:
            return job.on_final(408, reason or "Request Timeout", None, now)
        return [Emit(RequestResult(method, 408, reason or "Request Timeout"))]
