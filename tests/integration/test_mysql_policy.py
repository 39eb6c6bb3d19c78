"""Policy through real MySQL clients: guardrails on a production connection, rules from a
policy file, statements dbward cannot parse, LOAD DATA LOCAL, COM_CHANGE_USER, failed logins
and malformed packets. After every refusal the same session keeps serving."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.conftest import Dbward, stop_dbward
from tests.integration.helpers import log_tail, statements, unique, wait_for
from tests.integration.mysql_helpers import (
    assert_denied_record,
    assert_mysql_refusal,
    connector_connect,
    ids,
    login_failures,
    make_table,
    mysql_cli,
    pymysql_connect,
    record_of,
    table_exists,
    upstream_exec,
    upstream_rows,
)
from tests.mysql_upstream import MysqlDb, mysql_db, start_mysql_dbward  # noqa: F401 - the fixture, used by name

UNBOUNDED = "guardrail:unbounded-write"
DESTRUCTIVE = "guardrail:destructive-ddl"
UNPARSABLE = "guardrail:unparsable"
LOCAL_INFILE = "protocol:local-infile"
TABLE_DENIED = 1142
SPECIFIC_DENIED = 1227
PARSE_ERROR = 1064
PAYROLL = unique("payroll")


@pytest.fixture(scope="module")
def db(mysql_db: MysqlDb) -> MysqlDb:  # noqa: F811 - the fixture imported above
    return mysql_db


@pytest.fixture(scope="module")
def guarded(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    upstream_exec(
        db,
        f"CREATE TABLE {PAYROLL} (id INT PRIMARY KEY, salary DECIMAL(10,2))",
        f"INSERT INTO {PAYROLL} VALUES (1, 5000.00), (2, 6100.50)",
    )
    policy = f"""\
version: 1
default: allow
guardrails:
  environments: [production]
rules:
  - name: payroll-staff-only
    match: {{group: contractors, table: "{db.name}.{PAYROLL}"}}
    action: deny
    message: contractors may not read or change the payroll table
  - name: contractors-no-grants
    match: {{group: contractors, kind: privilege}}
    action: deny
    message: contractors cannot change privileges
"""
    server = start_mysql_dbward(
        tmp_path_factory.mktemp("mysql-policy"), db, policy=policy, environment="production"
    )
    server.token("app-svc", groups=("eng",))
    server.token("temp-1", groups=("contractors",))
    yield server
    alive = server.proc.poll() is None
    stop_dbward(server)
    assert alive, f"dbward exited during the tests:\n{log_tail(server)}"


def assert_serving(conn: pymysql.connections.Connection[Any], table: str, expected: int) -> None:
    """The same session still answers, in step: a SELECT right after a refusal."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (expected,)


def refused_by(conn: pymysql.connections.Connection[Any], sql: str, code: int, rule: str) -> str:
    with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as caught:
        cur.execute(sql)
    return assert_mysql_refusal(caught.value, code, rule)


# guardrails ----------------------------------------------------------------------------------


def test_delete_without_where_is_refused(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "unb")
    with pymysql_connect(guarded) as conn:
        for sql in (
            f"DELETE FROM {table}",
            f"DELETE FROM {table} WHERE 1=1",
            f"UPDATE {table} SET v = 'all'",
            f"UPDATE {table} SET v = 'all' WHERE id = id",
        ):
            message = refused_by(conn, sql, TABLE_DENIED, UNBOUNDED)
            assert table in message, message
            assert_serving(conn, table, 3)
        with conn.cursor() as cur:
            assert cur.execute(f"DELETE FROM {table} WHERE id = 3") == 1  # a real WHERE
    assert ids(db, table) == [1, 2]
    assert upstream_rows(db, f"SELECT v FROM {table} ORDER BY id") == [("v1",), ("v2",)]
    record = record_of(guarded, f"DELETE FROM {table}")
    assert record["data"]["statement"].strip() == f"DELETE FROM {table} WHERE id = 3"
    denied = [s for s in statements(guarded, table) if s["data"]["decision"] == "deny"]
    assert len(denied) == 4, [s["data"] for s in denied]
    for s in denied:
        assert_denied_record(s, UNBOUNDED)
        assert s["identity"] == "app-svc"


def test_delete_without_where_is_refused_in_the_cli(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "unbcli")
    result = mysql_cli(guarded, "-e", f"DELETE FROM {table}", check=False)
    assert result.returncode == 1, result
    assert "ERROR 1142 (42000)" in result.stderr, result.stderr
    assert f"(rule {UNBOUNDED})" in result.stderr, result.stderr
    # --force goes on after the error: the session is still in step
    out = mysql_cli(
        guarded,
        "--batch",
        "--force",
        "--skip-column-names",
        stdin=f"DELETE FROM {table};\nSELECT count(*) FROM {table};\n",
        check=False,
    )
    assert out.stdout.splitlines() == ["3"], out
    assert "ERROR 1142 (42000) at line 1" in out.stderr, out.stderr
    assert ids(db, table) == [1, 2, 3]


def test_multi_statement_string_with_a_refused_part_runs_no_part(
    guarded: Dbward, db: MysqlDb
) -> None:
    table = make_table(db, "multi")
    with pymysql_connect(guarded, client_flag=CLIENT.MULTI_STATEMENTS) as conn:
        refused_by(
            conn,
            f"INSERT INTO {table} VALUES (9, 'x'); DELETE FROM {table}; SELECT 1",
            TABLE_DENIED,
            UNBOUNDED,
        )
        assert_serving(conn, table, 3)
    assert ids(db, table) == [1, 2, 3]


def test_drop_and_truncate_are_refused(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "drop")
    with pymysql_connect(guarded) as conn:
        for sql in (
            f"DROP TABLE {table}",
            f"DROP TABLE IF EXISTS {table}, {PAYROLL}",
            f"TRUNCATE TABLE {table}",
            f"ALTER TABLE {table} DROP COLUMN v",
        ):
            refused_by(conn, sql, TABLE_DENIED, DESTRUCTIVE)
            assert_serving(conn, table, 3)
    assert table_exists(db, table)
    assert table_exists(db, PAYROLL)
    assert ids(db, table) == [1, 2, 3]
    assert_denied_record(record_of(guarded, f"DROP TABLE {table}"), DESTRUCTIVE)


def test_grant_of_global_privileges_is_refused(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "grant")
    with pymysql_connect(guarded) as conn:
        for sql in (
            f"GRANT ALL PRIVILEGES ON *.* TO '{db.role}'@'%' WITH GRANT OPTION",
            f"GRANT FILE ON *.* TO '{db.role}'@'%'",
            f"GRANT SUPER ON *.* TO '{db.role}'@'%'",
        ):
            refused_by(conn, sql, SPECIFIC_DENIED, "guardrail:privilege-escalation")
            assert_serving(conn, table, 3)
    global_grants = [g for (g,) in upstream_rows(db, "SHOW GRANTS") if " ON *.* " in g]
    assert all(g.startswith("GRANT USAGE ON *.* ") for g in global_grants), global_grants
    record = record_of(guarded, f"GRANT FILE ON *.* TO '{db.role}'@'%'")
    assert_denied_record(record, "guardrail:privilege-escalation")


def test_rule_refuses_a_privilege_change_with_1227(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "grant2")
    with pymysql_connect(guarded, "temp-1") as conn:
        message = refused_by(
            conn,
            f"GRANT SELECT ON `{db.name}`.`{table}` TO '{db.role}'@'%'",
            SPECIFIC_DENIED,
            "contractors-no-grants",
        )
        assert "contractors cannot change privileges" in message, message
        refused_by(
            conn, f"REVOKE SELECT ON `{db.name}`.* FROM '{db.role}'@'%'",
            SPECIFIC_DENIED, "contractors-no-grants",
        )  # fmt: skip
        assert_serving(conn, table, 3)


# rules from the policy file --------------------------------------------------------------------


def test_rule_denies_a_table_for_a_group(guarded: Dbward, db: MysqlDb) -> None:
    other = make_table(db, "open")
    with pymysql_connect(guarded, "temp-1") as conn:
        for sql in (
            f"SELECT * FROM {PAYROLL}",
            f"SELECT salary FROM `{db.name}`.`{PAYROLL}` WHERE id = 1",
            f"SELECT id FROM {other} WHERE id IN (SELECT id FROM {PAYROLL})",
            f"SELECT o.v, p.salary FROM {other} o JOIN {PAYROLL} p ON p.id = o.id",
            f"UPDATE {PAYROLL} SET salary = 0 WHERE id = 1",
        ):
            message = refused_by(conn, sql, TABLE_DENIED, "payroll-staff-only")
            assert "contractors may not read or change the payroll table" in message, message
            assert_serving(conn, other, 3)  # other tables stay open to them
    with pymysql_connect(guarded, "app-svc") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, salary FROM {PAYROLL} ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [1, 2]
    record = record_of(guarded, f"SELECT * FROM {PAYROLL}", identity="temp-1")
    assert_denied_record(record, "payroll-staff-only")
    assert record["data"]["reason"] == "contractors may not read or change the payroll table"
    assert upstream_rows(db, f"SELECT salary FROM {PAYROLL} ORDER BY id") == [
        (Decimal("5000.00"),),
        (Decimal("6100.50"),),
    ]


# what dbward cannot parse ----------------------------------------------------------------------


def test_unparsable_statement_is_refused_with_1064(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "parse")
    with pymysql_connect(guarded) as conn:
        message = refused_by(conn, "SELEC id FROM nowhere WHERE", PARSE_ERROR, UNPARSABLE)
        assert message.startswith("dbward: cannot parse this statement"), message
        assert_serving(conn, table, 3)
        # executable comments: the server would run what is inside, dbward would not see it
        for sql in (f"/*!50000 DELETE FROM {table} */", f"SELECT 1 /*!, (DELETE FROM {table}) */"):
            refused_by(conn, sql, PARSE_ERROR, UNPARSABLE)
            assert_serving(conn, table, 3)
    record = record_of(guarded, "SELEC id FROM nowhere WHERE")
    assert_denied_record(record, UNPARSABLE)


def test_unparsable_message_speaks_of_mysql_not_postgresql(guarded: Dbward) -> None:
    with pymysql_connect(guarded) as conn:
        message = refused_by(conn, "SELEC 1", PARSE_ERROR, UNPARSABLE)
    assert "PostgreSQL" not in message, message


# LOAD DATA LOCAL -----------------------------------------------------------------------------


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("100,from a client file\n101,another\n")
    return path


def _load_local(path: Path, table: str) -> str:
    return f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY ','"


def test_load_data_local_infile_is_refused_for_pymysql(
    guarded: Dbward, db: MysqlDb, tmp_path: Path
) -> None:
    table = make_table(db, "infile")
    sql = _load_local(_csv(tmp_path), table)
    with pymysql_connect(guarded, local_infile=True) as conn:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as caught:
            cur.execute(sql)
        message = str(caught.value.args[1])
        # the client's own file, never the server's; and MySQL advice, not COPY
        assert message.startswith("dbward: LOAD DATA LOCAL INFILE is refused"), message
        assert f"(rule {LOCAL_INFILE})" in message, message
        assert "COPY" not in message, message
        assert "server's files" not in message, message
        assert_serving(conn, table, 3)
    assert ids(db, table) == [1, 2, 3]
    assert_denied_record(record_of(guarded, "LOAD DATA LOCAL INFILE"), LOCAL_INFILE)


def test_load_data_local_infile_is_refused_for_the_cli(
    guarded: Dbward, db: MysqlDb, tmp_path: Path
) -> None:
    table = make_table(db, "infcli")
    sql = _load_local(_csv(tmp_path), table)
    result = mysql_cli(guarded, "--local-infile=1", "-e", sql, check=False)
    assert result.returncode == 1, result
    assert "ERROR 1148 (42000)" in result.stderr, result.stderr  # ER_NOT_ALLOWED_COMMAND
    assert "dbward: LOAD DATA LOCAL INFILE is refused" in result.stderr, result.stderr
    assert f"(rule {LOCAL_INFILE})" in result.stderr, result.stderr
    out = mysql_cli(
        guarded,
        "--local-infile=1",
        "--batch",
        "--force",
        "--skip-column-names",
        stdin=f"{sql};\nSELECT count(*) FROM {table};\n",
        check=False,
    )
    assert f"(rule {LOCAL_INFILE})" in out.stderr, out.stderr
    assert out.stdout.splitlines() == ["3"], out
    assert ids(db, table) == [1, 2, 3]


def test_load_data_server_file_is_refused(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "infsrv")
    with pymysql_connect(guarded) as conn:
        refused_by(
            conn,
            f"LOAD DATA INFILE '/etc/passwd' INTO TABLE {table} FIELDS TERMINATED BY ':'",
            TABLE_DENIED,
            "guardrail:server-access",
        )
        refused_by(conn, "SELECT LOAD_FILE('/etc/passwd')", TABLE_DENIED, "guardrail:server-access")
        refused_by(
            conn,
            f"SELECT * FROM {table} INTO OUTFILE '/tmp/{table}.out'",
            TABLE_DENIED,
            "guardrail:server-access",
        )
        assert_serving(conn, table, 3)
    assert ids(db, table) == [1, 2, 3]


def test_server_file_refusals_give_mysql_advice(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "infadv")
    with pymysql_connect(guarded) as conn:
        for sql in (
            f"SELECT * FROM {table} INTO OUTFILE '/tmp/{table}.out'",
            f"LOAD DATA INFILE '/tmp/{table}.in' INTO TABLE {table}",
        ):
            message = refused_by(conn, sql, TABLE_DENIED, "guardrail:server-access")
            assert "COPY" not in message, message


# SQL PREPARE / EXECUTE and temporary tables ---------------------------------------------------


def test_sql_prepare_is_decided_on_its_statement(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "sqlprep")
    with pymysql_connect(guarded) as conn:
        refused_by(conn, f"PREPARE d FROM 'DELETE FROM {table}'", TABLE_DENIED, UNBOUNDED)
        assert_serving(conn, table, 3)
        with conn.cursor() as cur:
            cur.execute(f"SET @q = 'DELETE FROM {table}'")
        for sql in ("PREPARE q FROM @q", f"EXECUTE IMMEDIATE 'DELETE FROM {table}'"):
            refused_by(conn, sql, SPECIFIC_DENIED, "guardrail:dynamic-sql")
            assert_serving(conn, table, 3)
    assert ids(db, table) == [1, 2, 3]


def test_sql_execute_of_a_statement_dbward_saw_prepared(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "sqlexec")
    with pymysql_connect(guarded) as conn, conn.cursor() as cur:
        cur.execute(f"PREPARE s FROM 'SELECT count(*) FROM {table} WHERE id > ?'")
        cur.execute("SET @floor = 1")
        cur.execute("EXECUTE s USING @floor")
        assert cur.fetchall() == ((2,),)


def test_session_temporary_tables_are_exempt(guarded: Dbward, db: MysqlDb) -> None:
    scratch = unique("scratch")
    with pymysql_connect(guarded) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE {scratch} (id INT)")
        cur.execute(f"INSERT INTO {scratch} VALUES (1), (2)")
        cur.execute(f"DELETE FROM {scratch}")
        assert cur.rowcount == 2
        cur.execute(f"TRUNCATE TABLE {scratch}")
        cur.execute(f"DROP TEMPORARY TABLE {scratch}")


# COM_CHANGE_USER -----------------------------------------------------------------------------


def test_change_user_is_refused_and_the_session_stays(guarded: Dbward, db: MysqlDb) -> None:
    table = make_table(db, "chuser")
    cnx = connector_connect(guarded, "app-svc")
    try:
        with pytest.raises(mysql.connector.Error) as caught:
            cnx.cmd_change_user(username="temp-1", password=guarded.token("temp-1"), database="app")
        assert caught.value.errno == SPECIFIC_DENIED, caught.value
        message = caught.value.msg or ""
        assert message.startswith("dbward: does not let a session change its user"), message
        assert "open a new connection" in message, message
        cur = cnx.cursor()
        cur.execute(f"SELECT count(*) FROM {table} WHERE id > %s", (0,))
        assert cur.fetchall() == [(3,)]
        cur.close()
    finally:
        cnx.close()
    # the statement after the refusal still ran as the identity that logged in
    record = record_of(guarded, f"SELECT count(*) FROM {table} WHERE id > 0")
    assert record["identity"] == "app-svc"
    refusal = [s for s in statements(guarded) if s["data"].get("rule") == "protocol:command"]
    assert refusal, "COM_CHANGE_USER's refusal is not in the audit trail"
    assert refusal[-1]["data"]["decision"] == "deny"


# failed logins -------------------------------------------------------------------------------


def _login_failed(server: Dbward, before: int, **wanted: Any) -> dict[str, Any]:
    def probe() -> list[dict[str, Any]]:
        return [
            e
            for e in login_failures(server)[before:]
            if all(
                (e.get(k) if k in ("target", "identity") else e["data"].get(k)) == v
                for k, v in wanted.items()
            )
        ]

    return wait_for(probe, what=f"a login.failed record with {wanted}")[-1]


def test_wrong_token_is_refused_with_1045(guarded: Dbward) -> None:
    before = len(login_failures(guarded))
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(guarded, "app-svc", password="not-a-token")
    code, message = caught.value.args
    assert code == 1045, caught.value
    assert "password authentication is not accepted" in message, message
    event = _login_failed(guarded, before, user="app-svc", target="app")
    assert "password authentication is not accepted" in event["data"]["reason"]

    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(guarded, "app-svc", password=guarded.token("temp-1"))
    code, message = caught.value.args
    assert code == 1045, caught.value
    assert "token was issued to 'temp-1', not 'app-svc'" in message, message
    _login_failed(guarded, before + 1, user="app-svc", target="app")
    assert guarded.token("temp-1") not in guarded.log()


def test_wrong_token_in_the_cli(guarded: Dbward) -> None:
    before = len(login_failures(guarded))
    forged = guarded.token("app-svc")[:-4] + "AAAA"
    result = mysql_cli(guarded, "-e", "SELECT 1", password=forged, check=False)
    assert result.returncode == 1, result
    assert "ERROR 1045 (28000)" in result.stderr, result.stderr
    assert "unknown token" in result.stderr, result.stderr
    _login_failed(guarded, before, user="app-svc")


def test_no_tls_is_refused_with_3159(guarded: Dbward) -> None:
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql_connect(guarded, tls=False)
    code, message = caught.value.args
    assert code == 3159, caught.value
    assert "dbward accepts only TLS connections" in message, message
    result = mysql_cli(guarded, "-e", "SELECT 1", tls=False, check=False)
    assert result.returncode == 1, result
    assert "3159" in result.stderr, result.stderr


def test_no_tls_is_audited_as_a_failed_login(guarded: Dbward) -> None:
    before = len(login_failures(guarded))
    with pytest.raises(pymysql.err.OperationalError):
        pymysql_connect(guarded, "no-tls-user", tls=False)
    event = _login_failed(guarded, before, user="no-tls-user")
    assert "TLS" in event["data"]["reason"], event


def test_unknown_connection_is_refused_with_1049(guarded: Dbward) -> None:
    before = len(login_failures(guarded))
    with pytest.raises(pymysql.err.MySQLError) as caught:
        pymysql_connect(guarded, database="no_such_connection")
    code, message = caught.value.args
    assert code == 1049, caught.value
    assert "no_such_connection" in message, message
    assert "dbward" in message, message
    event = _login_failed(guarded, before, target="no_such_connection")
    assert event["data"]["user"] == "app-svc"


# malformed packets ---------------------------------------------------------------------------


def _read_packet(sock: socket.socket) -> bytes:
    header = _read_exactly(sock, 4)
    length = int.from_bytes(header[:3], "little")
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"dbward closed the connection after {data!r}")
        data += chunk
    return data


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            pytest.fail(f"dbward kept the connection open for {timeout:g} s; got {data!r}")
        if not chunk:
            return data
        data += chunk
        if time.monotonic() > deadline:
            pytest.fail(f"dbward kept sending for {timeout:g} s: {data[:200]!r}")


def _frame(payload: bytes, seq: int = 1) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq,)) + payload


STARTUP_TIMEOUT = 3  # limits.startup_timeout as tests/conftest.py sets it
MAX_FIRST_PACKET = 10_000  # limits.max_startup_packet's default
GARBAGE = [
    pytest.param(_frame(b"\xff"), "bad handshake", id="one byte"),
    pytest.param(_frame(b"\x05\xa2\x08\x00\x01"), "bad handshake", id="short handshake"),
    pytest.param(_frame(b"\xff" * 200), "bad handshake", id="all ones"),
    pytest.param(
        _frame(struct.pack("<IIB23x", 0x000FA68D, 1 << 24, 45) + b"user"),
        "bad handshake",
        id="truncated strings",
    ),
    pytest.param(
        _frame(struct.pack("<IIB23x", 0x000FA68D, 1 << 24, 45) + b"u" * 20_000),
        f"over the {MAX_FIRST_PACKET}",
        id="first packet over the limit",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: dbward\r\n\r\n",
        f"over the {MAX_FIRST_PACKET}",
        id="http",
    ),
]


@pytest.mark.parametrize(("garbage", "cause"), GARBAGE)
def test_malformed_first_packet_ends_only_that_connection(
    guarded: Dbward, db: MysqlDb, garbage: bytes, cause: str
) -> None:
    table = make_table(db, "bad")
    bystander = pymysql_connect(guarded)  # logged in before, and still working after
    try:
        with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
            greeting = _read_packet(sock)
            assert greeting[0] == 10, greeting  # protocol version 10
            sock.sendall(garbage)
            answer = _read_until_closed(sock, timeout=10)
        assert answer, "dbward closed the connection without an error packet"
        payload = answer[4:]
        assert payload[0] == 0xFF, answer  # an ERR packet
        code = int.from_bytes(payload[1:3], "little")
        message = payload[9:].decode("utf-8", "replace")
        assert code == 1043, (code, message)
        assert cause in message, message
        assert_serving(bystander, table, 3)
        with pymysql_connect(guarded) as fresh:
            assert_serving(fresh, table, 3)
    finally:
        bystander.close()
    assert guarded.proc.poll() is None, log_tail(guarded)
    assert "Traceback" not in guarded.log(), log_tail(guarded, 80)


@pytest.mark.parametrize("sent", [b"", _frame(b"\x8d\xa6\x0f\x00" + b"\x00" * 60)[:20]],
                         ids=["silent", "half a packet"])  # fmt: skip
def test_stalled_client_is_told_why_after_the_startup_timeout(guarded: Dbward, sent: bytes) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        _read_packet(sock)
        sock.sendall(sent)
        answer = _read_until_closed(sock, timeout=STARTUP_TIMEOUT + 7)
    elapsed = time.monotonic() - started
    assert STARTUP_TIMEOUT - 0.5 <= elapsed <= STARTUP_TIMEOUT + 3, elapsed
    assert answer, "dbward closed the connection without an error packet"
    payload = answer[4:]
    assert payload[0] == 0xFF, answer
    assert int.from_bytes(payload[1:3], "little") == 1043, answer
    message = payload[9:].decode("utf-8", "replace")
    assert message == f"login did not finish within {STARTUP_TIMEOUT} s", message
