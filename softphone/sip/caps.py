"""What this UA can do, as peers see it: Allow, Supported, Allow-Events, Accept.

Assembled from the parts that are enabled (as ``pjsip_endpt_add_capability``): the
INVITE session adds its methods, each extension its option tag, each subscription
package its event. A Require naming a tag nobody added gets a 420 (RFC 3261 §8.2.2.3).
The option-tag lists of a message (what a peer says it supports or requires) are read
and written with :func:`header_tokens` and :func:`add_token`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request, Response

__all__ = ["Capabilities", "header_tokens", "add_token"]


def _add(items: list[str], value: str) -> None:
    if value.lower() not in (v.lower() for v in items):
        items.append(value)


@dataclass
class Capabilities:
    methods: list[str] = field(default_factory=list)
    option_tags: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    accept: list[str] = field(default_factory=list)

    def add_method(self, *methods: str) -> None:
        for m in methods:
            _add(self.methods, m.upper())

    def add_option_tag(self, *tags: str) -> None:
        for t in tags:
            _add(self.option_tags, t)

    def add_event(self, *events: str) -> None:
        for e in events:
            _add(self.events, e)

    def add_accept(self, *types: str) -> None:
        for t in types:
            _add(self.accept, t)

    def allows(self, method: str) -> bool:
        return method.upper() in self.methods

    def supports(self, tag: str) -> bool:
        return tag.lower() in (t.lower() for t in self.option_tags)

    @property
    def allow(self) -> str:
        return ", ".join(self.methods)

    @property
    def supported(self) -> str:
        return ", ".join(self.option_tags)

    @property
    def allow_events(self) -> str:
        return ", ".join(self.events)

    def unsupported(self, required: list[str]) -> list[str]:
        """The option tags of a Require header we do not support (for 420 Unsupported)."""
        return [tag for tag in (t.strip() for t in required) if tag and not self.supports(tag)]

    def advertised(self) -> list[tuple[str, str]]:
        """Allow / Supported / Allow-Events headers for requests and dialog responses."""
        headers = [("Allow", self.allow)]
        if self.option_tags:
            headers.append(("Supported", self.supported))
        if self.events:
            headers.append(("Allow-Events", self.allow_events))
        return headers

    def options_headers(self) -> list[tuple[str, str]]:
        """What a 200 to OPTIONS says (RFC 3261 §11.2)."""
        return [*self.advertised(), ("Accept", ", ".join(self.accept) or "application/sdp"),
                ("Accept-Encoding", "identity"), ("Accept-Language", "en"),
                *([] if self.option_tags else [("Supported", "")])]


def header_tokens(message: "Request | Response", name: str) -> set[str]:
    """The option tags (or methods) of a list header, lower-cased."""
    return {v.strip().lower() for v in message.headers.get_all(name) if v.strip()}


def add_token(message: "Request | Response", name: str, token: str) -> None:
    """Add an option tag to a list header (Require, Supported), once."""
    values = [v.strip() for v in message.headers.get_all(name) if v.strip()]
    if token.lower() not in (v.lower() for v in values):
        message.headers.set(name, ", ".join([*values, token]))
