"""The errors the phone's commands raise (light: no protocol or media import)."""

from __future__ import annotations

__all__ = ["CallError"]


class CallError(Exception):
    """A call command that cannot be done (bad target, unreachable, wrong state …)."""
