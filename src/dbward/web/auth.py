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
from dbward.identity.models import Identity
from dbward.identity.tokens import TokenStore


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    roles: frozenset[str]


def roles_of(identity: Identity, config: ApiConfig) -> frozenset[str]:
    groups = set(identity.groups)
    return frozenset(role for role, members in config.roles.items() if groups & set(members))


def authenticate(request: Request, tokens: TokenStore | None, config: ApiConfig) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise HTTPException(
            401,
            "send a dbward token: Authorization: Bearer <token> (dbward token create)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if tokens is None:
        raise HTTPException(401, "dbward tokens are turned off (identity.tokens: false)")
    try:
        identity = tokens.verify(credential.strip(), None)
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
