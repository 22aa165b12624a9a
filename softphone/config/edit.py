"""Editing the config file in place, keeping the user's comments and layout."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .common import ConfigError, default_config_path
from .load import loads
from .save import toml_value, write_atomic

__all__ = ["set_config_value"]


def set_config_value(path: str | os.PathLike[str] | None, table: str, key: str,
                     value: str | int | bool) -> Path:
    """Set one scalar ``[table] key`` in the config file, editing only that line so the
    user's comments and layout survive (unlike `save_config`). The file is created if
    missing; the result must still load, else nothing is written and ConfigError says why.
    `path` None → the default location. Returns the path."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=file) from None
    line = f"{key} = {toml_value(value)}"
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\s*\[")
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, ln in enumerate(lines) if header.match(ln)), None)
    if start is None:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{table}]", line]
    else:
        end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i])),
                   len(lines))
        at = next((i for i in range(start + 1, end) if assignment.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, line)
        else:
            lines[at] = line
    new_text = "\n".join(lines) + "\n"
    loads(new_text, file)  # raises ConfigError naming the file and key
    write_atomic(file, new_text.encode("utf-8"))
    return file
