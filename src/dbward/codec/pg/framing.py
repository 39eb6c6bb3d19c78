"""Splitting a byte stream into messages without copying what passes through.

:class:`Framer` is the hot-path piece: fed whatever the socket gave, it
returns the complete messages as one ``bytes`` block (to forward untouched)
and the ``(type, payload_start, payload_end)`` offsets of each message in it.
An incomplete tail is kept for the next call. :class:`FrontendParser`,
:class:`BackendParser` and :class:`StartupParser` build typed messages on top,
for the phases where every message is looked at.
"""

from __future__ import annotations

import struct

from dbward.codec.pg.backend import BackendMessage, decode_backend
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.frontend import FrontendMessage, decode_frontend
from dbward.codec.pg.startup import (
    CancelRequest,
    StartupMessage,
    StartupPacket,
    decode_startup_packet,
)

_LENGTH = struct.Struct("!i")

Frame = tuple[int, int, int]
"""(type byte, payload start, payload end) offsets into the block that holds it."""

DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
DEFAULT_MAX_STARTUP = 10_000


class Framer:
    """Splits typed messages (type byte, int32 length, payload) out of a stream."""

    __slots__ = ("_max", "_need", "_pending", "_what")

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE, what: str = "message") -> None:
        self._pending = bytearray()
        self._need = 0
        self._max = max_message
        self._what = what

    @property
    def pending(self) -> int:
        """Bytes held back because their message is not complete yet."""
        return len(self._pending)

    def split(self, data: bytes) -> tuple[bytes, list[Frame]]:
        """Feed ``data``; return the complete messages as one block and their frames."""
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return b"", []
            buf = bytes(self._pending)
            self._pending.clear()
        else:
            buf = data
        frames: list[Frame] = []
        pos = 0
        size = len(buf)
        unpack = _LENGTH.unpack_from
        limit = self._max
        while size - pos >= 5:
            (length,) = unpack(buf, pos + 1)
            if length < 4:
                raise ProtocolError(
                    f"{self._what} of type {chr(buf[pos])!r} has invalid length {length}"
                )
            if length > limit:
                raise ProtocolError(
                    f"{self._what} of type {chr(buf[pos])!r} is {length} bytes, "
                    f"over the {limit}-byte limit"
                )
            end = pos + 1 + length
            if end > size:
                self._need = end - pos
                break
            frames.append((buf[pos], pos + 5, end))
            pos = end
        else:
            self._need = 5
        if pos == size:
            return buf, frames
        self._pending += buf[pos:]
        return buf[:pos], frames


class StartupParser:
    """Reads the untyped packets of the startup phase (SSLRequest, StartupMessage, ...)."""

    __slots__ = ("_buf", "_done", "_max")

    def __init__(self, *, max_packet: int = DEFAULT_MAX_STARTUP) -> None:
        self._buf = bytearray()
        self._max = max_packet
        self._done = False

    def feed(self, data: bytes) -> list[StartupPacket]:
        self._buf += data
        packets: list[StartupPacket] = []
        # After a StartupMessage or CancelRequest the startup phase is over: what
        # follows is typed messages, kept for take_rest(), never read as packets.
        while not self._done and len(self._buf) >= 4:
            (length,) = _LENGTH.unpack_from(self._buf, 0)
            if length < 8:
                raise ProtocolError(f"invalid length of startup packet: {length}")
            if length > self._max:
                raise ProtocolError(
                    f"startup packet of {length} bytes is over the {self._max}-byte limit"
                )
            if len(self._buf) < length:
                break
            body = bytes(self._buf[4:length])
            del self._buf[:length]
            packet = decode_startup_packet(body)
            packets.append(packet)
            self._done = isinstance(packet, StartupMessage | CancelRequest)
        return packets

    def take_rest(self) -> bytes:
        """Bytes after the last packet (typed messages the client sent early)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class FrontendParser:
    """Client messages after startup, decoded."""

    __slots__ = ("_framer",)

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._framer = Framer(max_message=max_message, what="frontend message")

    def feed(self, data: bytes) -> list[FrontendMessage]:
        block, frames = self._framer.split(data)
        return [decode_frontend(t, block[s:e]) for t, s, e in frames]


class BackendParser:
    """Server messages, decoded."""

    __slots__ = ("_framer",)

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._framer = Framer(max_message=max_message, what="backend message")

    @property
    def pending(self) -> int:
        return self._framer.pending

    def feed(self, data: bytes) -> list[BackendMessage]:
        block, frames = self._framer.split(data)
        return [decode_backend(t, block[s:e]) for t, s, e in frames]
