"""Policy enforcement through real clients: the guardrails in production (no policy file),
the unparsable guardrail everywhere, and rules from a policy file. Every refusal is checked
against the upstream database: what dbward refused must not have happened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import psql, statements, unique
from tests.integration.policy_helpers import (
    DENIED,
    STAND_IN,
    aconnect,
    assert_denied_record,
    assert_psql_refused,
    assert_refused,
    assert_refused_async,
    assert_serving,
    connect,
    ids,
    make_table,
    psql_verbose,
    record_of,
    table_exists,
    upstream_rows,
)

UNBOUNDED = "guardrail:unbounded-write"
DESTRUCTIVE = "guardrail:destructive-ddl"
SERVER_ACCESS = "guardrail:server-access"
UNPARSABLE = "guardrail:unparsable"


@pytest.fixture(scope="module")
def prod(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    server = start_dbward(tmp_path_factory.mktemp("prod"), upstream_db, environment="production")
    yield server
    assert_serving(server)
    stop_dbward(server)


# guardrails through psql ------------------------------------------------------------------


def test_psql_drop_table_refused_in_production(prod: Dbward) -> None:
    table = make_table(prod, "pdrop")
    result = psql_verbose(prod, "-c", f"DROP TABLE {table}", check=False)
    assert result.returncode != 0
    assert_psql_refused(result.stderr, DESTRUCTIVE)
    assert f"DROP TABLE of public.{table} destroys data" in result.stderr
    assert table_exists(prod, table)
    assert ids(prod, table) == [1, 2, 3]

    quoted = psql(prod, "-At", "-c", f"SELECT 'DROP TABLE {table}'")
    assert quoted.stdout.strip() == f"DROP TABLE {table}"
    assert table_exists(prod, table)

    assert_denied_record(record_of(prod, f"DROP TABLE {table}"), DESTRUCTIVE)
    allowed = record_of(prod, f"SELECT 'DROP TABLE {table}'")["data"]
    assert (allowed["decision"], allowed["rule"]) == ("allow", "default")
    assert "reason" not in allowed
    assert "sqlstate" not in allowed


def test_psql_truncate_and_drop_column_refused(prod: Dbward) -> None:
    table = make_table(prod, "ptrunc")
    for sql in (f"TRUNCATE {table}", f"ALTER TABLE {table} DROP COLUMN v"):
        result = psql_verbose(prod, "-c", sql, check=False)
        assert result.returncode != 0
        assert_psql_refused(result.stderr, DESTRUCTIVE)
    assert ids(prod, table) == [1, 2, 3]
    assert upstream_rows(prod, f"SELECT v FROM {table} WHERE id = 1") == [("v1",)]


# DELETE without WHERE: psycopg and asyncpg, both protocols --------------------------------


UNBOUNDED_ATTEMPTS: dict[str, Callable[[psycopg.Connection[Any], str], object]] = {
    "simple": lambda conn, t: conn.execute(f"DELETE FROM {t}"),
    # a parameter-only WHERE is not one that limits the rows
    "extended-params": lambda conn, t: conn.execute(f"DELETE FROM {t} WHERE %s", [True]),
    "prepared": lambda conn, t: conn.execute(f"DELETE FROM {t}", prepare=True),
    "or-constant": lambda conn, t: conn.execute(f"DELETE FROM {t} WHERE 1 = 1 OR id = %s", [1]),
    "self-comparison": lambda conn, t: conn.execute(f"UPDATE {t} SET v = 'x' WHERE id = id"),
}


@pytest.mark.parametrize("how", list(UNBOUNDED_ATTEMPTS))
def test_psycopg_unbounded_delete_refused(prod: Dbward, how: str) -> None:
    table = make_table(prod, "pdel")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            UNBOUNDED_ATTEMPTS[how](conn, table)
        assert_refused(caught.value, UNBOUNDED)
        assert ids(prod, table) == [1, 2, 3]
        # the session goes on; a DELETE with a real WHERE runs
        cur = conn.execute(f"DELETE FROM {table} WHERE id = %s", [2])
        assert cur.rowcount == 1
        cur = conn.execute(f"DELETE FROM {table} WHERE id = 3", prepare=True)
        assert cur.rowcount == 1
    assert ids(prod, table) == [1]
    assert upstream_rows(prod, f"SELECT v FROM {table}") == [("v1",)]


def test_psycopg_audit_records_original_text(prod: Dbward) -> None:
    table = make_table(prod, "paudit")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM {table} WHERE %s", [True])
        conn.execute(f"DELETE FROM {table} WHERE id = %s", [1])
    denied = record_of(prod, f"DELETE FROM {table} WHERE $1")
    assert_denied_record(denied, UNBOUNDED)
    assert denied["data"]["protocol"] == "extended"
    assert denied["data"]["reason"].startswith("DELETE would change every row of")
    assert denied["data"]["error"] == denied["data"]["reason"]
    allowed = record_of(prod, f"DELETE FROM {table} WHERE id = $1")["data"]
    assert (allowed["decision"], allowed["rule"], allowed["tags"]) == (
        "allow",
        "default",
        ["DELETE 1"],
    )
    assert not [r for r in statements(prod) if STAND_IN in r["data"]["statement"]]


def test_asyncpg_unbounded_delete_refused(prod: Dbward) -> None:
    table = make_table(prod, "adel")

    async def body() -> list[str]:
        conn = await aconnect(prod)
        try:
            outcomes = []
            for attempt in (
                lambda: conn.fetch(f"DELETE FROM {table} RETURNING id"),
                lambda: conn.execute(f"DELETE FROM {table} WHERE $1::bool", True),
                lambda: conn.prepare(f"DELETE FROM {table}"),
                lambda: conn.fetchval(f"UPDATE {table} SET v = 'x' WHERE true RETURNING 1"),
            ):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError) as caught:
                    await attempt()
                assert_refused_async(caught.value, UNBOUNDED)
                # the connection stays usable after each refused Parse
                outcomes.append(await conn.fetchval("SELECT 'usable'"))
            deleted = await conn.fetch(f"DELETE FROM {table} WHERE id = $1 RETURNING id", 2)
            assert [r["id"] for r in deleted] == [2]
            statement = await conn.prepare(f"DELETE FROM {table} WHERE id = $1")
            await statement.fetch(3)
            return outcomes
        finally:
            await conn.close()

    assert asyncio.run(body()) == ["usable"] * 4
    assert ids(prod, table) == [1]
    assert upstream_rows(prod, f"SELECT v FROM {table}") == [("v1",)]
    refused = record_of(prod, f"DELETE FROM {table}")
    assert_denied_record(refused, UNBOUNDED)
    assert refused["data"]["protocol"] == "extended"


# a multi-statement string runs whole or not at all ----------------------------------------


def test_multi_statement_with_refused_part_runs_nothing(prod: Dbward) -> None:
    table = make_table(prod, "pmulti")
    text = f"INSERT INTO {table} VALUES (10, 'ten'); DELETE FROM {table}"
    result = psql_verbose(prod, "-c", text, check=False)
    assert result.returncode != 0
    assert_psql_refused(result.stderr, UNBOUNDED)
    assert "Statement 2 of the string (DELETE)" in result.stderr

    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(
                f"INSERT INTO {table} VALUES (11, 'eleven'); UPDATE {table} SET v = 'x'; "
                f"SELECT count(*) FROM {table}"
            )
        assert_refused(caught.value, UNBOUNDED)
        assert "Statement 2 of the string (UPDATE)" in (caught.value.diag.message_detail or "")
        # a string with COMMIT before the refused part still runs none of it
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"BEGIN; INSERT INTO {table} VALUES (12, 'x'); COMMIT; DROP TABLE {table}")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
    assert ids(prod, table) == [1, 2, 3]
    assert_denied_record(record_of(prod, text), UNBOUNDED)


def test_psycopg_pipeline_with_refused_statement(prod: Dbward) -> None:
    table = make_table(prod, "ppipe")
    with connect(prod, autocommit=True) as conn:

        def pipeline() -> None:
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} VALUES (%s, 'a')", [20])
                conn.execute(f"DELETE FROM {table} WHERE %s", [True])
                conn.execute(f"INSERT INTO {table} VALUES (%s, 'b')", [21])

        with pytest.raises(errors.InsufficientPrivilege):
            pipeline()
        assert conn.execute("SELECT 'after pipeline'").fetchone() == ("after pipeline",)
    # everything up to the Sync was one implicit transaction: none of it happened
    assert ids(prod, table) == [1, 2, 3]


# transactions and savepoints ---------------------------------------------------------------


def test_refused_statement_fails_the_transaction(prod: Dbward) -> None:
    table = make_table(prod, "ptx")
    with connect(prod) as conn:  # not autocommit: psycopg opens a transaction
        conn.execute(f"INSERT INTO {table} VALUES (%s, 'in tx')", [40])
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute(f"DELETE FROM {table} WHERE id = %s", [1])
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
        conn.execute(f"INSERT INTO {table} VALUES (%s, 'after')", [41])
        conn.commit()
    assert ids(prod, table) == [1, 2, 3, 41]


def test_refused_statement_in_psql_transaction(prod: Dbward) -> None:
    table = make_table(prod, "ptxq")
    script = (
        "BEGIN;\n"
        f"INSERT INTO {table} VALUES (50, 'x');\n"
        f"DROP TABLE {table};\n"
        "SELECT 'in failed transaction';\n"
        "ROLLBACK;\n"
        f"SELECT count(*) FROM {table};\n"
    )
    result = psql(prod, "-At", "-v", "VERBOSITY=verbose", stdin=script, on_error_stop=False)
    assert_psql_refused(result.stderr, DESTRUCTIVE)
    assert "25P02" in result.stderr
    assert result.stdout.splitlines()[-1] == "3"
    assert ids(prod, table) == [1, 2, 3]
    aborted = statements(prod, "'in failed transaction'")
    assert aborted[-1]["data"]["sqlstate"] == "25P02"
    assert aborted[-1]["data"]["decision"] == "allow"


def test_savepoint_recovers_from_refusal(prod: Dbward) -> None:
    table = make_table(prod, "psave")
    with connect(prod) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (60, 'before savepoint')")
        conn.execute("SAVEPOINT s1")
        conn.execute(f"INSERT INTO {table} VALUES (61, 'after savepoint')")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM {table} WHERE %s", [True])
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK TO SAVEPOINT s1")
        conn.execute(f"INSERT INTO {table} VALUES (62, 'after rollback to')")
        conn.commit()
    assert ids(prod, table) == [1, 2, 3, 60, 62]


def test_savepoint_with_psycopg_transaction_blocks(prod: Dbward) -> None:
    table = make_table(prod, "pnest")
    with connect(prod, autocommit=True) as conn, conn.transaction():
        conn.execute(f"INSERT INTO {table} VALUES (70, 'outer')")

        def inner() -> None:
            with conn.transaction():  # a savepoint
                conn.execute(f"INSERT INTO {table} VALUES (71, 'inner')")
                conn.execute(f"TRUNCATE {table}")

        with pytest.raises(errors.InsufficientPrivilege):
            inner()
        conn.execute(f"INSERT INTO {table} VALUES (72, 'outer again')")
    assert ids(prod, table) == [1, 2, 3, 70, 72]


def test_other_sessions_work_while_one_is_failed(prod: Dbward) -> None:
    table = make_table(prod, "pother")
    with connect(prod) as failed, connect(prod, autocommit=True) as other:
        failed.execute(f"INSERT INTO {table} VALUES (80, 'x')")
        with pytest.raises(errors.InsufficientPrivilege):
            failed.execute(f"DELETE FROM {table}")
        other.execute(f"INSERT INTO {table} VALUES (81, 'other')")
        assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (4,)
        with pytest.raises(errors.InFailedSqlTransaction):
            failed.execute("SELECT 1")
        failed.rollback()
    assert ids(prod, table) == [1, 2, 3, 81]


# temporary tables ----------------------------------------------------------------------------


def test_temporary_tables_are_not_guarded(prod: Dbward) -> None:
    temp = unique("ptemp")
    with connect(prod, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE {temp} AS SELECT g AS id FROM generate_series(1, 5) g")
        assert conn.execute(f"DELETE FROM {temp}").rowcount == 5
        conn.execute(f"INSERT INTO {temp} VALUES (1)")
        conn.execute(f"UPDATE {temp} SET id = 2")
        conn.execute(f"TRUNCATE {temp}")
        conn.execute(f"DROP TABLE {temp}")
    record = record_of(prod, f"DROP TABLE {temp}")["data"]
    assert (record["decision"], record["tags"]) == ("allow", ["DROP TABLE"])


def test_temporary_table_shadowing_a_real_one(prod: Dbward) -> None:
    table = make_table(prod, "pshadow")
    with connect(prod, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id int)")
        conn.execute(f"INSERT INTO {table} VALUES (1), (2)")
        assert conn.execute(f"DELETE FROM {table}").rowcount == 2  # the temporary one
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM public.{table}")  # named explicitly: the real one
        assert_refused(caught.value, UNBOUNDED)
        conn.execute(f"DROP TABLE {table}")  # drops the temporary table
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM {table}")  # now the real table
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"DROP TABLE {table}")
    assert ids(prod, table) == [1, 2, 3]


def test_temporary_table_from_rolled_back_transaction(prod: Dbward) -> None:
    table = make_table(prod, "prolled")
    with connect(prod, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"CREATE TEMP TABLE {table} (id int)")
        conn.execute("ROLLBACK")  # the temporary table never existed
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"DROP TABLE {table}")
    assert table_exists(prod, table)
    assert ids(prod, table) == [1, 2, 3]


def test_temporary_table_dropped_at_commit(prod: Dbward) -> None:
    table = make_table(prod, "poncommit")
    with connect(prod, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(f"CREATE TEMP TABLE {table} (id int) ON COMMIT DROP")
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            assert conn.execute(f"DELETE FROM {table}").rowcount == 1  # the temporary one
        # COMMIT dropped the temporary table: the name is the real table again
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
    assert ids(prod, table) == [1, 2, 3]


def test_renamed_temporary_table(prod: Dbward) -> None:
    table = make_table(prod, "prenamed")
    with connect(prod, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id int)")
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
        # no temporary table has the name any more: it is the real table
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
    assert ids(prod, table) == [1, 2, 3]


def test_prepared_statement_outliving_its_temporary_table(prod: Dbward) -> None:
    """PostgreSQL plans a prepared statement again when a table it uses is dropped, looking
    the names up anew: a DELETE prepared on a temporary table that shadows a real one
    deletes from the real one once the temporary table is gone."""
    table = make_table(prod, "pprepgone")

    async def body() -> None:
        conn = await aconnect(prod)
        try:
            await conn.execute(f"CREATE TEMP TABLE {table} (id int)")
            statement = await conn.prepare(f"DELETE FROM {table}")  # the temporary table
            await statement.fetch()
            await conn.execute(f"DROP TABLE {table}")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError) as caught:
                await statement.fetch()  # Bind + Execute: now the real table
            assert_refused_async(caught.value, UNBOUNDED)
            assert await conn.fetchval("SELECT 'usable'") == "usable"
        finally:
            await conn.close()

    asyncio.run(body())
    assert ids(prod, table) == [1, 2, 3]


# PREPARE / EXECUTE, EXPLAIN -------------------------------------------------------------------


def test_prepare_and_execute(prod: Dbward) -> None:
    table = make_table(prod, "pprep")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"PREPARE p AS DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
        with pytest.raises(psycopg.Error) as unknown:
            conn.execute("EXECUTE p")
        assert unknown.value.sqlstate in (DENIED, "26000")
        conn.execute(f"PREPARE q AS SELECT count(*) FROM {table} WHERE id > $1")
        assert conn.execute("EXECUTE q(1)").fetchone() == (2,)
        conn.execute(f"PREPARE r AS DELETE FROM {table} WHERE id = $1")
        assert conn.execute("EXECUTE r(3)").rowcount == 1
        conn.execute("DEALLOCATE q")
    assert ids(prod, table) == [1, 2]
    executed = record_of(prod, "EXECUTE q(1)")["data"]
    assert (executed["decision"], executed["tags"]) == ("allow", ["SELECT 1"])


def test_explain_analyze_runs_its_statement(prod: Dbward) -> None:
    table = make_table(prod, "pexpl")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"EXPLAIN ANALYZE DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"EXPLAIN (ANALYZE, FORMAT json) UPDATE {table} SET v = NULL")
        plan = conn.execute(f"EXPLAIN DELETE FROM {table}").fetchall()
        assert any("Delete on" in row[0] for row in plan)
    assert ids(prod, table) == [1, 2, 3]
    assert upstream_rows(prod, f"SELECT count(*) FROM {table} WHERE v IS NULL") == [(0,)]


def test_writing_cte_refused(prod: Dbward) -> None:
    table = make_table(prod, "pcte")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(
                f"WITH gone AS (DELETE FROM {table} RETURNING id) SELECT count(*) FROM gone"
            )
        assert_refused(caught.value, UNBOUNDED)
    assert ids(prod, table) == [1, 2, 3]


# COPY and server files -------------------------------------------------------------------------


def test_copy_to_stdout_allowed_server_files_refused(prod: Dbward, tmp_path: Path) -> None:
    table = make_table(prod, "pcopy")
    out = tmp_path / "client.tsv"
    psql(prod, "-c", rf"\copy {table} TO '{out}'")
    assert out.read_text().splitlines() == ["1\tv1", "2\tv2", "3\tv3"]

    server_file = tmp_path / "server-side.tsv"
    with connect(prod, autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
            rows = list(copy.rows())
        assert rows == [("1", "v1"), ("2", "v2"), ("3", "v3")]
        # The upstream role is no superuser, so PostgreSQL would refuse these with 42501
        # too: assert_refused checks the error is dbward's own, naming its rule.
        for sql in (
            f"COPY {table} TO '{server_file}'",
            f"COPY {table} FROM '/etc/hostname'",
            f"COPY {table} TO PROGRAM 'true'",
            "SELECT pg_read_file('postgresql.conf')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_import('/etc/hostname')",
        ):
            with pytest.raises(errors.InsufficientPrivilege) as caught:
                conn.execute(sql)
            assert_refused(caught.value, SERVER_ACCESS)
    assert not server_file.exists()
    assert_denied_record(record_of(prod, "SELECT pg_read_file('postgresql.conf')"), SERVER_ACCESS)
    copied = statements(prod, f"COPY {table} TO STDOUT")
    assert copied
    assert all(r["data"]["decision"] == "allow" for r in copied)


def test_do_block_refused(prod: Dbward) -> None:
    table = make_table(prod, "pdo")
    with connect(prod, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DO $$ BEGIN EXECUTE 'DELETE FROM {table}'; END $$")
        assert_refused(caught.value, "guardrail:dynamic-sql")
    assert ids(prod, table) == [1, 2, 3]


# unparsable text, in staging too ------------------------------------------------------------


def test_unparsable_refused_in_staging(dbward: Dbward) -> None:
    with connect(dbward, autocommit=True) as conn:
        for text in ("SELEC 1", "SELECT 1 +", "DELETE FROM WHERE"):
            with pytest.raises(errors.InsufficientPrivilege) as caught:
                conn.execute(text)
            assert_refused(caught.value, UNPARSABLE)
            assert "syntax error" in (caught.value.diag.message_primary or "")
            assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT %s::int FROM", [1])  # extended protocol
        assert conn.execute("SELECT %s::int", [7]).fetchone() == (7,)
    result = psql_verbose(dbward, "-c", "SELEC 2", check=False)
    assert_psql_refused(result.stderr, UNPARSABLE)
    assert_denied_record(record_of(dbward, "SELEC 1"), UNPARSABLE)
    # staging has no guardrails otherwise: an unbounded DELETE runs
    table = make_table(dbward, "sdel")
    with connect(dbward, autocommit=True) as conn:
        assert conn.execute(f"DELETE FROM {table}").rowcount == 3
    assert ids(dbward, table) == []


def test_refused_fast_path_call(prod: Dbward, tmp_path: Path) -> None:
    """psql's \\lo_import uses libpq's fast-path FunctionCall: an unknown to dbward,
    refused in production; the session is left clean."""
    source = tmp_path / "blob.bin"
    source.write_bytes(b"x" * 1000)
    before = upstream_rows(prod, "SELECT count(*) FROM pg_largeobject_metadata")[0][0]
    result = psql_verbose(
        prod,
        "-At",
        "-c",
        rf"\lo_import '{source}'",
        "-c",
        "SELECT 'after'",
        on_error_stop=False,
        check=False,
    )
    assert_psql_refused(result.stderr, "guardrail:dynamic-sql")
    assert result.stdout.splitlines()[-1:] == ["after"], result.stdout
    assert upstream_rows(prod, "SELECT count(*) FROM pg_largeobject_metadata")[0][0] == before
