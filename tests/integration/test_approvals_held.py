"""Statements held for approval inside the client's live connection: real dbward, real
PostgreSQL, real clients (psql, psycopg, asyncpg) and the real ``dbward approvals`` command.

A held statement waits while approvers answer through the API or the command line; once
approved it runs and the same client gets its rows, once rejected the client gets 42501
naming who rejected it and why, and when no one answers in time the client is told the
request id: the identical statement (same text, parameters, identity and connection) runs
at once when it is run again after the approval.

Two dbwards share the module's database: ``lab`` waits 30 s for approvers (answered long
before that), ``quick`` waits 2 s (where a timeout is the point). Each test makes its own
table, and finds its requests by that table's name.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, stop_dbward
from tests.integration.approvals_helpers import (
    REVIEW_POLICY,
    api,
    cli,
    people,
    start_approvals_dbward,
)
from tests.integration.helpers import log_tail, psql, run_cli, wait_for
from tests.integration.policy_helpers import aconnect, connect, ids, make_table, upstream_exec

# The helper's policy (DELETE: one dba; TRUNCATE: two dba with reasons) and an UPDATE rule
# that developers may approve too: alice (dev) is then an approver of her own request.
POLICY = REVIEW_POLICY.replace(
    "audit:",
    """\
  - name: updates-peer-review
    match: {command: UPDATE}
    action: review
    approvers: {group: [dba, dev], quorum: 1}
  - name: inserts-expire-fast
    match: {command: INSERT}
    action: review
    approvers: {group: [dba], quorum: 1, expires: 3}
audit:""",
)
REQUEST_ID = re.compile(r"apr_[0-9a-f]{12}")
QUICK_WAIT = 2.0
DENIED = "42501"


@dataclass
class Lab:
    server: Dbward
    api: str
    tokens: dict[str, str]

    def call(
        self, who: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        return api(self.api, self.tokens[who], method, path, body)

    def requests(self, needle: str) -> list[dict[str, Any]]:
        """Every request (any status, newest first) whose statement contains ``needle``,
        as the auditor (who sees all) lists them."""
        status, body = self.call("audrey", "GET", "/api/v1/approvals?limit=500")
        assert status == 200, body
        return [r for r in body["requests"] if needle in r["statement"]]

    def held(self, needle: str, *, count: int = 1) -> dict[str, Any]:
        """The newest pending request for ``needle``, once ``count`` of them are pending."""

        def probe() -> list[dict[str, Any]] | None:
            found = [r for r in self.requests(needle) if r["status"] == "pending"]
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = wait_for(
            probe, timeout=20, what=f"a pending approval request for {needle!r}"
        )
        return found[0]

    def get(self, request_id: str, who: str = "audrey") -> dict[str, Any]:
        status, body = self.call(who, "GET", f"/api/v1/approvals/{request_id}")
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


def open_lab(tmp: Path, upstream: UpstreamDb, wait: float) -> Lab:
    server, base = start_approvals_dbward(tmp, upstream, policy=POLICY, wait=wait)
    tokens = people(server)
    tokens["audrey"] = server.token("audrey", IdentityKind.SERVICE, ("auditors",))
    return Lab(server, base, tokens)


def close_lab(lab: Lab) -> None:
    alive = lab.server.proc.poll() is None
    stop_dbward(lab.server)
    assert alive, f"dbward exited during the tests\n{log_tail(lab.server)}"


@pytest.fixture(scope="module")
def lab(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    opened = open_lab(tmp_path_factory.mktemp("approvals"), upstream_db, wait=30.0)
    yield opened
    close_lab(opened)


@pytest.fixture(scope="module")
def quick(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    opened = open_lab(tmp_path_factory.mktemp("approvals-quick"), upstream_db, wait=QUICK_WAIT)
    yield opened
    close_lab(opened)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Runs a blocking client call in the background while the test answers it."""
    with ThreadPoolExecutor(2) as executor:
        yield executor


@contextmanager
def psql_running(server: Dbward, user: str, sql: str) -> Iterator[subprocess.Popen[str]]:
    """``psql -c sql`` started in the background; killed if still running at the end."""
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env=server.env(user),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """psql's stdout and stderr, once it ends."""
    out, err = proc.communicate(timeout=timeout)
    return out, err


def squeeze(text: str) -> str:
    return " ".join(text.split())


def said(result: subprocess.CompletedProcess[str]) -> str:
    return squeeze(result.stdout + result.stderr)


def approvals_cli(
    lab: Lab, who: str, *args: str, cwd: Path, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    result = cli(lab.api, lab.tokens[who], "approvals", *args, cwd=cwd)
    if ok:
        assert result.returncode == 0, f"{args}: {result.returncode}\n{said(result)}"
    return result


def error_text(exc: psycopg.Error) -> str:
    diag = exc.diag
    return f"{diag.message_primary or ''} {diag.message_hint or ''}"


def held_notice(request_id: str) -> str:
    return f"dbward: this statement is held for approval (request {request_id})"


def approval_events(server: Dbward, request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in server.audit()
        if e["kind"].startswith("approval.") and e["data"].get("request") == request_id
    ]


# held, then answered -------------------------------------------------------------------------


def test_psql_held_then_approved_via_cli(lab: Lab, tmp_path: Path) -> None:
    table = make_table(lab.server, "held")
    sql = f"DELETE FROM {table} WHERE id = 1 RETURNING id, v"
    with psql_running(lab.server, "alice", sql) as proc:
        request = lab.held(table)
        assert request["statement"] == sql
        assert request["requester"] == "alice"
        assert request["requester_kind"] == "service"
        assert request["connection"] == "app"
        assert request["environment"] == "staging"
        assert request["rule"] == "deletes-need-approval"
        assert request["approver_groups"] == ["dba"]
        assert request["quorum"] == 1
        assert request["parameters"] == []
        assert request["votes"] == []
        assert proc.poll() is None, "psql finished while its statement was held"
        assert ids(lab.server, table) == [1, 2, 3], "the held statement ran"

        approved = approvals_cli(lab, "bob", "approve", request["id"], cwd=tmp_path)
        assert f"approved {request['id']}: 1 of 1 approval(s); it is now approved" in said(approved)
        out, err = finish(proc)
    assert proc.returncode == 0, err
    # the rows reach the same psql process that sent the statement
    assert re.search(r"^\s*1 \| v1\s*$", out, re.MULTILINE), out
    assert "(1 row)" in out
    assert f"NOTICE:  {held_notice(request['id'])}" in err
    assert ids(lab.server, table) == [2, 3]
    after = lab.get(request["id"])
    assert after["status"] == "executed"
    assert after["executions"] == 1
    assert [(v["approver"], v["approve"], v["via"]) for v in after["votes"]] == [
        ("bob", True, "api")
    ]


def test_rejected_with_reason_via_api(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "rejected")
    notices: list[str] = []
    with connect(lab.server, "alice", autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        running = pool.submit(conn.execute, f"DELETE FROM {table} WHERE id = 2")
        request = lab.held(table)
        # the client is told while it waits, not afterwards
        wait_for(lambda: notices, what="the NOTICE about the hold")
        assert notices == [
            f"{held_notice(request['id'])}; waiting up to 30 s for 1 approver(s) from dba"
        ]
        assert not running.done()

        rejected = lab.reject("bob", request["id"], "not during the freeze")
        assert rejected["status"] == "rejected"
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            running.result(30)
        diag = caught.value.diag
        assert diag.sqlstate == DENIED
        assert f"approval request {request['id']} was rejected by bob: not during the freeze" in (
            diag.message_primary or ""
        ), diag.message_primary
        assert "the statement did not run" in error_text(caught.value)
        # the connection goes on
        assert conn.execute("SELECT 42").fetchone() == (42,)
    assert ids(lab.server, table) == [1, 2, 3]
    assert lab.get(request["id"])["status"] == "rejected"


def test_rejected_in_psql(lab: Lab) -> None:
    table = make_table(lab.server, "rejpsql")
    with psql_running(lab.server, "alice", f"DELETE FROM {table} WHERE id = 3") as proc:
        request = lab.held(table)
        lab.reject("carol", request["id"])  # no reason needed by this rule
        _, err = finish(proc)
    assert proc.returncode != 0
    assert f"approval request {request['id']} was rejected by carol (no reason given)" in err
    assert ids(lab.server, table) == [1, 2, 3]


# timeouts and re-runs ------------------------------------------------------------------------


def held_until_timeout(lab: Lab, conn: psycopg.Connection[Any], sql: str, *args: Any) -> str:
    """Run ``sql``; it must fail after the hold's wait; returns its request id."""
    started = time.monotonic()
    with pytest.raises(errors.InsufficientPrivilege) as caught:
        conn.execute(sql, *args)
    waited = time.monotonic() - started
    assert QUICK_WAIT - 0.2 <= waited < QUICK_WAIT + 10, waited
    assert caught.value.diag.sqlstate == DENIED
    text = error_text(caught.value)
    found = REQUEST_ID.search(text)
    assert found is not None, text
    request_id = found.group()
    assert (
        f"statement held for approval as request {request_id}; no decision within "
        f"{QUICK_WAIT:g} s, so it did not run" in text
    ), text
    assert "once it is approved, run the identical statement again: it will run at once" in text
    return request_id


def runs_at_once(
    conn: psycopg.Connection[Any], sql: str, *args: Any, **kwargs: Any
) -> psycopg.Cursor[Any]:
    started = time.monotonic()
    cursor = conn.execute(sql, *args, **kwargs)
    assert time.monotonic() - started < QUICK_WAIT, "it was held again"
    return cursor


def test_timeout_then_approved_rerun_runs_at_once(quick: Lab) -> None:
    table = make_table(quick.server, "late", rows=4)
    sql = f"DELETE FROM {table} WHERE id = 2"
    with connect(quick.server, "alice", autocommit=True) as conn:
        request_id = held_until_timeout(quick, conn, sql)
        assert quick.get(request_id)["status"] == "pending"  # no decision, still open
        # the identical statement again, still unanswered: it joins the same request
        assert held_until_timeout(quick, conn, sql) == request_id
        assert [r["id"] for r in quick.requests(table)] == [request_id]
        assert conn.execute("SELECT 1").fetchone() == (1,)

    assert quick.approve("bob", request_id)["status"] == "approved"
    assert ids(quick.server, table) == [1, 2, 3, 4]  # approving alone runs nothing

    # the same identity and connection, a new session: runs at once, no new request
    with connect(quick.server, "alice", autocommit=True) as conn:
        assert runs_at_once(conn, sql).rowcount == 1
    assert ids(quick.server, table) == [1, 3, 4]
    after = quick.get(request_id)
    assert after["status"] == "executed"
    assert after["executions"] == 1
    assert [r["id"] for r in quick.requests(table)] == [request_id]


def test_an_approval_covers_only_the_identical_statement(quick: Lab) -> None:
    table = make_table(quick.server, "ident", rows=4)
    sql = f"DELETE FROM {table} WHERE id = 1"
    with connect(quick.server, "alice", autocommit=True) as conn:
        first = held_until_timeout(quick, conn, sql)
    quick.approve("bob", first)
    with connect(quick.server, "alice", autocommit=True) as conn:
        # another literal: a request of its own
        other = held_until_timeout(quick, conn, f"DELETE FROM {table} WHERE id = 3")
        assert other != first
        # the same text with other spacing is not the identical statement
        spaced = held_until_timeout(quick, conn, f"DELETE FROM {table}  WHERE id = 1")
        assert spaced not in (first, other)
    # the same text from another identity: not alice's approval
    with connect(quick.server, "carol", autocommit=True) as conn:
        carols = held_until_timeout(quick, conn, sql)
        assert carols not in (first, other, spaced)
    assert quick.get(carols)["requester"] == "carol"
    assert ids(quick.server, table) == [1, 2, 3, 4]
    assert quick.get(first)["status"] == "approved"  # still waiting for alice
    with connect(quick.server, "alice", autocommit=True) as conn:
        assert runs_at_once(conn, sql).rowcount == 1
    assert ids(quick.server, table) == [2, 3, 4]
    assert quick.get(first)["status"] == "executed"
    assert {r["id"] for r in quick.requests(table)} == {first, other, spaced, carols}


def test_rerun_through_the_other_protocol_is_identical(quick: Lab) -> None:
    table = make_table(quick.server, "proto", rows=3)
    sql = f"DELETE FROM {table} WHERE id = 1"
    with connect(quick.server, "alice", autocommit=True) as conn:
        request_id = held_until_timeout(quick, conn, sql)  # a simple Query (no parameters)
    quick.approve("bob", request_id)
    with connect(quick.server, "alice", autocommit=True) as conn:
        # Parse/Bind/Execute, no parameters (held again today: no decision within 2 s)
        cursor = runs_at_once(conn, sql, None, prepare=True)
        assert cursor.rowcount == 1
    assert ids(quick.server, table) == [2, 3]


# quorum, who may vote ------------------------------------------------------------------------


def test_quorum_of_two_with_reasons(lab: Lab, tmp_path: Path) -> None:
    table = make_table(lab.server, "quorum")
    with psql_running(lab.server, "alice", f"TRUNCATE {table}") as proc:
        request = lab.held(table)
        assert request["quorum"] == 2
        assert request["reason_required"] is True
        assert request["rule"] == "truncate-needs-two"

        status, body = lab.call("bob", "POST", f"/api/v1/approvals/{request['id']}/approve", {})
        assert status == 409
        assert f"request {request['id']} needs a reason with each approval" in body["detail"]

        one = lab.approve("bob", request["id"], reason="ticket 77")
        assert one["status"] == "pending"
        assert [v["approver"] for v in one["votes"]] == ["bob"]

        status, body = lab.call(
            "bob", "POST", f"/api/v1/approvals/{request['id']}/approve", {"reason": "again"}
        )
        assert status == 409
        assert "bob has already voted on this request" in body["detail"]

        # one approval of two keeps it held (the CLI takes its time: the poller looks meanwhile)
        shown = approvals_cli(lab, "carol", "show", request["id"], cwd=tmp_path)
        assert "bob approved via api: ticket 77" in said(shown)
        assert proc.poll() is None
        assert ids(lab.server, table) == [1, 2, 3]

        approvals_cli(lab, "carol", "approve", request["id"], "--reason", "ok'd", cwd=tmp_path)
        out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "TRUNCATE TABLE" in out
    assert ids(lab.server, table) == []
    after = lab.get(request["id"])
    assert after["status"] == "executed"
    assert [(v["approver"], v["reason"]) for v in after["votes"]] == [
        ("bob", "ticket 77"),
        ("carol", "ok'd"),
    ]


def test_self_approval_and_outsiders_are_refused(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "selfie")
    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(conn.execute, f"UPDATE {table} SET v = 'x' WHERE id = 1")
        request = lab.held(table)
        assert request["approver_groups"] == ["dba", "dev"]  # alice is in dev
        path = f"/api/v1/approvals/{request['id']}/approve"

        status, body = lab.call("alice", "POST", path, {"reason": "mine"})
        assert (status, body["detail"]) == (409, "no one may approve their own request")

        # dave is in no approver group: he cannot even see it
        status, body = lab.call("dave", "POST", path, {})
        assert status == 404, body
        # the auditor sees every request, but is not an approver of this one
        status, body = lab.call("audrey", "POST", path, {})
        assert status == 409
        assert body["detail"] == "audrey is not in an approver group of this request (dba, dev)"
        status, body = lab.call("audrey", "POST", f"/api/v1/approvals/{request['id']}/reject", {})
        assert status == 409

        assert lab.get(request["id"])["votes"] == []
        assert not running.done()
        lab.approve("bob", request["id"])
        assert running.result(30).rowcount == 1
    assert upstream_value(lab.server, table, 1) == "x"


def upstream_value(server: Dbward, table: str, key: int) -> str:
    with psycopg.connect(server.upstream.dsn()) as conn:
        row = conn.execute(f"SELECT v FROM {table} WHERE id = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


def test_api_visibility(lab: Lab) -> None:
    table = make_table(lab.server, "seen")
    with psql_running(lab.server, "alice", f"DELETE FROM {table} WHERE id = 1") as proc:
        request = lab.held(table)
        path = f"/api/v1/approvals/{request['id']}"
        status, body = lab.call("dave", "GET", path)
        assert status == 404
        assert body["detail"] == f"there is no approval request {request['id']!r} you can see"
        for query in ("", "?status=pending"):
            status, body = lab.call("dave", "GET", "/api/v1/approvals" + query)
            assert status == 200
            assert request["id"] not in [r["id"] for r in body["requests"]]
        # the requester, an approver, and the auditor see it
        for who in ("alice", "bob", "audrey"):
            assert lab.get(request["id"], who)["id"] == request["id"]
            status, body = lab.call(who, "GET", "/api/v1/approvals?status=pending&kind=statement")
            assert status == 200
            assert request["id"] in [r["id"] for r in body["requests"]], who
        status, body = lab.call("audrey", "GET", "/api/v1/approvals?kind=access")
        assert status == 200
        assert request["id"] not in [r["id"] for r in body["requests"]]
        status, body = lab.call("audrey", "GET", "/api/v1/me")
        assert body["roles"] == ["auditor", "user"]  # everyone signed in is a user
        lab.reject("bob", request["id"], "cleanup")
        finish(proc)


# time windows --------------------------------------------------------------------------------


def test_window_lets_the_identical_statement_run_again(
    lab: Lab, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    table = make_table(lab.server, "window", rows=4)
    # identical text, a different row each time: the largest id left
    sql = f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})"
    notices: list[str] = []
    with connect(lab.server, "alice", autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        running = pool.submit(conn.execute, sql)
        request = lab.held(table)
        approvals_cli(lab, "bob", "approve", request["id"], "--window", "1m", cwd=tmp_path)
        assert running.result(30).rowcount == 1
        approved = lab.get(request["id"])
        assert approved["status"] == "approved"
        assert approved["votes"][0]["window"] == 60
        assert approved["approved_until"] == pytest.approx(approved["votes"][0]["at"] + 60)
        for _ in range(3):
            started = time.monotonic()
            assert conn.execute(sql).rowcount == 1
            assert time.monotonic() - started < 5
    assert ids(lab.server, table) == []
    assert len(notices) == 1  # held once only
    after = lab.get(request["id"])
    assert after["status"] == "approved"
    assert after["executions"] == 4
    assert [r["id"] for r in lab.requests(table)] == [request["id"]]


def test_window_longer_than_max_window_is_refused(lab: Lab) -> None:
    table = make_table(lab.server, "toolong")
    with psql_running(lab.server, "alice", f"DELETE FROM {table} WHERE id = 1") as proc:
        request = lab.held(table)
        path = f"/api/v1/approvals/{request['id']}/approve"
        status, body = lab.call("bob", "POST", path, {"window": 8 * 3600 + 1})
        assert status == 409
        assert body["detail"] == "the window must be between 0 and 28800 seconds"
        status, _ = lab.call("bob", "POST", path, {"window": 0})
        assert status == 422
        assert lab.get(request["id"])["votes"] == []
        lab.reject("bob", request["id"])
        finish(proc)


# the extended protocol -----------------------------------------------------------------------


def test_psycopg_parameters_are_part_of_the_request(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "params", rows=6)
    sql = f"DELETE FROM {table} WHERE id = %t RETURNING id"  # %t: sent as text
    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(conn.execute, sql, (5,))
        request = lab.held(table)
        assert request["statement"] == f"DELETE FROM {table} WHERE id = $1 RETURNING id"
        assert request["parameters"] == ["5"]
        lab.approve("bob", request["id"])
        assert running.result(30).fetchall() == [(5,)]
        assert ids(lab.server, table) == [1, 2, 3, 4, 6]

        # the same statement with another value: a new request, shown with its value
        running = pool.submit(conn.execute, sql, (6,))
        again = lab.held(table)
        assert again["id"] != request["id"]
        assert again["parameters"] == ["6"]
        lab.reject("carol", again["id"], "not that one")
        with pytest.raises(errors.InsufficientPrivilege, match="not that one"):
            running.result(30)
        # and the first value again: its one-time approval is used up
        running = pool.submit(conn.execute, sql, (5,))
        third = lab.held(table)
        assert third["id"] not in (request["id"], again["id"])
        assert third["parameters"] == ["5"]
        lab.reject("carol", third["id"])
        with pytest.raises(errors.InsufficientPrivilege):
            running.result(30)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert ids(lab.server, table) == [1, 2, 3, 4, 6]


def test_binary_parameters_are_shown_as_values(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "binparam", rows=6)
    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(conn.execute, f"DELETE FROM {table} WHERE id = %s", (5,))
        request = lab.held(table)
        try:
            assert request["parameters"] == ["5"]
        finally:
            lab.reject("bob", request["id"])
            with pytest.raises(errors.InsufficientPrivilege):
                running.result(30)


def test_asyncpg_prepare_passes_and_execution_is_held(lab: Lab) -> None:
    table = make_table(lab.server, "apg", rows=8)

    async def scenario() -> None:
        conn = await aconnect(lab.server, "alice")
        try:
            statement = await asyncio.wait_for(
                conn.prepare(f"DELETE FROM {table} WHERE id = $1 RETURNING id"), 10
            )
            assert await asyncio.to_thread(lab.requests, table) == []  # preparing runs nothing
            fetching = asyncio.ensure_future(statement.fetch(7))
            request = await asyncio.to_thread(lab.held, table)
            assert request["statement"] == f"DELETE FROM {table} WHERE id = $1 RETURNING id"
            # asyncpg sends an int4 in binary: shown as its value, or at least as its bytes
            assert request["parameters"] in (["7"], ["<binary 4 bytes: 00000007>"])
            assert not fetching.done()
            await asyncio.to_thread(lab.approve, "bob", request["id"])
            rows = await asyncio.wait_for(fetching, 30)
            assert [r["id"] for r in rows] == [7]
            assert await conn.fetchval("SELECT count(*) FROM " + table) == 7
        finally:
            await conn.close()

    asyncio.run(scenario())
    assert ids(lab.server, table) == [1, 2, 3, 4, 5, 6, 8]


# order around a held statement ---------------------------------------------------------------


def test_pipeline_keeps_order_around_the_held_statement(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "pipe", rows=9)

    def work(conn: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
        with conn.pipeline():
            cursors = [
                conn.execute("SELECT 'before'"),
                conn.execute(f"SELECT count(*) FROM {table}"),
                conn.execute(f"DELETE FROM {table} WHERE id = %t RETURNING id", (9,)),
                conn.execute(f"SELECT count(*) FROM {table}"),
                conn.execute("SELECT 'after'"),
            ]
        return [c.fetchall() for c in cursors]

    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(work, conn)
        request = lab.held(table)
        assert request["parameters"] == ["9"]
        lab.approve("bob", request["id"])
        assert running.result(30) == [[("before",)], [(9,)], [(9,)], [(8,)], [("after",)]]
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_multi_statement_query_is_held_whole(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "multi", rows=8)
    sql = (
        f"SELECT 'before'; DELETE FROM {table} WHERE id = 8 RETURNING id; "
        f"SELECT count(*) FROM {table}"
    )

    def results(conn: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
        cursor = conn.execute(sql)
        found = [cursor.fetchall()]
        while cursor.nextset():
            found.append(cursor.fetchall())
        return found

    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(results, conn)
        request = lab.held(table)
        assert request["statement"] == sql  # approvers see everything that runs
        assert ids(lab.server, table) == list(range(1, 9))
        lab.approve("bob", request["id"])
        assert running.result(30) == [[("before",)], [(8,)], [(7,)]]


# the rest of dbward while a statement is held ------------------------------------------------


def test_other_sessions_keep_working_while_one_is_held(lab: Lab) -> None:
    table = make_table(lab.server, "others")
    with psql_running(lab.server, "alice", f"DELETE FROM {table} WHERE id = 1") as proc:
        request = lab.held(table)
        for user in ("bob", "alice", "dave"):
            started = time.monotonic()
            result = psql(lab.server, "-At", "-c", f"SELECT count(*) FROM {table}", user=user)
            assert result.stdout.strip() == "3"
            assert time.monotonic() - started < 10
        assert proc.poll() is None
        assert lab.get(request["id"])["status"] == "pending"
        lab.reject("bob", request["id"], "done looking")
        _, err = finish(proc)
    assert "was rejected by bob: done looking" in err


def hold_then_disconnect(lab: Lab, table: str, sql: str) -> dict[str, Any]:
    """Hold ``sql`` from psql, then kill psql; returns the request."""
    with psql_running(lab.server, "alice", sql) as proc:
        request = lab.held(table)
        proc.kill()
        proc.wait(10)

    def ended() -> bool:
        return any(
            e["kind"] == "connection.end" and e["session_id"] == request["session"]
            for e in lab.server.audit()
        )

    wait_for(ended, timeout=10, what="the held session's end")
    return request


def test_client_disconnecting_while_held(lab: Lab) -> None:
    table = make_table(lab.server, "gone")
    request = hold_then_disconnect(lab, table, f"DELETE FROM {table} WHERE id = 1")
    # dbward still serves, the request stays pending, nothing ran
    assert psql(lab.server, "-At", "-c", "SELECT 7").stdout.strip() == "7"
    assert lab.get(request["id"])["status"] == "pending"
    assert ids(lab.server, table) == [1, 2, 3]
    assert lab.server.proc.poll() is None


def holds(probe: Callable[[], bool], seconds: float) -> bool:
    """Whether ``probe`` stays true for ``seconds`` (proving something does not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not probe():
            return False
        time.sleep(0.05)
    return True


def test_approval_after_the_client_left_is_not_used_up(lab: Lab) -> None:
    table = make_table(lab.server, "left")
    sql = f"DELETE FROM {table} WHERE id = 2"
    request = hold_then_disconnect(lab, table, sql)
    lab.approve("bob", request["id"])
    # ten polls of the departed session's hold, had it still been waiting
    assert holds(lambda: lab.get(request["id"])["status"] == "approved", 1.0), lab.get(
        request["id"]
    )
    assert ids(lab.server, table) == [1, 2, 3]  # nothing ran for the departed client
    executed = [
        e for e in approval_events(lab.server, request["id"]) if e["kind"] == "approval.executed"
    ]
    assert executed == []
    # the requester, back, runs the identical statement at once
    with connect(lab.server, "alice", autocommit=True) as conn:
        started = time.monotonic()
        assert conn.execute(sql).rowcount == 1
        assert time.monotonic() - started < 5
    assert ids(lab.server, table) == [1, 3]


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_cancel_ends_the_wait_and_the_request_stays_open(
    lab: Lab, pool: ThreadPoolExecutor, method: str
) -> None:
    """psql's Ctrl-C: a CancelRequest (plain TCP with cancel(), TLS with cancel_safe())."""
    table = make_table(lab.server, "cancel")
    sql = f"DELETE FROM {table} WHERE id = 1"
    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(conn.execute, sql)
        request = lab.held(table)
        started = time.monotonic()
        getattr(conn, method)()
        with pytest.raises(psycopg.Error) as caught:
            running.result(30)
        assert time.monotonic() - started < 5
        assert (
            "canceling statement due to user request: it was waiting for approval and did "
            "not run" in error_text(caught.value)
        ), error_text(caught.value)
        assert "an approval given later lets the identical statement run at once" in (
            error_text(caught.value)
        )
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert lab.get(request["id"])["status"] == "pending"
        assert ids(lab.server, table) == [1, 2, 3]
        lab.approve("bob", request["id"])
        started = time.monotonic()
        assert conn.execute(sql).rowcount == 1
        assert time.monotonic() - started < 5
    assert ids(lab.server, table) == [2, 3]
    assert lab.get(request["id"])["status"] == "executed"
    assert [r["id"] for r in lab.requests(table)] == [request["id"]]


def test_cancelled_hold_answers_query_canceled(lab: Lab, pool: ThreadPoolExecutor) -> None:
    table = make_table(lab.server, "cancel57")
    with connect(lab.server, "alice", autocommit=True) as conn:
        running = pool.submit(conn.execute, f"DELETE FROM {table} WHERE id = 1")
        request = lab.held(table)
        conn.cancel_safe()
        try:
            with pytest.raises(errors.QueryCanceled):
                running.result(30)
        finally:
            lab.reject("bob", request["id"])


# the command line ----------------------------------------------------------------------------


def test_cli_list_shows_whole_ids_at_80_columns(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    table = make_table(lab.server, "narrow")
    with psql_running(lab.server, "alice", f"DELETE FROM {table} WHERE id = 1") as proc:
        request = lab.held(table)
        try:
            listed = said(approvals_cli(lab, "bob", "list", cwd=tmp_path))
            assert request["id"] in listed, listed
        finally:
            lab.reject("bob", request["id"])
            finish(proc)


def test_cli_list_and_show(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: every cell whole
    table = make_table(lab.server, "cli")
    sql = f"TRUNCATE {table}"
    with psql_running(lab.server, "alice", sql) as proc:
        request = lab.held(table)
        lab.approve("bob", request["id"], reason="ticket 9")

        listed = approvals_cli(lab, "carol", "list", cwd=tmp_path).stdout
        [row] = [line for line in listed.splitlines() if request["id"] in line]
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        assert cells[:7] == [request["id"], "statement", "pending", "alice", "app", sql, "1/2"]

        as_json = approvals_cli(lab, "carol", "list", "--json", cwd=tmp_path)
        found = {r["id"]: r for r in json.loads(as_json.stdout)}
        assert found[request["id"]]["statement"] == sql
        assert found[request["id"]]["votes"][0]["approver"] == "bob"

        shown = said(approvals_cli(lab, "carol", "show", request["id"], cwd=tmp_path))
        for needle in (
            f"{request['id']} statement pending",
            "requester alice (service)",
            "connection app (staging)",
            "rule truncate-needs-two",
            "needs 2 of dba (reason required)",
            f"statement: {sql}",
            "bob approved via api: ticket 9",
        ):
            assert needle in shown, (needle, shown)

        # dave may not see it
        refused = approvals_cli(lab, "dave", "show", request["id"], cwd=tmp_path, ok=False)
        assert refused.returncode != 0
        assert "you can see" in said(refused)
        # alice may not approve her own
        refused = approvals_cli(
            lab, "alice", "approve", request["id"], "--reason", "x", cwd=tmp_path, ok=False
        )
        assert refused.returncode != 0
        assert "no one may approve their own request" in said(refused)

        rejected = approvals_cli(
            lab, "carol", "reject", request["id"], "--reason", "wrong table", cwd=tmp_path
        )
        assert f"rejected {request['id']}" in said(rejected)
        _, err = finish(proc)
    assert "was rejected by carol: wrong table" in err
    done = said(approvals_cli(lab, "carol", "list", "--status", "rejected", cwd=tmp_path))
    assert request["id"] in done


# the audit trail -----------------------------------------------------------------------------


def test_audit_trail_of_approvals(
    upstream_db: UpstreamDb, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """Its own dbward, stopped at the end so that the whole trail is verified."""
    own = open_lab(tmp_path, upstream_db, wait=30.0)
    try:
        table = make_table(own.server, "trail")
        upstream_exec(own.server, f"INSERT INTO {table} VALUES (9, 'zebra-7781')")
        sql = f"DELETE FROM {table} WHERE v = %s"
        with connect(own.server, "alice", autocommit=True) as conn:
            running = pool.submit(conn.execute, sql, ("zebra-7781",))
            approved = own.held(table)
            assert approved["parameters"] == ["zebra-7781"]  # approvers see the value
            own.approve("bob", approved["id"], reason="cleanup")
            assert running.result(30).rowcount == 1

            running = pool.submit(conn.execute, f"DELETE FROM {table} WHERE id = 1")
            rejected = own.held(f"{table} WHERE id = 1")
            own.reject("carol", rejected["id"], "no")
            with pytest.raises(errors.InsufficientPrivilege):
                running.result(30)
    finally:
        close_lab(own)
    server = own.server
    trail = server.audit()

    # requested -> approved -> executed, then the statement's own record
    events = approval_events(server, approved["id"])
    assert [(e["kind"], e["identity"]) for e in events] == [
        ("approval.requested", "alice"),
        ("approval.approved", "bob"),
        ("approval.executed", "alice"),
    ]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[1]["data"]["vote_reason"] == "cleanup"
    assert events[2]["data"]["executions"] == 1
    [ran] = [
        e for e in trail if e["kind"] == "statement" and e["data"].get("approval") == approved["id"]
    ]
    assert ran["data"]["decision"] == "allow"
    assert ran["data"]["rule"] == "deletes-need-approval"
    assert ran["data"]["rows"] == 1
    assert ran["identity"] == "alice"
    assert ran["seq"] > events[-1]["seq"]
    assert all(e["data"]["statement"] == f"DELETE FROM {table} WHERE v = $1" for e in events)
    # approvers saw the bound value; the trail never keeps it
    assert "zebra-7781" not in json.dumps([e["data"] for e in trail])

    events = approval_events(server, rejected["id"])
    assert [(e["kind"], e["identity"]) for e in events] == [
        ("approval.requested", "alice"),
        ("approval.rejected", "carol"),
    ]
    [refused] = [
        e for e in trail if e["kind"] == "statement" and e["data"].get("approval") == rejected["id"]
    ]
    # not approved: it stays a review decision (the trail counts it as held), saying why
    assert refused["data"]["decision"] == "review"
    assert refused["data"]["rule"] == "deletes-need-approval"
    assert (
        refused["data"]["reason"] == f"approval request {rejected['id']} was rejected by carol: no"
    )
    assert refused["data"]["sqlstate"] == DENIED
    assert "lineage" not in refused["data"]  # nothing was touched
    # no notifier is configured: nothing was notified
    assert not [e for e in trail if e["kind"] == "approval.notified"]

    result = run_cli(server, "audit", "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["records"] == len(trail)


def test_unanswered_request_expires(quick: Lab) -> None:
    """The INSERT rule's requests stay open 3 s; the sweeper (every 2 s) expires them."""
    table = make_table(quick.server, "expiry")
    sql = f"INSERT INTO {table} VALUES (10, 'x')"
    with connect(quick.server, "alice", autocommit=True) as conn:
        request_id = held_until_timeout(quick, conn, sql)
        request = quick.get(request_id)
        assert request["expires"] == pytest.approx(request["created"] + 3)
        wait_for(
            lambda: quick.get(request_id)["status"] == "expired",
            timeout=10,
            what="the request to expire",
        )
        status, body = quick.call("bob", "POST", f"/api/v1/approvals/{request_id}/approve", {})
        assert status == 409
        assert f"request {request_id} is expired, not pending" in body["detail"]
        # the identical statement again: a new request
        assert held_until_timeout(quick, conn, sql) != request_id
    assert ids(quick.server, table) == [1, 2, 3]
    expired = [
        e for e in approval_events(quick.server, request_id) if e["kind"] == "approval.expired"
    ]
    assert [(e["identity"], e["source"]) for e in expired] == [("dbward", "sweeper")]
