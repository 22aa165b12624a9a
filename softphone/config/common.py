"""What every part of the config package shares: names, the error type, the secret."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

__all__ = [
    "APP_NAME", "AUDIO_BACKENDS", "CODECS", "KEYRING_SERVICE", "MEDIA_ENCRYPTIONS", "PTIMES",
    "STRANGER_POLICIES", "TRANSPORTS", "ConfigError", "Secret", "audio_from_environment",
    "default_config_path",
]

APP_NAME = "softphone"
KEYRING_SERVICE = "softphone"
TRANSPORTS = ("udp", "tcp", "tls")
AUDIO_BACKENDS = ("pyaudio", "null")
CODECS = ("opus", "G722", "PCMU", "PCMA")
PTIMES = (10, 20, 30, 40, 60)
MEDIA_ENCRYPTIONS = ("none", "sdes", "sdes-required")
STRANGER_POLICIES = ("reject", "drop", "accept")


def audio_from_environment() -> str | None:
    """$SOFTPHONE_AUDIO, the audio backend when no --audio is given (None: unset).
    Raises ValueError naming the variable and the choices for anything else."""
    import os

    value = os.environ.get("SOFTPHONE_AUDIO")
    if value and value not in AUDIO_BACKENDS:
        raise ValueError(f"SOFTPHONE_AUDIO: must be one of {', '.join(AUDIO_BACKENDS)} "
                         f"(got {value!r})")
    return value or None


def default_config_path() -> Path:
    """The platform's per-user config file, e.g. ~/.config/softphone/config.toml."""
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / "config.toml"


class ConfigError(Exception):
    """A config problem: `str()` is '<file>: <key path>: <reason>' (parts omitted
    when unknown). Never carries a secret."""

    def __init__(
        self,
        reason: str,
        *,
        source: Path | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.source = source
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        parts = [str(self.source)] if self.source is not None else []
        if self.line is not None:
            parts.append(f"line {self.line}, column {self.column}")
        if self.key:
            parts.append(self.key)
        parts.append(self.reason)
        return ": ".join(parts)


class Secret:
    """A password that will not print itself; `reveal()` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling is fine; printing is not
        return (Secret, (self._value,))
