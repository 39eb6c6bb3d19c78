"""TLS between clients and dbward: configured and generated certificates, plaintext rules, GSS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tests.conftest as conftest
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.throwaway_pg import (
    GSSENC_REQUEST,
    SSL_REQUEST,
    CertAuthority,
    WireClient,
    parse_error,
)

WHO = "SELECT current_user, 1 + 1"


def start_with_listeners(
    tmp: Path, upstream: UpstreamDb, *listeners: dict[str, Any]
) -> tuple[Dbward, list[int]]:
    """``start_dbward`` with listeners of the test's making, each on a free port.

    ``start_dbward`` waits for the port it picked itself, so it is handed the first one.
    """
    ports = [conftest.free_port() for _ in listeners]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conftest, "free_port", lambda: ports[0])
        server = start_dbward(
            tmp,
            upstream,
            extra_config={
                "listeners": [
                    {"host": "127.0.0.1", "port": port, **listener}
                    for port, listener in zip(ports, listeners, strict=True)
                ]
            },
        )
    for port in ports[1:]:
        conftest.wait_for_port(port, proc=server.proc)
    return server, ports


def start_with_listener(tmp: Path, upstream: UpstreamDb, **listener: Any) -> Dbward:
    return start_with_listeners(tmp, upstream, listener)[0]


@pytest.fixture(scope="module")
def client_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority.create(tmp_path_factory.mktemp("client_ca"), "dbward test client-side CA")


@pytest.fixture(scope="module")
def configured(
    upstream_db: UpstreamDb, client_ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    """dbward whose listener serves a certificate issued by the test CA."""
    tmp = tmp_path_factory.mktemp("configured")
    cert, key = client_ca.issue(tmp / "tls", "dbward", dns=["localhost"], ips=["127.0.0.1"])
    server = start_with_listener(
        tmp, upstream_db, tls={"cert_file": str(cert), "key_file": str(key)}
    )
    yield server
    stop_dbward(server)


@pytest.fixture(scope="module")
def plaintext_allowed(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    server = start_with_listener(
        tmp_path_factory.mktemp("plaintext"), upstream_db, require_tls=False
    )
    yield server
    stop_dbward(server)


def who(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(WHO).fetchone()
        assert conn.pgconn.ssl_in_use == ("sslmode=disable" not in dsn)
    assert row is not None
    return tuple(row)


# configured certificate ---------------------------------------------------------------------


def test_configured_certificate_verify_full_psycopg(
    configured: Dbward, client_ca: CertAuthority
) -> None:
    dsn = configured.dsn(
        sslmode="verify-full", sslrootcert=str(client_ca.ca_file), host="localhost"
    )
    assert who(dsn) == (configured.upstream.role, 2)
    # No generated material is used when a pair is configured.
    assert not configured.ca_file.exists()


def test_configured_certificate_verify_full_psql(
    configured: Dbward, client_ca: CertAuthority
) -> None:
    env = {
        **configured.env(),
        "PGHOST": "localhost",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(client_ca.ca_file),
    }
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-c", "SELECT current_user"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == configured.upstream.role


def test_configured_certificate_fails_verify_full_with_another_ca(
    configured: Dbward, client_ca: CertAuthority, tmp_path: Path
) -> None:
    stranger = CertAuthority.create(tmp_path, "a CA dbward's certificate is not from")
    dsn = configured.dsn(sslmode="verify-full", sslrootcert=str(stranger.ca_file))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn, connect_timeout=10).close()
    # A client that gives up on the handshake is routine: dbward goes on serving, and
    # says so in a line, not with a traceback as for a failure of its own.
    good = configured.dsn(sslmode="verify-full", sslrootcert=str(client_ca.ca_file))
    assert who(good) == (configured.upstream.role, 2)
    assert configured.proc.poll() is None
    assert "Traceback" not in configured.log(), configured.log()[-3000:]


def test_each_listener_serves_its_own_certificate(
    upstream_db: UpstreamDb, client_ca: CertAuthority, tmp_path: Path
) -> None:
    cert, key = client_ca.issue(tmp_path / "tls", "second", dns=["localhost"], ips=["127.0.0.1"])
    server, (_, configured_port) = start_with_listeners(
        tmp_path,
        upstream_db,
        {},
        {"tls": {"cert_file": str(cert), "key_file": str(key)}},
    )
    try:
        generated = server.dsn(sslmode="verify-full", sslrootcert=str(server.ca_file))
        assert who(generated) == (upstream_db.role, 2)
        configured = server.dsn(
            sslmode="verify-full", sslrootcert=str(client_ca.ca_file), port=str(configured_port)
        )
        assert who(configured) == (upstream_db.role, 2)
    finally:
        stop_dbward(server)


# generated certificate ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_generated_certificate_verify_full(dbward: Dbward, host: str) -> None:
    assert dbward.ca_file.exists()
    dsn = dbward.dsn(sslmode="verify-full", sslrootcert=str(dbward.ca_file), host=host)
    assert who(dsn) == (dbward.upstream.role, 2)


def test_generated_certificate_fails_verify_full_for_another_name(dbward: Dbward) -> None:
    dsn = dbward.dsn(
        sslmode="verify-full",
        sslrootcert=str(dbward.ca_file),
        host="not-dbward.invalid",
        hostaddr="127.0.0.1",
    )
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(dsn, connect_timeout=10).close()


# plaintext ----------------------------------------------------------------------------------


def test_require_tls_false_accepts_sslmode_disable(plaintext_allowed: Dbward) -> None:
    assert who(plaintext_allowed.dsn(sslmode="disable")) == (plaintext_allowed.upstream.role, 2)
    starts = [e for e in plaintext_allowed.audit() if e["kind"] == "connection.start"]
    assert starts[-1]["data"]["tls"] is None


def test_default_listener_refuses_sslmode_disable(dbward: Dbward) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(dbward.dsn(sslmode="disable"), connect_timeout=10).close()
    message = str(refused.value)
    assert "dbward accepts only TLS connections" in message, message
    assert "sslmode=require" in message, message
    # libpq keeps only the text; the SQLSTATE and hint are read off the wire.
    with WireClient(dbward.port) as client:
        client.startup(user="app-svc", database="app")
        kind, body = client.read()
    assert kind == b"E"
    error = parse_error(body)
    assert (error.severity, error.sqlstate) == ("FATAL", "28000")
    assert "sslmode=require" in error.hint
    assert dbward.token() not in dbward.log()


# GSSAPI encryption --------------------------------------------------------------------------


def test_gssenc_request_is_declined_and_the_client_continues(dbward: Dbward) -> None:
    with WireClient(dbward.port) as client:
        assert client.request(GSSENC_REQUEST) == b"N"
        assert client.request(SSL_REQUEST) == b"S"
        client.start_tls(cafile=dbward.ca_file, server_hostname="localhost")
        client.startup(user="app-svc", database="app", application_name="raw-gss")
        kind, body = client.read()
        assert (kind, body) == (b"R", b"\0\0\0\3")  # cleartext password, inside TLS
        client.password(dbward.token())
        startup = client.read_until(b"EZ")
        assert startup[0] == (b"R", b"\0\0\0\0"), startup  # AuthenticationOk
        assert startup[-1] == (b"Z", b"I"), startup
        client.query("SELECT 'after gssenc'")
        answer = client.read_until(b"Z")
    kinds = [kind for kind, _ in answer]
    assert kinds == [b"T", b"D", b"C", b"Z"], answer
    assert answer[1][1].endswith(b"after gssenc")


def test_gssencmode_prefer_connects(dbward: Dbward) -> None:
    # With GSS support in libpq but no credentials it skips the request; either way it works.
    assert who(dbward.dsn(gssencmode="prefer")) == (dbward.upstream.role, 2)
