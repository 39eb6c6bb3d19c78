"""Shared by the MySQL integration tests: dbward with a MySQL listener, and real clients
(PyMySQL, mysql-connector-python, the ``mariadb`` command) through it or straight to the
upstream MariaDB.

Clients log in as an identity (user = the identity's name, password = its dbward token),
name the dbward connection as the database, and verify dbward's certificate against its
generated CA.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql

from tests.conftest import Dbward, free_port
from tests.integration.mysql_helpers import (  # noqa: F401 (shared with the client tests)
    connector_connect,
    pymysql_connect,
    upstream_exec,
    upstream_rows,
)
from tests.mysql_upstream import MysqlDb, start_mysql_dbward

CLIENT_TIMEOUT = 60


def start_server(
    tmp: Path,
    db: MysqlDb,
    *,
    policy: str | None = None,
    environment: str = "staging",
    extra_config: dict[str, Any] | None = None,
    statement_literals: str = "keep",
) -> Dbward:
    """dbward in front of ``db`` (connection ``app``), its MySQL listener greeting clients with
    the upstream's own version (``5.5.5-10.11...-MariaDB``), as it does by default."""
    extra = dict(extra_config or {})
    extra.setdefault("listeners", [{"host": "127.0.0.1", "port": free_port(), "protocol": "mysql"}])
    return start_mysql_dbward(
        tmp,
        db,
        policy=policy,
        environment=environment,
        extra_config=extra,
        statement_literals=statement_literals,
    )


def direct_pymysql(db: MysqlDb, **options: Any) -> pymysql.connections.Connection[Any]:
    """PyMySQL straight to the upstream, as the database's own user (not through dbward)."""
    return pymysql.connect(
        host=db.host,
        port=db.port,
        user=db.role,
        password=db.password,
        database=db.name,
        autocommit=True,
        connect_timeout=10,
        **options,
    )


def direct_connector(db: MysqlDb, **options: Any) -> Any:
    return mysql.connector.connect(
        host=db.host,
        port=db.port,
        user=db.role,
        password=db.password,
        database=db.name,
        autocommit=True,
        use_pure=True,
        connection_timeout=10,
        **options,
    )


def mariadb_cli(
    server: Dbward, user: str, *args: str, timeout: float = CLIENT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """The ``mariadb`` command through dbward (TLS verified; the token in ``MYSQL_PWD``, never
    on the command line)."""
    argv = [
        "mariadb",
        "--no-defaults",
        "--host=127.0.0.1",
        f"--port={server.port}",
        f"--user={user}",
        "--ssl",
        f"--ssl-ca={server.ca_file}",
        "--ssl-verify-server-cert",
        "--batch",
        *args,
        "app",
    ]
    env = {**os.environ, "MYSQL_PWD": server.token(user)}
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL or mysql-connector error."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return errno
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def error_message(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None)
    if isinstance(msg, str) and msg:
        return msg
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(exc)
