"""``dbward login`` and ``dbward connect`` end to end, with a real OpenID Connect provider.

The provider is oidc-provider under Node (tests/oidc_provider.py); dbward trusts it
(``identity.oidc`` with audience ``dbward-cli``) and names it for ``dbward login``
(``identity.login_client_id``). The person is played by the fixture: the test reads the
user code ``dbward login`` prints and approves (or denies) it at the provider.

- ``dbward login`` runs the device flow, keeps the tokens in
  ``$XDG_CONFIG_HOME/dbward/login.json`` (0600) and says who signed in; a denial at the
  provider ends it with a clear error and nothing saved.
- Later commands send the saved ID token as bearer: ``dbward approvals list`` and
  ``dbward access request`` work with no ``DBWARD_TOKEN``.
- ``dbward connect app`` runs psql with a one-time credential; ``--uri`` prints a URI a
  client (psycopg) connects with once, and a second time is refused. A credential is
  refused for another connection, for another user, and once expired.
- The trail: ``credential.issued``, and the sessions as alice@example.com with the
  provider ``credential:oidc:<issuer>``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from tests.conftest import Dbward, UpstreamDb, stop_dbward
from tests.integration.approvals_helpers import start_approvals_dbward
from tests.integration.helpers import log_tail, run_cli, wait_for
from tests.oidc_provider import OidcProvider

ALICE = "alice@example.com"
ACCOUNTS = {
    ALICE: {"groups": ["dev"], "name": "Alice"},
    "bob@example.com": {"groups": ["dba"], "name": "Bob"},
}
USER_CODE = re.compile(r"enter the code\s+(\S+)")
LOGIN_TIMEOUT = 60.0


def dbward_config(idp: OidcProvider, **identity: Any) -> dict[str, Any]:
    return {
        "identity": {
            "oidc": [
                {
                    "issuer": idp.issuer,
                    "audience": [idp.client_id],
                    "username_claim": "email",
                    "groups_claim": "groups",
                }
            ],
            "login_client_id": idp.client_id,
            **identity,
        }
    }


def connections(upstream: UpstreamDb) -> dict[str, Any]:
    """``app`` and ``other`` (plain), ``gated`` (just-in-time access)."""

    def connection(**extra: Any) -> dict[str, Any]:
        return {
            "environment": "staging",
            "host": upstream.host,
            "port": upstream.port,
            "database": upstream.name,
            "credentials": {"user": upstream.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
            "tls": {"mode": "prefer"},
            **extra,
        }

    gated = {"roles": {"read": {"approvers": {"group": ["dba"]}}}}
    return {"app": connection(), "other": connection(), "gated": connection(access=gated)}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(ACCOUNTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def server(
    idp: OidcProvider, upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dbward, str]]:
    started, base = start_approvals_dbward(
        tmp_path_factory.mktemp("login"),
        upstream_db,
        extra=dbward_config(idp),
        connections=connections(upstream_db),
    )
    yield started, base
    stop_dbward(started)


def person_env(xdg: Path, **extra: str) -> dict[str, str]:
    """The environment of a person at a terminal: no dbward token, their own config dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBWARD_", "PG"))}
    env.update(XDG_CONFIG_HOME=str(xdg), **extra)
    return env


def dbward_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbward", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


class LoginRun:
    """``dbward login --api URL`` running; its stderr read as it comes."""

    def __init__(self, base: str, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbward", "login", "--api", base],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._err: list[str] = []
        self._out: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def user_code(self) -> str:
        def found() -> str | None:
            match = USER_CODE.search(self.stderr)
            if match is None and self.proc.poll() is not None:
                raise AssertionError(f"dbward login exited {self.proc.returncode}: {self.stderr}")
            return match[1] if match else None

        code: str = wait_for(found, timeout=30, what="dbward login's user code")
        return code

    def finish(self) -> tuple[int, str, str]:
        """Its exit status, stdout and stderr once it exits."""
        try:
            self.proc.wait(LOGIN_TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode, "".join(self._out), self.stderr


@pytest.fixture(scope="module")
def signed_in(
    server: tuple[Dbward, str], idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int, str, str]:
    """alice signed in with ``dbward login``: (XDG dir, exit status, stdout, stderr)."""
    _, base = server
    home = tmp_path_factory.mktemp("alice")
    xdg = home / "xdg"
    run = LoginRun(base, person_env(xdg), home)
    code = run.user_code()
    idp.approve_device(code, ALICE)
    status, out, err = run.finish()
    return xdg, status, out, err


def alice_env(signed_in: tuple[Path, int, str, str]) -> dict[str, str]:
    return person_env(signed_in[0])


def uri_for(signed_in: tuple[Path, int, str, str], connection: str, cwd: Path, *api: str) -> str:
    """``dbward connect CONNECTION --uri`` as alice: the URI it printed."""
    args = ["connect", connection, "--uri"]
    if api:
        args += ["--api", api[0]]
    result = dbward_cli(alice_env(signed_in), *args, cwd=cwd)
    assert result.returncode == 0, describe(result)
    uri = result.stdout.strip()
    assert uri.startswith("postgresql://"), describe(result)
    return uri


# dbward login --------------------------------------------------------------------------


def test_login_runs_the_device_flow_and_saves_the_sign_in(
    server: tuple[Dbward, str], idp: OidcProvider, signed_in: tuple[Path, int, str, str]
) -> None:
    _, base = server
    xdg, status, out, err = signed_in
    assert status == 0, (out, err)
    text = " ".join((out + err).split())
    assert f"open {idp.verification_uri}" in text, text
    assert "signed in as alice@example.com (groups: dev)" in text, text

    path = xdg / "dbward" / "login.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert {"api", "issuer", "client_id", "id_token", "refresh_token", "expires_at"} <= set(saved)
    assert saved["api"] == base
    assert saved["issuer"] == idp.issuer
    assert saved["client_id"] == "dbward-cli"
    assert saved["id_token"].count(".") == 2
    assert saved["refresh_token"], saved.keys()
    assert time.time() + 600 < saved["expires_at"] < time.time() + 3700


def test_commands_use_the_saved_sign_in_as_bearer(
    signed_in: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    """No DBWARD_TOKEN and no DBWARD_API: the API address and the ID token come from
    login.json, and the API sees alice as a person."""
    env = alice_env(signed_in)
    asked = dbward_cli(
        env,
        "access",
        "request",
        "gated",
        "--role",
        "read",
        "--reason",
        "checking a report",
        "--json",
        cwd=tmp_path,
    )
    assert asked.returncode == 0, describe(asked)
    request = json.loads(asked.stdout)
    assert (request["requester"], request["requester_kind"]) == (ALICE, "human"), request

    listed = dbward_cli(env, "approvals", "list", "--kind", "access", "--json", cwd=tmp_path)
    assert listed.returncode == 0, describe(listed)
    assert [r["id"] for r in json.loads(listed.stdout)] == [request["id"]], listed.stdout
    wide = {**env, "COLUMNS": "200"}  # rich shortens cells to fit 80 columns otherwise
    table = dbward_cli(wide, "approvals", "list", "--kind", "access", cwd=tmp_path)
    assert table.returncode == 0, describe(table)
    assert request["id"] in table.stdout, describe(table)

    # with no sign-in at all the same command says what to do
    nobody = dbward_cli(
        person_env(tmp_path / "nobody", DBWARD_API="http://127.0.0.1:9"),
        "approvals",
        "list",
        cwd=tmp_path,
    )
    assert nobody.returncode == 2, describe(nobody)
    assert "not signed in: run dbward login" in said(nobody), describe(nobody)


def test_a_denial_at_the_provider_fails_the_login(
    server: tuple[Dbward, str], idp: OidcProvider, tmp_path: Path
) -> None:
    _, base = server
    xdg = tmp_path / "xdg"
    run = LoginRun(base, person_env(xdg), tmp_path)
    idp.deny_device(run.user_code(), ALICE)
    status, out, err = run.finish()
    assert status != 0, (out, err)
    assert "sign-in was refused at the identity provider" in " ".join(err.split()), err
    assert "signed in as" not in out + err
    assert not (xdg / "dbward" / "login.json").exists()


# dbward connect ------------------------------------------------------------------------


def test_connect_runs_psql_with_a_one_time_credential(
    server: tuple[Dbward, str], signed_in: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    dbward, _ = server
    result = dbward_cli(
        alice_env(signed_in),
        "connect",
        "app",
        "--",
        "-X",
        "-A",
        "-t",
        "-c",
        "select 42",
        "-c",
        "select current_user",
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result) + log_tail(dbward)
    assert result.stdout.split() == ["42", dbward.upstream.role], describe(result)


def test_connect_uri_connects_once(
    server: tuple[Dbward, str], signed_in: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    dbward, _ = server
    uri = uri_for(signed_in, "app", tmp_path)
    parts = urlsplit(uri)
    assert unquote(parts.username or "") == ALICE
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", dbward.port, "/app")
    assert parts.query == "sslmode=require"
    assert unquote(parts.password or "").startswith("dbwc_")

    with psycopg.connect(uri, connect_timeout=10) as conn:
        assert conn.execute("select 'once'").fetchone() == ("once",)
        assert conn.info.parameter_status("server_version")
    with pytest.raises(psycopg.OperationalError) as again:
        psycopg.connect(uri, connect_timeout=10)
    assert "this one-time credential was already used: run dbward connect again" in str(
        again.value
    ), again.value


def test_a_credential_is_bound_to_its_connection_and_user(
    server: tuple[Dbward, str], signed_in: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    uri = uri_for(signed_in, "app", tmp_path)
    to_other = uri.replace("/app?", "/other?")
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(to_other, connect_timeout=10)
    assert "this credential was issued for connection 'app', not 'other'" in str(refused.value)

    as_bob = uri.replace("alice%40example.com:", "bob%40example.com:")
    assert as_bob != uri
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(as_bob, connect_timeout=10)
    assert "this credential was issued to 'alice@example.com'" in str(refused.value)

    # refusals do not use it up: on its own connection, as its user, it still works once
    with psycopg.connect(uri, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="already used"):
        psycopg.connect(uri, connect_timeout=10)


def test_an_unknown_connection_gets_no_credential(
    signed_in: tuple[Path, int, str, str], tmp_path: Path
) -> None:
    result = dbward_cli(alice_env(signed_in), "connect", "nope", "--uri", cwd=tmp_path)
    assert result.returncode == 2, describe(result)
    assert "(404): no connection named 'nope' is configured" in said(result), describe(result)


def test_an_expired_credential_is_refused(
    idp: OidcProvider,
    upstream_db: UpstreamDb,
    signed_in: tuple[Path, int, str, str],
    tmp_path: Path,
) -> None:
    """A dbward whose credentials live one second; alice's sign-in works there too (the
    same provider), given its address with --api."""
    (tmp_path / "short").mkdir()
    short, base = start_approvals_dbward(
        tmp_path / "short",
        upstream_db,
        extra=dbward_config(idp, credential_ttl=1),
        connections=connections(upstream_db),
    )
    try:
        uri = uri_for(signed_in, "app", tmp_path, base)
        assert f":{short.port}/app" in uri
        time.sleep(2.0)
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(uri, connect_timeout=10)
        assert "this one-time credential expired: run dbward connect again" in str(refused.value)
        failed = wait_for(
            lambda: [e for e in short.audit() if e["kind"] == "login.failed"],
            what="login.failed",
        )
        assert failed[0]["data"]["user"] == ALICE, failed
    finally:
        stop_dbward(short)


def test_the_trail_shows_credentials_and_who_connected(
    server: tuple[Dbward, str], idp: OidcProvider, signed_in: tuple[Path, int, str, str]
) -> None:
    dbward, _ = server
    events = dbward.audit()
    issued = [e for e in events if e["kind"] == "credential.issued"]
    assert len(issued) >= 3, issued  # connect (psql), --uri twice
    for event in issued:
        assert event["identity"] == ALICE, event
        assert event["identity_kind"] == "human", event
        assert event["target"] == "app", event
        assert event["source"] == "api", event
        assert event["data"]["provider"] == f"oidc:{idp.issuer}", event
        assert event["data"]["expires"] > event["ts"] + 3000, event
        assert not any("dbwc_" in str(value) for value in event["data"].values()), event

    starts = [e for e in events if e["kind"] == "connection.start"]
    assert len(starts) >= 3, starts
    for event in starts:
        assert event["identity"] == ALICE, event
        assert event["data"]["identity_provider"] == f"credential:oidc:{idp.issuer}", event
        assert event["data"]["groups"] == ["dev"], event
    assert {e["target"] for e in starts} == {"app"}, starts
    statements = [e["data"]["statement"] for e in dbward.statements() if e["identity"] == ALICE]
    assert "select 42" in statements, statements
    assert "select 'once'" in statements, statements

    refused = [e for e in events if e["kind"] == "login.failed"]
    reasons = " | ".join(e["data"]["reason"] for e in refused)
    assert "already used" in reasons, reasons
    assert "not 'other'" in reasons, reasons

    result = run_cli(dbward, "audit", "verify")
    assert result.returncode == 0, describe(result)
