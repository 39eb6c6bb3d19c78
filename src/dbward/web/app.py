"""The API application and its server (run in worker 0's event loop beside the proxy)."""

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dbward.approvals.notify import read_secret
from dbward.approvals.service import ApprovalService
from dbward.audit.events import AuditEvent
from dbward.audit.signing import SIGNING_KEY, Signer
from dbward.config import Config
from dbward.errors import ConfigError
from dbward.identity.authenticator import Authenticator
from dbward.identity.tokens import TokenStore
from dbward.keyring import Keyring
from dbward.metrics import exposition
from dbward.web.approval_routes import approvals_router
from dbward.web.audit_routes import audit_router
from dbward.web.auth import Caller, authenticate, require
from dbward.web.console import console_router, console_static
from dbward.web.console_auth import ConsoleLogins
from dbward.web.ops_routes import ops_router
from dbward.web.slack_routes import slack_router

log = logging.getLogger(__name__)
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def console_logins(
    config: Config, authenticator: Authenticator | None, keyring: Keyring
) -> ConsoleLogins | None:
    """The console's sign-in, when ``api.console`` is set (it needs an OIDC provider)."""
    settings = config.api.console
    if settings is None:
        return None
    if authenticator is None or not config.identity.oidc:
        raise ConfigError("api.console needs an identity.oidc provider to sign people in")
    secret = None
    if settings.client_secret is not None:
        secret = read_secret(settings.client_secret, "api.console.client_secret")
    sealing = hashlib.sha256(b"dbward console login\x00" + keyring.key(SIGNING_KEY)).digest()
    return ConsoleLogins(settings, config.identity.oidc[0].issuer, authenticator, secret, sealing)


def create_app(
    config: Config,
    keyring: Keyring,
    tokens: TokenStore | None,
    record: Callable[[AuditEvent], None],
    approvals: ApprovalService,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """``tokens``: the proxy's own store (one per process: SQLite's locks are per process
    and file, and a second handle on the file would undo them)."""
    signer = Signer(keyring.key(SIGNING_KEY))
    logins = console_logins(config, authenticator, keyring)

    async def caller(request: Request) -> Caller:
        who = await authenticate(request, tokens, config.api, authenticator, logins)
        approvals.remember(who.identity)
        return who

    app = FastAPI(
        title="dbward",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="Identity-aware database access proxy: audit trail, lineage, evidence, "
        "approvals and just-in-time access.",
    )

    @app.get("/api/v1/health", tags=["health"], summary="Liveness, without authentication")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    app.include_router(audit_router(config, caller, signer, record), prefix="/api/v1")
    app.include_router(approvals_router(config, caller, approvals, record), prefix="/api/v1")
    app.include_router(slack_router(approvals), prefix="/api/v1")
    app.include_router(ops_router(config, caller, tokens, record, signer), prefix="/api/v1")

    @app.get("/metrics", tags=["metrics"], summary="Prometheus metrics (auditor)")
    async def metrics(who: Annotated[Caller, Depends(caller)]) -> Response:
        require(who, "auditor")
        body = await asyncio.to_thread(exposition)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    if logins is not None:
        app.include_router(console_router(config, caller, logins, approvals))
        app.mount("/console/static", console_static(), name="console-static")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API %s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"detail": "internal error (logged by dbward)"},
            status_code=500,
            headers=_HEADERS,  # this answer bypasses the middleware below
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(_HEADERS)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return app


class _Server(uvicorn.Server):
    """uvicorn inside dbward's loop: dbward handles the signals (it drains sessions)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def api_server(
    config: Config,
    keyring: Keyring,
    tokens: TokenStore | None,
    record: Callable[[AuditEvent], None],
    approvals: ApprovalService,
    authenticator: Authenticator | None = None,
) -> uvicorn.Server:
    api = config.api
    settings = uvicorn.Config(
        create_app(config, keyring, tokens, record, approvals, authenticator),
        host=api.host,
        port=api.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        server_header=False,
        ssl_certfile=str(api.tls.cert_file) if api.tls.cert_file else None,
        ssl_keyfile=str(api.tls.key_file) if api.tls.key_file else None,
    )
    return _Server(settings)
