"""The ``/api/v1`` HTTP API by role, fuzzed, and its ``/metrics``, against a real ``dbward serve``.

One dbward, the lab, stands in front of one database through two connections: ``app``
(production: the built-in guardrails refuse unbounded writes and mask emails) and
``sandbox`` (staging). Its API listens on a free port with the default ``api.roles``:
group ``dbward-admins`` is admin, ``auditors`` auditor, ``approvers`` approver, and
everyone signed in is a user. Callers send dbward tokens as bearer tokens.

1. The role matrix: every operation of the OpenAPI document, called with minimal valid
   parameters by no one, by a never-issued token, and by a plain user, an approver, an
   auditor and an admin; the statuses are those of ROLE_TABLE, and an operation that the
   document has and the table does not fails the test.
2. The tokens API: a token made (shown once), used as a bearer and at the proxy, revoked,
   and both changes in the trail.
3. The policy dry run: the production guardrail, and who may ask as someone else.
4. ``/metrics`` after a psql workload, and a dbward with two workers whose counts add up.
5. Known bugs (strict xfails).
6. schemathesis over every operation with an admin token: no server error.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.checks import not_a_server_error

from dbward.approvals.store import SqliteAccessStore
from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore
from tests.conftest import Dbward, UpstreamDb, free_port, start_dbward, stop_dbward, wait_for_port
from tests.integration.helpers import psql, unique, wait_for

UNBOUNDED = "guardrail:unbounded-write"
EMAILS = ("ada.lovelace@example.org", "grace.hopper@example.net")

# callers: "nobody" sends no Authorization header, "forged" a dbward token never issued
CALLERS = ("nobody", "forged", "user", "approver", "auditor", "admin")
ROLE_GROUPS = {
    "user": ("eng",),
    "approver": ("approvers",),
    "auditor": ("auditors",),
    "admin": ("dbward-admins",),
}
FORGED = "dbw_" + "A" * 43


def token_name(role: str) -> str:
    return f"role-{role}"


# the lab --------------------------------------------------------------------------------


def connections(upstream: UpstreamDb) -> dict[str, Any]:
    def one(environment: str) -> dict[str, Any]:
        return {
            "environment": environment,
            "host": upstream.host,
            "port": upstream.port,
            "database": upstream.name,
            "credentials": {"user": upstream.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
            "tls": {"mode": "prefer"},
        }

    return {"app": one("production"), "sandbox": one("staging")}


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def detail(self) -> str:
        detail = self.json().get("detail")
        return detail if isinstance(detail, str) else json.dumps(detail)

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.body[:1500]!r}"


@dataclass
class Lab:
    server: Dbward
    base: str  # http://127.0.0.1:<api port>
    session_id: str  # a finished session's id, for its timeline

    def token(self, caller: str) -> str | None:
        if caller == "nobody":
            return None
        if caller == "forged":
            return FORGED
        return self.server.token(token_name(caller), groups=ROLE_GROUPS[caller])

    def spare_token(self) -> str:
        """The name of a fresh token of no importance (for DELETE /tokens/{name_or_id})."""
        name = f"spare-{secrets.token_hex(4)}"
        self.server.token(name, groups=("eng",))
        return name

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        """One request on a connection of its own (a 500 closes the connection)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        with httpx.Client(base_url=self.base, timeout=60) as client:
            reply = client.request(method, path, params=params, json=body, headers=headers)
        return Reply(reply.status_code, reply.headers, reply.content)

    def first_bytes(self, path: str, *, token: str | None, params: dict[str, str]) -> Reply:
        """A streaming answer's status and its first chunk, then the connection is closed."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        with (
            httpx.Client(base_url=self.base, timeout=10) as client,
            client.stream("GET", path, params=params, headers=headers) as reply,
        ):
            chunk = next(reply.iter_raw(), b"")
        return Reply(reply.status_code, reply.headers, chunk)

    def ok(self, method: str, path: str, *, caller: str, **kwargs: Any) -> Any:
        reply = self.call(method, path, token=self.token(caller), **kwargs)
        assert reply.status == 200, f"{method} {path} as {caller}: {reply}"
        return reply.json()


@pytest.fixture(scope="module")
def lab(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    api_port = free_port()
    server = start_dbward(
        tmp_path_factory.mktemp("api-roles"),
        upstream_db,
        connections=connections(upstream_db),
        extra_config={
            "api": {"enabled": True, "host": "127.0.0.1", "port": api_port},
            "audit": {"instance": "rolelab"},
        },
    )
    try:
        wait_for_port(api_port, proc=server.proc)
        psql(server, "-c", "SELECT 1", user="probe-svc")
        [start] = [
            e
            for e in server.audit()
            if e["kind"] == "connection.start" and e["identity"] == "probe-svc"
        ]
        yield Lab(server, f"http://127.0.0.1:{api_port}", start["session_id"])
    finally:
        stop_dbward(server)


@pytest.fixture(scope="module")
def openapi(lab: Lab) -> dict[str, Any]:
    reply = lab.call("GET", "/api/v1/openapi.json")
    assert reply.status == 200, reply
    return dict(reply.json())


def operations(doc: dict[str, Any]) -> list[str]:
    """Every operation of the document, as ``METHOD /path``."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return [
        f"{method.upper()} {path}"
        for path, item in doc["paths"].items()
        for method in item
        if method in methods
    ]


# 1. the role matrix -----------------------------------------------------------------------

ANYONE = frozenset({"user", "approver", "auditor", "admin"})
AUDITORS = frozenset({"auditor", "admin"})
POLICY_READERS = frozenset({"approver", "auditor", "admin"})
ADMINS = frozenset({"admin"})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    stream: bool = False  # an endless answer: read its first bytes, then hang up


@dataclass(frozen=True)
class Row:
    """One way to call an operation. ``allowed``: the roles let in (None: the operation
    asks for no authentication at all, and everyone gets ``status``). Callers let in get
    ``status``; without a token, or with one never issued, 401; with a token but not the
    role, 403."""

    label: str
    allowed: frozenset[str] | None
    status: int
    call: Callable[[Lab], Call]

    def expected(self, caller: str) -> int:
        if self.allowed is None:
            return self.status
        if caller in ("nobody", "forged"):
            return 401
        return self.status if caller in self.allowed else 403


def get(path: str, params: dict[str, str] | None = None, *, stream: bool = False) -> Any:
    return lambda lab: Call("GET", path, dict(params or {}), stream=stream)


def post(path: str, body: Any = None) -> Any:
    return lambda lab: Call("POST", path, body=body)


def new_token(lab: Lab) -> Call:
    name = f"matrix-{secrets.token_hex(4)}"
    return Call("POST", "/api/v1/tokens", body={"name": name, "groups": ["eng"], "ttl": "1h"})


V1 = "/api/v1"
NO_REQUEST = f"{V1}/approvals/apr_0000000000000000"  # an approval request that does not exist
SELECT_1 = {"sql": "SELECT 1", "connection": "app"}

# Derived from the code: auth.require, ops_routes.py, approval_routes.py, audit_routes.py,
# slack_routes.py and app.py. Keys are the OpenAPI document's ``METHOD /path``.
ROLE_TABLE: dict[str, list[Row]] = {
    f"GET {V1}/health": [Row("liveness", None, 200, get(f"{V1}/health"))],
    f"GET {V1}/login": [Row("login settings", None, 200, get(f"{V1}/login"))],
    # Slack's own signature authenticates it; Slack is not configured here
    f"POST {V1}/slack/interactions": [
        Row("not configured", None, 404, post(f"{V1}/slack/interactions"))
    ],
    f"GET {V1}/audit/search": [Row("search", AUDITORS, 200, get(f"{V1}/audit/search"))],
    f"GET {V1}/audit/who-touched": [
        Row("who touched", AUDITORS, 200, get(f"{V1}/audit/who-touched", {"table": "people"}))
    ],
    f"GET {V1}/audit/touched-by": [
        Row("touched by", AUDITORS, 200, get(f"{V1}/audit/touched-by", {"identity": "x"}))
    ],
    f"GET {V1}/audit/verify": [Row("verify", AUDITORS, 200, get(f"{V1}/audit/verify"))],
    f"GET {V1}/audit/export": [
        Row("export", AUDITORS, 200, get(f"{V1}/audit/export", {"since": "1h"}))
    ],
    f"GET {V1}/me": [Row("me", ANYONE, 200, get(f"{V1}/me"))],
    f"GET {V1}/approvals": [Row("list", ANYONE, 200, get(f"{V1}/approvals"))],
    f"GET {V1}/approvals/{{request_id}}": [Row("unknown", ANYONE, 404, get(NO_REQUEST))],
    f"POST {V1}/approvals/{{request_id}}/approve": [
        Row("unknown", ANYONE, 404, post(f"{NO_REQUEST}/approve", {"reason": "fine"}))
    ],
    f"POST {V1}/approvals/{{request_id}}/reject": [
        Row("unknown", ANYONE, 404, post(f"{NO_REQUEST}/reject", {"reason": "no"}))
    ],
    f"POST {V1}/approvals/{{request_id}}/revoke": [
        Row("unknown", ANYONE, 404, post(f"{NO_REQUEST}/revoke"))
    ],
    f"POST {V1}/approvals/{{request_id}}/review": [
        Row("unknown", ANYONE, 404, post(f"{NO_REQUEST}/review"))
    ],
    f"POST {V1}/access/requests": [
        Row(
            "no just-in-time access on app",
            ANYONE,
            409,
            post(f"{V1}/access/requests", {"connection": "app", "role": "reader"}),
        )
    ],
    f"GET {V1}/access/grants": [Row("grants", ANYONE, 200, get(f"{V1}/access/grants"))],
    f"POST {V1}/credentials": [
        Row("one-time credential", ANYONE, 200, post(f"{V1}/credentials", {"connection": "app"}))
    ],
    f"GET {V1}/connections": [Row("connections", ANYONE, 200, get(f"{V1}/connections"))],
    f"GET {V1}/sessions": [Row("live sessions", AUDITORS, 200, get(f"{V1}/sessions"))],
    f"GET {V1}/sessions/{{session_id}}": [
        Row(
            "a session's timeline",
            AUDITORS,
            200,
            lambda lab: Call("GET", f"{V1}/sessions/{lab.session_id}"),
        )
    ],
    f"GET {V1}/statements": [Row("statements", AUDITORS, 200, get(f"{V1}/statements"))],
    f"GET {V1}/policy": [Row("view", POLICY_READERS, 200, get(f"{V1}/policy"))],
    f"POST {V1}/policy/validate": [
        Row("validate", ADMINS, 200, post(f"{V1}/policy/validate", {"text": "version: 1\n"}))
    ],
    f"POST {V1}/policy/dry-run": [
        Row("as oneself", ANYONE, 200, post(f"{V1}/policy/dry-run", SELECT_1)),
        Row(
            "as another identity",
            POLICY_READERS,
            200,
            post(f"{V1}/policy/dry-run", {**SELECT_1, "identity": "someone-else"}),
        ),
        Row(
            "with other groups",
            POLICY_READERS,
            200,
            post(f"{V1}/policy/dry-run", {**SELECT_1, "groups": ["dba"]}),
        ),
    ],
    f"GET {V1}/tokens": [Row("list", ADMINS, 200, get(f"{V1}/tokens"))],
    f"POST {V1}/tokens": [Row("create", ADMINS, 200, new_token)],
    f"DELETE {V1}/tokens/{{name_or_id}}": [
        Row(
            "revoke",
            ADMINS,
            200,
            lambda lab: Call("DELETE", f"{V1}/tokens/{lab.spare_token()}"),
        )
    ],
    f"GET {V1}/evidence": [
        Row("html", AUDITORS, 200, get(f"{V1}/evidence", {"format": "html", "from": "1h"})),
        Row("pdf", AUDITORS, 200, get(f"{V1}/evidence", {"framework": "iso27001"})),
    ],
    f"GET {V1}/activity/stream": [
        Row("first bytes", AUDITORS, 200, get(f"{V1}/activity/stream", stream=True))
    ],
    "GET /metrics": [Row("prometheus", AUDITORS, 200, get("/metrics"))],
}


def problems_with(reply: Reply, caller: str, expected: int) -> str | None:
    """What is wrong with ``reply`` beyond its status (None: nothing)."""
    if expected == 401:
        challenge = "Bearer" if caller == "nobody" else 'Bearer error="invalid_token"'
        if reply.headers.get("www-authenticate") != challenge:
            return f"401 without the challenge {challenge!r}: {reply.headers}"
    elif expected == 403:
        if token_name(caller) not in reply.detail or "needs the role" not in reply.detail:
            return f"403 that does not say who lacks which role: {reply.detail}"
    elif reply.headers.get("content-type", "").startswith("application/json"):
        reply.json()
    return None


@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_answers_each_role_as_the_table_says(
    lab: Lab, openapi: dict[str, Any], caller: str
) -> None:
    token = lab.token(caller)
    wrong: list[str] = []
    for operation in operations(openapi):
        rows = ROLE_TABLE.get(operation)
        if rows is None:
            wrong.append(f"{operation}: not in ROLE_TABLE (add its expected statuses)")
            continue
        for row in rows:
            call = row.call(lab)
            assert call.method == operation.split(" ")[0], (operation, call)
            if call.stream:
                reply = lab.first_bytes(call.path, token=token, params=call.params)
            else:
                reply = lab.call(
                    call.method, call.path, token=token, params=call.params, body=call.body
                )
            expected = row.expected(caller)
            if reply.status != expected:
                wrong.append(f"{operation} ({row.label}): {reply.status}, not {expected}: {reply}")
                continue
            problem = problems_with(reply, caller, expected)
            if problem is not None:
                wrong.append(f"{operation} ({row.label}): {problem}")
            if call.stream and expected == 200:
                assert reply.headers["content-type"].startswith("text/event-stream"), reply
                assert reply.body.startswith((b": keep-alive", b"id: ")), reply
            if operation == f"GET {V1}/evidence" and expected == 200:
                magic = b"%PDF-" if row.label == "pdf" else b"<!doctype html>"
                assert reply.body.startswith(magic), (row.label, reply)
    assert not wrong, f"{len(wrong)} answer(s) not as ROLE_TABLE says, as {caller}:\n" + (
        "\n".join(wrong)
    )


def test_the_role_table_lists_only_documented_operations(openapi: dict[str, Any]) -> None:
    stale = set(ROLE_TABLE) - set(operations(openapi))
    assert not stale, f"ROLE_TABLE lists operations the document no longer has: {stale}"


def test_me_names_the_roles_each_group_gives(lab: Lab) -> None:
    for role in ROLE_GROUPS:
        me = lab.ok("GET", f"{V1}/me", caller=role)
        assert me["name"] == token_name(role), me
        assert me["roles"] == sorted({"user", role}), me


# 2. the tokens API --------------------------------------------------------------------------


def trail(lab: Lab, event: str, name: str) -> list[dict[str, Any]]:
    """``event`` records about the token ``name``, read through the API as an auditor."""
    records = lab.ok(
        "GET", f"{V1}/audit/search", caller="auditor", params={"event": event, "limit": "1000"}
    )["records"]
    return [r for r in records if r["data"].get("name") == name]


def test_a_token_made_through_the_api_works_until_revoked(lab: Lab) -> None:
    name = f"ci-bot-{secrets.token_hex(3)}"
    asked = time.time()
    made = lab.ok(
        "POST",
        f"{V1}/tokens",
        caller="admin",
        body={"name": name, "kind": "agent", "groups": ["eng", "bots"], "ttl": "2h"},
    )
    secret = made["token"]
    assert secret.startswith("dbw_"), made
    assert made["id"].startswith("tok_"), made
    assert made["name"] == name, made
    assert asked + 7200 - 5 < made["expires"] < time.time() + 7200 + 5, made

    # shown once: the list has the token, never its secret
    listing = lab.call("GET", f"{V1}/tokens", token=lab.token("admin"))
    assert listing.status == 200, listing
    assert secret.encode() not in listing.body
    [listed] = [t for t in listing.json()["tokens"] if t["id"] == made["id"]]
    assert (listed["name"], listed["kind"], listed["groups"], listed["revoked"]) == (
        name,
        "agent",
        ["eng", "bots"],
        None,
    )
    again = lab.call("POST", f"{V1}/tokens", token=lab.token("admin"), body={"name": name})
    assert again.status == 409, again  # one active token per name

    # a bearer for the API, and a password at the proxy
    me = lab.ok("GET", f"{V1}/me", caller="admin")  # the admin, for contrast
    assert me["name"] == token_name("admin")
    mine = lab.call("GET", f"{V1}/me", token=secret)
    assert mine.status == 200, mine
    who = mine.json()
    assert (who["name"], who["kind"], who["groups"], who["roles"]) == (
        name,
        "agent",
        ["eng", "bots"],
        ["user"],
    ), who
    dsn = lab.server.dsn(name, password=secret)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)

    gone = lab.ok("DELETE", f"{V1}/tokens/{name}", caller="admin")
    assert gone["id"] == made["id"], gone
    assert gone["revoked"] >= asked, gone
    refused = lab.call("GET", f"{V1}/me", token=secret)
    assert refused.status == 401, refused
    assert "revoked" in refused.detail, refused
    with pytest.raises(psycopg.OperationalError, match="revoked"):
        psycopg.connect(dsn, connect_timeout=10).close()
    twice = lab.call("DELETE", f"{V1}/tokens/{name}", token=lab.token("admin"))
    assert twice.status == 404, twice
    assert "already revoked" in twice.detail, twice

    created = wait_for(lambda: trail(lab, "token.created", name), what="token.created")
    revoked = wait_for(lambda: trail(lab, "token.revoked", name), what="token.revoked")
    assert len(created) == 1, created
    assert len(revoked) == 1, revoked
    for record in (*created, *revoked):
        assert record["identity"] == token_name("admin"), record
        assert record["data"]["token"] == made["id"], record
        assert secret not in json.dumps(record), "the token's secret is in the trail"
    assert created[0]["data"]["kind"] == "agent", created
    assert created[0]["data"]["groups"] == ["eng", "bots"], created


def test_a_token_is_revoked_by_its_id_too(lab: Lab) -> None:
    made = lab.ok(
        "POST", f"{V1}/tokens", caller="admin", body={"name": f"by-id-{secrets.token_hex(3)}"}
    )
    assert lab.call("GET", f"{V1}/me", token=made["token"]).status == 200
    gone = lab.ok("DELETE", f"{V1}/tokens/{made['id']}", caller="admin")
    assert gone["name"] == made["name"], gone
    assert lab.call("GET", f"{V1}/me", token=made["token"]).status == 401


def test_only_an_admin_makes_tokens_and_no_token_is_made_otherwise(lab: Lab) -> None:
    name = f"not-made-{secrets.token_hex(3)}"
    for caller in ("user", "approver", "auditor"):
        reply = lab.call("POST", f"{V1}/tokens", token=lab.token(caller), body={"name": name})
        assert reply.status == 403, (caller, reply)
    names = [t["name"] for t in lab.ok("GET", f"{V1}/tokens", caller="admin")["tokens"]]
    assert name not in names


# 3. the policy dry run -------------------------------------------------------------------------


def dry_run(lab: Lab, caller: str, sql: str, **extra: Any) -> Reply:
    body = {"sql": sql, "connection": "app", **extra}
    return lab.call("POST", f"{V1}/policy/dry-run", token=lab.token(caller), body=body)


def test_dry_run_denies_an_unbounded_delete_on_production(lab: Lab) -> None:
    reply = dry_run(lab, "user", "DELETE FROM accounts")
    assert reply.status == 200, reply
    answer = reply.json()
    assert (answer["decision"], answer["rule"]) == ("deny", UNBOUNDED), answer
    assert "WHERE" in answer["hint"], answer
    assert answer["subject"] == {
        "identity": token_name("user"),
        "groups": ["eng"],
        "kind": "service",
        "connection": "app",
        "environment": "production",
    }
    [statement] = answer["statements"]
    assert statement["command"] == "DELETE", statement
    assert "unbounded-write" in statement["risks"], statement

    bounded = dry_run(lab, "user", "DELETE FROM accounts WHERE id = 7").json()
    assert (bounded["decision"], bounded["rule"]) != ("deny", UNBOUNDED), bounded
    staging = dry_run(lab, "user", "DELETE FROM accounts", connection="sandbox").json()
    assert staging["subject"]["environment"] == "staging", staging
    assert staging["rule"] != UNBOUNDED, staging  # the guardrails are production's


@pytest.mark.parametrize("caller", ["approver", "auditor", "admin"])
def test_dry_run_as_someone_else(lab: Lab, caller: str) -> None:
    reply = dry_run(
        lab, caller, "DELETE FROM accounts", identity="ops-oncall", groups=["dba"], kind="human"
    )
    assert reply.status == 200, reply
    answer = reply.json()
    assert (answer["decision"], answer["rule"]) == ("deny", UNBOUNDED), answer
    assert answer["subject"]["identity"] == "ops-oncall", answer
    assert answer["subject"]["groups"] == ["dba"], answer
    assert answer["subject"]["kind"] == "human", answer


@pytest.mark.parametrize(
    "as_whom", [{"identity": "ops-oncall"}, {"groups": ["dba"]}], ids=["identity", "groups"]
)
def test_a_plain_user_may_not_dry_run_as_someone_else(lab: Lab, as_whom: dict[str, Any]) -> None:
    reply = dry_run(lab, "user", "DELETE FROM accounts", **as_whom)
    assert reply.status == 403, reply
    assert "auditor or approver" in reply.detail, reply


def test_dry_run_on_an_unknown_connection_is_404(lab: Lab) -> None:
    reply = dry_run(lab, "user", "SELECT 1", connection="nowhere")
    assert reply.status == 404, reply
    assert "nowhere" in reply.detail, reply


# 4. /metrics -----------------------------------------------------------------------------------

ALLOW = 'dbward_statements_total{decision="allow"}'
DENY = 'dbward_statements_total{decision="deny"}'
REVIEW = 'dbward_statements_total{decision="review"}'
NONE = 'dbward_statements_total{decision="none"}'
MASKED = "dbward_masked_values_total"
LIVE = "dbward_connections"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``name{label="value",...}`` -> value."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def scrape(base: str, token: str) -> dict[str, float]:
    reply = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4"), reply.headers
    return parse_metrics(reply.text)


def settled_metrics(base: str, token: str) -> dict[str, float]:
    """The metrics once every client has left (the connections gauge back at 0)."""
    return dict(
        wait_for(
            lambda: (values := scrape(base, token))[LIVE] == 0 and values,
            timeout=10,
            what="dbward_connections back to 0",
        )
    )


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after[name] - before[name]


def test_metrics_need_the_auditor_role(lab: Lab) -> None:
    nobody = lab.call("GET", "/metrics")
    assert nobody.status == 401, nobody
    user = lab.call("GET", "/metrics", token=lab.token("user"))
    assert user.status == 403, user
    approver = lab.call("GET", "/metrics", token=lab.token("approver"))
    assert approver.status == 403, approver


def test_metrics_count_statements_masked_values_and_connections(lab: Lab) -> None:
    server, auditor = lab.server, lab.token("auditor")
    assert auditor is not None
    before = settled_metrics(lab.base, auditor)
    for name in (
        "dbward_audit_pending_records",
        "dbward_approval_latency_seconds_count",
        'dbward_approval_latency_seconds_bucket{le="+Inf"}',
    ):
        assert name in before, sorted(before)

    table = unique("people")
    psql(
        server,
        "-c", f"CREATE TABLE {table} (id int PRIMARY KEY, email text)",
        "-c", f"INSERT INTO {table} VALUES (1, '{EMAILS[0]}'), (2, '{EMAILS[1]}')",
        user="metrics-svc",
    )  # fmt: skip
    read = psql(
        server, "-At", "-c", f"SELECT id, email FROM {table} ORDER BY id", user="metrics-svc"
    )
    assert read.stdout.count("****@") == 2, read.stdout
    assert not any(email in read.stdout for email in EMAILS), read.stdout
    denied = psql(server, "-c", f"DELETE FROM {table}", user="metrics-svc", check=False)
    assert denied.returncode != 0, denied
    assert UNBOUNDED in denied.stderr, denied.stderr

    with psycopg.connect(server.dsn("metrics-svc"), autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        wait_for(lambda: scrape(lab.base, auditor)[LIVE] == 1, what="dbward_connections at 1")
    after = settled_metrics(lab.base, auditor)

    # CREATE, INSERT, SELECT and SELECT 1 allowed; the DELETE denied; two emails masked
    assert delta(before, after, ALLOW) == 4, (before, after)
    assert delta(before, after, DENY) == 1, (before, after)
    assert delta(before, after, REVIEW) == 0
    assert delta(before, after, NONE) == 0
    assert delta(before, after, MASKED) == 2, (before, after)
    # the trail agrees
    mine = [s for s in server.statements() if s["identity"] == "metrics-svc"]
    decisions = [s["data"].get("decision") for s in mine]
    assert (decisions.count("allow"), decisions.count("deny")) == (4, 1), decisions
    masked = sum(s["data"].get("masked", {}).get("values", 0) for s in mine)
    assert masked == 2, mine


def start_two_workers(tmp: Path, upstream: UpstreamDb, **extra: Any) -> Dbward:
    return start_dbward(
        tmp,
        upstream,
        environment="production",
        extra_config={"workers": 2, "audit": {"instance": "twin"}, **extra},
    )


def both_workers_listen(server: Dbward) -> bool:
    log = server.log()
    return all(f"worker {n} listening on" in log for n in (0, 1))


def test_metrics_of_two_workers_add_up(upstream_db: UpstreamDb, tmp_path: Path) -> None:
    # The stores are made before dbward starts: two workers opening new ones at once may
    # lose one of them (test_two_workers_open_new_stores_together, below).
    state = tmp_path / "state"
    SqliteAccessStore(state / "access.db").close()
    with TokenStore(state / "tokens.db") as tokens:
        auditor = tokens.create("twin-auditor", IdentityKind.SERVICE, ["auditors"], 3600)[0]
        user = tokens.create("twin-user", IdentityKind.SERVICE, ["eng"], 3600)[0]
    api_port = free_port()
    api = {"enabled": True, "host": "127.0.0.1", "port": api_port}
    server = start_two_workers(tmp_path, upstream_db, api=api)
    try:
        wait_for_port(api_port, proc=server.proc)
        wait_for(lambda: both_workers_listen(server), what="both workers listening")
        base = f"http://127.0.0.1:{api_port}"
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
        forbidden = httpx.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {user}"}, timeout=30
        )
        assert forbidden.status_code == 403, forbidden.text

        table = unique("twin")
        psql(server, "-c", f"CREATE TABLE {table} (id int)", user="twin-svc")
        allowed, denied = 1, 0

        def chains() -> set[str]:
            return {s["chain"] for s in server.statements() if s["identity"] == "twin-svc"}

        # Short sessions, each on a new connection: the kernel spreads them over the workers
        # (with 40 the chance that all land on one is 1 in 2**39).
        for i in range(40):
            args = ["-c", f"SELECT {i}"]
            allowed += 1
            if i % 3 == 0:
                args = ["-c", f"DELETE FROM {table}", *args]  # refused; psql goes on
                denied += 1
            psql(server, *args, user="twin-svc", on_error_stop=False)
            if i >= 6 and len(chains()) == 2:
                break
        assert chains() == {"twin-0", "twin-1"}, "every session went to one worker"

        values = settled_metrics(base, auditor)
        assert values[ALLOW] == allowed, (values, allowed)
        assert values[DENY] == denied, (values, denied)
        assert values[REVIEW] == values[NONE] == 0, values
        mine = [s for s in server.statements() if s["identity"] == "twin-svc"]
        assert len(mine) == allowed + denied
        by_chain = {c: sum(s["chain"] == c for s in mine) for c in ("twin-0", "twin-1")}
        assert all(by_chain.values()), by_chain
        counters = list((server.state_dir / "metrics").glob("counter_*.db"))
        assert len(counters) >= 2, counters  # one file per worker process
    finally:
        stop_dbward(server)
    assert "Traceback" not in server.log(), server.log()[-3000:]


# 5. known bugs ----------------------------------------------------------------------------------


def test_two_workers_open_new_stores_together(upstream_db: UpstreamDb, tmp_path: Path) -> None:
    """The race made certain: another process holds the access store's write lock while
    dbward starts (as a sibling worker does while it makes the store), for 2 s: shorter
    than the 10 s dbward waits for it."""
    state = tmp_path / "state"
    state.mkdir()
    holder = sqlite3.connect(state / "access.db", isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE placeholder (x int)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO placeholder VALUES (1)")
    log = tmp_path / "dbward.log"  # start_dbward's

    def release() -> None:
        try:
            wait_for(lambda: log.exists(), timeout=20, what="dbward started")
            time.sleep(2)
        finally:
            holder.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    server = None
    try:
        server = start_two_workers(tmp_path, upstream_db)
        wait_for(lambda: both_workers_listen(server), timeout=15, what="both workers listening")
        assert "exited with" not in server.log(), server.log()[-3000:]
    finally:
        releaser.join()
        holder.close()
        if server is not None:
            stop_dbward(server)


@pytest.mark.parametrize("since", ["99999999999999999999d", "9" * 400])
def test_an_evidence_period_out_of_range_is_422(lab: Lab, since: str) -> None:
    reply = lab.call(
        "GET",
        f"{V1}/evidence",
        token=lab.token("auditor"),
        params={"format": "html", "from": since},
    )
    assert reply.status == 422, reply


def test_a_deeply_nested_statement_is_refused_not_a_server_error(lab: Lab) -> None:
    """What dbward cannot see through it refuses, as the proxy does (fail closed)."""
    reply = dry_run(lab, "user", "SELECT 1" + " + 1" * 1000)
    assert reply.status == 200, reply
    decided = reply.json()
    assert (decided["decision"], decided["rule"]) == ("deny", "guardrail:unparsable"), decided
    assert "nested too deeply" in decided["message"], decided


def test_a_deeply_nested_policy_text_is_invalid(lab: Lab) -> None:
    text = "version: 1\nx: " + "[" * 2000 + "]" * 2000 + "\n"
    reply = lab.call("POST", f"{V1}/policy/validate", token=lab.token("admin"), body={"text": text})
    assert reply.status == 200, reply
    assert reply.json()["valid"] is False, reply


# 6. schemathesis: no server error, whatever the parameters ---------------------------------------

# endless (the stream), signed by Slack rather than a bearer token, and slow (PDF rendering):
# covered by the role matrix instead
NOT_FUZZED = {f"{V1}/activity/stream", f"{V1}/slack/interactions", f"{V1}/evidence"}
FUZZ_EXAMPLES = 20


def fuzz(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    base: str,
    headers: dict[str, str],
    statuses: dict[int, int],
) -> None:
    """FUZZ_EXAMPLES calls of ``operation`` with ``mode``'s data; a 5xx fails."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, headers=headers, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=[not_a_server_error])

    check()


def test_no_operation_answers_a_server_error(lab: Lab, openapi: dict[str, Any]) -> None:
    """Every operation of the OpenAPI document (but NOT_FUZZED), with data schemathesis
    draws from it: valid (positive) and, where there are parameters or a body to break,
    invalid (negative); as an admin, so that every handler is reached."""
    headers = {"Authorization": f"Bearer {lab.token('admin')}"}
    schema = schemathesis.openapi.from_url(f"{lab.base}/api/v1/openapi.json", timeout=30)
    log_before = len(lab.server.log())
    failures: list[str] = []
    fuzzed: dict[str, dict[int, int]] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in NOT_FUZZED:
            continue
        raw = openapi["paths"][operation.path][operation.method.lower()]
        modes = [schemathesis.GenerationMode.POSITIVE]
        if "requestBody" in raw or any(p["in"] == "query" for p in raw.get("parameters", [])):
            modes.append(schemathesis.GenerationMode.NEGATIVE)  # something to break
        statuses = fuzzed.setdefault(operation.label, {})
        for mode in modes:
            try:
                fuzz(operation, mode, lab.base, headers, statuses)
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    took = time.monotonic() - started

    expected = {op for op in operations(openapi) if op.split(" ", 1)[1] not in NOT_FUZZED}
    assert set(fuzzed) == expected
    assert not failures, "\n\n".join(failures)
    assert all(fuzzed.values()), fuzzed
    new_log = lab.server.log()[log_before:]
    assert "Traceback" not in new_log, new_log[-5000:]
    assert took < 60, f"the fuzz took {took:.0f} s: {fuzzed}"
