"""The OIDC provider fixture is a real device-flow provider: a client's view of RFC 8628.

Each test starts oidc-provider (tests/oidc_provider/server.mjs) and talks to it
as ``dbward login`` will: discovery, the device authorization endpoint, polling
the token endpoint, and checking the ID token against the provider's JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Literal

import jwt
import pytest

from tests.oidc_provider import InteractionError, OidcProvider

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid email profile groups offline_access"
CONSOLE_CALLBACK = "http://127.0.0.1:9/auth/callback"  # never opened
CONSOLE_SECRET = "console-test-secret"
ACCOUNTS = {
    "alice@example.com": {"name": "Alice", "groups": ["dba", "eng"]},
    "bob@example.com": {"name": "Bob", "groups": []},
}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(
        ACCOUNTS,
        id_token_ttl=900,
        console_redirect_uris=[CONSOLE_CALLBACK, "http://127.0.0.1:9/other"],
        console_client_secret=CONSOLE_SECRET,
    ) as provider:
        yield provider


def post_form(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the provider's own http URLs
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def start_device_flow(idp: OidcProvider, scope: str = SCOPE) -> dict[str, Any]:
    status, body = post_form(
        idp.discovery["device_authorization_endpoint"],
        {"client_id": idp.client_id, "scope": scope},
    )
    assert status == 200, body
    return body


def poll(idp: OidcProvider, device_code: str) -> tuple[int, dict[str, Any]]:
    return post_form(
        idp.discovery["token_endpoint"],
        {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": idp.client_id},
    )


def refresh(idp: OidcProvider, refresh_token: str) -> tuple[int, dict[str, Any]]:
    return post_form(
        idp.discovery["token_endpoint"],
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": idp.client_id},
    )


def decode_id_token(idp: OidcProvider, token: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(idp.discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=idp.client_id,
        issuer=idp.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


def test_discovery_describes_a_device_flow_provider(idp: OidcProvider) -> None:
    discovery = idp.discovery
    assert idp.issuer == f"http://127.0.0.1:{idp.port}"
    assert discovery["issuer"] == idp.issuer
    assert discovery["device_authorization_endpoint"] == f"{idp.issuer}/device/auth"
    assert DEVICE_CODE_GRANT in discovery["grant_types_supported"]
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "email", "profile", "groups", "offline_access"} <= set(
        discovery["scopes_supported"]
    )
    assert {"email", "email_verified", "name", "groups"} <= set(discovery["claims_supported"])


def test_an_approved_device_flow_yields_an_id_token_with_email_and_groups(
    idp: OidcProvider,
) -> None:
    device = start_device_flow(idp)
    assert device["verification_uri"] == idp.verification_uri
    assert device["verification_uri_complete"] == (
        f"{idp.verification_uri}?user_code={device['user_code']}"
    )
    assert device["expires_in"] == 600

    status, pending = poll(idp, device["device_code"])
    assert (status, pending["error"]) == (400, "authorization_pending")

    idp.approve_device(device["user_code"], "alice@example.com")

    status, tokens = poll(idp, device["device_code"])
    assert status == 200, tokens
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert set(tokens["scope"].split()) == set(SCOPE.split())

    claims = decode_id_token(idp, tokens["id_token"])
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == idp.client_id
    assert claims["sub"] == "alice@example.com"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice"
    assert claims["groups"] == ["dba", "eng"]
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60

    # The refresh token works for the public client and keeps the claims.
    status, refreshed = refresh(idp, tokens["refresh_token"])
    assert status == 200, refreshed
    assert decode_id_token(idp, refreshed["id_token"])["groups"] == ["dba", "eng"]

    # The device code is spent. Polling with it again is taken as a replay:
    # invalid_grant, and oidc-provider revokes the whole grant, so even the
    # newest refresh token stops working. A client must stop polling once it has tokens.
    status, again = poll(idp, device["device_code"])
    assert (status, again["error"]) == (400, "invalid_grant")
    status, revoked = refresh(idp, refreshed["refresh_token"])
    assert (status, revoked["error"]) == (400, "invalid_grant")


def test_an_account_with_no_groups_gets_an_empty_groups_claim(idp: OidcProvider) -> None:
    device = start_device_flow(idp)
    idp.approve_device(device["user_code"], "bob@example.com")
    status, tokens = poll(idp, device["device_code"])
    assert status == 200, tokens
    claims = decode_id_token(idp, tokens["id_token"])
    assert (claims["email"], claims["groups"]) == ("bob@example.com", [])
    assert "refresh_token" in tokens


def test_without_the_groups_scope_the_id_token_has_no_groups(idp: OidcProvider) -> None:
    device = start_device_flow(idp, scope="openid email")
    idp.approve_device(device["user_code"], "alice@example.com")
    status, tokens = poll(idp, device["device_code"])
    assert status == 200, tokens
    claims = decode_id_token(idp, tokens["id_token"])
    assert claims["email"] == "alice@example.com"
    assert "groups" not in claims
    assert "name" not in claims
    assert "refresh_token" not in tokens  # no offline_access asked


@pytest.mark.parametrize("at", ["consent", "confirm"])
def test_a_denied_device_flow_ends_in_access_denied(
    idp: OidcProvider, at: Literal["consent", "confirm"]
) -> None:
    device = start_device_flow(idp)
    status, pending = poll(idp, device["device_code"])
    assert (status, pending["error"]) == (400, "authorization_pending")

    idp.deny_device(device["user_code"], "alice@example.com", at=at)

    status, denied = poll(idp, device["device_code"])
    assert (status, denied["error"]) == (400, "access_denied")
    # And the code cannot be approved after all.
    with pytest.raises(InteractionError, match="'already_used'"):
        idp.approve_device(device["user_code"], "alice@example.com")


def test_approving_needs_a_known_account_and_a_real_code(idp: OidcProvider) -> None:
    device = start_device_flow(idp)
    with pytest.raises(InteractionError, match=r"logging in as 'mallory@example\.com'"):
        idp.approve_device(device["user_code"], "mallory@example.com")
    with pytest.raises(InteractionError, match="'not_found'"):
        idp.approve_device("BCDF-GHJK", "alice@example.com")
    status, pending = poll(idp, device["device_code"])
    assert (status, pending["error"]) == (400, "authorization_pending")


def test_an_unknown_device_code_is_an_invalid_grant(idp: OidcProvider) -> None:
    status, body = poll(idp, "not-a-device-code")
    assert (status, body["error"]) == (400, "invalid_grant")


def test_only_the_device_client_may_start_a_device_flow(idp: OidcProvider) -> None:
    status, body = post_form(
        idp.discovery["device_authorization_endpoint"],
        {"client_id": "no-such-client", "scope": SCOPE},
    )
    assert (status, body["error"]) == (401, "invalid_client")


def test_an_expired_device_code_is_expired_token() -> None:
    with OidcProvider(ACCOUNTS, device_code_ttl=1) as short:
        device = start_device_flow(short)
        assert device["expires_in"] == 1
        time.sleep(2.2)
        status, body = poll(short, device["device_code"])
        assert (status, body["error"]) == (400, "expired_token")
        with pytest.raises(InteractionError, match="'expired'"):
            short.approve_device(device["user_code"], "alice@example.com")


def test_the_console_client_gets_an_id_token_by_code_and_pkce(idp: OidcProvider) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {
        "client_id": idp.console_client_id,
        "response_type": "code",
        "redirect_uri": CONSOLE_CALLBACK,
        "scope": "openid email profile groups",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    url = f"{idp.discovery['authorization_endpoint']}?{urllib.parse.urlencode(query)}"

    callback = idp.authorize(url, "alice@example.com")

    assert callback.startswith(CONSOLE_CALLBACK + "?")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert params["state"] == state
    assert params["iss"] == idp.issuer
    basic = base64.b64encode(f"{idp.console_client_id}:{CONSOLE_SECRET}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the provider's own http URL
        idp.discovery["token_endpoint"],
        data=urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": CONSOLE_CALLBACK,
                "code_verifier": verifier,
            }
        ).encode(),
        headers={"Authorization": f"Basic {basic}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        tokens = json.loads(response.read())
    key = jwt.PyJWKClient(idp.discovery["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
    claims = jwt.decode(
        tokens["id_token"],
        key.key,
        algorithms=["RS256"],
        audience=idp.console_client_id,
        issuer=idp.issuer,
    )
    assert (claims["email"], claims["groups"], claims["nonce"]) == (
        "alice@example.com",
        ["dba", "eng"],
        nonce,
    )


def test_the_console_client_must_use_pkce(idp: OidcProvider) -> None:
    query = {
        "client_id": idp.console_client_id,
        "response_type": "code",
        "redirect_uri": CONSOLE_CALLBACK,
        "scope": "openid email",
        "state": "s",
    }
    url = f"{idp.discovery['authorization_endpoint']}?{urllib.parse.urlencode(query)}"
    callback = idp.authorize(url, "alice@example.com")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]
