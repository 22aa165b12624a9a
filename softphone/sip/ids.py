"""Identifiers a UA invents: tags, branches, Call-IDs (RFC 3261 §19.3, §8.1.1.7).

Random and unguessable (from ``secrets``): a predictable tag or Call-ID lets a stranger
inject requests into a dialog, and a predictable branch lets one answer our requests.
"""

from __future__ import annotations

import secrets

__all__ = ["new_tag", "new_branch", "new_call_id", "set_call_id_host", "MAGIC_COOKIE"]

MAGIC_COOKIE = "z9hG4bK"


def new_tag() -> str:
    return secrets.token_hex(5)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


_call_id_host = "softphone"


def set_call_id_host(host: str) -> None:
    """The part after '@' of the Call-IDs this process makes. A worker of
    ``answer --workers`` says which it is there, so the dispatcher in front of it sends
    the answers to its requests (and the requests in its dialogs) back to it."""
    global _call_id_host
    _call_id_host = host


def new_call_id(host: str | None = None) -> str:
    return f"{secrets.token_hex(12)}@{host or _call_id_host}"
