"""The control socket behind ``softphone ctl`` (as baresip's ctrl_tcp, linphonecsh).

A running phone (TUI or ``answer``) listens on a Unix socket in the user's runtime dir
(the directory 0700, the socket 0600, and only peers with our uid are served). The
protocol is JSON lines: ``{"command": "dial", "args": {"uri": "…"}}`` → ``{"ok": true,
"result": {…}}`` or ``{"ok": false, "error": "…"}``; ``{"command": "events"}`` streams
every event as the ``--events jsonl`` lines until the client goes. A bad line gets an
error and the connection stays; nothing a client sends can stop the phone but ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bus import JsonLines
from .commands import COMMANDS, CommandError

if TYPE_CHECKING:
    from .phone import Phone

__all__ = ["ControlServer", "default_socket_path", "MAX_LINE"]

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_CLIENTS = 16


def default_socket_path() -> Path:
    """$XDG_RUNTIME_DIR/softphone/control.sock (platformdirs' fallback when it is unset)."""
    import warnings

    import platformdirs

    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR: the fallback is fine, quietly
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("softphone")) / "control.sock"


def _private_dir(path: Path) -> None:
    """Make ``path`` a directory only we can enter; refuse one someone else owns."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise OSError(f"{path} belongs to another user; set [control] socket to a path of yours")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


async def _alive(path: Path) -> bool:
    """Is another phone answering on ``path``?"""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class ControlServer:
    def __init__(self, phone: "Phone", path: str | os.PathLike | None = None) -> None:
        self.phone = phone
        self.requested = Path(path).expanduser() if path else None
        self.path: Path | None = None
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        """Listen; returns the socket path. A default path held by another running phone
        makes this one take ``control-<pid>.sock`` beside it."""
        path = self.requested or default_socket_path()
        if self.requested is None:
            _private_dir(path.parent)
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidates = [path] if self.requested is not None else \
            [path] + [path.with_name(f"control-{os.getpid()}{'' if n == 1 else f'-{n}'}.sock")
                      for n in range(1, 10)]
        for candidate in candidates:
            if not (candidate.exists() or candidate.is_symlink()):
                path = candidate
                break
            if not stat.S_ISSOCK(candidate.lstat().st_mode):
                raise OSError(f"{candidate} exists and is not a socket")
            if not await _alive(candidate):  # left behind by a phone that died
                candidate.unlink()
                path = candidate
                break
        else:
            raise OSError(f"{path} is in use by another running phone")
        old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.path = path
        return str(path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._clients):
            task.cancel()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = _peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            log.warning("control socket: refused a client of uid %s", uid)
            writer.close()
            return
        if len(self._clients) >= MAX_CLIENTS:
            await self._reply(writer, {"ok": False, "error": "too many control clients"})
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._reply(writer, {"ok": False,
                                               "error": f"line longer than {MAX_LINE} bytes"})
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                if await self._handle(line, reader, writer):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _handle(self, line: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection became an event stream that ended."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            await self._reply(writer, {"ok": False, "error": f"not JSON: {exc}"})
            return False
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            await self._reply(writer, {"ok": False, "error": 'expected {"command": NAME, '
                                                             '"args": {...}}'})
            return False
        name, args = request["command"], request.get("args") or {}
        ident = request.get("id")
        if name == "events":
            stats = args.get("stats", False) if isinstance(args, dict) else False
            if stats not in (True, False, "1", "0", "true", "false", "yes", "no"):
                await self._reply(writer, {"ok": False, "id": ident, "error":
                                           f"events: stats: expected true or false "
                                           f"(got {stats!r})"})
                return False
            await self._stream_events(reader, writer, ident,
                                      stats=stats in (True, "1", "true", "yes"))
            return True
        if name == "help":
            await self._reply(writer, {"ok": True, "id": ident, "result": {"commands": [
                {"name": c.name, "help": c.help,
                 "args": [{"name": p.name, "help": p.help, "required": p.required}
                          for p in c.params]} for c in COMMANDS.values()]}})
            return False
        try:
            result = await self.phone.execute(name, args)
        except CommandError as exc:
            reply: dict[str, Any] = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug must not take the phone down
            log.exception("control command %r failed", name)
            reply = {"ok": False, "error": f"{name}: internal error: {type(exc).__name__}"}
        else:
            reply = {"ok": True, "result": result}
        if ident is not None:
            reply["id"] = ident
        await self._reply(writer, reply)
        return False

    async def _stream_events(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter, ident: Any, *,
                             stats: bool = False) -> None:
        """Every event as a JSON line, until the client closes its end; with ``stats``
        the live ones too (call_stats once a second, levels five times a second)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=10000)
        encoder = JsonLines()

        def listener(event) -> None:
            if event.jsonl:
                try:
                    queue.put_nowait(encoder.encode(event))
                except asyncio.QueueFull:  # a stuck client loses events, not the phone
                    pass

        unsubscribe = self.phone.bus.subscribe(listener, high_rate=stats)
        gone = asyncio.ensure_future(reader.read())  # EOF: the client went away
        try:
            await self._reply(writer, {"ok": True, "id": ident, "result": {"streaming": True}})
            while not gone.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, gone], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                writer.write(getter.result().encode() + b"\n")
                await writer.drain()
        finally:
            unsubscribe()
            gone.cancel()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, separators=(", ", ": "), default=str).encode() + b"\n")
        await writer.drain()
