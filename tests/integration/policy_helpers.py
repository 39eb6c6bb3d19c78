"""Helpers for the policy tests: tables made directly upstream, refusals checked in full."""

from __future__ import annotations

from typing import Any

import asyncpg
import psycopg

from tests.conftest import Dbward
from tests.integration.helpers import psql, statements, unique

DENIED = "42501"
STAND_IN = "dbward refused this statement"


def upstream_rows(server: Dbward, query: str) -> list[tuple[Any, ...]]:
    """Read the upstream database directly, bypassing dbward."""
    with psycopg.connect(server.upstream.dsn()) as conn:
        return conn.execute(query).fetchall()


def upstream_exec(server: Dbward, sql: str) -> None:
    with psycopg.connect(server.upstream.dsn(), autocommit=True) as conn:
        conn.execute(sql)


def make_table(server: Dbward, prefix: str, rows: int = 3) -> str:
    """A new table ``(id int primary key, v text)`` holding ids 1..rows, made upstream."""
    table = unique(prefix)
    upstream_exec(
        server,
        f"CREATE TABLE {table} (id integer PRIMARY KEY, v text); "
        f"INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, {rows}) g",
    )
    return table


def ids(server: Dbward, table: str) -> list[int]:
    return [row[0] for row in upstream_rows(server, f"SELECT id FROM {table} ORDER BY id")]


def table_exists(server: Dbward, table: str) -> bool:
    return upstream_rows(server, f"SELECT to_regclass('public.{table}') IS NOT NULL")[0][0]


def connect(server: Dbward, user: str = "app-svc", **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(server.dsn(user), connect_timeout=10, **kwargs)


async def aconnect(server: Dbward, user: str = "app-svc") -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=server.token(user),
        database="app",
        ssl="require",
        timeout=10,
    )


def assert_names_rule_and_hint(message: str, rule: str, hint: str | None) -> None:
    """The message names the rule and the client is told what to do: in the Hint field,
    or (as clients that show only the message need) after the rule, ``(rule x); hint``."""
    assert f"(rule {rule})" in message, message
    if hint:
        assert message.endswith(f"(rule {rule})"), message
    else:
        _, _, after = message.partition(f"(rule {rule}); ")
        assert after.strip(), f"no hint in {message!r}"


def assert_refused(exc: psycopg.Error, rule: str, *, review: bool = False) -> None:
    """``exc`` is dbward's refusal by ``rule``: SQLSTATE 42501, the rule named, a hint."""
    assert isinstance(exc, psycopg.errors.InsufficientPrivilege), repr(exc)
    diag = exc.diag
    assert diag.sqlstate == DENIED
    message = diag.message_primary or ""
    assert message.startswith("dbward: "), message
    assert_names_rule_and_hint(message, rule, diag.message_hint)
    detail = diag.message_detail or ""
    if review:
        assert "approval" in message, message
        assert f"Rule {rule} requires approval" in detail, detail
    else:
        assert f"Denied by rule {rule}." in detail, detail
    assert STAND_IN not in str(exc)


def assert_refused_async(exc: BaseException, rule: str) -> None:
    assert isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError), repr(exc)
    assert exc.sqlstate == DENIED
    message = exc.args[0]
    assert message.startswith("dbward: "), message
    assert_names_rule_and_hint(message, rule, exc.hint)
    assert f"Denied by rule {rule}." in (exc.detail or "")


def assert_psql_refused(stderr: str, rule: str) -> None:
    """psql run with VERBOSITY=verbose: ``ERROR:  42501: dbward: ... (rule ...)``."""
    assert f"ERROR:  {DENIED}: dbward: " in stderr, stderr
    assert f"(rule {rule})" in stderr, stderr
    assert f"(rule {rule}); " in stderr or "HINT:  " in stderr, stderr
    assert STAND_IN not in stderr, stderr


def psql_verbose(server: Dbward, *args: str, **kwargs: Any) -> Any:
    return psql(server, "-v", "VERBOSITY=verbose", *args, **kwargs)


def record_of(server: Dbward, text: str) -> dict[str, Any]:
    """The one audit record of the statement with exactly this text."""
    found = [r for r in statements(server) if r["data"]["statement"] == text]
    assert len(found) == 1, (text, [r["data"]["statement"] for r in statements(server)][-20:])
    return found[0]


def assert_denied_record(record: dict[str, Any], rule: str, action: str = "deny") -> None:
    data = record["data"]
    assert data["decision"] == action, data
    assert data["rule"] == rule, data
    assert data["reason"], data
    assert data["sqlstate"] == DENIED, data
    assert data["tags"] == [], data
    assert STAND_IN not in data["statement"]


def assert_serving(server: Dbward) -> None:
    """dbward is alive and a new session works; its log holds no internal error."""
    assert server.proc.poll() is None, "dbward exited"
    marker = unique("alive")
    with connect(server, autocommit=True) as conn:
        assert conn.execute(f"SELECT '{marker}'").fetchone() == (marker,)
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "internal error" not in log, log[-3000:]
