"""The real MariaDB (or MySQL) the MySQL tests use, and dbward in front of it.

The server is named by ``DBWARD_TEST_MYSQL`` (``host:port``, default
127.0.0.1:3306, administered as ``root`` without a password, or as
``DBWARD_TEST_MYSQL_USER``/``DBWARD_TEST_MYSQL_PASSWORD``). A missing server
is an error, never a skip. Each test module gets a database and a user of its
own (with a password), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward

_ADDRESS = os.environ.get("DBWARD_TEST_MYSQL", "127.0.0.1:3306")
MYSQL_HOST, _, _port = _ADDRESS.rpartition(":")
MYSQL_PORT = int(_port)
_ADMIN_USER = os.environ.get("DBWARD_TEST_MYSQL_USER", "root")
_ADMIN_PASSWORD = os.environ.get("DBWARD_TEST_MYSQL_PASSWORD", "")


def admin_connection(database: str | None = None) -> pymysql.connections.Connection[Any]:
    try:
        return pymysql.connect(
            host=MYSQL_HOST,
            port=MYSQL_PORT,
            user=_ADMIN_USER,
            password=_ADMIN_PASSWORD,
            database=database,
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        pytest.fail(
            f"the MySQL/MariaDB server at {_ADDRESS} is not reachable as {_ADMIN_USER} ({exc}); "
            "start it or point DBWARD_TEST_MYSQL at one"
        )


@dataclass
class MysqlDb(UpstreamDb):
    def admin(self) -> pymysql.connections.Connection[Any]:
        """A direct connection to this database, as its own user (not through dbward)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.role,
            password=self.password,
            database=self.name,
            autocommit=True,
        )


@pytest.fixture(scope="module")
def mysql_db() -> Iterator[MysqlDb]:
    suffix = secrets.token_hex(4)
    name, user = f"dbw_test_{suffix}", f"dbw_user_{suffix}"
    password = f"upstream-secret-{secrets.token_hex(8)}"
    admin = admin_connection()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%'")
    try:
        yield MysqlDb(name, user, password, MYSQL_HOST, MYSQL_PORT)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


def mysql_connection_config(db: MysqlDb, environment: str = "staging") -> dict[str, Any]:
    return {
        "engine": "mysql",
        "environment": environment,
        "host": db.host,
        "port": db.port,
        "database": db.name,
        "credentials": {"user": db.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
        "tls": {"mode": "prefer"},
    }


def start_mysql_dbward(
    tmp: Path,
    db: MysqlDb,
    *,
    policy: str | None = None,
    environment: str = "staging",
    extra_config: dict[str, Any] | None = None,
    statement_literals: str = "keep",
) -> Dbward:
    """dbward with one mysql listener (its ``port``) in front of ``db`` as connection
    ``app``."""
    from tests.conftest import free_port

    port = free_port()
    extra = dict(extra_config or {})
    extra.setdefault(
        "listeners",
        [{"host": "127.0.0.1", "port": port, "protocol": "mysql"}],
    )
    return start_dbward(
        tmp,
        db,
        connections={"app": mysql_connection_config(db, environment)},
        policy=policy,
        extra_config=extra,
        statement_literals=statement_literals,
    )


@pytest.fixture(scope="module")
def mysql_dbward(mysql_db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    server = start_mysql_dbward(tmp_path_factory.mktemp("dbward-mysql"), mysql_db)
    yield server
    stop_dbward(server)
