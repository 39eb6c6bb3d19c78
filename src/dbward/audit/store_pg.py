"""The audit store in PostgreSQL, for installations with several dbward instances.

Same records, checkpoints and lineage as the SQLite store, in the schema
``dbward_audit`` of the configured database; each instance keeps its own
chains. The schema is created and upgraded by the numbered steps in
:data:`_MIGRATIONS` (recorded in ``dbward_audit.migrations``), under an
advisory lock so instances starting together do not race. Records are kept in
``record_lines`` with the hashed line and a jsonb generated from it; ``records``
is a view whose searched columns come from that jsonb, so, as in SQLite, what a
search finds is what verification checks.

Every method may raise :class:`psycopg.Error` when the server is unreachable;
the connection is then dropped and made again on the next call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg.errors

from dbward.audit.chain import GENESIS, ChainRecord, extend
from dbward.audit.dialect import POSTGRES
from dbward.audit.events import AuditEvent
from dbward.audit.signing import Checkpoint
from dbward.audit.store import StoreReads

_MIGRATIONS: tuple[str, ...] = (
    # 1: hash-chained records, signed checkpoints, lineage
    """
    CREATE TABLE dbward_audit.records (
        id bigserial PRIMARY KEY,
        chain text NOT NULL,
        seq bigint NOT NULL,
        hash text NOT NULL,
        line text NOT NULL,
        ts float8 GENERATED ALWAYS AS ((line::jsonb->>2)::float8) STORED,
        kind text GENERATED ALWAYS AS (line::jsonb->>3) STORED,
        session_id text GENERATED ALWAYS AS (line::jsonb->>4) STORED,
        identity text GENERATED ALWAYS AS (line::jsonb->>5) STORED,
        identity_kind text GENERATED ALWAYS AS (line::jsonb->>6) STORED,
        target text GENERATED ALWAYS AS (line::jsonb->>7) STORED,
        source text GENERATED ALWAYS AS (line::jsonb->>8) STORED,
        data jsonb GENERATED ALWAYS AS (line::jsonb->9) STORED,
        UNIQUE (chain, seq)
    );
    CREATE INDEX records_ts ON dbward_audit.records (ts);
    CREATE INDEX records_identity ON dbward_audit.records (identity, ts);
    CREATE INDEX records_session ON dbward_audit.records (session_id);
    CREATE TABLE dbward_audit.checkpoints (
        chain text NOT NULL,
        seq bigint NOT NULL,
        head text NOT NULL,
        ts float8 NOT NULL,
        key_id text NOT NULL,
        signature text NOT NULL,
        PRIMARY KEY (chain, seq)
    );
    CREATE TABLE dbward_audit.touches (
        record_id bigint NOT NULL,
        ts float8 NOT NULL,
        identity text,
        relation text NOT NULL,
        col text NOT NULL,
        access text NOT NULL
    );
    CREATE INDEX touches_relation ON dbward_audit.touches (relation, col, ts);
    CREATE INDEX touches_identity ON dbward_audit.touches (identity, ts);
    CREATE INDEX touches_record ON dbward_audit.touches (record_id);
    """,
    # 2: one index fewer to keep on every insert (lineage rows are never looked up by it)
    "DROP INDEX IF EXISTS dbward_audit.touches_record",
    # 3: the line parsed once per record (one stored jsonb, not a generated column each);
    # the searched columns become a view over it, with expression indexes
    """
    ALTER TABLE dbward_audit.records RENAME TO record_lines;
    ALTER TABLE dbward_audit.record_lines DROP COLUMN ts, DROP COLUMN kind,
        DROP COLUMN session_id, DROP COLUMN identity, DROP COLUMN identity_kind,
        DROP COLUMN target, DROP COLUMN source, DROP COLUMN data;
    ALTER TABLE dbward_audit.record_lines
        ADD COLUMN doc jsonb GENERATED ALWAYS AS (line::jsonb) STORED;
    CREATE INDEX record_lines_ts ON dbward_audit.record_lines (((doc->>2)::float8));
    CREATE INDEX record_lines_identity
        ON dbward_audit.record_lines ((doc->>5), ((doc->>2)::float8));
    CREATE INDEX record_lines_session ON dbward_audit.record_lines ((doc->>4));
    CREATE VIEW dbward_audit.records AS
        SELECT id, chain, seq, hash, line, (doc->>2)::float8 AS ts, doc->>3 AS kind,
               doc->>4 AS session_id, doc->>5 AS identity, doc->>6 AS identity_kind,
               doc->>7 AS target, doc->>8 AS source, doc->9 AS data
          FROM dbward_audit.record_lines
    """,
)

# A batch is copied into a temporary table (COPY is far faster than a parameter array of
# long JSON lines), then moved into records (a record stored before is left alone), and
# the lineage rows of what was inserted derived in the same statement.
_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming"
    " (chain text, seq bigint, hash text, line text) ON COMMIT DELETE ROWS"
)
_INSERT = """
WITH ins AS (
    INSERT INTO record_lines (chain, seq, hash, line)
    SELECT chain, seq, hash, line FROM incoming ORDER BY chain, seq
    ON CONFLICT (chain, seq) DO NOTHING
    RETURNING id, (doc->>2)::float8 AS ts, doc->>5 AS identity, doc->9->'lineage' AS lineage
)
INSERT INTO touches (record_id, ts, identity, relation, col, access)
SELECT ins.id, ins.ts, ins.identity, t.key, '', a.key
  FROM ins, jsonb_each(ins.lineage) a, jsonb_each(a.value) t
UNION ALL
SELECT ins.id, ins.ts, ins.identity, t.key, c.value, a.key
  FROM ins, jsonb_each(ins.lineage) a, jsonb_each(a.value) t,
       jsonb_array_elements_text(t.value) c
"""

_LOCK = 0x64627761  # the advisory lock that serializes migrations ("dbwa")
_PLACEHOLDER = re.compile(r"%|\?")


def _driver_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled)."""
    return _PLACEHOLDER.sub(lambda m: "%s" if m[0] == "?" else "%%", sql)


class PostgresAuditStore(StoreReads):
    dialect = POSTGRES

    def __init__(self, conninfo: str, *, connect_timeout: float = 5.0) -> None:
        self._conninfo = conninfo
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        # A server that stops answering (a host gone from the network) must fail a call
        # within seconds, not hang it: the proxy fails closed on errors, not on silence.
        conn = psycopg.connect(
            self._conninfo,
            connect_timeout=max(1, round(self._timeout)),
            application_name="dbward audit store",
            autocommit=True,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
            tcp_user_timeout=10_000,
            # jit: the lineage insert looks costly to the planner (its row estimates for
            # jsonb_each), and compiling it would take far longer than running it.
            options="-c statement_timeout=10000 -c lock_timeout=5000 -c jit=off",
        )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = 'dbward_audit'"
            ).fetchone()
            if exists is None:  # created once, by whoever holds the lock first
                try:
                    with conn.transaction():  # a savepoint: a creator racing us is fine
                        conn.execute("CREATE SCHEMA IF NOT EXISTS dbward_audit")
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema):
                    pass
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dbward_audit.migrations"
                " (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute(
                "SELECT coalesce(max(version), 0) FROM dbward_audit.migrations"
            ).fetchone()
            version = int(row[0]) if row else 0
            for number, step in enumerate(_MIGRATIONS[version:], version + 1):
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO dbward_audit.migrations (version) VALUES (%s)", (number,))
        conn.execute("SET search_path = dbward_audit")
        self._conn = conn
        return conn

    def _run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        conn = self._connect()
        try:
            return work(conn)
        except psycopg.OperationalError:
            conn.close()  # made again on the next call
            self._conn = None
            raise

    # writing ---------------------------------------------------------------------------

    def write(self, records: Sequence[ChainRecord], checkpoint: Checkpoint | None = None) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                _insert(conn, records)
                if checkpoint is not None:
                    _put_checkpoint(conn, checkpoint)

        self._run(work)

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._run(lambda conn: _put_checkpoint(conn, checkpoint))

    def append(
        self,
        chain: str,
        events: Sequence[AuditEvent],
        sign: Callable[[str, int, str], Checkpoint],
    ) -> list[ChainRecord]:
        def work(conn: psycopg.Connection[Any]) -> list[ChainRecord]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (chain,))
                records = extend(chain, *_head(conn, chain), events)
                _insert(conn, records)
                if records:
                    _put_checkpoint(conn, sign(chain, records[-1].seq, records[-1].hash))
                return records

        result: list[ChainRecord] = self._run(work)
        return result

    # reading ---------------------------------------------------------------------------

    def head(self, chain: str) -> tuple[int, bytes]:
        result: tuple[int, bytes] = self._run(lambda conn: _head(conn, chain))
        return result

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def work(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(_driver_sql(sql), list(params)).fetchall()

        result: list[tuple[Any, ...]] = self._run(work)
        return result

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Through a server-side cursor, a few thousand rows at a time."""
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="dbward_audit_stream") as cursor:
                cursor.itersize = 5000
                cursor.execute(_driver_sql(sql), list(params))
                yield from cursor
        except psycopg.OperationalError:
            conn.close()
            self._conn = None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _insert(conn: psycopg.Connection[Any], records: Sequence[ChainRecord]) -> None:
    """Within the caller's transaction."""
    if not records:
        return
    conn.execute(_INCOMING)
    with conn.cursor().copy("COPY incoming (chain, seq, hash, line) FROM STDIN") as copy:
        for r in records:
            copy.write_row((r.chain, r.seq, r.hash, r.line))
    conn.execute(_INSERT)
    conn.execute("TRUNCATE incoming")


def _put_checkpoint(conn: psycopg.Connection[Any], c: Checkpoint) -> None:
    conn.execute(
        "INSERT INTO checkpoints (chain, seq, head, ts, key_id, signature)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (c.chain, c.seq, c.head, c.ts, c.key_id, c.signature),
    )


def _head(conn: psycopg.Connection[Any], chain: str) -> tuple[int, bytes]:
    row = conn.execute(
        "SELECT seq, hash FROM records WHERE chain = %s ORDER BY seq DESC LIMIT 1", (chain,)
    ).fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes.fromhex(row[1]))
