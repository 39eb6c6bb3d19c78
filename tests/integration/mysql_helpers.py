"""Helpers for the MySQL real-client tests: the mariadb/mysql command-line client, the
drivers' connection arguments, tables made directly upstream, refusals checked in full."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from typing import Any

import mysql.connector
import pymysql
import pytest

from tests.conftest import Dbward
from tests.integration.helpers import log_tail, run_client, statements, unique
from tests.mysql_upstream import MysqlDb

HOST = "127.0.0.1"


def mysql_binary() -> str:
    """The mariadb (or mysql) command-line client; missing is a failure, never a skip."""
    found = shutil.which("mariadb") or shutil.which("mysql")
    if found is None:
        pytest.fail(
            "neither the mariadb nor the mysql command-line client is on PATH: install "
            "mariadb-client (Debian/Ubuntu: apt-get install mariadb-client)"
        )
    return found


def cli_argv(
    server: Dbward,
    *args: str,
    user: str = "app-svc",
    password: str | None = None,
    database: str | None = "app",
    tls: bool = True,
) -> list[str]:
    """``mariadb`` against dbward, verifying dbward's certificate against its CA."""
    secret = server.token(user) if password is None else password
    argv = [
        mysql_binary(),
        "--no-defaults",
        "--protocol=TCP",
        "-h",
        HOST,
        "-P",
        str(server.port),
        "-u",
        user,
        f"-p{secret}",
    ]
    if tls:
        argv += ["--ssl", f"--ssl-ca={server.ca_file}", "--ssl-verify-server-cert"]
    else:
        argv += ["--skip-ssl"]
    argv += list(args)
    if database is not None:
        argv.append(database)
    return argv


def mysql_cli(
    server: Dbward,
    *args: str,
    stdin: str | None = None,
    user: str = "app-svc",
    password: str | None = None,
    database: str | None = "app",
    tls: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run the command-line client; with ``check``, a non-zero exit is an assertion error
    that shows its output and dbward's log."""
    argv = cli_argv(server, *args, user=user, password=password, database=database, tls=tls)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}
    result = run_client(argv, env, stdin=stdin)
    if check and result.returncode != 0:
        shown = [a if not a.startswith("-p") else "-p***" for a in argv]
        raise AssertionError(
            f"{shown!r} exited with {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}\ndbward log (tail):\n{log_tail(server)}"
        )
    return result


def tls_context(server: Dbward) -> ssl.SSLContext:
    """A client context that verifies dbward's certificate (and host name) with its CA."""
    return ssl.create_default_context(cafile=str(server.ca_file))


def pymysql_connect(
    server: Dbward,
    user: str = "app-svc",
    *,
    database: str = "app",
    password: str | None = None,
    tls: bool = True,
    **kwargs: Any,
) -> pymysql.connections.Connection[Any]:
    options: dict[str, Any] = {
        "host": HOST,
        "port": server.port,
        "user": user,
        "password": server.token(user) if password is None else password,
        "database": database,
        "connect_timeout": 10,
        "read_timeout": 30,
        "autocommit": True,
    }
    if tls:
        options.update(ssl_ca=str(server.ca_file), ssl_verify_cert=True, ssl_verify_identity=True)
    else:  # PyMySQL 1.2 otherwise starts TLS whenever the server offers it
        options.update(ssl_disabled=True)
    options.update(kwargs)
    return pymysql.connect(**options)


def connector_args(server: Dbward, user: str = "app-svc", **kwargs: Any) -> dict[str, Any]:
    """mysql-connector-python's arguments (pure Python unless told otherwise)."""
    return {
        "host": HOST,
        "port": server.port,
        "user": user,
        "password": server.token(user),
        "database": "app",
        "ssl_ca": str(server.ca_file),
        "ssl_verify_cert": True,
        "ssl_verify_identity": True,
        "use_pure": True,
        "connection_timeout": 10,
        "autocommit": True,
        **kwargs,
    }


def connector_connect(server: Dbward, user: str = "app-svc", **kwargs: Any) -> Any:
    """A mysql-connector-python connection (pure Python) to dbward."""
    return mysql.connector.connect(**connector_args(server, user, **kwargs))


# upstream, bypassing dbward -----------------------------------------------------------------


def upstream_exec(db: MysqlDb, *sql: str) -> None:
    conn = db.admin()
    try:
        with conn.cursor() as cur:
            for one in sql:
                cur.execute(one)
    finally:
        conn.close()


def upstream_rows(db: MysqlDb, query: str) -> list[tuple[Any, ...]]:
    conn = db.admin()
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()


def make_table(db: MysqlDb, prefix: str, rows: int = 3) -> str:
    """A new table ``(id INT PRIMARY KEY, v VARCHAR(32))`` holding ids 1..rows."""
    table = unique(prefix)
    values = ", ".join(f"({i}, 'v{i}')" for i in range(1, rows + 1))
    upstream_exec(db, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(32))")
    if rows:
        upstream_exec(db, f"INSERT INTO `{table}` VALUES {values}")
    return table


def ids(db: MysqlDb, table: str) -> list[int]:
    return [row[0] for row in upstream_rows(db, f"SELECT id FROM `{table}` ORDER BY id")]


def table_exists(db: MysqlDb, table: str) -> bool:
    found = upstream_rows(
        db,
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = '{db.name}' AND table_name = '{table}'",
    )
    return bool(found[0][0])


# the audit trail -----------------------------------------------------------------------------


def record_of(server: Dbward, needle: str, *, identity: str | None = None) -> dict[str, Any]:
    """The last statement record whose text holds ``needle``; fails with what was recorded."""
    found = statements(server, needle, identity=identity)
    if not found:
        recorded = [s["data"]["statement"] for s in server.statements()][-20:]
        raise AssertionError(f"no statement record holds {needle!r}; the last ones: {recorded}")
    return found[-1]


def login_failures(server: Dbward) -> list[dict[str, Any]]:
    return [e for e in server.audit() if e["kind"] == "login.failed"]


def assert_mysql_refusal(exc: BaseException, code: int, rule: str) -> str:
    """``exc`` (a driver's error carrying ``args = (code, message)``) is dbward's refusal by
    ``rule`` with MySQL error ``code``; returns the message."""
    args: Sequence[Any] = getattr(exc, "args", ())
    errno = getattr(exc, "errno", None)
    got = errno if isinstance(errno, int) and errno > 0 else (args[0] if args else None)
    message = getattr(exc, "msg", None) or (str(args[1]) if len(args) > 1 else str(exc))
    assert got == code, f"expected MySQL error {code}, got {got}: {message!r}"
    assert message.startswith("dbward: "), message
    assert f"(rule {rule})" in message, message
    return message


def assert_denied_record(record: dict[str, Any], rule: str) -> None:
    data = record["data"]
    assert data["decision"] == "deny", data
    assert data["rule"] == rule, data
    assert data.get("reason"), data
    assert "lineage" not in data, data
