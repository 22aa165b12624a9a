"""The dialog table: which usage handles an in-dialog request (RFC 3261 §12.2.2, RFC 5057).

A dialog is identified by Call-ID + local tag + remote tag (a usage still waiting for its
dialog binds an empty remote tag); several usages may share one
(an INVITE session and the subscription a REFER creates, RFC 6665 §4.5.2). A request
goes to the first usage that claims it; a dialog nobody claims the request for answers
405 (481 for a NOTIFY: no such subscription). Responses that outlived their transaction
(a 2xx resent after it ended) are found by Call-ID + our tag.
"""

from __future__ import annotations

from typing import Protocol

from .actions import Action, DialogId
from .errors import SipParseError
from .message import Request, Response

__all__ = ["DialogTable", "DialogUsage", "Route"]


class DialogUsage(Protocol):
    def claims(self, request: Request) -> bool: ...
    def on_request(self, request: Request, now: float) -> list[Action]: ...
    def on_response(self, response: Response, now: float) -> list[Action]: ...
    def on_timeout(self, request: Request, reason: str | None, now: float) -> list[Action]: ...
    def on_timer(self, key: str, now: float) -> list[Action]: ...


class Route:
    """Where an in-dialog request goes: ``usage`` (None when no usage claims it), and
    whether the dialog exists at all (else 481)."""

    __slots__ = ("usage", "dialog_exists")

    def __init__(self, usage: DialogUsage | None, dialog_exists: bool) -> None:
        self.usage = usage
        self.dialog_exists = dialog_exists


class DialogTable:
    def __init__(self) -> None:
        self._by_id: dict[DialogId, list[DialogUsage]] = {}
        self._by_local: dict[tuple[str, str], list[DialogUsage]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def bind(self, dialog_id: DialogId, usage: DialogUsage) -> None:
        usages = self._by_id.setdefault(dialog_id, [])
        if all(u is not usage for u in usages):
            usages.append(usage)
        local = self._by_local.setdefault(dialog_id[:2], [])
        if all(u is not usage for u in local):
            local.append(usage)

    def unbind(self, dialog_id: DialogId, usage: DialogUsage) -> None:
        usages = self._by_id.get(dialog_id)
        if usages is not None:
            usages[:] = [u for u in usages if u is not usage]
            if not usages:
                del self._by_id[dialog_id]
        if not any(u is usage for key, us in self._by_id.items() if key[:2] == dialog_id[:2]
                   for u in us):
            local = self._by_local.get(dialog_id[:2])
            if local is not None:
                local[:] = [u for u in local if u is not usage]
                if not local:
                    del self._by_local[dialog_id[:2]]

    def unbind_all(self, usage: DialogUsage) -> None:
        for dialog_id in [k for k, us in self._by_id.items() if any(u is usage for u in us)]:
            self.unbind(dialog_id, usage)

    def route(self, request: Request) -> Route:
        """The usage for a request with a To tag (ours) and a From tag (theirs)."""
        try:
            key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        except SipParseError:
            return Route(None, False)
        # a usage waiting for its dialog (a NOTIFY may come before the 2xx to our
        # SUBSCRIBE, RFC 6665 §4.1.2.4) binds Call-ID + our tag alone
        usages = self._by_id.get(key) or self._by_id.get((key[0], key[1], ""))
        if not usages:
            return Route(None, False)
        for usage in usages:
            if usage.claims(request):
                return Route(usage, True)
        return Route(None, True)

    def for_response(self, response: Response) -> list[DialogUsage]:
        """Usages that may own a response no transaction matched (by Call-ID + From tag)."""
        try:
            key = (response.call_id, response.from_.tag or "")
        except SipParseError:
            return []
        return list(self._by_local.get(key, ()))

    def usages(self, dialog_id: DialogId) -> list[DialogUsage]:
        return list(self._by_id.get(dialog_id, ()))
