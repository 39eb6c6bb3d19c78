"""Rules from a policy file, through real clients: deny rules with their own message, review
rules answering "approval required", a deny-by-default policy, guardrail exemptions, and
the precedence between them (docs/policy.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import errors

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import unique
from tests.integration.policy_helpers import (
    assert_denied_record,
    assert_refused,
    assert_serving,
    connect,
    ids,
    make_table,
    record_of,
    table_exists,
    upstream_exec,
)

UNBOUNDED = "guardrail:unbounded-write"
UNPARSABLE = "guardrail:unparsable"


@pytest.fixture(scope="module")
def ledger(upstream_db: UpstreamDb) -> str:
    return unique("ledger")


@pytest.fixture(scope="module")
def ruled(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory, ledger: str
) -> Iterator[Dbward]:
    policy = f"""\
version: 1
default: allow
guardrails:
  environments: [production]
  exempt:
    group: [dba]
rules:
  - name: agents-read-only
    match: {{identity_kind: agent, kind: [write, ddl, privilege, admin, unknown]}}
    action: deny
    message: AI agents have read-only access
  - name: ledger-append-only
    match: {{table: public.{ledger}, kind: write}}
    unless: {{identity: svc-billing}}
    action: deny
    message: the ledger is written by the billing service only
  - name: ddl-needs-approval
    match: {{kind: ddl, identity: "dev-*"}}
    action: review
    approvers: {{group: [dba, security], quorum: 2}}
"""
    server = start_dbward(
        tmp_path_factory.mktemp("ruled"),
        upstream_db,
        environment="production",
        policy=policy,
        extra_config={"approvals": {"wait": 1, "poll_interval": 0.1}},  # nobody approves here
    )
    server.token("ops-dba", groups=("dba",))
    server.token("dev-carol", groups=("eng",))
    server.token("svc-billing", groups=("billing",))
    server.token("bot-1", IdentityKind.AGENT, groups=("dba",))
    server.token("dev-agent", IdentityKind.AGENT, groups=("eng",))
    yield server
    assert_serving(server)
    stop_dbward(server)


def test_deny_rule_for_agents(ruled: Dbward) -> None:
    table = make_table(ruled, "ragent")
    with connect(ruled, "bot-1", autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
        for sql in (
            f"INSERT INTO {table} VALUES (9, 'x')",
            f"DELETE FROM {table} WHERE id = 1",
            f"CREATE TABLE {table}_copy (id int)",
        ):
            with pytest.raises(errors.InsufficientPrivilege) as caught:
                conn.execute(sql)
            assert_refused(caught.value, "agents-read-only")
            assert (caught.value.diag.message_primary or "").startswith(
                "dbward: AI agents have read-only access (rule agents-read-only)"
            )
    assert ids(ruled, table) == [1, 2, 3]
    assert not table_exists(ruled, f"{table}_copy")
    record = record_of(ruled, f"INSERT INTO {table} VALUES (9, 'x')")
    assert_denied_record(record, "agents-read-only")
    assert record["identity"] == "bot-1"
    assert record["data"]["reason"] == "AI agents have read-only access"


def test_deny_rule_for_a_table(ruled: Dbward, ledger: str) -> None:
    table = make_table(ruled, "rother")

    upstream_exec(ruled, f"CREATE TABLE IF NOT EXISTS {ledger} (id int PRIMARY KEY, v text)")
    with connect(ruled, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"INSERT INTO {ledger} VALUES (%s, 'x')", [1])
        assert_refused(caught.value, "ledger-append-only")
        assert "the ledger is written by the billing service only" in str(caught.value)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"INSERT INTO {table} SELECT id + 100, v FROM {ledger}")  # reads only
        conn.execute(f"INSERT INTO {table} VALUES (4, 'not the ledger')")
        assert conn.execute(f"SELECT count(*) FROM {ledger}").fetchone() == (0,)
    with connect(ruled, "svc-billing", autocommit=True) as conn:
        conn.execute(f"INSERT INTO {ledger} VALUES (%s, 'billed')", [2])
    assert ids(ruled, ledger) == [2]
    assert ids(ruled, table) == [1, 2, 3, 4]


def test_review_rule_holds_the_statement_until_the_wait_ends(ruled: Dbward) -> None:
    name = unique("rreview")
    with connect(ruled, "dev-carol", autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"CREATE TABLE {name} (id int)")
        assert_refused(caught.value, "ddl-needs-approval", review=True)
        assert "Rule ddl-needs-approval requires approval by 2 of: dba, security." in (
            caught.value.diag.message_detail or ""
        )
        assert "held for approval as request apr_" in (caught.value.diag.message_primary or "")
        assert "run the identical statement again" in (caught.value.diag.message_primary or "")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not table_exists(ruled, name)
    assert_denied_record(
        record_of(ruled, f"CREATE TABLE {name} (id int)"), "ddl-needs-approval", "review"
    )


def test_deny_wins_over_review(ruled: Dbward) -> None:
    name = unique("rboth")
    with connect(ruled, "dev-agent", autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"CREATE TABLE {name} (id int)")
        assert_refused(caught.value, "agents-read-only")
    assert not table_exists(ruled, name)


def test_guardrail_exemption_by_group(ruled: Dbward, ledger: str) -> None:
    table = make_table(ruled, "rexempt")
    with connect(ruled, autocommit=True) as conn:  # app-svc, group eng: guarded
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, UNBOUNDED)
    assert ids(ruled, table) == [1, 2, 3]
    with connect(ruled, "ops-dba", autocommit=True) as conn:
        assert conn.execute(f"DELETE FROM {table}").rowcount == 3
        # the exemption covers guardrails, not the rules, nor the parser
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"INSERT INTO {ledger} VALUES (99, 'dba')")
        assert_refused(caught.value, "ledger-append-only")
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute("DELET FROM x")
        assert_refused(caught.value, UNPARSABLE)
        conn.execute(f"DROP TABLE {table}")
    assert not table_exists(ruled, table)
    # the agent in group dba is exempt from guardrails but its rule still denies
    table = make_table(ruled, "rexempt2")
    with connect(ruled, "bot-1", autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as caught:
            conn.execute(f"DELETE FROM {table}")
        assert_refused(caught.value, "agents-read-only")
    assert ids(ruled, table) == [1, 2, 3]


@pytest.fixture(scope="module")
def deny_by_default(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    policy = """\
version: 1
default: deny
rules:
  - name: reads
    match: {kind: read}
    action: allow
"""
    server = start_dbward(tmp_path_factory.mktemp("denyall"), upstream_db, policy=policy)
    yield server
    assert_serving(server)
    stop_dbward(server)


def test_default_deny_with_read_rule(deny_by_default: Dbward) -> None:
    server = deny_by_default
    table = make_table(server, "ddeny")
    with connect(server, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
        for sql in (f"INSERT INTO {table} VALUES (5, 'x')", f"SELECT 1; DELETE FROM {table}"):
            with pytest.raises(errors.InsufficientPrivilege) as caught:
                conn.execute(sql)
            assert_refused(caught.value, "default")
            assert "no policy rule allows this statement" in str(caught.value)
        assert conn.execute(f"SELECT max(id) FROM {table}").fetchone() == (3,)
    assert ids(server, table) == [1, 2, 3]
    read = record_of(server, f"SELECT count(*) FROM {table}")["data"]
    assert (read["decision"], read["rule"]) == ("allow", "reads")
    assert_denied_record(record_of(server, f"INSERT INTO {table} VALUES (5, 'x')"), "default")
