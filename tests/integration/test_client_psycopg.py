"""psycopg 3 through dbward: parameters, binary, COPY, pipeline, LISTEN/NOTIFY, cursors."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward
from tests.integration.helpers import last_id, since, statements, unique, wait_for


def connect(dbward: Dbward, user: str = "app-svc", **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(dbward.dsn(user), connect_timeout=10, **kwargs)


def upstream_rows(dbward: Dbward, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dbward.upstream.dsn()) as conn:
        return conn.execute(query).fetchall()


def test_server_side_parameters(dbward: Dbward) -> None:
    day = datetime.date(2024, 2, 29)
    with connect(dbward) as conn:
        row = conn.execute(
            "SELECT %s::int + 1 AS answer, %s || '!' , %s + 1, %s::int IS NULL, %s::text",
            [41, "grüße", day, None, "it's; -- not sql"],
        ).fetchone()
    assert row == (42, "grüße!", datetime.date(2024, 3, 1), True, "it's; -- not sql")
    [record] = statements(dbward, "AS answer")
    data = record["data"]
    assert data["statement"] == (
        "SELECT $1::int + 1 AS answer, $2 || '!' , $3 + 1, $4::int IS NULL, $5::text"
    )
    assert data["protocol"] == "extended"
    assert data["rows"] == 1
    assert data["tags"] == ["SELECT 1"]
    assert "it's" not in data["statement"]  # parameter values travel apart from the text


def test_binary_parameters_and_results(dbward: Dbward) -> None:
    stamp = datetime.datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=datetime.UTC)
    ident = uuid.uuid4()
    values = [
        2**40,
        Decimal("12345.6789"),
        stamp,
        Jsonb({"a": [1, 2, {"b": None}]}),
        ident,
        [1, 2, 3],
        b"\x00\xffbinary\x01",
        "text with \x01 control",
    ]
    with connect(dbward) as conn:
        cur = conn.execute(
            "SELECT %b::int8 AS big, %b::numeric, %b::timestamptz, %b::jsonb, %b::uuid, "
            "%b::int4[], %b::bytea, %b::text",
            values,
            binary=True,
        )
        row = cur.fetchone()
        assert cur.pgresult is not None
        formats = [cur.pgresult.fformat(i) for i in range(cur.pgresult.nfields)]
    assert formats == [1] * 8
    assert row == (
        2**40,
        Decimal("12345.6789"),
        stamp,
        {"a": [1, 2, {"b": None}]},
        ident,
        [1, 2, 3],
        b"\x00\xffbinary\x01",
        "text with \x01 control",
    )
    [record] = statements(dbward, "$1::int8 AS big")
    assert record["data"]["protocol"] == "extended"
    assert record["data"]["rows"] == 1


def test_copy_write_row_and_read(dbward: Dbward) -> None:
    table = unique("pcopy")
    rows = [(i, f"name {i}", Decimal(i) / 4) for i in range(1, 501)]
    rows[7] = (8, "tab\tnew\nline \\ back", None)
    rows[8] = (9, None, Decimal("0.01"))
    with connect(dbward, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer, name text, amount numeric)")
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, name, amount) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            assert cur.rowcount == 500
            with cur.copy(f"COPY {table} (id, name, amount) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric"])
                copy.write_row((1000, "binary row", Decimal("-1.5")))
            with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT") as copy:
                copy.set_types(["int4", "text", "numeric"])
                read = list(copy.rows())
    assert read == [*rows, (1000, "binary row", Decimal("-1.5"))]

    [copy_in, binary_in] = statements(dbward, f"COPY {table} (id, name, amount) FROM STDIN")
    assert copy_in["data"]["tags"] == ["COPY 500"]
    assert copy_in["data"]["rows"] == 500
    assert binary_in["data"]["tags"] == ["COPY 1"]
    [copy_out] = statements(dbward, f"FROM {table} ORDER BY id) TO STDOUT")
    assert copy_out["data"]["tags"] == ["COPY 501"]
    assert copy_out["data"]["rows"] == 501


def test_copy_aborted_by_the_client_is_recorded(dbward: Dbward) -> None:
    table = unique("pcopy_fail")

    def copy_then_fail(cur: psycopg.Cursor[Any]) -> None:
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write_row((1,))
            raise ValueError("the application gave up")  # psycopg sends CopyFail

    with connect(dbward, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer)")
        with conn.cursor() as cur, pytest.raises(ValueError, match="gave up"):
            copy_then_fail(cur)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    [record] = statements(dbward, f"COPY {table} FROM STDIN")
    assert record["data"]["sqlstate"] == "57014"
    assert "the application gave up" in record["data"]["error"]


def test_large_values_and_results_stream_through(dbward: Dbward) -> None:
    blob = bytes(range(256)) * (24 * 4096)  # 24 MiB in one parameter and one DataRow
    with connect(dbward, autocommit=True) as conn:
        echoed = conn.execute("SELECT %b::bytea AS big_blob", [blob], binary=True).fetchone()
        assert echoed is not None
        assert echoed[0] == blob
        cur = conn.execute(
            "SELECT g, repeat('x', 100) AS many_rows FROM generate_series(1, 200000) AS g"
        )
        count = total = 0
        for g, filler in cur:
            count += 1
            total += g
            assert len(filler) == 100
    assert (count, total) == (200_000, 200_000 * 200_001 // 2)
    [big] = statements(dbward, "AS big_blob")
    assert big["data"]["rows"] == 1
    [many] = statements(dbward, "AS many_rows")
    assert many["data"]["rows"] == 200_000
    assert many["data"]["tags"] == ["SELECT 200000"]


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_cancel_from_another_thread(dbward: Dbward, method: str) -> None:
    # cancel() is libpq's PQcancel (plain TCP); cancel_safe() is the newer API over TLS
    marker = unique("sleep")
    with connect(dbward, autocommit=True) as conn:
        timer = threading.Timer(0.3, getattr(conn, method))
        started = time.monotonic()
        timer.start()
        try:
            with pytest.raises(errors.QueryCanceled):
                conn.execute(f"SELECT pg_sleep(10) AS {marker}")
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        assert conn.execute("SELECT 'after cancel'").fetchone() == ("after cancel",)
    assert elapsed < 3.0
    [record] = statements(dbward, f"AS {marker}")
    assert record["data"]["sqlstate"] == "57014"
    cancels = wait_for(
        lambda: [
            e
            for e in dbward.audit()
            if e["kind"] == "cancel" and e["session_id"] == record["session_id"]
        ],
        what="the cancel event",
    )
    assert cancels[0]["identity"] == "app-svc"


def test_pipeline(dbward: Dbward) -> None:
    table = unique("pipe")
    with connect(dbward, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text)")
        before = last_id(dbward)
        with conn.pipeline():
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"n{i}") for i in range(10)]
                )
            updated = conn.execute(f"UPDATE {table} SET name = name || '!' WHERE id < %s", [3])
            counted = conn.execute(f"SELECT count(*), max(id) FROM {table}")
            names = conn.execute(f"SELECT name FROM {table} WHERE id < 3 ORDER BY id")
        assert updated.rowcount == 3
        assert counted.fetchone() == (10, 9)
        assert names.fetchall() == [("n0!",), ("n1!",), ("n2!",)]

    recorded = since(statements(dbward, table), before)
    assert len(recorded) == 13
    assert {r["data"]["protocol"] for r in recorded} == {"extended"}
    inserts = [r for r in recorded if r["data"]["statement"].startswith("INSERT")]
    assert len(inserts) == 10
    assert all(r["data"]["tags"] == ["INSERT 0 1"] for r in inserts)
    [update] = [r for r in recorded if r["data"]["statement"].startswith("UPDATE")]
    assert update["data"]["rows"] == 3
    assert update["data"]["statement"] == f"UPDATE {table} SET name = name || '!' WHERE id < $1"


def run_pipeline(
    conn: psycopg.Connection[Any], queries: list[str], *, pause_after: int | None = None
) -> None:
    with conn.pipeline():
        for index, query in enumerate(queries):
            conn.execute(query)
            if index == pause_after:
                time.sleep(0.3)  # the application does something else meanwhile


def test_error_inside_pipeline(dbward: Dbward) -> None:
    table = unique("pipe_err")
    with connect(dbward, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer)")
        queries = [
            f"INSERT INTO {table} VALUES (1)",
            # fails while executing (the divisor is a column value), answering Execute
            f"SELECT 1 / (id - id) AS boom FROM {table}",
            f"INSERT INTO {table} VALUES (2)",  # skipped by the server
        ]
        # The client sends the last insert and the Sync after the error has come back
        # (psycopg asks for a flush after each statement of a pipeline); the server
        # skips that insert, as it skips everything up to the Sync.
        with pytest.raises(errors.DivisionByZero):
            run_pipeline(conn, queries, pause_after=1)
        # the connection is usable after the failed pipeline
        assert conn.execute("SELECT 'still alive'").fetchone() == ("still alive",)
        assert conn.execute("SELECT %s::text AS echoed", ["later"]).fetchone() == ("later",)
        assert conn.execute(f"SELECT count(*) AS counted FROM {table}").fetchone() == (0,)
    # one implicit transaction up to the Sync: the first insert is rolled back too
    assert upstream_rows(dbward, f"SELECT count(*) FROM {table}") == [(0,)]
    [boom] = statements(dbward, "AS boom FROM")
    assert boom["data"]["sqlstate"] == "22012"
    assert boom["data"]["error"] == "division by zero"
    assert boom["data"]["protocol"] == "extended"
    inserts = statements(dbward, f"INSERT INTO {table}")
    assert [r["data"]["statement"] for r in inserts] == [f"INSERT INTO {table} VALUES (1)"]
    # the statements after the failed pipeline are recorded as themselves
    session = boom["session_id"]
    after = [r for r in dbward.statements() if r["session_id"] == session and r["id"] > boom["id"]]
    assert [(r["data"]["statement"], r["data"]["rows"]) for r in after] == [
        ("SELECT 'still alive'", 1),
        ("SELECT $1::text AS echoed", 1),
        (f"SELECT count(*) AS counted FROM {table}", 1),
    ]


@pytest.mark.parametrize(
    ("query", "params", "error", "sqlstate", "pipeline"),
    [
        # the text of a parameter is converted to its type at Bind
        (
            "SELECT %s::integer AS bad_bind",
            ["not a number"],
            errors.InvalidTextRepresentation,
            "22P02",
            False,
        ),
        (
            "SELECT %s::integer AS bad_bind",
            ["not a number"],
            errors.InvalidTextRepresentation,
            "22P02",
            True,
        ),
        # the unnamed statement is planned at Bind: constant folding divides by zero there
        ("SELECT 1/0 AS folded", [], errors.DivisionByZero, "22012", True),
        ("SELECT 1 / %s::int AS folded", [0], errors.DivisionByZero, "22012", False),
    ],
    ids=["conversion", "conversion-pipeline", "folding-pipeline", "folding-param"],
)
def test_error_answering_bind_is_recorded(
    dbward: Dbward,
    query: str,
    params: list[Any],
    error: type[Exception],
    sqlstate: str,
    pipeline: bool,
) -> None:
    marker = unique("bind_err")
    query = f"{query}_{marker}"
    with connect(dbward, autocommit=True) as conn:
        if pipeline:
            with pytest.raises(error), conn.pipeline():
                conn.execute(query, params)
        else:
            with pytest.raises(error):
                conn.execute(query, params)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    recorded = statements(dbward, marker)
    assert len(recorded) == 1, "a statement that failed at Bind is missing from the audit trail"
    assert recorded[0]["data"]["sqlstate"] == sqlstate
    assert recorded[0]["data"]["protocol"] == "extended"


def test_listen_notify_between_two_connections(dbward: Dbward) -> None:
    channel = unique("chan")
    with (
        connect(dbward, "listener", autocommit=True) as listener,
        connect(dbward, "notifier", autocommit=True) as notifier,
    ):
        listener.execute(f"LISTEN {channel}")
        notifier_pid = notifier.execute("SELECT pg_backend_pid()").fetchone()
        notifier.execute(f"NOTIFY {channel}, 'first'")
        notifier.execute("SELECT pg_notify(%s, %s)", [channel, "second: grüße"])
        received = list(listener.notifies(timeout=5.0, stop_after=2))
    assert [(n.channel, n.payload) for n in received] == [
        (channel, "first"),
        (channel, "second: grüße"),
    ]
    assert notifier_pid is not None
    assert {n.pid for n in received} == {notifier_pid[0]}
    assert statements(dbward, f"LISTEN {channel}", identity="listener")
    assert statements(dbward, f"NOTIFY {channel}", identity="notifier")
    [notify] = statements(dbward, "pg_notify(", identity="notifier")
    assert notify["data"]["protocol"] == "extended"


def test_notification_while_idle_in_generator(dbward: Dbward) -> None:
    channel = unique("idle_chan")
    with (
        connect(dbward, autocommit=True) as listener,
        connect(dbward, autocommit=True) as notifier,
    ):
        listener.execute(f"LISTEN {channel}")
        gen = listener.notifies(timeout=5.0)
        notifier.execute(f"NOTIFY {channel}, 'hello'")
        first = next(gen)
        gen.close()
        assert (first.channel, first.payload) == (channel, "hello")
        # the connection still answers queries after the generator is closed
        assert listener.execute("SELECT 2").fetchone() == (2,)


def test_server_side_cursor(dbward: Dbward) -> None:
    with connect(dbward) as conn:
        with conn.cursor(name="big_cursor") as cur:
            cur.execute("SELECT g, g::text AS label FROM generate_series(1, 1000) AS g ORDER BY g")
            first = cur.fetchmany(100)
            second = cur.fetchmany(250)
            rest = cur.fetchall()
        conn.commit()
    assert [r[0] for r in first] == list(range(1, 101))
    assert [r[0] for r in second] == list(range(101, 351))
    assert [r[0] for r in rest] == list(range(351, 1001))
    assert rest[-1] == (1000, "1000")

    [declare] = statements(dbward, 'DECLARE "big_cursor"')
    assert declare["data"]["tags"] == ["DECLARE CURSOR"]
    fetches = statements(dbward, 'FROM "big_cursor"')
    fetch_rows = [r["data"]["rows"] for r in fetches if r["data"]["statement"].startswith("FETCH")]
    assert fetch_rows == [100, 250, 650]
    assert {r["session_id"] for r in fetches} == {declare["session_id"]}


def test_prepared_statement_reused(dbward: Dbward) -> None:
    with connect(dbward, prepare_threshold=0) as conn:
        results = [conn.execute("SELECT %s::int * 3 AS tripled", [i]).fetchone() for i in range(6)]
        prepared = conn.execute(
            "SELECT name, statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%tripled%"],
        ).fetchall()
    assert results == [(i * 3,) for i in range(6)]
    assert len(prepared) == 1
    name = prepared[0][0]
    records = statements(dbward, "AS tripled")
    records = [r for r in records if "pg_prepared_statements" not in r["data"]["statement"]]
    assert len(records) == 6
    assert {r["data"].get("prepared") for r in records} == {name}
    assert {r["data"]["statement"] for r in records} == {"SELECT $1::int * 3 AS tripled"}
    assert all(r["data"]["rows"] == 1 for r in records)


def insert_then_fail(conn: psycopg.Connection[Any], table: str, value: int) -> None:
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} VALUES ({value})")
        conn.execute("DO $$ BEGIN RAISE unique_violation USING MESSAGE = 'forced'; END $$")


def insert_then_raise(conn: psycopg.Connection[Any], table: str, value: int) -> None:
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} VALUES ({value})")
        raise RuntimeError("application error: roll back")


def test_transactions_commit_and_rollback(dbward: Dbward) -> None:
    table = unique("tx")
    with connect(dbward) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer)")
        conn.commit()
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            with pytest.raises(errors.UniqueViolation):
                insert_then_fail(conn, table, 2)  # in a savepoint
        conn.execute(f"INSERT INTO {table} VALUES (3)")
        conn.rollback()
        with pytest.raises(RuntimeError, match="application error"):
            insert_then_raise(conn, table, 4)
    assert upstream_rows(dbward, f"SELECT id FROM {table} ORDER BY id") == [(1,)]

    session = statements(dbward, f"CREATE TABLE {table}")[0]["session_id"]
    tags = [tuple(r["data"]["tags"]) for r in dbward.statements() if r["session_id"] == session]
    assert ("COMMIT",) in tags
    assert ("ROLLBACK",) in tags
    assert ("SAVEPOINT",) in tags
    [forced] = statements(dbward, "RAISE unique_violation")
    assert forced["data"]["sqlstate"] == "23505"
    assert forced["data"]["error"] == "forced"


def test_agent_identity_is_recorded(dbward: Dbward) -> None:
    dbward.token("agent-7", IdentityKind.AGENT, groups=("agents", "readonly"))
    with connect(dbward, "agent-7", application_name="planner", autocommit=True) as conn:
        app = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert conn.info.parameter_status("application_name") == "planner"
    assert app == ("agent-7 via dbward (planner)",)
    [record] = statements(dbward, "pg_stat_activity", identity="agent-7")
    assert record["identity_kind"] == "agent"
    start = [
        e
        for e in dbward.audit()
        if e["kind"] == "connection.start" and e["session_id"] == record["session_id"]
    ]
    assert start[0]["identity"] == "agent-7"
    assert start[0]["identity_kind"] == "agent"
    assert start[0]["data"]["groups"] == ["agents", "readonly"]
    assert start[0]["data"]["identity_provider"] == "token"
    assert start[0]["data"]["client_application"] == "planner"
    end = wait_for(
        lambda: [
            e
            for e in dbward.audit()
            if e["kind"] == "connection.end" and e["session_id"] == record["session_id"]
        ],
        what="the agent's connection.end",
    )
    assert end[0]["identity_kind"] == "agent"
    assert end[0]["data"]["statements"] == 1


def test_wrong_token_is_refused(dbward: Dbward) -> None:
    before = last_id(dbward)
    with pytest.raises(psycopg.OperationalError, match="unknown token"):
        psycopg.connect(dbward.dsn("app-svc", password="dbw_" + "x" * 43), connect_timeout=10)
    failed = wait_for(
        lambda: [e for e in since(dbward.audit(), before) if e["kind"] == "login.failed"],
        what="login.failed",
    )
    assert failed[0]["data"]["user"] == "app-svc"
    assert failed[0]["data"]["sqlstate"] == "28P01"
    assert failed[0]["identity"] is None
