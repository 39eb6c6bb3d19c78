"""Who is calling the API: a dbward token as a bearer token, and the roles its groups give.

Roles come from the configuration (``api.roles``): ``auditor`` reads the trail,
``admin`` may do everything. A missing, unknown, revoked or expired token is
401; a valid token without the role is 403. Every refusal names its cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

from dbward.config import ApiConfig
from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.authenticator import Authenticator
from dbward.identity.models import Identity
from dbward.identity.oidc import looks_like_jwt
from dbward.identity.tokens import TOKEN_PREFIX, TokenStore


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    roles: frozenset[str]


def roles_of(identity: Identity, config: ApiConfig) -> frozenset[str]:
    groups = set(identity.groups)
    return frozenset(role for role, members in config.roles.items() if groups & set(members))


async def authenticate(
    request: Request,
    tokens: TokenStore | None,
    config: ApiConfig,
    authenticator: Authenticator | None = None,
) -> Caller:
    """The caller behind the bearer token: a dbward token, or an ID token from a configured
    OpenID Connect provider (what ``dbward login`` keeps)."""
    header = request.headers.get("authorization", "")
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


def require(caller: Caller, *roles: str) -> None:
    if "admin" in caller.roles or caller.roles & set(roles):
        return
    raise HTTPException(
        403,
        f"{caller.identity.name} may not do this: it needs the role {' or '.join(roles)} "
        "(api.roles maps groups to roles)",
    )
