"""The local 3-way (or N-way) conference: the calls we join hear each other and us.

Held calls are resumed first; each call's audio path then goes through one
:class:`~softphone.media.conference.ConferenceBridge` (mixing at the common rate).
Split gives every call its own audio back, all of them still connected. A call that
ends leaves the conference; with one call left it is over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .errors import CallError

if TYPE_CHECKING:
    from .agent import UserAgent
    from .call import Call

__all__ = ["LocalConference"]


class LocalConference:
    def __init__(self, agent: "UserAgent") -> None:
        from ..media.conference import ConferenceBridge

        self.agent = agent
        self.bridge = ConferenceBridge()
        self.calls: dict[str, "Call"] = {}

    @property
    def call_ids(self) -> list[str]:
        return list(self.calls)

    async def join(self, calls: list["Call"]) -> list[str]:
        for call in calls:
            if call.ended or call.state != "connected":
                raise CallError(f"call {call.call_id} is not connected ({call.state})")
        for call in calls:
            if call.on_hold:
                await call.set_hold(False)
        for call in calls:
            if call.call_id in self.calls:
                continue
            try:
                call.media.join(self.bridge, call.call_id)
            except ValueError as exc:
                raise CallError(f"call {call.call_id}: {exc}") from None
            self.calls[call.call_id] = call
        self.agent.publish(ev.Conference(self.call_ids, "joined"))
        return self.call_ids

    def split(self) -> list[str]:
        ids = self.call_ids
        for call in self.calls.values():
            call.media.leave(call.call_id)
        self.calls.clear()
        self.agent.publish(ev.Conference(ids, "split"))
        return ids

    def left(self, call: "Call") -> None:
        """``call`` ended: out of the mix; with one call left the conference is over."""
        if self.calls.pop(call.call_id, None) is None:
            return
        call.media.leave(call.call_id)
        if len(self.calls) < 2:
            self.split()
        else:
            self.agent.publish(ev.Conference(self.call_ids, "left"))
