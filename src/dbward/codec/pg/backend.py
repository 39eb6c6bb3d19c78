"""Typed messages a server sends, and their decoder.

Authentication requests share type ``R`` and are told apart by their first
int32; everything else has a type byte of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Self

from dbward.codec.pg.buffer import Reader, Writer, frame
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.frontend import CopyData, CopyDone

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class AuthenticationOk:
    TYPE = b"R"

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(AUTH_OK).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword:
    TYPE = b"R"

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(AUTH_CLEARTEXT).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password:
    TYPE = b"R"
    salt: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(AUTH_MD5).raw(self.salt).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationSASL:
    TYPE = b"R"
    mechanisms: tuple[str, ...]

    def encode(self) -> bytes:
        w = Writer().int32(AUTH_SASL)
        for mechanism in self.mechanisms:
            w.cstring(mechanism)
        return frame(self.TYPE, w.byte(0).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue:
    TYPE = b"R"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(AUTH_SASL_CONTINUE).raw(self.data).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal:
    TYPE = b"R"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(AUTH_SASL_FINAL).raw(self.data).payload())


@dataclass(frozen=True, slots=True)
class AuthenticationOther:
    """Kerberos, GSS, SSPI and other methods dbward does not speak."""

    TYPE = b"R"
    code: int
    data: bytes = b""

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(self.code).raw(self.data).payload())


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    TYPE = b"K"
    process_id: int
    secret_key: int

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().int32(self.process_id).uint32(self.secret_key).payload())


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    TYPE = b"S"
    name: str
    value: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().cstring(self.name).cstring(self.value).payload())


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    TYPE = b"Z"
    status: str = "I"  # I idle, T in transaction, E failed transaction

    def encode(self) -> bytes:
        return frame(self.TYPE, self.status.encode())


@dataclass(frozen=True, slots=True)
class FieldDescription:
    name: str
    table_oid: int
    column: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


@dataclass(frozen=True, slots=True)
class RowDescription:
    TYPE = b"T"
    fields: tuple[FieldDescription, ...]

    def encode(self) -> bytes:
        w = Writer().int16(len(self.fields))
        for f in self.fields:
            w.cstring(f.name).uint32(f.table_oid).int16(f.column).uint32(f.type_oid)
            w.int16(f.type_size).int32(f.type_modifier).int16(f.format)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class DataRow:
    TYPE = b"D"
    values: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        w = Writer().int16(len(self.values))
        for value in self.values:
            if value is None:
                w.int32(-1)
            else:
                w.int32(len(value)).raw(value)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class CommandComplete:
    TYPE = b"C"
    tag: str

    def encode(self) -> bytes:
        return frame(self.TYPE, Writer().cstring(self.tag).payload())

    @property
    def rows(self) -> int | None:
        """Rows affected or returned, from the tag ("SELECT 5", "INSERT 0 3", "COPY 10")."""
        last = self.tag.rsplit(" ", 1)[-1]
        return int(last) if last.isascii() and last.isdigit() and " " in self.tag else None


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse:
    TYPE = b"I"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class _Fields:
    """ErrorResponse and NoticeResponse: a list of (code, value) fields."""

    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return self.fields.get("V") or self.fields.get("S", "")

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def hint(self) -> str:
        return self.fields.get("H", "")

    @classmethod
    def build(
        cls,
        severity: str,
        sqlstate: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
    ) -> Self:
        fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
        if detail:
            fields["D"] = detail
        if hint:
            fields["H"] = hint
        return cls(fields)

    def _encode(self, type_code: bytes) -> bytes:
        w = Writer()
        for code, value in self.fields.items():
            w.raw(code.encode("latin-1")).cstring(value)  # one byte, as decoded
        return frame(type_code, w.byte(0).payload())


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    TYPE = b"E"

    def encode(self) -> bytes:
        return self._encode(self.TYPE)


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    TYPE = b"N"

    def encode(self) -> bytes:
        return self._encode(self.TYPE)


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    TYPE = b"A"
    process_id: int
    channel: str
    payload: str

    def encode(self) -> bytes:
        w = Writer().int32(self.process_id).cstring(self.channel).cstring(self.payload)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class ParseComplete:
    TYPE = b"1"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class BindComplete:
    TYPE = b"2"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class CloseComplete:
    TYPE = b"3"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class NoData:
    TYPE = b"n"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class PortalSuspended:
    TYPE = b"s"

    def encode(self) -> bytes:
        return frame(self.TYPE, b"")


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    TYPE = b"t"
    type_oids: tuple[int, ...]

    def encode(self) -> bytes:
        w = Writer().int16(len(self.type_oids))
        for oid in self.type_oids:
            w.uint32(oid)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class _CopyResponse:
    format: int
    column_formats: tuple[int, ...]

    def _encode(self, type_code: bytes) -> bytes:
        w = Writer().byte(self.format).int16(len(self.column_formats))
        for fmt in self.column_formats:
            w.int16(fmt)
        return frame(type_code, w.payload())


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    TYPE = b"G"

    def encode(self) -> bytes:
        return self._encode(self.TYPE)


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    TYPE = b"H"

    def encode(self) -> bytes:
        return self._encode(self.TYPE)


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    TYPE = b"W"

    def encode(self) -> bytes:
        return self._encode(self.TYPE)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    TYPE = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...] = ()

    def encode(self) -> bytes:
        w = Writer().int32(self.newest_minor).int32(len(self.unrecognized))
        for option in self.unrecognized:
            w.cstring(option)
        return frame(self.TYPE, w.payload())


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    TYPE = b"V"
    data: bytes

    def encode(self) -> bytes:
        return frame(self.TYPE, self.data)


BackendMessage = (
    AuthenticationOk
    | AuthenticationCleartextPassword
    | AuthenticationMD5Password
    | AuthenticationSASL
    | AuthenticationSASLContinue
    | AuthenticationSASLFinal
    | AuthenticationOther
    | BackendKeyData
    | ParameterStatus
    | ReadyForQuery
    | RowDescription
    | DataRow
    | CommandComplete
    | EmptyQueryResponse
    | ErrorResponse
    | NoticeResponse
    | NotificationResponse
    | ParseComplete
    | BindComplete
    | CloseComplete
    | NoData
    | PortalSuspended
    | ParameterDescription
    | CopyInResponse
    | CopyOutResponse
    | CopyBothResponse
    | NegotiateProtocolVersion
    | FunctionCallResponse
    | CopyData
    | CopyDone
)


def _authentication(r: Reader) -> BackendMessage:
    code = r.int32()
    if code == AUTH_OK:
        return AuthenticationOk()
    if code == AUTH_CLEARTEXT:
        return AuthenticationCleartextPassword()
    if code == AUTH_MD5:
        return AuthenticationMD5Password(r.take(4))
    if code == AUTH_SASL:
        mechanisms: list[str] = []
        while (name := r.cstring()) != "":
            mechanisms.append(name)
        return AuthenticationSASL(tuple(mechanisms))
    if code == AUTH_SASL_CONTINUE:
        return AuthenticationSASLContinue(r.rest())
    if code == AUTH_SASL_FINAL:
        return AuthenticationSASLFinal(r.rest())
    return AuthenticationOther(code, r.rest())


def _fields(r: Reader) -> dict[str, str]:
    fields: dict[str, str] = {}
    while (code := r.byte()) != 0:
        fields[chr(code)] = r.cstring()
    return fields


def _row_description(r: Reader) -> RowDescription:
    count = r.int16()
    if count < 0:
        raise ProtocolError("RowDescription message has a negative field count")
    return RowDescription(
        tuple(
            FieldDescription(
                r.cstring(), r.uint32(), r.int16(), r.uint32(), r.int16(), r.int32(), r.int16()
            )
            for _ in range(count)
        )
    )


def _data_row(r: Reader) -> DataRow:
    count = r.int16()
    if count < 0:
        raise ProtocolError("DataRow message has a negative column count")
    values: list[bytes | None] = []
    for _ in range(count):
        size = r.int32()
        if size < -1:
            raise ProtocolError("DataRow message has an invalid value length")
        values.append(None if size == -1 else r.take(size))
    return DataRow(tuple(values))


def _copy_response(cls: type[_CopyResponse]) -> Callable[[Reader], BackendMessage]:
    def decode(r: Reader) -> BackendMessage:
        fmt = r.byte()
        count = r.int16()
        if count < 0:
            raise ProtocolError("copy response has a negative column count")
        message = cls(fmt, tuple(r.int16() for _ in range(count)))
        return message  # type: ignore[return-value]

    return decode


def _ready(r: Reader) -> ReadyForQuery:
    status = chr(r.byte())
    if status not in ("I", "T", "E"):
        raise ProtocolError(f"ReadyForQuery message has an invalid status {status!r}")
    return ReadyForQuery(status)


def _negotiate(r: Reader) -> NegotiateProtocolVersion:
    minor = r.int32()
    count = r.int32()
    if count < 0:
        raise ProtocolError("NegotiateProtocolVersion has a negative option count")
    return NegotiateProtocolVersion(minor, tuple(r.cstring() for _ in range(count)))


def _parameter_description(r: Reader) -> ParameterDescription:
    count = r.int16()
    if count < 0:
        raise ProtocolError("ParameterDescription has a negative count")
    return ParameterDescription(tuple(r.uint32() for _ in range(count)))


_DECODERS: dict[int, Callable[[Reader], BackendMessage]] = {
    ord("R"): _authentication,
    ord("K"): lambda r: BackendKeyData(r.int32(), r.uint32()),
    ord("S"): lambda r: ParameterStatus(r.cstring(), r.cstring()),
    ord("Z"): _ready,
    ord("T"): _row_description,
    ord("D"): _data_row,
    ord("C"): lambda r: CommandComplete(r.cstring()),
    ord("I"): lambda r: EmptyQueryResponse(),
    ord("E"): lambda r: ErrorResponse(_fields(r)),
    ord("N"): lambda r: NoticeResponse(_fields(r)),
    ord("A"): lambda r: NotificationResponse(r.int32(), r.cstring(), r.cstring()),
    ord("1"): lambda r: ParseComplete(),
    ord("2"): lambda r: BindComplete(),
    ord("3"): lambda r: CloseComplete(),
    ord("n"): lambda r: NoData(),
    ord("s"): lambda r: PortalSuspended(),
    ord("t"): _parameter_description,
    ord("G"): _copy_response(CopyInResponse),
    ord("H"): _copy_response(CopyOutResponse),
    ord("W"): _copy_response(CopyBothResponse),
    ord("v"): _negotiate,
    ord("V"): lambda r: FunctionCallResponse(r.rest()),
    ord("d"): lambda r: CopyData(r.rest()),
    ord("c"): lambda r: CopyDone(),
}


def decode_backend(type_code: int, payload: bytes | memoryview) -> BackendMessage:
    """Decode one server message from its type byte and payload."""
    decoder = _DECODERS.get(type_code)
    if decoder is None:
        raise ProtocolError(f"invalid backend message type {type_code!r} ({chr(type_code)!r})")
    r = Reader(payload, f"backend {chr(type_code)!r}")
    message = decoder(r)
    r.done()
    return message
