"""The HTTP API (``api.enabled``) end to end: a real ``dbward serve``, real HTTP, real clients.

One dbward (production guardrails, statement literals replaced by placeholders, the API on
a free port, ``api.roles`` mapping ``auditors`` to auditor and ``dbward-admins`` to admin)
serves a small workload through psql and psycopg: DDL, an INSERT of PII, masked reads, an
UPDATE with a WHERE and a DELETE without one (refused), from a service token and an agent
token. The API is then asked the questions ``dbward audit`` answers, and its answers are
compared with the command's, asked at the same moment of the same store.

Tokens made and revoked while dbward runs are seen at once by the proxy and the API
(section on token changes). Tests that need a dbward of their own
(SIGTERM) start one; a second dbward is given the first one's API port. Calls go through
``http.client``; schemathesis is not installed, so hypothesis draws parameters from the
OpenAPI document instead (section 9).
"""

from __future__ import annotations

import csv
import datetime
import http.client
import io
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore
from tests.conftest import Dbward, UpstreamDb, free_port, start_dbward, stop_dbward, wait_for_port
from tests.integration.helpers import psql, run_cli, unique, wait_for

INSTANCE = "apilab"
SERVER_CHAIN = f"{INSTANCE}-0"
EMAIL = "ada.lovelace@example.org"  # the PII inserted: never to be seen in the trail
OTHER_EMAIL = "grace.hopper@example.net"
MASKED_EMAIL = "****@example.org"
UNBOUNDED = "guardrail:unbounded-write"
AGENT_APP = "agent=reporter,model=gpt-4o"  # the agent's application_name: its attribution
ROLES = {"admin": ["dbward-admins"], "auditor": ["auditors"]}
AUDIT_PATHS = ["/search", "/who-touched", "/touched-by", "/verify", "/export"]
ALL_PATHS = ["/health", *(f"/audit{p}" for p in AUDIT_PATHS)]
SEARCH_PARAMETERS = {
    "identity", "group", "kind", "connection", "environment", "table", "decision", "event",
    "session", "agent", "text", "since", "until", "limit", "before_id",
}  # fmt: skip


# HTTP ---------------------------------------------------------------------------------


@dataclass(repr=False)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def detail(self) -> str:
        """The error's ``detail``, as text (a validation error's is a list of objects)."""
        detail = self.json()["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.headers} {self.body[:2000]!r}"


@dataclass
class Api:
    port: int
    host: str = "127.0.0.1"

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        authorization: str | None = None,
    ) -> Reply:
        """GET /api/v1<path>?<params>, with ``Authorization: Bearer <token>`` if given."""
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        target = f"/api/v1{path}"
        if params:
            target += "?" + urlencode(params)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def ok(self, path: str, params: dict[str, Any] | None = None, *, token: str) -> Reply:
        reply = self.get(path, params, token=token)
        assert reply.status == 200, f"{path} {params}: {reply}"
        return reply


def port_is_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


# the command line ---------------------------------------------------------------------


def cli_ok(server: Dbward, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(server, *args)
    assert result.returncode == 0, describe(result)
    return result


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def cli_search(server: Dbward, *filters: str) -> list[dict[str, Any]]:
    result = cli_ok(server, "audit", "search", "--json", *filters)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def cli_json(server: Dbward, *args: str) -> Any:
    return json.loads(cli_ok(server, *args, "--json").stdout)


def as_cli_record(record: dict[str, Any]) -> dict[str, Any]:
    """An API search record in ``dbward audit search --json``'s shape: the API says
    ``connection`` where the command says ``target``, and adds ``time`` (ISO 8601)."""
    item = dict(record)
    when = datetime.datetime.fromisoformat(item.pop("time"))
    assert abs(when.timestamp() - item["ts"]) < 0.001, record
    item["target"] = item.pop("connection")
    return item


# the store, read directly -------------------------------------------------------------


def store_path(server: Dbward) -> Path:
    return server.state_dir / "audit.db"


def store_query(server: Dbward, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(store_path(server))
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def settled(server: Dbward, ends: int) -> bool:
    """``ends`` connection.end records are stored, and every record of the server's chain
    is signed by a checkpoint: nothing is left to change while the test compares."""
    [(stored_ends,)] = store_query(
        server, "SELECT count(*) FROM records WHERE kind = 'connection.end'"
    )
    [(last, signed)] = store_query(
        server,
        "SELECT (SELECT max(seq) FROM records WHERE chain = ?),"
        " (SELECT max(seq) FROM checkpoints WHERE chain = ?)",
        (SERVER_CHAIN, SERVER_CHAIN),
    )
    return stored_ends >= ends and last is not None and last == signed


def assert_no_pii(data: str | bytes, where: str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in (EMAIL, OTHER_EMAIL, "ada.lovelace", "grace.hopper"):
        assert secret.encode() not in raw, f"{secret} found in {where}"


# the dbward and its workload ----------------------------------------------------------


def api_config(port: int) -> dict[str, Any]:
    return {"api": {"enabled": True, "host": "127.0.0.1", "port": port, "roles": ROLES}}


# Every token is made before dbward starts. With the API enabled, dbward's token stores do
# not see a token made or revoked while it runs (see the tests of section 1): the tests
# that are not about that bug must not trip over it.
TOKENS: dict[str, tuple[IdentityKind, tuple[str, ...]]] = {
    "app-svc": (IdentityKind.SERVICE, ("eng",)),  # runs the workload; no API role
    "helper-bot": (IdentityKind.AGENT, ("bots",)),
    "siem-reader": (IdentityKind.SERVICE, ("auditors",)),
    "root-ops": (IdentityKind.SERVICE, ("dbward-admins",)),
    "load-svc": (IdentityKind.SERVICE, ("load",)),
    "ex-auditor": (IdentityKind.SERVICE, ("auditors",)),  # revoked by a test
    "ex-service": (IdentityKind.SERVICE, ("ops",)),  # revoked by a test
    "probe-svc": (IdentityKind.SERVICE, ("ops",)),  # for SQL beside the workload's
}
EXPIRED = "old-auditor"  # group auditors, expired an hour ago


def make_tokens(state: Path) -> dict[str, str]:
    """TOKENS, and EXPIRED (made with a clock two hours behind), in ``state``'s token store."""
    with TokenStore(state / "tokens.db") as store:
        made = {
            name: store.create(name, kind, groups, 3600)[0]
            for name, (kind, groups) in TOKENS.items()
        }
    with TokenStore(state / "tokens.db", clock=lambda: time.time() - 7200) as past:
        made[EXPIRED] = past.create(EXPIRED, IdentityKind.SERVICE, ("auditors",), 3600)[0]
    return made


def start_with_api(tmp: Path, upstream: UpstreamDb, **options: Any) -> tuple[Dbward, Api]:
    """dbward with the API on a free port, its tokens (TOKENS) made beforehand."""
    tokens = make_tokens(tmp / "state")  # start_dbward's state directory
    port = free_port()
    extra = {**options.pop("extra_config", {}), **api_config(port)}
    server = start_dbward(tmp, upstream, extra_config=extra, **options)
    server.tokens.update(tokens)
    try:
        wait_for_port(port, proc=server.proc)
    except Exception:
        stop_dbward(server)
        raise
    return server, Api(port)


@dataclass
class Workload:
    server: Dbward
    api: Api
    table: str
    auditor: str  # tokens: group auditors
    admin: str  # group dbward-admins
    service: str  # app-svc, group eng: no API role

    @property
    def qualified(self) -> str:
        return f"public.{self.table}"


@pytest.fixture(scope="module")
def lab(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dbward, Api]]:
    server, api = start_with_api(
        tmp_path_factory.mktemp("audit-api"),
        upstream_db,
        environment="production",
        statement_literals="placeholders",
        extra_config={"audit": {"instance": INSTANCE, "checkpoint_interval": 0.2}},
    )
    yield server, api
    stop_dbward(server)


@pytest.fixture(scope="module")
def workload(lab: tuple[Dbward, Api]) -> Workload:
    server, api = lab
    table = unique("people")

    out = psql(
        server,
        "-At",
        "-c", f"CREATE TABLE {table} (id int PRIMARY KEY, email text, note text)",
        "-c", f"INSERT INTO {table} VALUES (1, '{EMAIL}', 'first'), (2, '{OTHER_EMAIL}', 'second')",
        "-c", f"SELECT * FROM {table} ORDER BY id",
    ).stdout  # fmt: skip
    assert MASKED_EMAIL in out, out
    assert EMAIL not in out, out

    with psycopg.connect(server.dsn("app-svc"), autocommit=True, connect_timeout=10) as conn:
        masked = conn.execute(f"SELECT email FROM {table} WHERE id = 1").fetchall()
        assert masked == [(MASKED_EMAIL,)]
        conn.execute(f"UPDATE {table} SET note = 'updated' WHERE id = 2")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=UNBOUNDED):
            conn.execute(f"DELETE FROM {table}")

    with psycopg.connect(
        server.dsn("helper-bot", application_name=AGENT_APP), autocommit=True, connect_timeout=10
    ) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)

    wait_for(lambda: settled(server, ends=3), timeout=10, what="the workload stored and signed")
    tokens = server.tokens
    return Workload(
        server, api, table, tokens["siem-reader"], tokens["root-ops"], tokens["app-svc"]
    )


@pytest.fixture(scope="module")
def pubkey(workload: Workload, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dbward audit pubkey > pub.pem``, as an auditor receives it."""
    pem = tmp_path_factory.mktemp("pubkey") / "pub.pem"
    pem.write_text(cli_ok(workload.server, "audit", "pubkey").stdout)
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    return pem


# 1. health, authentication and roles ---------------------------------------------------


def minimal_params(path: str, table: str) -> dict[str, str]:
    """Enough parameters for each audit endpoint to answer 200."""
    return {
        "/search": {"limit": "5"},
        "/who-touched": {"table": table},
        "/touched-by": {"identity": "app-svc"},
        "/verify": {},
        "/export": {"format": "jsonl", "since": "1h"},
    }[path]


def test_health_needs_no_token(workload: Workload) -> None:
    reply = workload.api.get("/health")
    assert reply.status == 200, reply
    assert reply.json() == {"status": "ok"}
    anyway = workload.api.get("/health", token="not-a-token")
    assert anyway.status == 200, anyway


@pytest.mark.parametrize("path", AUDIT_PATHS)
def test_no_token_is_401_with_a_challenge(workload: Workload, path: str) -> None:
    params = minimal_params(path, workload.table)
    for authorization in (None, "", "Bearer", "Bearer    ", f"Basic {workload.auditor}"):
        reply = workload.api.get(f"/audit{path}", params, authorization=authorization)
        assert reply.status == 401, (authorization, str(reply))
        assert reply.headers["www-authenticate"] == "Bearer", reply
        assert "Authorization: Bearer" in reply.detail, reply


@pytest.fixture(scope="module")
def refused_tokens(workload: Workload) -> dict[str, tuple[str, str]]:
    """case -> (token, what the 401 must say): none of them gets past authentication."""
    return {
        "garbage": ("hunter2", "not a dbward token"),
        "never-issued": ("dbw_" + "A" * 43, "never issued by this dbward"),
        "expired": (workload.server.tokens[EXPIRED], "token expired on"),
    }


@pytest.mark.parametrize("path", AUDIT_PATHS)
@pytest.mark.parametrize("case", ["garbage", "never-issued", "expired"])
def test_a_bad_token_is_401_naming_the_cause(
    workload: Workload, refused_tokens: dict[str, tuple[str, str]], path: str, case: str
) -> None:
    token, cause = refused_tokens[case]
    reply = workload.api.get(f"/audit{path}", minimal_params(path, workload.table), token=token)
    assert reply.status == 401, reply
    assert cause in reply.detail, reply
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_token"', reply
    assert token not in reply.body.decode(errors="replace"), "the token is echoed back"


@pytest.fixture(scope="module")
def first_token_change(workload: Workload) -> None:
    """The first change to the token store while dbward runs (``dbward token create``): dbward
    sees this one, so the tests of revocation below are about a later change."""
    server = workload.server
    made = cli_ok(server, "token", "create", "--name", "first-change", "--group", "ops")
    secret = made.stdout.strip().splitlines()[-1]
    with psycopg.connect(server.dsn("first-change", password=secret), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    workload.api.ok("/audit/verify", token=workload.server.tokens["ex-auditor"])


def test_a_token_revoked_while_running_is_refused_by_the_api(
    workload: Workload, first_token_change: None
) -> None:
    token = workload.server.tokens["ex-auditor"]
    workload.api.ok("/audit/verify", token=token)  # let in before it is revoked
    cli_ok(workload.server, "token", "revoke", "ex-auditor")
    reply = workload.api.get("/audit/verify", token=token)
    assert reply.status == 401, reply
    assert "token revoked on" in reply.detail, reply


def test_a_token_revoked_while_running_is_refused_by_the_proxy(
    workload: Workload, first_token_change: None
) -> None:
    server = workload.server
    with psycopg.connect(server.dsn("ex-service"), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    cli_ok(server, "token", "revoke", "ex-service")
    with (
        pytest.raises(psycopg.OperationalError, match="token revoked on"),
        psycopg.connect(server.dsn("ex-service"), connect_timeout=10),
    ):
        pass


def test_a_token_made_while_running_is_accepted_by_the_proxy(
    workload: Workload, first_token_change: None
) -> None:
    server = workload.server
    made = cli_ok(server, "token", "create", "--name", "late-svc", "--group", "ops")
    secret = made.stdout.strip().splitlines()[-1]
    with psycopg.connect(server.dsn("late-svc", password=secret), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("path", AUDIT_PATHS)
def test_a_token_without_the_auditor_role_is_403(workload: Workload, path: str) -> None:
    reply = workload.api.get(
        f"/audit{path}", minimal_params(path, workload.table), token=workload.service
    )
    assert reply.status == 403, reply
    assert "app-svc" in reply.detail, reply
    assert "auditor" in reply.detail, reply


@pytest.mark.parametrize("path", AUDIT_PATHS)
@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_the_auditor_and_admin_roles_are_let_in(workload: Workload, path: str, role: str) -> None:
    token = workload.auditor if role == "auditor" else workload.admin
    reply = workload.api.get(f"/audit{path}", minimal_params(path, workload.table), token=token)
    assert reply.status == 200, reply
    assert reply.body, reply


def test_the_bearer_scheme_is_case_insensitive(workload: Workload) -> None:
    reply = workload.api.get("/audit/verify", authorization=f"bearer {workload.auditor}")
    assert reply.status == 200, reply


# 2. the same answers as the command line -----------------------------------------------

SEARCHES = [
    # id, API parameters, the command's options, a check of what both found
    ("everything", {}, [], lambda found, w: len(found) >= 13),
    ("identity", {"identity": "app-svc"}, ["--identity", "app-svc"], lambda f, w: len(f) == 10),
    ("group", {"group": "eng"}, ["--group", "eng"], lambda f, w: len(f) == 10),
    ("kind", {"kind": "agent"}, ["--kind", "agent"], lambda f, w: len(f) == 3),
    ("connection", {"connection": "app"}, ["--connection", "app"], lambda f, w: len(f) >= 13),
    (
        "environment",
        {"environment": "production"},
        ["--environment", "production"],
        lambda f, w: len(f) >= 13,
    ),
    ("table", {"table": "{table}"}, ["--table", "{table}"], lambda f, w: len(f) == 6),
    (
        "qualified-table",
        {"table": "public.{table}", "identity": "helper-bot"},
        ["--table", "public.{table}", "--identity", "helper-bot"],
        lambda f, w: [r["data"]["statement"] for r in f] == [f"SELECT count(*) FROM {w.table}"],
    ),
    (
        "decision",
        {"decision": "deny"},
        ["--decision", "deny"],
        lambda f, w: (
            [(r["data"]["statement"], r["data"]["rule"]) for r in f]
            == [(f"DELETE FROM {w.table}", UNBOUNDED)]
        ),
    ),
    ("no-review", {"decision": "review"}, ["--decision", "review"], lambda f, w: f == []),
    (
        "event",
        {"event": "connection.start"},
        ["--event", "connection.start"],
        lambda f, w: [r["identity"] for r in f][:3] == ["app-svc", "app-svc", "helper-bot"],
    ),
    (
        "agent",
        {"agent": "gpt-4o"},
        ["--agent", "gpt-4o"],
        lambda f, w: len(f) >= 2 and {r["identity"] for r in f} == {"helper-bot"},
    ),
    (
        "text",
        {"text": "update {table}"},
        ["--text", "update {table}"],
        lambda f, w: (
            [r["data"]["statement"] for r in f] == [f"UPDATE {w.table} SET note = $1 WHERE id = $2"]
        ),
    ),
    ("since", {"since": "1h"}, ["--since", "1h"], lambda f, w: len(f) >= 13),
    ("until", {"until": "2000-01-01"}, ["--until", "2000-01-01"], lambda f, w: f == []),
    (
        "future",
        {"since": "2099-01-01T00:00"},
        ["--since", "2099-01-01T00:00"],
        lambda f, w: f == [],
    ),
    ("limit", {"limit": 3}, ["-n", "3"], lambda f, w: len(f) == 3),
    ("nobody", {"identity": "nobody"}, ["--identity", "nobody"], lambda f, w: f == []),
]


@pytest.mark.parametrize(
    ("params", "options", "check"),
    [pytest.param(p, o, c, id=name) for name, p, o, c in SEARCHES],
)
def test_search_answers_like_the_cli(
    workload: Workload,
    params: dict[str, Any],
    options: list[str],
    check: Callable[[list[dict[str, Any]], Workload], bool],
) -> None:
    table = workload.table
    params = {k: str(v).format(table=table) for k, v in params.items()}
    params.setdefault("limit", "1000")
    options = [o.format(table=table) for o in options]
    if "-n" not in options:
        options += ["-n", "1000"]

    reply = workload.api.ok("/audit/search", params, token=workload.auditor).json()
    found = [as_cli_record(r) for r in reply["records"]]
    # A record stored between the two questions (an earlier export's) is not a difference.
    newest = max((r["id"] for r in found), default=0)
    assert found == [r for r in cli_search(workload.server, *options) if r["id"] <= newest]
    assert check(found, workload), found
    assert_no_pii(json.dumps(found), "search results")


def test_search_records_are_what_the_workload_did(workload: Workload) -> None:
    records = workload.api.ok(
        "/audit/search", {"identity": "app-svc"}, token=workload.auditor
    ).json()["records"]
    t = workload.table
    assert [r["data"].get("statement") for r in records if r["kind"] == "statement"] == [
        f"CREATE TABLE {t} (id int PRIMARY KEY, email text, note text)",
        f"INSERT INTO {t} VALUES ($1, $2, $3), ($4, $5, $6)",
        f"SELECT * FROM {t} ORDER BY id",
        f"SELECT email FROM {t} WHERE id = $1",
        f"UPDATE {t} SET note = $1 WHERE id = $2",
        f"DELETE FROM {t}",
    ]
    [read] = [r for r in records if r["data"].get("statement", "").startswith("SELECT email")]
    assert read["data"]["masked"]["values"] == 1, read
    assert {(r["chain"], r["connection"], r["identity_kind"]) for r in records} == {
        (SERVER_CHAIN, "app", "service")
    }
    ids = [r["id"] for r in records]
    assert ids == sorted(ids), "oldest first"


def test_search_by_session(workload: Workload) -> None:
    api, token = workload.api, workload.auditor
    [start] = api.ok(
        "/audit/search", {"identity": "helper-bot", "event": "connection.start"}, token=token
    ).json()["records"]
    session = start["session_id"]
    found = api.ok("/audit/search", {"session": session}, token=token).json()["records"]
    assert [r["kind"] for r in found] == ["connection.start", "statement", "connection.end"]
    assert [as_cli_record(r) for r in found] == cli_search(workload.server, "--session", session)


LINEAGE = [
    ("who-touched", "{table}.email", {}),
    ("who-touched", "{table}", {}),
    ("who-touched", "public.{table}.email", {}),
    ("who-touched", "{table}.id", {}),
    ("who-touched", "{table}", {"since": "1h"}),
    ("who-touched", "{table}.email", {"since": "2099-01-01"}),
    ("who-touched", "{table}", {"until": "2000-01-01"}),
    ("touched-by", "app-svc", {}),
    ("touched-by", "helper-bot", {}),
    ("touched-by", "nobody", {}),
    ("touched-by", "app-svc", {"since": "2099-01-01T00:00"}),
]


@pytest.mark.parametrize(
    ("question", "name", "span"),
    [pytest.param(q, n, s, id=f"{q}-{n}-{'-'.join(s) or 'all'}") for q, n, s in LINEAGE],
)
def test_lineage_answers_like_the_cli(
    workload: Workload, question: str, name: str, span: dict[str, str]
) -> None:
    name = name.format(table=workload.table)
    key = "table" if question == "who-touched" else "identity"
    reply = workload.api.ok(f"/audit/{question}", {key: name, **span}, token=workload.auditor)
    options = [item for pair in span.items() for item in (f"--{pair[0]}", pair[1])]
    assert reply.json()["touched"] == cli_json(workload.server, "audit", question, name, *options)


def test_who_touched_a_pii_column(workload: Workload) -> None:
    """Read by SELECT * and SELECT email (masked both times); written by the CREATE TABLE
    and the INSERT; the refused DELETE touched nothing."""
    api, table = workload.api, workload.table
    answer = api.ok("/audit/who-touched", {"table": f"{table}.email"}, token=workload.auditor)
    body = answer.json()
    assert (body["table"], body["column"]) == (table, "email")
    rows = {(r["key"], r["access"]): r for r in body["touched"]}
    assert set(rows) == {("app-svc", "read"), ("app-svc", "write")}, rows
    read = rows[("app-svc", "read")]
    assert (read["statements"], read["rows"], read["masked"]) == (2, 3, 2), read
    assert read["identity_kind"] == "service"

    whole = api.ok("/audit/who-touched", {"table": table}, token=workload.auditor).json()
    assert whole["column"] is None
    keys = {(r["key"], r["access"]) for r in whole["touched"]}
    assert keys == {("app-svc", "read"), ("app-svc", "write"), ("helper-bot", "read")}


def test_touched_by_an_identity(workload: Workload) -> None:
    body = workload.api.ok(
        "/audit/touched-by", {"identity": "app-svc"}, token=workload.auditor
    ).json()
    assert body["identity"] == "app-svc"
    rows = {(r["key"], r["access"]): r for r in body["touched"]}
    assert set(rows) == {(workload.qualified, "read"), (workload.qualified, "write")}, rows
    assert rows[(workload.qualified, "read")]["columns"] == ["*", "email", "id"], rows
    assert rows[(workload.qualified, "write")]["statements"] == 3, rows  # CREATE, INSERT, UPDATE


def verify_both(workload: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the API's /audit/verify, ``dbward audit verify --json``), asked one after the other
    once every record is signed (a checkpoint between the two would change the answer)."""
    wait_for(lambda: settled(workload.server, ends=3), what="every record signed")
    api = workload.api.ok("/audit/verify", token=workload.auditor).json()
    result = run_cli(workload.server, "audit", "verify", "--json")
    assert result.returncode in (0, 1), describe(result)
    return api, json.loads(result.stdout)


def test_verify_answers_like_the_cli(workload: Workload) -> None:
    api, cli = verify_both(workload)
    assert api["ok"] is True, api
    assert api["first_problem"] is None
    assert {k: api[k] for k in ("ok", "records", "chains")} == {
        k: cli[k] for k in ("ok", "records", "chains")
    }
    [chain] = [c for c in api["chains"] if c["chain"] == SERVER_CHAIN]
    assert chain["signed_seq"] == chain["last_seq"] >= 13, chain


def test_verify_reports_tampering_like_the_cli(workload: Workload) -> None:
    """A statement in the live store is changed behind dbward's back, and put back."""
    server = workload.server
    [(seq, line)] = store_query(
        server,
        "SELECT seq, line FROM records WHERE chain = ? AND line LIKE ?",
        (SERVER_CHAIN, f"%UPDATE {workload.table}%"),
    )

    def set_line(text: str) -> None:
        db = sqlite3.connect(store_path(server), isolation_level=None)
        try:
            db.execute(
                "UPDATE records SET line = ? WHERE chain = ? AND seq = ?", (text, SERVER_CHAIN, seq)
            )
        finally:
            db.close()

    set_line(line.replace("UPDATE", "SELECT"))
    try:
        api, cli = verify_both(workload)
    finally:
        set_line(line)
    assert api["ok"] is False, api
    problem = dict(api["first_problem"])
    text = problem.pop("text")
    assert problem == cli["first_problem"], (api, cli)
    assert (problem["chain"], problem["seq"], problem["kind"]) == (SERVER_CHAIN, seq, "modified")
    assert f"{SERVER_CHAIN}#{seq}" in text, text
    assert workload.api.ok("/audit/verify", token=workload.auditor).json()["ok"] is True


# 3. paging -----------------------------------------------------------------------------


def walk(workload: Workload, limit: int, **filters: str) -> list[list[int]]:
    """Every page of a search, newest page first: each page's record ids."""
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        params = {**filters, "limit": str(limit)}
        if before is not None:
            params["before_id"] = str(before)
        reply = workload.api.ok("/audit/search", params, token=workload.auditor).json()
        ids = [r["id"] for r in reply["records"]]
        pages.append(ids)
        before = reply["next_before_id"]
        if before is None:
            return pages
        assert before == ids[0], reply  # the oldest on the page
        assert len(pages) < 1000, "paging does not end"


@pytest.mark.parametrize(
    ("limit", "filters"),
    [
        pytest.param(1, {}, id="one-by-one"),
        pytest.param(4, {}, id="by-4"),
        pytest.param(5, {"identity": "app-svc"}, id="identity-by-5"),  # 10: an exact multiple
        pytest.param(2, {"table": "{table}"}, id="table-by-2"),
        pytest.param(1000, {}, id="one-page"),
    ],
)
def test_paging_walks_every_record_once(
    workload: Workload, limit: int, filters: dict[str, str]
) -> None:
    filters = {k: v.format(table=workload.table) for k, v in filters.items()}
    options = [item for k, v in filters.items() for item in (f"--{k}", v)]
    everything = [r["id"] for r in cli_search(workload.server, *options, "-n", "10000")]
    assert everything

    pages = walk(workload, limit, **filters)
    for page in pages:
        assert page == sorted(page), pages  # oldest first within a page
        assert len(page) <= limit, pages
    for newer, older in itertools.pairwise(pages):
        if older:
            assert max(older) < min(newer), pages
    walked = [i for page in reversed(pages) for i in page]
    assert len(walked) == len(set(walked)), "a record came twice"
    assert walked == everything, (walked, everything)


# 4. bad parameters ---------------------------------------------------------------------

BAD = [
    ("/search", {"limit": "0"}, "limit"),
    ("/search", {"limit": "5000"}, "limit"),
    ("/search", {"limit": "ten"}, "limit"),
    ("/search", {"kind": "robot"}, "kind"),
    ("/search", {"decision": "maybe"}, "decision"),
    ("/search", {"before_id": "0"}, "before_id"),
    ("/search", {"before_id": "-5"}, "before_id"),
    ("/search", {"since": "yesterday-ish"}, "'yesterday-ish' is not a time"),
    ("/search", {"until": "last tuesday"}, "'last tuesday' is not a time"),
    ("/search", {"since": "2026-13-45"}, "'2026-13-45' is not a time"),
    ("/search", {"since": "-3d"}, "'-3d' is not a time"),
    ("/who-touched", {}, "table"),
    ("/who-touched", {"table": ""}, "table"),
    ("/who-touched", {"table": "t", "since": "soon"}, "'soon' is not a time"),
    ("/touched-by", {}, "identity"),
    ("/touched-by", {"identity": "app-svc", "until": "whenever"}, "'whenever' is not a time"),
    ("/export", {"format": "xml"}, "format"),
    ("/export", {"limit": "0"}, "limit"),
    ("/export", {"since": "a while ago"}, "'a while ago' is not a time"),
    ("/export", {"format": "bundle", "identity": "app-svc"}, "only since and until"),
    ("/export", {"format": "bundle", "table": "t"}, "only since and until"),
]


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [pytest.param(p, q, n, id=f"{p[1:]}-{'-'.join(q) or 'none'}") for p, q, n in BAD],
)
def test_bad_parameters_are_422_with_a_message(
    workload: Workload, path: str, params: dict[str, str], needle: str
) -> None:
    reply = workload.api.get(f"/audit{path}", params, token=workload.auditor)
    assert reply.status == 422, reply
    assert needle in reply.detail, reply


def test_a_huge_before_id_is_422(workload: Workload) -> None:
    reply = workload.api.get("/audit/search", {"before_id": str(2**63)}, token=workload.auditor)
    assert reply.status == 422, reply


def test_an_unknown_event_kind_is_422(workload: Workload) -> None:
    assert run_cli(workload.server, "audit", "search", "--event", "robot").returncode == 2
    reply = workload.api.get("/audit/search", {"event": "robot"}, token=workload.auditor)
    assert reply.status == 422, reply


# 5. exports ----------------------------------------------------------------------------


def cli_export(workload: Workload, fmt: str, where: Path, *options: str) -> str:
    path = where / f"cli-export.{fmt}"
    cli_ok(workload.server, "audit", "export", "--format", fmt, "-o", str(path), *options)
    return path.read_bytes().decode()  # as written: CSV lines end in CRLF


def api_export(workload: Workload, fmt: str, **params: str) -> Reply:
    reply = workload.api.ok("/audit/export", {"format": fmt, **params}, token=workload.auditor)
    assert reply.headers["content-disposition"].startswith("attachment; filename=")
    return reply


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ocsf"])
def test_exports_match_the_cli_and_hold_no_pii(
    workload: Workload, fmt: str, tmp_path: Path
) -> None:
    reply = api_export(workload, fmt)
    text = reply.body.decode()
    search = workload.api.ok("/audit/search", {"limit": "1000"}, token=workload.auditor)
    everything = [r for r in search.json()["records"] if r["kind"] != "audit.exported"]

    # Each export is recorded (audit.exported); the API's own record reaches the store only
    # after its export ran. Apart from those records, the command wrote what the API did.
    def without_exports(export: str) -> list[str]:
        return [line for line in export.splitlines() if "audit.exported" not in line]

    assert without_exports(text) == without_exports(cli_export(workload, fmt, tmp_path))
    assert_no_pii(reply.body, f"the API's {fmt} export")

    if fmt == "csv":
        assert reply.headers["content-type"].startswith("text/csv"), reply.headers
        rows = [r for r in csv.DictReader(io.StringIO(text)) if r["kind"] != "audit.exported"]
        assert len(rows) == len(everything)
        [deleted] = [r for r in rows if r["statement"] == f"DELETE FROM {workload.table}"]
        assert (deleted["decision"], deleted["rule"], deleted["sqlstate"]) == (
            "deny",
            UNBOUNDED,
            "42501",
        )
        [masked] = [r for r in rows if r["statement"].startswith("SELECT email FROM")]
        assert masked["masked_values"] == "1", masked
        return
    assert reply.headers["content-type"].startswith("application/x-ndjson"), reply.headers
    lines = [json.loads(line) for line in without_exports(text)]
    assert len(lines) == len(everything)
    if fmt == "jsonl":
        assert [(r["chain"], r["seq"]) for r in lines] == [
            (r["chain"], r["seq"]) for r in everything
        ]
        assert all(len(r["hash"]) == 64 for r in lines)
    else:
        assert {e["class_uid"] for e in lines} <= {6005, 3002}, lines
        [blocked] = [e for e in lines if e.get("disposition") == "Blocked"]
        assert blocked["actor"]["user"]["name"] == "app-svc", blocked


def test_export_filters(workload: Workload) -> None:
    def ids(**params: str) -> list[tuple[str, int]]:
        lines = api_export(workload, "jsonl", **params).body.decode().splitlines()
        return [(r["chain"], r["seq"]) for r in map(json.loads, lines)]

    bot = ids(identity="helper-bot")
    assert len(bot) == 3, bot
    table = ids(table=workload.table)
    assert len(table) == 6, table
    assert ids(since="2099-01-01") == []
    assert ids(until="2000-01-01") == []
    assert len(ids(limit="2")) == 2


def test_an_exported_bundle_verifies_with_the_public_key(
    workload: Workload, pubkey: Path, tmp_path: Path
) -> None:
    reply = api_export(workload, "bundle")
    assert_no_pii(reply.body, "the API's bundle")
    path = tmp_path / "api.bundle.jsonl"
    path.write_bytes(reply.body)
    lines = reply.body.decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "dbward-audit-bundle", header
    assert header["chains"][SERVER_CHAIN]["records"] >= 13, header

    result = run_cli(
        workload.server, "audit", "verify", "--file", str(path), "--public-key", str(pubkey)
    )
    assert result.returncode == 0, describe(result)
    assert "verified" in result.stdout, describe(result)

    edited = path.with_name("edited.jsonl")
    edited.write_text(reply.body.decode().replace(f"UPDATE {workload.table}", "SELECT 1"))
    assert edited.read_bytes() != reply.body
    refused = run_cli(
        workload.server, "audit", "verify", "--file", str(edited), "--public-key", str(pubkey)
    )
    assert refused.returncode == 1, describe(refused)
    assert "TAMPERED" in refused.stdout, describe(refused)


def test_an_api_export_is_itself_recorded(workload: Workload) -> None:
    api, token = workload.api, workload.auditor
    before = api.ok("/audit/search", {"event": "audit.exported"}, token=token).json()["records"]
    api_export(workload, "jsonl", identity="helper-bot")

    def recorded() -> list[dict[str, Any]]:
        params = {"event": "audit.exported"}
        found: list[dict[str, Any]] = api.ok("/audit/search", params, token=token).json()["records"]
        return found if len(found) > len(before) else []

    after = wait_for(recorded, timeout=3, what="an audit.exported record")
    assert after[-1]["identity"] == "siem-reader", after[-1]


# 6. the OpenAPI document and the headers -----------------------------------------------


def test_the_openapi_document_lists_every_endpoint(workload: Workload) -> None:
    reply = workload.api.get("/openapi.json")
    assert reply.status == 200, reply
    doc = reply.json()
    assert doc["openapi"].startswith("3."), doc["openapi"]
    paths = doc["paths"]
    assert {f"/api/v1{p}" for p in ALL_PATHS} <= set(paths), sorted(paths)
    for path in ALL_PATHS:
        assert "get" in paths[f"/api/v1{path}"], path
    search = {p["name"] for p in paths["/api/v1/audit/search"]["get"]["parameters"]}
    assert search == SEARCH_PARAMETERS
    export = paths["/api/v1/audit/export"]["get"]["parameters"]
    [fmt] = [p for p in export if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["jsonl", "csv", "ocsf", "bundle"], fmt


def test_every_answer_carries_the_security_headers(workload: Workload) -> None:
    api, table = workload.api, workload.table
    replies = {
        "health": api.get("/health"),
        "openapi": api.get("/openapi.json"),
        "search": api.get("/audit/search", token=workload.auditor),
        "export": api.get("/audit/export", {"format": "csv"}, token=workload.auditor),
        "401": api.get("/audit/verify"),
        "403": api.get("/audit/verify", token=workload.service),
        "422": api.get("/audit/search", {"limit": "0"}, token=workload.auditor),
        "404": api.get("/audit/nothing-here", token=workload.auditor),
        "who": api.get("/audit/who-touched", {"table": table}, token=workload.admin),
    }
    for what, reply in replies.items():
        assert reply.headers.get("cache-control") == "no-store", (what, str(reply))
        assert reply.headers.get("x-content-type-options") == "nosniff", (what, str(reply))
        assert "server" not in reply.headers, (what, str(reply))


# 7. the proxy and the API side by side -------------------------------------------------


def test_the_proxy_serves_sql_while_the_api_answers(workload: Workload) -> None:
    server, api, token = workload.server, workload.api, workload.auditor
    table = unique("load")
    psql(server, "-c", f"CREATE TABLE {table} (id int PRIMARY KEY, n int)", user="load-svc")

    statuses: list[tuple[str, int]] = []
    stop = threading.Event()

    def ask(path: str, params: dict[str, str]) -> None:
        while not stop.is_set():
            statuses.append((path, api.get(path, params, token=token).status))

    calls = [
        ("/audit/search", {"limit": "1000"}),
        ("/audit/verify", {}),
        ("/audit/export", {"format": "ocsf"}),
        ("/audit/who-touched", {"table": workload.table}),
        ("/health", {}),
    ]
    threads = [threading.Thread(target=ask, args=call) for call in calls]
    for thread in threads:
        thread.start()
    try:
        with psycopg.connect(server.dsn("load-svc"), autocommit=True, connect_timeout=10) as conn:
            for i in range(1, 31):
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, i * i))
            total = conn.execute(f"SELECT count(*), sum(n) FROM {table}").fetchone()
        out = psql(server, "-At", "-c", f"SELECT max(n) FROM {table}", user="load-svc").stdout
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert total == (30, sum(i * i for i in range(1, 31)))
    assert out.strip() == "900", out
    assert statuses, "the API was not asked anything"
    assert {status for _, status in statuses} == {200}, statuses
    assert {path for path, _ in statuses} == {path for path, _ in calls}, statuses

    def load_statements() -> list[dict[str, Any]]:
        params = {"identity": "load-svc", "event": "statement", "limit": "1000"}
        found: list[dict[str, Any]] = api.ok("/audit/search", params, token=token).json()["records"]
        return found if len(found) == 33 else []

    # CREATE, 30 INSERTs, count(*) and max(n): all of them, in the order sent
    statements = wait_for(load_statements, what="the load's 33 statements through the API")
    assert [r["data"]["statement"] for r in statements][1:3] == [
        f"INSERT INTO {table} VALUES ($1, $2)"
    ] * 2


def test_the_api_answers_while_a_statement_runs(
    workload: Workload, pg_admin: psycopg.Connection[Any]
) -> None:
    """A slow statement in the proxy does not hold the API up: they share one event loop."""
    server, api = workload.server, workload.api
    done = threading.Event()

    def sleep() -> None:
        with psycopg.connect(server.dsn("probe-svc"), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_sleep(3)")
        done.set()

    sleeper = threading.Thread(target=sleep)
    sleeper.start()
    try:
        wait_for(
            lambda: pg_admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)'"
                " AND state = 'active'"
            ).fetchone(),
            what="the pg_sleep running upstream",
        )
        started = time.monotonic()
        api.ok("/audit/search", {"limit": "5"}, token=workload.auditor)
        api.ok("/audit/verify", token=workload.auditor)
        answered = time.monotonic() - started
        assert not done.is_set(), "the statement ended before the API answered"
    finally:
        sleeper.join(30)
    assert done.is_set()
    assert answered < 2.0, answered


# 8. stopping, and a second dbward on the same API port --------------------------------


def test_sigterm_stops_the_proxy_and_the_api(upstream_db: UpstreamDb, tmp_path: Path) -> None:
    server, api = start_with_api(tmp_path, upstream_db)
    keep_alive = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        token = server.tokens["siem-reader"]
        keep_alive.request(
            "GET", "/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"}
        )
        first = keep_alive.getresponse()
        assert first.status == 200
        first.read()  # the connection stays open, idle

        with psycopg.connect(server.dsn("app-svc"), autocommit=True, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)  # then idle: the drain ends it
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(30) == 0, server.log()[-3000:]
            took = time.monotonic() - signalled
    finally:
        keep_alive.close()
        stop_dbward(server)
    # neither the idle session nor the idle HTTP connection held it up to drain_timeout (10 s)
    assert took < 5, took
    assert port_is_closed(api.port), "the API still listens"
    assert port_is_closed(server.port), "the proxy still listens"
    log = server.log()
    assert "stopped; audit:" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


def second_dbward(lab: Dbward, api_port: int, where: Path) -> subprocess.Popen[bytes]:
    """Another dbward (its own state and proxy port) configured with ``api_port``."""
    config = yaml.safe_load(lab.config_path.read_text())
    config["state_dir"] = str(where / "state")
    config["listeners"] = [{"host": "127.0.0.1", "port": free_port()}]
    config.pop("policy", None)
    path = where / "dbward.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DBWARD_TEST_UPSTREAM_PW": lab.upstream.password}
    return subprocess.Popen(
        [sys.executable, "-m", "dbward", "serve", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=where,
    )


@pytest.fixture(scope="module")
def second(workload: Workload, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """(exit status, output) of a second dbward given the first one's API port."""
    proc = second_dbward(workload.server, workload.api.port, tmp_path_factory.mktemp("second"))
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"a second dbward on the same API port kept running:\n{output.decode()}")
    return proc.returncode, output.decode(errors="replace")


def test_a_second_dbward_on_the_same_api_port_fails(
    workload: Workload, second: tuple[int, str]
) -> None:
    status, output = second
    assert status != 0, output
    assert f"{workload.api.port}" in output, output
    assert "address already in use" in output, output
    # the first one is untouched
    workload.api.ok("/audit/verify", token=workload.auditor)
    out = psql(workload.server, "-At", "-c", "SELECT 41 + 1", user="probe-svc").stdout
    assert out.strip() == "42"


def test_a_second_dbward_says_so_in_one_line(workload: Workload, second: tuple[int, str]) -> None:
    status, output = second
    assert f"cannot serve the API on 127.0.0.1:{workload.api.port}" in output, output
    assert "Traceback" not in output, output
    assert status == 2, output  # dbward's status for a refused start (cli.common._fail)


# 9. no server error, whatever the parameters (schemathesis is not installed) ------------


def _strategy(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Values for one query parameter: its enum's, integers in and around its bounds, and
    any text."""
    options: list[st.SearchStrategy[str]] = [st.text(st.characters(codec="utf-8"), max_size=30)]
    for part in [schema, *schema.get("anyOf", [])]:
        if "enum" in part:
            options.append(st.sampled_from([str(v) for v in part["enum"]]))
        if part.get("type") == "integer":
            options.append(st.integers(-(2**63), 2**63 - 1).map(str))
    options.append(st.sampled_from(["now", "24h", "7d", "2026-11-01", "2026-11-01T09:30+02:00"]))
    return st.one_of(options)


@pytest.fixture(scope="module")
def operations(workload: Workload) -> dict[str, dict[str, st.SearchStrategy[str]]]:
    doc = workload.api.get("/openapi.json").json()
    return {
        path.removeprefix("/api/v1"): {
            p["name"]: _strategy(p["schema"])
            for p in item["get"].get("parameters", [])
            if p["in"] == "query"
        }
        for path, item in doc["paths"].items()
        if "get" in item  # the GET operations (the API also has POSTs: approvals)
    }


@pytest.mark.parametrize("path", ALL_PATHS)
def test_no_parameters_make_a_server_error(
    workload: Workload, operations: dict[str, dict[str, st.SearchStrategy[str]]], path: str
) -> None:
    """Integers stay within 64 bits: beyond them is test_a_huge_before_id_is_422."""
    assert path in operations, sorted(operations)
    parameters = operations[path]

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.fixed_dictionaries({}, optional=parameters),
    )
    def check(params: dict[str, str]) -> None:
        reply = workload.api.get(path, params, token=workload.auditor)
        assert reply.status < 500, (params, str(reply))
        assert reply.status in (200, 422), (params, str(reply))

    check()
