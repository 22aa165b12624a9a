"""The Replaces header (RFC 3891), sans-IO: which dialog an INVITE takes over.

An attended transfer ends with the transferee sending the target an INVITE whose
``Replaces: <call-id>;to-tag=<the target's tag>;from-tag=<the other tag>`` names the
target's dialog with the transferor (both tags as the target sees them: ``to-tag`` is
its local tag). The target answers the new INVITE at once and ends the old dialog. §3's
rules for the answer when that cannot be done: no such dialog, or an early one the
target did not start → 481; the dialog is over → 603; ``early-only`` and the dialog is
already confirmed → 486.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .errors import SipParseError

if TYPE_CHECKING:
    from .invite import InviteSession

__all__ = ["Replaces", "verdict"]


@dataclass(frozen=True)
class Replaces:
    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, value: str) -> "Replaces":
        """``abc@host;to-tag=1;from-tag=2[;early-only]`` (also %-escaped, as it comes out
        of a Refer-To URI). Raises SipParseError."""
        text = value.strip()
        if ";" not in text and "%" in text:  # still escaped as in a URI header
            text = unquote(text)
        call_id, *params = [p.strip() for p in text.split(";")]
        tags: dict[str, str | None] = {}
        for param in params:
            name, eq, val = param.partition("=")
            tags[name.strip().lower()] = val.strip() if eq else None
        to_tag, from_tag = tags.get("to-tag"), tags.get("from-tag")
        if not call_id or not to_tag or not from_tag:
            raise SipParseError(f"Replaces needs a Call-ID, to-tag and from-tag: {value!r}")
        return cls(call_id, to_tag, from_tag, "early-only" in tags)

    @classmethod
    def for_session(cls, session: "InviteSession") -> "Replaces":
        """The header that makes the far end of ``session`` take its dialog over: its
        local tag is our remote tag (RFC 3891 §3)."""
        if session.remote_tag is None:
            raise ValueError("the call has no dialog yet")
        return cls(session.call_id, session.remote_tag, session.local_tag)

    def __str__(self) -> str:
        out = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        return out + (";early-only" if self.early_only else "")

    def matches(self, session: "InviteSession") -> bool:
        """The INVITE with this header is for ``session``'s dialog (or one of its forks)."""
        if session.call_id != self.call_id or session.local_tag != self.to_tag:
            return False
        return session.remote_tag == self.from_tag or self.from_tag in session.forks.early


def verdict(replaces: Replaces, session: "InviteSession | None") -> tuple[int, str] | None:
    """None when the INVITE may replace ``session``; else the status to refuse it with."""
    from .invite import InviteState

    if session is None or not replaces.matches(session):
        return 481, "Call/Transaction Does Not Exist"
    if session.ended is not None or session.state is InviteState.DISCONNECTED:
        return 603, "Decline"
    if session.confirmed:
        if replaces.early_only:
            return 486, "Busy Here"
        return None
    if session.role == "uac" and session.state in (InviteState.CALLING, InviteState.EARLY):
        return None  # our own early outgoing call: it may be replaced
    return 481, "Call/Transaction Does Not Exist"  # an early dialog we did not start
