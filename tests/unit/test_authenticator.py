"""Routing a login to the token store or the right OIDC provider."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from dbward.config import IdentityConfig, OidcProvider
from dbward.errors import AuthenticationError, AuthorizationError, ConfigError
from dbward.identity.authenticator import Authenticator
from dbward.identity.models import Identity, IdentityKind
from dbward.identity.tokens import TokenStore

OKTA = "https://acme.okta.example"
KEYCLOAK = "https://sso.example/realms/acme"
_PRIVATE = ec.generate_private_key(ec.SECP256R1())
_JWKS = json.dumps(
    {"keys": [{**ECAlgorithm.to_jwk(_PRIVATE.public_key(), as_dict=True), "kid": "k1"}]}
).encode()


class FakeFetch:
    """Stands in for HTTP (the real fetch is covered in test_oidc); records the URLs asked."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return _JWKS


def _token(issuer: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": issuer, "aud": "dbward", "exp": now + 300, "iat": now, **claims}
    return jwt.encode(body, _PRIVATE, algorithm="ES256", headers={"kid": "k1"})


def _config(*, tokens: bool = True) -> IdentityConfig:
    return IdentityConfig(
        tokens=tokens,
        oidc=[
            OidcProvider(issuer=OKTA, audience="dbward", jwks_uri=f"{OKTA}/keys"),
            OidcProvider(
                issuer=KEYCLOAK,
                audience="dbward",
                jwks_uri=f"{KEYCLOAK}/certs",
                username_claim="preferred_username",
                groups_claim="realm_access.roles",
                kind=IdentityKind.AGENT,
            ),
        ],
    )


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.db")


def authenticate(authenticator: Authenticator, user: str, secret: str) -> Identity:
    return asyncio.run(authenticator.authenticate(user, secret))


def test_dbward_token_goes_to_the_token_store(store: TokenStore) -> None:
    token, record = store.create("etl", IdentityKind.SERVICE, ["etl"], None)
    fetch = FakeFetch()
    authenticator = Authenticator(_config(), store, fetch=fetch)
    identity = authenticate(authenticator, "etl", token)
    assert (identity.name, identity.provider, identity.token_id) == ("etl", "token", record.id)
    assert fetch.urls == []


def test_dbward_tokens_can_be_turned_off(store: TokenStore) -> None:
    token, _ = store.create("etl", IdentityKind.SERVICE, [], None)
    authenticator = Authenticator(_config(tokens=False), store)
    with pytest.raises(AuthenticationError, match=r"dbward tokens are not accepted here"):
        authenticate(authenticator, "etl", token)


def test_dbward_token_without_store() -> None:
    authenticator = Authenticator(_config(), None)
    with pytest.raises(AuthenticationError, match="no token store is open"):
        authenticate(authenticator, "etl", "dbw_" + "a" * 43)


def test_jwt_goes_to_the_provider_of_its_issuer() -> None:
    fetch = FakeFetch()
    authenticator = Authenticator(_config(), None, fetch=fetch)
    okta = authenticate(authenticator, "ada@example.com", _token(OKTA, email="ada@example.com"))
    assert (okta.provider, okta.kind) == (f"oidc:{OKTA}", IdentityKind.HUMAN)
    assert fetch.urls == [f"{OKTA}/keys"]
    keycloak = authenticate(
        authenticator,
        "ci-agent",
        _token(KEYCLOAK, preferred_username="ci-agent", realm_access={"roles": ["deploy"]}),
    )
    assert (keycloak.name, keycloak.kind, keycloak.groups) == (
        "ci-agent",
        IdentityKind.AGENT,
        ("deploy",),
    )
    assert fetch.urls == [f"{OKTA}/keys", f"{KEYCLOAK}/certs"]


def test_jwt_for_another_user_is_28000() -> None:
    authenticator = Authenticator(_config(), None, fetch=FakeFetch())
    token = _token(OKTA, email="ada@example.com")
    with pytest.raises(
        AuthorizationError, match=r"token was issued to 'ada@example\.com'"
    ) as caught:
        authenticate(authenticator, "postgres", token)
    assert caught.value.sqlstate == "28000"


def test_unknown_issuer() -> None:
    fetch = FakeFetch()
    authenticator = Authenticator(_config(), None, fetch=fetch)
    token = _token("https://evil.example", email="ada@example.com")
    with pytest.raises(AuthenticationError) as caught:
        authenticate(authenticator, "ada@example.com", token)
    assert str(caught.value) == (
        "no identity provider is configured for issuer 'https://evil.example'"
    )
    assert token not in str(caught.value)
    assert fetch.urls == []


def test_jwt_without_issuer() -> None:
    authenticator = Authenticator(_config(), None, fetch=FakeFetch())
    token = jwt.encode({"sub": "x"}, _PRIVATE, algorithm="ES256")
    with pytest.raises(AuthenticationError, match=r"token has no issuer \(iss\) claim"):
        authenticate(authenticator, "x", token)


@pytest.mark.parametrize("password", ["hunter2", "md5abcdef", "SCRAM-SHA-256$4096:xyz", "a.b.c"])
def test_passwords_are_refused(store: TokenStore, password: str) -> None:
    authenticator = Authenticator(_config(), store)
    with pytest.raises(AuthenticationError) as caught:
        authenticate(authenticator, "ada", password)
    assert str(caught.value) == (
        "password authentication is not accepted: "
        "give an OIDC token or a dbward token as the password"
    )


@pytest.mark.parametrize("secret", ["", "   ", "\n"])
def test_empty_secret(store: TokenStore, secret: str) -> None:
    authenticator = Authenticator(_config(), store)
    with pytest.raises(AuthenticationError, match=r"^no password was given"):
        authenticate(authenticator, "ada", secret)


def test_one_provider_per_issuer() -> None:
    config = IdentityConfig(
        oidc=[OidcProvider(issuer=OKTA, audience="a"), OidcProvider(issuer=OKTA, audience="b")]
    )
    with pytest.raises(ConfigError, match="listed twice"):
        Authenticator(config, None)
