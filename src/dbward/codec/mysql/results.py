"""Result sets: column definitions, text rows, binary rows and statement parameters."""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from dbward.codec.mysql.constants import (
    BINARY_CHARSET,
    DATE_TIME_TYPES,
    FIXED_SIZES,
    UNSIGNED_FLAG,
    ColumnType,
)
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.wire import lenenc_str, p16, p32, read_lenenc, read_lenenc_str, u16, u32

T = ColumnType


@dataclass(frozen=True, slots=True)
class ColumnDefinition:
    """One column of a result (ColumnDefinition41): names, origin, type."""

    schema: str
    table: str
    org_table: str
    name: str
    org_name: str
    charset: int
    length: int
    type: int
    flags: int = 0
    decimals: int = 0
    catalog: str = "def"

    @property
    def unsigned(self) -> bool:
        return bool(self.flags & UNSIGNED_FLAG)

    @property
    def binary(self) -> bool:
        """Bytes rather than text (BINARY, VARBINARY, BLOB, ...)."""
        return self.charset == BINARY_CHARSET

    def encode(self) -> bytes:
        return b"".join(
            (
                lenenc_str(self.catalog.encode()),
                lenenc_str(self.schema.encode()),
                lenenc_str(self.table.encode()),
                lenenc_str(self.org_table.encode()),
                lenenc_str(self.name.encode()),
                lenenc_str(self.org_name.encode()),
                b"\x0c",
                p16(self.charset),
                p32(self.length),
                bytes((self.type,)),
                p16(self.flags),
                bytes((self.decimals,)),
                b"\x00\x00",
            )
        )

    @classmethod
    def decode(cls, payload: bytes, start: int = 0, end: int | None = None) -> ColumnDefinition:
        stop = len(payload) if end is None else end
        names = []
        pos = start
        for _ in range(6):
            raw, pos = read_lenenc_str(payload, pos, stop)
            names.append(raw.decode("utf-8", "replace"))
        _, pos = read_lenenc(payload, pos, stop)  # length of the fixed fields: 0x0c
        if pos + 10 > stop:
            raise MysqlProtocolError("column definition too short")
        return cls(
            names[1],
            names[2],
            names[3],
            names[4],
            names[5],
            u16(payload, pos),
            u32(payload, pos + 2),
            payload[pos + 6],
            u16(payload, pos + 7),
            payload[pos + 9],
            names[0],
        )


Span = tuple[int, int, int]
"""(field start, value start, value end) in a row's payload: the field includes a length
prefix where there is one. A NULL has value start -1 (and, in a binary row, no bytes)."""


def text_row_spans(payload: bytes, start: int, end: int, count: int) -> list[Span]:
    """Where each of a text row's ``count`` values is."""
    spans: list[Span] = []
    pos = start
    for _ in range(count):
        if pos >= end:
            raise MysqlProtocolError("malformed row: fewer values than columns")
        if payload[pos] == 0xFB:
            spans.append((pos, -1, pos + 1))
            pos += 1
            continue
        field = pos
        length, pos = read_lenenc(payload, pos, end)
        stop = pos + length
        if stop > end:
            raise MysqlProtocolError("malformed row: a value runs past the packet")
        spans.append((field, pos, stop))
        pos = stop
    if pos != end:
        raise MysqlProtocolError("malformed row: more values than columns")
    return spans


def binary_value_end(payload: bytes, pos: int, end: int, type_: int) -> int:
    size: int | None = FIXED_SIZES.get(type_)  # type: ignore[call-overload]
    stop: int
    if size is not None:
        stop = pos + size
    elif type_ in DATE_TIME_TYPES:
        if pos >= end:
            raise MysqlProtocolError("malformed binary row: a value runs past the packet")
        stop = pos + 1 + payload[pos]
    elif type_ == T.NULL:
        stop = pos
    else:
        length, pos = read_lenenc(payload, pos, end)
        stop = pos + length
    if stop > end:
        raise MysqlProtocolError("malformed binary row: a value runs past the packet")
    return stop


def binary_row_spans(payload: bytes, start: int, end: int, types: Sequence[int]) -> list[Span]:
    """Where each value of a binary row (header 0x00, NULL bitmap, values) is.

    A length-encoded value's excludes its length; a date/time value's includes its
    length byte.
    """
    count = len(types)
    bitmap_len = (count + 7 + 2) // 8
    if end - start < 1 + bitmap_len or payload[start] != 0:
        raise MysqlProtocolError("malformed binary row header")
    bitmap = start + 1
    pos = bitmap + bitmap_len
    spans: list[Span] = []
    for index, type_ in enumerate(types):
        bit = index + 2
        if payload[bitmap + bit // 8] & (1 << (bit % 8)):
            spans.append((pos, -1, pos))
            continue
        if type_ not in FIXED_SIZES and type_ not in DATE_TIME_TYPES and type_ != T.NULL:
            length, value_start = read_lenenc(payload, pos, end)
            stop = value_start + length
            if stop > end:
                raise MysqlProtocolError("malformed binary row: a value runs past the packet")
            spans.append((pos, value_start, stop))
            pos = stop
            continue
        stop = binary_value_end(payload, pos, end, type_)
        spans.append((pos, pos, stop))
        pos = stop
    if pos != end:
        raise MysqlProtocolError("malformed binary row: more bytes than its columns hold")
    return spans


def set_null(bitmap: bytearray, index: int) -> None:
    bit = index + 2
    bitmap[bit // 8] |= 1 << (bit % 8)


# binary values <-> text -----------------------------------------------------------------

_INTS = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}


def binary_int(value: bytes, unsigned: bool) -> int:
    fmt = _INTS[len(value)]
    if unsigned:
        fmt = fmt.upper()
    return int(struct.unpack(fmt, value)[0])


def encode_int(number: int, size: int, unsigned: bool) -> bytes:
    """``number`` in a ``size``-byte integer; raises struct.error when it does not fit."""
    fmt = _INTS[size]
    return struct.pack(fmt.upper() if unsigned else fmt, number)


def binary_date_text(value: bytes) -> str:
    """A binary DATE/DATETIME/TIMESTAMP value (length byte first) as MySQL writes it."""
    size = value[0]
    year = month = day = hour = minute = second = micro = 0
    if size >= 4:
        year, month, day = struct.unpack_from("<HBB", value, 1)
    if size >= 7:
        hour, minute, second = value[5], value[6], value[7]
    if size >= 11:
        micro = struct.unpack_from("<I", value, 8)[0]
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if size >= 7:
        text += f" {hour:02d}:{minute:02d}:{second:02d}"
    if micro:
        text += f".{micro:06d}"
    return text


_DATE_TEXT = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)?")


def encode_binary_date(text: str, with_time: bool) -> bytes:
    """A DATE (or DATETIME) text value as a binary one (length byte first). Zero and
    partly zero dates, which MySQL allows, are kept as they are; raises ValueError for
    text that is not a date."""
    match = _DATE_TEXT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a date: {text!r}")
    year, month, day = (int(match.group(i)) for i in (1, 2, 3))
    if month > 12 or day > 31:
        raise ValueError(f"not a date: {text!r}")
    hour, minute, second = (int(match.group(i) or 0) for i in (4, 5, 6))
    micro = int((match.group(7) or "0").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a time of day: {text!r}")
    if not with_time:
        return b"\x04" + struct.pack("<HBB", year, month, day)
    out = struct.pack("<HBBBBB", year, month, day, hour, minute, second)
    if micro:
        return b"\x0b" + out + struct.pack("<I", micro)
    return b"\x07" + out


# COM_STMT_EXECUTE ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecuteParams:
    """A COM_STMT_EXECUTE's parameters: raw (for fingerprints) and shown (for approvers)."""

    statement_id: int
    flags: int
    types: tuple[tuple[int, bool], ...]  # (type, unsigned) per parameter
    raw: bytes  # the NULL bitmap, types and values as sent
    shown: tuple[str, ...]


def decode_execute(
    payload: bytes, params: int, previous_types: tuple[tuple[int, bool], ...] = ()
) -> ExecuteParams:
    """A COM_STMT_EXECUTE for a statement with ``params`` parameters."""
    if len(payload) < 10:
        raise MysqlProtocolError("COM_STMT_EXECUTE too short")
    stmt = u32(payload, 1)
    flags = payload[5]
    pos = 10
    if not params:
        return ExecuteParams(stmt, flags, (), b"", ())
    bitmap_len = (params + 7) // 8
    if pos + bitmap_len + 1 > len(payload):
        raise MysqlProtocolError("COM_STMT_EXECUTE ends before its parameters")
    bitmap = payload[pos : pos + bitmap_len]
    raw_start = pos
    pos += bitmap_len
    bound = payload[pos]
    pos += 1
    types = previous_types
    if bound:
        found = []
        for _ in range(params):
            if pos + 2 > len(payload):
                raise MysqlProtocolError("COM_STMT_EXECUTE ends inside its parameter types")
            found.append((payload[pos], bool(payload[pos + 1] & 0x80)))
            pos += 2
        types = tuple(found)
    if len(types) != params:
        raise MysqlProtocolError("COM_STMT_EXECUTE sends values without their types")
    shown: list[str] = []
    for index, (type_, unsigned) in enumerate(types):
        if bitmap[index // 8] & (1 << (index % 8)):
            shown.append("NULL")
            continue
        stop = binary_value_end(payload, pos, len(payload), type_)
        value = payload[pos:stop]
        shown.append(_shown(value, type_, unsigned))
        pos = stop
    return ExecuteParams(stmt, flags, types, payload[raw_start:], tuple(shown))


def _shown(value: bytes, type_: int, unsigned: bool) -> str:
    if type_ in FIXED_SIZES:
        if type_ == T.FLOAT:
            return repr(struct.unpack("<f", value)[0])
        if type_ == T.DOUBLE:
            return repr(struct.unpack("<d", value)[0])
        return str(binary_int(value, unsigned))
    if type_ in DATE_TIME_TYPES:
        if type_ in (T.TIME, T.TIME2):
            return value.hex()
        return binary_date_text(value) if value[0] else "0000-00-00"
    try:
        text, _ = read_lenenc_str(value, 0)
    except MysqlProtocolError:
        return value.hex()
    return text.decode("utf-8", "replace")
