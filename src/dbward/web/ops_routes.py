"""The rest of ``/api/v1``: connections, sessions and statements (from the trail), the
policy (view, validate, dry run), tokens, evidence, a live activity stream, and
``/metrics``.

Sessions and statements come from the audit trail, so every worker's (and
every instance's, on a shared store) are seen, not only this process's.
"""

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.export import record_dict
from dbward.audit.search import Search, search
from dbward.audit.signing import Signer
from dbward.audit.store import AuditStore
from dbward.config import Config
from dbward.errors import DbwardError
from dbward.identity.models import Identity, IdentityKind
from dbward.identity.tokens import TokenStore, parse_ttl
from dbward.policy.decide import Subject, decide
from dbward.policy.explain import explain
from dbward.policy.loader import default_policy, load_policy, parse_policy
from dbward.policy.masking import preview
from dbward.policy.model import Policy
from dbward.sql.mysql_analyze import analyze_mysql
from dbward.sql.session import DEFAULT_SEARCH_PATH, SqlSession
from dbward.stores import open_audit_store
from dbward.web.auth import Caller, api_event, require
from dbward.web.times import parse_time

_LIVE_WINDOW = 24 * 3600  # seconds back a session may have started and still be live


class DryRun(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)
    connection: str
    identity: str | None = Field(default=None, description="default: the caller")
    groups: list[str] | None = None
    kind: IdentityKind | None = None


class PolicyText(BaseModel):
    text: str = Field(max_length=1_000_000)


class NewToken(BaseModel):
    name: str
    kind: Literal["service", "agent"] = "service"
    groups: list[str] = []
    ttl: str = "30d"


def ops_router(
    config: Config,
    caller: Callable[..., Any],
    tokens: TokenStore | None,
    record: Callable[[AuditEvent], None],
    signer: Signer,
) -> APIRouter:
    router = APIRouter()
    Who = Annotated[Caller, Depends(caller)]

    def store() -> Iterator[AuditStore]:
        opened = open_audit_store(config)
        try:
            yield opened
        finally:
            opened.close()

    @router.get("/connections", tags=["connections"], summary="The configured connections")
    def connections(who: Who) -> dict[str, Any]:
        return {
            "connections": [
                {
                    "name": name,
                    "environment": c.environment,
                    "database": c.database,
                    "host": c.host,
                    "port": c.port,
                    "just_in_time": c.access is not None and c.access.require_grant,
                    "roles": sorted(c.access.roles) if c.access is not None else [],
                }
                for name, c in sorted(config.connections.items())
            ]
        }

    @router.get("/sessions", tags=["sessions"], summary="Live sessions (started, not ended)")
    def sessions(who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        require(who, "auditor")
        db = open_audit_store(config)
        try:
            since = time.time() - _LIVE_WINDOW
            started = search(db, Search(kind="connection.start", since=since, limit=limit * 4))
            ended = search(db, Search(kind="connection.end", since=since, limit=limit * 8))
        finally:
            db.close()
        gone = {e.event.session_id for e in ended}
        live = [s for s in reversed(started) if s.event.session_id not in gone][:limit]
        return {"sessions": [{"id": s.id, **record_dict(s)} for s in live]}

    @router.get("/sessions/{session_id}", tags=["sessions"], summary="A session's timeline")
    def session_timeline(
        session_id: str,
        who: Who,
        db: Annotated[AuditStore, Depends(store)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        require(who, "auditor")
        found = search(db, Search(session=session_id, limit=limit, before_id=before_id))
        if not found and before_id is None:
            raise HTTPException(404, f"no records of session {session_id!r}")
        oldest = found[0].id if found else None
        return {
            "session": session_id,
            "records": [{"id": s.id, **record_dict(s)} for s in found],
            "next_before_id": oldest if len(found) == limit else None,
        }

    @router.get("/statements", tags=["sessions"], summary="Statements, newest last")
    def statements(
        who: Who,
        db: Annotated[AuditStore, Depends(store)],
        identity: str | None = None,
        connection: str | None = None,
        decision: Literal["allow", "deny", "review"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        require(who, "auditor")
        query = Search(
            kind="statement",
            identity=identity,
            connection=connection,
            decision=decision,
            limit=limit,
            before_id=before_id,
        )
        found = search(db, query)
        oldest = found[0].id if found else None
        return {
            "records": [{"id": s.id, **record_dict(s)} for s in found],
            "next_before_id": oldest if len(found) == limit else None,
        }

    @router.get("/policy", tags=["policy"], summary="The policy in force, as data")
    def policy_view(who: Who) -> dict[str, Any]:
        require(who, "auditor", "approver")
        loaded = _policy_in_force(config)
        source = config.policy.file
        text = source.read_text(encoding="utf-8") if source is not None else ""
        return {
            "source": str(source.name) if source is not None else "built-in guardrails",
            "text": text,
            "policy": loaded.model_dump(mode="json"),
        }

    @router.post("/policy/validate", tags=["policy"], summary="Check a policy text")
    def policy_validate(body: PolicyText, who: Who) -> dict[str, Any]:
        require(who, "admin")
        try:
            parsed = parse_policy(body.text, "<submitted policy>")
        except DbwardError as exc:
            return {"valid": False, "error": exc.message}
        return {"valid": True, "rules": len(parsed.rules), "default": parsed.default.value}

    @router.post("/policy/dry-run", tags=["policy"], summary="What the policy would decide")
    def policy_dry_run(body: DryRun, who: Who) -> dict[str, Any]:
        connection = config.connections.get(body.connection)
        if connection is None:
            raise HTTPException(404, f"no connection named {body.connection!r} is configured")
        as_someone_else = (
            body.identity is not None or body.groups is not None or body.kind is not None
        )
        if as_someone_else:
            require(who, "auditor", "approver")
        identity = who.identity
        return dry_run(
            config,
            identity,
            body.connection,
            body.sql,
            name=body.identity,
            groups=tuple(body.groups) if body.groups is not None else None,
            kind=body.kind,
        )

    @router.get("/tokens", tags=["tokens"], summary="dbward tokens (never their secrets)")
    def token_list(who: Who) -> dict[str, Any]:
        require(who, "admin")
        store_ = _tokens()
        return {
            "tokens": [
                {
                    "id": r.id,
                    "name": r.name,
                    "kind": r.kind.value,
                    "groups": list(r.groups),
                    "created": r.created_at,
                    "expires": r.expires_at,
                    "revoked": r.revoked_at,
                }
                for r in store_.list(include_revoked=True)
            ]
        }

    def _tokens() -> TokenStore:
        if tokens is None:
            raise HTTPException(409, "dbward tokens are turned off (identity.tokens: false)")
        return tokens

    @router.post("/tokens", tags=["tokens"], summary="Create a token (shown once)")
    def token_create(body: NewToken, who: Who) -> dict[str, Any]:
        require(who, "admin")
        try:
            ttl = None if body.ttl == "never" else parse_ttl(body.ttl)
            secret, made = _tokens().create(body.name, IdentityKind(body.kind), body.groups, ttl)
        except (DbwardError, ValueError) as exc:
            raise HTTPException(409, getattr(exc, "message", str(exc))) from None
        created = {
            "token": made.id,
            "name": made.name,
            "kind": body.kind,
            "groups": list(made.groups),
            "expires": made.expires_at,
        }
        record(api_event(who, EventKind.TOKEN_CREATED, created))
        return {"id": made.id, "name": made.name, "token": secret, "expires": made.expires_at}

    @router.delete("/tokens/{name_or_id}", tags=["tokens"], summary="Revoke a token")
    def token_revoke(name_or_id: str, who: Who) -> dict[str, Any]:
        require(who, "admin")
        try:
            gone = _tokens().revoke(name_or_id)
        except DbwardError as exc:
            raise HTTPException(404, exc.message) from None
        record(api_event(who, EventKind.TOKEN_REVOKED, {"token": gone.id, "name": gone.name}))
        return {"id": gone.id, "name": gone.name, "revoked": gone.revoked_at}

    @router.get(
        "/evidence",
        tags=["evidence"],
        summary="An evidence report (PDF or HTML) for a framework and period",
        response_class=Response,
        responses={200: {"content": {"application/pdf": {}, "text/html": {}}}},
    )
    async def evidence(
        who: Who,
        framework: Literal["soc2", "iso27001", "nist-800-53"] = "soc2",
        since: Annotated[str, Query(alias="from")] = "30d",
        until: Annotated[str, Query(alias="to")] = "now",
        format: Literal["pdf", "html"] = "pdf",
    ) -> Response:
        require(who, "auditor")
        start, end = parse_time(since), parse_time(until)
        if start is None or end is None or start >= end:
            raise HTTPException(422, "from must be before to")
        body = await asyncio.to_thread(_evidence, config, signer, framework, start, end, format)
        day = datetime.datetime.fromtimestamp
        name = (
            f"dbward-evidence-{framework}-{day(start, datetime.UTC):%Y%m%d}-"
            f"{day(end, datetime.UTC):%Y%m%d}.{format}"
        )
        media = "application/pdf" if format == "pdf" else "text/html; charset=utf-8"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.get(
        "/activity/stream",
        tags=["sessions"],
        summary="Server-sent events: each new audit record as it is stored",
        response_class=StreamingResponse,
    )
    async def activity_stream(
        who: Who, request: Request, after: Annotated[int, Query(ge=0)] = 0
    ) -> StreamingResponse:
        require(who, "auditor")

        async def events() -> AsyncIterator[bytes]:
            last = after
            db = await asyncio.to_thread(open_audit_store, config)
            try:
                if last == 0:
                    newest = await asyncio.to_thread(db.tail, 1)
                    last = newest[-1].id if newest else 0
                while not await request.is_disconnected():
                    found = await asyncio.to_thread(db.tail, 200, after_id=last)
                    for stored in found:
                        last = stored.id
                        data = json.dumps({"id": stored.id, **record_dict(stored)})
                        yield f"id: {stored.id}\nevent: record\ndata: {data}\n\n".encode()
                    if not found:
                        yield b": keep-alive\n\n"
                        await asyncio.sleep(0.5)
            finally:
                db.close()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def _policy_in_force(config: Config) -> Policy:
    """The policy file as it reads now (the built-in guardrails without one); 409 if broken."""
    path = config.policy.file
    try:
        return load_policy(path) if path is not None else default_policy()
    except DbwardError as exc:
        raise HTTPException(409, exc.message) from None


def dry_run(
    config: Config,
    identity: Identity,
    connection: str,
    sql: str,
    *,
    name: str | None = None,
    groups: tuple[str, ...] | None = None,
    kind: IdentityKind | None = None,
) -> dict[str, Any]:
    """What the policy in force would decide on ``sql`` (and mask), for ``identity`` or
    the identity the other arguments describe."""
    settings = config.connections[connection]
    subject = Subject(
        name or identity.name,
        groups if groups is not None else identity.groups,
        kind or identity.kind,
        connection,
        settings.environment,
    )
    loaded = _policy_in_force(config)
    if settings.engine == "mysql":
        analysis = analyze_mysql(sql, database=settings.database)
    else:
        analysis = SqlSession(DEFAULT_SEARCH_PATH).analyze(sql)
    decision = decide(loaded, subject, analysis)
    return {**explain(subject, decision, analysis), "masking": preview(loaded, subject, analysis)}


def _evidence(
    config: Config, signer: Signer, framework: str, start: float, end: float, format: str
) -> bytes:
    from dbward.audit.evidence.collect import collect
    from dbward.audit.evidence.render import html, pdf
    from dbward.audit.evidence.report import build

    db = open_audit_store(config)
    try:
        report = build(collect(db, signer.public, signer.key_id, start, end), framework)
    finally:
        db.close()
    return pdf(report) if format == "pdf" else html(report).encode()
