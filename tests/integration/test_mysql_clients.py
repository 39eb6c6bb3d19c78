"""Real MySQL clients, unmodified, through dbward to a real MariaDB: the mariadb command-line
client, PyMySQL, mysql-connector-python (text and binary protocol, pools), asyncmy and
SQLAlchemy (sync and async). Results, masking and the audit trail are checked for each."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncmy
import mysql.connector
import mysql.connector.pooling
import pymysql
import pymysql.cursors
import pytest
import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.conftest import Dbward, stop_dbward
from tests.integration.helpers import log_tail, statements, unique
from tests.integration.mysql_helpers import (
    HOST,
    connector_args,
    connector_connect,
    ids,
    make_table,
    mysql_cli,
    pymysql_connect,
    record_of,
    tls_context,
    upstream_exec,
    upstream_rows,
)
from tests.mysql_upstream import MysqlDb, mysql_db, start_mysql_dbward  # noqa: F401 - the fixture, used by name

ORDERS = unique("orders")
MASKED = "****@example.com"
# id, qty, amount, shipped, created_at, label, spare, email
ROWS = [
    (1, 5, Decimal("19.99"), dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 12, 34, 56), "first",
     None, "ada@example.com"),
    (2, 7, Decimal("0.50"), dt.date(2023, 12, 31), dt.datetime(2023, 12, 31, 23, 59, 59),
     "second", "spare-2", "bob@example.com"),
    (3, -2, Decimal("1234567.89"), dt.date(2000, 2, 29), dt.datetime(2000, 2, 29, 0, 0, 1),
     "third", None, "carol@example.com"),
]  # fmt: skip
COLUMNS = "id, qty, amount, shipped, created_at, label, spare, email"


def _literal(value: object) -> str:
    return "NULL" if value is None else f"'{value}'"


@pytest.fixture(scope="module")
def db(mysql_db: MysqlDb) -> MysqlDb:  # noqa: F811 - the fixture imported above
    return mysql_db


@pytest.fixture(scope="module")
def server(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    upstream_exec(
        db,
        f"CREATE TABLE `{ORDERS}` (id INT PRIMARY KEY, qty INT NOT NULL, amount DECIMAL(10,2), "
        "shipped DATE, created_at DATETIME, label VARCHAR(32), spare VARCHAR(32) NULL, "
        "email VARCHAR(64))",
        f"INSERT INTO `{ORDERS}` VALUES "
        + ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in ROWS),
    )
    dbward = start_mysql_dbward(tmp_path_factory.mktemp("mysql-clients"), db)
    yield dbward
    alive = dbward.proc.poll() is None
    stop_dbward(dbward)
    assert alive, f"dbward exited during the tests:\n{log_tail(dbward)}"


def masked_rows() -> list[tuple[Any, ...]]:
    return [(*row[:-1], MASKED) for row in ROWS]


# the mariadb / mysql command-line client ----------------------------------------------------


def test_cli_select_returns_rows(server: Dbward) -> None:
    out = mysql_cli(
        server,
        "--batch",
        "--skip-column-names",
        "-e",
        f"SELECT id, label, amount FROM {ORDERS} ORDER BY id",
        user="cli-user",
    ).stdout
    assert out.splitlines() == ["1\tfirst\t19.99", "2\tsecond\t0.50", "3\tthird\t1234567.89"]
    record = record_of(server, f"SELECT id, label, amount FROM {ORDERS}", identity="cli-user")
    data = record["data"]
    assert data["protocol"] == "mysql-text", data
    assert data["decision"] == "allow", data
    assert data["rows"] == 3, data
    assert record["target"] == "app"
    starts = [
        e for e in server.audit() if e["kind"] == "connection.start" and e["identity"] == "cli-user"
    ]
    assert starts, "no connection.start for the CLI's session"
    assert starts[-1]["data"]["protocol"] == "mysql"
    assert starts[-1]["data"]["tls"], starts[-1]["data"]


def test_cli_batch_on_stdin_writes_with_where(server: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "cli_w")
    script = (
        f"INSERT INTO {table} VALUES (10, 'ten');\n"
        f"UPDATE {table} SET v = 'TEN' WHERE id = 10;\n"
        f"UPDATE {table} SET v = concat(v, '!') WHERE id IN (1, 2);\n"
        f"DELETE FROM {table} WHERE id = 3;\n"
        f"SELECT id, v FROM {table} ORDER BY id;\n"
    )
    out = mysql_cli(server, "--batch", stdin=script, user="cli-user").stdout
    assert out.splitlines() == ["id\tv", "1\tv1!", "2\tv2!", "10\tTEN"]
    assert upstream_rows(db, f"SELECT id, v FROM {table} ORDER BY id") == [
        (1, "v1!"),
        (2, "v2!"),
        (10, "TEN"),
    ]
    for needle, rows in (
        (f"INSERT INTO {table} VALUES (10, 'ten')", 1),
        (f"UPDATE {table} SET v = 'TEN' WHERE id = 10", 1),
        (f"UPDATE {table} SET v = concat(v, '!') WHERE id IN (1, 2)", 2),
        (f"DELETE FROM {table} WHERE id = 3", 1),
    ):
        data = record_of(server, needle, identity="cli-user")["data"]
        assert data["decision"] == "allow", data
        assert data["rows"] == rows, (needle, data)
        assert "error" not in data, data


def test_cli_email_column_is_masked(server: Dbward) -> None:
    out = mysql_cli(
        server,
        "--batch",
        "--skip-column-names",
        "-e",
        f"SELECT id, email FROM {ORDERS} ORDER BY id",
    ).stdout
    assert out.splitlines() == [f"1\t{MASKED}", f"2\t{MASKED}", f"3\t{MASKED}"], out
    for _, *_rest, email in ROWS:
        assert email.split("@")[0] not in out, out
    data = record_of(server, f"SELECT id, email FROM {ORDERS}")["data"]
    assert data.get("masked"), data


def test_cli_error_from_the_server_is_relayed_and_audited(server: Dbward) -> None:
    result = mysql_cli(
        server,
        "--batch",
        "-e",
        "SELECT * FROM no_such_table_here; SELECT 1",
        check=False,
    )
    assert result.returncode == 1, result
    assert "ERROR 1146 (42S02)" in result.stderr, result.stderr
    data = record_of(server, "SELECT * FROM no_such_table_here")["data"]
    assert data["sqlstate"] == "42S02", data
    assert data["error"].startswith("1146: "), data


# TLS: the ClientHello right behind the SSLRequest ---------------------------------------------
# A MySQL client sends its SSLRequest and starts TLS at once, without an answer (the protocol
# has none): the ClientHello may come in the same segment, or later. Both must work.


def _ssl_request_and_client_hello(server: Dbward) -> tuple[bytes, bytes]:
    caps = 0x000FA68D | 0x800  # protocol 4.1, secure connection, plugin auth, ..., SSL
    body = struct.pack("<IIB23x", caps, 1 << 24, 45)
    request = len(body).to_bytes(3, "little") + b"\x01" + body
    outgoing = ssl.MemoryBIO()
    tls = tls_context(server).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=HOST)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return request, outgoing.read()


@pytest.mark.parametrize("together", [True, False], ids=["one segment", "two segments"])
def test_client_hello_right_behind_the_ssl_request(server: Dbward, together: bool) -> None:
    request, hello = _ssl_request_and_client_hello(server)
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        header = sock.recv(4, socket.MSG_WAITALL)
        sock.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL)
        if together:
            sock.sendall(request + hello)
        else:
            sock.sendall(request)
            time.sleep(0.2)
            sock.sendall(hello)
        answer = sock.recv(4096)
    assert answer[:2] == b"\x16\x03", answer[:80]  # a TLS handshake record: ServerHello


def test_every_real_client_connection_succeeds(server: Dbward) -> None:
    """Real clients send the ClientHello right behind the SSLRequest; none may fail (a
    third of them did while dbward lost a ClientHello that came in the same segment)."""
    failures = []
    for _ in range(30):
        try:
            pymysql_connect(server).close()
        except pymysql.err.MySQLError as exc:
            failures.append(f"PyMySQL: {exc}")
    for _ in range(15):
        result = mysql_cli(server, "-e", "SELECT 1", check=False)
        if result.returncode != 0:
            failures.append(f"mariadb: {result.stderr.strip()}")
    assert not failures, f"{len(failures)} of 45 connections failed: {sorted(set(failures))}"


# PyMySQL --------------------------------------------------------------------------------------


def test_pymysql_select_with_params_and_types(server: Dbward) -> None:
    with pymysql_connect(server) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {COLUMNS} FROM {ORDERS} WHERE id >= %s ORDER BY id", (1,))
        rows = [tuple(r) for r in cur.fetchall()]
        assert cur.rowcount == 3
        assert [d[0] for d in cur.description] == COLUMNS.split(", ")
    assert rows == masked_rows()
    data = record_of(server, f"SELECT {COLUMNS} FROM {ORDERS} WHERE id >= 1")["data"]
    assert data["rows"] == 3, data
    assert data["protocol"] == "mysql-text", data
    assert data.get("masked"), data
    assert "lineage" in data, data


def test_pymysql_multi_statements_and_nextset(server: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "multi")
    text = (
        f"SELECT 1; SELECT id FROM {table} ORDER BY id; "
        f"UPDATE {table} SET v = 'm' WHERE id = 2; SELECT v, email FROM {table} t "
        f"JOIN {ORDERS} o USING (id) WHERE id = 2"
    )
    with (
        pymysql_connect(server, client_flag=CLIENT.MULTI_STATEMENTS) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(text)
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((1,), (2,), (3,))
        assert cur.nextset()
        assert cur.rowcount == 1
        assert cur.description is None
        assert cur.nextset()
        assert cur.fetchall() == (("m", MASKED),)
        assert cur.nextset() is None
        cur.execute("SELECT 2")  # the session is in step after the last result
        assert cur.fetchall() == ((2,),)
    assert ids(db, table) == [1, 2, 3]
    assert upstream_rows(db, f"SELECT v FROM {table} WHERE id = 2") == [("m",)]
    data = record_of(server, text)["data"]
    assert data["decision"] == "allow", data
    assert "error" not in data, data


def test_pymysql_executemany(server: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "many", rows=0)
    with pymysql_connect(server) as conn, conn.cursor() as cur:
        inserted = cur.executemany(
            f"INSERT INTO {table} (id, v) VALUES (%s, %s)",
            [(10, "a"), (11, "b"), (12, "c"), (13, None)],
        )
        assert inserted == 4
        updated = cur.executemany(
            f"UPDATE {table} SET v = %s WHERE id = %s", [("x", 10), ("y", 11), ("z", 99)]
        )
        assert updated == 2
    assert upstream_rows(db, f"SELECT id, v FROM {table} ORDER BY id") == [
        (10, "x"),
        (11, "y"),
        (12, "c"),
        (13, None),
    ]
    # PyMySQL sends one multi-row INSERT, and one UPDATE per row
    data = record_of(server, f"INSERT INTO {table} (id, v) VALUES (10, 'a'),(11, 'b')")["data"]
    assert data["rows"] == 4, data
    assert len(statements(server, f"UPDATE {table} SET v = ")) == 3


def test_pymysql_transactions(server: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "tx")
    with pymysql_connect(server, autocommit=False) as conn:
        conn.begin()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (20, 'rolled back')")
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (4,)
        assert ids(db, table) == [1, 2, 3]  # not visible outside yet
        conn.rollback()
        assert ids(db, table) == [1, 2, 3]

        conn.begin()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (21, 'committed')")
            cur.execute(f"DELETE FROM {table} WHERE id = 1")
        assert ids(db, table) == [1, 2, 3]
        conn.commit()
        assert ids(db, table) == [2, 3, 21]

        # autocommit off without begin(): the implicit transaction of the server
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {table} SET v = 'late' WHERE id = 2")
        conn.rollback()
        assert upstream_rows(db, f"SELECT v FROM {table} WHERE id = 2") == [("v2",)]
    kinds = [s["data"]["statement"].strip().upper() for s in statements(server)]
    assert "ROLLBACK" in kinds or any(k.startswith("ROLLBACK") for k in kinds), kinds[-20:]
    assert any(k.startswith("COMMIT") for k in kinds), kinds[-20:]


def test_pymysql_ping_and_select_db(server: Dbward, db: MysqlDb) -> None:
    with pymysql_connect(server) as conn:
        conn.ping(reconnect=False)
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == (db.name,)
        conn.select_db(db.name)
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {ORDERS}")
            assert cur.fetchone() == (3,)
        missing = unique("dbw_no_such_db")
        with pytest.raises(pymysql.err.OperationalError) as refused:
            conn.select_db(missing)
        assert refused.value.args[0] in (1044, 1049), refused.value  # the server's answer
        conn.ping(reconnect=False)
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == (db.name,)
            cur.execute(f"SELECT count(*) FROM {ORDERS}")  # unqualified: still resolves
            assert cur.fetchone() == (3,)
    data = record_of(server, f"USE `{db.name}`")["data"]
    assert data["protocol"] == "mysql-command", data
    assert data["decision"] == "allow", data
    failed = record_of(server, f"USE `{missing}`")["data"]
    assert failed["error"].split(":")[0] in ("1044", "1049"), failed


def test_pymysql_streams_many_masked_rows(server: Dbward, db: MysqlDb) -> None:
    table = unique("contacts")
    upstream_exec(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(64), n INT)")
    conn = db.admin()
    try:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s)",
                [(i, f"person{i}@example.com", i * 2) for i in range(1, 5001)],
            )
    finally:
        conn.close()
    seen = 0
    with (
        pymysql_connect(server, cursorclass=pymysql.cursors.SSCursor) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"SELECT id, email, n FROM {table} ORDER BY id")
        for row_id, email, n in cur:  # unbuffered: rows read as they arrive
            seen += 1
            assert (email, n) == (MASKED, row_id * 2), (row_id, email, n)
    assert seen == 5000
    data = record_of(server, f"SELECT id, email, n FROM {table}")["data"]
    assert data["rows"] == 5000, data


def test_pymysql_large_values_round_trip(server: Dbward, db: MysqlDb) -> None:
    table = unique("blobs")
    upstream_exec(db, f"CREATE TABLE {table} (id INT PRIMARY KEY, body LONGBLOB, memo LONGTEXT)")
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB, every byte value
    memo = "x" * (3 * 1024 * 1024) + " ✓"
    with pymysql_connect(server) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (1, body, memo))
        cur.execute(f"SELECT body, memo, LENGTH(body) FROM {table} WHERE id = 1")
        got = cur.fetchone()
    assert got is not None
    assert got[2] == len(body)
    assert got[0] == body
    assert got[1] == memo


def test_pymysql_duplicate_key_error_does_not_leak_the_email(server: Dbward, db: MysqlDb) -> None:
    table = unique("logins")
    upstream_exec(
        db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(64), "
        "UNIQUE KEY uq_email (email))",
        f"INSERT INTO {table} VALUES (1, 'grace.hopper@example.com')",
    )
    with pymysql_connect(server) as conn:
        with conn.cursor() as cur, pytest.raises(pymysql.err.IntegrityError) as caught:
            cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (2, "grace.hopper@example.com"))
        code, message = caught.value.args
        assert code == 1062, caught.value
        assert "Duplicate entry" in message, message
        assert "grace.hopper" not in message, message
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (1,)
    data = record_of(server, f"INSERT INTO {table} VALUES (2,")["data"]
    assert data["error"].startswith("1062: "), data
    assert "grace.hopper" not in data["error"], data


def test_pymysql_load_data_local_is_refused_without_guardrails(
    server: Dbward, db: MysqlDb, tmp_path: Path
) -> None:
    table = make_table(db, "infile")
    path = tmp_path / "rows.csv"
    path.write_text("100,from a client file\n")
    sql = f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY ','"
    with pymysql_connect(server, local_infile=True) as conn:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as caught:
            cur.execute(sql)
        message = str(caught.value.args[1])
        assert message.startswith("dbward: LOAD DATA LOCAL INFILE is refused"), caught.value
        assert "(rule protocol:local-infile)" in message, message
        with conn.cursor() as cur:  # the session is still in step
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (3,)
    assert ids(db, table) == [1, 2, 3]
    data = record_of(server, "LOAD DATA LOCAL INFILE")["data"]
    assert (data["decision"], data["rule"]) == ("deny", "protocol:local-infile"), data


# mysql-connector-python -----------------------------------------------------------------------


def test_connector_pure_text_protocol(server: Dbward) -> None:
    cnx = connector_connect(server)
    try:
        assert type(cnx).__name__ == "MySQLConnection"  # the pure-Python implementation
        cur = cnx.cursor()
        cur.execute(f"SELECT {COLUMNS} FROM {ORDERS} WHERE id = %s", (2,))
        assert cur.fetchall() == [masked_rows()[1]]
        cur.close()
    finally:
        cnx.close()


def test_connector_prepared_cursor_binary_types(server: Dbward) -> None:
    cnx = connector_connect(server)
    try:
        cur = cnx.cursor(prepared=True)
        query = f"SELECT {COLUMNS} FROM {ORDERS} WHERE id BETWEEN ? AND ? ORDER BY id"
        cur.execute(query, (1, 3))
        rows = [tuple(r) for r in cur.fetchall()]
        cur.execute(query, (2, 2))  # the same statement, executed again
        again = [tuple(r) for r in cur.fetchall()]
        cur.close()
    finally:
        cnx.close()
    assert rows == masked_rows()
    assert again == [masked_rows()[1]]
    first = rows[0]
    assert [type(v) for v in first] == [
        int, int, Decimal, dt.date, dt.datetime, str, type(None), str,
    ]  # fmt: skip
    records = statements(server, query)
    binary = [r for r in records if r["data"]["protocol"] == "mysql-binary"]
    assert len(binary) == 2, [r["data"] for r in records]
    assert [r["data"]["rows"] for r in binary] == [3, 1]
    assert all(r["data"].get("masked") for r in binary), [r["data"] for r in binary]
    assert all(r["data"].get("prepared") for r in binary)


def test_connector_prepared_insert_binds_every_type(server: Dbward, db: MysqlDb) -> None:
    table = unique("bound")
    upstream_exec(
        db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, qty BIGINT, amount DECIMAL(12,3), "
        "shipped DATE, created_at DATETIME(6), label VARCHAR(64), spare VARCHAR(8) NULL, "
        "ratio DOUBLE, raw VARBINARY(16))",
    )
    values = (
        7,
        2**40,
        Decimal("-12.345"),
        dt.date(1999, 12, 31),
        dt.datetime(2024, 2, 29, 13, 14, 15, 161718),
        "héllo wörld ✓",
        None,
        0.25,
        b"\x00\xff\x01",
    )
    cnx = connector_connect(server)
    try:
        cur = cnx.cursor(prepared=True)
        cur.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        assert cur.rowcount == 1
        cur.execute(f"SELECT * FROM {table} WHERE id = ?", (7,))
        got = tuple(cur.fetchone() or ())
        cur.close()
    finally:
        cnx.close()
    assert upstream_rows(db, f"SELECT * FROM {table}") == [values]
    assert got == values


def test_connector_pool_reset_connection(server: Dbward) -> None:
    pool = mysql.connector.pooling.MySQLConnectionPool(
        pool_name=unique("pool"), pool_size=1, pool_reset_session=True, **connector_args(server)
    )
    cnx = pool.get_connection()
    cur = cnx.cursor()
    cur.execute("SET @dbward_marker = 42")
    cur.execute("SELECT @dbward_marker, CONNECTION_ID()")
    marker, thread = cur.fetchone()
    assert marker == 42
    prepared = cnx.cursor(prepared=True)
    prepared.execute(f"SELECT label FROM {ORDERS} WHERE id = ?", (1,))
    assert prepared.fetchall() == [("first",)]
    prepared.close()
    cur.close()
    cnx.close()  # back to the pool: COM_RESET_CONNECTION

    cnx = pool.get_connection()
    try:
        cur = cnx.cursor()
        cur.execute("SELECT @dbward_marker, CONNECTION_ID()")
        # reset (the variable is gone) on the same upstream connection (not a reconnect)
        assert cur.fetchone() == (None, thread)
        prepared = cnx.cursor(prepared=True)
        prepared.execute(f"SELECT label FROM {ORDERS} WHERE id = ?", (3,))
        assert prepared.fetchall() == [("third",)]
        prepared.close()
        assert cnx.cmd_reset_connection() is True
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
        cur.close()
    finally:
        cnx.close()
    refused = [s for s in statements(server) if s["data"].get("rule") == "protocol:command"]
    assert not refused, [s["data"] for s in refused]


# asyncmy ----------------------------------------------------------------------------------------


def test_asyncmy_select_and_params(server: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "amy")

    async def run() -> tuple[Any, ...]:
        conn = await asyncmy.connect(
            host=HOST,
            port=server.port,
            user="async-svc",
            password=server.token("async-svc"),
            database="app",
            ssl=tls_context(server),
            autocommit=True,
            connect_timeout=10,
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"SELECT {COLUMNS} FROM {ORDERS} WHERE id = %s", (1,))
                row = await cur.fetchone()
                await cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (40, "from asyncmy"))
                await cur.execute(f"UPDATE {table} SET v = %s WHERE id = %s", ("upd", 1))
                await cur.execute(
                    f"SELECT v FROM {table} WHERE id IN (%s, %s) ORDER BY id", (1, 40)
                )
                rest = await cur.fetchall()
            return (tuple(row), tuple(rest))
        finally:
            await conn.ensure_closed()

    row, rest = asyncio.run(run())
    assert row == masked_rows()[0]
    assert rest == (("upd",), ("from asyncmy",))
    assert ids(db, table) == [1, 2, 3, 40]
    record = record_of(server, f"INSERT INTO {table} VALUES (40", identity="async-svc")
    assert record["data"]["rows"] == 1


# SQLAlchemy -------------------------------------------------------------------------------------


def _url(server: Dbward, driver: str, user: str = "sqla-svc") -> sa.URL:
    return sa.URL.create(
        f"mysql+{driver}",
        username=user,
        password=server.token(user),
        host=HOST,
        port=server.port,
        database="app",
    )


def _pymysql_tls(server: Dbward) -> dict[str, Any]:
    return {"ssl_ca": str(server.ca_file), "ssl_verify_cert": True, "ssl_verify_identity": True}


def test_sqlalchemy_core_select_and_insert(server: Dbward, db: MysqlDb) -> None:
    table_name = make_table(db, "core", rows=0)
    engine = sa.create_engine(
        _url(server, "pymysql"), connect_args=_pymysql_tls(server), pool_pre_ping=True
    )
    meta = sa.MetaData()
    table = sa.Table(
        table_name, meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.String)
    )
    orders = sa.Table(ORDERS, meta, autoload_with=engine)  # reflection through dbward
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": 1, "v": "one"}, {"id": 2, "v": "two"}])
        with engine.connect() as conn:  # a pooled connection: pre-pinged at checkout
            got = conn.execute(sa.select(table.c.v).where(table.c.id == 2)).scalar_one()
            picked = conn.execute(
                sa.select(orders.c.label, orders.c.email, orders.c.amount).where(
                    orders.c.id == sa.bindparam("wanted")
                ),
                {"wanted": 3},
            ).one()
    finally:
        engine.dispose()
    assert got == "two"
    assert tuple(picked) == ("third", MASKED, Decimal("1234567.89"))
    assert sorted(c.name for c in orders.columns) == sorted(COLUMNS.split(", "))
    assert ids(db, table_name) == [1, 2]


def test_sqlalchemy_pool_pre_ping_replaces_a_dead_connection(server: Dbward, db: MysqlDb) -> None:
    engine = sa.create_engine(
        _url(server, "pymysql"),
        connect_args=_pymysql_tls(server),
        pool_pre_ping=True,
        pool_size=1,
        max_overflow=0,
    )
    try:
        with engine.connect() as conn:
            thread = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
        upstream_exec(db, f"KILL {thread}")  # the pooled session's upstream dies
        with engine.connect() as conn:  # the pre-ping notices and reconnects
            assert conn.execute(sa.text(f"SELECT count(*) FROM {ORDERS}")).scalar_one() == 3
            assert conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one() != thread
    finally:
        engine.dispose()


class _Base(DeclarativeBase):
    pass


WIDGETS = unique("widgets")


class Widget(_Base):
    __tablename__ = WIDGETS
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(sa.String(64))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    email: Mapped[str | None] = mapped_column(sa.String(64))


def test_sqlalchemy_orm_query(server: Dbward, db: MysqlDb) -> None:
    upstream_exec(
        db,
        f"CREATE TABLE {WIDGETS} (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(64), "
        "price DECIMAL(10,2), email VARCHAR(64))",
    )
    engine = sa.create_engine(
        _url(server, "pymysql"), connect_args=_pymysql_tls(server), pool_pre_ping=True
    )
    try:
        with Session(engine) as session:
            session.add_all(
                [
                    Widget(title="sprocket", price=Decimal("2.50"), email="maker@example.com"),
                    Widget(title="gear", price=Decimal("10.00"), email=None),
                ]
            )
            session.commit()
            gear_id = session.scalars(sa.select(Widget.id).where(Widget.title == "gear")).one()
        with Session(engine) as session:
            found = session.scalars(sa.select(Widget).order_by(Widget.id)).all()
            shown = [(w.title, w.price, w.email) for w in found]
            gear = session.get(Widget, gear_id)
            assert gear is not None
            gear.price = Decimal("11.00")
            session.commit()
    finally:
        engine.dispose()
    assert shown == [("sprocket", Decimal("2.50"), MASKED), ("gear", Decimal("10.00"), None)]
    assert upstream_rows(db, f"SELECT title, price, email FROM {WIDGETS} ORDER BY id") == [
        ("sprocket", Decimal("2.50"), "maker@example.com"),
        ("gear", Decimal("11.00"), None),
    ]


def test_sqlalchemy_async_asyncmy(server: Dbward, db: MysqlDb) -> None:
    table_name = make_table(db, "asa", rows=0)
    meta = sa.MetaData()
    table = sa.Table(
        table_name, meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.String)
    )

    async def run() -> tuple[list[Any], Any]:
        engine = create_async_engine(
            _url(server, "asyncmy", "sqla-async"),
            connect_args={"ssl": tls_context(server)},
            pool_pre_ping=True,
        )
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(table), [{"id": 5, "v": "five"}, {"id": 6, "v": "six"}]
                )
            async with engine.connect() as conn:
                got = (await conn.execute(sa.select(table).order_by(table.c.id))).all()
                email = (
                    await conn.execute(
                        sa.text(f"SELECT email FROM {ORDERS} WHERE id = :i"), {"i": 2}
                    )
                ).scalar_one()
            return [tuple(r) for r in got], email
        finally:
            await engine.dispose()

    got, email = asyncio.run(run())
    assert got == [(5, "five"), (6, "six")]
    assert email == MASKED
    assert ids(db, table_name) == [5, 6]
    assert statements(server, f"INSERT INTO {table_name}", identity="sqla-async")
