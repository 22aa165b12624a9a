"""DTMF of a call, both ways: sent the way ``[audio] dtmf_mode`` says (RFC 4733 events
in the media, or SIP INFO application/dtmf-relay one digit at a time), and digits that
arrive by SIP INFO read out of the body (RFC 4733 digits come from the media session).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..sip import events as sev
from ..sip.invite import SessionError
from .errors import CallError

if TYPE_CHECKING:
    from .call import Call

__all__ = ["method", "send", "digits_in_info"]

log = logging.getLogger(__name__)

RELAY = "application/dtmf-relay"


def method(call: "Call") -> str:
    """rfc4733 or info, per [audio] dtmf_mode (auto: RFC 4733 when negotiated)."""
    mode = call.agent.config.audio.dtmf_mode
    if mode != "auto":
        return mode
    neg = call.media.negotiated
    return "rfc4733" if neg is not None and neg.dtmf is not None else "info"


def send(call: "Call", digits: str) -> str:
    """Send DTMF the configured way; returns how (rfc4733 or info)."""
    if call.ended or call.state != "connected":
        raise CallError("DTMF needs a connected call")
    how = method(call)
    if how == "info":
        if call._dtmf_task is not None and not call._dtmf_task.done():
            raise CallError("DTMF digits are still being sent")
        call._dtmf_task = call._spawn(_send_info_digits(call, digits))
        return how
    try:
        call.media.send_dtmf(digits)
    except ValueError as exc:
        raise CallError(f"cannot send DTMF: {exc}") from None
    return how


async def _send_info_digits(call: "Call", digits: str, duration_ms: int = 160) -> None:
    """SIP INFO application/dtmf-relay, one digit at a time, each after the last's
    answer (',' waits a second, as with RFC 4733)."""
    t1 = call.agent.stack.timers.t1
    for digit in digits:
        if call.ended:
            return
        if digit == ",":
            await asyncio.sleep(1.0)
            continue
        body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        done = call._expect(sev.RequestResult, "INFO")
        try:
            call._run(call.session.send_request(call.agent.stack.now(), "INFO", body=body,
                                                content_type=RELAY))
        except SessionError:
            return
        try:
            result = await asyncio.wait_for(asyncio.shield(done), 64 * t1 + 1)
        except asyncio.TimeoutError:
            return
        if result.status >= 300:
            log.warning("call %s: DTMF INFO refused: %s %s", call.call_id, result.status,
                        result.reason)
            return


def digits_in_info(event: sev.InfoReceived) -> list[str]:
    """The digits of an INFO the far end sent (``Signal=5``); none for other bodies."""
    if event.content_type != RELAY:
        return []
    digits = []
    for line in event.body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "signal" and value.strip():
            digits.append(value.strip()[0])
    return digits
