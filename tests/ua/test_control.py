"""The control socket in-process: a phone listening on a Unix socket in a private
directory, a raw client speaking its JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest

from media_helpers import wait_for
from softphone.config import Config
from softphone.ua.phone import Phone, PhoneOptions


class Client:
    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path) -> "Client":
        return cls(*await asyncio.open_unix_connection(str(path)))

    async def send_line(self, raw: bytes) -> dict:
        self.writer.write(raw + b"\n")
        await self.writer.drain()
        return json.loads(await asyncio.wait_for(self.reader.readline(), 10))

    async def ask(self, command: str, **args) -> dict:
        return await self.send_line(json.dumps({"command": command, "args": args}).encode())

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def phone(tmp_path):
    config = Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                               "audio": {"codecs": ["PCMU"]},
                               "control": {"socket": str(tmp_path / "run" / "ctl.sock")}})
    p = Phone(config, PhoneOptions(preload_media=False))
    events = []
    p.bus.subscribe(events.append)
    await p.start()
    p.test_events = events
    yield p
    await p.close(timeout=3)


async def test_socket_is_private_and_announced(phone, tmp_path):
    path = tmp_path / "run" / "ctl.sock"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listening = next(e for e in phone.test_events if e.name == "listening")
    assert listening.control == str(path)


async def test_commands_replies_and_errors_keep_the_connection(phone, tmp_path):
    client = await Client.connect(tmp_path / "run" / "ctl.sock")
    try:
        assert (await client.ask("calls")) == {"ok": True, "result": {"calls": []}}
        reply = await client.ask("bogus")
        assert reply["ok"] is False and "unknown command 'bogus'" in reply["error"]
        reply = await client.send_line(b"{not json")
        assert reply["ok"] is False and reply["error"].startswith("not JSON")
        reply = await client.send_line(b'["dial"]')
        assert reply["ok"] is False and "expected" in reply["error"]
        reply = await client.ask("dtmf", digits="9Q")
        assert reply == {"ok": False, "error": "dtmf: digits: 'Q' is not a DTMF digit "
                                               "(use 0-9 * # A-D, ',' for a pause)"}
        dialled = await client.ask("dial", uri="echo")
        assert dialled["ok"], dialled
        call_id = dialled["result"]["call_id"]
        await wait_for(lambda: any(e.name == "answered" for e in phone.test_events), 5,
                       "the echo call to connect")
        calls = (await client.ask("calls"))["result"]["calls"]
        assert [(c["call_id"], c["state"]) for c in calls] == [(call_id, "connected")]
        hung = await client.ask("hangup", call_id=call_id)
        assert hung == {"ok": True, "result": {"call_id": call_id, "reason": "hangup"}}
        helped = await client.ask("help")
        assert {c["name"] for c in helped["result"]["commands"]} >= {"dial", "hangup", "quit"}
    finally:
        client.close()


async def test_events_stream_until_the_client_goes(phone, tmp_path):
    path = tmp_path / "run" / "ctl.sock"
    watcher = await Client.connect(path)
    first = await watcher.ask("events")
    assert first["ok"] and first["result"] == {"streaming": True}
    driver = await Client.connect(path)
    await driver.ask("dial", uri="echo")
    names = []
    for _ in range(50):  # bounded: the calling/answered lines arrive within seconds
        line = json.loads(await asyncio.wait_for(watcher.reader.readline(), 10))
        names.append(line["event"])
        assert isinstance(line["t"], float)
        if line["event"] == "answered":
            break
    assert names[:2] == ["calling", "answered"] or names[:1] == ["calling"], names
    assert "answered" in names
    listeners = len(phone.bus._listeners)
    watcher.close()
    await wait_for(lambda: len(phone.bus._listeners) == listeners - 1, 5,
                   "the stream to unsubscribe when its client left")
    await driver.ask("hangup")
    driver.close()


async def test_events_stream_with_stats_carries_the_live_events(phone, tmp_path):
    path = tmp_path / "run" / "ctl.sock"
    watcher = await Client.connect(path)
    refused = await watcher.ask("events", stats="maybe")
    assert refused["ok"] is False and "stats: expected true or false" in refused["error"]
    first = await watcher.ask("events", stats="1")
    assert first["ok"], first
    driver = await Client.connect(path)
    await driver.ask("dial", uri="echo")
    seen: dict[str, dict] = {}
    for _ in range(200):  # bounded: levels come 5/s and stats 1/s once answered
        line = json.loads(await asyncio.wait_for(watcher.reader.readline(), 10))
        seen.setdefault(line["event"], line)
        if "call_stats" in seen and "levels" in seen:
            break
    assert {"calling", "answered", "call_stats", "levels"} <= set(seen), sorted(seen)
    assert seen["call_stats"]["codec"] == "PCMU" and "jitter_ms" in seen["call_stats"]
    watcher.close()
    await driver.ask("hangup")
    driver.close()


async def test_a_second_phone_does_not_steal_a_live_socket(phone, tmp_path):
    config = Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                               "control": {"socket": str(tmp_path / "run" / "ctl.sock")}})
    other = Phone(config, PhoneOptions(preload_media=False))
    notices = []
    other.bus.subscribe(lambda e: notices.append(e) if e.name == "notice" else None)
    await other.start()
    try:
        assert other.control is None
        assert "in use by another running phone" in notices[0].text
        client = await Client.connect(tmp_path / "run" / "ctl.sock")
        assert (await client.ask("calls"))["ok"]  # the first phone still answers
        client.close()
    finally:
        await other.close(timeout=2)


async def test_a_stale_socket_is_replaced(tmp_path):
    import socket

    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a phone that died
    config = Config.from_dict({"network": {"listen": "127.0.0.1:0"},
                               "control": {"socket": str(path)}})
    p = Phone(config, PhoneOptions(preload_media=False))
    await p.start()
    try:
        client = await Client.connect(path)
        assert (await client.ask("accounts")) == {"ok": True, "result": {"accounts": []}}
        client.close()
    finally:
        await p.close(timeout=2)
    assert not path.exists()  # removed on close


async def test_quit_stops_a_running_answer_loop(phone, tmp_path):
    client = await Client.connect(tmp_path / "run" / "ctl.sock")
    assert (await client.ask("quit")) == {"ok": True, "result": {}}
    client.close()
    await asyncio.wait_for(phone.stopped.wait(), 5)


def test_default_socket_dir_of_another_user_is_refused(tmp_path, monkeypatch):
    from softphone.ua import control

    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o755)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(foreign).st_uid + 1)
    with pytest.raises(OSError, match="belongs to another user"):
        control._private_dir(foreign)
