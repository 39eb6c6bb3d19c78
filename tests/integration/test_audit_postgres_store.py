"""The PostgreSQL audit store (``audit.store: postgres``) end to end, with real clients.

The store lives on a throwaway PostgreSQL cluster of this module's own (password login
for the store's role, the password read from an environment variable), so a test can
stop it (``pg_ctl stop -m fast``) and start it again. Each test uses a fresh database on
it; the proxied upstream is the main test server. Everything goes through psycopg, psql
and the real ``dbward`` command, with the config file ``start_dbward`` wrote.

- Two instances (their own names, state directories and keyrings) write one store at
  the same time; each keeps its own chain, ``dbward audit verify`` checks each chain
  with the key of the instance that signed it, and search and lineage through one
  instance's config see the other's records too.
- Fail closed: while the store is down, statements in a production connection are
  refused (rule ``audit:store-unavailable``) but BEGIN/COMMIT/ROLLBACK, logins and
  staging connections keep working; once it is back, statements run again on the same
  connections and every record of the outage (refusals included) reaches the store.
- An outage longer than the writer's in-memory queue (``max_pending``, 10,000 records,
  not a config setting) loses nothing.
- ``dbward audit verify`` while the store is down fails with exit status 2, naming the
  store but never its password.

Also: a shared store verifies in one run with every instance's key; a store that hangs
rather than refuses fails closed too; an instance opens a store whose schema another
is creating, or that the store role owns without CREATE on the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbward.demo import embedded
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import psql, run_cli, unique, wait_for
from tests.integration.throwaway_pg import ThrowawayPg, throwaway_pg

PASSWORD_ENV = "DBWARD_TEST_AUDIT_STORE_PW"
STORE_ROLE = "dbward_audit_writer"
UNAVAILABLE = "audit:store-unavailable"
WRITER_MAX_PENDING = 10_000  # AuditWriter's default; dbward.yaml has no setting for it


# the store cluster ----------------------------------------------------------------------


@dataclass
class StoreCluster:
    """The throwaway cluster that holds the audit stores, and the store role's password."""

    pg: ThrowawayPg
    password: str

    def new_database(self, prefix: str) -> str:
        name = unique(prefix)
        self.pg.execute(f"CREATE DATABASE {name} OWNER {STORE_ROLE}")
        return name

    def audit_config(self, database: str, instance: str, **settings: Any) -> dict[str, Any]:
        """dbward.yaml's ``audit`` section for the store in ``database``."""
        return {
            "audit": {
                "store": "postgres",
                "instance": instance,
                "checkpoint_interval": 0.2,
                "postgres": {
                    "host": self.pg.host,
                    "port": self.pg.port,
                    "database": database,
                    "credentials": {"user": STORE_ROLE, "password_env": PASSWORD_ENV},
                    "sslmode": "disable",
                    "connect_timeout": 2,
                },
                **settings,
            }
        }

    def query(self, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows from the store, read as the superuser (over the unix socket)."""
        with psycopg.connect(self.pg.admin_conninfo(database), autocommit=True) as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def statements(self, database: str, chain: str) -> list[dict[str, Any]]:
        """The chain's statement records (their ``data``), in chain order."""
        rows = self.query(
            database,
            "SELECT data FROM dbward_audit.records WHERE chain = %s AND kind = 'statement'"
            " ORDER BY seq",
            (chain,),
        )
        return [row[0] for row in rows]

    def kinds(self, database: str, chain: str) -> Counter[str]:
        rows = self.query(
            database,
            "SELECT kind, count(*) FROM dbward_audit.records WHERE chain = %s GROUP BY kind",
            (chain,),
        )
        return Counter({kind: count for kind, count in rows})

    # stopping and starting, as an operator would -------------------------------------

    def _pg_ctl(self, *args: str) -> None:
        embedded._run(
            [str(self.pg.bin_dir / "pg_ctl"), "-D", str(self.pg.pgdata), *args],
            account=embedded._existing_account(self.pg.pgdata),
            what=f"pg_ctl {args[-1]}",
        )

    def running(self) -> bool:
        return (self.pg.pgdata / "postmaster.pid").exists()

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", str(self.pg.log_file), "-w", "-s", "start")

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The cluster is down for the block; it is running again afterwards, whatever
        the block did (a failed test leaves no stopped cluster behind)."""
        self.stop()
        try:
            yield
        finally:
            if not self.running():
                self.start()


@pytest.fixture(scope="module")
def store_cluster() -> Iterator[StoreCluster]:
    password = f"audit-store-secret-{secrets.token_hex(12)}"
    with throwaway_pg(hba=["host all all 127.0.0.1/32 scram-sha-256"]) as pg:
        pg.execute(f"CREATE ROLE {STORE_ROLE} LOGIN PASSWORD '{password}'")
        os.environ[PASSWORD_ENV] = password  # start_dbward passes the environment on
        try:
            yield StoreCluster(pg, password)
        finally:
            os.environ.pop(PASSWORD_ENV, None)


def connections(upstream: UpstreamDb) -> dict[str, Any]:
    """Two connections to the same upstream database: one fail-closed, one not."""

    def connection(environment: str) -> dict[str, Any]:
        return {
            "environment": environment,
            "host": upstream.host,
            "port": upstream.port,
            "database": upstream.name,
            "credentials": {"user": upstream.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
            "tls": {"mode": "prefer"},
        }

    return {"prod": connection("production"), "stage": connection("staging")}


def start_instance(
    tmp: Path, upstream: UpstreamDb, cluster: StoreCluster, database: str, instance: str
) -> Dbward:
    return start_dbward(
        tmp,
        upstream,
        connections=connections(upstream),
        extra_config=cluster.audit_config(database, instance),
    )


# the command line -------------------------------------------------------------------------


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def verify_json(server: Dbward, *args: str) -> tuple[int, dict[str, Any]]:
    """``dbward audit verify --json``: its exit status and its report."""
    result = run_cli(server, "audit", "verify", "--json", *args)
    assert result.returncode in (0, 1), describe(result)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is (result.returncode == 0), describe(result)
    return result.returncode, report


def chain_report(report: dict[str, Any], chain: str) -> dict[str, Any]:
    found = [c for c in report["chains"] if c["chain"] == chain]
    assert len(found) == 1, (chain, report["chains"])
    return found[0]


def assert_complete(report: dict[str, Any], chain: str, records: int) -> None:
    """``chain`` verified: ``records`` records from seq 1 on, all signed, no problem."""
    found = chain_report(report, chain)
    assert found["problem"] is None, found
    assert found["records"] == records, found
    assert (found["first_seq"], found["last_seq"]) == (1, records), found
    assert found["signed_seq"] == records, found  # the shutdown checkpoint covers them all
    assert found["unsigned"] == 0, found


def public_key(server: Dbward, tmp: Path) -> Path:
    """The instance's public key, saved as its docs say: ``dbward audit pubkey > key.pem``."""
    result = run_cli(server, "audit", "pubkey")
    assert result.returncode == 0, describe(result)
    path = tmp / f"{server.config_path.parent.name}.pem"
    path.write_text(result.stdout)
    return path


def search(server: Dbward, *filters: str) -> list[dict[str, Any]]:
    result = run_cli(server, "audit", "search", "--json", "-n", "10000", *filters)
    assert result.returncode == 0, describe(result)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def store_records(cluster: StoreCluster, database: str, chain: str) -> int:
    rows = cluster.query(
        database, "SELECT count(*) FROM dbward_audit.records WHERE chain = %s", (chain,)
    )
    return int(rows[0][0])


# 1. two instances, one store --------------------------------------------------------------

CONNECTIONS_PER_INSTANCE = 4
STATEMENTS_PER_CONNECTION = 80  # half INSERTs, half SELECTs


@dataclass
class SharedStore:
    database: str
    table: str
    servers: dict[str, Dbward]  # instance name -> its dbward (stopped by now)
    identities: dict[str, str]  # instance name -> the identity its clients used
    statements: dict[str, int]  # instance name -> statements its clients ran


def run_workload(server: Dbward, identity: str, table: str, tag: str, worker: int) -> int:
    """One client connection's statements; how many it ran."""
    ran = 0
    marker = f"{tag}-{worker}"
    with psycopg.connect(server.dsn(identity, database="stage"), autocommit=True) as conn:
        for n in range(STATEMENTS_PER_CONNECTION // 2):
            conn.execute(f"INSERT INTO {table} (marker, n) VALUES ('{marker}', {n})")
            (count,) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE marker = '{marker}'"
            ).fetchone() or (None,)
            assert count == n + 1
            ran += 2
    return ran


@pytest.fixture(scope="module")
def shared_store(
    store_cluster: StoreCluster,
    upstream_db: UpstreamDb,
    tmp_path_factory: pytest.TempPathFactory,
) -> SharedStore:
    """Instances ``alpha`` and ``beta`` serve clients at the same time, then stop."""
    database = store_cluster.new_database("audit_shared")
    table = unique("shared")
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (marker text NOT NULL, n int NOT NULL)")
    identities = {"alpha": "svc-alpha", "beta": "svc-beta"}
    servers: dict[str, Dbward] = {}
    try:
        for instance in identities:
            servers[instance] = start_instance(
                tmp_path_factory.mktemp(instance), upstream_db, store_cluster, database, instance
            )
            servers[instance].token(identities[instance])
        with ThreadPoolExecutor(2 * CONNECTIONS_PER_INSTANCE) as pool:
            futures = {
                instance: [
                    pool.submit(run_workload, server, identities[instance], table, instance, worker)
                    for worker in range(CONNECTIONS_PER_INSTANCE)
                ]
                for instance, server in servers.items()
            }
            ran = {instance: sum(f.result() for f in fs) for instance, fs in futures.items()}
    finally:
        for server in servers.values():
            stop_dbward(server)  # graceful: everything stored, the heads signed
    for server in servers.values():
        assert server.proc.returncode == 0, server.log()
    return SharedStore(database, table, servers, identities, ran)


def test_each_instance_keeps_its_own_chain_in_the_shared_store(
    shared_store: SharedStore, store_cluster: StoreCluster
) -> None:
    db = shared_store.database
    for instance, ran in shared_store.statements.items():
        assert ran == CONNECTIONS_PER_INSTANCE * STATEMENTS_PER_CONNECTION
        assert store_cluster.kinds(db, f"{instance}-0") == {
            "connection.start": CONNECTIONS_PER_INSTANCE,
            "statement": ran,
            "connection.end": CONNECTIONS_PER_INSTANCE,
        }
        identities = store_cluster.query(
            db,
            "SELECT DISTINCT identity FROM dbward_audit.records WHERE chain = %s",
            (f"{instance}-0",),
        )
        assert identities == [(shared_store.identities[instance],)]
    chains = store_cluster.query(db, "SELECT DISTINCT chain FROM dbward_audit.records ORDER BY 1")
    assert chains == [("alpha-0",), ("beta-0",)]


def test_verify_checks_each_instances_chain_with_that_instances_key(
    shared_store: SharedStore, store_cluster: StoreCluster, tmp_path: Path
) -> None:
    """Each instance's chain verifies completely with that instance's key: through its own
    config, and through the other instance's config with ``--public-key``."""
    servers = shared_store.servers
    other = {"alpha": servers["beta"], "beta": servers["alpha"]}
    for instance, server in servers.items():
        chain = f"{instance}-0"
        expected = store_records(store_cluster, shared_store.database, chain)
        assert expected == shared_store.statements[instance] + 2 * CONNECTIONS_PER_INSTANCE
        key = public_key(server, tmp_path)
        for report in (
            verify_json(server)[1],
            verify_json(other[instance], "--public-key", str(key))[1],
        ):
            assert {c["chain"] for c in report["chains"]} == {"alpha-0", "beta-0"}
            assert_complete(report, chain, expected)


def test_verify_of_a_shared_store_passes_with_every_instances_key(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    keys = [public_key(server, tmp_path) for server in shared_store.servers.values()]
    args = [arg for key in keys for arg in ("--public-key", str(key))]
    status, report = verify_json(shared_store.servers["alpha"], *args)
    assert status == 0, report


def test_search_and_who_touched_see_every_instance(shared_store: SharedStore) -> None:
    total = CONNECTIONS_PER_INSTANCE * STATEMENTS_PER_CONNECTION
    identities = shared_store.identities
    for instance, server in shared_store.servers.items():  # through either instance's config
        found = search(server, "--event", "statement", "--environment", "staging")
        assert Counter(r["identity"] for r in found) == {
            identities["alpha"]: total,
            identities["beta"]: total,
        }
        assert {r["target"] for r in found} == {"stage"}
        [other] = set(identities) - {instance}
        inserts = search(server, "--text", f"VALUES ('{other}-0'")
        assert len(inserts) == STATEMENTS_PER_CONNECTION // 2
        assert {r["identity"] for r in inserts} == {identities[other]}

        result = run_cli(server, "audit", "who-touched", shared_store.table, "--json")
        assert result.returncode == 0, describe(result)
        touched = {(t["key"], t["access"]): t["statements"] for t in json.loads(result.stdout)}
        assert touched == {
            (identity, access): total // 2
            for identity in identities.values()
            for access in ("read", "write")
        }


# 2. fail closed while the store is down -------------------------------------------------


@dataclass
class Sent:
    """A statement a client sent during the test, and whether it ran."""

    text: str
    ran: bool


def outcome(conn: psycopg.Connection[Any], text: str) -> tuple[Sent, psycopg.Error | None]:
    try:
        conn.execute(text)
    except psycopg.Error as exc:
        return Sent(text, False), exc
    return Sent(text, True), None


def assert_refused_for_audit(error: psycopg.Error | None) -> None:
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), repr(error)
    message = str(error)
    assert "cannot write its audit store" in message, message
    assert UNAVAILABLE in message, message
    assert "'production'" in message, message


def test_production_fails_closed_while_the_store_is_down(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    database = store_cluster.new_database("audit_fail_closed")
    server = start_instance(tmp_path, upstream_db, store_cluster, database, "closed")
    sent: list[Sent] = []
    try:
        prod = psycopg.connect(server.dsn(database="prod"), autocommit=True)
        stage = psycopg.connect(server.dsn(database="stage"), autocommit=True)
        with prod, stage:
            sent.append(outcome(prod, "SELECT 'before-outage'")[0])
            assert sent[-1].ran

            with store_cluster.outage():
                # The writer notices at its next attempt to store: poll, in a transaction.
                deadline = time.monotonic() + 3
                while True:
                    sent.append(outcome(prod, "BEGIN")[0])
                    assert sent[-1].ran, "BEGIN must run while the store is down"
                    done, error = outcome(prod, f"SELECT 'outage-{len(sent)}'")
                    sent.append(done)
                    if not done.ran:
                        break
                    sent.append(outcome(prod, "COMMIT")[0])
                    assert time.monotonic() < deadline, "SELECTs still run 3 s into the outage"
                    time.sleep(0.05)
                assert_refused_for_audit(error)
                sent.append(outcome(prod, "ROLLBACK")[0])
                assert sent[-1].ran, "ROLLBACK must run while the store is down"
                done, error = outcome(prod, "SELECT 'outage-again'")
                sent.append(done)
                assert_refused_for_audit(error)

                # The proxy keeps serving: a new production session logs in (and is
                # refused statements), a staging session keeps running them.
                with psycopg.connect(server.dsn(database="prod"), autocommit=True) as late:
                    done, error = outcome(late, "SELECT 'outage-new-session'")
                    sent.append(done)
                    assert_refused_for_audit(error)
                for n in range(5):
                    done, error = outcome(stage, f"SELECT 'outage-staging-{n}'")
                    sent.append(done)
                    assert done.ran, error
                staging_psql = psql(
                    server,
                    "-c",
                    "SELECT 'outage-staging-psql'",
                    env=server.env(database="stage"),
                )
                assert "outage-staging-psql" in staging_psql.stdout
                sent.append(Sent("SELECT 'outage-staging-psql'", True))
                assert store_cluster.running() is False

            # Back: statements run again on the same production session.
            deadline = time.monotonic() + 10
            while True:
                done, error = outcome(prod, f"SELECT 'after-outage-{len(sent)}'")
                sent.append(done)
                if done.ran:
                    break
                assert_refused_for_audit(error)
                assert time.monotonic() < deadline, "still refused 10 s after the store is back"
                time.sleep(0.1)
            sent.append(outcome(prod, "SELECT 'after-outage-last'")[0])
            assert sent[-1].ran

        def every_statement_stored() -> list[dict[str, Any]] | None:
            found = store_cluster.statements(database, "closed-0")
            return found if len(found) >= len(sent) else None

        wait_for(every_statement_stored, timeout=10, what="the outage's records in the store")
    finally:
        stop_dbward(server)
    assert server.proc.returncode == 0, server.log()

    stored = store_cluster.statements(database, "closed-0")
    by_text = Counter(r["statement"] for r in stored)
    for statement in sent:
        if statement.text in ("BEGIN", "COMMIT", "ROLLBACK"):
            continue
        assert by_text[statement.text] == 1, (statement, by_text)
        [record] = [r for r in stored if r["statement"] == statement.text]
        if statement.ran:
            assert record["decision"] == "allow", record
        else:
            assert (record["decision"], record["rule"]) == ("deny", UNAVAILABLE), record
            assert "audit store" in record["reason"], record
    assert sum(not s.ran for s in sent) >= 3  # the first refusal, one more, a new session
    for keyword in ("BEGIN", "COMMIT", "ROLLBACK"):
        records = [r for r in stored if r["statement"] == keyword]
        assert len(records) == sum(s.text == keyword for s in sent), keyword
        assert all(r["decision"] == "allow" for r in records), records

    status, report = verify_json(server)
    assert status == 0, report
    assert_complete(report, "closed-0", store_records(store_cluster, database, "closed-0"))
    assert "journal" not in report["source"], report["source"]  # nothing left behind
    assert "audit store write failed" in server.log()
    assert "audit store writable again" in server.log()


def test_production_fails_closed_when_the_store_stops_answering(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    """Not refused, just silent: the store's server process is frozen (SIGSTOP), as when
    its host drops off the network. Production statements are refused within seconds."""
    database = store_cluster.new_database("audit_silent")
    server = start_instance(tmp_path, upstream_db, store_cluster, database, "silent")
    try:
        with psycopg.connect(server.dsn(database="prod"), autocommit=True) as prod:
            prod.execute("SELECT 'before'")
            backends = [
                row[0]
                for row in store_cluster.query(
                    database,
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = 'dbward audit store' AND datname = %s",
                    (database,),
                )
            ]
            assert backends, "dbward holds no connection to its store"
            for pid in backends:
                os.kill(pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 8
                error: psycopg.Error | None = None
                while error is None and time.monotonic() < deadline:
                    error = outcome(prod, "SELECT 'store silent'")[1]
                    time.sleep(0.1)
                assert error is not None, "production statements still run 8 s into the outage"
                assert_refused_for_audit(error)
            finally:
                for pid in backends:
                    os.kill(pid, signal.SIGCONT)
    finally:
        stop_dbward(server)


# 3. an outage longer than the writer's queue ----------------------------------------------


def test_an_outage_past_max_pending_loses_no_record(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    """More records than the writer keeps in memory (it then reads them back from the
    journal); staging keeps running while the store is down."""
    database = store_cluster.new_database("audit_long_outage")
    server = start_instance(tmp_path, upstream_db, store_cluster, database, "long")
    count = WRITER_MAX_PENDING + 1500
    try:
        with psycopg.connect(server.dsn(database="stage"), autocommit=True) as stage:
            stage.execute("SELECT 'before-outage'")
            with store_cluster.outage():
                started = time.monotonic()
                with stage.pipeline():
                    for n in range(count):
                        stage.execute(f"SELECT {n} AS during_outage")
                took = time.monotonic() - started
                wait_for(
                    lambda: "audit store write failed" in server.log(),
                    what="the writer to notice the outage",
                )
            stage.execute("SELECT 'after-outage'")
        expected = count + 2

        def all_stored() -> bool:
            return len(store_cluster.statements(database, "long-0")) >= expected

        wait_for(all_stored, timeout=20, what=f"{expected} statement records in the store")
    finally:
        stop_dbward(server)
    assert server.proc.returncode == 0, server.log()
    assert took < 30, f"{count} statements took {took:.1f} s"

    stored = store_cluster.statements(database, "long-0")
    texts = [r["statement"] for r in stored]
    assert texts == [
        "SELECT 'before-outage'",
        *(f"SELECT {n} AS during_outage" for n in range(count)),
        "SELECT 'after-outage'",
    ]
    status, report = verify_json(server)
    assert status == 0, report
    assert_complete(report, "long-0", store_records(store_cluster, database, "long-0"))


# 4. verify while the store is down -------------------------------------------------------


def test_verify_while_the_store_is_down_names_the_store_not_its_password(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    database = store_cluster.new_database("audit_down")
    server = start_instance(tmp_path, upstream_db, store_cluster, database, "down")
    outputs: list[str] = []
    try:
        with psycopg.connect(server.dsn(database="stage"), autocommit=True) as stage:
            stage.execute("SELECT 'before-outage'")
            with store_cluster.outage():
                # The running instance fails to store (and logs it) too.
                stage.execute("SELECT 'during-outage'")
                wait_for(
                    lambda: "audit store write failed" in server.log(),
                    what="the writer to log the failed write",
                )
                for args in (["--json"], [], ["--public-key", str(public_key(server, tmp_path))]):
                    result = run_cli(server, "audit", "verify", *args)
                    outputs.append(result.stdout + result.stderr)
                    assert result.returncode == 2, describe(result)
                    said = " ".join(result.stdout.split() + result.stderr.split())
                    store = f"{store_cluster.pg.host}:{store_cluster.pg.port}/{database}"
                    assert f"cannot open the PostgreSQL audit store ({store})" in said, said
                    assert "Traceback" not in said, said
                for command in (["audit", "search"], ["audit", "who-touched", "t"]):
                    result = run_cli(server, *command)
                    outputs.append(result.stdout + result.stderr)
                    assert result.returncode == 2, describe(result)
    finally:
        stop_dbward(server)
    outputs.append(server.log())
    for text in outputs:  # also across a line break a console may have put in it
        assert store_cluster.password not in "".join(text.split())
    assert store_cluster.password not in server.config_path.read_text()
    assert store_cluster.password not in store_cluster.pg.log_file.read_text(errors="replace")


# the store's schema, created by whichever instance comes first ----------------------------


def start_in_background(
    tmp: Path, upstream: UpstreamDb, cluster: StoreCluster, database: str, instance: str
) -> tuple[threading.Thread, dict[str, Any]]:
    """``start_instance`` in a thread; the dict gets ``server`` or ``error``."""
    tmp.mkdir()
    outcome: dict[str, Any] = {}

    def start() -> None:
        try:
            outcome["server"] = start_instance(tmp, upstream, cluster, database, instance)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=start)
    thread.start()
    return thread, outcome


def test_an_instance_starts_while_another_is_creating_the_schema(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    """Two instances opening a fresh store at the same moment: the second one's
    ``CREATE SCHEMA`` meets the first one's, not yet committed. The moment is made to
    last by doing the first instance's step in a transaction of the test's own."""
    database = store_cluster.new_database("audit_race")
    first = psycopg.connect(store_cluster.pg.admin_conninfo(database))
    server: Dbward | None = None
    try:
        # As another instance would (same role), in a transaction not yet committed:
        first.execute(f"CREATE SCHEMA dbward_audit AUTHORIZATION {STORE_ROLE}")
        thread, started = start_in_background(
            tmp_path / "second", upstream_db, store_cluster, database, "second"
        )

        def waiting_on_the_schema() -> bool:
            rows = store_cluster.query(
                database,
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'dbward audit store'"
                " AND wait_event_type = 'Lock'",
            )
            return bool(rows) or not thread.is_alive()

        wait_for(waiting_on_the_schema, timeout=15, what="the second instance to open the store")
        first.commit()
        thread.join()
        server = started.get("server")
        log = (tmp_path / "second" / "dbward.log").read_text(errors="replace")
        assert server is not None, f"{started.get('error')!r}\n{log[-2000:]}"
        with psycopg.connect(server.dsn(database="stage"), autocommit=True) as conn:
            conn.execute("SELECT 'second'")
    finally:
        first.close()
        if server is not None:
            stop_dbward(server)


def test_a_store_role_that_owns_the_schema_needs_no_create_on_the_database(
    store_cluster: StoreCluster, upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    database = store_cluster.new_database("audit_least_privilege")
    store_cluster.pg.execute(
        f"ALTER DATABASE {database} OWNER TO postgres",
        f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {database} TO {STORE_ROLE}",
    )
    store_cluster.pg.execute(
        f"CREATE SCHEMA dbward_audit AUTHORIZATION {STORE_ROLE}", database=database
    )
    try:
        server = start_instance(tmp_path, upstream_db, store_cluster, database, "least")
    except RuntimeError as exc:  # dbward exited: its log says why
        log = (tmp_path / "dbward.log").read_text(errors="replace")
        raise AssertionError(f"dbward did not start: {exc}\n{log[-2000:]}") from None
    try:
        with psycopg.connect(server.dsn(database="stage"), autocommit=True) as conn:
            conn.execute("SELECT 'least privilege'")
    finally:
        stop_dbward(server)
    assert store_cluster.statements(database, "least-0")
