"""The audit journal, the SQLite store, and the writer between them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.journal import Journal, event_line, event_row, line_row, row_line
from dbward.audit.render import render_event, render_json
from dbward.audit.store import SqliteAuditStore
from dbward.audit.writer import AuditWriter


def _statement(i: int) -> AuditEvent:
    return AuditEvent(
        EventKind.STATEMENT,
        "s1",
        identity='dev "quoted" @example.com',
        identity_kind="human",
        target="app",
        source="127.0.0.1:5000",
        data={"statement": f"SELECT {i}", "protocol": "simple", "rows": 1, "duration_ms": 0.1},
    )


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        db.close()


def test_journal_lines_round_trip_and_torn_lines_are_skipped() -> None:
    event = _statement(1)
    row = event_row(7, event)
    line = row_line(row)
    assert event_line(7, event) == line
    assert line.endswith(b"\n")
    assert line_row(line) == row
    assert line_row(line[:-10]) is None


def test_journal_lines_are_stored_exactly_as_rows_are(tmp_path: Path) -> None:
    by_rows = SqliteAuditStore(tmp_path / "rows.db")
    by_lines = SqliteAuditStore(tmp_path / "lines.db")
    rows = [event_row(i, _statement(i)) for i in range(1, 4)]
    by_rows.write_rows(rows)
    by_lines.write_lines([row_line(r) for r in rows])
    by_lines.write_lines([row_line(rows[0])])  # stored already: ignored
    assert by_lines.tail(10) == by_rows.tail(10)
    assert by_lines.max_id() == 3


def test_store_round_trip_tail_order_and_idempotent_rows(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    rows = [event_row(i + 1, _statement(i)) for i in range(6)]
    store.write_rows(rows[:5])
    store.write_rows(rows[4:])  # row 5 again: ignored
    assert store.max_id() == 6
    latest = store.tail(3)
    assert [s.event.data["statement"] for s in latest] == ["SELECT 3", "SELECT 4", "SELECT 5"]
    after = store.tail(10, after_id=latest[0].id)
    assert [s.id for s in after] == [5, 6]
    assert (tmp_path / "audit.db").stat().st_mode & 0o777 == 0o600
    line = render_event(latest[-1])
    assert "SELECT 5" in line
    assert "(human)" in line
    assert '"statement":"SELECT 5"' in render_json(latest[-1])
    store.close()


def test_record_is_in_the_journal_before_it_returns(tmp_path: Path) -> None:
    async def run() -> None:
        writer = AuditWriter(
            SqliteAuditStore(tmp_path / "audit.db"), tmp_path / "journal", store_interval=60
        )
        writer.record(_statement(1))
        (segment,) = Journal(tmp_path / "journal").leftovers()
        assert [row[0] for row in Journal.read(segment)] == [1]
        assert _count(tmp_path / "audit.db") == 0  # not stored yet: the thread sleeps
        await writer.close()
        assert _count(tmp_path / "audit.db") == 1
        assert Journal(tmp_path / "journal").leftovers() == []

    asyncio.run(run())


def test_the_store_catches_up_in_batches(tmp_path: Path) -> None:
    async def run() -> AuditWriter:
        writer = AuditWriter(
            SqliteAuditStore(tmp_path / "audit.db"), tmp_path / "journal", store_interval=0.01
        )
        for i in range(100):
            writer.record(_statement(i))
        for _ in range(200):
            if _count(tmp_path / "audit.db") == 100:
                break
            await asyncio.sleep(0.01)
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert _count(tmp_path / "audit.db") == 100
    assert writer.batches < 100


def test_events_left_in_the_journal_by_a_crash_are_stored_at_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    rows = [event_row(i, _statement(i)) for i in (1, 2, 3)]
    journal.append(b"".join(row_line(r) for r in rows) + b'[4,1.0,"stat', 1, 3)
    journal.close(stored_up_to=0)  # as a crash would leave it: segment kept

    async def run() -> AuditWriter:
        writer = AuditWriter(SqliteAuditStore(tmp_path / "audit.db"), tmp_path / "journal")
        writer.record(_statement(4))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.recovered == 3
    db = sqlite3.connect(tmp_path / "audit.db")
    ids = [r[0] for r in db.execute("SELECT id FROM events ORDER BY id")]
    assert ids == [1, 2, 3, 4]


def test_a_failing_store_keeps_events_in_the_journal(tmp_path: Path) -> None:
    class Broken(SqliteAuditStore):
        def write_lines(self, lines: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    async def run() -> None:
        writer = AuditWriter(Broken(tmp_path / "audit.db"), tmp_path / "journal")
        writer.record(_statement(1))
        await writer.close()

    asyncio.run(run())
    (segment,) = Journal(tmp_path / "journal").leftovers()
    assert len(list(Journal.read(segment))) == 1


def test_a_full_disk_makes_record_raise(tmp_path: Path) -> None:
    async def run() -> None:
        writer = AuditWriter(SqliteAuditStore(tmp_path / "audit.db"), tmp_path / "journal")
        # The first segment is created on the first record: make it a full disk.
        (tmp_path / "journal" / "journal-1.log").symlink_to("/dev/full")
        with pytest.raises(OSError, match="No space left on device"):
            writer.record(_statement(1))
        (tmp_path / "journal" / "journal-1.log").unlink()
        await writer.close()

    asyncio.run(run())


def test_the_trail_shows_what_only_the_journal_holds(tmp_path: Path) -> None:
    from dbward.audit.trail import AuditTrail

    store = SqliteAuditStore(tmp_path / "audit.db")
    store.write_rows([event_row(i, _statement(i)) for i in (1, 2)])
    store.close()
    journal = Journal(tmp_path / "journal")
    journal.append(b"".join(row_line(event_row(i, _statement(i))) for i in (2, 3, 4)), 2, 4)
    journal.close(stored_up_to=0)  # a crash: 3 and 4 were never stored
    trail = AuditTrail(tmp_path / "audit.db", tmp_path / "journal")
    assert [e.id for e in trail.read(10)] == [1, 2, 3, 4]
    assert [e.id for e in trail.read(2)] == [3, 4]
    assert [e.id for e in trail.read(10, after_id=2)] == [3, 4]
    assert trail.read(10)[-1].event.data["statement"] == "SELECT 4"
    trail.close()


def test_a_lagging_store_is_caught_up_inline_so_memory_stays_bounded(tmp_path: Path) -> None:
    async def run() -> AuditWriter:
        writer = AuditWriter(
            SqliteAuditStore(tmp_path / "audit.db"),
            tmp_path / "journal",
            store_interval=60,  # the thread never gets to it
            max_pending=100,
        )
        for i in range(250):
            writer.record(_statement(i))
        assert len(writer._queue) < 100
        assert _count(tmp_path / "audit.db") == 200
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.inline_stores == 2
    assert _count(tmp_path / "audit.db") == 250
