"""SIGTERM drains dbward gracefully: work in flight finishes, idle sessions end, then exit 0."""

from __future__ import annotations

import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward

SHUTTING_DOWN = "dbward is shutting down"


@pytest.fixture(scope="module")
def table(upstream_db: UpstreamDb) -> str:
    name = "drained"
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
    return name


@pytest.fixture
def started() -> Iterator[list[Dbward]]:
    """Servers a test started; any still running at the end is stopped."""
    servers: list[Dbward] = []
    yield servers
    for server in servers:
        stop_dbward(server)


def upstream_rows(upstream: UpstreamDb, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(upstream.dsn(), autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def shutdown_ends(server: Dbward) -> list[dict[str, Any]]:
    return [
        e
        for e in server.audit()
        if e["kind"] == "connection.end" and e["data"]["reason"] == "dbward shutting down"
    ]


class Sleeper(threading.Thread):
    """A client whose statement runs for ``seconds`` on the upstream."""

    def __init__(self, conn: psycopg.Connection[Any], marker: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.conn = conn
        self.sql = f"SELECT pg_sleep({seconds}), '{marker}' AS marker"
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.conn.execute(self.sql.encode()).fetchone()
        except BaseException as exc:
            self.error = exc


def test_sigterm_drains_sessions_then_exits(
    upstream_db: UpstreamDb, table: str, tmp_path: Path, started: list[Dbward]
) -> None:
    server = start_dbward(tmp_path, upstream_db)
    started.append(server)
    marker = f"drain-{secrets.token_hex(4)}"

    idle = psycopg.connect(server.dsn(), autocommit=True)
    assert idle.execute("SELECT 1").fetchone() == (1,)
    in_tx = psycopg.connect(server.dsn(), autocommit=True)
    in_tx.execute("BEGIN")
    in_tx.execute(f"INSERT INTO {table} VALUES (1, '{marker}')")
    sleeper = Sleeper(psycopg.connect(server.dsn(), autocommit=True), marker, 2)
    sleeper.start()
    wait_until(
        lambda: upstream_rows(
            upstream_db,
            f"SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
            f"AND query LIKE '%pg_sleep%{marker}%' AND pid <> pg_backend_pid()",
        ),
        5,
        "the pg_sleep statement reaching the upstream",
    )

    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    # New connections are refused at once, while the old ones are still being served.
    wait_until(lambda: refuses_connections(server.port), 1.0, "refusing new connections")
    with pytest.raises(psycopg.OperationalError, match=r"(?i)refused"):
        psycopg.connect(server.dsn(), connect_timeout=2).close()
    assert sleeper.is_alive(), "the pg_sleep statement ended before it should have"
    assert server.proc.poll() is None

    # (b) The open transaction goes on: more statements, then COMMIT.
    in_tx.execute(f"INSERT INTO {table} VALUES (2, '{marker}')")
    count = in_tx.execute(f"SELECT count(*) FROM {table} WHERE note = '{marker}'").fetchone()
    assert count == (2,)
    in_tx.execute("COMMIT")
    assert upstream_rows(upstream_db, f"SELECT id FROM {table} WHERE note = '{marker}'") == [
        (1,),
        (2,),
    ]

    # (c) The statement in flight completes with its result.
    sleeper.join(10)
    assert sleeper.error is None, sleeper.error
    assert sleeper.result == ("", marker)

    # (a) The idle session was ended with 57P01.
    with pytest.raises(psycopg.OperationalError) as ended:
        idle.execute("SELECT 1")
    assert SHUTTING_DOWN in str(ended.value), str(ended.value)
    assert ended.value.sqlstate == "57P01", (ended.value.sqlstate, str(ended.value))

    # Everything done: the process exits 0, well before limits.drain_timeout (10 s).
    code = server.proc.wait(8)
    elapsed = time.monotonic() - signalled
    assert code == 0, server.log()[-3000:]
    assert elapsed < 6, f"exit took {elapsed:.1f} s"
    for conn in (idle, in_tx, sleeper.conn):
        conn.close()

    ends = shutdown_ends(server)
    assert len(ends) == 3, [e["data"] for e in server.audit() if e["kind"] == "connection.end"]
    assert {e["identity"] for e in ends} == {"app-svc"}
    assert "stopped" in server.log()


def test_drain_timeout_ends_a_transaction_left_open(
    upstream_db: UpstreamDb, table: str, tmp_path: Path, started: list[Dbward]
) -> None:
    server = start_dbward(
        tmp_path, upstream_db, extra_config={"limits": {"startup_timeout": 3, "drain_timeout": 2}}
    )
    started.append(server)
    marker = f"stuck-{secrets.token_hex(4)}"
    stuck = psycopg.connect(server.dsn(), autocommit=True)
    stuck.execute("BEGIN")
    stuck.execute(f"INSERT INTO {table} VALUES (100, '{marker}')")

    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_until(lambda: refuses_connections(server.port), 1.0, "refusing new connections")
    # Within the drain window the transaction still works.
    stuck.execute(f"INSERT INTO {table} VALUES (101, '{marker}')")

    code = server.proc.wait(10)
    elapsed = time.monotonic() - signalled
    assert code == 0, server.log()[-3000:]
    assert 1.8 <= elapsed < 6, f"exit after {elapsed:.1f} s with drain_timeout 2 s"

    with pytest.raises(psycopg.OperationalError) as ended:
        stuck.execute("COMMIT")
    assert SHUTTING_DOWN in str(ended.value), str(ended.value)
    stuck.close()
    # The transaction never committed.
    wait_until(
        lambda: (
            not upstream_rows(
                upstream_db,
                f"SELECT 1 FROM pg_stat_activity WHERE query LIKE '%{marker}%' "
                "AND pid <> pg_backend_pid()",
            )
        ),
        5,
        "the upstream session ending",
    )
    assert upstream_rows(upstream_db, f"SELECT id FROM {table} WHERE note = '{marker}'") == []
    assert len(shutdown_ends(server)) == 1
