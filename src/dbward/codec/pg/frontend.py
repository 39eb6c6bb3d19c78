"""Typed messages a client sends after startup, and their decoder.

Each message is a frozen dataclass with ``encode()``; :func:`decode_frontend`
turns one frame (type byte + payload) into a message or raises
:class:`ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dbward.codec.pg.buffer import Reader, Writer, frame
from dbward.codec.pg.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Query:
    TYPE = b"Q"
    sql: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().cstring(self.sql).payload())


@dataclass(frozen=True, slots=True)
class Parse:
    TYPE = b"P"
    name: str
    sql: str
    param_types: tuple[int, ...] = ()

    def encode(self) -> bytes:
        w = Writer().cstring(self.name).cstring(self.sql).int16(len(self.param_types))
        for oid in self.param_types:
            w.uint32(oid)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class Bind:
    TYPE = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def encode(self) -> bytes:
        w = Writer().cstring(self.portal).cstring(self.statement)
        w.int16(len(self.param_formats))
        for fmt in self.param_formats:
            w.int16(fmt)
        w.int16(len(self.params))
        for value in self.params:
            if value is None:
                w.int32(-1)
            else:
                w.int32(len(value)).raw(value)
        w.int16(len(self.result_formats))
        for fmt in self.result_formats:
            w.int16(fmt)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class Describe:
    TYPE = b"D"
    kind: str  # "S" statement or "P" portal
    name: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().raw(self.kind.encode()).cstring(self.name).payload())


@dataclass(frozen=True, slots=True)
class Execute:
    TYPE = b"E"
    portal: str
    max_rows: int = 0

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().cstring(self.portal).int32(self.max_rows).payload())


@dataclass(frozen=True, slots=True)
class Close:
    TYPE = b"C"
    kind: str  # "S" or "P"
    name: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().raw(self.kind.encode()).cstring(self.name).payload())


@dataclass(frozen=True, slots=True)
class Sync:
    TYPE = b"S"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class Flush:
    TYPE = b"H"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class Terminate:
    TYPE = b"X"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class CopyData:
    """Sent by either side during COPY."""

    TYPE = b"d"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)


@dataclass(frozen=True, slots=True)
class CopyDone:
    TYPE = b"c"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class CopyFail:
    TYPE = b"f"
    message: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().cstring(self.message).payload())


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """PasswordMessage, SASLInitialResponse and SASLResponse share type ``p``.

    Which one it is depends on the authentication request that came before,
    so the payload stays raw here; see :mod:`dbward.codec.pg.auth`.
    """

    TYPE = b"p"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)

    @classmethod
    def cleartext(cls, password: str) -> PasswordMessage:
        return cls(Writer().cstring(password).payload())

    def password(self) -> str:
        r = Reader(self.data, "PasswordMessage")
        value = r.cstring()
        r.done()
        return value


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The legacy fast-path function call; kept raw, only forwarded."""

    TYPE = b"F"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)


FrontendMessage = (
    Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Close
    | Sync
    | Flush
    | Terminate
    | CopyData
    | CopyDone
    | CopyFail
    | PasswordMessage
    | FunctionCall
)


def _query(r: Reader) -> Query:
    return Query(r.cstring())


def _parse(r: Reader) -> Parse:
    name, sql = r.cstring(), r.cstring()
    count = r.int16()
    if count < 0:
        raise ProtocolError("Parse message has a negative parameter count")
    return Parse(name, sql, tuple(r.uint32() for _ in range(count)))


def _int16_list(r: Reader, what: str) -> tuple[int, ...]:
    count = r.int16()
    if count < 0:
        raise ProtocolError(f"Bind message has a negative {what} count")
    return tuple(r.int16() for _ in range(count))


def _bind(r: Reader) -> Bind:
    portal, statement = r.cstring(), r.cstring()
    param_formats = _int16_list(r, "parameter format")
    count = r.int16()
    if count < 0:
        raise ProtocolError("Bind message has a negative parameter count")
    params: list[bytes | None] = []
    for _ in range(count):
        size = r.int32()
        if size < -1:
            raise ProtocolError("Bind message has an invalid parameter length")
        params.append(None if size == -1 else r.take(size))
    return Bind(portal, statement, param_formats, tuple(params), _int16_list(r, "result format"))


def _kind_and_name(r: Reader, what: str) -> tuple[str, str]:
    kind = chr(r.byte())
    if kind not in ("S", "P"):
        raise ProtocolError(f"{what} message has an invalid target type {kind!r}")
    return kind, r.cstring()


def _describe(r: Reader) -> Describe:
    return Describe(*_kind_and_name(r, "Describe"))


def _execute(r: Reader) -> Execute:
    return Execute(r.cstring(), r.int32())


def _close(r: Reader) -> Close:
    return Close(*_kind_and_name(r, "Close"))


_DECODERS: dict[int, Callable[[Reader], FrontendMessage]] = {
    ord("Q"): _query,
    ord("P"): _parse,
    ord("B"): _bind,
    ord("D"): _describe,
    ord("E"): _execute,
    ord("C"): _close,
    ord("S"): lambda r: Sync(),
    ord("H"): lambda r: Flush(),
    ord("X"): lambda r: Terminate(),
    ord("d"): lambda r: CopyData(r.rest()),
    ord("c"): lambda r: CopyDone(),
    ord("f"): lambda r: CopyFail(r.cstring()),
    ord("p"): lambda r: PasswordMessage(r.rest()),
    ord("F"): lambda r: FunctionCall(r.rest()),
}

FRONTEND_NAMES = {
    ord("Q"): "Query",
    ord("P"): "Parse",
    ord("B"): "Bind",
    ord("D"): "Describe",
    ord("E"): "Execute",
    ord("C"): "Close",
    ord("S"): "Sync",
    ord("H"): "Flush",
    ord("X"): "Terminate",
    ord("d"): "CopyData",
    ord("c"): "CopyDone",
    ord("f"): "CopyFail",
    ord("p"): "PasswordMessage",
    ord("F"): "FunctionCall",
}


def decode_frontend(type_code: int, payload: bytes | memoryview) -> FrontendMessage:
    """Decode one client message from its type byte and payload."""
    decoder = _DECODERS.get(type_code)
    if decoder is None:
        raise ProtocolError(f"invalid frontend message type {type_code!r} ({chr(type_code)!r})")
    r = Reader(payload, FRONTEND_NAMES[type_code])
    message = decoder(r)
    r.done()
    return message
