"""The SQLite audit store and its group-commit writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.render import render_event, render_json
from dbward.audit.store import SqliteAuditStore
from dbward.audit.writer import AuditWriter


def _statement(i: int) -> AuditEvent:
    return AuditEvent(
        EventKind.STATEMENT,
        "s1",
        identity="dev@example.com",
        identity_kind="human",
        target="app",
        source="127.0.0.1:5000",
        data={"statement": f"SELECT {i}", "protocol": "simple", "rows": 1, "duration_ms": 0.1},
    )


def test_store_round_trip_and_tail_order(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    store.write_batch([_statement(i) for i in range(5)])
    store.write_batch([_statement(5)])
    latest = store.tail(3)
    assert [s.event.data["statement"] for s in latest] == ["SELECT 3", "SELECT 4", "SELECT 5"]
    after = store.tail(10, after_id=latest[0].id)
    assert [s.id for s in after] == [latest[1].id, latest[2].id]
    assert (tmp_path / "audit.db").stat().st_mode & 0o777 == 0o600
    line = render_event(latest[-1])
    assert "SELECT 5" in line
    assert "dev@example.com (human)" in line
    assert '"statement":"SELECT 5"' in render_json(latest[-1])
    store.close()


def test_writer_commits_one_pass_of_the_loop_in_one_batch(tmp_path: Path) -> None:
    async def run() -> AuditWriter:
        writer = AuditWriter(SqliteAuditStore(tmp_path / "audit.db"))
        futures = [writer.commit(_statement(i)) for i in range(50)]
        writer.record(_statement(50))
        assert not any(f.done() for f in futures)
        await asyncio.gather(*futures)
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.batches == 1
    assert writer.events == 51
    db = sqlite3.connect(tmp_path / "audit.db")
    assert db.execute("SELECT count(*) FROM events").fetchone() == (51,)


def test_a_failing_store_fails_the_waiting_statements(tmp_path: Path) -> None:
    class Broken(SqliteAuditStore):
        def write_batch(self, events: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    async def run() -> None:
        writer = AuditWriter(Broken(tmp_path / "audit.db"))
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await writer.commit(_statement(1))

    asyncio.run(run())


def test_checkpoint_empties_the_write_ahead_log(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    store.write_batch([_statement(i) for i in range(200)])
    assert (tmp_path / "audit.db-wal").stat().st_size > 0
    store.checkpoint()
    reader = sqlite3.connect(tmp_path / "audit.db")
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (200,)
    store.close()
