"""The Textual front end. ``run_tui`` is what ``softphone`` (no sub-command) runs.

Importing this package is cheap: Textual, the UA and the media layer load inside
``run_tui`` and the UA/media only after the first frame is on screen.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["run_tui", "audio_backend"]


def audio_backend(audio: str | None) -> str:
    """--audio, else $SOFTPHONE_AUDIO, else pyaudio (which falls back to null with a
    notice when no device opens)."""
    choice = audio or os.environ.get("SOFTPHONE_AUDIO") or "pyaudio"
    return choice if choice in ("pyaudio", "null") else "pyaudio"


def run_tui(config: "Config", audio: str | None = None) -> int:
    from .app import SoftphoneApp

    from ..config import default_config_path

    app = SoftphoneApp(config, audio=audio_backend(audio), config_path=config.source,
                       theme_file=config.source or default_config_path())
    app.run()
    return app.return_code or 0
