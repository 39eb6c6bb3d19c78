"""``/api/v1/audit``: the trail's questions over HTTP, answered from the store (auditor role).

The same answers as ``dbward audit search|who-touched|touched-by|verify|export``.
Handlers are plain functions: FastAPI runs them in its thread pool, so a slow
store query never holds up the proxy's event loop.
"""

import io
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dbward.audit.chain import ChainRecord
from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.export import bundle_lines, record_dict, write_csv, write_jsonl, write_ocsf
from dbward.audit.search import Search, search, split_table_column, touched_by, who_touched
from dbward.audit.signing import Signer
from dbward.audit.store import AuditStore
from dbward.audit.verify import verify_store
from dbward.config import Config
from dbward.stores import open_audit_store
from dbward.web.auth import Caller, require
from dbward.web.times import parse_time


def audit_router(
    config: Config,
    caller: Callable[..., Any],
    signer: Signer,
    record: Callable[[AuditEvent], None],
) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])

    def auditor(who: Annotated[Caller, Depends(caller)]) -> Caller:
        require(who, "auditor")  # before parameters are checked or the store is opened
        return who

    Authorized = Annotated[Caller, Depends(auditor)]

    def store() -> Iterator[AuditStore]:
        opened = open_audit_store(config, must_exist=True)
        try:
            yield opened
        finally:
            opened.close()

    Store = Annotated[AuditStore, Depends(store)]

    @router.get("/search", summary="Find records by who, where, what and when")
    def audit_search(
        who: Authorized,
        db: Store,
        identity: str | None = None,
        group: str | None = None,
        kind: Literal["human", "service", "agent"] | None = None,
        connection: str | None = None,
        environment: str | None = None,
        table: str | None = None,
        decision: Literal["allow", "deny", "review"] | None = None,
        event: EventKind | None = None,
        session: str | None = None,
        agent: str | None = None,
        text: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        query = Search(
            identity=identity, group=group, identity_kind=kind, connection=connection,
            environment=environment, table=table, decision=decision,
            kind=event.value if event else None,
            session=session, agent=agent, text=text, since=parse_time(since),
            until=parse_time(until), limit=limit, before_id=before_id,
        )  # fmt: skip
        found = search(db, query)
        records = [{"id": s.id, **record_dict(s)} for s in found]
        oldest = found[0].id if found else None
        return {"records": records, "next_before_id": oldest if len(found) == limit else None}

    @router.get("/who-touched", summary="Who read or wrote a table or column")
    def audit_who_touched(
        who: Authorized,
        db: Store,
        table: Annotated[str, Query(min_length=1, description="table[.column]")],
        since: str | None = None,
        until: str | None = None,
    ) -> dict[str, Any]:
        relation, column = split_table_column(db, table)
        rows = who_touched(db, relation, column, since=parse_time(since), until=parse_time(until))
        return {"table": relation, "column": column, "touched": [asdict(r) for r in rows]}

    @router.get("/touched-by", summary="Which tables and columns an identity read or wrote")
    def audit_touched_by(
        who: Authorized,
        db: Store,
        identity: Annotated[str, Query(min_length=1)],
        since: str | None = None,
        until: str | None = None,
    ) -> dict[str, Any]:
        rows = touched_by(db, identity, since=parse_time(since), until=parse_time(until))
        return {"identity": identity, "touched": [asdict(r) for r in rows]}

    @router.get("/verify", summary="Re-hash every chain and check every signature")
    def audit_verify(who: Authorized, db: Store) -> dict[str, Any]:
        result = verify_store(db, signer.public)
        problem = result.first_problem
        return {
            "ok": result.ok,
            "records": result.records,
            "first_problem": None if problem is None else {**asdict(problem), "text": str(problem)},
            "chains": [{**asdict(c), "unsigned": c.unsigned} for c in result.chains],
        }

    @router.get(
        "/export",
        summary="Export records (jsonl, csv, ocsf) or a signed bundle",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    )
    async def audit_export(
        who: Authorized,
        request: Request,
        format: Literal["jsonl", "csv", "ocsf", "bundle"] = "jsonl",
        since: str | None = None,
        until: str | None = None,
        identity: str | None = None,
        table: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    ) -> StreamingResponse:
        start, end = parse_time(since), parse_time(until)
        if format == "bundle" and (identity or table):
            raise HTTPException(422, "a bundle holds whole chain segments: only since and until")
        filters = {
            k: v
            for k, v in {
                "since": since,
                "until": until,
                "identity": identity,
                "table": table,
            }.items()
            if v is not None
        }
        # On the event loop, as every record is (the writer is not shared between threads).
        record(
            AuditEvent(
                EventKind.AUDIT_EXPORTED,
                session_id="api",
                identity=who.identity.name,
                identity_kind=who.identity.kind.value,
                source=request.client.host if request.client else None,
                data={"format": format, "filters": filters, "via": "api"},
            )
        )
        db = await run_in_threadpool(open_audit_store, config, must_exist=True)
        media = {"csv": "text/csv"}.get(format, "application/x-ndjson")

        def body() -> Iterator[bytes]:
            try:
                if format == "bundle":
                    for line in bundle_lines(db, signer, since=start, until=end):
                        yield line.encode()
                    return
                query = Search(identity=identity, table=table, since=start, until=end, limit=limit)
                records = [_kept(db, s.chain, s.seq) for s in search(db, query)]
                buffer = io.StringIO()
                {"jsonl": write_jsonl, "csv": write_csv, "ocsf": write_ocsf}[format](
                    records, buffer
                )
                yield buffer.getvalue().encode()
            finally:
                db.close()

        name = (
            f"dbward-audit.{ {'ocsf': 'ocsf.jsonl', 'bundle': 'bundle.jsonl'}.get(format, format) }"
        )
        return StreamingResponse(
            body(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


def _kept(db: AuditStore, chain: str, seq: int) -> ChainRecord:
    rows = db.query(
        "SELECT chain, seq, hash, line, id FROM records WHERE chain = ? AND seq = ?", (chain, seq)
    )
    return ChainRecord(*rows[0])
