"""pgbench through dbward: initialisation (COPY), select-only in each protocol, TPC-B-like."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import psycopg
import pytest

from tests.conftest import Dbward
from tests.integration.helpers import log_tail, run_client, statements

ACCOUNTS = 100_000  # scale 1


def pgbench(dbward: Dbward, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_client(["pgbench", *args], dbward.env(user), timeout=90)
    assert result.returncode == 0, (
        f"pgbench {args} exited with {result.returncode}\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}\ndbward log (tail):\n{log_tail(dbward)}"
    )
    return result


def upstream_scalar(dbward: Dbward, query: str) -> Any:
    with psycopg.connect(dbward.upstream.dsn()) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def processed(output: str) -> tuple[int, int]:
    match = re.search(r"number of transactions actually processed: (\d+)/(\d+)", output)
    assert match, output
    return int(match[1]), int(match[2])


@pytest.fixture(scope="module")
def initialised(dbward: Dbward) -> subprocess.CompletedProcess[str]:
    return pgbench(dbward, "bench-init", "-i", "-s", "1", "-q")


def test_init_loads_the_tables_through_copy(
    dbward: Dbward, initialised: subprocess.CompletedProcess[str]
) -> None:
    assert "done in" in initialised.stderr
    assert upstream_scalar(dbward, "SELECT count(*) FROM pgbench_accounts") == ACCOUNTS
    assert upstream_scalar(dbward, "SELECT count(*) FROM pgbench_branches") == 1
    assert upstream_scalar(dbward, "SELECT count(*) FROM pgbench_tellers") == 10

    init = statements(dbward, identity="bench-init")
    [copy] = [s for s in init if s["data"]["statement"].lower().startswith("copy pgbench_accounts")]
    assert copy["data"]["tags"] == [f"COPY {ACCOUNTS}"]
    assert copy["data"]["rows"] == ACCOUNTS
    assert copy["data"]["protocol"] == "simple"
    texts = [s["data"]["statement"].lower() for s in init]
    assert any(t.startswith("create table pgbench_accounts") for t in texts)
    assert any("alter table pgbench_accounts add primary key" in t for t in texts)
    assert any(t.startswith("vacuum analyze pgbench_accounts") for t in texts)
    assert all("sqlstate" not in s["data"] for s in init)
    assert {s["identity_kind"] for s in init} == {"service"}


@pytest.mark.parametrize("clients", [1, 4])
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_select_only(
    dbward: Dbward, initialised: subprocess.CompletedProcess[str], mode: str, clients: int
) -> None:
    user = f"bench-{mode}-{clients}"
    result = pgbench(
        dbward, user, "-n", "-S", "-t", "200", "-M", mode, "-c", str(clients), "-j", str(clients)
    )
    total = 200 * clients
    assert processed(result.stdout) == (total, total)
    assert f"query mode: {mode}" in result.stdout
    assert f"number of clients: {clients}" in result.stdout
    assert "number of failed transactions: 0" in result.stdout

    selects = statements(dbward, "FROM pgbench_accounts WHERE aid", identity=user)
    assert len(selects) == total
    assert len({s["session_id"] for s in selects}) == clients
    assert all(s["data"]["rows"] == 1 and s["data"]["tags"] == ["SELECT 1"] for s in selects)
    assert all("sqlstate" not in s["data"] for s in selects)
    protocols = {s["data"]["protocol"] for s in selects}
    texts = {s["data"]["statement"] for s in selects}
    if mode == "simple":
        assert protocols == {"simple"}
        assert all("$1" not in t for t in texts)  # pgbench put the literal aid in the text
        assert len(texts) > 1
    else:
        assert protocols == {"extended"}
        assert texts == {"SELECT abalance FROM pgbench_accounts WHERE aid = $1;"}
    prepared = {s["data"].get("prepared") for s in selects}
    if mode == "prepared":
        assert None not in prepared
        assert len(prepared) == 1  # each client named its statement the same
    else:
        assert prepared == {None}


def test_tpcb_like(dbward: Dbward, initialised: subprocess.CompletedProcess[str]) -> None:
    user = "bench-tpcb"
    history_before = upstream_scalar(dbward, "SELECT count(*) FROM pgbench_history")
    balance_before = upstream_scalar(dbward, "SELECT sum(bbalance) FROM pgbench_branches")
    result = pgbench(dbward, user, "-n", "-t", "50", "-c", "2", "-j", "2")
    assert processed(result.stdout) == (100, 100)
    assert "TPC-B (sort of)" in result.stdout

    assert upstream_scalar(dbward, "SELECT count(*) FROM pgbench_history") == history_before + 100
    delta = upstream_scalar(dbward, "SELECT sum(delta) FROM pgbench_history")
    assert (
        upstream_scalar(dbward, "SELECT sum(bbalance) FROM pgbench_branches")
        == balance_before + delta
    )

    # pgbench's own catalog look-ups first, then the 100 transactions
    records = [
        r for r in statements(dbward, identity=user) if "pg_catalog" not in r["data"]["statement"]
    ]
    by_verb: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        verb = record["data"]["statement"].split()[0].upper().rstrip(";")
        by_verb.setdefault(verb, []).append(record)
    assert len(by_verb["BEGIN"]) == 100
    assert len(by_verb["END"]) == 100
    assert {tuple(r["data"]["tags"]) for r in by_verb["END"]} == {("COMMIT",)}
    assert len(by_verb["UPDATE"]) == 300
    assert all(r["data"]["rows"] == 1 for r in by_verb["UPDATE"])
    assert len(by_verb["SELECT"]) == 101  # with pgbench's count(*) of the branches
    assert sum("abalance FROM pgbench_accounts" in r["data"]["statement"] for r in records) == 100
    inserts = by_verb["INSERT"]
    assert len(inserts) == 100
    assert all(r["data"]["tags"] == ["INSERT 0 1"] for r in inserts)
    assert all("sqlstate" not in r["data"] for r in records)
