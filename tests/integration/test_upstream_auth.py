"""dbward authenticating to an upstream of the test's own: SCRAM, md5, cleartext, TLS modes.

Two throwaway clusters: ``pg`` with ssl=on (certificate from a test CA) and one role per
password method, and ``plain`` with ssl=off. One dbward process serves every case, one
connection name per case.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.throwaway_pg import (
    SSL_REQUEST,
    CertAuthority,
    ServerError,
    ThrowawayPg,
    WireClient,
    parse_error,
    throwaway_pg,
)

DATABASE = "authdb"
WHO = "SELECT current_user, s.ssl, s.version FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"


@dataclass
class Setup:
    pg: ThrowawayPg
    plain: ThrowawayPg
    ca: CertAuthority
    other_ca: CertAuthority
    server: Dbward
    passwords: dict[str, str]
    wrong_password: str


def _password(role: str) -> str:
    return f"{role}-secret-{secrets.token_hex(8)}"


def _write_secret(directory: Path, name: str, value: str) -> Path:
    path = directory / f"{name}.password"
    path.write_text(value)
    path.chmod(0o600)
    return path


def _connection(
    pg: ThrowawayPg, user: str, password_file: Path, tls: dict[str, Any]
) -> dict[str, Any]:
    return {
        "environment": "production",
        "host": pg.host,
        "port": pg.port,
        "database": DATABASE,
        "credentials": {"user": user, "password_file": str(password_file)},
        "tls": tls,
        "connect_timeout": 5,
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("upstream_auth")
    ca = CertAuthority.create(tmp / "ca", "dbward test upstream CA")
    other_ca = CertAuthority.create(tmp / "other_ca", "some other CA")
    certificate = ca.issue(tmp / "ca", "server", dns=["localhost"], ips=["127.0.0.1"])
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(
            throwaway_pg(
                hba=[
                    "host all scram_user 127.0.0.1/32 scram-sha-256",
                    "host all md5_user 127.0.0.1/32 md5",
                    "host all clear_user 127.0.0.1/32 password",
                ],
                certificate=certificate,
            )
        )
        plain = stack.enter_context(
            throwaway_pg(hba=["host all plain_user 127.0.0.1/32 scram-sha-256"])
        )
        passwords = {role: _password(role) for role in ("scram_user", "md5_user", "clear_user")}
        passwords["plain_user"] = _password("plain_user")
        pg.execute(
            "SET password_encryption = 'scram-sha-256'",
            f"CREATE ROLE scram_user LOGIN PASSWORD '{passwords['scram_user']}'",
            f"CREATE ROLE clear_user LOGIN PASSWORD '{passwords['clear_user']}'",
            "SET password_encryption = 'md5'",
            f"CREATE ROLE md5_user LOGIN PASSWORD '{passwords['md5_user']}'",
            f"CREATE DATABASE {DATABASE}",
        )
        stored = dict(pg.execute("SELECT rolname, rolpassword FROM pg_authid"))
        assert stored["md5_user"].startswith("md5")
        assert stored["scram_user"].startswith("SCRAM-SHA-256$")
        plain.execute(
            f"CREATE ROLE plain_user LOGIN PASSWORD '{passwords['plain_user']}'",
            f"CREATE DATABASE {DATABASE}",
        )
        secrets_dir = tmp / "secrets"
        secrets_dir.mkdir()
        files = {role: _write_secret(secrets_dir, role, pw) for role, pw in passwords.items()}
        wrong_password = f"wrong-{secrets.token_hex(12)}"
        wrong_file = _write_secret(secrets_dir, "wrong", wrong_password)
        verify_full = {"mode": "verify-full", "ca_file": str(ca.ca_file)}
        connections = {
            "scram": _connection(pg, "scram_user", files["scram_user"], {"mode": "prefer"}),
            "md5": _connection(pg, "md5_user", files["md5_user"], {"mode": "prefer"}),
            "clear": _connection(pg, "clear_user", files["clear_user"], {"mode": "prefer"}),
            "verified": _connection(pg, "scram_user", files["scram_user"], verify_full),
            "verified_localhost": _connection(
                pg, "md5_user", files["md5_user"], {**verify_full, "server_name": "localhost"}
            ),
            "other_ca": _connection(
                pg,
                "scram_user",
                files["scram_user"],
                {"mode": "verify-full", "ca_file": str(other_ca.ca_file)},
            ),
            "wrong_name": _connection(
                pg, "scram_user", files["scram_user"], {**verify_full, "server_name": "db.invalid"}
            ),
            "verify_ca_wrong_name": _connection(
                pg,
                "scram_user",
                files["scram_user"],
                {"mode": "verify-ca", "ca_file": str(ca.ca_file), "server_name": "db.invalid"},
            ),
            "wrong_password": _connection(pg, "scram_user", wrong_file, {"mode": "require"}),
            "plain_require": _connection(
                plain, "plain_user", files["plain_user"], {"mode": "require"}
            ),
            "plain_prefer": _connection(
                plain, "plain_user", files["plain_user"], {"mode": "prefer"}
            ),
        }
        upstream = UpstreamDb(DATABASE, "scram_user", passwords["scram_user"], pg.host, pg.port)
        (tmp / "dbward").mkdir()
        server = start_dbward(tmp / "dbward", upstream, connections=connections)
        stack.callback(stop_dbward, server)
        yield Setup(pg, plain, ca, other_ca, server, passwords, wrong_password)


def query_through(server: Dbward, connection: str) -> tuple[Any, ...]:
    with psycopg.connect(server.dsn(database=connection), connect_timeout=10) as conn:
        row = conn.execute(WHO).fetchone()
    assert row is not None
    return tuple(row)


def refusal(server: Dbward, connection: str) -> str:
    """The message libpq reports when dbward refuses the connection."""
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(server.dsn(database=connection), connect_timeout=10).close()
    return str(info.value)


def raw_refusal(server: Dbward, connection: str) -> ServerError:
    """The ErrorResponse dbward sends at startup, field by field (libpq drops the SQLSTATE)."""
    with WireClient(server.port) as client:
        assert client.request(SSL_REQUEST) == b"S"
        client.start_tls()
        client.startup(user="app-svc", database=connection)
        kind, body = client.read()
        assert kind == b"R"
        assert body[:4] == b"\0\0\0\3"
        client.password(server.token())
        messages = client.read_until(b"EZ")
    kind, body = messages[-1]
    assert kind == b"E", f"expected an ErrorResponse, got {messages}"
    return parse_error(body)


def assert_still_serving(setup: Setup) -> None:
    assert setup.server.proc.poll() is None, setup.server.log()[-3000:]
    assert query_through(setup.server, "scram")[0] == "scram_user"


def assert_upstream_failure_audited(setup: Setup, connection: str) -> None:
    failed = [
        e for e in setup.server.audit() if e["kind"] == "login.failed" and e["target"] == connection
    ]
    assert failed, f"no login.failed record for {connection}"
    assert failed[-1]["data"]["stage"] == "upstream", failed


def server_log_since(pg: ThrowawayPg, offset: int) -> str:
    with pg.log_file.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


@pytest.mark.parametrize(
    ("connection", "role", "method"),
    [
        ("scram", "scram_user", "scram-sha-256"),
        ("md5", "md5_user", "md5"),
        ("clear", "clear_user", "password"),
    ],
)
def test_password_methods(setup: Setup, connection: str, role: str, method: str) -> None:
    offset = setup.pg.log_file.stat().st_size
    user, ssl_used, _ = query_through(setup.server, connection)
    assert user == role
    assert ssl_used is True  # tls.mode prefer, and the server offers TLS
    # The server really asked for that method (log_connections names it).
    log = server_log_since(setup.pg, offset)
    assert re.search(rf'identity="{role}" method={re.escape(method)}\b', log), log[-2000:]


def test_verify_full_with_the_test_ca(setup: Setup) -> None:
    user, ssl_used, version = query_through(setup.server, "verified")
    assert (user, ssl_used) == ("scram_user", True)
    assert version.startswith("TLSv1.")
    # The same backend as seen from the server: dbward's upstream connection uses TLS.
    with psycopg.connect(setup.server.dsn(database="verified_localhost")) as conn:
        row = conn.execute(WHO).fetchone()
        assert row is not None
        assert row[:2] == ("md5_user", True)
        rows = setup.pg.execute(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.usename = 'md5_user' AND a.application_name LIKE 'app-svc via dbward%' "
            "AND a.state IS NOT NULL"
        )
        assert (True,) in rows
        assert (False,) not in rows
    start = [
        e
        for e in setup.server.audit()
        if e["kind"] == "connection.start" and e["target"] == "verified"
    ]
    assert start
    assert start[-1]["data"]["upstream_tls"].startswith("TLSv1.")


def test_verify_ca_ignores_the_name(setup: Setup) -> None:
    assert query_through(setup.server, "verify_ca_wrong_name")[:2] == ("scram_user", True)


def test_verify_full_with_another_ca_fails_clearly(setup: Setup) -> None:
    message = refusal(setup.server, "other_ca")
    assert "dbward cannot open connection other_ca" in message, message
    assert re.search(r"certificate verif", message, re.IGNORECASE), message
    error = raw_refusal(setup.server, "other_ca")
    assert error.severity == "FATAL"
    assert error.sqlstate.startswith("08"), error
    assert_upstream_failure_audited(setup, "other_ca")
    assert_still_serving(setup)


def test_verify_full_with_a_wrong_server_name_fails_clearly(setup: Setup) -> None:
    message = refusal(setup.server, "wrong_name")
    assert "dbward cannot open connection wrong_name" in message, message
    assert re.search(r"host ?name", message, re.IGNORECASE), message
    assert "db.invalid" in message, message
    assert_upstream_failure_audited(setup, "wrong_name")
    assert_still_serving(setup)


def test_require_against_a_server_without_tls_fails_clearly(setup: Setup) -> None:
    message = refusal(setup.server, "plain_require")
    assert "does not accept TLS" in message, message
    assert "require" in message, message
    error = raw_refusal(setup.server, "plain_require")
    assert (error.severity, error.sqlstate) == ("FATAL", "08006")
    assert_still_serving(setup)


def test_prefer_falls_back_to_plaintext(setup: Setup) -> None:
    user, ssl_used, version = query_through(setup.server, "plain_prefer")
    assert (user, ssl_used, version) == ("plain_user", False, None)
    start = [
        e
        for e in setup.server.audit()
        if e["kind"] == "connection.start" and e["target"] == "plain_prefer"
    ]
    assert start
    assert start[-1]["data"]["upstream_tls"] is None


def test_wrong_upstream_password_is_relayed_without_the_password(setup: Setup) -> None:
    message = refusal(setup.server, "wrong_password")
    assert "upstream refused dbward's connection" in message, message
    assert 'password authentication failed for user "scram_user"' in message, message
    error = raw_refusal(setup.server, "wrong_password")
    assert (error.severity, error.sqlstate) == ("FATAL", "08006")
    assert "upstream refused" in error.message
    failed = [
        e
        for e in setup.server.audit()
        if e["kind"] == "login.failed" and e["target"] == "wrong_password"
    ]
    assert failed
    assert failed[-1]["data"]["stage"] == "upstream"
    log = setup.server.log()
    assert "upstream refused" in log
    for secret in (setup.wrong_password, *setup.passwords.values()):
        assert secret not in log
        assert secret not in message
        assert all(secret not in str(e) for e in setup.server.audit())
    assert_still_serving(setup)
