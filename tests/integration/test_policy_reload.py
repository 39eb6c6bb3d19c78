"""Changing the policy of a running dbward: on file change and on SIGHUP, with sessions
open. A file that does not load leaves the previous policy in force; every reload is in
the audit trail; other sessions are served throughout."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import unique, wait_for
from tests.integration.policy_helpers import (
    aconnect,
    assert_refused,
    assert_refused_async,
    assert_serving,
    connect,
    make_table,
    upstream_rows,
)

OPEN = "version: 1\ndefault: allow\nrules: []\n"


def protecting(table: str, message: str = "the table is frozen") -> str:
    return f"""\
version: 1
rules:
  - name: freeze
    match: {{table: public.{table}, kind: write}}
    action: deny
    message: {message}
"""


@pytest.fixture
def server(upstream_db: UpstreamDb, tmp_path: Path) -> Iterator[Dbward]:
    started = start_dbward(tmp_path, upstream_db, policy=OPEN)
    yield started
    assert_serving(started)
    stop_dbward(started)


def policy_file(server: Dbward) -> Path:
    return server.config_path.parent / "policy.yaml"


def write_policy(server: Dbward, text: str, *, mtime_ns: int | None = None) -> None:
    """Replace the policy file at once (the watcher never sees half a file)."""
    path = policy_file(server)
    staged = path.with_name("policy.yaml.new")
    staged.write_text(text)
    if mtime_ns is not None:
        os.utime(staged, ns=(mtime_ns, mtime_ns))
    os.replace(staged, path)


def reloads(server: Dbward) -> list[dict[str, Any]]:
    return [e for e in server.audit() if e["kind"] == "policy.reload"]


def touch_row(conn: psycopg.Connection[Any], table: str, value: str) -> bool:
    """Try a bounded write to ``table``; True if the rule ``freeze`` refused it."""
    try:
        conn.execute(f"UPDATE {table} SET v = %s WHERE id = 1", [value])
    except errors.InsufficientPrivilege as exc:
        assert_refused(exc, "freeze")
        return True
    return False


def wait_refused(conn: psycopg.Connection[Any], table: str, what: str) -> None:
    wait_for(lambda: touch_row(conn, table, "probe"), timeout=5, what=what)


def wait_allowed(conn: psycopg.Connection[Any], table: str, what: str) -> None:
    wait_for(lambda: not touch_row(conn, table, "probe"), timeout=5, what=what)


def test_file_change_applies_to_open_sessions(server: Dbward) -> None:
    table = make_table(server, "rlive")
    bystander_table = make_table(server, "rbystander")
    with connect(server, autocommit=True) as conn, connect(server, autocommit=True) as other:
        assert not touch_row(conn, table, "before")
        write_policy(server, protecting(table, "frozen for the audit"))
        wait_refused(conn, table, "the new rule to apply in the open session")
        # the refused statements did not run
        conn.execute(f"SELECT 1 FROM {table}")
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table} WHERE id = 2")
        assert "frozen for the audit" in str(caught.value)
        assert upstream_rows(server, f"SELECT count(*) FROM {table}") == [(3,)]
        # the other open session and a new one follow the new policy too, and keep working
        assert touch_row(other, table, "other")
        other.execute(f"UPDATE {bystander_table} SET v = 'ok' WHERE id = 1")
        with connect(server, autocommit=True) as fresh:
            assert touch_row(fresh, table, "fresh")

        write_policy(server, OPEN)
        wait_allowed(conn, table, "the rule to be gone")
        assert not touch_row(other, table, "after")
    assert upstream_rows(server, f"SELECT v FROM {table} WHERE id = 1") == [("after",)]
    assert upstream_rows(server, f"SELECT v FROM {bystander_table} WHERE id = 1") == [("ok",)]
    events = reloads(server)
    assert [e["data"]["accepted"] for e in events] == [True, True]
    assert [e["data"]["rules"] for e in events] == [1, 0]
    assert {e["data"]["reason"] for e in events} == {"file changed"}
    assert all(len(e["data"]["sha256"]) == 64 for e in events)
    assert events[0]["data"]["file"].endswith("policy.yaml")


BROKEN = [
    # (what, text, the line the error is reported on)
    (
        "bad-yaml",
        "version: 1\nrules:\n  - name: freeze\n    action: deny\n   bad: indent\n",
        5,
    ),
    (
        "invalid-rule",
        "version: 1\nrules:\n  - name: ok\n    action: allow\n  - name: x\n    action: maybe\n",
        6,
    ),
    (
        "review-without-approvers",
        "version: 1\ndefault: allow\nrules:\n  - name: x\n    action: review\n",
        4,
    ),
]


def test_broken_file_keeps_previous_policy(server: Dbward) -> None:
    table = make_table(server, "rbroken")
    with connect(server, autocommit=True) as conn:
        write_policy(server, protecting(table))
        wait_refused(conn, table, "the first policy")
        for what, text, line in BROKEN:
            before, log_before = len(reloads(server)), len(server.log())
            write_policy(server, text)
            rejected = wait_for(
                lambda n=before: reloads(server)[n:], what=f"the {what} file to be rejected"
            )
            assert [e["data"]["accepted"] for e in rejected] == [False], what
            assert f"policy.yaml:{line}:" in rejected[0]["data"]["error"], (what, rejected)
            logged = server.log()[log_before:]
            assert "rejected, the previous policy stays in force" in logged, (what, logged)
            assert f"policy.yaml:{line}:" in logged, (what, logged)
            # the previous policy is still in force, in this session and a new one
            assert touch_row(conn, table, what), what
            with connect(server, autocommit=True) as fresh:
                assert touch_row(fresh, table, what), what
                assert fresh.execute("SELECT 'served'").fetchone() == ("served",)

        policy_file(server).unlink()
        wait_for(
            lambda: [e for e in reloads(server) if "cannot read" in e["data"].get("error", "")],
            what="the missing file to be rejected",
        )
        assert touch_row(conn, table, "missing")

        write_policy(server, OPEN)
        wait_allowed(conn, table, "a good file to be accepted again")
    assert upstream_rows(server, f"SELECT v FROM {table} WHERE id = 1") == [("probe",)]
    assert reloads(server)[-1]["data"]["accepted"] is True


def _same_size(first: str, second: str) -> tuple[str, str]:
    width = max(len(first), len(second)) + 1
    return first + "#" * (width - len(first)) + "\n", second + "#" * (width - len(second)) + "\n"


def test_sighup_reloads_an_unchanged_looking_file(upstream_db: UpstreamDb, tmp_path: Path) -> None:
    table = make_table_for(upstream_db, "rhup")
    old_text, new_text = _same_size(OPEN, protecting(table))
    started = start_dbward(
        tmp_path, upstream_db, policy=old_text, statement_literals="placeholders"
    )
    try:
        with connect(started, autocommit=True) as conn:
            assert not touch_row(conn, table, "before")
            stat = policy_file(started).stat()
            # same size, same modification time: the file watcher cannot tell
            write_policy(started, new_text, mtime_ns=stat.st_mtime_ns)
            assert policy_file(started).stat().st_size == stat.st_size
            time.sleep(1.0)  # five watcher intervals
            assert reloads(started) == []
            assert not touch_row(conn, table, "still open")

            started.proc.send_signal(signal.SIGHUP)
            wait_refused(conn, table, "the SIGHUP reload")
            [event] = reloads(started)
            assert event["data"]["reason"] == "SIGHUP"
            assert event["data"]["accepted"] is True
            assert event["data"]["rules"] == 1
            assert event["session_id"] == "-"

            # SIGHUP with a broken file: rejected, the policy stays
            write_policy(started, "version: 1\nrules: [\n")
            wait_for(lambda: len(reloads(started)) == 2, what="the broken file noticed")
            started.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: len(reloads(started)) == 3, what="the SIGHUP reload")
            assert [e["data"]["accepted"] for e in reloads(started)] == [True, False, False]
            assert reloads(started)[-1]["data"]["reason"] == "SIGHUP"
            assert touch_row(conn, table, "after broken")
        # the first probe after the signal may have run before the reload: "probe"
        assert upstream_rows(started, f"SELECT v FROM {table} WHERE id = 1") in (
            [("still open",)],
            [("probe",)],
        )
        assert_serving(started)
    finally:
        stop_dbward(started)


def make_table_for(upstream: UpstreamDb, prefix: str) -> str:
    """make_table before dbward runs: only the upstream is needed."""
    table = unique(prefix)
    with psycopg.connect(upstream.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id integer PRIMARY KEY, v text); "
            f"INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, 3) g"
        )
    return table


# statements prepared before the policy changed ------------------------------------------------


def test_sql_prepared_statement_follows_new_policy(server: Dbward) -> None:
    table = make_table(server, "rsqlprep")
    with connect(server, autocommit=True) as conn:
        conn.execute(f"PREPARE upd AS UPDATE {table} SET v = $1 WHERE id = 2")
        conn.execute("EXECUTE upd('first')")
        write_policy(server, protecting(table))
        wait_refused(conn, table, "the new rule")
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute("EXECUTE upd('second')")
        assert_refused(caught.value, "freeze")
    assert upstream_rows(server, f"SELECT v FROM {table} WHERE id = 2") == [("first",)]


def test_psycopg_prepared_statement_follows_new_policy(server: Dbward) -> None:
    """A statement the client prepared (Parse) before the reload and executes (Bind,
    Execute) after it is decided by the policy in force when it runs."""
    table = make_table(server, "rprep")
    update = f"UPDATE {table} SET v = %s WHERE id = 2"
    with connect(server, autocommit=True) as conn:
        conn.execute(update, ["first"], prepare=True)
        write_policy(server, protecting(table))
        wait_refused(conn, table, "the new rule")
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(update, ["second"], prepare=True)
        assert_refused(caught.value, "freeze")
    assert upstream_rows(server, f"SELECT v FROM {table} WHERE id = 2") == [("first",)]


def test_asyncpg_cached_statement_follows_new_policy(server: Dbward) -> None:
    """asyncpg prepares every statement and reuses it from its cache: after the reload the
    cached UPDATE must be refused like a new one."""
    table = make_table(server, "rcache")
    update = f"UPDATE {table} SET v = $1 WHERE id = 2"

    async def body() -> None:
        conn = await aconnect(server)
        try:
            await conn.execute(update, "first")
            write_policy(server, protecting(table))
            deadline = time.monotonic() + 5
            for attempt in itertools.count():  # a new text each time: never from the cache
                try:
                    await conn.execute(f"UPDATE {table} SET v = 'p{attempt}' WHERE id = $1", 1)
                except asyncpg.exceptions.InsufficientPrivilegeError:
                    break
                assert time.monotonic() < deadline, "the new rule never applied"
                await asyncio.sleep(0.1)
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError) as caught:
                await conn.execute(update, "second")
            assert_refused_async(caught.value, "freeze")
            assert await conn.fetchval("SELECT 'usable'") == "usable"
        finally:
            await conn.close()

    asyncio.run(body())
    assert upstream_rows(server, f"SELECT v FROM {table} WHERE id = 2") == [("first",)]
