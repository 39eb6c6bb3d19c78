"""Typed reads over a message payload, and the matching writer.

``Reader`` walks a ``bytes``/``memoryview`` payload and raises
:class:`ProtocolError` (never ``IndexError`` or ``struct.error``) when the
payload is shorter than its fields say.
"""

from __future__ import annotations

import builtins
import struct

from dbward.codec.pg.errors import ProtocolError

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


class Reader:
    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    def _need(self, n: int) -> None:
        if n < 0 or self._pos + n > len(self._data):
            raise ProtocolError(f"{self._what} message is truncated")

    def int16(self) -> int:
        self._need(2)
        (value,) = _I16.unpack_from(self._data, self._pos)
        self._pos += 2
        return int(value)

    def int32(self) -> int:
        self._need(4)
        (value,) = _I32.unpack_from(self._data, self._pos)
        self._pos += 4
        return int(value)

    def uint32(self) -> int:
        self._need(4)
        (value,) = _U32.unpack_from(self._data, self._pos)
        self._pos += 4
        return int(value)

    def byte(self) -> int:
        self._need(1)
        value = self._data[self._pos]
        self._pos += 1
        return value

    def take(self, n: int) -> bytes:
        self._need(n)
        value = self._data[self._pos : self._pos + n]
        self._pos += n
        return value

    def cstring(self) -> str:
        end = self._data.find(b"\x00", self._pos)
        if end < 0:
            raise ProtocolError(f"{self._what} message has an unterminated string")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{self._what} message has a string that is not UTF-8") from None

    def rest(self) -> builtins.bytes:
        value = self._data[self._pos :]
        self._pos = len(self._data)
        return value

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def done(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError(
                f"{self._what} message has {self.remaining()} unexpected extra bytes"
            )


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def int16(self, value: int) -> Writer:
        self._parts.append(_I16.pack(value))
        return self

    def int32(self, value: int) -> Writer:
        self._parts.append(_I32.pack(value))
        return self

    def uint32(self, value: int) -> Writer:
        self._parts.append(_U32.pack(value))
        return self

    def byte(self, value: int) -> Writer:
        self._parts.append(bytes((value,)))
        return self

    def raw(self, value: bytes) -> Writer:
        self._parts.append(value)
        return self

    def cstring(self, value: str) -> Writer:
        self._parts.append(value.encode("utf-8") + b"\x00")
        return self

    def payload(self) -> bytes:
        return b"".join(self._parts)


def frame(type_code: bytes, payload: bytes) -> bytes:
    """A typed message: one type byte, the int32 length (itself included), the payload."""
    return type_code + _I32.pack(len(payload) + 4) + payload


def untyped_frame(payload: bytes) -> bytes:
    """A startup-phase message: the int32 length (itself included) then the payload."""
    return _I32.pack(len(payload) + 4) + payload
