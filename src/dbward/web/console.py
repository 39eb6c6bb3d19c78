"""``/console``: the web console's pages, rendered on the server from the same data the
API serves (no page loads an unbounded result: every list is paged).

People sign in with OpenID Connect (:mod:`dbward.web.console_auth`); a page
without a session sends the browser to sign in. Forms that change state carry
the session's CSRF token; the live activity page is the only script.
"""

import asyncio
import datetime
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from dbward.approvals.requests import ApprovalError, Approver, Status
from dbward.approvals.service import ApprovalService
from dbward.audit.export import record_dict
from dbward.audit.search import Search, search, split_table_column, touched_by, who_touched
from dbward.audit.verify import verify_store
from dbward.config import Config
from dbward.errors import AuthenticationError, DbwardError
from dbward.stores import open_audit_store
from dbward.web.auth import roles_of
from dbward.web.console_auth import LOGIN_COOKIE, SESSION_COOKIE, ConsoleLogins, ConsoleSession
from dbward.web.ops_routes import dry_run
from dbward.web.times import parse_time

_templates = Environment(
    loader=PackageLoader("dbward.web", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
)
_PAGE = 50
_templates.filters["when"] = lambda ts: datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime(
    "%Y-%m-%d %H:%M:%S"
)


def console_router(
    config: Config,
    caller: Callable[..., Any],
    logins: ConsoleLogins,
    approvals: ApprovalService,
) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)

    def _session(request: Request) -> ConsoleSession | None:
        return logins.get(request.cookies.get(SESSION_COOKIE))

    def _sign_in(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)

    def _page(session: ConsoleSession, template: str, **values: Any) -> HTMLResponse:
        roles = roles_of(session.identity, config.api)
        html = _templates.get_template(template).render(
            identity=session.identity, roles=roles, csrf=session.csrf, **values
        )
        return HTMLResponse(html)

    def _check_csrf(session: ConsoleSession, sent: str) -> None:
        if not sent or not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(403, "missing or wrong CSRF token")

    def _auditor(session: ConsoleSession) -> None:
        if not roles_of(session.identity, config.api) & {"auditor", "admin"}:
            raise HTTPException(403, f"{session.identity.name} needs the auditor role")

    # signing in and out ------------------------------------------------------------------

    @router.get("/login")
    async def login(next: str = "/console/") -> Response:
        try:
            where, cookie = await logins.start(next)
        except Exception as exc:  # the provider cannot be reached
            raise HTTPException(503, f"cannot reach the identity provider: {exc}") from None
        answer = RedirectResponse(where, status_code=303)
        answer.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=600,
            path="/console/callback",
            httponly=True,
            secure=True,
            samesite="lax",  # it must come back with the provider's redirect
        )
        return answer

    @router.get("/callback")
    async def callback(
        request: Request, code: str = "", state: str = "", error: str = ""
    ) -> Response:
        if error:
            raise HTTPException(401, f"the identity provider refused the sign-in: {error}")
        try:
            session, after = await logins.finish(code, state, request.cookies.get(LOGIN_COOKIE))
        except AuthenticationError as exc:
            raise HTTPException(401, exc.message) from None
        approvals.remember(session.identity)
        # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect that
        # began at the provider would not carry it.
        answer = HTMLResponse(_templates.get_template("redirect.html.j2").render(to=after))
        answer.set_cookie(
            SESSION_COOKIE,
            session.id,
            max_age=int(config.api.console.session_ttl) if config.api.console else None,
            path="/",
            httponly=True,
            secure=True,
            samesite="strict",
        )
        answer.delete_cookie(LOGIN_COOKIE, path="/console/callback")
        return answer

    @router.post("/logout")
    async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        session = _session(request)
        if session is not None:
            _check_csrf(session, csrf)
            logins.close(session.id)
        # A page of our own, not a redirect to the provider (which the CSP's form-action
        # would stop, and whose own session would sign the person straight back in).
        answer = HTMLResponse(_templates.get_template("signed_out.html.j2").render())
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    # pages -------------------------------------------------------------------------------

    @router.get("/")
    async def activity(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        found = await asyncio.to_thread(_latest, config, _PAGE)
        last = found[-1]["id"] if found else 0
        return _page(
            session,
            "activity.html.j2",
            title="Live activity",
            page="activity",
            records=list(reversed(found)),
            last=last,
        )

    @router.get("/approvals")
    async def approvals_page(request: Request, notice: str = "", offset: int = 0) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        offset = max(0, min(offset, 1_000_000))
        found = await asyncio.to_thread(
            approvals.store.list, status=(Status.PENDING,), limit=_PAGE + 1, offset=offset
        )
        more = len(found) > _PAGE
        found = found[:_PAGE]
        me = Approver(session.identity.name, session.identity.groups)
        sees_all = bool(roles_of(session.identity, config.api) & {"auditor", "admin"})
        shown = []
        for r in found:
            why = r.may_approve(me)
            if why is None or sees_all or r.requester.casefold() == me.name.casefold():
                shown.append({**r.as_dict(), "can_vote": why is None, "why_not": why})
        return _page(
            session,
            "approvals.html.j2",
            title="Approvals",
            page="approvals",
            requests=shown,
            notice=notice,
            next_offset=offset + _PAGE if more else None,
        )

    async def _vote(
        request: Request, request_id: str, approve: bool, reason: str, csrf: str
    ) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _check_csrf(session, csrf)
        try:
            done = await approvals.vote(
                request_id,
                Approver(session.identity.name, session.identity.groups),
                approve=approve,
                approver_kind=session.identity.kind.value,
                reason=reason,
                via="console",
            )
            notice = (
                f"{'Approved' if approve else 'Rejected'} {done.id}: it is now {done.status.value}"
            )
        except ApprovalError as exc:
            notice = f"Not counted: {exc.message}"
        return RedirectResponse(
            f"/console/approvals?{urlencode({'notice': notice})}", status_code=303
        )

    @router.post("/approvals/{request_id}/{verdict}")
    async def vote(
        request: Request,
        request_id: str,
        verdict: Literal["approve", "reject"],
        csrf: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        return await _vote(request, request_id, verdict == "approve", reason, csrf)

    @router.get("/sessions/{session_id}")
    async def session_page(
        request: Request, session_id: str, before_id: int | None = None
    ) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        query = Search(session=session_id, limit=200, before_id=before_id)
        found = await asyncio.to_thread(_search, config, query)
        return _page(
            session,
            "session.html.j2",
            title=f"Session {session_id}",
            page="sessions",
            records=found,
            next_before_id=found[0]["id"] if len(found) == 200 else None,
        )

    @router.get("/audit")
    async def audit_page(
        request: Request,
        identity: str = "",
        connection: str = "",
        table: str = "",
        decision: str = "",
        text: str = "",
        since: str = "",
        before_id: int | None = None,
    ) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        values = {
            "identity": identity,
            "connection": connection,
            "table": table,
            "decision": decision if decision in ("allow", "deny", "review") else "",
            "text": text,
            "since": since,
        }
        try:
            start = parse_time(since) if since else None
        except HTTPException:
            start = None
        query = Search(
            identity=identity or None,
            connection=connection or None,
            table=table or None,
            decision=values["decision"] or None,
            text=text or None,
            since=start,
            limit=_PAGE,
            before_id=before_id,
        )
        found = await asyncio.to_thread(_search, config, query)
        kept = {k: v for k, v in values.items() if v and k != "since"}
        # The export takes identity, table and the time range (not connection, decision or
        # text); a signed bundle holds whole chain segments, so only the time range.
        ranged = {"since": since} if since else {}
        export = urlencode({k: values[k] for k in ("identity", "table") if values[k]} | ranged)
        bundle = urlencode(ranged)
        more = urlencode({**kept, "before_id": found[0]["id"]}) if found else ""
        return _page(
            session,
            "audit.html.j2",
            title="Audit search",
            page="audit",
            q=values,
            records=list(reversed(found)),
            export=export,
            bundle=bundle,
            narrowed=any(values[k] for k in ("connection", "decision", "text")),
            more=more,
            next_before_id=found[0]["id"] if len(found) == _PAGE else None,
        )

    @router.get("/verify")
    async def verify_page(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        result = await asyncio.to_thread(_verify, config)
        return _page(session, "verify.html.j2", title="Chain verification", page="verify", **result)

    @router.get("/lineage")
    async def lineage_page(
        request: Request, table: str = "", identity: str = "", since: str = ""
    ) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        try:
            start = parse_time(since) if since else None
        except HTTPException as exc:
            return _page(session, "lineage.html.j2", title="Lineage", page="lineage",
                         error=str(exc.detail))  # fmt: skip
        found = await asyncio.to_thread(_lineage, config, table, identity, start)
        return _page(
            session,
            "lineage.html.j2",
            title="Lineage",
            page="lineage",
            table=table,
            asked=identity,
            since=since,
            **found,
        )

    @router.get("/policy")
    async def policy_page(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        return _policy_page(session)

    @router.post("/policy")
    async def policy_dry_run(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        sql: Annotated[str, Form()] = "",
        connection: Annotated[str, Form()] = "",
    ) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _check_csrf(session, csrf)
        return _policy_page(session, sql=sql, connection=connection)

    def _policy_page(session: ConsoleSession, sql: str = "", connection: str = "") -> Response:
        if not roles_of(session.identity, config.api) & {"auditor", "admin", "approver"}:
            raise HTTPException(403, f"{session.identity.name} needs the approver or auditor role")
        result = None
        if sql.strip() and connection in config.connections:
            result = dry_run(config, session.identity, connection, sql)
        path = config.policy.file
        return _page(
            session,
            "policy.html.j2",
            title="Policy",
            page="policy",
            connections=sorted(config.connections),
            connection=connection,
            sql=sql,
            result=result,
            source=path.name if path is not None else "built-in guardrails",
            text=path.read_text(encoding="utf-8") if path is not None else "",
        )

    @router.get("/evidence")
    async def evidence_page(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _sign_in(request)
        _auditor(session)
        return _page(session, "evidence.html.j2", title="Evidence report", page="evidence")

    return router


def _lineage(config: Config, table: str, identity: str, since: float | None) -> dict[str, Any]:
    db = open_audit_store(config)
    try:
        touched: list[Any] = []
        by: list[Any] = []
        if table:
            relation, column = split_table_column(db, table)
            touched = who_touched(db, relation, column, since=since)
        if identity:
            by = touched_by(db, identity, since=since)
        return {"touched": touched, "by": by}
    finally:
        db.close()


def console_static() -> StaticFiles:
    """The console's stylesheet and script (mounted at ``/console/static``)."""
    return StaticFiles(directory=str(Path(__file__).parent / "static"))


def _search(config: Config, query: Search) -> list[dict[str, Any]]:
    db = open_audit_store(config)
    try:
        return [{"id": s.id, **record_dict(s)} for s in search(db, query)]
    finally:
        db.close()


def _latest(config: Config, limit: int) -> list[dict[str, Any]]:
    db = open_audit_store(config)
    try:
        return [{"id": s.id, **record_dict(s)} for s in db.tail(limit)]
    finally:
        db.close()


def _verify(config: Config) -> dict[str, Any]:
    from dbward.audit.signing import SIGNING_KEY, Signer
    from dbward.keyring import load_keyring

    signer = Signer(load_keyring(config.state_dir).key(SIGNING_KEY))
    db = open_audit_store(config)
    try:
        result = verify_store(db, signer.public)
    except DbwardError as exc:
        return {"ok": False, "records": 0, "problem": exc.message, "chains": []}
    finally:
        db.close()
    problem = result.first_problem
    return {
        "ok": result.ok,
        "records": result.records,
        "problem": str(problem) if problem is not None else "",
        "chains": [
            {
                "chain": c.chain,
                "records": c.records,
                "signed_seq": c.signed_seq,
                "unsigned": c.unsigned,
            }
            for c in result.chains
        ],
    }
