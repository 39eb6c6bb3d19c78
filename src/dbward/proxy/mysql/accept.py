"""A MySQL client's first exchange, on the raw socket: greeting, then TLS or not.

A MySQL client that wants TLS sends a short SSLRequest and starts the TLS
handshake at once, without waiting for an answer: its ClientHello may arrive
in the same segment. So dbward reads exactly the SSLRequest's bytes from the
socket (leaving the ClientHello in the kernel) and only then hands the socket
to the event loop, with TLS when it was asked for. The connection returned
holds any first packet that was not an SSLRequest, ready to be read again.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from dbward.codec.mysql.constants import Capability
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import packet
from dbward.proxy.connection import Conn, ConnectionClosed

_TLS_HANDSHAKE_TIMEOUT = 15.0


async def _recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        data = await loop.sock_recv(sock, size)
        if not data:
            raise ConnectionClosed("connection closed by peer during the greeting")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


async def open_client(
    sock: socket.socket, greeting: bytes, tls: ssl.SSLContext, *, max_packet: int
) -> Conn:
    """Greet the client on ``sock``, read its first packet, and return the connection
    (over TLS if the packet was an SSLRequest, else with the packet put back)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    await loop.sock_sendall(sock, packet(0, greeting))
    head = await _recv_exact(loop, sock, 4)
    length = int.from_bytes(head[:3], "little")
    if length > max_packet:
        raise MysqlProtocolError(f"first packet of {length} bytes is over the {max_packet} limit")
    body = await _recv_exact(loop, sock, length)
    caps = int.from_bytes(body[:4], "little") if len(body) >= 4 else 0
    conn = Conn()  # made here: with TLS, uvloop hands back its own protocol object
    if length == 32 and caps & Capability.SSL:
        await loop.connect_accepted_socket(
            lambda: conn, sock, ssl=tls, ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT
        )
        conn.tls = True
        return conn
    await loop.connect_accepted_socket(lambda: conn, sock)
    conn.unread(head + body)
    return conn
