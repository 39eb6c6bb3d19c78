"""Just-in-time access at login: connect only under a grant in force, whatever the protocol."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from dbward.approvals.requests import ApprovalRequest
from dbward.config import AccessConfig
from dbward.errors import AuthorizationError
from dbward.identity.models import Identity
from dbward.proxy.context import ProxyContext

log = logging.getLogger(__name__)


async def under_grant(
    ctx: ProxyContext, identity: Identity, database: str, access: AccessConfig, session: str
) -> tuple[Identity, tuple[ApprovalRequest, ...]]:
    """The identity with its grants' role groups joined, and the grants in force.

    Raises :class:`AuthorizationError` (which says how to ask) when there is none.
    """
    service = ctx.approvals
    grants: list[ApprovalRequest] = []
    if service is not None:
        try:
            grants = await asyncio.to_thread(
                service.store.grants, identity.name, database, service.clock()
            )
        except Exception as exc:  # the store is down: no grant can be shown, fail closed
            log.warning("session %s: cannot read grants: %s", session, exc)
    if not grants:
        roles = ", ".join(sorted(access.roles))
        raise AuthorizationError(
            f"connection {database!r} needs an access grant, and {identity.name} has "
            f"none in force; ask for one: dbward access request {database} --role "
            f"ROLE --duration 1h --reason '...' (roles: {roles})"
        )
    extra: list[str] = []
    for grant in grants:
        spec = access.roles.get(grant.role)
        if spec is not None:
            extra.extend(spec.groups or [grant.role])
    groups = tuple(dict.fromkeys((*identity.groups, *extra)))
    return replace(identity, groups=groups), tuple(grants)
