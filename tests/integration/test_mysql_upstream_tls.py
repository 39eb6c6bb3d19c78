"""dbward's own side of a MySQL connection: TLS to the upstream, and how clients log in.

The upstream is a MariaDB of this module's own with TLS from a test CA
(tests/integration/throwaway_mariadb.py), whose user may only connect over
TLS. Clients log in with the plugin they choose: an auth switch to
mysql_clear_password (PyMySQL, the mariadb client), caching_sha2_password's
full authentication, or mysql_clear_password from the start.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from tests.conftest import Dbward, start_dbward, stop_dbward
from tests.integration.throwaway_mariadb import ThrowawayMariaDB, throwaway_mariadb
from tests.mysql_upstream import MysqlDb


@pytest.fixture(scope="module")
def tls_mariadb() -> Iterator[ThrowawayMariaDB]:
    with throwaway_mariadb() as server:
        yield server


@pytest.fixture(scope="module")
def tls_db(tls_mariadb: ThrowawayMariaDB) -> MysqlDb:
    password = f"pw-{secrets.token_hex(8)}"
    tls_mariadb.execute(
        "CREATE DATABASE shop",
        f"CREATE USER 'shopper'@'%' IDENTIFIED BY '{password}' REQUIRE SSL",
        "GRANT ALL ON shop.* TO 'shopper'@'%'",
        "CREATE TABLE shop.customers (id INT PRIMARY KEY, email VARCHAR(80))",
        "INSERT INTO shop.customers VALUES (1, 'carol@example.net')",
    )
    return MysqlDb("shop", "shopper", password, "127.0.0.1", tls_mariadb.port)


def _start(tmp: Path, db: MysqlDb, tls: dict[str, Any]) -> Dbward:
    from tests.conftest import free_port

    port = free_port()
    connection = {
        "engine": "mysql",
        "host": db.host,
        "port": db.port,
        "database": db.name,
        "credentials": {"user": db.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
        "tls": tls,
    }
    return start_dbward(
        tmp,
        db,
        connections={"app": connection},
        extra_config={"listeners": [{"host": "127.0.0.1", "port": port, "protocol": "mysql"}]},
    )


@pytest.fixture(scope="module")
def verified(
    tls_db: MysqlDb, tls_mariadb: ThrowawayMariaDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    server = _start(
        tmp_path_factory.mktemp("verified"),
        tls_db,
        {"mode": "verify-full", "ca_file": str(tls_mariadb.ca.ca_file)},
    )
    yield server
    stop_dbward(server)


def _pymysql(dbward: Dbward, **extra: Any) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host="127.0.0.1",
        port=dbward.port,
        user="app-svc",
        password=dbward.token("app-svc"),
        database="app",
        ssl={"ca": str(dbward.ca_file), "check_hostname": False},
        autocommit=True,
        **extra,
    )


def test_the_upstream_connection_is_verified_tls(verified: Dbward) -> None:
    conn = _pymysql(verified)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            ((_, version),) = cur.fetchall()
            cur.execute("SELECT email FROM customers")
            assert cur.fetchall() == (("****@example.net",),)
    finally:
        conn.close()
    assert version.startswith("TLSv1."), version
    starts = [e for e in verified.audit() if e["kind"] == "connection.start"]
    assert starts[-1]["data"]["upstream_tls"].startswith("TLSv1.")
    assert starts[-1]["data"]["protocol"] == "mysql"
    assert "MariaDB" in starts[-1]["data"]["upstream_version"]


def test_a_certificate_from_another_ca_is_refused(
    tls_db: MysqlDb, tmp_path: Path, verified: Dbward
) -> None:
    other = _start(tmp_path, tls_db, {"mode": "verify-full", "ca_file": str(verified.ca_file)})
    try:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            _pymysql(other)
        _code, message = refused.value.args
        assert "dbward cannot open connection app" in message
        assert "certificate verification failed" in message
    finally:
        stop_dbward(other)


def test_without_tls_the_upstream_refuses_and_the_client_is_told_why(
    tls_db: MysqlDb, tmp_path: Path
) -> None:
    plain = _start(tmp_path, tls_db, {"mode": "disable"})
    try:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            _pymysql(plain)
        message = refused.value.args[1]
        assert "dbward cannot open connection app" in message
        assert "upstream refused dbward's connection: 1045" in message
        failed = [e for e in plain.audit() if e["kind"] == "login.failed"]
        assert failed
        assert failed[-1]["data"]["stage"] == "upstream"
        assert tls_db.password not in plain.log()
    finally:
        stop_dbward(plain)


@pytest.mark.parametrize("plugin", ["caching_sha2_password", "mysql_clear_password"])
def test_clients_log_in_with_the_plugin_they_choose(verified: Dbward, plugin: str) -> None:
    conn = mysql.connector.connect(
        host="127.0.0.1",
        port=verified.port,
        user="app-svc",
        password=verified.token("app-svc"),
        database="app",
        auth_plugin=plugin,
        ssl_ca=str(verified.ca_file),
        ssl_verify_identity=False,
        use_pure=True,
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM customers")
        assert cur.fetchall() == [(1,)]
    finally:
        conn.close()


def test_a_wrong_token_is_refused_whatever_the_plugin(verified: Dbward) -> None:
    for plugin in ("caching_sha2_password", "mysql_clear_password", "mysql_native_password"):
        with pytest.raises(mysql.connector.Error) as refused:
            mysql.connector.connect(
                host="127.0.0.1",
                port=verified.port,
                user="app-svc",
                password="dbw_not-a-real-token",
                database="app",
                auth_plugin=plugin,
                ssl_ca=str(verified.ca_file),
                ssl_verify_identity=False,
                use_pure=True,
            )
        assert refused.value.errno == 1045, (plugin, refused.value)


def test_tls_is_required_from_clients(verified: Dbward) -> None:
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host="127.0.0.1",
            port=verified.port,
            user="app-svc",
            password=verified.token("app-svc"),
            database="app",
            ssl_disabled=True,  # PyMySQL prefers TLS when the server offers it
        )
    code, message = refused.value.args
    assert code == 3159
    assert "TLS" in message
