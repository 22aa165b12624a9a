"""The one exception type the SIP parsers raise."""

from __future__ import annotations

__all__ = ["SipParseError"]


class SipParseError(ValueError):
    """Bytes that are not a valid SIP message (or part of one).

    ``partial`` holds what could be read (a Request with its headers) so the transport can
    still answer 400 with the reason; it is None when nothing useful was read.
    """

    def __init__(self, reason: str, partial: object | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
