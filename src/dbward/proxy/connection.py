"""One socket, as dbward uses it: awaited reads during startup, callbacks after.

During startup a session awaits :meth:`Conn.read` like a stream. Once both
sides are set up it calls :meth:`Conn.relay_to`, after which bytes are handed
to a callback as they arrive (no task switch per message) and flow control
pauses the reading side while the other side's send buffer is full.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

_HIGH_WATER = 1024 * 1024
_LOW_WATER = 256 * 1024


class ConnectionClosed(Exception):
    """The peer closed the connection (or it was reset) while dbward was reading."""


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._close_exc: BaseException | None = None
        self.on_data: Callable[[bytes], None] | None = None
        self.on_close: Callable[[BaseException | None], None] | None = None
        self.on_writable: Callable[[bool], None] | None = None
        self.closed_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tls = False
        self.bytes_in = 0
        self.bytes_out = 0

    # asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=_HIGH_WATER, low=_LOW_WATER)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.on_data is not None:
            self.on_data(data)
            return
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._mark_closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed(exc)

    def pause_writing(self) -> None:
        if self.on_writable is not None:
            self.on_writable(False)

    def resume_writing(self) -> None:
        if self.on_writable is not None:
            self.on_writable(True)

    # startup phase ----------------------------------------------------------------------

    async def read(self) -> bytes:
        """Bytes received so far, waiting for some if there are none."""
        while not self._buffer:
            if self._closed:
                raise ConnectionClosed("connection closed by peer") from self._close_exc
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the buffer (read too far during startup)."""
        self._buffer[:0] = data

    async def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        if self._buffer:
            # Bytes that came before the TLS handshake must not be read as if protected by it.
            raise ConnectionClosed("peer sent unencrypted data after requesting TLS")
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        new_transport = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=15.0,
        )
        if new_transport is None:
            raise ConnectionClosed("connection closed during the TLS handshake")
        self.transport = new_transport
        self.tls = True

    # relay phase ------------------------------------------------------------------------

    def relay_to(self, on_data: Callable[[bytes], None]) -> None:
        """From now on, hand received bytes to ``on_data`` as they arrive."""
        self.on_data = on_data
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            on_data(data)
        if self._closed and self.on_close is not None:
            self.on_close(self._close_exc)

    # both -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.bytes_out += len(data)
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def peer(self) -> str:
        if self.transport is None:
            return "?"
        address = self.transport.get_extra_info("peername")
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{address[0]}:{address[1]}"
        return str(address or "local")

    def tls_version(self) -> str | None:
        if self.transport is None or not self.tls:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _mark_closed(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_exc = exc
        self._wake()
        if not self.closed_future.done():
            self.closed_future.set_result(None)
        if self.on_data is not None and self.on_close is not None:
            self.on_close(exc)
