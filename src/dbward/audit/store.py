"""The embedded audit store: one SQLite file in dbward's state directory.

Records come in batches from :class:`dbward.audit.writer.AuditWriter`, which
has already committed them to the journal (:mod:`dbward.audit.journal`); ids
are the journal's, so loading the same records twice (after a crash) changes
nothing. A record is kept as the exact line that was hashed; the columns that
searches use are generated from that line, so what a search finds is what
verification checks. WAL mode lets readers work while the proxy writes.

The schema is versioned (``PRAGMA user_version``) and brought up to date by
the numbered steps in :data:`_MIGRATIONS` when the store is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from dbward.audit.chain import GENESIS, ChainRecord, encode_json, event_line, extend, link
from dbward.audit.dialect import SQLITE, Dialect
from dbward.audit.events import AuditEvent, EventKind, StoredEvent
from dbward.audit.signing import Checkpoint

_V1_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, session_id TEXT NOT NULL,
    identity TEXT, identity_kind TEXT, target TEXT, source TEXT, data TEXT NOT NULL
);
"""

_V2_RECORDS = """
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    line TEXT NOT NULL,
    ts REAL GENERATED ALWAYS AS (json_extract(line, '$[2]')) VIRTUAL,
    kind TEXT GENERATED ALWAYS AS (json_extract(line, '$[3]')) VIRTUAL,
    session_id TEXT GENERATED ALWAYS AS (json_extract(line, '$[4]')) VIRTUAL,
    identity TEXT GENERATED ALWAYS AS (json_extract(line, '$[5]')) VIRTUAL,
    identity_kind TEXT GENERATED ALWAYS AS (json_extract(line, '$[6]')) VIRTUAL,
    target TEXT GENERATED ALWAYS AS (json_extract(line, '$[7]')) VIRTUAL,
    source TEXT GENERATED ALWAYS AS (json_extract(line, '$[8]')) VIRTUAL,
    data TEXT GENERATED ALWAYS AS (json_extract(line, '$[9]')) VIRTUAL
);
CREATE UNIQUE INDEX records_chain_seq ON records (chain, seq);
CREATE INDEX records_ts ON records (ts);
CREATE INDEX records_identity ON records (identity, ts);
CREATE INDEX records_session ON records (session_id);
CREATE TABLE checkpoints (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    ts REAL NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TABLE touches (
    record_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    identity TEXT,
    relation TEXT NOT NULL,
    col TEXT NOT NULL,
    access TEXT NOT NULL
);
CREATE INDEX touches_relation ON touches (relation, col, ts);
CREATE INDEX touches_record ON touches (record_id);
CREATE INDEX touches_identity ON touches (identity, ts);
"""

IMPORTED_CHAIN = "imported"
"""The chain that events from a store written before chaining existed are moved into."""


def _to_v2(db: sqlite3.Connection) -> None:
    _script(db, _V2_RECORDS)
    previous = GENESIS
    records: list[ChainRecord] = []
    rows = db.execute(
        "SELECT id, ts, kind, session_id, identity, identity_kind, target, source, data"
        " FROM events ORDER BY id"
    )
    for seq, row in enumerate(rows, 1):
        event = AuditEvent(
            kind=EventKind(row[2]),
            session_id=row[3],
            identity=row[4],
            identity_kind=row[5],
            target=row[6],
            source=row[7],
            data=json.loads(row[8]),
            ts=row[1],
        )
        line = event_line(IMPORTED_CHAIN, seq, event)
        digest = link(previous, line.encode())
        records.append(ChainRecord(IMPORTED_CHAIN, seq, digest.hex(), line))
        previous = digest
    _insert(db, records)
    db.execute("DROP TABLE events")
    db.execute(
        "CREATE VIEW events AS SELECT id, ts, kind, session_id, identity, identity_kind,"
        " target, source, data FROM records"
    )


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements one by one (``executescript`` would commit the migration's
    transaction half way)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _to_v1(db: sqlite3.Connection) -> None:
    _script(db, _V1_EVENTS)


def _to_v3(db: sqlite3.Connection) -> None:
    db.execute("DROP INDEX IF EXISTS touches_record")  # lineage rows are never looked up by it


_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _to_v1,  # 1: the first trail, without a chain
    _to_v2,  # 2: hash-chained records, signed checkpoints, lineage
    _to_v3,  # 3: one index fewer to keep on every insert
)

# The batch is one flat JSON array, chain, seq, hash, line, chain, seq, ...: json_each
# decodes each value once (a row as a nested array would be parsed again for every field
# taken out of it), and the four values of a record are put back together by their place.
_INSERT_RECORDS = (
    "INSERT OR IGNORE INTO records (chain, seq, hash, line)"
    " SELECT max(CASE WHEN key % 4 = 0 THEN value END), max(CASE WHEN key % 4 = 1 THEN value END),"
    " max(CASE WHEN key % 4 = 2 THEN value END), max(CASE WHEN key % 4 = 3 THEN value END)"
    " FROM json_each(?) GROUP BY key / 4 ORDER BY key / 4"
)
# Lineage rows come from the records themselves (their ``data.lineage``, written by the
# proxy as {"read"|"write": {relation: [column, ...]}}): one row per relation (col '') and
# one per column, so "who touched this table/column" is an index lookup. Only the records
# this batch inserted get rows: ids grow, so ``id > before`` is exactly them, and a batch
# stored twice adds nothing. Each record's line is parsed once (``fresh``).
_INSERT_TOUCHES = """
WITH fresh AS MATERIALIZED (
    SELECT id, json_extract(line, '$[2]', '$[5]', '$[9].lineage') AS f
      FROM records WHERE id > :before
), parts AS MATERIALIZED (
    SELECT id, json_extract(f, '$[0]') AS ts, json_extract(f, '$[1]') AS identity,
           json_extract(f, '$[2]') AS lineage
      FROM fresh
)
INSERT INTO touches (record_id, ts, identity, relation, col, access)
SELECT p.id, p.ts, p.identity, t.key, '', a.key
  FROM parts p, json_each(p.lineage) a, json_each(a.value) t
UNION ALL
SELECT p.id, p.ts, p.identity, t.key, c.value, a.key
  FROM parts p, json_each(p.lineage) a, json_each(a.value) t, json_each(t.value) c
"""


def _insert(db: sqlite3.Connection, records: Sequence[ChainRecord]) -> None:
    """Store records and their lineage rows (records already stored are left alone)."""
    if not records:
        return
    before = db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0]
    flat = [field for r in records for field in (r.chain, r.seq, r.hash, r.line)]
    db.execute(_INSERT_RECORDS, (encode_json(flat),))
    db.execute(_INSERT_TOUCHES, {"before": before})


class AuditStore(Protocol):
    """What the writer, verification, search and export need of a store."""

    dialect: Dialect

    def write(
        self, records: Sequence[ChainRecord], checkpoint: Checkpoint | None = None
    ) -> None: ...

    def put_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def append(
        self,
        chain: str,
        events: Sequence[AuditEvent],
        sign: Callable[[str, int, str], Checkpoint],
    ) -> list[ChainRecord]: ...

    def head(self, chain: str) -> tuple[int, bytes]: ...

    def chains(self) -> list[str]: ...

    def chain_records(self, chain: str, *, after_seq: int = 0) -> Iterator[ChainRecord]: ...

    def checkpoints(self, chain: str) -> list[Checkpoint]: ...

    def tail(self, limit: int = 20, *, after_id: int = 0) -> list[StoredEvent]: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class StoreReads:
    """The reads both stores answer the same way, through their ``query``/``stream``."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows one by one (a chain of millions is verified without holding it)."""
        raise NotImplementedError

    def chains(self) -> list[str]:
        rows = self.query(
            "SELECT chain FROM records GROUP BY chain UNION SELECT chain FROM checkpoints"
        )
        return sorted(row[0] for row in rows)

    def chain_records(self, chain: str, *, after_seq: int = 0) -> Iterator[ChainRecord]:
        """A chain's records in the order they are stored (by id), as kept."""
        rows = self.stream(
            "SELECT chain, seq, hash, line, id FROM records WHERE chain = ? AND seq > ?"
            " ORDER BY id",
            (chain, after_seq),
        )
        for row in rows:
            yield ChainRecord(*row)

    def checkpoints(self, chain: str) -> list[Checkpoint]:
        rows = self.query(
            "SELECT chain, seq, head, ts, key_id, signature FROM checkpoints WHERE chain = ?"
            " ORDER BY seq",
            (chain,),
        )
        return [Checkpoint(*row) for row in rows]

    def tail(self, limit: int = 20, *, after_id: int = 0) -> list[StoredEvent]:
        """The latest ``limit`` events (oldest first), or the first ``limit`` after ``after_id``."""
        if after_id:
            rows = self.query(
                "SELECT chain, seq, hash, line, id FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            )
        else:
            rows = self.query(
                "SELECT chain, seq, hash, line, id FROM records ORDER BY id DESC LIMIT ?",
                (limit,),
            )[::-1]
        return [ChainRecord(*row).stored() for row in rows]


class SqliteAuditStore(StoreReads):
    dialect = SQLITE

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
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        if int(db.execute("PRAGMA user_version").fetchone()[0]) == len(_MIGRATIONS):
            return  # up to date: a reader takes no write lock
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            for number, step in enumerate(_MIGRATIONS[version:], version + 1):
                step(db)
                db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for read-only queries (search, lineage, verification)."""
        return self._db

    # writing ---------------------------------------------------------------------------

    def write(self, records: Sequence[ChainRecord], checkpoint: Checkpoint | None = None) -> None:
        """Store ``records`` (and ``checkpoint``) in one transaction, idempotently."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # waits for another writer rather than failing
        try:
            _insert(db, records)
            if checkpoint is not None:
                self._put_checkpoint(checkpoint)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._put_checkpoint(checkpoint)

    def _put_checkpoint(self, c: Checkpoint) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO checkpoints (chain, seq, head, ts, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (c.chain, c.seq, c.head, c.ts, c.key_id, c.signature),
        )

    def append(
        self,
        chain: str,
        events: Sequence[AuditEvent],
        sign: Callable[[str, int, str], Checkpoint],
    ) -> list[ChainRecord]:
        """Append events to ``chain`` and sign its new head, in one transaction.

        For writers without a journal (the command line): the chain's head is
        read and extended under SQLite's write lock, so two at once stay in order.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            records = extend(chain, *self._head(chain), events)
            _insert(db, records)
            if records:
                self._put_checkpoint(sign(chain, records[-1].seq, records[-1].hash))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return records

    # reading ---------------------------------------------------------------------------

    def _head(self, chain: str) -> tuple[int, bytes]:
        row = self._db.execute(
            "SELECT seq, hash FROM records WHERE chain = ? ORDER BY seq DESC LIMIT 1", (chain,)
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes.fromhex(row[1]))

    def head(self, chain: str) -> tuple[int, bytes]:
        """The chain's last (seq, hash); (0, GENESIS) for a chain with no record yet."""
        return self._head(chain)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        yield from self._db.execute(sql, params)

    def close(self) -> None:
        self._db.close()
