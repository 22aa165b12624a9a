"""Hold and resume of a call: a re-INVITE offering sendonly (or sendrecv again), or
before the answer an UPDATE (RFC 3311 §5.1); the media sends silence while held.

A refused re-INVITE leaves the session as it was (RFC 3261 §14.1) and raises CallError;
a 491 is retried after §14.1's wait by the session itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..sip import events as sev
from ..sip.invite import SessionError
from . import alerts
from . import events as ev
from .errors import CallError

if TYPE_CHECKING:
    from .call import Call

__all__ = ["set_hold"]


async def set_hold(call: "Call", hold: bool) -> None:
    early = call.state == "early" and call.direction == "outgoing"
    if call.ended or not (call.state == "connected" or early):
        raise CallError("hold needs a connected call")
    if hold == call.on_hold:
        return
    if call._hold_busy:
        raise CallError("a hold or resume is already in progress")
    session = call.session
    update = session.ext("update")
    if early and (update is None or not update.usable(session)):
        raise CallError("hold before the answer needs a peer that takes UPDATE")
    call._hold_busy = True
    try:
        done = call._expect(sev.ReinviteResult)
        direction = "sendonly" if hold else "sendrecv"
        now = call.agent.stack.now()
        try:
            if early:  # RFC 3311 §5.1: an early dialog changes its session with UPDATE
                call._run(update.update(session, now, direction=direction))
            else:
                call._run(session.reinvite(now, direction))
        except SessionError as exc:
            raise CallError(str(exc)) from None
        try:
            result = await asyncio.wait_for(asyncio.shield(done),
                                            64 * call.agent.stack.timers.t1 + 15)
        except asyncio.TimeoutError:
            raise CallError("no answer to the re-INVITE") from None
        if not result.ok:
            if call.ended:
                raise CallError("the call ended")
            raise CallError(f"{result.status} {result.reason}".rstrip())
    finally:
        call._hold_busy = False
    call.on_hold = hold
    call.media.set_held(hold)
    call._publish(ev.Hold(call.call_id, call.on_hold, call.remote_hold))
    alerts.refresh(call.agent)
