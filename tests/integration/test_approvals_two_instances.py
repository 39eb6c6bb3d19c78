"""Approvals across two dbward instances that share one PostgreSQL store.

Instances ``alpha`` and ``beta`` (their own state directories, ports, token stores
and signing keys) keep their audit trail and their approvals in one PostgreSQL database
(``audit.store: postgres``; approvals in its schema ``dbward_audit``). alice's token
is in alpha's token store and she runs psql through alpha; bob's (dba) is in beta's and
he answers through beta's API and command line.

- A DELETE alice runs on alpha is held; bob sees the request through beta, approves it
  there, and alice's psql on alpha gets its rows (alpha's poller saw the store change).
- Another is rejected through beta: alice's psql fails with bob's name and reason.
- The request, the execution and the statements are in alpha's chain; the votes are in
  beta's; ``dbward audit verify`` with both instances' public keys passes.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from dbward.identity.models import IdentityKind
from tests.conftest import PG_DSN, Dbward, UpstreamDb, stop_dbward
from tests.integration.approvals_helpers import api, cli, pending, start_approvals_dbward
from tests.integration.helpers import log_tail, run_cli, unique, wait_for

PASSWORD_ENV = "DBWARD_TEST_SHARED_STORE_PW"
POLICY = """\
version: 1
rules:
  - name: deletes-need-approval
    match: {command: DELETE}
    action: review
    approvers: {group: [dba], quorum: 1}
audit:
  statement_literals: keep
"""


@dataclass
class Store:
    """The shared store: a database of its own on the test server, owned by its role."""

    host: str
    port: int
    database: str
    role: str

    def audit_config(self, instance: str) -> dict[str, Any]:
        return {
            "audit": {
                "store": "postgres",
                "instance": instance,
                "checkpoint_interval": 0.2,
                "postgres": {
                    "host": self.host,
                    "port": self.port,
                    "database": self.database,
                    "credentials": {"user": self.role, "password_env": PASSWORD_ENV},
                    "sslmode": "prefer",
                    "connect_timeout": 5,
                },
            }
        }

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conninfo = make_conninfo(PG_DSN, dbname=self.database)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return conn.execute(sql.encode(), params).fetchall()


@dataclass
class Pair:
    store: Store
    alpha: Dbward
    alpha_api: str
    beta: Dbward
    beta_api: str
    alice: str  # in alpha's token store
    bob: str  # in beta's token store
    table: str


@pytest.fixture(scope="module")
def store(pg_admin: psycopg.Connection[Any]) -> Iterator[Store]:
    suffix = secrets.token_hex(4)
    database, role = f"dbw_shared_{suffix}", f"dbw_shared_role_{suffix}"
    password = f"shared-store-{secrets.token_hex(12)}"
    pg_admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg_admin.execute(f"CREATE DATABASE {database} OWNER {role}")
    os.environ[PASSWORD_ENV] = password  # dbward and its commands read it from here
    info = pg_admin.info
    try:
        yield Store(info.host, info.port, database, role)
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        pg_admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        pg_admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def pair(
    store: Store, upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    table = unique("held")
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    servers: list[Dbward] = []
    try:
        alpha, alpha_api = start_approvals_dbward(
            tmp_path_factory.mktemp("alpha"),
            upstream_db,
            policy=POLICY,
            extra=store.audit_config("alpha"),
        )
        servers.append(alpha)
        beta, beta_api = start_approvals_dbward(
            tmp_path_factory.mktemp("beta"),
            upstream_db,
            policy=POLICY,
            extra=store.audit_config("beta"),
        )
        servers.append(beta)
        yield Pair(
            store,
            alpha,
            alpha_api,
            beta,
            beta_api,
            alpha.token("alice", IdentityKind.SERVICE, ("dev",)),
            beta.token("bob", IdentityKind.SERVICE, ("dba",)),
            table,
        )
    finally:
        for server in servers:
            stop_dbward(server)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def psql_via(server: Dbward, sql: str) -> subprocess.Popen[str]:
    """psql as alice through ``server``, started; it blocks while its statement is held."""
    return subprocess.Popen(
        ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server.env("alice"),
    )


def held_request(pair: Pair, needle: str, psql: subprocess.Popen[str]) -> dict[str, Any]:
    """The pending request for the statement containing ``needle``, as beta's API shows it
    to bob."""

    def found() -> dict[str, Any] | None:
        if psql.poll() is not None:
            out, err = psql.communicate()
            raise AssertionError(f"psql ended before approval: {out}\n{err}")
        for request in pending(pair.beta_api, pair.bob):
            if needle in request["statement"]:
                return request
        return None

    request: dict[str, Any] = wait_for(found, timeout=15, what="the held statement's request")
    return request


def finish(psql: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = psql.communicate(timeout=30)
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.wait()
    return psql.returncode, out, err


def rows(pair: Pair) -> list[int]:
    with psycopg.connect(pair.alpha.upstream.dsn()) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {pair.table} ORDER BY id")]


def chain_events(pair: Pair, chain: str, request_id: str) -> list[tuple[str, str | None]]:
    """(kind, identity) of the chain's records about ``request_id``, in chain order."""
    found = pair.store.query(
        "SELECT kind, identity FROM dbward_audit.records WHERE chain = %s "
        "AND (data->>'request' = %s OR data->>'approval' = %s) ORDER BY seq",
        (chain, request_id, request_id),
    )
    return [(kind, identity) for kind, identity in found]


def wait_for_event(pair: Pair, chain: str, request_id: str, kind: str) -> None:
    wait_for(
        lambda: any(k == kind for k, _ in chain_events(pair, chain, request_id)),
        timeout=10,
        what=f"{kind} of {request_id} in {chain}",
    )


def test_a_statement_held_on_alpha_is_approved_through_beta(pair: Pair, tmp_path: Path) -> None:
    sql = f"DELETE FROM {pair.table} WHERE id = 1 RETURNING id, note"
    psql = psql_via(pair.alpha, sql)
    request = held_request(pair, f"DELETE FROM {pair.table} WHERE id = 1", psql)
    assert request["requester"] == "alice", request
    assert request["instance"] == "alpha-0", request
    assert request["rule"] == "deletes-need-approval", request
    assert rows(pair) == [1, 2, 3]  # nothing ran while held

    # each instance has its own token store: bob is known to beta only
    status, body = api(pair.alpha_api, pair.bob, "GET", "/api/v1/approvals")
    assert status == 401, body

    started = time.monotonic()
    result = cli(
        pair.beta_api,
        pair.bob,
        "approvals",
        "approve",
        request["id"],
        "--reason",
        "ok",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    assert f"approved {request['id']}: 1 of 1 approval(s); it is now approved" in " ".join(
        result.stderr.split()
    ), describe(result)

    code, out, err = finish(psql)
    assert code == 0, (out, err, log_tail(pair.alpha))
    assert out.splitlines() == ["1|one", "DELETE 1"], (out, err)
    assert f"held for approval (request {request['id']})" in err, err
    assert time.monotonic() - started < 10
    assert rows(pair) == [2, 3]

    wait_for_event(pair, "alpha-0", request["id"], "approval.executed")
    wait_for_event(pair, "alpha-0", request["id"], "statement")  # stored in batches
    wait_for_event(pair, "beta-0", request["id"], "approval.approved")
    alpha = chain_events(pair, "alpha-0", request["id"])
    beta = chain_events(pair, "beta-0", request["id"])
    assert ("approval.requested", "alice") in alpha, alpha
    assert ("approval.executed", "alice") in alpha, alpha
    assert ("statement", "alice") in alpha, alpha
    assert not any(kind.startswith("approval.approved") for kind, _ in alpha), alpha
    assert beta == [("approval.approved", "bob")], beta
    [statement] = pair.store.query(
        "SELECT data FROM dbward_audit.records WHERE chain = 'alpha-0' AND kind = 'statement' "
        "AND data->>'approval' = %s",
        (request["id"],),
    )
    assert statement[0]["statement"] == sql, statement
    assert statement[0].get("decision") != "deny", statement


def test_a_statement_held_on_alpha_is_rejected_through_beta(pair: Pair, tmp_path: Path) -> None:
    sql = f"DELETE FROM {pair.table} WHERE id = 3"
    psql = psql_via(pair.alpha, sql)
    request = held_request(pair, sql, psql)

    result = cli(
        pair.beta_api,
        pair.bob,
        "approvals",
        "reject",
        request["id"],
        "--reason",
        "not during the audit",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)

    code, out, err = finish(psql)
    assert code != 0, (out, err)
    expected = f"approval request {request['id']} was rejected by bob: not during the audit"
    assert expected in err, err
    assert 3 in rows(pair)

    wait_for_event(pair, "beta-0", request["id"], "approval.rejected")
    wait_for_event(pair, "alpha-0", request["id"], "statement")  # stored in batches
    alpha = chain_events(pair, "alpha-0", request["id"])
    beta = chain_events(pair, "beta-0", request["id"])
    assert ("approval.requested", "alice") in alpha, alpha
    assert ("statement", "alice") in alpha, alpha
    assert not any(kind == "approval.executed" for kind, _ in alpha), alpha
    assert beta == [("approval.rejected", "bob")], beta

    # alpha's own API sees the outcome too: one store
    status = cli(
        pair.alpha_api,
        pair.alpha.token("carol", IdentityKind.SERVICE, ("dba",)),
        "approvals",
        "show",
        request["id"],
        "--json",
        cwd=tmp_path,
    )
    assert status.returncode == 0, describe(status)
    assert '"status": "rejected"' in status.stdout, describe(status)


def public_key(server: Dbward, tmp: Path, name: str) -> Path:
    result = run_cli(server, "audit", "pubkey")
    assert result.returncode == 0, describe(result)
    path = tmp / f"{name}.pem"
    path.write_text(result.stdout)
    return path


def test_both_chains_verify_with_both_keys(pair: Pair, tmp_path: Path) -> None:
    keys = [public_key(pair.alpha, tmp_path, "alpha"), public_key(pair.beta, tmp_path, "beta")]
    chains = {row[0] for row in pair.store.query("SELECT DISTINCT chain FROM dbward_audit.records")}
    assert chains == {"alpha-0", "beta-0"}, chains
    args = [arg for key in keys for arg in ("--public-key", str(key))]
    for server in (pair.alpha, pair.beta):  # through either instance's config
        result = run_cli(server, "audit", "verify", "--json", *args)
        assert result.returncode == 0, describe(result)
        report = json.loads(result.stdout)
        assert report["ok"] is True, report
        assert {c["chain"] for c in report["chains"]} == {"alpha-0", "beta-0"}, report
        for chain in report["chains"]:
            assert chain["problem"] is None, chain
            assert chain["records"] >= 2, chain
        # and the plain report says so to a person
        result = run_cli(server, "audit", "verify", *args)
        assert result.returncode == 0, describe(result)
        assert "verified" in result.stdout, describe(result)
