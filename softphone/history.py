"""Call history in SQLite under the user data dir, so it survives restarts.

One row per finished call: direction, remote party, start time, duration and outcome.
The file is private to the user (mode 0600, its directory 0700 when created here).
The location is ``$SOFTPHONE_DATA_DIR`` when set (tests point it at a tmp dir), else
``platformdirs.user_data_path("softphone")``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CallRecord", "History", "data_dir"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    direction TEXT NOT NULL,
    party TEXT NOT NULL,
    display_name TEXT,
    started_at REAL NOT NULL,
    duration REAL NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    account TEXT
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
"""


def data_dir() -> Path:
    """Where the phone keeps its files (history, saved traces)."""
    override = os.environ.get("SOFTPHONE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path("softphone")


@dataclass(frozen=True)
class CallRecord:
    direction: str  # "outgoing" | "incoming"
    party: str  # the remote URI as dialled / as it called
    started_at: float  # seconds since the epoch
    duration: float
    outcome: str  # "answered", "rejected 486 Busy Here", "missed", "cancelled" …
    display_name: str | None = None
    account: str | None = None
    id: int | None = None


class History:
    """A small append-mostly table; every method is quick enough for the UI thread."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "history.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # who called whom is private, like the config: 0600 (SQLite gives its journal
        # the database file's mode)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        if os.name == "posix":
            os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def add(self, record: CallRecord) -> CallRecord:
        cur = self._db.execute(
            "INSERT INTO calls (direction, party, display_name, started_at, duration, outcome,"
            " account) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.direction, record.party, record.display_name, record.started_at,
             record.duration, record.outcome, record.account))
        self._db.commit()
        return CallRecord(**{**record.__dict__, "id": cur.lastrowid})

    def recent(self, limit: int = 100) -> list[CallRecord]:
        """Newest first."""
        rows = self._db.execute(
            "SELECT id, direction, party, display_name, started_at, duration, outcome, account"
            " FROM calls ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [CallRecord(id=r[0], direction=r[1], party=r[2], display_name=r[3],
                           started_at=r[4], duration=r[5], outcome=r[6], account=r[7])
                for r in rows]

    def get(self, record_id: int) -> CallRecord | None:
        row = self._db.execute(
            "SELECT id, direction, party, display_name, started_at, duration, outcome, account"
            " FROM calls WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            return None
        return CallRecord(id=row[0], direction=row[1], party=row[2], display_name=row[3],
                          started_at=row[4], duration=row[5], outcome=row[6], account=row[7])

    def dialled(self, limit: int = 50) -> list[str]:
        """Distinct parties we called, newest first (for the dial input's recall)."""
        rows = self._db.execute(
            "SELECT party, MAX(started_at) AS t FROM calls WHERE direction = 'outgoing'"
            " GROUP BY party ORDER BY t DESC LIMIT ?", (limit,)).fetchall()
        return [r[0] for r in rows]

    def clear(self) -> None:
        self._db.execute("DELETE FROM calls")
        self._db.commit()

    def close(self) -> None:
        self._db.close()
