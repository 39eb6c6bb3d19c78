"""The embedded audit store: one SQLite file in dbward's state directory.

Writes come in batches from :class:`dbward.audit.writer.AuditWriter` (one
transaction per batch). WAL mode lets ``dbward audit tail`` read while the
proxy writes. The table has no secondary index: each one costs every commit
more than the whole insert, and reads here go by id.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from dbward.audit.events import AuditEvent, EventKind, StoredEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT NOT NULL,
    identity TEXT,
    identity_kind TEXT,
    target TEXT,
    source TEXT,
    data TEXT NOT NULL
);
"""

_INSERT = (
    "INSERT INTO events (ts, kind, session_id, identity, identity_kind, target, source, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqliteAuditStore:
    def __init__(self, path: Path, *, synchronous: str = "normal") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if created:
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Checkpoints run from the writer thread between batches, not inside a commit.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)

    def write_batch(self, events: Sequence[AuditEvent]) -> None:
        """Commit all ``events`` in one transaction."""
        rows = [
            (
                e.ts,
                e.kind.value,
                e.session_id,
                e.identity,
                e.identity_kind,
                e.target,
                e.source,
                json.dumps(e.data, separators=(",", ":"), default=str),
            )
            for e in events
        ]
        db = self._db
        if len(rows) == 1:
            db.execute(_INSERT, rows[0])  # autocommit: one statement, one transaction
            return
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def tail(self, limit: int = 20, *, after_id: int = 0) -> list[StoredEvent]:
        """The latest ``limit`` events (oldest first), or all events after ``after_id``."""
        if after_id:
            cursor = self._db.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            rows = cursor.fetchall()
        else:
            cursor = self._db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
            rows = cursor.fetchall()[::-1]
        return [
            StoredEvent(
                row[0],
                AuditEvent(
                    kind=EventKind(row[2]),
                    session_id=row[3],
                    identity=row[4],
                    identity_kind=row[5],
                    target=row[6],
                    source=row[7],
                    data=json.loads(row[8]),
                    ts=row[1],
                ),
            )
            for row in rows
        ]

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file, on a connection of its own.

        Safe to call from another thread while batches are written: it never
        blocks the writer (PASSIVE) and uses none of the writer's state.
        """
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        self._db.close()
