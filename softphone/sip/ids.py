"""Identifiers a UA invents: tags, branches, Call-IDs (RFC 3261 §19.3, §8.1.1.7).

Random and unguessable (from ``secrets``): a predictable tag or Call-ID lets a stranger
inject requests into a dialog, and a predictable branch lets one answer our requests.
"""

from __future__ import annotations

import secrets

__all__ = ["new_tag", "new_branch", "new_call_id", "MAGIC_COOKIE"]

MAGIC_COOKIE = "z9hG4bK"


def new_tag() -> str:
    return secrets.token_hex(5)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_call_id(host: str = "softphone") -> str:
    return f"{secrets.token_hex(12)}@{host}"
