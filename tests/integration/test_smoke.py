"""The shortest path through dbward: psycopg in, a row out, a record in the audit."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from tests.conftest import Dbward


def test_select_through_dbward_is_recorded(dbward: Dbward) -> None:
    with psycopg.connect(dbward.dsn()) as conn:
        row = conn.execute(
            "SELECT current_user, application_name FROM pg_stat_activity "
            "WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    assert row[0] == dbward.upstream.role
    assert row[1].startswith("app-svc via dbward")
    statements = [s for s in dbward.statements() if "pg_stat_activity" in s["data"]["statement"]]
    assert statements[-1]["identity"] == "app-svc"
    assert statements[-1]["data"]["rows"] == 1


def test_a_streamed_result_is_recorded_as_started_before_its_first_rows(dbward: Dbward) -> None:
    big = "SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g"
    small = "SELECT 'one small result'"
    with psycopg.connect(dbward.dsn()) as conn:
        assert len(conn.execute(big).fetchall()) == 50000
        conn.execute(small).fetchall()
        with (
            conn.cursor() as cur,
            cur.copy("COPY (SELECT generate_series(1, 100000)) TO STDOUT") as copy,
        ):
            copied = sum(len(bytes(chunk)) for chunk in copy)
    assert copied > 0
    events = [e for e in dbward.audit() if e["kind"] in ("statement", "statement.started")]
    by_text: dict[str, list[str]] = {}
    for event in events:
        by_text.setdefault(event["data"]["statement"], []).append(event["kind"])
    # Rows left dbward before the big SELECT and the COPY finished: each has a start record
    # committed before the first of them, then its outcome.
    assert by_text[big] == ["statement.started", "statement"]
    assert by_text["COPY (SELECT generate_series(1, 100000)) TO STDOUT"] == [
        "statement.started",
        "statement",
    ]
    # A result that fits in one read goes out with its outcome: one record.
    assert by_text[small] == ["statement"]
    finished = [e for e in events if e["data"]["statement"] == big and e["kind"] == "statement"]
    assert finished[0]["data"]["rows"] == 50000


def test_a_statement_cut_short_by_the_server_is_recorded_as_incomplete(
    dbward: Dbward, pg_admin: psycopg.Connection[Any]
) -> None:
    conn = psycopg.connect(dbward.dsn(), autocommit=True)
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert backend is not None

    def terminate_soon() -> None:
        time.sleep(0.5)
        pg_admin.execute("SELECT pg_terminate_backend(%s)", [backend[0]])

    killer = threading.Thread(target=terminate_soon)
    killer.start()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT pg_sleep(10) AS cut_short")
    killer.join()
    conn.close()
    for _ in range(100):
        records = [s for s in dbward.statements() if "cut_short" in s["data"]["statement"]]
        if records:
            break
        time.sleep(0.05)
    (record,) = records
    assert record["data"]["incomplete"] is True
    assert record["data"]["sqlstate"] == "57P01"
