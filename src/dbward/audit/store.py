"""The embedded audit store: one SQLite file in dbward's state directory.

Rows come in batches from :class:`dbward.audit.writer.AuditWriter`, which has
already committed them to the journal (:mod:`dbward.audit.journal`); ids are
the journal's, so loading the same rows twice (after a crash) changes
nothing. WAL mode lets ``dbward audit tail`` read while the proxy writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from dbward.audit.events import AuditEvent, EventKind, StoredEvent
from dbward.audit.journal import Row

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
    "INSERT OR IGNORE INTO events"
    " (id, ts, kind, session_id, identity, identity_kind, target, source, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def stored_event(row: Row) -> StoredEvent:
    """An event as read back: a store row and a journal line have the same layout."""
    return StoredEvent(
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


_INSERT_JSON = (
    "INSERT OR IGNORE INTO events"
    " (id, ts, kind, session_id, identity, identity_kind, target, source, data)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),"
    " json_extract(value, '$[8]')"
    " FROM json_each(?)"
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
        self._db.executescript(_SCHEMA)

    def write_rows(self, rows: Sequence[Row]) -> None:
        """Store ``rows`` in one transaction; rows already stored are left as they are."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Store journal lines (JSON arrays) in one statement.

        SQLite unpacks the batch itself (``json_each``), so the whole batch is
        one call that runs without Python's global lock, instead of a call per
        row that would contend with the event loop for it.
        """
        batch = b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]"
        self._db.execute(_INSERT_JSON, (batch.decode(),))

    def max_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def tail(self, limit: int = 20, *, after_id: int = 0) -> list[StoredEvent]:
        """The latest ``limit`` events (oldest first), or the first ``limit`` after ``after_id``."""
        if after_id:
            cursor = self._db.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            rows = cursor.fetchall()
        else:
            cursor = self._db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
            rows = cursor.fetchall()[::-1]
        return [stored_event(row) for row in rows]

    def close(self) -> None:
        self._db.close()
