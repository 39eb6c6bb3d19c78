"""Just-in-time access end to end: a connection that needs a time-bound grant.

dbward runs as a real process with the API; people are service tokens (alice asks, bob
and carol approve as dba, olga is on call, erin is both). Everything goes through the
real ``dbward`` command line (``access request``, ``approvals approve/revoke/review``),
psql and psycopg, or the PostgreSQL protocol over TLS where the exact SQLSTATE of a
FATAL matters.

- Without a grant in force a login to ``app`` is refused (28000) with the command that
  asks for one; once an approver approves, the same identity connects.
- A grant's role adds its groups for the session: a deny rule ``unless: {group:
  [writer]}`` lets a ``write`` grant's holder write, not a ``read`` grant's.
- A grant ends the sessions opened under it: at its expiry (a 3 s grant ends an open
  psql) and when revoked (psycopg's next query fails), with FATAL 57P01 and an
  ``access.ended`` event.
- Break-glass: an on-call member is granted at once and connects; anyone else is
  refused; an approver reviews it afterwards, never its own.
- Refused requests: longer than the role's maximum, without a reason, an unknown role,
  an unknown connection, a connection without just-in-time access.
- The trail holds every step and ``dbward audit verify`` passes (the last test: it stops
  dbward to verify the whole trail once more).

Two known gaps are strict xfails naming their cause: a session under several grants keeps
a shorter grant's groups after that grant ends, and a statement in flight when its grant
ends still runs to completion (and commits) upstream.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, stop_dbward
from tests.integration.approvals_helpers import api, cli, start_approvals_dbward
from tests.integration.helpers import log_tail, run_cli, unique, wait_for
from tests.integration.test_bad_input import (
    decode,
    fatal_error,
    login,
    read_until_closed,
    refused_login,
)

POLICY = """\
version: 1
rules:
  - name: writes-need-the-writer-role
    match: {kind: write}
    unless: {group: [writer]}
    action: deny
    message: writing to app needs the write role
audit:
  statement_literals: keep
"""

MAX_DURATION = 3600
REQUEST_ID = re.compile(r"apr_[0-9a-f]{12}")


def connections(upstream: UpstreamDb) -> dict[str, Any]:
    """``app`` needs a grant (roles read and write, on-call break-glass); ``open`` does not."""

    def connection(**extra: Any) -> dict[str, Any]:
        return {
            "environment": "production",
            "host": upstream.host,
            "port": upstream.port,
            "database": upstream.name,
            "credentials": {"user": upstream.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
            "tls": {"mode": "prefer"},
            **extra,
        }

    access = {
        "require_grant": True,
        "roles": {
            "read": {
                "approvers": {"group": ["dba"], "quorum": 1},
                "max_duration": MAX_DURATION,
                "reason_required": True,
            },
            "write": {
                "approvers": {"group": ["dba"], "quorum": 1},
                "groups": ["writer"],
                "max_duration": MAX_DURATION,
                "reason_required": False,
            },
        },
        "break_glass": ["oncall"],
    }
    return {"app": connection(access=access), "open": connection()}


@pytest.fixture(scope="module")
def jit(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dbward, str]]:
    server, base = start_approvals_dbward(
        tmp_path_factory.mktemp("jit"),
        upstream_db,
        policy=POLICY,
        connections=connections(upstream_db),
    )
    yield server, base
    stop_dbward(server)


@pytest.fixture(scope="module")
def table(upstream_db: UpstreamDb) -> str:
    name = unique("jit")
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
        conn.execute(f"INSERT INTO {name} VALUES (1, 'seed')")
    return name


def person(server: Dbward, prefix: str, *groups: str) -> tuple[str, str]:
    """A new identity (its name unique to the test: grants are per identity) and its token."""
    name = unique(prefix)
    return name, server.token(name, IdentityKind.SERVICE, groups or ("dev",))


def approver(server: Dbward, name: str = "bob") -> str:
    return server.token(name, IdentityKind.SERVICE, ("dba",))


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def said(result: subprocess.CompletedProcess[str]) -> str:
    """What a command printed (stdout and stderr), runs of white space squeezed."""
    return " ".join((result.stdout + result.stderr).split())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, describe(result)
    return said(result)


def ask(
    base: str,
    token: str,
    cwd: Path,
    *,
    role: str = "read",
    duration: str = "1h",
    reason: str = "INC-42: look at the orders",
    break_glass: bool = False,
) -> dict[str, Any]:
    """``dbward access request app ... --json``: the request it made."""
    args = ["access", "request", "app", "--role", role, "--duration", duration, "--json"]
    if reason:
        args += ["--reason", reason]
    if break_glass:
        args.append("--break-glass")
    result = cli(base, token, *args, cwd=cwd)
    assert result.returncode == 0, describe(result)
    request: dict[str, Any] = json.loads(result.stdout)
    assert REQUEST_ID.fullmatch(request["id"]), request
    return request


def approve(base: str, token: str, request_id: str, cwd: Path, reason: str = "looks fine") -> str:
    args = ["approvals", "approve", request_id] + (["--reason", reason] if reason else [])
    return ok(cli(base, token, *args, cwd=cwd))


def granted(
    server: Dbward,
    base: str,
    tmp: Path,
    prefix: str,
    approval: str = "looks fine",
    **asking: Any,
) -> tuple[str, str]:
    """A new identity with a grant in force (asked by it, approved by bob): (name, request)."""
    name, token = person(server, prefix)
    request = ask(base, token, tmp, **asking)
    approve(base, approver(server), request["id"], tmp, approval)
    return name, request["id"]


def events(server: Dbward, kind: str, request_id: str) -> list[dict[str, Any]]:
    return [
        e for e in server.audit() if e["kind"] == kind and e["data"].get("request") == request_id
    ]


def access_ended(server: Dbward, request_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
    found = wait_for(
        lambda: events(server, "access.ended", request_id),
        timeout=timeout,
        what=f"access.ended for {request_id}",
    )
    return dict(found[0])


def one_value(server: Dbward, user: str, sql: str) -> Any:
    with psycopg.connect(server.dsn(user), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


# refused without a grant; approved, then connected --------------------------------------


def test_login_without_a_grant_is_refused_with_how_to_ask(jit: tuple[Dbward, str]) -> None:
    server, _ = jit
    name, token = person(server, "alice")
    error = refused_login(server.port, name, token, "app")
    assert error.sqlstate == "28000", error
    assert f"connection 'app' needs an access grant, and {name} has none in force" in (
        error.message
    ), error
    assert "dbward access request app --role ROLE --duration 1h --reason" in error.message, error
    assert "(roles: read, write)" in error.message, error

    # a client library shows the same, and a connection without JIT access is unaffected
    with pytest.raises(psycopg.OperationalError, match="dbward access request app"):
        psycopg.connect(server.dsn(name), connect_timeout=10)
    with psycopg.connect(server.dsn(name, database="open"), connect_timeout=10) as conn:
        assert conn.execute("select 'open'").fetchone() == ("open",)

    failed = [
        e
        for e in server.audit()
        if e["kind"] == "login.failed" and e["data"].get("user") == name and e["target"] == "app"
    ]
    assert failed, failed
    assert failed[0]["data"]["sqlstate"] == "28000", failed


def test_request_by_cli_approved_by_cli_then_connect(
    jit: tuple[Dbward, str], tmp_path: Path
) -> None:
    server, base = jit
    name, token = person(server, "alice")
    bob = approver(server)

    asked = cli(
        base,
        token,
        "access",
        "request",
        "app",
        "--role",
        "read",
        "--duration",
        "30m",
        "--reason",
        "INC-7: check the nightly load",
        cwd=tmp_path,
    )
    text = ok(asked)
    match = REQUEST_ID.search(text)
    assert match, text
    request_id = match[0]
    assert "asked 1 approver(s) from dba; connect once it is approved" in text, text
    assert f"dbward approvals show {request_id}" in text, text

    # still refused while pending
    assert refused_login(server.port, name, token, "app").sqlstate == "28000"

    # bob sees it among his pending requests, with what and why
    listed = cli(base, bob, "approvals", "list", "--kind", "access", "--json", cwd=tmp_path)
    assert listed.returncode == 0, describe(listed)
    mine = [r for r in json.loads(listed.stdout) if r["id"] == request_id]
    assert len(mine) == 1, listed.stdout
    assert mine[0]["status"] == "pending"
    assert (mine[0]["role"], mine[0]["duration"]) == ("read", 1800)
    assert mine[0]["reason"] == "INC-7: check the nightly load"
    assert mine[0]["requester"] == name

    # the requester may not approve their own
    own = cli(base, token, "approvals", "approve", request_id, "--reason", "me", cwd=tmp_path)
    assert own.returncode != 0, describe(own)
    assert "no one may approve their own request" in said(own), describe(own)

    # the role's reason_required is the requester's: an approver may approve without one
    bare = cli(base, bob, "approvals", "approve", request_id, cwd=tmp_path)
    assert bare.returncode == 0, describe(bare)
    done = said(bare)
    assert f"approved {request_id}: 1 of 1 approval(s); it is now approved" in done, done

    before = time.time()
    assert one_value(server, name, "select current_user") == server.upstream.role

    status, body = api(base, token, "GET", "/api/v1/access/grants?mine=true")
    assert status == 200, body
    [grant] = body["grants"]
    assert (grant["id"], grant["role"], grant["connection"]) == (request_id, "read", "app")
    assert before + 1700 < grant["approved_until"] < before + 1810, grant
    shown = cli(base, token, "access", "grants", "--mine", "--json", cwd=tmp_path)
    assert [g["id"] for g in json.loads(shown.stdout)] == [request_id], describe(shown)

    starts = [
        e
        for e in server.audit()
        if e["kind"] == "connection.start" and e["identity"] == name and e["target"] == "app"
    ]
    assert len(starts) == 1, starts


def test_the_grant_adds_its_roles_groups_for_policy(
    jit: tuple[Dbward, str], tmp_path: Path, table: str
) -> None:
    """A deny rule ``unless: {group: [writer]}``: a read grant cannot write, a write grant
    (its role's groups: [writer]) can, and only on its own identity's sessions."""
    server, base = jit
    reader, _ = granted(server, base, tmp_path, "reader", role="read")
    # the write role needs no reason: neither from its requester nor from its approver
    writer, _ = granted(server, base, tmp_path, "writer", approval="", role="write", reason="")

    with psycopg.connect(server.dsn(reader), autocommit=True, connect_timeout=10) as conn:
        assert conn.execute(f"select note from {table} where id = 1").fetchone() == ("seed",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(f"insert into {table} values (2, 'by the reader')")
        assert "writing to app needs the write role" in str(refused.value), refused.value

    with psycopg.connect(server.dsn(writer), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"insert into {table} values (3, 'by the writer')")
        assert conn.execute(f"select note from {table} where id = 3").fetchone() == (
            "by the writer",
        )

    # the same identity on the connection without JIT access has no extra groups
    with (
        psycopg.connect(server.dsn(writer, database="open"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(f"insert into {table} values (4, 'not via a grant')")

    with psycopg.connect(server.upstream.dsn()) as conn:
        ids = [row[0] for row in conn.execute(f"select id from {table} order by id")]
    assert ids == [1, 3]
    records = [
        e
        for e in server.statements()
        if e["identity"] in (reader, writer) and "insert" in e["data"]["statement"].lower()
    ]
    outcome = {(e["identity"], e["target"], e["data"].get("rule")) for e in records}
    assert (reader, "app", "writes-need-the-writer-role") in outcome, records
    assert (writer, "open", "writes-need-the-writer-role") in outcome, records


# a grant ends its sessions ----------------------------------------------------------------


class InteractivePsql:
    """psql reading statements from a pipe kept open, its output read as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def send(self, sql: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()

    def expect(self, line: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                got = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if got == line:
                return
            seen.append(got)
        raise AssertionError(f"psql did not print {line!r}; it printed {seen}")

    def finish(self, timeout: float = 20.0) -> tuple[int, str, list[str]]:
        """Close stdin; its exit status, stderr and the stdout lines not yet read."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout)
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        time.sleep(0.1)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return self.proc.returncode, stderr, rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_a_grant_of_seconds_ends_an_open_psql_session(
    jit: tuple[Dbward, str], tmp_path: Path
) -> None:
    server, base = jit
    name, request_id = granted(server, base, tmp_path, "brief", duration="3s")
    status, body = api(base, approver(server), "GET", f"/api/v1/approvals/{request_id}")
    assert status == 200, body
    until = body["approved_until"]
    assert body["duration"] == 3

    psql = InteractivePsql(server.env(name))
    try:
        psql.send("select 'before the end';")
        psql.expect("before the end")
        assert time.time() < until, "the grant ended before psql ran its first statement"

        ended = access_ended(server, request_id, timeout=until - time.time() + 5)
        assert ended["ts"] >= until - 0.5, (ended["ts"], until)
        psql.send("select 'after the end';")
        code, stderr, rest = psql.finish()
    finally:
        psql.kill()
    assert "after the end" not in rest, rest
    assert code == 2, (code, stderr)  # psql: the connection to the server was lost
    expected = f"terminating connection: access grant {request_id} to app (role read) expired"
    assert expected in stderr, stderr
    assert "FATAL" in stderr, stderr

    assert ended["identity"] == name, ended
    assert ended["target"] == "app", ended
    assert ended["data"]["how"] == "expired", ended
    assert ended["data"]["role"] == "read", ended
    assert ended["data"]["statements"] >= 1, ended
    # the grant is over: a new login is refused, and the sweeper marks it expired
    assert refused_login(server.port, name, server.token(name), "app").sqlstate == "28000"
    wait_for(
        lambda: events(server, "approval.expired", request_id),
        timeout=10,
        what="approval.expired",
    )


def test_revoking_a_grant_ends_its_open_sessions(jit: tuple[Dbward, str], tmp_path: Path) -> None:
    server, base = jit
    name, request_id = granted(server, base, tmp_path, "revoked")
    token = server.token(name)

    raw, messages = login(server.port, name, token, "app")  # a protocol-level client
    assert messages, "no answer to the login"
    conn = psycopg.connect(server.dsn(name), autocommit=True, connect_timeout=10)
    try:
        assert conn.execute("select 'in'").fetchone() == ("in",)

        # someone not an approver of the request cannot revoke it
        dave = server.token("dave", IdentityKind.SERVICE, ("sales",))
        status, body = api(base, dave, "POST", f"/api/v1/approvals/{request_id}/revoke")
        assert status == 404, body

        done = cli(base, approver(server, "carol"), "approvals", "revoke", request_id, cwd=tmp_path)
        assert f"revoked {request_id}" in ok(done)

        ended = access_ended(server, request_id)
        assert ended["data"]["how"] == "was revoked", ended

        data, _ = read_until_closed(raw, timeout=10)
        fatal = fatal_error(decode(data))
        assert fatal.sqlstate == "57P01", fatal
        expected = (
            f"terminating connection: access grant {request_id} to app (role read) was revoked"
        )
        assert fatal.message == expected, fatal
        assert "dbward access request app --role read" in fatal.hint, fatal

        with pytest.raises(psycopg.OperationalError) as lost:
            conn.execute("select 'still in?'")
        assert expected in str(lost.value), lost.value
    finally:
        conn.close()
        raw.close()
    assert len(events(server, "access.ended", request_id)) == 2  # both sessions
    revoked = events(server, "approval.revoked", request_id)
    assert len(revoked) == 1, revoked
    assert revoked[0]["identity"] == "carol", revoked
    assert refused_login(server.port, name, token, "app").sqlstate == "28000"
    status, body = api(base, token, "GET", "/api/v1/access/grants?mine=true")
    assert status == 200, body
    assert body["grants"] == [], body


# break-glass ------------------------------------------------------------------------------


def test_break_glass_is_granted_at_once_and_reviewed_later(
    jit: tuple[Dbward, str], tmp_path: Path
) -> None:
    server, base = jit
    olga, olga_token = person(server, "olga", "oncall")
    bob = approver(server)

    result = cli(
        base,
        olga_token,
        "access",
        "request",
        "app",
        "--role",
        "write",
        "--duration",
        "30m",
        "--reason",
        "SEV-1: orders are stuck",
        "--break-glass",
        cwd=tmp_path,
    )
    text = ok(result)
    assert "break-glass access to app granted until" in text
    assert "it will be reviewed" in text
    match = REQUEST_ID.search(text)
    assert match, text
    request_id = match[0]

    assert one_value(server, olga, "select 'in at once'") == "in at once"
    status, body = api(base, bob, "GET", "/api/v1/access/grants")
    assert status == 200, body
    [grant] = [g for g in body["grants"] if g["id"] == request_id]
    assert grant["break_glass"] is True, grant
    assert grant["status"] == "approved", grant
    assert grant["reviewed_by"] == "", grant
    assert grant["votes"] == [], grant

    requested = events(server, "approval.requested", request_id)
    approved = events(server, "approval.approved", request_id)
    assert len(requested) == 1, (requested, approved)
    assert len(approved) == 1, (requested, approved)
    assert requested[0]["data"]["request_kind"] == "access", requested
    assert approved[0]["identity"] == olga, approved
    assert approved[0]["data"]["break_glass"] is True, approved
    assert approved[0]["data"]["review"] == "pending", approved
    assert approved[0]["data"]["role"] == "write", approved

    # the requester cannot review it; nor can someone in no approver group
    own = cli(base, olga_token, "approvals", "review", request_id, cwd=tmp_path)
    assert own.returncode != 0, describe(own)
    assert "no one may review their own break-glass access" in said(own), describe(own)

    reviewed = ok(cli(base, bob, "approvals", "review", request_id, cwd=tmp_path))
    assert f"reviewed {request_id} (break-glass by {olga})" in reviewed, reviewed
    again = cli(base, approver(server, "carol"), "approvals", "review", request_id, cwd=tmp_path)
    assert again.returncode != 0, describe(again)
    assert "was reviewed by bob" in said(again), describe(again)

    shown = cli(base, bob, "approvals", "show", request_id, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["reviewed_by"] == "bob", describe(shown)
    review_events = events(server, "approval.reviewed", request_id)
    assert [e["identity"] for e in review_events] == ["bob"], review_events


def test_an_approver_on_call_cannot_review_their_own_break_glass(
    jit: tuple[Dbward, str], tmp_path: Path
) -> None:
    server, base = jit
    erin, erin_token = person(server, "erin", "dba", "oncall")
    request = ask(base, erin_token, tmp_path, break_glass=True, reason="SEV-2: disk alert")
    assert request["status"] == "approved", request
    assert request["break_glass"] is True, request
    assert request["requester"] == erin, request
    own = cli(base, erin_token, "approvals", "review", request["id"], cwd=tmp_path)
    assert own.returncode != 0, describe(own)
    assert "no one may review their own break-glass access" in said(own), describe(own)
    status, body = api(base, erin_token, "GET", f"/api/v1/approvals/{request['id']}")
    assert status == 200, body
    assert body["reviewed_by"] == "", body
    # a grant approved the usual way has nothing to review
    _, normal = granted(server, base, tmp_path, "plain")
    status, body = api(base, approver(server), "POST", f"/api/v1/approvals/{normal}/review")
    assert status == 409, body
    assert "is not a break-glass grant" in body["detail"], body


def test_break_glass_by_someone_not_on_call_is_refused(
    jit: tuple[Dbward, str], tmp_path: Path
) -> None:
    server, base = jit
    dave, dave_token = person(server, "dave", "sales")
    result = cli(
        base,
        dave_token,
        "access",
        "request",
        "app",
        "--role",
        "read",
        "--reason",
        "I want in",
        "--break-glass",
        cwd=tmp_path,
    )
    assert result.returncode != 0, describe(result)
    text = said(result)
    assert "(409)" in text, text
    assert f"{dave} is not in a break-glass group of 'app' (oncall)" in text, text
    assert refused_login(server.port, dave, dave_token, "app").sqlstate == "28000"
    status, body = api(base, approver(server), "GET", "/api/v1/approvals?kind=access")
    assert status == 200, body
    assert not [r for r in body["requests"] if r["requester"] == dave], body


# refused requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (
            {"role": "read", "duration": 2 * MAX_DURATION, "reason": "long"},
            409,
            "role 'read' is granted for at most 1 h",
        ),
        ({"role": "read", "duration": 600, "reason": ""}, 409, "role 'read' needs a reason"),
        ({"role": "read", "duration": 600, "reason": "   "}, 409, "role 'read' needs a reason"),
        (
            {"role": "admin", "duration": 600, "reason": "x"},
            409,
            "connection 'app' has no access role 'admin' (roles: read, write)",
        ),
        (
            {"role": "read", "duration": 600, "reason": "x", "connection": "nope"},
            404,
            "no connection named 'nope' is configured",
        ),
        (
            {"role": "read", "duration": 600, "reason": "x", "connection": "open"},
            409,
            "connection 'open' does not use just-in-time access",
        ),
    ],
    ids=["too-long", "no-reason", "blank-reason", "unknown-role", "unknown-conn", "no-jit"],
)
def test_refused_requests_through_the_api(
    jit: tuple[Dbward, str], args: dict[str, Any], status: int, needle: str
) -> None:
    server, base = jit
    name, token = person(server, "alice")
    body = {"connection": "app", **args}
    got, answer = api(base, token, "POST", "/api/v1/access/requests", body)
    assert got == status, answer
    assert needle in answer["detail"], answer
    got, answer = api(base, token, "GET", "/api/v1/approvals?kind=access&status=pending")
    assert not [r for r in answer["requests"] if r["requester"] == name], answer


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--role", "read", "--duration", "2h", "--reason", "long"],
            "the dbward API refused (409): role 'read' is granted for at most 1 h",
        ),
        (["--role", "read", "--duration", "10m"], "the dbward API refused (409): role 'read' "),
        (
            ["--role", "root", "--reason", "x"],
            "the dbward API refused (409): connection 'app' has no access role 'root'",
        ),
        (["--role", "read", "--duration", "soon", "--reason", "x"], "invalid length of time"),
    ],
    ids=["too-long", "no-reason", "unknown-role", "bad-duration"],
)
def test_refused_requests_through_the_cli(
    jit: tuple[Dbward, str], tmp_path: Path, args: list[str], needle: str
) -> None:
    server, base = jit
    _, token = person(server, "alice")
    result = cli(base, token, "access", "request", "app", *args, cwd=tmp_path)
    assert result.returncode == 2, describe(result)
    assert needle in said(result), describe(result)


# a grant's end, where it is not yet enforced (src bugs) ----------------------------------


def test_a_session_loses_a_shorter_grants_groups_when_it_ends(
    jit: tuple[Dbward, str], tmp_path: Path, table: str
) -> None:
    server, base = jit
    name, _ = granted(server, base, tmp_path, "both", role="read", duration="1h")
    token = server.token(name)
    write = ask(base, token, tmp_path, role="write", reason="", duration="2s")
    approve(base, approver(server), write["id"], tmp_path, reason="")
    status, body = api(base, token, "GET", f"/api/v1/approvals/{write['id']}")
    assert status == 200, body
    with psycopg.connect(server.dsn(name), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"insert into {table} values (50, 'under the write grant')")
        time.sleep(max(0.0, body["approved_until"] - time.time()) + 0.5)
        wrote = True
        try:
            conn.execute(f"insert into {table} values (51, 'after the write grant ended')")
        except psycopg.Error:
            wrote = False
    with psycopg.connect(server.upstream.dsn()) as conn:
        late = conn.execute(f"select count(*) from {table} where id = 51").fetchone()
    assert late == (0,)
    assert not wrote, "the write grant had ended, yet its writer group still let the session write"


def test_revocation_stops_a_statement_in_flight(
    jit: tuple[Dbward, str], tmp_path: Path, table: str
) -> None:
    server, base = jit
    name, request_id = granted(server, base, tmp_path, "inflight", role="write", approval="")
    marker = unique("inflight")
    errors: list[BaseException] = []

    def long_write() -> None:
        try:
            with psycopg.connect(server.dsn(name), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"insert into {table} select 60, '{marker}' from pg_sleep(3)".encode())
        except psycopg.Error as exc:
            errors.append(exc)

    worker = threading.Thread(target=long_write, daemon=True)
    with psycopg.connect(server.upstream.dsn(), autocommit=True) as upstream:

        def running() -> bool:
            row = upstream.execute(
                "select count(*) from pg_stat_activity where state = 'active' "
                "and query like %s and pid <> pg_backend_pid()",
                (f"%{marker}%",),
            ).fetchone()
            return bool(row and row[0])

        worker.start()
        wait_for(running, timeout=10, what="the long insert to run upstream")
        status, body = api(base, approver(server), "POST", f"/api/v1/approvals/{request_id}/revoke")
        assert status == 200, body
        worker.join(10)
        assert errors, "the client's insert did not fail"
        assert "was revoked" in str(errors[0]), errors
        wait_for(lambda: not running(), timeout=10, what="the insert to end upstream")
        landed = upstream.execute(f"select count(*) from {table} where id = 60").fetchone()
    assert landed == (0,), "the insert committed after its grant was revoked"


# the trail --------------------------------------------------------------------------------


def test_the_trail_holds_each_step_and_verifies(jit: tuple[Dbward, str], tmp_path: Path) -> None:
    server, base = jit
    name, request_id = granted(server, base, tmp_path, "trail")
    requested = events(server, "approval.requested", request_id)
    approved = events(server, "approval.approved", request_id)
    assert len(requested) == 1, (requested, approved)
    assert len(approved) == 1, (requested, approved)
    for event in (*requested, *approved):
        assert event["data"]["request_kind"] == "access", event
        assert event["data"]["role"] == "read", event
        assert event["target"] == "app", event
        assert event["data"]["rule"] == "access:app:read", event
    assert requested[0]["identity"] == name, requested
    assert requested[0]["source"] == "api", requested
    assert requested[0]["data"]["reason"] == "INC-42: look at the orders", requested
    assert requested[0]["data"]["status"] == "pending", requested
    assert approved[0]["identity"] == "bob"
    assert approved[0]["data"]["status"] == "approved"
    assert approved[0]["data"]["vote_reason"] == "looks fine", approved
    assert approved[0]["data"]["approved_until"] > time.time() + 3000, approved

    ended = [e for e in server.audit() if e["kind"] == "access.ended"]
    assert {e["data"]["how"] for e in ended} >= {"expired", "was revoked"}, ended

    # everything recorded so far verifies while dbward runs, and once it has stopped
    result = run_cli(server, "audit", "verify")
    assert result.returncode == 0, describe(result) + log_tail(server)
    stop_dbward(server)
    assert server.proc.returncode == 0, log_tail(server)
    result = run_cli(server, "audit", "verify")
    assert result.returncode == 0, describe(result)
    assert "verified" in said(result), describe(result)
