"""The sans-IO SIP core: plain typed Python, compiled with mypyc where it is hot.

``make setup`` compiles the modules in :data:`COMPILED` (softphone/native.py) into
``_compiled/`` beside them, with a stamp of the sources it compiled. That directory goes
first on this package's path only while the stamp matches the sources, so an edited
module is never shadowed by a stale build: the pure module is the fallback, and
``SOFTPHONE_PURE=1`` forces it (to measure or test both ways).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

COMPILED = ("errors", "uri", "message", "sdes", "sdp", "transaction")
"""The modules softphone/native.py compiles (the parser and the per-packet path)."""

COMPILED_DIR = Path(__file__).resolve().with_name("_compiled")


def source_stamp() -> str:
    """What the compiled modules were built from: a hash of each source's bytes."""
    here = Path(__file__).resolve().parent
    lines = [f"{name} {hashlib.sha256((here / f'{name}.py').read_bytes()).hexdigest()}"
             for name in COMPILED]
    return "\n".join(lines) + "\n"


def _compiled_is_current() -> bool:
    if os.environ.get("SOFTPHONE_PURE"):
        return False
    try:
        return (COMPILED_DIR / "SOURCES").read_text() == source_stamp()
    except OSError:
        return False


if _compiled_is_current():
    __path__.insert(0, str(COMPILED_DIR))  # type: ignore[name-defined]  # noqa: F821
