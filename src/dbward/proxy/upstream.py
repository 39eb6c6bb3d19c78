"""Opening a connection to the upstream database with dbward's own credentials.

TLS as the connection's ``tls.mode`` says (libpq's meanings), then the
startup message and whatever password exchange the server asks for:
cleartext, md5 or SCRAM-SHA-256. The password is never part of an error.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from dbward.codec.pg.auth import SCRAM_SHA_256, ScramClient, md5_password
from dbward.codec.pg.backend import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    ErrorResponse,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
)
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import BackendParser
from dbward.codec.pg.frontend import PasswordMessage
from dbward.codec.pg.startup import SSLRequest, StartupMessage
from dbward.config import Connection, TlsMode
from dbward.credentials import UpstreamCredentials
from dbward.errors import UpstreamError
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.tls import upstream_context


@dataclass(slots=True)
class Upstream:
    """An authenticated upstream connection, ready for queries."""

    conn: Conn
    parameters: list[ParameterStatus]
    key: BackendKeyData | None
    notices: list[NoticeResponse]


async def negotiate_tls(conn: Conn, settings: Connection) -> None:
    context = upstream_context(settings.tls)
    if context is None:
        return
    conn.write(SSLRequest().encode())
    answer = await conn.read()
    if answer[:1] == b"S" and len(answer) == 1:
        server_name = settings.tls.server_name or settings.host
        await conn.start_tls(context, server_side=False, server_hostname=server_name)
    elif answer[:1] == b"N" and len(answer) == 1:
        if settings.tls.mode != TlsMode.PREFER:
            raise UpstreamError(
                f"upstream {settings.host}:{settings.port} does not accept TLS, but the "
                f"connection's tls.mode is {settings.tls.mode.value}"
            )
    else:
        raise UpstreamError("upstream answered the TLS request with something unexpected")


async def open_connection(settings: Connection) -> Conn:
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(Conn, settings.host, settings.port),
            settings.connect_timeout,
        )
    except TimeoutError:
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} did not answer within "
            f"{settings.connect_timeout:g} s"
        ) from None
    except OSError as exc:
        raise UpstreamError(
            f"cannot connect to upstream {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    return conn


async def connect_upstream(
    settings: Connection, credentials: UpstreamCredentials, parameters: dict[str, str]
) -> Upstream:
    """Connect, negotiate TLS, start up and authenticate; the caller owns the result."""
    conn = await open_connection(settings)
    try:
        return await asyncio.wait_for(
            _start(conn, settings, credentials, parameters), settings.connect_timeout
        )
    except TimeoutError:
        conn.abort()
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} did not finish startup within "
            f"{settings.connect_timeout:g} s"
        ) from None
    except ConnectionClosed:
        conn.abort()
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} closed the connection during startup"
        ) from None
    except ProtocolError as exc:
        conn.abort()
        raise UpstreamError(f"upstream spoke an invalid protocol: {exc.message}") from None
    except ssl.SSLCertVerificationError as exc:
        conn.abort()
        raise UpstreamError(
            f"upstream {settings.host}:{settings.port} TLS certificate verification failed: "
            f"{exc.verify_message or exc.reason}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        conn.abort()
        raise UpstreamError(
            f"TLS with upstream {settings.host}:{settings.port} failed: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    except BaseException:
        conn.abort()
        raise


def _client_sqlstate(upstream_sqlstate: str) -> str:
    """What the client is told when the upstream refuses dbward.

    The client's own login succeeded, so an upstream refusal of dbward's
    credentials (class 28) or of the configured database (3D000) is a
    connection failure (08006) for the client, not a reason to ask for a new
    token. Other codes (53300 too many connections, 57P03 starting up, ...)
    pass through: they mean the same to the client as to dbward.
    """
    if not upstream_sqlstate or upstream_sqlstate.startswith("28") or upstream_sqlstate == "3D000":
        return "08006"
    return upstream_sqlstate


def _need_password(credentials: UpstreamCredentials) -> str:
    if credentials.password is None:
        raise UpstreamError(
            "upstream asks for a password but the connection's credentials name none "
            "(set password_env or password_file)"
        )
    return credentials.password


async def _start(
    conn: Conn,
    settings: Connection,
    credentials: UpstreamCredentials,
    parameters: dict[str, str],
) -> Upstream:
    await negotiate_tls(conn, settings)
    startup = {**parameters, "user": credentials.user, "database": settings.database}
    conn.write(StartupMessage(startup).encode())
    parser = BackendParser()
    scram: ScramClient | None = None
    statuses: list[ParameterStatus] = []
    notices: list[NoticeResponse] = []
    key: BackendKeyData | None = None
    while True:
        for message in parser.feed(await conn.read()):
            if isinstance(message, AuthenticationOk):
                continue
            if isinstance(message, AuthenticationCleartextPassword):
                conn.write(PasswordMessage.cleartext(_need_password(credentials)).encode())
            elif isinstance(message, AuthenticationMD5Password):
                answer = md5_password(credentials.user, _need_password(credentials), message.salt)
                conn.write(PasswordMessage.cleartext(answer).encode())
            elif isinstance(message, AuthenticationSASL):
                if SCRAM_SHA_256 not in message.mechanisms:
                    raise UpstreamError(
                        f"upstream offers SASL mechanisms {list(message.mechanisms)}; dbward "
                        f"speaks {SCRAM_SHA_256}"
                    )
                scram = ScramClient(_need_password(credentials))
                conn.write(PasswordMessage(scram.initial_response()).encode())
            elif isinstance(message, AuthenticationSASLContinue) and scram is not None:
                conn.write(PasswordMessage(scram.continue_response(message.data)).encode())
            elif isinstance(message, AuthenticationSASLFinal) and scram is not None:
                scram.verify_final(message.data)
            elif isinstance(message, ParameterStatus):
                statuses.append(message)
            elif isinstance(message, BackendKeyData):
                key = message
            elif isinstance(message, NoticeResponse):
                notices.append(message)
            elif isinstance(message, NegotiateProtocolVersion):
                continue
            elif isinstance(message, ErrorResponse):
                raise UpstreamError(
                    f"upstream refused dbward's connection: {message.message}",
                    sqlstate=_client_sqlstate(message.sqlstate),
                )
            elif isinstance(message, ReadyForQuery):
                if parser.pending:
                    raise ProtocolError("upstream sent data after ReadyForQuery during startup")
                return Upstream(conn, statuses, key, notices)
            else:
                raise UpstreamError(
                    f"upstream asked for an authentication step dbward does not support: "
                    f"{type(message).__name__}"
                )
