"""A MySQL client's way in: greeting, TLS, the token in clear, identity, target, upstream.

dbward greets as a MySQL server, upgrades to TLS when the client asks (and
refuses clients that do not, unless the listener allows it), then gets the
password in clear: ``caching_sha2_password``'s full authentication, or an
auth switch to ``mysql_clear_password``. The password is a token, verified
as an identity; the database the client names is the dbward connection.
dbward then opens the upstream with its own credentials and the client's
capabilities, and answers OK, or an ERR that names the cause.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import NoReturn

from dbward.approvals.requests import ApprovalRequest
from dbward.audit.events import EventKind
from dbward.codec.mysql import auth
from dbward.codec.mysql.constants import REQUIRED, SUPPORTED, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.handshake import (
    AuthMoreData,
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    SslRequest,
)
from dbward.codec.mysql.packets import Ok
from dbward.config import Listener
from dbward.credentials import read_credentials
from dbward.errors import AuthorizationError, DbwardError
from dbward.identity.attribution import from_application_name, merged
from dbward.identity.models import Identity
from dbward.proxy.access import under_grant
from dbward.proxy.connection import Conn
from dbward.proxy.context import ProxyContext
from dbward.proxy.mysql import errors as e
from dbward.proxy.mysql.packets_io import PacketReader
from dbward.proxy.mysql.upstream import MysqlUpstream, connect_mysql, server_version
from dbward.proxy.recorder import SessionRecorder

log = logging.getLogger(__name__)

_MAX_LOGIN_PACKET = 64 * 1024
_FALLBACK_VERSION = "8.0.40-dbward"
_PROGRAM_ATTRS = ("program_name", "_program_name")


class LoginEnded(Exception):
    """The handshake ended the connection; the client has been told why."""


@dataclass(frozen=True, slots=True)
class MysqlEstablished:
    identity: Identity
    target: str
    upstream: MysqlUpstream
    capabilities: int
    connection_id: int  # what the client was told in the greeting
    agent: dict[str, str] = field(default_factory=dict)
    grants: tuple[ApprovalRequest, ...] = ()


def _nonce() -> bytes:
    # 20 bytes without NUL (some clients read the nonce as a C string)
    return bytes(secrets.choice(range(1, 128)) for _ in range(20))


class MysqlHandshake:
    """Logs a client in, from its answer to the greeting (see :mod:`.accept`)."""

    def __init__(
        self,
        ctx: ProxyContext,
        listener: Listener,
        recorder: SessionRecorder,
        connection_id: int,
        *,
        admit: bool = True,
    ) -> None:
        self.ctx = ctx
        self.listener = listener
        self.recorder = recorder
        self.admit = admit
        self.connection_id = connection_id
        self.client: Conn  # set by run()
        self.reader: PacketReader
        self.upstream: MysqlUpstream | None = None
        self.identity: Identity | None = None

    async def _version(self) -> str:
        """What the greeting says dbward is: the setting, else the first MySQL upstream's
        own version (read once per process), so that clients speak its dialect."""
        if self.listener.server_version is not None:
            return self.listener.server_version
        ctx = self.ctx
        if ctx.mysql_version is None:
            first = next((c for c in ctx.config.connections.values() if c.engine == "mysql"), None)
            if first is None:
                return _FALLBACK_VERSION
            try:
                ctx.mysql_version = await server_version(first)
            except DbwardError as exc:
                log.warning("%s; greeting clients as %s for now", exc.message, _FALLBACK_VERSION)
                return _FALLBACK_VERSION
        return ctx.mysql_version

    async def greeting(self) -> bytes:
        """The server greeting (HandshakeV10) dbward sends first."""
        return HandshakeV10(
            await self._version(),
            self.connection_id,
            _nonce(),
            SUPPORTED,
            charset=45,
            status=Status.AUTOCOMMIT,
            plugin=auth.NATIVE,
        ).encode()

    async def run(self, client: Conn) -> MysqlEstablished:
        """Log in the client greeted on ``client`` (already over TLS if it asked)."""
        self.client = client
        self.reader = PacketReader(client, max_payload=_MAX_LOGIN_PACKET, what="login packet")
        answer = HandshakeResponse41.decode(await self.reader.next())
        if isinstance(answer, SslRequest):
            raise MysqlProtocolError("an SSLRequest after the connection was set up")
        return await self._login(answer)

    async def _login(self, hello: HandshakeResponse41) -> MysqlEstablished:
        if not self.admit:
            limit = self.ctx.config.limits.max_connections
            log.warning("refusing %s: %d sessions are open", self.recorder.source, limit)
            self.refuse(e.TOO_MANY, "08004", f"Too many connections (dbward allows {limit})")
        if hello.capabilities & REQUIRED != REQUIRED:
            self.refuse(
                e.HANDSHAKE,
                "08S01",
                "dbward needs a client with protocol 4.1 and pluggable authentication",
            )
        if self.listener.require_tls and not self.client.tls:
            self._login_failed(
                hello.user,
                DbwardError(
                    "dbward accepts only TLS connections: tokens are sent as passwords "
                    "(connect with --ssl, or ssl-mode=REQUIRED)",
                    sqlstate="28000",
                ),
                e.INSECURE_TRANSPORT,
                "HY000",
            )
        secret = await self._password(hello)
        user, database = hello.user, hello.database
        self.recorder.target = database
        if database is None:
            self._login_failed(
                user,
                DbwardError("no connection named: give the dbward connection as the database"),
                e.NO_DB,
                "3D000",
            )
        try:
            identity = await self.ctx.authenticator.authenticate(user, secret, database)
        except DbwardError as exc:
            self._login_failed(user, exc, e.ACCESS_DENIED, "28000")
        self.identity = self.recorder.identity = identity
        connection = self.ctx.config.connections.get(database)
        if connection is None or connection.engine != "mysql":
            what = "no connection" if connection is None else "no MySQL connection"
            self._login_failed(
                user,
                DbwardError(f"{what} named {database!r} is configured in dbward"),
                e.BAD_DB,
                "42000",
            )
        if self.ctx.approvals is not None:
            self.ctx.approvals.remember(identity)
        grants: tuple[ApprovalRequest, ...] = ()
        if connection.access is not None and connection.access.require_grant:
            try:
                identity, grants = await under_grant(
                    self.ctx, identity, database, connection.access, self.recorder.session_id
                )
            except AuthorizationError as exc:
                self._login_failed(user, exc, e.ACCESS_DENIED, "28000")
            self.identity = self.recorder.identity = identity
        program = next((hello.attributes[k] for k in _PROGRAM_ATTRS if k in hello.attributes), "")
        attributes = dict(hello.attributes)
        attributes["program_name"] = f"{identity.name} via dbward" + (
            f" ({program})" if program else ""
        )
        try:
            credentials = read_credentials(connection.credentials, database)
            self.upstream = await connect_mysql(
                connection,
                credentials,
                hello.capabilities,
                charset=hello.charset,
                attributes=attributes,
            )
        except DbwardError as exc:
            log.warning(
                "session %s: upstream %s: %s", self.recorder.session_id, database, exc.message
            )
            self.recorder.login_failed(user, exc, upstream=True)
            self.refuse(
                e.HANDSHAKE, "08S01", f"dbward cannot open connection {database}: {exc.message}"
            )
        views = self.ctx.mysql_views
        if views is not None and views.stale(database):
            await views.load(database, self.upstream, connection.connect_timeout)
        if self.ctx.draining:
            self.refuse(
                e.SERVER_SHUTDOWN, "08S01", "dbward is shutting down; reconnect in a moment"
            )
        agent = merged(dict(identity.attributes), from_application_name(program))
        upstream = self.upstream
        recorded = self.recorder.record(
            EventKind.CONNECTION_START,
            {
                "identity_provider": identity.provider,
                "groups": list(identity.groups),
                "client_application": program,
                **({"agent": agent} if agent else {}),
                "user": user,
                "environment": connection.environment,
                "protocol": "mysql",
                "tls": self.client.tls_version(),
                "upstream": f"{connection.host}:{connection.port}/{connection.database}",
                "upstream_version": upstream.greeting.server_version,
                "upstream_tls": upstream.conn.tls_version(),
            },
        )
        if not recorded:
            self.refuse(
                e.AUDIT_DOWN, "HY000", "dbward cannot write its audit trail; no session is opened"
            )
        self.reader.send(Ok(status=Status.AUTOCOMMIT).encode())
        return MysqlEstablished(
            identity,
            database,
            upstream,
            upstream.capabilities,
            self.connection_id,
            agent,
            grants,
        )

    async def _password(self, hello: HandshakeResponse41) -> str:
        """The client's password (a token) in clear."""
        if hello.plugin == auth.CLEAR and hello.auth_response:
            return auth.parse_clear(hello.auth_response)
        if hello.plugin == auth.CACHING_SHA2 and self.client.tls:
            self.reader.send(AuthMoreData(bytes((auth.FULL_AUTH_NEEDED,))).encode())
        else:
            self.reader.send(AuthSwitchRequest(auth.CLEAR, b"").encode())
        return auth.parse_clear(await self.reader.next())

    def _login_failed(self, user: str, exc: DbwardError, code: int, sqlstate: str) -> NoReturn:
        log.info(
            "session %s: login failed for %r from %s: %s",
            self.recorder.session_id,
            user,
            self.recorder.source,
            exc.message,
        )
        self.recorder.login_failed(user, exc)
        self.identity = self.recorder.identity = None
        self.refuse(code, sqlstate, exc.message)

    def refuse(self, code: int, sqlstate: str, message: str) -> NoReturn:
        """Tell the client why, close, and end the handshake."""
        self.reader.send(e.err(code, sqlstate, message))
        self.client.close()
        if self.upstream is not None:
            self.upstream.conn.abort()
        raise LoginEnded
