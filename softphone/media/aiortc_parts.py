"""aiortc's RTP packets and audio codecs, without the WebRTC stack around them.

``import aiortc`` runs the package's ``__init__``, which loads DTLS (cryptography/OpenSSL),
ICE, SCTP and a DNS resolver: ~0.3 s and ~20 MB we never use, since we speak plain RTP.
The modules we do use (``aiortc.rtp``, ``aiortc.codecs``) need only PyAV and a few small
siblings, so we register the package without running its ``__init__`` and import those.
If that ever fails (a future aiortc layout), the normal import is used instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

__all__ = ["load", "rtp_loaded", "rtp_module"]

_lock = threading.Lock()


def load() -> None:
    """Import aiortc.rtp and aiortc.codecs (idempotent, thread-safe)."""
    with _lock:
        if "aiortc.rtp" in sys.modules and "aiortc.codecs" in sys.modules:
            return
        if "aiortc" not in sys.modules:
            spec = importlib.util.find_spec("aiortc")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("aiortc is not installed")
            shell = types.ModuleType("aiortc")
            shell.__path__ = list(spec.submodule_search_locations)
            shell.__spec__ = spec
            shell.__file__ = spec.origin
            sys.modules["aiortc"] = shell
            try:
                importlib.import_module("aiortc.rtp")
                importlib.import_module("aiortc.codecs")
                return
            except ImportError:
                for name in [n for n in sys.modules if n == "aiortc" or n.startswith("aiortc.")]:
                    del sys.modules[name]
        importlib.import_module("aiortc.rtp")
        importlib.import_module("aiortc.codecs")


_rtp = None


def rtp_loaded() -> bool:
    return _rtp is not None


def rtp_module():
    """aiortc.rtp (its packet classes), imported on first use (aiortc as a whole: ~1.7 s)."""
    global _rtp
    if _rtp is None:
        load()
        import aiortc.rtp as mod

        _rtp = mod
    return _rtp
