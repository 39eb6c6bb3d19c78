"""OIDC login end to end: a local identity provider, dbward, psql.

The provider is an ``http.server`` on 127.0.0.1 serving an OpenID discovery
document and a JWKS; ID tokens are signed with an RSA key made here and
PyJWT. psql logs in with the token as its password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dbward.codec.pg.backend import ReadyForQuery
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.test_bad_input import login, refused_login, wait_for_event

USER = "dev@example.com"
GROUPS = ["eng", "dba"]

REFETCH_SECONDS = 3.0  # dbward's least time between JWKS refetches, set short here


class IdentityProvider:
    """Discovery document and JWKS over HTTP; signs tokens with its current key."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        self._published = [self._jwk(self.key, self.kid)]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        assert isinstance(jwk, dict)
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    provider.requests.append((time.monotonic(), self.path))
                    keys = list(provider._published)
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": provider.issuer,
                        "jwks_uri": provider.issuer + "/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/jwks":
                    body = {"keys": keys}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @property
    def jwks_fetches(self) -> list[float]:
        with self._lock:
            return [at for at, path in self.requests if path == "/jwks"]

    def rotate(self) -> None:
        """Switch to a new signing key; the old one is no longer published."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self.key, self.kid = key, "key-2"
            self._published = [self._jwk(key, self.kid)]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "dbward",
            "sub": "00u-dev-1",
            "email": USER,
            "groups": GROUPS,
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return claims

    def token(self, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides), self.key, algorithm="RS256", headers={"kid": self.kid}
        )

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hs256_token(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def oidc_dbward(
    idp: IdentityProvider, upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    server = start_dbward(
        tmp_path_factory.mktemp("dbward-oidc"),
        upstream_db,
        extra_config={
            "identity": {
                "oidc": [
                    {
                        "issuer": idp.issuer,
                        "audience": "dbward",
                        "groups_claim": "groups",
                        "jwks_refetch_seconds": REFETCH_SECONDS,
                    }
                ]
            }
        },
    )
    yield server
    stop_dbward(server)


def psql(server: Dbward, user: str, token: str, sql: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGDATABASE": "app",
        "PGUSER": user,
        "PGPASSWORD": token,
        "PGSSLMODE": "require",
        "PGCONNECT_TIMEOUT": "10",
    }
    env.pop("PGAPPNAME", None)
    return subprocess.run(
        ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_psql_logs_in_with_an_id_token(oidc_dbward: Dbward, idp: IdentityProvider) -> None:
    token = idp.token()
    result = psql(
        oidc_dbward,
        USER,
        token,
        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    assert result.returncode == 0, result.stderr
    # The identity is an email address: in a result row it is masked like any other.
    assert result.stdout.strip() == f"****@{USER.rpartition('@')[2]} via dbward (psql)"
    assert idp.jwks_fetches, "dbward never fetched the JWKS"
    assert any(path == "/.well-known/openid-configuration" for _, path in idp.requests)

    start = wait_for_event(
        oidc_dbward, lambda e: e["kind"] == "connection.start" and e["identity"] == USER
    )
    assert start["identity_kind"] == "human"
    assert start["data"]["groups"] == GROUPS
    assert start["data"]["identity_provider"] == f"oidc:{idp.issuer}"
    assert start["data"]["client_application"] == "psql"
    assert start["data"]["user"] == USER
    statement = wait_for_event(
        oidc_dbward,
        lambda e: e["kind"] == "statement" and "pg_stat_activity" in e["data"]["statement"],
    )
    assert statement["identity"] == USER
    assert statement["session_id"] == start["session_id"]
    assert token not in oidc_dbward.log()
    assert token not in json.dumps(oidc_dbward.audit())


def test_user_name_matches_case_insensitively(oidc_dbward: Dbward, idp: IdentityProvider) -> None:
    result = psql(oidc_dbward, "Dev@Example.com", idp.token(), "SELECT current_user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == oidc_dbward.upstream.role


def _expired(idp: IdentityProvider) -> tuple[str, str]:
    now = int(time.time())
    return USER, idp.token(iat=now - 7200, exp=now - 3600)


def _wrong_audience(idp: IdentityProvider) -> tuple[str, str]:
    return USER, idp.token(aud="another-app")


def _another_user(idp: IdentityProvider) -> tuple[str, str]:
    return USER, idp.token(email="other@example.com", sub="00u-other")


def _alg_none(idp: IdentityProvider) -> tuple[str, str]:
    return USER, unsigned_token({"alg": "none", "typ": "JWT"}, idp.claims())


def _hs256_with_public_key(idp: IdentityProvider) -> tuple[str, str]:
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.kid}
    return USER, hs256_token(idp.public_pem(), header, idp.claims())


def _forged_signature(idp: IdentityProvider) -> tuple[str, str]:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return USER, jwt.encode(idp.claims(), forger, algorithm="RS256", headers={"kid": idp.kid})


def _unknown_issuer(idp: IdentityProvider) -> tuple[str, str]:
    return USER, idp.token(iss="http://127.0.0.1:1/not-configured")


@pytest.mark.parametrize(
    ("make", "sqlstate", "cause"),
    [
        (_expired, "28P01", "token expired at "),
        (_wrong_audience, "28P01", "token audience 'another-app' is not 'dbward'"),
        (_another_user, "28000", f"token was issued to 'other@example.com', not '{USER}'"),
        (_alg_none, "28P01", "algorithm none is not allowed"),
        (_hs256_with_public_key, "28P01", "algorithm HS256 is not allowed"),
        (_forged_signature, "28P01", "token signature does not verify"),
        (_unknown_issuer, "28P01", "no identity provider is configured for issuer"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "another-user",
        "alg-none",
        "hs256-public-key",
        "forged",
        "unknown-issuer",
    ],
)
def test_bad_token_is_refused(
    oidc_dbward: Dbward, idp: IdentityProvider, make: Any, sqlstate: str, cause: str
) -> None:
    user, token = make(idp)
    error = refused_login(oidc_dbward.port, user, token)
    assert error.sqlstate == sqlstate, error
    assert cause in error.message, error.message
    assert token not in error.message
    event = wait_for_event(
        oidc_dbward,
        lambda e: e["kind"] == "login.failed" and cause in e["data"]["reason"],
    )
    assert event["data"]["user"] == user
    assert event["data"]["sqlstate"] == sqlstate
    assert token not in json.dumps(event)
    assert token not in oidc_dbward.log()
    # psql shows the same cause to a person.
    result = psql(oidc_dbward, user, token, "SELECT 1")
    assert result.returncode != 0
    assert cause in result.stderr, result.stderr
    assert token not in result.stderr


def test_key_rotation(oidc_dbward: Dbward, idp: IdentityProvider) -> None:
    """The provider switches keys; a token signed with the new key logs in.

    dbward refetches the JWKS for an unknown key id at most once per
    ``REFETCH_SECONDS``; inside that window the refusal must say so.
    """
    old_token = idp.token()
    sock, messages = login(oidc_dbward.port, USER, old_token)
    sock.close()
    assert isinstance(messages[-1], ReadyForQuery), messages

    idp.rotate()
    new_token = idp.token()
    fetches = len(idp.jwks_fetches)
    since_last_fetch = time.monotonic() - idp.jwks_fetches[-1]
    if since_last_fetch < REFETCH_SECONDS - 1:
        error = refused_login(oidc_dbward.port, USER, new_token)
        assert error.sqlstate == "28P01", error
        assert "token key id (kid) 'key-2' is not among the signing keys" in error.message
        assert f"retry in {REFETCH_SECONDS:g} s" in error.message
        time.sleep(REFETCH_SECONDS - since_last_fetch + 0.5)
    result = psql(oidc_dbward, USER, new_token, "SELECT current_user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == oidc_dbward.upstream.role
    assert len(idp.jwks_fetches) > fetches, "the JWKS was not fetched again"
    # The retired key is gone from the JWKS: its tokens no longer verify.
    error = refused_login(oidc_dbward.port, USER, old_token)
    assert error.sqlstate == "28P01"
    assert "token key id (kid) 'key-1' is not among the signing keys" in error.message


def test_agent_claims_application_name_and_statement_tags_are_recorded(
    oidc_dbward: Dbward, idp: IdentityProvider
) -> None:
    """An AI agent's workflow, from its token's claims, its application_name and the
    sqlcommenter tags on each statement; later sources refine earlier ones."""
    token = idp.token(agent_name="reporter", model="gpt-4o", model_version="2026-05", run_id="r-17")
    env_app = "pipeline=nightly,model=gpt-4o-mini"
    result = subprocess.run(
        [
            "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-c", "SELECT 'untagged'",
            "-c", "SELECT 'tagged' /*traceparent='00-4bf92f35-01',run_id='r%2D18'*/",
        ],
        env={
            **os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(oidc_dbward.port),
            "PGDATABASE": "app", "PGUSER": USER, "PGPASSWORD": token, "PGSSLMODE": "require",
            "PGAPPNAME": env_app, "PGCONNECT_TIMEOUT": "10",
        },
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    start = wait_for_event(
        oidc_dbward,
        lambda e: (
            e["kind"] == "connection.start" and e["data"].get("client_application") == env_app
        ),
    )
    assert start["data"]["agent"] == {
        "agent": "reporter",
        "model": "gpt-4o-mini",  # application_name refines the token
        "model_version": "2026-05",
        "run_id": "r-17",
        "pipeline": "nightly",
    }
    tagged = wait_for_event(
        oidc_dbward, lambda e: e["kind"] == "statement" and "'tagged'" in e["data"]["statement"]
    )
    untagged = wait_for_event(
        oidc_dbward, lambda e: e["kind"] == "statement" and "untagged" in e["data"]["statement"]
    )
    assert untagged["data"]["agent"] == start["data"]["agent"]
    assert tagged["data"]["agent"] == {
        **start["data"]["agent"],
        "run_id": "r-18",  # the statement's own tag, URL-decoded
        "traceparent": "00-4bf92f35-01",
    }
    # ... and the trail answers by any of them.
    config = str(oidc_dbward.config_path)
    found = subprocess.run(
        [sys.executable, "-m", "dbward", "audit", "search", "--config", config,
         "--agent", "r-18", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    records = [json.loads(line) for line in found.stdout.splitlines()]
    assert [r["data"]["statement"] for r in records] == [tagged["data"]["statement"]]
