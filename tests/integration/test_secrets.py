"""Secrets stay secret: the upstream password and client tokens never leave dbward.

A workload (good and failed logins, errors, psql ``\\conninfo``, ``SHOW ALL``,
``pg_settings``, ``dbward audit tail``, ``dbward token list``) runs through
dbward; then every file in its state directory (SQLite WAL files included),
its log and everything a client saw are searched for the secrets.

Upstream passwords come from the environment (the shared test server, which
trusts 127.0.0.1, so the password is a secret but not checked) and from a
``password_file`` (an embedded PostgreSQL with SCRAM, which does check it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbward.codec.pg.backend import ReadyForQuery
from dbward.demo.embedded import EmbeddedPostgres, start_embedded_postgres
from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.test_bad_input import login, refused_login, wait_for_event


def run_psql(server: Dbward, command: str, *, user: str = "app-svc") -> str:
    env = {**server.env(user), "PGCONNECT_TIMEOUT": "10"}
    result = subprocess.run(
        ["psql", "-X", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def run_cli(server: Dbward, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dbward", *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def workload(server: Dbward) -> tuple[list[str], list[str]]:
    """Use dbward every way a client or operator would; return (outputs, secrets sent)."""
    outputs: list[str] = []
    sent = [server.token("app-svc"), server.token("agent-x", kind=IdentityKind.AGENT)]

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        outputs.append(repr(conn.execute("SELECT current_user, version()").fetchall()))
        for bad_sql in ("SELECT 1/0", "SELEC 1", "SELECT 'x'::int", "SELECT * FROM no_table"):
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(bad_sql)
            outputs.append(f"{caught.value!r} {caught.value.diag.message_primary}")
        outputs.append(repr(conn.execute("SHOW ALL").fetchall()))
        outputs.append(repr(conn.execute("SELECT * FROM pg_settings").fetchall()))
        outputs.append(repr(conn.info.get_parameters()))
    with psycopg.connect(server.dsn("agent-x"), autocommit=True) as conn:
        outputs.append(repr(conn.execute("SELECT session_user").fetchall()))

    outputs.append(run_psql(server, r"\conninfo"))
    outputs.append(run_psql(server, "SHOW ALL"))
    outputs.append(run_psql(server, "SELECT * FROM pg_settings"))
    outputs.append(run_psql(server, "SELECT * FROM pg_stat_activity"))

    never_issued = "dbw_" + secrets.token_urlsafe(32)[:43]
    sent.append(never_issued)
    for user, secret, database in [
        ("app-svc", never_issued, "app"),
        ("app-svc", "plain-password-" + secrets.token_hex(8), "app"),
        ("someone-else", server.token("app-svc"), "app"),
        ("app-svc", server.token("app-svc"), "no_such_db"),
    ]:
        error = refused_login(server.port, user, secret, database)
        outputs.append(repr(error))
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(server.dsn(user, database=database, password=secret))
        outputs.append(str(caught.value))
    sock, messages = login(server.port, "app-svc", server.token("app-svc"))
    sock.close()
    assert isinstance(messages[-1], ReadyForQuery)
    outputs.append(repr(messages))

    wait_for_event(server, lambda e: e["kind"] == "login.failed" and e["target"] == "no_such_db")
    outputs.append(run_cli(server, "audit", "tail", "-n", "1000"))
    outputs.append(run_cli(server, "audit", "tail", "-n", "1000", "--json"))
    outputs.append(run_cli(server, "token", "list", "--all"))
    return outputs, sent


def state_files(server: Dbward) -> dict[Path, bytes]:
    files = {path: path.read_bytes() for path in server.state_dir.rglob("*") if path.is_file()}
    assert server.state_dir / "audit.db" in files
    return files


def assert_absent(
    secret: str, server: Dbward, outputs: list[str], files: dict[Path, bytes]
) -> None:
    needle = secret.encode()
    leaked = [str(path) for path, data in files.items() if needle in data]
    assert not leaked, f"a secret is in dbward's state files: {leaked}"
    assert secret not in server.log(), "a secret is in dbward's log"
    shown = [text[:200] for text in outputs if secret in text]
    assert not shown, f"a secret reached a client or operator: {shown}"


def check_no_leaks(server: Dbward, secrets_: list[str], outputs: list[str]) -> None:
    """While dbward runs (WAL files present) and after it stopped (checkpointed)."""
    running = state_files(server)
    assert any(path.name.endswith("-wal") for path in running), sorted(running)
    for secret in secrets_:
        assert_absent(secret, server, outputs, running)
    stop_dbward(server)
    assert server.proc.returncode == 0, server.log()[-2000:]
    stopped = state_files(server)
    for secret in secrets_:
        assert_absent(secret, server, outputs, stopped)


def test_upstream_password_and_tokens_never_leak(upstream_db: UpstreamDb, tmp_path: Path) -> None:
    server = start_dbward(tmp_path, upstream_db)
    try:
        outputs, sent = workload(server)
        assert any("SSL connection" in text for text in outputs)  # \conninfo ran
        check_no_leaks(server, [upstream_db.password, *sent], outputs)
    finally:
        stop_dbward(server)


# -- password_file, against a server that checks passwords ---------------------------------


@pytest.fixture(scope="module")
def scram_pg() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's basetemp: a pytest run starting meanwhile makes that 0700 again,
    # and the server's unprivileged account (when run as root) could not reach its data.
    data_dir = Path(tempfile.mkdtemp(prefix="dbward-scram-pg-"))
    try:
        server = start_embedded_postgres(data_dir / "pg")
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def secret_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path


def _connection(pg: EmbeddedPostgres, password_file: Path) -> dict[str, Any]:
    return {
        "environment": "production",
        "host": pg.host,
        "port": pg.port,
        "database": pg.database,
        "credentials": {"user": pg.user, "password_file": str(password_file)},
        "tls": {"mode": "prefer"},
    }


def test_password_file_credentials(scram_pg: EmbeddedPostgres, tmp_path: Path) -> None:
    assert scram_pg.password is not None
    password = scram_pg.password
    wrong = "wrong-" + secrets.token_hex(12)
    good_file = secret_file(tmp_path / "upstream.password", password)
    wrong_file = secret_file(tmp_path / "wrong.password", wrong)
    assert good_file.stat().st_mode & 0o777 == 0o600

    # The server really checks passwords: without one, or with the wrong one, no entry.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(scram_pg.conninfo().replace(password, wrong), connect_timeout=5)

    upstream = UpstreamDb(
        name=scram_pg.database,
        role=scram_pg.user,
        password="not-the-password",  # what the fixture puts in DBWARD_TEST_UPSTREAM_PW
        host=scram_pg.host,
        port=scram_pg.port,
    )
    (tmp_path / "dbward").mkdir()
    server = start_dbward(
        tmp_path / "dbward",
        upstream,
        connections={
            "app": _connection(scram_pg, good_file),
            "wrong": _connection(scram_pg, wrong_file),
        },
    )
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_user, application_name FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert row is not None
        assert row[0] == scram_pg.user
        assert row[1].startswith("app-svc via dbward")

        error = refused_login(server.port, "app-svc", server.token(), "wrong")
        assert error.message.startswith("dbward cannot open connection wrong: "), error.message
        assert "password authentication failed" in error.message, error.message
        assert scram_pg.user in error.message
        event = wait_for_event(
            server, lambda e: e["kind"] == "login.failed" and e["target"] == "wrong"
        )
        assert event["data"]["stage"] == "upstream"
        assert "password authentication failed" in event["data"]["reason"]
        assert "password authentication failed" in server.log()
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(server.dsn(database="wrong"), connect_timeout=10)

        outputs, sent = workload(server)
        outputs += [repr(error), str(caught.value)]
        check_no_leaks(server, [password, wrong, *sent], outputs)
    finally:
        stop_dbward(server)
