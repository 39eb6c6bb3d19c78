"""A client's way in: TLS, identity, target, upstream, then ReadyForQuery.

:meth:`Handshake.run` reads the startup packets, upgrades to TLS, asks for the
password and verifies it as an identity, opens the upstream with dbward's own
credentials and greets the client, or ends the connection with an error that
names the cause (and an audit record where an identity is known). A
CancelRequest is routed to the upstream backend behind the key it carries.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

from dbward.approvals.requests import ApprovalRequest
from dbward.audit.events import EventKind
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
from dbward.codec.pg.frontend import FRONTEND_NAMES, PasswordMessage
from dbward.codec.pg.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    StartupPacket,
)
from dbward.config import AccessConfig, Listener
from dbward.credentials import read_credentials
from dbward.errors import AuthorizationError, DbwardError
from dbward.identity.attribution import from_application_name, merged
from dbward.identity.models import Identity
from dbward.proxy.access import under_grant
from dbward.proxy.cancel import CancelTarget, cancel_backend
from dbward.proxy.connection import Conn
from dbward.proxy.context import ProxyContext
from dbward.proxy.recorder import SessionRecorder
from dbward.proxy.upstream import Upstream, connect_upstream

log = logging.getLogger(__name__)

_APP_NAME_MAX = 63  # NAMEDATALEN - 1
_NOT_FORWARDED = {"user", "database", "application_name", "replication"}


class SessionEnded(Exception):
    """The handshake ended the connection; the client has been told why."""


def fatal(sqlstate: str, message: str, *, hint: str | None = None) -> bytes:
    return ErrorResponse.build("FATAL", sqlstate, message, hint=hint).encode()


@dataclass(frozen=True, slots=True)
class Established:
    """A client that is in: who, to which connection, over which upstream."""

    identity: Identity
    target: str
    upstream: Upstream
    client_key: BackendKeyData | None
    parameters: dict[str, str] = field(default_factory=dict)  # forwarded startup parameters
    agent: dict[str, str] = field(default_factory=dict)  # agent metadata (see attribution)
    # Just-in-time access: the grants in force (their roles' groups joined the identity's).
    grants: tuple[ApprovalRequest, ...] = ()


class Handshake:
    def __init__(
        self,
        ctx: ProxyContext,
        client: Conn,
        listener: Listener,
        tls: ssl.SSLContext,
        recorder: SessionRecorder,
        *,
        admit: bool = True,
    ) -> None:
        self.ctx = ctx
        self.admit = admit  # False: over limits.max_connections, refused after startup
        self.client = client
        self.listener = listener
        self.tls = tls
        self.recorder = recorder
        self.identity: Identity | None = None
        self.target: str | None = None
        self.upstream: Upstream | None = None
        self.parameters: dict[str, str] = {}
        self.client_key: BackendKeyData | None = None
        self.agent: dict[str, str] = {}
        self.grants: tuple[ApprovalRequest, ...] = ()  # access grants the session runs under
        self._parser = StartupParser(max_packet=ctx.config.limits.max_startup_packet)
        self._packets: list[StartupPacket] = []

    async def _next_packet(self) -> StartupPacket:
        while not self._packets:
            self._packets.extend(self._parser.feed(await self.client.read()))
        return self._packets.pop(0)

    async def run(self) -> Established:
        """Take the client from its first byte to ReadyForQuery, or raise."""
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
                assert self.identity is not None
                assert self.target is not None
                assert self.upstream is not None
                return Established(
                    self.identity,
                    self.target,
                    self.upstream,
                    self.client_key,
                    self.parameters,
                    self.agent,
                    self.grants,
                )

    async def _accept_tls(self) -> None:
        if self.client.tls:
            raise ProtocolError("SSLRequest received on a connection that already uses TLS")
        if self._packets or self._parser.take_rest():
            raise ProtocolError("client sent unencrypted data after requesting TLS")
        self.client.write(b"S")
        await self.client.start_tls(self.tls, server_side=True)

    async def _login(self, startup: StartupMessage) -> None:
        self.client.unread(self._parser.take_rest())
        if not self.admit:
            limit = self.ctx.config.limits.max_connections
            log.warning("refusing %s: %d sessions are open", self.recorder.source, limit)
            self.refuse("53300", f"sorry, too many clients already (dbward allows {limit})")
            raise SessionEnded
        if self.listener.require_tls and not self.client.tls:
            self.refuse(
                "28000",
                "dbward accepts only TLS connections: tokens are sent as passwords",
                hint="connect with sslmode=require (or verify-full with dbward's CA)",
            )
            raise SessionEnded
        if "replication" in startup.parameters:
            self.refuse("0A000", "replication connections are not supported through dbward")
            raise SessionEnded
        unsupported = tuple(name for name in startup.parameters if name.startswith("_pq_."))
        if startup.minor > 0 or unsupported:
            self.client.write(NegotiateProtocolVersion(0, unsupported).encode())
        user, database = startup.user, startup.database
        self.target = self.recorder.target = database
        self.client.write(AuthenticationCleartextPassword().encode())
        secret = await self._read_password()
        try:
            self.identity = await self.ctx.authenticator.authenticate(user, secret, database)
        except DbwardError as exc:  # not verified, or verified but issued to someone else
            self._login_failed(user, exc)
            raise SessionEnded from None
        self.recorder.identity = self.identity
        connection = self.ctx.config.connections.get(database)
        if connection is not None and connection.engine != "postgres":
            connection = None  # a MySQL connection is served by a mysql listener
        if connection is None:
            self._login_failed(
                user,
                DbwardError(
                    f'no connection named "{database}" is configured in dbward',
                    sqlstate="3D000",
                ),
            )
            raise SessionEnded
        if self.ctx.approvals is not None:
            self.ctx.approvals.remember(self.identity)
        if connection.access is not None and connection.access.require_grant:
            await self._check_grant(user, database, connection.access)
        client_app = startup.parameters.get("application_name", "")
        forwarded = {k: v for k, v in startup.parameters.items() if k not in _NOT_FORWARDED}
        forwarded = {k: v for k, v in forwarded.items() if not k.startswith("_pq_.")}
        forwarded["application_name"] = self._upstream_app_name(client_app)
        self.parameters = forwarded
        try:
            credentials = read_credentials(connection.credentials, database)
            self.upstream = await connect_upstream(connection, credentials, forwarded)
        except DbwardError as exc:
            log.warning(
                "session %s: upstream %s: %s", self.recorder.session_id, database, exc.message
            )
            self.recorder.login_failed(user, exc, upstream=True)
            self.refuse(exc.sqlstate, f"dbward cannot open connection {database}: {exc.message}")
            raise SessionEnded from None
        if self.ctx.draining:
            self.refuse("57P01", "dbward is shutting down", hint="reconnect in a moment")
            raise SessionEnded
        self._greet(database, connection.environment, client_app, startup)

    async def _check_grant(self, user: str, database: str, access: AccessConfig) -> None:
        """Just-in-time access: connect only under a grant in force; its role's groups join
        the identity's for this session."""
        assert self.identity is not None
        try:
            identity, self.grants = await under_grant(
                self.ctx, self.identity, database, access, self.recorder.session_id
            )
        except AuthorizationError as exc:
            self._login_failed(user, exc)
            raise SessionEnded from None
        self.identity = self.recorder.identity = identity

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
            "session %s: login failed for %r from %s: %s",
            self.recorder.session_id,
            user,
            self.recorder.source,
            exc.message,
        )
        self.recorder.login_failed(user, exc)
        self.identity = self.recorder.identity = None
        self.refuse(exc.sqlstate, exc.message)

    def _greet(
        self, database: str, environment: str, client_app: str, startup: StartupMessage
    ) -> None:
        assert self.upstream is not None
        assert self.identity is not None
        upstream = self.upstream
        connection = self.ctx.config.connections[database]
        self.agent = merged(dict(self.identity.attributes), from_application_name(client_app))
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
                    self.recorder.session_id,
                    self.identity.name,
                    self.identity.kind.value,
                )
            )
            out.append(self.client_key.encode())
        out.extend(notice.encode() for notice in upstream.notices)
        out.append(ReadyForQuery("I").encode())
        recorded = self.recorder.record(
            EventKind.CONNECTION_START,
            {
                "identity_provider": self.identity.provider,
                "groups": list(self.identity.groups),
                "client_application": client_app,
                **({"agent": self.agent} if self.agent else {}),
                "user": startup.user,
                "environment": environment,
                "tls": self.client.tls_version(),
                "upstream": f"{connection.host}:{connection.port}/{connection.database}",
                "upstream_tls": upstream.conn.tls_version(),
            },
        )
        if not recorded:
            if self.client_key is not None:
                self.ctx.cancels.forget(self.client_key)
            self.refuse("58030", "dbward cannot write its audit trail; no session is opened")
            raise SessionEnded
        self.client.write(b"".join(out))

    async def _cancel(self, request: CancelRequest) -> None:
        await cancel_backend(self.ctx, request, self.recorder.source)

    def refuse(self, sqlstate: str, message: str, *, hint: str | None = None) -> None:
        self.client.write(fatal(sqlstate, message, hint=hint))
        self.client.close()
        if self.upstream is not None:
            self.upstream.conn.abort()
