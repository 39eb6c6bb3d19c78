"""OAuth 2.0 Device Authorization Grant (RFC 8628) against an OpenID Connect provider.

``dbward login`` asks the provider for a device code, shows the person where to
enter it, and polls the token endpoint (slowing down when told to) until they
have signed in and consented, refused, or the code expired. The ID token it
gets back is what the dbward API then verifies like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from dbward.errors import AuthenticationError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


@dataclass(frozen=True, slots=True)
class Tokens:
    id_token: str
    access_token: str
    refresh_token: str | None
    expires_at: float


def discover(issuer: str, client: httpx.Client) -> dict[str, Any]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = client.get(url)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AuthenticationError(f"cannot read {url}: {exc}") from None
    if "device_authorization_endpoint" not in document:
        raise AuthenticationError(
            f"{issuer} does not offer the device authorization flow "
            "(no device_authorization_endpoint in its discovery document)"
        )
    return document


def _post(client: httpx.Client, url: str, form: dict[str, str], what: str) -> tuple[int, Any]:
    """POST ``form``; the status and the JSON answer, or an error naming ``what`` failed."""
    try:
        answer = client.post(url, data=form)
        return answer.status_code, answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AuthenticationError(f"{what} failed: {exc}") from None


def start(
    document: dict[str, Any], client_id: str, scopes: str, client: httpx.Client
) -> DeviceCode:
    status, body = _post(
        client,
        document["device_authorization_endpoint"],
        {"client_id": client_id, "scope": scopes},
        "the device authorization request",
    )
    if status != 200:
        raise AuthenticationError(
            f"the provider refused the device authorization request: "
            f"{body.get('error', status)} {body.get('error_description', '')}".strip()
        )
    return DeviceCode(
        device_code=body["device_code"],
        user_code=body["user_code"],
        verification_uri=body["verification_uri"],
        verification_uri_complete=body.get("verification_uri_complete"),
        expires_in=float(body.get("expires_in", 600)),
        interval=float(body.get("interval", 5)),
    )


def _tokens(body: dict[str, Any], now: float) -> Tokens:
    if "id_token" not in body:
        raise AuthenticationError(
            "the provider sent no ID token: ask for the openid scope (identity.login_scopes)"
        )
    return Tokens(
        id_token=body["id_token"],
        access_token=body.get("access_token", ""),
        refresh_token=body.get("refresh_token"),
        expires_at=now + float(body.get("expires_in", 3600)),
    )


def poll(
    document: dict[str, Any],
    client_id: str,
    code: DeviceCode,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Tokens:
    """Wait for the person to finish signing in; their tokens, or why not."""
    deadline = clock() + code.expires_in
    interval = max(code.interval, 1.0)
    while True:
        if clock() >= deadline:
            raise AuthenticationError("the code expired before sign-in finished: run it again")
        sleep(interval)
        status, body = _post(
            client,
            document["token_endpoint"],
            {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id},
            "the token request",
        )
        if status == 200:
            return _tokens(body, clock())
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5
            continue
        if error == "access_denied":
            raise AuthenticationError("sign-in was refused at the identity provider")
        if error == "expired_token":
            raise AuthenticationError("the code expired before sign-in finished: run it again")
        raise AuthenticationError(
            f"the provider refused the token request: {error} "
            f"{body.get('error_description', '')}".strip()
        )


def refresh(
    document: dict[str, Any], client_id: str, refresh_token: str, client: httpx.Client
) -> Tokens:
    status, body = _post(
        client,
        document["token_endpoint"],
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
        "refreshing the sign-in",
    )
    if status != 200:
        raise AuthenticationError("the sign-in expired and cannot be refreshed: dbward login")
    tokens = _tokens(body, time.time())
    if tokens.refresh_token is None:
        return Tokens(tokens.id_token, tokens.access_token, refresh_token, tokens.expires_at)
    return tokens
