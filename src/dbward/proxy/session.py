"""One client connection through dbward, from its first byte to its last.

Startup (TLS, identity, target, upstream) is a coroutine; after it the
session relays in callbacks: bytes from either side are framed, the requests
and answers that matter are tracked, complete messages are forwarded in bulk,
untouched. A statement's completion is held until its audit record is
committed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from typing import Any

from dbward.audit.events import AuditEvent, EventKind
from dbward.codec.pg.backend import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    BackendKeyData,
    ErrorResponse,
    NegotiateProtocolVersion,
    ParameterStatus,
    ReadyForQuery,
)
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import Framer, StartupParser
from dbward.codec.pg.frontend import FRONTEND_NAMES, PasswordMessage, Terminate
from dbward.codec.pg.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    StartupPacket,
)
from dbward.config import Listener
from dbward.credentials import read_credentials
from dbward.errors import AuthenticationError, DbwardError
from dbward.identity.models import Identity
from dbward.proxy.cancel import CancelTarget
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.context import ProxyContext
from dbward.proxy.tracking import FinishedStatement, StatementTracker
from dbward.proxy.upstream import Upstream, connect_upstream, negotiate_tls, open_connection

log = logging.getLogger(__name__)

_APP_NAME_MAX = 63  # NAMEDATALEN - 1
_NOT_FORWARDED = {"user", "database", "application_name", "replication"}
_TRACKED_FRONTEND = frozenset(b"QPBECDSF")
_TRACKED_BACKEND = frozenset(b"CZEIs123nT")
_VALID_FRONTEND = frozenset(FRONTEND_NAMES)
_TERMINATE = ord("X")
_DATA_ROW = ord("D")


class SessionEnded(Exception):
    """Startup ended the session; the client has been told why."""


def fatal(sqlstate: str, message: str, *, hint: str | None = None) -> bytes:
    return ErrorResponse.build("FATAL", sqlstate, message, hint=hint).encode()


class Session:
    def __init__(
        self, ctx: ProxyContext, client: Conn, listener: Listener, tls: ssl.SSLContext
    ) -> None:
        self.ctx = ctx
        self.tls = tls
        self.client = client
        self.listener = listener
        self.id = secrets.token_hex(6)
        self.source = client.peer()
        self.identity: Identity | None = None
        self.target: str | None = None
        self.upstream: Upstream | None = None
        self.client_key: BackendKeyData | None = None
        self.tracker = StatementTracker()
        self.statements = 0
        self.started = time.monotonic()
        self._startup_parser = StartupParser(max_packet=ctx.config.limits.max_startup_packet)
        self._packets: list[StartupPacket] = []
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await asyncio.wait_for(self._startup(), self.ctx.config.limits.startup_timeout)
        except SessionEnded:
            self.client.close()
            return
        except TimeoutError:
            self._refuse(
                "08006",
                f"startup did not finish within {self.ctx.config.limits.startup_timeout:g} s",
            )
            return
        except ProtocolError as exc:
            self._refuse("08P01", exc.message)
            return
        except (ConnectionClosed, ssl.SSLError, OSError) as exc:
            # The client went away or failed the TLS handshake (for example, it does not
            # trust dbward's certificate): routine, nothing to tell it.
            log.info("session %s from %s ended during startup: %s", self.id, self.source, exc)
            self.client.abort()
            if self.upstream is not None:
                self.upstream.conn.abort()
            return
        reason = "client closed"
        try:
            self._start_relay()
            reason = await self._ended
        finally:
            self._finish(reason)

    def _refuse(self, sqlstate: str, message: str, *, hint: str | None = None) -> None:
        self.client.write(fatal(sqlstate, message, hint=hint))
        self.client.close()
        if self.upstream is not None:
            self.upstream.conn.abort()

    def _finish(self, reason: str) -> None:
        if self.client_key is not None:
            self.ctx.cancels.forget(self.client_key)
        self.client.close()
        if self.upstream is not None:
            self.upstream.conn.close()
        if self.identity is not None:
            self._audit(
                EventKind.CONNECTION_END,
                {
                    "reason": reason,
                    "duration_s": round(time.monotonic() - self.started, 3),
                    "statements": self.statements,
                    "bytes_from_client": self.client.bytes_in,
                    "bytes_to_client": self.client.bytes_out,
                },
            )

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)

    def _audit(self, kind: EventKind, data: dict[str, Any]) -> bool:
        """Commit an event to the audit trail; False (and logged) if it cannot be written."""
        try:
            self.ctx.audit.record(self._event(kind, data))
        except OSError as exc:
            log.error("session %s: cannot write the audit journal: %s", self.id, exc)
            return False
        return True

    def _event(self, kind: EventKind, data: dict[str, Any]) -> AuditEvent:
        identity = self.identity
        return AuditEvent(
            kind=kind,
            session_id=self.id,
            identity=identity.name if identity else None,
            identity_kind=identity.kind.value if identity else None,
            target=self.target,
            source=self.source,
            data=data,
        )

    # startup -----------------------------------------------------------------------------

    async def _next_packet(self) -> StartupPacket:
        while not self._packets:
            self._packets.extend(self._startup_parser.feed(await self.client.read()))
        return self._packets.pop(0)

    async def _startup(self) -> None:
        while True:
            packet = await self._next_packet()
            if isinstance(packet, SSLRequest):
                await self._accept_tls()
            elif isinstance(packet, GSSENCRequest):
                self.client.write(b"N")  # GSSAPI encryption is not offered; client may retry
            elif isinstance(packet, CancelRequest):
                await self._cancel(packet)
                raise SessionEnded
            else:
                await self._login(packet)
                return

    async def _accept_tls(self) -> None:
        if self.client.tls:
            raise ProtocolError("SSLRequest received on a connection that already uses TLS")
        if self._packets or self._startup_parser.take_rest():
            raise ProtocolError("client sent unencrypted data after requesting TLS")
        self.client.write(b"S")
        await self.client.start_tls(self.tls, server_side=True)

    async def _login(self, startup: StartupMessage) -> None:
        self.client.unread(self._startup_parser.take_rest())
        if self.listener.require_tls and not self.client.tls:
            self._refuse(
                "28000",
                "dbward accepts only TLS connections: tokens are sent as passwords",
                hint="connect with sslmode=require (or verify-full with dbward's CA)",
            )
            raise SessionEnded
        if "replication" in startup.parameters:
            self._refuse("0A000", "replication connections are not supported through dbward")
            raise SessionEnded
        unsupported = tuple(name for name in startup.parameters if name.startswith("_pq_."))
        if startup.minor > 0 or unsupported:
            self.client.write(NegotiateProtocolVersion(0, unsupported).encode())
        user, database = startup.user, startup.database
        self.target = database
        self.client.write(AuthenticationCleartextPassword().encode())
        secret = await self._read_password()
        try:
            self.identity = await self.ctx.authenticator.authenticate(user, secret)
        except AuthenticationError as exc:
            self._login_failed(user, exc)
            raise SessionEnded from None
        except DbwardError as exc:  # authorization: a valid token for someone else
            self._login_failed(user, exc)
            raise SessionEnded from None
        connection = self.ctx.config.connections.get(database)
        if connection is None:
            self._login_failed(
                user,
                DbwardError(
                    f'no connection named "{database}" is configured in dbward',
                    sqlstate="3D000",
                ),
            )
            raise SessionEnded
        client_app = startup.parameters.get("application_name", "")
        forwarded = {k: v for k, v in startup.parameters.items() if k not in _NOT_FORWARDED}
        forwarded = {k: v for k, v in forwarded.items() if not k.startswith("_pq_.")}
        forwarded["application_name"] = self._upstream_app_name(client_app)
        try:
            credentials = read_credentials(connection.credentials, database)
            self.upstream = await connect_upstream(connection, credentials, forwarded)
        except DbwardError as exc:
            log.warning("session %s: upstream %s: %s", self.id, database, exc.message)
            self._audit(
                EventKind.LOGIN_FAILED,
                {
                    "user": user,
                    "reason": exc.message,
                    "stage": "upstream",
                    "sqlstate": exc.sqlstate,
                },
            )
            self._refuse(exc.sqlstate, f"dbward cannot open connection {database}: {exc.message}")
            raise SessionEnded from None
        if self.ctx.draining:
            self._refuse("57P01", "dbward is shutting down", hint="reconnect in a moment")
            raise SessionEnded
        self._greet(database, connection.environment, client_app, startup)

    def _upstream_app_name(self, client_app: str) -> str:
        assert self.identity is not None
        name = f"{self.identity.name} via dbward"
        if client_app:
            name += f" ({client_app})"
        return name.encode()[:_APP_NAME_MAX].decode("utf-8", "ignore")

    async def _read_password(self) -> str:
        framer = Framer(max_message=self.ctx.config.limits.max_startup_packet, what="password")
        while True:
            block, frames = framer.split(await self.client.read())
            if frames:
                kind, start, end = frames[0]
                if kind != ord("p"):
                    raise ProtocolError(
                        f"expected a password message, got {FRONTEND_NAMES.get(kind, chr(kind))}"
                    )
                self.client.unread(block[end:])
                return PasswordMessage(block[start:end]).password()

    def _login_failed(self, user: str, exc: DbwardError) -> None:
        log.info(
            "session %s: login failed for %r from %s: %s", self.id, user, self.source, exc.message
        )
        self._audit(
            EventKind.LOGIN_FAILED, {"user": user, "reason": exc.message, "sqlstate": exc.sqlstate}
        )
        self.identity = None
        self._refuse(exc.sqlstate, exc.message)

    def _greet(
        self, database: str, environment: str, client_app: str, startup: StartupMessage
    ) -> None:
        assert self.upstream is not None
        assert self.identity is not None
        upstream = self.upstream
        connection = self.ctx.config.connections[database]
        out = [AuthenticationOk().encode()]
        for status in upstream.parameters:
            if status.name == "application_name":
                status = ParameterStatus(status.name, client_app)
            out.append(status.encode())
        if upstream.key is not None:
            self.client_key = self.ctx.cancels.issue(
                CancelTarget(
                    database,
                    connection,
                    upstream.key,
                    self.id,
                    self.identity.name,
                    self.identity.kind.value,
                )
            )
            out.append(self.client_key.encode())
        out.extend(notice.encode() for notice in upstream.notices)
        out.append(ReadyForQuery("I").encode())
        recorded = self._audit(
            EventKind.CONNECTION_START,
            {
                "identity_provider": self.identity.provider,
                "groups": list(self.identity.groups),
                "client_application": client_app,
                "user": startup.user,
                "environment": environment,
                "tls": self.client.tls_version(),
                "upstream": f"{connection.host}:{connection.port}/{connection.database}",
                "upstream_tls": upstream.conn.tls_version(),
            },
        )
        if not recorded:
            self._refuse("58030", "dbward cannot write its audit trail; no session is opened")
            raise SessionEnded
        self.client.write(b"".join(out))

    async def _cancel(self, request: CancelRequest) -> None:
        target = self.ctx.cancels.find(request.process_id, request.secret_key)
        if target is None:
            return  # as PostgreSQL does: no answer for an unknown key
        conn = await open_connection(target.connection)
        try:
            await negotiate_tls(conn, target.connection)
            key = target.upstream_key
            conn.write(CancelRequest(key.process_id, key.secret_key).encode())
            await asyncio.wait_for(conn.closed_future, 5.0)
        finally:
            conn.close()
        self.ctx.audit.record(
            AuditEvent(
                kind=EventKind.CANCEL,
                session_id=target.session_id,
                identity=target.identity,
                identity_kind=target.identity_kind,
                target=target.connection_name,
                source=self.source,
            )
        )

    # relay -------------------------------------------------------------------------------

    def _start_relay(self) -> None:
        assert self.upstream is not None
        upstream = self.upstream.conn
        limit = self.ctx.config.limits.max_message_size
        self._client_framer = Framer(max_message=limit, what="frontend message")
        self._upstream_framer = Framer(max_message=limit, what="backend message")
        self.client.on_close = lambda exc: self._end("client closed")
        upstream.on_close = lambda exc: self._upstream_closed()
        self.client.on_writable = self._client_writable
        upstream.on_writable = lambda ok: (
            self.client.resume_reading() if ok else self.client.pause_reading()
        )
        upstream.relay_to(self._from_upstream)
        self.client.relay_to(self._from_client)

    def _client_writable(self, ok: bool) -> None:
        assert self.upstream is not None
        if ok:
            self.upstream.conn.resume_reading()
        else:
            self.upstream.conn.pause_reading()

    def _upstream_closed(self) -> None:
        if not self._ended.done():
            self._end("upstream closed")
            self.client.close()

    def _from_client(self, data: bytes) -> None:
        assert self.upstream is not None
        try:
            block, frames = self._client_framer.split(data)
        except ProtocolError as exc:
            self._protocol_violation(exc)
            return
        tracker = self.tracker
        terminate = False
        for kind, start, end in frames:
            if kind in _TRACKED_FRONTEND:
                try:
                    tracker.on_frontend(kind, block, start, end)
                except (ValueError, IndexError):
                    self._protocol_violation(
                        ProtocolError(f"malformed {FRONTEND_NAMES[kind]} message")
                    )
                    return
            elif kind not in _VALID_FRONTEND:
                self._protocol_violation(
                    ProtocolError(f"invalid frontend message type {kind} ({chr(kind)!r})")
                )
                return
            elif kind == _TERMINATE:
                terminate = True
        if block:
            self.upstream.conn.write(block)
        if terminate:
            self._end("client terminated")

    def _protocol_violation(self, exc: ProtocolError) -> None:
        log.info("session %s: protocol violation from client: %s", self.id, exc.message)
        assert self.upstream is not None
        self.upstream.conn.write(Terminate().encode())
        self.client.write(fatal("08P01", f"protocol violation: {exc.message}"))
        self._end(f"protocol violation: {exc.message}")

    def _from_upstream(self, data: bytes) -> None:
        try:
            block, frames = self._upstream_framer.split(data)
        except ProtocolError as exc:
            log.warning("session %s: upstream protocol violation: %s", self.id, exc.message)
            self.client.write(fatal("08P01", "upstream sent an invalid message"))
            self._end("upstream protocol violation")
            return
        tracker = self.tracker
        recorded = True
        rows = 0
        for kind, start, end in frames:
            if kind == _DATA_ROW:
                rows += 1
            elif kind in _TRACKED_BACKEND:
                if rows:
                    tracker.on_rows(rows)
                    rows = 0
                done = tracker.on_backend(kind, block, start, end)
                if done is not None:
                    recorded = self._record_statement(done) and recorded
        if rows:
            tracker.on_rows(rows)
        if not recorded:
            # Fail closed: what could not be recorded is not released.
            self.client.write(
                fatal(
                    "58030",
                    "dbward could not record this statement in its audit trail; "
                    "the result is withheld",
                )
            )
            self._end("audit trail unavailable")
            return
        if block:
            self.client.write(block)
            if self.ctx.draining and tracker.idle:
                self.drain_now()

    def _record_statement(self, done: FinishedStatement) -> bool:
        """Commit the statement's audit record; False if the audit trail failed."""
        self.statements += 1
        data: dict[str, Any] = {
            "statement": done.text,
            "protocol": done.protocol,
            "duration_ms": done.duration_ms,
            "rows": done.rows,
            "tags": list(done.tags),
        }
        if done.prepared_name:
            data["prepared"] = done.prepared_name
        if done.sqlstate:
            data["sqlstate"] = done.sqlstate
            data["error"] = done.error
        return self._audit(EventKind.STATEMENT, data)

    # draining ----------------------------------------------------------------------------

    def drain(self) -> None:
        """dbward is stopping: end the session as soon as it is idle."""
        if self.upstream is not None and self.tracker.idle:
            self.drain_now()

    def drain_now(self) -> None:
        self.client.write(
            fatal(
                "57P01",
                "terminating connection because dbward is shutting down",
                hint="reconnect: another dbward instance will take the connection",
            )
        )
        if self.upstream is not None:
            self.upstream.conn.write(Terminate().encode())
        self._end("dbward shutting down")
