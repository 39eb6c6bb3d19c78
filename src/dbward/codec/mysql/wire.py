"""The protocol's primitive fields: fixed and length-encoded integers, and strings."""

from __future__ import annotations

import struct

from dbward.codec.mysql.errors import MysqlProtocolError

_U16 = struct.Struct("<H")
_U24_LOW = struct.Struct("<HB")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

NULL_VALUE = 0xFB  # a NULL where a length-encoded string is expected (text rows)


def lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + _U16.pack(value)
    if value < 1 << 24:
        return b"\xfd" + _U32.pack(value)[:3]
    return b"\xfe" + _U64.pack(value)


def lenenc_str(value: bytes) -> bytes:
    return lenenc_int(len(value)) + value


def read_lenenc(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """The length-encoded integer at ``data[pos]``, and where it ends.

    Raises for 0xFB (NULL) and 0xFF, which are not integers here.
    """
    limit = len(data) if end is None else end
    if pos >= limit:
        raise MysqlProtocolError("a length-encoded integer runs past the packet")
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        if pos + 3 > limit:
            raise MysqlProtocolError("a length-encoded integer runs past the packet")
        return _U16.unpack_from(data, pos + 1)[0], pos + 3
    if first == 0xFD:
        if pos + 4 > limit:
            raise MysqlProtocolError("a length-encoded integer runs past the packet")
        low, high = _U24_LOW.unpack_from(data, pos + 1)
        return low | high << 16, pos + 4
    if first == 0xFE:
        if pos + 9 > limit:
            raise MysqlProtocolError("a length-encoded integer runs past the packet")
        return _U64.unpack_from(data, pos + 1)[0], pos + 9
    raise MysqlProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")


def read_lenenc_str(data: bytes, pos: int, end: int | None = None) -> tuple[bytes, int]:
    length, pos = read_lenenc(data, pos, end)
    stop = pos + length
    if stop > (len(data) if end is None else end):
        raise MysqlProtocolError("a length-encoded string runs past the packet")
    return data[pos:stop], stop


def read_nul_str(data: bytes, pos: int, end: int | None = None) -> tuple[bytes, int]:
    limit = len(data) if end is None else end
    stop = data.find(b"\x00", pos, limit)
    if stop < 0:
        raise MysqlProtocolError("a NUL-terminated string has no NUL")
    return data[pos:stop], stop + 1


def u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise MysqlProtocolError("packet too short for a 2-byte integer")
    return int(_U16.unpack_from(data, pos)[0])


def u32(data: bytes, pos: int) -> int:
    if pos + 4 > len(data):
        raise MysqlProtocolError("packet too short for a 4-byte integer")
    return int(_U32.unpack_from(data, pos)[0])


def p16(value: int) -> bytes:
    return _U16.pack(value)


def p32(value: int) -> bytes:
    return _U32.pack(value)


def p24(value: int) -> bytes:
    return _U32.pack(value)[:3]


def read_attributes(data: bytes, pos: int) -> tuple[dict[str, str], int]:
    """Connection attributes (a length, then key/value length-encoded strings)."""
    total, pos = read_lenenc(data, pos)
    stop = pos + total
    if stop > len(data):
        raise MysqlProtocolError("connection attributes run past the packet")
    attributes: dict[str, str] = {}
    while pos < stop:
        key, pos = read_lenenc_str(data, pos, stop)
        value, pos = read_lenenc_str(data, pos, stop)
        attributes[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return attributes, stop
