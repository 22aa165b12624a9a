"""Configuration: one TOML file → typed, validated, frozen settings.

Every key is declared once, in schema.py (type, default, range or choices, doc,
validator); load.py walks those declarations, so every problem is reported as a
`ConfigError` naming the file, the key path (`accounts[0].transport`) and the reason,
and a typo stops the program at start-up instead of surfacing later as a puzzling SIP
failure. Unknown keys are errors too, with a "did you mean" hint.

Secrets never show: the password is held in a `Secret` whose repr is `***`, it is
left out of `Account`'s repr, and no error message quotes it. A password can also
come from an environment variable (`password_env`) or the system keyring
(`keyring = true`); those are resolved only when `Account.secret()` is called.

Modules: common (names, ConfigError, Secret), declare (the declaration API and the
generic readers), validators (the named validators), schema (the settings), load
(reading), save (writing a whole file), edit (changing keys of an existing file).
"""

from __future__ import annotations

import importlib.util  # noqa: F401  (tests patch importlib.util.find_spec through here)
from typing import TYPE_CHECKING, Any

from .common import (APP_NAME, AUDIO_BACKENDS, CODECS, KEYRING_SERVICE, PTIMES, TRANSPORTS,
                     ConfigError, Secret, audio_from_environment, default_config_path)
from .declare import keys_of, tables_of
from .load import load_config, loads, read_config
from .save import config_to_dict, dumps_toml, save_config
from .save import toml_string as _toml_string  # noqa: F401  (tests)
from .schema import (Account, AudioSettings, CallSettings, Config, ControlSettings,
                     NetworkSettings, SipSettings, UiSettings)
from .validators import parse_listen


def _from_dict(cls: type[Config], data: Any, source: Any = None) -> Config:
    """Validate a parsed TOML document (or an equivalent dict)."""
    return read_config(data, source)


# declared in schema.py, implemented in load.py / save.py (which read schema.py): bound
# here, where both are known, so no module imports another in a circle
Config.from_dict = classmethod(_from_dict)  # type: ignore[attr-defined]
Config.to_dict = config_to_dict  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from .edit import (AddAccount, Change, Remove, RemoveAccount, Set, edit_config,
                       set_config_value)

__all__ = [
    "APP_NAME",
    "AUDIO_BACKENDS",
    "CODECS",
    "KEYRING_SERVICE",
    "PTIMES",
    "TRANSPORTS",
    "Account",
    "AddAccount",
    "audio_from_environment",
    "AudioSettings",
    "CallSettings",
    "Change",
    "Config",
    "config_to_dict",
    "ConfigError",
    "ControlSettings",
    "default_config_path",
    "dumps_toml",
    "edit_config",
    "keys_of",
    "load_config",
    "loads",
    "NetworkSettings",
    "parse_listen",
    "Remove",
    "RemoveAccount",
    "save_config",
    "Secret",
    "Set",
    "set_config_value",
    "SipSettings",
    "tables_of",
    "UiSettings",
]

# The keys of each table, from the declarations (kept under their old names).
_ACCOUNT_KEYS = keys_of(Account)
_NETWORK_KEYS = keys_of(NetworkSettings)
_AUDIO_KEYS = keys_of(AudioSettings)
_SIP_KEYS = keys_of(SipSettings)
_UI_KEYS = keys_of(UiSettings)
_CONTROL_KEYS = keys_of(ControlSettings)
_TOP_KEYS = tuple(tables_of(Config))

# edit.py (and through it tomlkit) loads on first use: start-up never needs it
_EDIT_NAMES = frozenset({"AddAccount", "Change", "Remove", "RemoveAccount", "Set",
                         "edit_config", "set_config_value"})


def __getattr__(name: str) -> Any:
    if name in _EDIT_NAMES:
        from . import edit

        return getattr(edit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
