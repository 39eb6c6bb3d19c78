"""The audit journal, the SQLite store, and the writer between them."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dbward.audit import journal as journal_module
from dbward.audit import writer as writer_module
from dbward.audit.chain import (
    GENESIS,
    ChainRecord,
    extend,
    journal_entry,
    parse_journal_entry,
)
from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.journal import Journal, journal_segments
from dbward.audit.render import render_event, render_json
from dbward.audit.signing import Checkpoint, Signer
from dbward.audit.store import _MIGRATIONS, IMPORTED_CHAIN, SqliteAuditStore
from dbward.audit.trail import AuditTrail
from dbward.audit.verify import Verification, verify_store
from dbward.audit.writer import AuditWriter, recover_journals

SIGNER = Signer(b"unit-test audit seed")
CHAIN = "test-0"


def _statement(i: int, **data: object) -> AuditEvent:
    return AuditEvent(
        EventKind.STATEMENT,
        "s1",
        identity='dev "quoted" @example.com',
        identity_kind="human",
        target="app",
        source="127.0.0.1:5000",
        data={"statement": f"SELECT {i}", "protocol": "simple", "rows": 1, "duration_ms": 0.1}
        | data,
    )


def _chained(
    events: Iterable[AuditEvent], *, chain: str = CHAIN, after: tuple[int, bytes] = (0, GENESIS)
) -> list[ChainRecord]:
    """Records as a writer chains them, continuing from ``after`` (seq, hash)."""
    return extend(chain, *after, events)


def _writer(
    tmp_path: Path, *, chain: str = CHAIN, journal: str = "journal", **options: Any
) -> AuditWriter:
    """A writer of ``chain`` into tmp_path/audit.db, journalling under tmp_path/``journal``."""
    return AuditWriter(
        SqliteAuditStore(tmp_path / "audit.db"),
        tmp_path / journal,
        chain=chain,
        signer=SIGNER,
        **options,
    )


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path)) as db:
        yield db


def _count(path: Path) -> int:
    """Records in the store, read as any other reader would."""
    with _db(path) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def _verify(path: Path) -> Verification:
    store = SqliteAuditStore(path)
    try:
        return verify_store(store, SIGNER.public)
    finally:
        store.close()


# --------------------------------------------------------------------------- journal and store


def test_journal_entries_round_trip_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    records = _chained(_statement(i) for i in (1, 2, 3))
    entry = journal_entry(records[0])
    assert entry == f"{records[0].hash} {records[0].line}\n".encode()
    assert parse_journal_entry(entry) == records[0]
    assert parse_journal_entry(entry[:-10]) is None  # torn: no newline

    journal = Journal(tmp_path / "journal")
    data = b"".join(journal_entry(r) for r in records)
    journal.append(data + journal_entry(_chained([_statement(4)])[0])[:-20], 1, 3)
    journal.close(stored_up_to=0)  # as a crash leaves it: the segment is kept
    (segment,) = journal_segments(tmp_path / "journal")
    assert list(Journal.read(segment)) == records


def test_records_from_the_journal_are_stored_exactly_as_written_ones(tmp_path: Path) -> None:
    records = _chained(_statement(i) for i in (1, 2, 3))
    direct = SqliteAuditStore(tmp_path / "direct.db")
    direct.write(records)
    journal = Journal(tmp_path / "journal")
    journal.append(b"".join(journal_entry(r) for r in records), 1, 3)
    journal.close(stored_up_to=0)
    recovered = SqliteAuditStore(tmp_path / "recovered.db")
    assert recover_journals(recovered, tmp_path / "journal") == 3
    assert journal_segments(tmp_path / "journal") == []
    assert list(recovered.chain_records(CHAIN)) == list(direct.chain_records(CHAIN))
    assert [(r.chain, r.seq, r.hash, r.line) for r in direct.chain_records(CHAIN)] == [
        (r.chain, r.seq, r.hash, r.line) for r in records
    ]
    direct.close()
    recovered.close()


def test_store_round_trip_tail_order_paging_and_idempotent_writes(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    records = _chained(_statement(i) for i in range(6))
    store.write(records[:5])
    store.write(records[4:])  # record 5 again: ignored
    store.write(records)  # all of them again: nothing changes
    assert _count(tmp_path / "audit.db") == 6
    assert store.head(CHAIN) == (6, bytes.fromhex(records[-1].hash))
    assert store.head("no-such-chain") == (0, GENESIS)
    latest = store.tail(3)
    assert [s.event.data["statement"] for s in latest] == ["SELECT 3", "SELECT 4", "SELECT 5"]
    assert [(s.chain, s.seq) for s in latest] == [(CHAIN, 4), (CHAIN, 5), (CHAIN, 6)]
    after = store.tail(10, after_id=latest[0].id)
    assert [s.id for s in after] == [5, 6]
    assert [s.id for s in store.tail(2, after_id=1)] == [2, 3]
    assert (tmp_path / "audit.db").stat().st_mode & 0o777 == 0o600
    line = render_event(latest[-1])
    assert "SELECT 5" in line
    assert "(human)" in line
    assert '"statement":"SELECT 5"' in render_json(latest[-1])
    assert json.loads(render_json(latest[-1]))["identity"] == 'dev "quoted" @example.com'
    store.close()


def _sign_now(chain: str, seq: int, head: str) -> Checkpoint:
    return SIGNER.checkpoint(chain, seq, head, time.time())


def test_append_chains_and_signs_without_a_journal(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    first = store.append("cli", [_statement(1), _statement(2)], _sign_now)
    second = store.append("cli", [_statement(3)], _sign_now)
    assert [r.seq for r in first + second] == [1, 2, 3]
    assert [c.seq for c in store.checkpoints("cli")] == [2, 3]
    report = verify_store(store, SIGNER.public).chains[0]
    assert (report.problem, report.last_seq, report.signed_seq) == (None, 3, 3)
    store.close()


# --------------------------------------------------------------------------- the writer


def test_record_is_in_the_journal_before_it_returns(tmp_path: Path) -> None:
    async def run() -> None:
        writer = _writer(tmp_path, store_interval=60)
        writer.record(_statement(1))
        (segment,) = journal_segments(tmp_path / "journal")
        assert [(r.chain, r.seq) for r in Journal.read(segment)] == [(CHAIN, 1)]
        assert _count(tmp_path / "audit.db") == 0  # not stored yet: the thread sleeps
        await writer.close()
        assert _count(tmp_path / "audit.db") == 1
        assert journal_segments(tmp_path / "journal") == []

    asyncio.run(run())


def test_the_store_catches_up_in_batches(tmp_path: Path) -> None:
    async def run() -> AuditWriter:
        writer = _writer(tmp_path, store_interval=0.01)
        for i in range(100):
            writer.record(_statement(i))
        for _ in range(500):
            if _count(tmp_path / "audit.db") == 100:
                break
            await asyncio.sleep(0.01)
        assert _count(tmp_path / "audit.db") == 100  # by the thread, before close
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert _count(tmp_path / "audit.db") == 100
    assert writer.batches < 100
    assert _verify(tmp_path / "audit.db").ok


def test_records_left_in_the_journal_by_a_crash_are_stored_at_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    records = _chained(_statement(i) for i in (1, 2, 3))
    torn = journal_entry(_chained([_statement(4)], after=(3, bytes.fromhex(records[-1].hash)))[0])
    journal.append(b"".join(journal_entry(r) for r in records) + torn[:-30], 1, 3)
    journal.close(stored_up_to=0)  # as a crash would leave it: segment kept

    async def run() -> AuditWriter:
        writer = _writer(tmp_path)
        writer.record(_statement(4))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.recovered == 3
    with _db(tmp_path / "audit.db") as db:
        rows = db.execute("SELECT id, seq FROM records ORDER BY id").fetchall()
    assert rows == [(1, 1), (2, 2), (3, 3), (4, 4)]  # the chain went on from the recovered head
    verification = _verify(tmp_path / "audit.db")
    assert verification.ok
    assert verification.chains[0].signed_seq == 4


def test_a_restarted_writer_continues_its_chain(tmp_path: Path) -> None:
    async def run(first: int, count: int) -> None:
        writer = _writer(tmp_path, store_interval=60)
        for i in range(first, first + count):
            writer.record(_statement(i))
        await writer.close()

    asyncio.run(run(0, 3))
    asyncio.run(run(3, 2))
    with _db(tmp_path / "audit.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM records ORDER BY id")]
    assert seqs == [1, 2, 3, 4, 5]
    verification = _verify(tmp_path / "audit.db")
    assert verification.ok
    (report,) = verification.chains
    assert (report.records, report.last_seq, report.signed_seq) == (5, 5, 5)
    assert report.checkpoints == 2  # one at each close


def test_two_writers_with_their_own_chains_share_one_store(tmp_path: Path) -> None:
    async def run() -> None:
        # Stored in turns from here (their threads sleep): see the next test for why.
        a = _writer(tmp_path, chain="a", journal="journal-a", store_interval=60)
        b = _writer(tmp_path, chain="b", journal="journal-b", store_interval=60)
        for i in range(50):
            a.record(_statement(i))
            b.record(_statement(i))
            if i % 10 == 9:
                a.store_pending()
                b.store_pending()
        await a.close()
        await b.close()

    asyncio.run(run())
    with _db(tmp_path / "audit.db") as db:
        chains = "".join(r[0] for r in db.execute("SELECT chain FROM records ORDER BY id"))
    assert chains == ("a" * 10 + "b" * 10) * 5  # interleaved in the store
    verification = _verify(tmp_path / "audit.db")
    assert verification.ok
    assert [(c.chain, c.records, c.signed_seq) for c in verification.chains] == [
        ("a", 50, 50),
        ("b", 50, 50),
    ]


class _Interleaved:
    """A store's connection that lets ``between`` run inside the store's next transaction,
    right after its first read (as another process's store would, given bad timing)."""

    def __init__(self, db: sqlite3.Connection, between: Callable[[], None]) -> None:
        self._db = db
        self._between = between
        self._in_transaction = False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = self._db.execute(sql, *args)  # type: ignore[arg-type]
        if sql.startswith("BEGIN"):
            self._in_transaction = True
        elif self._in_transaction:
            self._in_transaction = False
            self._between()
        return cursor

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def test_two_stores_writing_at_once_wait_for_each_other(tmp_path: Path) -> None:
    """Another process's store tries to write in the middle of this one's transaction:
    it waits for the lock (instead of this one failing with 'database is locked')."""
    mine = SqliteAuditStore(tmp_path / "audit.db")
    other = SqliteAuditStore(tmp_path / "audit.db")
    failures: list[BaseException] = []

    def other_write() -> None:
        try:
            other.write(_chained([_statement(1)], chain="other"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    thread = threading.Thread(target=other_write)

    def other_writes() -> None:
        thread.start()
        thread.join(0.2)  # it is waiting for mine's lock
        assert thread.is_alive()

    mine._db = _Interleaved(mine._db, other_writes)  # type: ignore[assignment]
    mine.write(_chained([_statement(1)], chain="mine"))
    thread.join(5)
    assert not failures
    assert mine.head("mine")[0] == 1
    assert mine.head("other")[0] == 1
    mine.close()
    other.close()


def test_a_failing_store_keeps_records_in_the_journal(tmp_path: Path) -> None:
    class Broken(SqliteAuditStore):
        def write(self, records: object, checkpoint: object = None) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    async def run() -> None:
        writer = AuditWriter(
            Broken(tmp_path / "audit.db"), tmp_path / "journal", chain=CHAIN, signer=SIGNER
        )
        writer.record(_statement(1))
        await writer.close()

    asyncio.run(run())
    (segment,) = journal_segments(tmp_path / "journal")
    assert [r.seq for r in Journal.read(segment)] == [1]


def test_a_full_disk_makes_record_raise(tmp_path: Path) -> None:
    async def run() -> None:
        writer = _writer(tmp_path)
        # The first segment is created on the first record: make it a full disk.
        (tmp_path / "journal" / "journal-1.log").symlink_to("/dev/full")
        with pytest.raises(OSError, match="No space left on device"):
            writer.record(_statement(1))
        assert writer.events == 0  # the record took no place in the chain
        (tmp_path / "journal" / "journal-1.log").unlink()
        await writer.close()

    asyncio.run(run())
    assert _count(tmp_path / "audit.db") == 0


class _FillingDisk:
    """Stands in for the journal's ``os``: the disk fills up in the middle of a write."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        if self.writes == 2:  # the second record: half of it fits
            return os.write(fd, bytes(data[: len(data) // 2]))
        if self.writes == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


def test_a_record_committed_after_a_torn_write_can_be_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> list[int]:
        writer = _writer(tmp_path, store_interval=60)
        monkeypatch.setattr(journal_module, "os", _FillingDisk())
        writer.record(_statement(1))
        with pytest.raises(OSError, match="No space left on device"):
            writer.record(_statement(2))
        writer.record(_statement(3))  # committed: the space came back
        monkeypatch.undo()
        # What a crash now would leave for recovery:
        segments = journal_segments(tmp_path / "journal")
        journalled = [r.seq for segment in segments for r in Journal.read(segment)]
        await writer.close()
        return journalled

    assert asyncio.run(run()) == [1, 2]


def test_the_trail_shows_what_only_the_journal_holds(tmp_path: Path) -> None:
    records = _chained(_statement(i) for i in (1, 2, 3, 4))
    store = SqliteAuditStore(tmp_path / "audit.db")
    store.write(records[:2])
    store.close()
    journal = Journal(tmp_path / "journal")
    journal.append(b"".join(journal_entry(r) for r in records[1:]), 2, 4)
    journal.close(stored_up_to=0)  # a crash: 3 and 4 were never stored
    trail = AuditTrail(SqliteAuditStore(tmp_path / "audit.db"), tmp_path / "journal")
    assert [(e.id, e.seq) for e in trail.read(10)] == [(1, 1), (2, 2), (0, 3), (0, 4)]
    assert [e.seq for e in trail.read(2)] == [3, 4]
    assert [e.seq for e in trail.read(10, after_id=1)] == [2, 3, 4]
    assert trail.read(10)[-1].event.data["statement"] == "SELECT 4"
    trail.close()


def test_a_lagging_store_is_caught_up_inline_so_memory_stays_bounded(tmp_path: Path) -> None:
    async def run() -> AuditWriter:
        writer = _writer(tmp_path, store_interval=60, max_pending=100)  # the thread never runs
        for i in range(250):
            writer.record(_statement(i))
        assert len(writer._queue) < 100
        assert _count(tmp_path / "audit.db") == 200
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.inline_stores == 2
    assert _count(tmp_path / "audit.db") == 250
    assert _verify(tmp_path / "audit.db").ok


# --------------------------------------------------------------------------- checkpoints


class _Clock:
    """Stands in for the writer's ``time`` module: the time is what the test sets."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(
        writer_module, "time", SimpleNamespace(time=clock.time, monotonic=time.monotonic)
    )
    return clock


def _signed_seqs(path: Path) -> list[int]:
    with _db(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM checkpoints ORDER BY seq")]


def test_checkpoints_every_interval_and_at_close(tmp_path: Path, clock: _Clock) -> None:
    async def run() -> AuditWriter:
        writer = _writer(tmp_path, store_interval=60, checkpoint_interval=10)
        seq = 0

        def batch(count: int, at: float) -> None:
            nonlocal seq
            clock.now = float(at)
            for _ in range(count):
                seq += 1
                writer.record(_statement(seq))
            writer.store_pending()

        batch(3, 1_000)  # the first batch: signed, as no checkpoint came before it
        batch(3, 1_005)  # 5 s later: not due
        batch(1, 1_010)  # 10 s after the last one: due
        batch(0, 1_030)  # nothing new: nothing to sign
        clock.now = 1_031.0
        writer.record(_statement(8))
        await writer.close()  # stored and signed at close
        return writer

    writer = asyncio.run(run())
    assert _signed_seqs(tmp_path / "audit.db") == [3, 7, 8]
    assert writer.checkpoints == 3
    store = SqliteAuditStore(tmp_path / "audit.db")
    assert [c.ts for c in store.checkpoints(CHAIN)] == [1_000, 1_010, 1_031]
    store.close()
    assert _verify(tmp_path / "audit.db").chains[0].signed_seq == 8


def test_close_signs_records_stored_since_the_last_checkpoint(
    tmp_path: Path, clock: _Clock
) -> None:
    async def run() -> None:
        writer = _writer(tmp_path, store_interval=60, checkpoint_interval=10)
        writer.record(_statement(1))
        writer.store_pending()  # signed: the first checkpoint
        clock.now += 1
        writer.record(_statement(2))
        writer.store_pending()  # stored, not signed: not due yet
        await writer.close()

    asyncio.run(run())
    assert _signed_seqs(tmp_path / "audit.db") == [1, 2]


# --------------------------------------------------------------------------- schema


def _v1_store(path: Path, events: list[AuditEvent]) -> None:
    """A store as the first release wrote it: one ``events`` table, user_version 1."""
    with _db(path) as db:
        db.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,"
            " session_id TEXT NOT NULL, identity TEXT, identity_kind TEXT, target TEXT,"
            " source TEXT, data TEXT NOT NULL)"
        )
        db.executemany(
            "INSERT INTO events (id, ts, kind, session_id, identity, identity_kind, target,"
            " source, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    10 + 5 * i,  # the old ids need not be dense
                    e.ts,
                    e.kind.value,
                    e.session_id,
                    e.identity,
                    e.identity_kind,
                    e.target,
                    e.source,
                    json.dumps(e.data),
                )
                for i, e in enumerate(events)
            ],
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()


def test_a_v1_store_is_migrated_into_the_imported_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    events = [
        _statement(1),
        AuditEvent(EventKind.LOGIN_FAILED, "s2", source="10.0.0.1:1", data={"user": "x"}),
        _statement(3),
    ]
    _v1_store(path, events)
    store = SqliteAuditStore(path)
    assert store.query("PRAGMA user_version") == [(len(_MIGRATIONS),)]
    assert store.chains() == [IMPORTED_CHAIN]
    assert [(r.chain, r.seq) for r in store.chain_records(IMPORTED_CHAIN)] == [
        (IMPORTED_CHAIN, 1),
        (IMPORTED_CHAIN, 2),
        (IMPORTED_CHAIN, 3),
    ]
    assert [s.event for s in store.tail(10)] == events
    view = store.query("SELECT kind, session_id, identity, source, data FROM events ORDER BY id")
    assert [(k, s, i, src, json.loads(d)) for k, s, i, src, d in view] == [
        (e.kind.value, e.session_id, e.identity, e.source, e.data) for e in events
    ]
    # No checkpoint was ever signed for them, so any key verifies them (all unsigned).
    for key in (SIGNER.public, Signer(b"someone else").public):
        (report,) = verify_store(store, key).chains
        assert (report.problem, report.records, report.signed_seq, report.unsigned) == (
            None,
            3,
            0,
            3,
        )
    store.close()
    reopened = SqliteAuditStore(path)  # migrated once: nothing more to do
    assert reopened.query("SELECT count(*) FROM records") == [(3,)]
    reopened.close()


def test_a_new_store_has_the_latest_schema_and_an_empty_events_view(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    assert store.query("PRAGMA user_version") == [(len(_MIGRATIONS),)]
    assert store.query("SELECT count(*) FROM events") == [(0,)]
    assert store.chains() == []
    store.close()


# --------------------------------------------------------------------------- lineage rows

LINEAGE = {"read": {"public.people": ["email", "*"]}, "write": {"public.t": ["*"]}}


def test_lineage_rows_are_stored_once_per_table_and_column(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    records = _chained([_statement(1), _statement(2, lineage=LINEAGE), _statement(3)])
    store.write(records)
    store.write(records)  # again: no new rows
    store.write(records[1:2])
    (record,) = [r for r in store.chain_records(CHAIN) if r.seq == 2]
    event = record.stored().event
    rows = store.query(
        "SELECT record_id, ts, identity, relation, col, access FROM touches"
        " ORDER BY access, relation, col"
    )
    assert rows == [
        (record.id, event.ts, event.identity, "public.people", "", "read"),
        (record.id, event.ts, event.identity, "public.people", "*", "read"),
        (record.id, event.ts, event.identity, "public.people", "email", "read"),
        (record.id, event.ts, event.identity, "public.t", "", "write"),
        (record.id, event.ts, event.identity, "public.t", "*", "write"),
    ]
    store.close()


def test_lineage_rows_come_from_records_the_writer_stores(tmp_path: Path) -> None:
    async def run() -> None:
        writer = _writer(tmp_path, store_interval=60)
        writer.record(_statement(1, lineage={"read": {"public.people": ["email"]}}))
        writer.store_pending()
        writer.record(_statement(2, lineage={"write": {"public.people": ["*"]}}))
        await writer.close()

    asyncio.run(run())
    with _db(tmp_path / "audit.db") as db:
        rows = db.execute(
            "SELECT r.seq, t.col, t.access FROM touches t JOIN records r ON r.id = t.record_id"
            " ORDER BY r.seq, t.col"
        ).fetchall()
    assert rows == [(1, "", "read"), (1, "email", "read"), (2, "", "write"), (2, "*", "write")]
