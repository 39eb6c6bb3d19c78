"""The audit trail of MySQL sessions: real clients write it, the real ``dbward audit`` command
verifies and questions it.

One dbward (statement literals replaced by placeholders, the default; a checkpoint every
0.2 s; a policy that names a rule for reads of the table and denies DROP TABLE) serves a
small workload: DDL, an INSERT of PII, a masked read whose WHERE names an email, an
UPDATE, a refused DROP, a statement MariaDB rejects and a read tagged with sqlcommenter
comments, through PyMySQL (text protocol), mysql-connector-python (prepared, binary
protocol) and the ``mariadb`` command as an agent. The first tests look at the trail
while dbward runs; the rest after a graceful stop.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, stop_dbward
from tests.integration.helpers import log_tail, run_cli, unique, wait_for
from tests.integration.mysql_test_helpers import (
    connector_connect,
    error_code,
    error_message,
    mariadb_cli,
    pymysql_connect,
    start_server,
)
from tests.mysql_upstream import MysqlDb, mysql_db  # noqa: F401 - the fixture, used by name

INSTANCE = "mysqlaudit"
SERVER_CHAIN = f"{INSTANCE}-0"
EMAIL = "ada.lovelace@example.org"  # the PII written and searched for: never in the trail
OTHER_EMAIL = "grace.hopper@example.net"
MASKED_EMAIL = "****@example.org"
NOTE = "confidential-note-4711"  # a literal in an UPDATE: never in the trail either
POLICY = """\
version: 1
rules:
  - name: reads-of-people
    match: {kind: read, table: "*.people_*"}
    action: allow
  - name: no-drop-table
    match: {command: DROP TABLE}
    action: deny
    message: tables are not dropped through dbward
"""


@dataclass
class Workload:
    server: Dbward
    db: MysqlDb
    table: str
    select_sql: str
    tagged_sql: str
    sessions: list[int]  # the connection ids PyMySQL and mysql-connector were given

    @property
    def qualified(self) -> str:
        return f"{self.db.name}.{self.table}"


@pytest.fixture(scope="module")
def db(mysql_db: MysqlDb) -> MysqlDb:  # noqa: F811 - the fixture imported above
    return mysql_db


@pytest.fixture(scope="module")
def server(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    started = start_server(
        tmp_path_factory.mktemp("mysql-audit"),
        db,
        policy=POLICY,
        statement_literals="placeholders",
        extra_config={"audit": {"instance": INSTANCE, "checkpoint_interval": 0.2}},
    )
    started.token("app-svc", IdentityKind.SERVICE, ("eng",))
    started.token("helper-bot", IdentityKind.AGENT, ("bots",))
    yield started
    stop_dbward(started)


def _expect_error(cur: Any, sql: str, code: int) -> str:
    with pytest.raises(pymysql.MySQLError) as caught:
        cur.execute(sql)
    assert error_code(caught.value) == code, repr(caught.value)
    return error_message(caught.value)


@pytest.fixture(scope="module")
def workload(server: Dbward, db: MysqlDb) -> Workload:
    table = unique("people")
    select_sql = f"SELECT id, email FROM {table} WHERE email = '{EMAIL}'"
    tagged_sql = f"/* model='gpt-x',run_id='r1' */ SELECT count(*) FROM {table}"
    sessions = []
    conn = pymysql_connect(server, "app-svc")
    try:
        sessions.append(conn.thread_id())
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(100), note VARCHAR(100))"
            )
            assert (
                cur.execute(
                    f"INSERT INTO {table} VALUES (1, '{EMAIL}', 'first'), "
                    f"(2, '{OTHER_EMAIL}', 'second')"
                )
                == 2
            )
            cur.execute(select_sql)
            assert cur.fetchall() == ((1, MASKED_EMAIL),)
            assert cur.execute(f"UPDATE {table} SET note = '{NOTE}' WHERE id = 2") == 1
            refused = _expect_error(cur, f"DROP TABLE {table}", 1142)
            assert "no-drop-table" in refused, refused
            assert "tables are not dropped through dbward" in refused, refused
            _expect_error(cur, f"SELECT nosuch FROM {table}", 1054)
            cur.execute(tagged_sql)
            assert cur.fetchall() == ((2,),)
    finally:
        conn.close()

    conn = connector_connect(server, "app-svc")
    try:
        sessions.append(conn.connection_id)
        cur = conn.cursor(prepared=True)
        cur.execute(f"SELECT email FROM {table} WHERE id = %s", (1,))
        assert [tuple(r) for r in cur.fetchall()] == [(MASKED_EMAIL,)]
        cur.close()
    finally:
        conn.close()

    result = mariadb_cli(
        server,
        "helper-bot",
        "--comments",
        "-e",
        f"/* model='gpt-x',run_id='r2' */ SELECT id FROM {table} ORDER BY id",
    )
    assert result.returncode == 0, result.stderr + log_tail(server)
    assert result.stdout.split() == ["id", "1", "2"], result.stdout

    wait_for(
        lambda: len([e for e in server.audit() if e["kind"] == "connection.end"]) == 3,
        timeout=10,
        what="three connection.end records",
    )
    return Workload(server, db, table, select_sql, tagged_sql, sessions)


def records(workload: Workload, identity: str = "app-svc") -> list[dict[str, Any]]:
    return [s for s in workload.server.statements() if s["identity"] == identity]


def squeeze(text: str) -> str:
    return " ".join(text.split()).lower()


def one(workload: Workload, prefix: str, identity: str = "app-svc") -> dict[str, Any]:
    """The one statement record whose text starts with ``prefix`` (spacing and case aside)."""
    found = [
        r
        for r in records(workload, identity)
        if squeeze(r["data"]["statement"]).startswith(squeeze(prefix))
    ]
    assert len(found) == 1, (prefix, [r["data"]["statement"] for r in records(workload, identity)])
    return found[0]


def cli_ok(server: Dbward, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(server, *args)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def trail_bytes(server: Dbward) -> bytes:
    """Everything the trail holds on disk: the journal and the store (with its WAL)."""
    parts = [
        p.read_bytes()
        for p in sorted((server.state_dir / "audit-journal").rglob("*"))
        if p.is_file()
    ]
    store = server.state_dir / "audit.db"
    for path in (store, store.with_name(store.name + "-wal")):
        if path.exists():
            parts.append(path.read_bytes())
    return b"".join(parts)


# 1. while running -----------------------------------------------------------------------


def test_statements_recorded_with_decision_and_rule(workload: Workload) -> None:
    table = workload.table
    expected = {
        f"CREATE TABLE {table}": ("allow", "default"),
        f"INSERT INTO {table}": ("allow", "default"),
        f"SELECT id, email FROM {table}": ("allow", "reads-of-people"),
        f"UPDATE {table}": ("allow", "default"),
        f"DROP TABLE {table}": ("deny", "no-drop-table"),
        f"SELECT nosuch FROM {table}": ("allow", "reads-of-people"),
        f"SELECT email FROM {table}": ("allow", "reads-of-people"),
    }
    for prefix, (decision, rule) in expected.items():
        record = one(workload, prefix)
        assert (record["data"]["decision"], record["data"]["rule"]) == (decision, rule), record
        assert record["target"] == "app", record
        assert record["identity_kind"] == "service", record
    tagged = [r for r in records(workload) if "count(" in r["data"]["statement"].lower()]
    assert [(r["data"]["decision"], r["data"]["rule"]) for r in tagged] == [
        ("allow", "reads-of-people")
    ]
    every = records(workload)
    assert all("decision" in r["data"] and "rule" in r["data"] for r in every), every


def test_refused_statement_records_the_error_the_client_saw(workload: Workload) -> None:
    dropped = one(workload, f"DROP TABLE {workload.table}")["data"]
    assert (dropped["decision"], dropped["rule"]) == ("deny", "no-drop-table"), dropped
    assert "tables are not dropped through dbward" in dropped["reason"], dropped
    assert "lineage" not in dropped, dropped  # refused: nothing was touched
    assert dropped["sqlstate"] == "42000", dropped
    assert dropped["error"].startswith("1142: dbward:"), dropped


def test_failed_statement_records_the_server_error(workload: Workload) -> None:
    failed = one(workload, f"SELECT nosuch FROM {workload.table}")["data"]
    assert failed["sqlstate"] == "42S22", failed
    assert failed["error"].startswith("1054: Unknown column 'nosuch'"), failed
    assert "lineage" not in failed, failed


def test_literals_are_replaced_by_placeholders(workload: Workload) -> None:
    table = workload.table
    select = one(workload, f"SELECT id, email FROM {table}")["data"]["statement"]
    assert EMAIL not in select, select
    assert re.search(r"where\s+email\s*=\s*\S+", select, re.IGNORECASE), select
    insert = one(workload, f"INSERT INTO {table}")["data"]["statement"]
    for literal in (EMAIL, OTHER_EMAIL, "'first'", "'second'"):
        assert literal not in insert, insert
    update = one(workload, f"UPDATE {table}")["data"]["statement"]
    assert NOTE not in update, update
    everything = json.dumps([e["data"] for e in workload.server.audit()])
    for secret in (EMAIL, OTHER_EMAIL, NOTE, "ada.lovelace", "grace.hopper"):
        assert secret not in everything, secret
        assert secret.encode() not in trail_bytes(workload.server), secret


def test_lineage_rows_and_masking_per_statement(workload: Workload) -> None:
    table, qualified = workload.table, workload.qualified
    created = one(workload, f"CREATE TABLE {table}")["data"]
    assert created["lineage"] == {"write": {qualified: ["*"]}}, created
    inserted = one(workload, f"INSERT INTO {table}")["data"]
    assert inserted["rows"] == 2, inserted
    assert inserted["lineage"] == {"write": {qualified: ["*"]}}, inserted
    assert "masked" not in inserted, inserted

    select = one(workload, f"SELECT id, email FROM {table}")["data"]
    assert select["protocol"] == "mysql-text", select
    assert select["rows"] == 1, select
    assert set(select["lineage"]) == {"read"}, select
    assert sorted(select["lineage"]["read"][qualified]) == ["email", "id"], select
    assert select["masked"] == {
        "values": 1,
        "entities": {"email": 1},
        "columns": {f"{qualified}.email": {"email": 1}},
    }, select

    updated = one(workload, f"UPDATE {table}")["data"]
    assert updated["rows"] == 1, updated
    assert updated["lineage"] == {"read": {qualified: ["id"]}, "write": {qualified: ["note"]}}, (
        updated
    )

    prepared = one(workload, f"SELECT email FROM {table}")["data"]
    assert prepared["protocol"] == "mysql-binary", prepared
    assert prepared["rows"] == 1, prepared
    assert sorted(prepared["lineage"]["read"][qualified]) == ["email", "id"], prepared
    assert prepared["masked"]["columns"] == {f"{qualified}.email": {"email": 1}}, prepared

    counted = [r for r in records(workload) if "count(" in r["data"]["statement"].lower()]
    assert [r["data"]["rows"] for r in counted] == [1]
    assert list(counted[0]["data"]["lineage"]["read"]) == [qualified], counted


def test_sqlcommenter_tags_are_agent_metadata(workload: Workload) -> None:
    [tagged] = [r for r in records(workload) if "count(" in r["data"]["statement"].lower()]
    assert tagged["data"]["agent"] == {"model": "gpt-x", "run_id": "r1"}, tagged
    untagged = one(workload, f"SELECT id, email FROM {workload.table}")
    assert "agent" not in untagged["data"], untagged
    [cli] = records(workload, "helper-bot")  # the mariadb command, an agent token
    assert cli["identity_kind"] == "agent", cli
    assert cli["data"]["agent"] == {"model": "gpt-x", "run_id": "r2"}, cli
    assert cli["data"]["rows"] == 2, cli


def test_connection_start_and_end(workload: Workload) -> None:
    server = workload.server
    trail = server.audit()
    starts = [e for e in trail if e["kind"] == "connection.start"]
    ends = [e for e in trail if e["kind"] == "connection.end"]
    assert [e["identity"] for e in starts] == ["app-svc", "app-svc", "helper-bot"], starts
    assert sorted(e["session_id"] for e in ends) == sorted(e["session_id"] for e in starts)
    for start in starts:
        data = start["data"]
        assert data["protocol"] == "mysql", data
        assert data["tls"].startswith("TLSv1."), data
        assert data["environment"] == "staging", data
        assert data["user"] == start["identity"], data
        assert data["upstream"].endswith(f"/{workload.db.name}"), data
        assert "MariaDB" in data["upstream_version"], data
        assert start["target"] == "app", start
    assert "mysql" in starts[2]["data"]["client_application"].lower() or (
        "mariadb" in starts[2]["data"]["client_application"].lower()
    ), starts[2]
    for end in ends:
        session = end["session_id"]
        count = len([s for s in trail if s["kind"] == "statement" and s["session_id"] == session])
        assert end["data"]["statements"] == count, (end, count)
        assert end["data"]["reason"] == "client quit", end
    statements = [s for s in trail if s["kind"] == "statement"]
    assert {s["session_id"] for s in statements} <= {e["session_id"] for e in starts}


def test_failed_logins_are_recorded(workload: Workload) -> None:
    server = workload.server
    with pytest.raises(pymysql.MySQLError) as caught:
        pymysql_connect(server, "app-svc", password="dbw_not-a-real-token")
    assert error_code(caught.value) == 1045, repr(caught.value)
    with pytest.raises(pymysql.MySQLError) as caught:
        pymysql_connect(server, "app-svc", database="nosuch")
    assert error_code(caught.value) == 1049, repr(caught.value)
    assert "nosuch" in error_message(caught.value), repr(caught.value)
    failed = [e for e in server.audit() if e["kind"] == "login.failed"]
    assert [(e["data"]["user"], e["target"]) for e in failed] == [
        ("app-svc", "app"),
        ("app-svc", "nosuch"),
    ], failed
    assert failed[0]["identity"] is None, failed  # not verified
    assert failed[1]["identity"] == "app-svc", failed  # verified; the connection is unknown
    assert "dbw_not-a-real-token" not in json.dumps([e["data"] for e in failed])


# A raw client: the SSLRequest and the TLS ClientHello in one write, as MySQL clients send
# them (the protocol has no answer in between; libmariadb and PyMySQL start TLS at once).
CLIENT_FLAGS = 0x1 | 0x8 | 0x200 | 0x800 | 0x2000 | 0x8000 | 0x80000  # 4.1, SSL, plugin auth


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes: {data!r}")
        data += chunk
    return data


class RawTlsClient:
    def __init__(self, server: Dbward) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = ssl.create_default_context(cafile=str(server.ca_file))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    def greeting(self) -> bytes:
        header = _recv_exactly(self.sock, 4)
        return _recv_exactly(self.sock, int.from_bytes(header[:3], "little"))

    def start_tls(self, *, at_once: bool) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        ssl_request = _packet(1, struct.pack("<IIB", CLIENT_FLAGS, 1 << 24, 45) + bytes(23))
        if at_once:
            self.sock.sendall(ssl_request + self.outgoing.read())  # one write
        else:
            self.sock.sendall(ssl_request)
            time.sleep(0.3)
            self.sock.sendall(self.outgoing.read())
        first = self.sock.recv(65536)
        if not first.startswith(b"\x16\x03"):  # not a TLS handshake record: dbward's answer
            raise AssertionError(f"dbward answered the TLS ClientHello with {first!r}")
        self.incoming.write(first)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("dbward closed the connection")
        self.incoming.write(data)

    def send(self, seq: int, payload: bytes) -> None:
        self.tls.write(_packet(seq, payload))
        self._flush()

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            try:
                data += self.tls.read(size - len(data))
            except ssl.SSLWantReadError:
                self._fill()
        return data

    def receive(self) -> bytes:
        header = self._read(4)
        return self._read(int.from_bytes(header[:3], "little"))

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    "at_once", [pytest.param(False, id="hello-after-a-pause"), pytest.param(True, id="at-once")]
)
def test_client_hello_right_behind_the_ssl_request(workload: Workload, at_once: bool) -> None:
    """The client's TLS ClientHello arriving in the same read as its SSLRequest is the start
    of TLS, not unencrypted data to refuse."""
    server = workload.server
    token = server.token("tls-probe", IdentityKind.SERVICE, ("eng",))
    client = RawTlsClient(server)
    try:
        assert client.greeting()[0] == 10  # protocol version 10
        client.start_tls(at_once=at_once)
        login = (
            struct.pack("<IIB", CLIENT_FLAGS, 1 << 24, 45)
            + bytes(23)
            + b"tls-probe\0"
            + bytes([len(token) + 1])
            + token.encode()
            + b"\0app\0mysql_clear_password\0"
        )
        client.send(2, login)
        answer = client.receive()
        assert answer[:1] == b"\x00", answer  # OK: logged in
        client.send(0, b"\x03SELECT 1")
        assert client.receive() == b"\x01"  # one column
        client.send(0, b"\x01")  # COM_QUIT
    finally:
        client.close()


def test_verify_while_running(workload: Workload) -> None:
    server = workload.server
    assert server.proc.poll() is None
    result = cli_ok(server, "audit", "verify")
    said = " ".join((result.stdout + result.stderr).split())
    assert "verified" in said, said
    assert "TAMPERED" not in said, said
    report = json.loads(cli_ok(server, "audit", "verify", "--json").stdout)
    assert report["ok"] is True, report
    assert report["first_problem"] is None, report
    chains = {c["chain"]: c for c in report["chains"]}
    assert SERVER_CHAIN in chains, report


def test_search_by_agent_run(workload: Workload) -> None:
    wait_for(
        lambda: (
            '"r1"' in run_cli(workload.server, "audit", "search", "--agent", "r1", "--json").stdout
        ),
        timeout=15,
        what="the tagged statement in the store",
    )
    found = [
        json.loads(line)
        for line in cli_ok(
            workload.server, "audit", "search", "--agent", "r1", "--json"
        ).stdout.splitlines()
        if line.strip()
    ]
    assert [(r["kind"], r["identity"]) for r in found] == [("statement", "app-svc")], found
    assert found[0]["data"]["agent"]["model"] == "gpt-x", found


# 2. after a graceful stop ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped(workload: Workload) -> Workload:
    server = workload.server
    alive = server.proc.poll() is None
    stop_dbward(server)
    assert alive, f"dbward exited during the tests\n{log_tail(server)}"
    assert server.proc.returncode == 0, log_tail(server)
    return workload


def test_verify_after_a_graceful_stop(stopped: Workload) -> None:
    server = stopped.server
    report = json.loads(cli_ok(server, "audit", "verify", "--json").stdout)
    assert report["ok"] is True, report
    assert report["records"] == len(server.audit()), report
    chain = {c["chain"]: c for c in report["chains"]}[SERVER_CHAIN]
    assert chain["signed_seq"] == chain["last_seq"], report  # the shutdown checkpoint
    assert chain["unsigned"] == 0, report


def test_verify_finds_a_changed_mysql_record(stopped: Workload, tmp_path: Path) -> None:
    """The trail of a MySQL session is chained like any other: change one byte of the
    masked SELECT's record and ``verify`` fails (on a copy of the state directory)."""
    import shutil

    server = stopped.server
    copy = tmp_path / "copy"
    shutil.copytree(server.state_dir, copy / "state")
    config = server.config_path.read_text().replace(str(server.state_dir), str(copy / "state"))
    (copy / "dbward.yaml").write_text(config)
    shutil.copy2(server.config_path.parent / "policy.yaml", copy / "policy.yaml")
    db = sqlite3.connect(copy / "state" / "audit.db")
    try:
        changed = db.execute(
            "UPDATE records SET line = replace(line, '\"rows\":1', '\"rows\":9') "
            "WHERE chain = ? AND line LIKE ?",
            (SERVER_CHAIN, f"%SELECT id, email FROM {stopped.table}%"),
        ).rowcount
        db.commit()
    finally:
        db.close()
    assert changed == 1
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dbward",
            "audit",
            "verify",
            "--json",
            "--config",
            str(copy / "dbward.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=copy,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["first_problem"]["kind"] == "modified", report


def touched(server: Dbward, command: str, name: str) -> dict[tuple[str, str], Any]:
    result = cli_ok(server, "audit", command, name, "--json")
    rows = json.loads(result.stdout)
    keyed = {(row["key"], row["access"]): row for row in rows}
    assert len(keyed) == len(rows), rows
    return keyed


def test_who_touched_the_table(stopped: Workload) -> None:
    rows = touched(stopped.server, "who-touched", stopped.qualified)
    assert set(rows) == {("app-svc", "read"), ("app-svc", "write"), ("helper-bot", "read")}, rows
    # written: CREATE TABLE, INSERT, UPDATE; read: the SELECT, the UPDATE's WHERE, the
    # tagged count(*), the prepared SELECT (the refused DROP and the failed SELECT touched
    # nothing)
    assert rows[("app-svc", "write")]["statements"] == 3, rows
    assert rows[("app-svc", "read")]["statements"] == 4, rows
    assert rows[("app-svc", "read")]["masked"] == 2, rows
    assert rows[("helper-bot", "read")]["identity_kind"] == "agent", rows
    assert rows[("helper-bot", "read")]["rows"] == 2, rows
    # the table's name alone finds the same
    assert touched(stopped.server, "who-touched", stopped.table) == rows


def test_who_touched_a_column(stopped: Workload) -> None:
    rows = touched(stopped.server, "who-touched", f"{stopped.qualified}.email")
    read = rows[("app-svc", "read")]
    assert (read["statements"], read["rows"], read["masked"]) == (2, 2, 2), rows
    assert rows[("app-svc", "write")]["statements"] == 2, rows  # CREATE and INSERT: every column


def test_touched_by_the_service(stopped: Workload) -> None:
    rows = touched(stopped.server, "touched-by", "app-svc")
    assert set(rows) == {(stopped.qualified, "read"), (stopped.qualified, "write")}, rows
    assert {"email", "id"} <= set(rows[(stopped.qualified, "read")]["columns"]), rows
    assert {"*", "note"} <= set(rows[(stopped.qualified, "write")]["columns"]), rows
