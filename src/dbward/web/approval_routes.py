"""``/api/v1/approvals``, ``/api/v1/access`` and ``/api/v1/credentials``.

Any signed-in identity may list what it asked for and what it can approve;
whether a vote counts is the request's own rule (its approver groups, no
self-approval, the quorum), checked in :mod:`dbward.approvals.requests`.
Auditors and admins see every request.
"""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from dbward.approvals.requests import ApprovalError, ApprovalRequest, Approver, Kind, Status
from dbward.approvals.service import ApprovalService
from dbward.audit.events import AuditEvent, EventKind
from dbward.config import Config
from dbward.web.auth import Caller, api_event

_SEES_ALL = frozenset({"admin", "auditor"})


class Vote(BaseModel):
    reason: str = Field(default="", max_length=2000)
    window: float | None = Field(
        default=None, gt=0, description="seconds the approval may be used again (statements)"
    )


class Rejection(BaseModel):
    reason: str = Field(default="", max_length=2000)


class AccessAsk(BaseModel):
    connection: str
    role: str
    duration: float = Field(default=3600, gt=0, description="seconds")
    reason: str = Field(default="", max_length=2000)
    break_glass: bool = False


class CredentialAsk(BaseModel):
    connection: str


def _approver(who: Caller) -> Approver:
    return Approver(who.identity.name, who.identity.groups)


def _visible(request: ApprovalRequest, who: Caller) -> bool:
    if who.roles & _SEES_ALL:
        return True
    name = who.identity.name.casefold()
    return request.requester.casefold() == name or bool(
        set(who.identity.groups) & set(request.approver_groups)
    )


def _refused(exc: ApprovalError) -> HTTPException:
    status = 404 if "there is no approval request" in exc.message else 409
    return HTTPException(status, exc.message)


def approvals_router(
    config: Config,
    caller: Callable[..., Any],
    service: ApprovalService,
    record: Callable[[AuditEvent], None],
) -> APIRouter:
    router = APIRouter(tags=["approvals"])
    Who = Annotated[Caller, Depends(caller)]

    async def _get(request_id: str, who: Caller) -> ApprovalRequest:
        found = await asyncio.to_thread(service.store.get, request_id)
        if found is None or not _visible(found, who):
            raise HTTPException(404, f"there is no approval request {request_id!r} you can see")
        return found

    @router.get("/login", summary="How `dbward login` signs in (no authentication)")
    def login_settings() -> dict[str, Any]:
        oidc = config.identity.oidc
        return {
            "issuer": oidc[0].issuer if oidc else None,
            "client_id": config.identity.login_client_id,
            "scopes": config.identity.login_scopes,
        }

    @router.get("/me", summary="Who the caller is, as dbward sees them")
    def me(who: Who) -> dict[str, Any]:
        identity = who.identity
        return {
            "name": identity.name,
            "kind": identity.kind.value,
            "groups": list(identity.groups),
            "provider": identity.provider,
            "roles": sorted(who.roles),
        }

    @router.get("/approvals", summary="Approval requests: yours, and those you can approve")
    async def list_requests(
        who: Who,
        status: Annotated[list[Status] | None, Query()] = None,
        kind: Kind | None = None,
        connection: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            service.store.list,
            status=tuple(status or ()),
            kind=kind,
            connection=connection,
            limit=limit if who.roles & _SEES_ALL else 1000,
            offset=offset if who.roles & _SEES_ALL else 0,
        )
        visible = [r for r in found if _visible(r, who)]
        if not who.roles & _SEES_ALL:
            visible = visible[offset : offset + limit]
        return {"requests": [r.as_dict() for r in visible], "limit": limit, "offset": offset}

    @router.get("/approvals/{request_id}", summary="One approval request")
    async def show_request(request_id: str, who: Who) -> dict[str, Any]:
        return (await _get(request_id, who)).as_dict()

    async def _vote(
        request_id: str, who: Caller, approve: bool, reason: str, window: float | None = None
    ) -> dict[str, Any]:
        await _get(request_id, who)
        try:
            done = await service.vote(
                request_id,
                _approver(who),
                approve=approve,
                approver_kind=who.identity.kind.value,
                reason=reason,
                window=window,
                via="api",
            )
        except ApprovalError as exc:
            raise _refused(exc) from None
        return done.as_dict()

    @router.post("/approvals/{request_id}/approve", summary="Approve (counts toward the quorum)")
    async def approve(request_id: str, vote: Vote, who: Who) -> dict[str, Any]:
        return await _vote(request_id, who, True, vote.reason, vote.window)

    @router.post("/approvals/{request_id}/reject", summary="Reject (one rejection decides)")
    async def reject(request_id: str, vote: Rejection, who: Who) -> dict[str, Any]:
        return await _vote(request_id, who, False, vote.reason)

    @router.post("/approvals/{request_id}/revoke", summary="End a grant or approval early")
    async def revoke(request_id: str, who: Who) -> dict[str, Any]:
        found = await _get(request_id, who)
        if "admin" not in who.roles and not set(who.identity.groups) & set(found.approver_groups):
            raise HTTPException(403, "only an approver of this request or an admin may revoke it")
        try:
            done = await service.revoke(request_id, _approver(who), who.identity.kind.value)
        except ApprovalError as exc:
            raise _refused(exc) from None
        return done.as_dict()

    @router.post("/approvals/{request_id}/review", summary="Mark break-glass access reviewed")
    async def review(request_id: str, who: Who) -> dict[str, Any]:
        await _get(request_id, who)
        try:
            done = await service.review(request_id, _approver(who), who.identity.kind.value)
        except ApprovalError as exc:
            raise _refused(exc) from None
        return done.as_dict()

    @router.post("/access/requests", summary="Ask for time-bound access to a connection")
    async def access_request(ask: AccessAsk, who: Who) -> dict[str, Any]:
        connection = config.connections.get(ask.connection)
        if connection is None:
            raise HTTPException(404, f"no connection named {ask.connection!r} is configured")
        if connection.access is None:
            raise HTTPException(
                409, f"connection {ask.connection!r} does not use just-in-time access"
            )
        try:
            done = await service.access_request(
                identity=who.identity,
                connection=ask.connection,
                environment=connection.environment,
                access=connection.access,
                role=ask.role,
                duration=ask.duration,
                reason=ask.reason,
                break_glass=ask.break_glass,
                source="api",
            )
        except ApprovalError as exc:
            raise HTTPException(409, exc.message) from None
        return done.as_dict()

    @router.get("/access/grants", summary="Access grants in force")
    async def grants(who: Who, connection: str | None = None, mine: bool = False) -> dict[str, Any]:
        found = await asyncio.to_thread(
            service.store.list,
            status=(Status.APPROVED,),
            kind=Kind.ACCESS,
            connection=connection,
            limit=500,
        )
        now = service.clock()
        shown = [
            g
            for g in found
            if g.usable(now)
            and _visible(g, who)
            and (not mine or g.requester.casefold() == who.identity.name.casefold())
        ]
        return {"grants": [g.as_dict() for g in shown]}

    @router.post("/credentials", summary="A one-time credential to connect through dbward")
    async def credential(ask: CredentialAsk, who: Who) -> dict[str, Any]:
        if ask.connection not in config.connections:
            raise HTTPException(404, f"no connection named {ask.connection!r} is configured")
        ttl = config.identity.credential_ttl
        secret, expires = await asyncio.to_thread(
            service.store.issue_credential, who.identity, ask.connection, ttl
        )
        await asyncio.to_thread(service.store.saw, who.identity)
        issued = {"expires": expires, "provider": who.identity.provider}
        record(api_event(who, EventKind.CREDENTIAL_ISSUED, issued, ask.connection))
        listener = config.listeners[0]
        host = None if listener.host in ("0.0.0.0", "::", "") else listener.host  # noqa: S104
        return {
            "connection": ask.connection,
            "host": host,
            "port": listener.port,
            "user": who.identity.name,
            "password": secret,
            "expires": expires,
            "one_time": True,
        }

    return router
