"""Opening a MySQL/MariaDB connection with dbward's own credentials.

TLS as the connection's ``tls.mode`` says, then the handshake response with
the capabilities the client asked for (those dbward can follow and the server
has), and whatever authentication the server wants: mysql_native_password,
caching_sha2_password (fast path, or the full path in clear over TLS or
RSA-encrypted without it), or mysql_clear_password over TLS. The password is
never part of an error.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from dbward.codec.mysql import auth
from dbward.codec.mysql.constants import REQUIRED, SUPPORTED, Capability
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.handshake import (
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    SslRequest,
)
from dbward.codec.mysql.packets import Err, Ok
from dbward.config import Connection, TlsMode
from dbward.credentials import UpstreamCredentials
from dbward.errors import UpstreamError
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.mysql.packets_io import PacketReader
from dbward.proxy.tls import upstream_context
from dbward.proxy.upstream import open_connection

_MAX_STARTUP = 1 << 20


@dataclass(slots=True)
class MysqlUpstream:
    """An authenticated upstream connection, ready for commands."""

    conn: Conn
    greeting: HandshakeV10
    capabilities: int  # what the client and the server agreed, through dbward
    status: int = 0  # the server status flags of its login OK

    @property
    def thread_id(self) -> int:
        return self.greeting.connection_id


async def connect_mysql(
    settings: Connection,
    credentials: UpstreamCredentials,
    client_capabilities: int,
    *,
    charset: int,
    attributes: dict[str, str],
) -> MysqlUpstream:
    conn = await open_connection(settings)
    where = f"upstream {settings.host}:{settings.port}"
    try:
        return await asyncio.wait_for(
            _start(conn, settings, credentials, client_capabilities, charset, attributes),
            settings.connect_timeout,
        )
    except TimeoutError:
        conn.abort()
        raise UpstreamError(
            f"{where} did not finish the handshake within {settings.connect_timeout:g} s"
        ) from None
    except ConnectionClosed:
        conn.abort()
        raise UpstreamError(f"{where} closed the connection during the handshake") from None
    except MysqlProtocolError as exc:
        conn.abort()
        raise UpstreamError(f"{where} spoke an invalid protocol: {exc.message}") from None
    except ssl.SSLCertVerificationError as exc:
        conn.abort()
        raise UpstreamError(
            f"{where} TLS certificate verification failed: {exc.verify_message or exc.reason}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        conn.abort()
        raise UpstreamError(
            f"TLS with {where} failed: {getattr(exc, 'reason', None) or exc}"
        ) from None
    except BaseException:
        conn.abort()
        raise


def _password(credentials: UpstreamCredentials) -> bytes:
    return (credentials.password or "").encode()


async def _start(
    conn: Conn,
    settings: Connection,
    credentials: UpstreamCredentials,
    client_capabilities: int,
    charset: int,
    attributes: dict[str, str],
) -> MysqlUpstream:
    reader = PacketReader(conn, max_payload=_MAX_STARTUP, what="upstream handshake packet")
    greeting = HandshakeV10.decode(await reader.next())
    server_caps = greeting.capabilities
    if server_caps & REQUIRED != REQUIRED:
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} ({greeting.server_version}) lacks "
            "protocol 4.1 authentication; dbward needs MySQL 5.7+ or MariaDB 10.2+"
        )
    caps = client_capabilities & SUPPORTED & server_caps | REQUIRED | Capability.CONNECT_WITH_DB
    caps &= ~Capability.SSL
    missing = Capability(client_capabilities & SUPPORTED & ~server_caps & ~Capability.SSL)
    if missing & (Capability.DEPRECATE_EOF | Capability.MULTI_RESULTS | Capability.SESSION_TRACK):
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} ({greeting.server_version}) does not "
            f"support {missing!r}, which the client asked for"
        )
    context = upstream_context(settings.tls)
    tls = False
    if context is not None:
        if server_caps & Capability.SSL:
            caps |= Capability.SSL
            reader.send(SslRequest(caps, 1 << 24, charset).encode())
            server_name = settings.tls.server_name or settings.host
            await conn.start_tls(context, server_side=False, server_hostname=server_name)
            tls = True
        elif settings.tls.mode != TlsMode.PREFER:
            raise UpstreamError(
                f"upstream {settings.host}:{settings.port} does not accept TLS, but the "
                f"connection's tls.mode is {settings.tls.mode.value}"
            )
    password = _password(credentials)
    plugin = greeting.plugin
    if plugin not in (auth.NATIVE, auth.CACHING_SHA2):
        plugin = auth.NATIVE
    response = HandshakeResponse41(
        caps,
        1 << 24,
        charset,
        credentials.user,
        _scramble(plugin, password, greeting.nonce),
        settings.database,
        plugin,
        attributes if caps & Capability.CONNECT_ATTRS else {},
    )
    reader.send(response.encode())
    nonce = greeting.nonce
    while True:
        answer = await reader.next()
        if not answer:
            raise MysqlProtocolError("empty packet during authentication")
        head = answer[0]
        if head == 0x00:
            if reader.buffered:
                raise MysqlProtocolError("upstream sent data after its handshake OK")
            return MysqlUpstream(conn, greeting, caps, Ok.decode(answer, caps).status)
        if head == 0xFF:
            error = Err.decode(answer)
            raise UpstreamError(
                f"upstream refused dbward's connection: {error.code} ({error.sqlstate}) "
                f"{error.message}",
                sqlstate="08006",
            )
        if head == 0xFE:
            switch = AuthSwitchRequest.decode(answer)
            plugin, nonce = switch.plugin, switch.data or nonce
            if plugin == auth.CLEAR:
                if not tls:
                    raise UpstreamError(
                        "upstream asks for the password in clear without TLS; set the "
                        "connection's tls.mode to require"
                    )
                reader.send(auth.clear_password(password))
            elif plugin in (auth.NATIVE, auth.CACHING_SHA2):
                reader.send(_scramble(plugin, password, nonce))
            else:
                raise UpstreamError(
                    f"upstream asks for authentication plugin {plugin!r}; dbward speaks "
                    f"{auth.NATIVE}, {auth.CACHING_SHA2} and {auth.CLEAR}"
                )
        elif head == 0x01 and plugin == auth.CACHING_SHA2:
            code = answer[1] if len(answer) > 1 else 0
            if code == auth.FAST_AUTH_OK:
                continue  # an OK follows
            if code == auth.FULL_AUTH_NEEDED:
                if tls:
                    reader.send(auth.clear_password(password))
                else:
                    reader.send(auth.REQUEST_PUBLIC_KEY)
                    key = await reader.next()
                    if not key or key[0] != 0x01:
                        raise MysqlProtocolError("expected the server's public key")
                    reader.send(auth.rsa_password(password, nonce, key[1:]))
            else:
                raise MysqlProtocolError(f"unexpected caching_sha2_password step {code}")
        else:
            raise MysqlProtocolError(f"unexpected packet 0x{head:02x} during authentication")


def _scramble(plugin: str, password: bytes, nonce: bytes) -> bytes:
    if plugin == auth.CACHING_SHA2:
        return auth.sha2_scramble(password, nonce)
    return auth.native_scramble(password, nonce)


async def kill_query(
    settings: Connection, credentials: UpstreamCredentials, thread_id: int
) -> None:
    """Stop the statement upstream thread ``thread_id`` runs, from a connection of its own
    (as the mysql client's Ctrl-C does)."""
    upstream = await connect_mysql(
        settings, credentials, SUPPORTED & ~Capability.MULTI_STATEMENTS, charset=45, attributes={}
    )
    conn = upstream.conn
    try:
        reader = PacketReader(conn, max_payload=_MAX_STARTUP, what="upstream packet")
        reader.send_first(b"\x03" + f"KILL QUERY {int(thread_id)}".encode())
        answer = await asyncio.wait_for(reader.next(), settings.connect_timeout)
        if answer[:1] == b"\xff":
            error = Err.decode(answer)
            if error.code != 1094:  # unknown thread: it has ended already
                raise UpstreamError(f"upstream refused to stop the statement: {error.message}")
        reader.send_first(b"\x01")  # COM_QUIT
    finally:
        conn.close()


async def server_version(settings: Connection) -> str:
    """The version an upstream announces in its greeting (the connection is then closed)."""
    conn = await open_connection(settings)
    try:
        reader = PacketReader(conn, max_payload=_MAX_STARTUP, what="upstream greeting")
        greeting = await asyncio.wait_for(reader.next(), settings.connect_timeout)
        return HandshakeV10.decode(greeting).server_version
    except (TimeoutError, ConnectionClosed, MysqlProtocolError) as exc:
        raise UpstreamError(
            f"cannot read the greeting of upstream {settings.host}:{settings.port}: "
            f"{getattr(exc, 'message', None) or exc or type(exc).__name__}"
        ) from None
    finally:
        conn.abort()
