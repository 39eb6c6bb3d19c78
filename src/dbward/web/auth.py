"""Who is calling the API: a dbward token as a bearer token, and the roles its groups give.

Roles come from the configuration (``api.roles``): ``auditor`` reads the trail,
``admin`` may do everything. A missing, unknown, revoked or expired token is
401; a valid token without the role is 403. Every refusal names its cause.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from dbward.audit.events import AuditEvent, EventKind
from dbward.config import ApiConfig
from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.authenticator import Authenticator
from dbward.identity.models import Identity
from dbward.identity.oidc import looks_like_jwt
from dbward.identity.tokens import TOKEN_PREFIX, TokenStore
from dbward.web.console_auth import SESSION_COOKIE, ConsoleLogins


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    roles: frozenset[str]
    csrf: str | None = None  # a console session's CSRF token (None: a bearer token)


def roles_of(identity: Identity, config: ApiConfig) -> frozenset[str]:
    """The identity's roles: ``user`` for everyone signed in, the rest by group."""
    groups = set(identity.groups)
    granted = {role for role, members in config.roles.items() if groups & set(members)}
    return frozenset({"user", *granted})


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def from_session(
    request: Request, logins: ConsoleLogins | None, config: ApiConfig
) -> Caller | None:
    """The console session behind the request's cookie, with its CSRF token checked on
    every request that changes state; None when there is no session cookie."""
    if logins is None or SESSION_COOKIE not in request.cookies:
        return None
    session = logins.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise HTTPException(401, "the console session ended: sign in again at /console/login")
    if request.method not in _SAFE:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
    return Caller(session.identity, roles_of(session.identity, config), session.csrf)


async def authenticate(
    request: Request,
    tokens: TokenStore | None,
    config: ApiConfig,
    authenticator: Authenticator | None = None,
    logins: ConsoleLogins | None = None,
) -> Caller:
    """The caller: a console session (cookie), or the bearer token's identity: a dbward
    token, or an ID token from a configured OpenID Connect provider (``dbward login``)."""
    header = request.headers.get("authorization", "")
    if not header:
        by_cookie = from_session(request, logins, config)
        if by_cookie is not None:
            return by_cookie
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise HTTPException(
            401,
            "send a dbward token or an OIDC ID token: Authorization: Bearer <token> "
            "(dbward token create, or dbward login)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        if credential.startswith(TOKEN_PREFIX):
            if tokens is None:
                raise AuthenticationError("dbward tokens are turned off (identity.tokens: false)")
            identity = tokens.verify(credential, None)
        elif authenticator is not None and looks_like_jwt(credential):
            identity = await authenticator.bearer(credential)
        else:
            raise AuthenticationError(
                "the bearer token is not a dbward token (dbw_...) nor an OIDC ID token (a JWT)"
            )
    except (AuthenticationError, AuthorizationError) as exc:
        raise HTTPException(
            401, exc.message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    return Caller(identity, roles_of(identity, config))


def api_event(
    who: Caller, kind: EventKind, data: dict[str, Any], target: str | None = None
) -> AuditEvent:
    """An action taken through the API, by ``who``, for the audit trail."""
    identity = who.identity
    return AuditEvent(
        kind,
        session_id="api",
        identity=identity.name,
        identity_kind=identity.kind.value,
        target=target,
        source="api",
        data=data,
    )


def require(caller: Caller, *roles: str) -> None:
    if "admin" in caller.roles or caller.roles & set(roles):
        return
    raise HTTPException(
        403,
        f"{caller.identity.name} may not do this: it needs the role {' or '.join(roles)} "
        "(api.roles maps groups to roles)",
    )
