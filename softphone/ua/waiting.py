"""Call waiting and swap: a call that rings in during another one.

It rings with a call-waiting tone laid over what we hear of the active calls (not the
full ring: `alerts`), and the faces show it as waiting. Answering it (by the user: not an
auto-answer) first holds the calls that are active, then answers. Swap holds the active
call and resumes a held one. With ``[calls] call_waiting = false`` such a call is refused
486 Busy Here instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CallError

if TYPE_CHECKING:
    from .agent import UserAgent
    from .call import Call

__all__ = ["active_calls", "has_active_call", "ringing_calls", "busy", "answer", "swap"]


def _active(call: "Call", but: "Call | None") -> bool:
    return call is not but and not call.ended and call.state == "connected" and \
        not call.on_hold


def active_calls(agent: "UserAgent", *, but: "Call | None" = None) -> list["Call"]:
    """Connected calls we are talking on (not held by us)."""
    return [c for c in agent.calls.values() if _active(c, but)]


def has_active_call(agent: "UserAgent", *, but: "Call | None" = None) -> bool:
    """``active_calls`` is not empty (stops at the first one)."""
    return any(_active(c, but) for c in agent.calls.values())


def ringing_calls(agent: "UserAgent") -> list["Call"]:
    return [c for c in agent.calls.values() if not c.ended and c.direction == "incoming"
            and c.state == "ringing" and c.announced]


def busy(agent: "UserAgent") -> bool:
    """A new call would be a waiting call, and call waiting is off: refuse it."""
    return not agent.config.calls.call_waiting and any(
        not c.ended and c.state in ("connected", "ending") for c in agent.calls.values())


async def answer(agent: "UserAgent", call: "Call") -> None:
    """Answer ``call``; the calls we are talking on are held first."""
    for other in active_calls(agent, but=call):
        if other.in_conference:
            continue  # a conference stays up; the new call joins the user's ear
        try:
            await other.set_hold(True)
        except CallError as exc:
            raise CallError(f"cannot hold the current call to answer: {exc}") from None
    call.answer()


async def swap(agent: "UserAgent", to: "Call | None" = None) -> tuple["Call", "Call"]:
    """Hold the active call, resume a held one (``to``, or the one held longest)."""
    held = [c for c in agent.calls.values()
            if not c.ended and c.state == "connected" and c.on_hold]
    if to is not None and to.on_hold:
        target = to
    elif held:
        target = held[0]
    else:
        raise CallError("no held call to swap to")
    active = active_calls(agent, but=target)
    if not active:
        raise CallError("no active call to swap from")
    for call in active:
        await call.set_hold(True)
    await target.set_hold(False)
    return target, active[0]
