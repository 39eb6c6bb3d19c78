"""Statements held for approval inside a live MySQL session: real dbward, real MariaDB, real
clients (PyMySQL; mysql-connector-python's prepared cursor) and the real approvals API and
``dbward approvals`` command.

A DELETE on connection ``app`` needs one approver from ``dba``. Held, the client simply
waits (MySQL has no message a server may send unasked); approved, the DELETE runs and
the same connection gets its OK with the affected rows; rejected, the client gets an
error naming the rejecter and the reason; unanswered within ``approvals.wait``, the
error gives the request id and the identical statement runs at once once approved.
``KILL QUERY <id>`` from a second connection of the same identity ends a hold.

Two dbwards share the module's database: ``lab`` waits 30 s for approvers (answered long
before that), ``quick`` waits 2 s (where a timeout is the point). Each test makes its own
table and finds its requests by that table's name.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, free_port, stop_dbward
from tests.integration.approvals_helpers import api, cli, people
from tests.integration.helpers import log_tail, unique, wait_for
from tests.integration.mysql_test_helpers import (
    connector_connect,
    error_code,
    error_message,
    pymysql_connect,
    start_server,
    upstream_exec,
    upstream_rows,
)
from tests.mysql_upstream import MysqlDb, mysql_db  # noqa: F401 - the fixture, used by name

POLICY = """\
version: 1
rules:
  - name: deletes-need-approval
    match: {connection: app, command: DELETE}
    action: review
    approvers: {group: [dba], quorum: 1}
audit:
  statement_literals: keep
"""
RULE = "deletes-need-approval"
REQUEST_ID = re.compile(r"apr_[0-9a-f]{12}")
QUICK_WAIT = 2.0
TABLE_ACCESS_DENIED = 1142
QUERY_INTERRUPTED = 1317
NOT_OWNER = 1095
CLIENT_ERRORS = (pymysql.MySQLError, mysql.connector.Error)


@dataclass
class Lab:
    server: Dbward
    db: MysqlDb
    api: str
    tokens: dict[str, str]

    def call(
        self, who: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        return api(self.api, self.tokens[who], method, path, body)

    def requests(self, needle: str) -> list[dict[str, Any]]:
        """Every request (newest first) whose statement holds ``needle``, as the auditor
        (who sees all) lists them."""
        status, body = self.call("audrey", "GET", "/api/v1/approvals?limit=500")
        assert status == 200, body
        return [r for r in body["requests"] if needle in r["statement"]]

    def held(self, needle: str) -> dict[str, Any]:
        """The newest pending request for ``needle``, once there is one."""

        def probe() -> list[dict[str, Any]] | None:
            found = [r for r in self.requests(needle) if r["status"] == "pending"]
            return found or None

        found: list[dict[str, Any]] = wait_for(
            probe, timeout=20, what=f"a pending approval request for {needle!r}"
        )
        return found[0]

    def get(self, request_id: str) -> dict[str, Any]:
        status, body = self.call("audrey", "GET", f"/api/v1/approvals/{request_id}")
        assert status == 200, body
        return dict(body)

    def approve(self, who: str, request_id: str, **vote: Any) -> dict[str, Any]:
        status, body = self.call(who, "POST", f"/api/v1/approvals/{request_id}/approve", vote)
        assert status == 200, body
        return dict(body)

    def reject(self, who: str, request_id: str, reason: str = "") -> dict[str, Any]:
        status, body = self.call(
            who, "POST", f"/api/v1/approvals/{request_id}/reject", {"reason": reason}
        )
        assert status == 200, body
        return dict(body)


def open_lab(tmp: Path, db: MysqlDb, wait: float) -> Lab:
    api_port = free_port()
    server = start_server(
        tmp,
        db,
        policy=POLICY,
        extra_config={
            "api": {"enabled": True, "port": api_port},
            "approvals": {"wait": wait, "poll_interval": 0.1},
        },
    )
    tokens = people(server)  # alice (dev) asks; bob and carol (dba) approve; dave (sales)
    tokens["audrey"] = server.token("audrey", IdentityKind.SERVICE, ("auditors",))
    return Lab(server, db, f"http://127.0.0.1:{api_port}", tokens)


def close_lab(lab: Lab) -> None:
    alive = lab.server.proc.poll() is None
    stop_dbward(lab.server)
    assert alive, f"dbward exited during the tests\n{log_tail(lab.server)}"


@pytest.fixture(scope="module")
def db(mysql_db: MysqlDb) -> MysqlDb:  # noqa: F811 - the fixture imported above
    return mysql_db


@pytest.fixture(scope="module")
def lab(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    opened = open_lab(tmp_path_factory.mktemp("mysql-approvals"), db, wait=30.0)
    yield opened
    close_lab(opened)


@pytest.fixture(scope="module")
def quick(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    opened = open_lab(tmp_path_factory.mktemp("mysql-approvals-quick"), db, wait=QUICK_WAIT)
    yield opened
    close_lab(opened)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Runs a blocking client call in the background while the test answers it."""
    with ThreadPoolExecutor(2) as executor:
        yield executor


def make_table(db: MysqlDb, prefix: str, rows: int = 3) -> str:
    table = unique(prefix)
    values = ", ".join(f"({i}, 'v{i}')" for i in range(1, rows + 1))
    upstream_exec(
        db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40))",
        f"INSERT INTO {table} VALUES {values}",
    )
    return table


def ids(db: MysqlDb, table: str) -> list[int]:
    return [row[0] for row in upstream_rows(db, f"SELECT id FROM {table} ORDER BY id")]


def stays(probe: Callable[[], bool], seconds: float) -> bool:
    """Whether ``probe`` stays true for ``seconds`` (proving that something does not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not probe():
            return False
        time.sleep(0.05)
    return True


def blocked(running: Future[Any]) -> bool:
    return stays(lambda: not running.done(), 1.0)


def approval_events(server: Dbward, request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in server.audit()
        if e["kind"].startswith("approval.") and e["data"].get("request") == request_id
    ]


def said(result: Any) -> str:
    return " ".join((result.stdout + result.stderr).split())


def failure(running: Future[Any], timeout: float = 30) -> BaseException:
    """The error the background client call ended with."""
    with pytest.raises(CLIENT_ERRORS) as caught:
        running.result(timeout)
    return caught.value


# held, then answered ------------------------------------------------------------------------


def test_held_delete_approved_via_api_runs_on_the_same_connection(
    lab: Lab, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    table = make_table(lab.db, "held")
    sql = f"DELETE FROM {table} WHERE id = 1"
    conn = pymysql_connect(lab.server, "alice")
    try:
        thread_id = conn.thread_id()
        cur = conn.cursor()
        running = pool.submit(cur.execute, sql)
        request = lab.held(table)
        assert request["statement"] == sql
        assert request["requester"] == "alice"
        assert request["requester_kind"] == "service"
        assert request["connection"] == "app"
        assert request["environment"] == "staging"
        assert request["rule"] == RULE
        assert request["approver_groups"] == ["dba"]
        assert request["quorum"] == 1
        assert request["parameters"] == []
        assert blocked(running), "the client did not wait for the approval"
        assert ids(lab.db, table) == [1, 2, 3], "the held statement ran"

        # the approvers see it, through the API and the command line
        status, mine = lab.call("bob", "GET", "/api/v1/approvals?status=pending")
        assert status == 200, mine
        assert request["id"] in [r["id"] for r in mine["requests"]]
        listed = cli(lab.api, lab.tokens["bob"], "approvals", "list", "--json", cwd=tmp_path)
        assert listed.returncode == 0, said(listed)
        assert {r["id"]: r["statement"] for r in json.loads(listed.stdout)}[request["id"]] == sql
        shown = cli(lab.api, lab.tokens["bob"], "approvals", "show", request["id"], cwd=tmp_path)
        assert f"statement: {sql}" in said(shown), said(shown)

        lab.approve("bob", request["id"], reason="ticket OPS-1")
        assert running.result(30) == 1  # the OK packet's affected rows
        assert ids(lab.db, table) == [2, 3]
        # the same connection goes on
        assert cur.execute(f"SELECT COUNT(*) FROM {table}") == 1
        assert cur.fetchone() == (2,)
        assert conn.thread_id() == thread_id
    finally:
        conn.close()

    after = lab.get(request["id"])
    assert after["status"] == "executed"
    assert after["executions"] == 1
    assert [(v["approver"], v["approve"], v["via"]) for v in after["votes"]] == [
        ("bob", True, "api")
    ]
    events = approval_events(lab.server, request["id"])
    assert [(e["kind"], e["identity"]) for e in events] == [
        ("approval.requested", "alice"),
        ("approval.approved", "bob"),
        ("approval.executed", "alice"),
    ]
    statements = lab.server.statements()
    [ran] = [s for s in statements if s["data"].get("approval") == request["id"]]
    assert ran["data"]["decision"] == "allow"
    assert ran["data"]["rule"] == RULE
    assert ran["data"]["rows"] == 1
    assert ran["data"]["statement"] == sql
    assert ran["session_id"] == request["session"]
    [count] = [
        s for s in statements if s["data"]["statement"].startswith(f"SELECT COUNT(*) FROM {table}")
    ]
    assert count["session_id"] == ran["session_id"]  # one session from start to end


def test_rejected_with_reason_via_api(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.db, "rejected")
    conn = pymysql_connect(lab.server, "alice")
    try:
        cur = conn.cursor()
        running = pool.submit(cur.execute, f"DELETE FROM {table} WHERE id = 2")
        request = lab.held(table)
        assert blocked(running)
        assert lab.reject("bob", request["id"], "not during the freeze")["status"] == "rejected"
        error = failure(running)
        assert error_code(error) == TABLE_ACCESS_DENIED, repr(error)
        message = error_message(error)
        assert f"approval request {request['id']} was rejected by bob: not during the freeze" in (
            message
        ), message
        assert "the statement did not run" in message, message
        # the connection goes on
        cur.execute("SELECT 42")
        assert cur.fetchone() == (42,)
    finally:
        conn.close()
    assert ids(lab.db, table) == [1, 2, 3]
    assert lab.get(request["id"])["status"] == "rejected"
    [refused] = [s for s in lab.server.statements() if s["data"].get("approval") == request["id"]]
    assert refused["data"]["decision"] == "review"
    assert refused["data"]["rule"] == RULE
    assert "was rejected by bob: not during the freeze" in refused["data"]["reason"]
    assert "lineage" not in refused["data"]


def test_approved_statement_runs_inside_the_clients_transaction(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    """Held and released on the client's own upstream session: it sees the transaction's
    uncommitted work and is undone by its ROLLBACK."""
    table = make_table(lab.db, "intx")
    conn = pymysql_connect(lab.server, "alice", autocommit=False)
    try:
        cur = conn.cursor()
        cur.execute("START TRANSACTION")
        assert cur.execute(f"UPDATE {table} SET v = 'in-tx' WHERE id = 1") == 1
        running = pool.submit(cur.execute, f"DELETE FROM {table} WHERE v = 'in-tx' OR id = 2")
        request = lab.held(table)
        lab.approve("bob", request["id"])
        assert running.result(30) == 2  # it saw the uncommitted UPDATE
        assert ids(lab.db, table) == [1, 2, 3]  # not committed: others still see every row
        conn.rollback()
        cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
        assert cur.fetchall() == ((1, "v1"), (2, "v2"), (3, "v3"))
    finally:
        conn.close()
    assert ids(lab.db, table) == [1, 2, 3]


def test_approved_delete_returning_rows_are_masked(lab: Lab, pool: ThreadPoolExecutor) -> None:
    """MariaDB's DELETE ... RETURNING: once approved, its rows reach the client masked."""
    table = unique("returning")
    upstream_exec(
        lab.db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(64))",
        f"INSERT INTO {table} VALUES (1, 'ada.lovelace@example.org'), (2, 'b@example.net')",
    )
    conn = pymysql_connect(lab.server, "alice")
    try:
        cur = conn.cursor()
        running = pool.submit(cur.execute, f"DELETE FROM {table} WHERE id = 1 RETURNING id, email")
        request = lab.held(table)
        lab.approve("bob", request["id"])
        assert running.result(30) == 1
        assert cur.fetchall() == ((1, "****@example.org"),)
    finally:
        conn.close()
    assert ids(lab.db, table) == [2]
    [ran] = [s for s in lab.server.statements() if s["data"].get("approval") == request["id"]]
    assert ran["data"]["masked"]["entities"] == {"email": 1}, ran


# timeouts and re-runs -------------------------------------------------------------------------


def test_timeout_gives_the_request_id_and_the_approved_rerun_runs_at_once(quick: Lab) -> None:
    table = make_table(quick.db, "late", rows=4)
    sql = f"DELETE FROM {table} WHERE id = 2"
    conn = pymysql_connect(quick.server, "alice")
    try:
        cur = conn.cursor()
        started = time.monotonic()
        with pytest.raises(pymysql.MySQLError) as caught:
            cur.execute(sql)
        waited = time.monotonic() - started
        assert QUICK_WAIT - 0.2 <= waited < QUICK_WAIT + 10, waited
        assert error_code(caught.value) == TABLE_ACCESS_DENIED, repr(caught.value)
        message = error_message(caught.value)
        found = REQUEST_ID.search(message)
        assert found is not None, message
        request_id = found.group()
        assert (
            f"statement held for approval as request {request_id}; no decision within "
            f"{QUICK_WAIT:g} s, so it did not run" in message
        ), message
        assert "once it is approved, run the identical statement again" in message, message
        assert quick.get(request_id)["status"] == "pending"
        assert ids(quick.db, table) == [1, 2, 3, 4]

        assert quick.approve("bob", request_id)["status"] == "approved"
        assert ids(quick.db, table) == [1, 2, 3, 4]  # approving alone runs nothing
        started = time.monotonic()
        assert cur.execute(sql) == 1  # the identical statement, on the same connection
        assert time.monotonic() - started < QUICK_WAIT, "it was held again"
    finally:
        conn.close()
    assert ids(quick.db, table) == [1, 3, 4]
    after = quick.get(request_id)
    assert after["status"] == "executed"
    assert after["executions"] == 1
    assert [r["id"] for r in quick.requests(table)] == [request_id]


# prepared statements --------------------------------------------------------------------------


def test_prepared_statement_held_at_execute_with_its_values_shown(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    table = make_table(lab.db, "prepared")
    upstream_exec(lab.db, f"UPDATE {table} SET v = 'zebra-7781' WHERE id = 2")
    sql = f"DELETE FROM {table} WHERE id = %s AND v = %s"
    shape = f"DELETE FROM {table} WHERE id = ? AND v = ?"
    conn = connector_connect(lab.server, "alice")
    try:
        cur = conn.cursor(prepared=True)
        running = pool.submit(cur.execute, sql, (2, "zebra-7781"))
        request = lab.held(table)
        assert request["statement"] == shape
        assert request["parameters"] == ["2", "zebra-7781"]  # approvers see the values
        assert request["rule"] == RULE
        assert blocked(running)
        assert ids(lab.db, table) == [1, 2, 3]
        lab.approve("carol", request["id"])
        running.result(30)
        assert cur.rowcount == 1
        assert ids(lab.db, table) == [1, 3]

        # other values: not the approved statement; a request of its own
        running = pool.submit(cur.execute, sql, (3, "v3"))
        other = wait_for(
            lambda: [r for r in lab.requests(table) if r["status"] == "pending"],
            timeout=20,
            what="a second request",
        )[0]
        assert other["id"] != request["id"]
        assert other["parameters"] == ["3", "v3"]
        lab.reject("carol", other["id"], "one is enough")
        error = failure(running)
        assert error_code(error) == TABLE_ACCESS_DENIED, repr(error)
        assert "was rejected by carol: one is enough" in error_message(error)

        # the connection goes on, prepared statements too
        reader = conn.cursor(prepared=True)
        reader.execute(f"SELECT id FROM {table} WHERE id > %s", (0,))
        assert [tuple(r) for r in reader.fetchall()] == [(1,), (3,)]
    finally:
        conn.close()
    assert ids(lab.db, table) == [1, 3]
    assert lab.get(request["id"])["status"] == "executed"
    [ran] = [s for s in lab.server.statements() if s["data"].get("approval") == request["id"]]
    assert ran["data"]["protocol"] == "mysql-binary"
    assert ran["data"]["rows"] == 1
    # approvers saw the bound values; the trail never keeps them
    assert "zebra-7781" not in json.dumps([e["data"] for e in lab.server.audit()])


# the rest of dbward while a statement is held -------------------------------------------------


def test_other_sessions_keep_working_while_one_is_held(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.db, "others")
    conn = pymysql_connect(lab.server, "alice")
    try:
        running = pool.submit(conn.cursor().execute, f"DELETE FROM {table} WHERE id = 1")
        request = lab.held(table)
        for user in ("bob", "alice", "dave"):
            started = time.monotonic()
            other = pymysql_connect(lab.server, user)
            try:
                with other.cursor() as cur:
                    cur.execute(f"SELECT COUNT(*) FROM {table}")
                    assert cur.fetchone() == (3,)
            finally:
                other.close()
            assert time.monotonic() - started < 10
        prepared = connector_connect(lab.server, "bob")
        try:
            cur = prepared.cursor(prepared=True)
            cur.execute(f"SELECT v FROM {table} WHERE id = %s", (3,))
            assert [tuple(r) for r in cur.fetchall()] == [("v3",)]
        finally:
            prepared.close()
        assert not running.done()
        assert lab.get(request["id"])["status"] == "pending"
        lab.reject("bob", request["id"], "done looking")
        assert "was rejected by bob: done looking" in error_message(failure(running))
    finally:
        conn.close()
    assert ids(lab.db, table) == [1, 2, 3]


def test_kill_query_from_a_second_connection_ends_the_hold(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    table = make_table(lab.db, "killed")
    sql = f"DELETE FROM {table} WHERE id = 3"
    held = pymysql_connect(lab.server, "alice")
    try:
        cur = held.cursor()
        running = pool.submit(cur.execute, sql)
        request = lab.held(table)
        target = held.thread_id()

        # another identity may not stop alice's statement
        stranger = pymysql_connect(lab.server, "dave")
        try:
            with pytest.raises(pymysql.MySQLError) as caught, stranger.cursor() as other:
                other.execute(f"KILL QUERY {target}")
            assert error_code(caught.value) == NOT_OWNER, repr(caught.value)
        finally:
            stranger.close()
        assert blocked(running)

        second = pymysql_connect(lab.server, "alice")
        try:
            with second.cursor() as other:
                other.execute(f"KILL QUERY {target}")
            started = time.monotonic()
            error = failure(running, timeout=10)
            assert time.monotonic() - started < 5
        finally:
            second.close()
        assert error_code(error) == QUERY_INTERRUPTED, repr(error)
        assert "did not run" in error_message(error), error_message(error)
        assert ids(lab.db, table) == [1, 2, 3]  # the statement did not run
        assert lab.get(request["id"])["status"] == "pending"
        # the held connection goes on; once approved, the identical statement runs at once
        cur.execute("SELECT 7")
        assert cur.fetchone() == (7,)
        lab.approve("bob", request["id"])
        started = time.monotonic()
        assert cur.execute(sql) == 1
        assert time.monotonic() - started < 5
    finally:
        held.close()
    assert ids(lab.db, table) == [1, 2]
    assert lab.get(request["id"])["status"] == "executed"
