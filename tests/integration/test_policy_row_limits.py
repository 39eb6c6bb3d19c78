"""``limits.max_rows``: rows over a rule's limit never leave dbward; the client is told."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward

TABLE = f"limited_{uuid.uuid4().hex[:8]}"

POLICY = f"""\
version: 1
rules:
  - name: bulk-read-cap
    match: {{table: public.{TABLE}, kind: read}}
    action: allow
    limits: {{max_rows: 10}}
"""


@pytest.fixture(scope="module")
def capped(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO {TABLE} SELECT g, 'row ' || g FROM generate_series(1, 50) g")
    server = start_dbward(
        Path(tmp_path_factory.mktemp("capped")), upstream_db, environment="production",
        policy=POLICY,
    )  # fmt: skip
    yield server
    stop_dbward(server)


def connect(server: Dbward, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(server.dsn(), connect_timeout=10, **kwargs)


@pytest.mark.parametrize("prepare", [False, True])
def test_a_read_returns_at_most_the_limit_with_a_warning(capped: Dbward, prepare: bool) -> None:
    notices: list[str] = []
    with connect(capped, autocommit=True) as conn:
        # a Diagnostic is only valid inside the callback: keep its text
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = conn.execute(f"SELECT id FROM {TABLE} ORDER BY id", prepare=prepare)
        assert [r[0] for r in cur.fetchall()] == list(range(1, 11))
        assert cur.rowcount == 10
        # the session goes on normally
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (50,)
    assert len(notices) == 1
    assert "cut at 10 row(s) by rule bulk-read-cap" in notices[0]
    assert "40 more row(s) withheld" in notices[0]


def test_small_results_pass_untouched(capped: Dbward) -> None:
    with connect(capped, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {TABLE} WHERE id <= 5 ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]


def test_copy_to_stdout_is_capped_too(capped: Dbward) -> None:
    with connect(capped, autocommit=True) as conn, conn.cursor() as cur:
        data = b""
        with cur.copy(f"COPY {TABLE} TO STDOUT") as copy:
            for chunk in copy:
                data += bytes(chunk)
    assert data.count(b"\n") == 10


def test_a_capped_read_in_a_transaction_leaves_it_usable(capped: Dbward) -> None:
    with connect(capped) as conn:
        assert len(conn.execute(f"SELECT * FROM {TABLE}").fetchall()) == 10
        assert conn.execute("SELECT 42").fetchone() == (42,)
        conn.commit()


def test_the_audit_record_says_how_many_rows_were_withheld(capped: Dbward) -> None:
    with connect(capped, autocommit=True) as conn:
        conn.execute(f"SELECT v FROM {TABLE} WHERE id > 0 -- audit probe").fetchall()
    [record] = [r for r in capped.statements() if "audit probe" in r["data"]["statement"]]
    data = record["data"]
    assert data["decision"] == "allow"
    assert data["rule"] == "bulk-read-cap"
    assert data["withheld_rows"] == 40
