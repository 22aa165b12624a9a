"""The Textual front end. ``run_tui`` is what ``softphone`` (no sub-command) runs.

Importing this package is cheap: Textual, the UA and the media layer load inside
``run_tui`` and the UA/media only after the first frame is on screen.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["run_tui", "audio_backend", "choose_listen", "setup_file_logging", "LOG_NAME",
           "STABLE_PORT"]

STABLE_PORT = 5060
LOG_NAME = "softphone.log"


def audio_backend(audio: str | None) -> str:
    """--audio, else $SOFTPHONE_AUDIO, else pyaudio (which falls back to null with a
    notice when no device opens). Raises ValueError for a bad $SOFTPHONE_AUDIO."""
    from ..config import audio_from_environment

    return audio or audio_from_environment() or "pyaudio"


def _listen_in_file(config: "Config") -> bool:
    """Whether the config file itself sets [network] listen (even to port 0)."""
    if config.source is None:
        return False
    import tomllib

    try:
        data = tomllib.loads(Path(config.source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    network = data.get("network")
    return isinstance(network, dict) and "listen" in network


def port_free(host: str, port: int) -> bool:
    """Whether UDP and TCP ``port`` can both be bound on ``host`` now (the phone takes
    both: SIP over TCP shares the UDP port)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def choose_listen(config: "Config", listen: str | None) -> tuple[str | None, str | None]:
    """(the address to listen on, a note for the user). --listen wins, then the config
    file's [network] listen; with neither, the stable SIP port 5060 when it is free for
    UDP and TCP (so a peer or a PBX can be pointed at us once), else any free port."""
    if listen is not None or _listen_in_file(config):
        return listen, None
    host = config.network.listen_host
    if port_free(host, STABLE_PORT):
        bracketed = f"[{host}]" if ":" in host else host
        return f"{bracketed}:{STABLE_PORT}", None
    return None, (f"port {STABLE_PORT} is taken: listening on a free port instead "
                  f"(set [network] listen or --listen for a fixed one)")


def setup_file_logging(verbosity: int, directory: Path) -> Path | None:
    """-v / -vv: logs (info / debug) to ``directory``/softphone.log, never to the
    terminal, which Textual owns. Returns the file, or None without -v."""
    if verbosity <= 0:
        return None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / LOG_NAME
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # private
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    return path


def _check_flags(config: "Config", audio: str | None, listen: str | None,
                 account: str | None, sip_trace: str | None) -> str | None:
    """What is wrong with the flags, found before the screen is taken (exit 2)."""
    from ..config import ConfigError, parse_listen

    try:
        audio_backend(audio)
    except ValueError as exc:
        return str(exc)
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            return f"--listen: {exc}"
    if account is not None:
        try:
            config.account(account)
        except ConfigError as exc:
            return f"--account: {exc.reason}"
    if sip_trace == "-":
        return "--sip-trace -: the screen is the TUI's; give the trace a file"
    if sip_trace is not None:
        try:
            open(sip_trace, "ab").close()
        except OSError as exc:
            return f"--sip-trace: {exc.strerror or exc}: {sip_trace}"
    return None


def run_tui(config: "Config", audio: str | None = None, *, listen: str | None = None,
            account: str | None = None, sip_trace: str | None = None,
            verbose: int = 0) -> int:
    problem = _check_flags(config, audio, listen, account, sip_trace)
    if problem is not None:
        print(f"softphone: {problem}", file=sys.stderr)
        return 2
    from ..config import default_config_path
    from ..history import data_dir
    from .app import SoftphoneApp

    chosen, note = choose_listen(config, listen)
    log_file = setup_file_logging(verbose, data_dir())
    app = SoftphoneApp(config, audio=audio_backend(audio), config_path=config.source,
                       theme_file=config.source or default_config_path(), listen=chosen,
                       fallback_listen=listen is None and chosen is not None, account=account,
                       sip_trace=sip_trace, warnings=[note] if note else [],
                       log_file=log_file)
    app.run()
    return app.return_code or 0
