"""Shared fixtures: the real PostgreSQL the tests use, and dbward run as a real process.

The PostgreSQL server is named by ``DBWARD_TEST_PG`` (a libpq connection
string; default: the local server on 127.0.0.1:5432 as ``postgres``). A
missing server is an error, never a skip.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore

PG_DSN = os.environ.get("DBWARD_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"the test PostgreSQL ({PG_DSN}) is not reachable: {exc}; start it or set "
            "DBWARD_TEST_PG"
        )
    yield conn
    conn.close()


@dataclass
class UpstreamDb:
    """A database of its own for one test module, with a role that has a password."""

    name: str
    role: str
    password: str
    host: str
    port: int

    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} dbname={self.name} user={self.role} "
            f"password={self.password}"
        )


@pytest.fixture(scope="module")
def upstream_db(pg_admin: psycopg.Connection[Any]) -> Iterator[UpstreamDb]:
    suffix = secrets.token_hex(4)
    name, role = f"dbw_test_{suffix}", f"dbw_role_{suffix}"
    password = f"upstream-secret-{secrets.token_hex(8)}"
    info = pg_admin.info
    pg_admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg_admin.execute(f"CREATE DATABASE {name} OWNER {role}")
    yield UpstreamDb(name, role, password, info.host, info.port)
    pg_admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_admin.execute(f"DROP ROLE IF EXISTS {role}")


@dataclass
class Dbward:
    """dbward running as a real process (``python -m dbward serve``)."""

    port: int
    state_dir: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    upstream: UpstreamDb
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "tls" / "ca.crt"

    def token(
        self,
        name: str = "app-svc",
        kind: IdentityKind = IdentityKind.SERVICE,
        groups: tuple[str, ...] = ("eng",),
        ttl: float | None = 3600,
    ) -> str:
        if name not in self.tokens:
            with TokenStore(self.state_dir / "tokens.db") as store:
                self.tokens[name] = store.create(name, kind, groups, ttl)[0]
        return self.tokens[name]

    def dsn(
        self,
        user: str = "app-svc",
        *,
        database: str = "app",
        sslmode: str = "require",
        password: str | None = None,
        **extra: str,
    ) -> str:
        secret = password if password is not None else self.token(user)
        parts = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "dbname": database,
            "user": user,
            "password": secret,
            "sslmode": sslmode,
            **extra,
        }
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def url(
        self, user: str = "app-svc", *, scheme: str = "postgresql", database: str = "app"
    ) -> str:
        return (
            f"{scheme}://{user}:{self.token(user)}@127.0.0.1:{self.port}/{database}?sslmode=require"
        )

    def env(self, user: str = "app-svc", database: str = "app") -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGDATABASE": database,
            "PGUSER": user,
            "PGPASSWORD": self.token(user),
            "PGSSLMODE": "require",
        }

    def audit(self) -> list[dict[str, Any]]:
        """Every committed audit record: the store, plus what the journal holds beyond it.

        The journal is read first: a segment deleted meanwhile is already in the store.
        A record's ``id`` here is its place in its chain (with several chains, made
        unique by the chain's index), stable from one call to the next.
        """
        import sqlite3

        from dbward.audit.chain import ChainRecord
        from dbward.audit.journal import Journal, journal_segments

        records: dict[tuple[str, int], ChainRecord] = {}
        for segment in journal_segments(self.state_dir / "audit-journal"):
            try:
                records.update(((r.chain, r.seq), r) for r in Journal.read(segment))
            except FileNotFoundError:
                continue
        db = sqlite3.connect(self.state_dir / "audit.db")
        try:
            stored = db.execute("SELECT chain, seq, hash, line FROM records").fetchall()
        finally:
            db.close()
        records.update(((row[0], row[1]), ChainRecord(*row)) for row in stored)
        chains = sorted({chain for chain, _ in records})
        result = []
        for (chain, seq), record in sorted(records.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            e = record.stored().event
            result.append(
                {
                    "id": seq * 64 + chains.index(chain),
                    "chain": chain,
                    "seq": seq,
                    "ts": e.ts,
                    "kind": e.kind.value,
                    "session_id": e.session_id,
                    "identity": e.identity,
                    "identity_kind": e.identity_kind,
                    "target": e.target,
                    "source": e.source,
                    "data": e.data,
                }
            )
        return result

    def statements(self) -> list[dict[str, Any]]:
        return [e for e in self.audit() if e["kind"] == "statement"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_dbward(
    tmp: Path,
    upstream: UpstreamDb,
    *,
    extra_config: dict[str, Any] | None = None,
    connections: dict[str, Any] | None = None,
    environment: str = "staging",
    policy: str | None = None,
    statement_literals: str = "keep",
) -> Dbward:
    """dbward in front of ``upstream``; ``policy`` is the policy file's YAML text.

    Statement text is recorded as sent (``statement_literals: keep``) unless the
    test asks for the default placeholders: most tests find records by text.
    """
    port = free_port()
    state = tmp / "state"
    config: dict[str, Any] = {
        "state_dir": str(state),
        "listeners": [{"host": "127.0.0.1", "port": port}],
        "connections": connections
        or {
            "app": {
                "environment": environment,
                "host": upstream.host,
                "port": upstream.port,
                "database": upstream.name,
                "credentials": {"user": upstream.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
                "tls": {"mode": "prefer"},
            }
        },
        "limits": {"startup_timeout": 3, "drain_timeout": 10},
    }
    if policy is not None or statement_literals != "placeholders":
        text = policy if policy is not None else "version: 1\n"
        if statement_literals != "placeholders" and "statement_literals" not in text:
            text += f"audit:\n  statement_literals: {statement_literals}\n"
        (tmp / "policy.yaml").write_text(text)
        config["policy"] = {"file": "policy.yaml", "reload_interval": 0.2}
    config.update(extra_config or {})
    port = config["listeners"][0]["port"]  # extra_config may bring its own listeners
    config_path = tmp / "dbward.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp / "dbward.log"
    env = {**os.environ, "DBWARD_TEST_UPSTREAM_PW": upstream.password}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dbward",
                "serve",
                "--config",
                str(config_path),
                "--log-level",
                "debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    wait_for_port(port, proc=proc)
    return Dbward(port, state, config_path, log_path, proc, upstream)


def stop_dbward(server: Dbward) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def dbward(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    server = start_dbward(tmp_path_factory.mktemp("dbward"), upstream_db)
    yield server
    stop_dbward(server)
