"""asyncpg through dbward: binary types, statement cache, COPY, executemany, cancel."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psycopg
import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward
from tests.integration.helpers import last_id, since, statements, unique, wait_for

T = TypeVar("T")


async def connect(dbward: Dbward, user: str = "app-svc", **kwargs: Any) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=dbward.port,
        user=user,
        password=dbward.token(user),
        database="app",
        ssl="require",
        timeout=10,
        **kwargs,
    )


def run_with(
    dbward: Dbward, body: Callable[[asyncpg.Connection], Awaitable[T]], user: str = "app-svc"
) -> T:
    async def main() -> T:
        conn = await connect(dbward, user)
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def upstream_rows(dbward: Dbward, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dbward.upstream.dsn()) as conn:
        return conn.execute(query).fetchall()


def test_binary_values_round_trip(dbward: Dbward) -> None:
    table = unique("abin")
    stamp = datetime.datetime(2024, 2, 29, 23, 59, 58, 999999, tzinfo=datetime.UTC)
    ident = uuid.uuid4()
    document = {"name": "grüße", "list": [1, 2.5, None], "nested": {"ok": True}}
    values = (
        2**62,
        Decimal("-98765.43210"),
        stamp,
        json.dumps(document),
        ident,
        [1, None, 3],
        ["a", "b,c", 'd"e'],
        b"\x00\x01\xfe\xff",
    )

    async def body(conn: asyncpg.Connection) -> tuple[Any, Any, Any]:
        await conn.execute(
            f"CREATE TABLE {table} (i int8, n numeric, ts timestamptz, doc jsonb, id uuid, "
            "ints int4[], texts text[], raw bytea)"
        )
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", *values)
        stored = await conn.fetchrow(f"SELECT * FROM {table}")
        echoed = await conn.fetchrow(
            "SELECT $1::int8 AS echo_i, $2::numeric, $3::timestamptz, $4::jsonb, $5::uuid, "
            "$6::int4[], $7::text[], $8::bytea",
            *values,
        )
        computed = await conn.fetchrow(
            "SELECT 10::numeric / 4 AS quarter, '2024-01-01 00:00:00+02'::timestamptz AS ts, "
            "'{\"k\": [1]}'::jsonb -> 'k' AS part, ARRAY[[1, 2], [3, 4]] AS grid, "
            "gen_random_uuid() AS fresh, decode('deadbeef', 'hex') AS raw"
        )
        return stored, echoed, computed

    stored, echoed, computed = run_with(dbward, body)
    for row in (stored, echoed):
        assert row[0] == 2**62
        assert row[1] == Decimal("-98765.43210")
        assert row[2] == stamp
        assert json.loads(row[3]) == document
        assert row[4] == ident
        assert row[5] == [1, None, 3]
        assert row[6] == ["a", "b,c", 'd"e']
        assert row[7] == b"\x00\x01\xfe\xff"
    assert computed["quarter"] == Decimal("2.5000000000000000")
    assert computed["ts"] == datetime.datetime(2023, 12, 31, 22, 0, tzinfo=datetime.UTC)
    assert json.loads(computed["part"]) == [1]
    assert computed["grid"] == [[1, 2], [3, 4]]
    assert isinstance(computed["fresh"], uuid.UUID)
    assert computed["raw"] == b"\xde\xad\xbe\xef"

    [insert] = statements(dbward, f"INSERT INTO {table}")
    assert insert["data"]["protocol"] == "extended"
    assert insert["data"]["tags"] == ["INSERT 0 1"]
    [echo] = statements(dbward, "AS echo_i")
    assert "sqlstate" not in echo["data"]
    assert echo["data"]["statement"].startswith("SELECT $1::int8 AS echo_i")


def test_statement_cache_and_prepare(dbward: Dbward) -> None:
    async def body(conn: asyncpg.Connection) -> tuple[list[int], list[int]]:
        cached = [await conn.fetchval("SELECT $1::int * 2 AS doubled", i) for i in range(20)]
        statement = await conn.prepare("SELECT $1::int + 100 AS shifted")
        prepared = [await statement.fetchval(i) for i in range(10)]
        return cached, prepared

    cached, prepared = run_with(dbward, body)
    assert cached == [i * 2 for i in range(20)]
    assert prepared == [i + 100 for i in range(10)]

    doubled = statements(dbward, "AS doubled")
    assert len(doubled) == 20
    names = {r["data"].get("prepared") for r in doubled}
    assert len(names) == 1  # parsed once, bound and executed 20 times
    [name] = names
    assert name is not None
    assert name.startswith("__asyncpg_stmt_")
    assert all("sqlstate" not in r["data"] for r in doubled)
    shifted = statements(dbward, "AS shifted")
    assert len(shifted) == 10
    assert len({r["data"].get("prepared") for r in shifted}) == 1
    assert {r["data"]["protocol"] for r in doubled + shifted} == {"extended"}


def test_rows_read_are_counted_when_the_portal_is_suspended(dbward: Dbward) -> None:
    # fetchval/fetchrow ask for one row (Execute with a row limit) and cursors fetch in
    # chunks: the server answers PortalSuspended instead of CommandComplete. The rows the
    # client read are still rows read.
    async def body(conn: asyncpg.Connection) -> list[int]:
        one = await conn.fetchval("SELECT 7 AS suspended_one")
        first = await conn.fetchrow("SELECT g AS suspended_row FROM generate_series(1, 5) g")
        chunks = []
        async with conn.transaction():
            cursor = await conn.cursor("SELECT g AS suspended_cursor FROM generate_series(1, 10) g")
            for _ in range(3):
                chunks.append(len(await cursor.fetch(4)))
        return [one, first[0], *chunks]

    assert run_with(dbward, body) == [7, 1, 4, 4, 2]
    [one] = statements(dbward, "AS suspended_one")
    [row] = statements(dbward, "AS suspended_row")
    chunks = statements(dbward, "AS suspended_cursor")
    assert (one["data"]["rows"], row["data"]["rows"]) == (1, 1)
    assert [r["data"]["rows"] for r in chunks] == [4, 4, 2]


def test_copy_in_and_out(dbward: Dbward, tmp_path: Path) -> None:
    table = unique("acopy")
    records = [
        (i, f"name {i}", Decimal(i) / 8, datetime.date(2024, 1, 1) + datetime.timedelta(days=i))
        for i in range(1, 1001)
    ]
    records[5] = (6, None, None, None)
    out_file = tmp_path / "table.csv"

    async def body(conn: asyncpg.Connection) -> tuple[str, str]:
        await conn.execute(f"CREATE TABLE {table} (id int, name text, amount numeric, day date)")
        result = await conn.copy_records_to_table(table, records=records)
        assert result == "COPY 1000"
        buffer = io.BytesIO()
        result = await conn.copy_from_query(
            f"SELECT id, name FROM {table} WHERE id <= $1 ORDER BY id",
            3,
            output=buffer,
            format="csv",
        )
        assert result == "COPY 3"
        result = await conn.copy_from_table(table, output=str(out_file), format="csv")
        assert result == "COPY 1000"
        return buffer.getvalue().decode(), out_file.read_text()

    query_csv, table_csv = run_with(dbward, body)
    assert query_csv == "1,name 1\n2,name 2\n3,name 3\n"
    lines = table_csv.splitlines()
    assert len(lines) == 1000
    assert "6,,," in lines
    assert "1000,name 1000,125,2026-09-27" in lines
    assert upstream_rows(dbward, f"SELECT count(*), sum(id) FROM {table}") == [(1000, 500500)]

    [copy_in] = [r for r in statements(dbward, "FROM STDIN") if table in r["data"]["statement"]]
    assert copy_in["data"]["tags"] == ["COPY 1000"]
    assert copy_in["data"]["rows"] == 1000
    copy_out = [r for r in statements(dbward, "TO STDOUT") if table in r["data"]["statement"]]
    assert sorted(r["data"]["rows"] for r in copy_out) == [3, 1000]
    assert all(r["data"]["protocol"] == "simple" for r in [copy_in, *copy_out])


def test_executemany(dbward: Dbward) -> None:
    table = unique("amany")

    async def body(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, label text)")
        await conn.executemany(
            f"INSERT INTO {table} VALUES ($1, $2)", [(i, f"label {i}") for i in range(100)]
        )
        return await conn.fetch(f"SELECT count(*), min(id), max(id) FROM {table}")

    [row] = run_with(dbward, body)
    assert tuple(row) == (100, 0, 99)
    inserts = statements(dbward, f"INSERT INTO {table}")
    assert len(inserts) == 100
    assert all(r["data"]["tags"] == ["INSERT 0 1"] for r in inserts)
    assert {r["data"]["protocol"] for r in inserts} == {"extended"}
    assert {r["data"]["statement"] for r in inserts} == {f"INSERT INTO {table} VALUES ($1, $2)"}


def test_executemany_error_is_recorded(dbward: Dbward) -> None:
    table = unique("amany_err")

    async def body(conn: asyncpg.Connection) -> int:
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(1,), (2,), (1,), (3,)])
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

    assert run_with(dbward, body) == 0  # one implicit transaction: all or nothing
    inserts = statements(dbward, f"INSERT INTO {table}")
    assert [r["data"].get("sqlstate") for r in inserts] == [None, None, "23505"]


def test_statements_after_a_failed_large_executemany_are_recorded(dbward: Dbward) -> None:
    # asyncpg streams the Bind/Execute pairs of executemany and sends one Sync at the end;
    # with many rows the server's error for row 2 comes back while the client is still
    # sending, and the server skips everything the client sends up to the Sync.
    table = unique("amany_big_err")

    async def body(conn: asyncpg.Connection) -> tuple[str, int, int]:
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        rows = [(1,), (1,), *((i,) for i in range(2, 50_000))]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.executemany(f"INSERT INTO {table} VALUES ($1)", rows)
        text = await conn.fetchval("SELECT 'after many' AS after_many")
        count = await conn.fetchval(f"SELECT count(*) AS counted FROM {table}")
        doubled = await conn.fetchval("SELECT $1::int * 2 AS doubled_after", 21)
        return text, count, doubled

    assert run_with(dbward, body) == ("after many", 0, 42)
    inserts = statements(dbward, f"INSERT INTO {table}")
    assert [r["data"].get("sqlstate") for r in inserts] == [None, "23505"]
    [failed] = [r for r in inserts if r["data"].get("sqlstate")]
    after = [
        r
        for r in dbward.statements()
        if r["session_id"] == failed["session_id"] and r["id"] > failed["id"]
    ]
    assert [r["data"]["statement"] for r in after] == [
        "SELECT 'after many' AS after_many",
        f"SELECT count(*) AS counted FROM {table}",
        "SELECT $1::int * 2 AS doubled_after",
    ]


def test_transactions(dbward: Dbward) -> None:
    table = unique("atx")

    async def insert_then_fail(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (3)")
            await conn.execute("SELECT 1 / (0 * random())::int")

    async def body(conn: asyncpg.Connection) -> list[int]:
        await conn.execute(f"CREATE TABLE {table} (id int)")
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(f"INSERT INTO {table} VALUES (2)")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
        with pytest.raises(asyncpg.DivisionByZeroError):
            await insert_then_fail(conn)
        assert not conn.is_in_transaction()
        return [r[0] for r in await conn.fetch(f"SELECT id FROM {table} ORDER BY id")]

    assert run_with(dbward, body) == [1]
    tags = [tuple(r["data"]["tags"]) for r in statements(dbward)]
    assert ("SAVEPOINT",) in tags
    assert ("RELEASE",) not in tags or ("ROLLBACK",) in tags
    assert ("COMMIT",) in tags
    assert ("ROLLBACK",) in tags
    [failed] = statements(dbward, "SELECT 1 / (0 * random())::int")
    assert failed["data"]["sqlstate"] == "22012"


def cancel_a_sleep(dbward: Dbward, user: str) -> tuple[float, float, int]:
    """Run pg_sleep(10), let asyncio.wait_for give up after 0.5 s (asyncpg then sends a
    CancelRequest), then run another query on the same connection."""

    async def body(conn: asyncpg.Connection) -> tuple[float, float, int]:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.fetch("SELECT pg_sleep(10) AS long_sleep"), 0.5)
        timed_out = time.monotonic() - started
        value = await conn.fetchval("SELECT 41 + 1")
        usable = time.monotonic() - started
        return timed_out, usable, value

    return run_with(dbward, body, user=user)


def test_cancel_long_query(dbward: Dbward) -> None:
    before = last_id(dbward)
    timed_out, usable, value = cancel_a_sleep(dbward, "canceller")
    assert timed_out < 2.0
    assert value == 42
    assert usable < 3.0  # the sleep was really cancelled upstream, not waited out

    [sleep] = since(statements(dbward, "AS long_sleep"), before)
    assert sleep["data"]["sqlstate"] == "57014"
    assert "canceling statement due to user request" in sleep["data"]["error"]
    assert sleep["identity"] == "canceller"
    cancels = wait_for(
        lambda: [e for e in since(dbward.audit(), before) if e["kind"] == "cancel"],
        what="the cancel event",
    )
    assert len(cancels) == 1
    assert cancels[0]["session_id"] == sleep["session_id"]
    assert cancels[0]["identity"] == "canceller"
    assert cancels[0]["target"] == "app"
    assert statements(dbward, "SELECT 41 + 1")[-1]["session_id"] == sleep["session_id"]


def test_cancel_event_names_the_identity_kind(dbward: Dbward) -> None:
    before = last_id(dbward)
    dbward.token("cancelling-agent", IdentityKind.AGENT)
    cancel_a_sleep(dbward, "cancelling-agent")
    cancels = wait_for(
        lambda: [e for e in since(dbward.audit(), before) if e["kind"] == "cancel"],
        what="the cancel event",
    )
    # every other event of the session says what kind of identity it was
    assert cancels[0]["identity"] == "cancelling-agent"
    assert cancels[0]["identity_kind"] == "agent"
