"""Reading the shape of a result off the wire: RowDescription fields and Bind's formats.

In the extended protocol the DataRows of an Execute may come with no
RowDescription before them (a driver that described the statement once, as
asyncpg does); their columns are the statement's description with the
result formats its Bind asked for.
"""

from __future__ import annotations

import struct

from dbward.masking.plan import Field

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_FIELD_TAIL = struct.Struct("!IhIhih")


def row_description(buf: bytes, start: int, end: int) -> list[Field]:
    """The columns of the RowDescription payload at ``buf[start:end]``."""
    (count,) = _I16.unpack_from(buf, start)
    pos = start + 2
    fields = []
    for _ in range(count):
        nul = buf.index(b"\x00", pos, end)
        name = buf[pos:nul].decode("utf-8", "replace")
        table_oid, attnum, type_oid, _size, typmod, fmt = _FIELD_TAIL.unpack_from(buf, nul + 1)
        pos = nul + 1 + _FIELD_TAIL.size
        fields.append(Field(name, table_oid, attnum, type_oid, typmod, fmt == 1))
    return fields


def bind_result_formats(buf: bytes, start: int, end: int) -> tuple[int, ...]:
    """The result-column format codes at the end of the Bind payload at ``buf[start:end]``."""
    pos = buf.index(b"\x00", buf.index(b"\x00", start, end) + 1, end) + 1
    (count,) = _I16.unpack_from(buf, pos)
    pos += 2 + 2 * count
    (params,) = _I16.unpack_from(buf, pos)
    pos += 2
    for _ in range(params):
        (length,) = _I32.unpack_from(buf, pos)
        pos += 4 + max(length, 0)
    (count,) = _I16.unpack_from(buf, pos)
    return struct.unpack_from(f"!{count}h", buf, pos + 2)


def with_formats(fields: list[Field], formats: tuple[int, ...]) -> list[Field]:
    """``fields`` as a Bind with these result formats returns them (none: all text)."""
    if not formats:
        binary = [False] * len(fields)
    elif len(formats) == 1:
        binary = [formats[0] == 1] * len(fields)
    else:
        binary = [f == 1 for f in formats]
    return [
        Field(f.name, f.table_oid, f.attnum, f.type_oid, f.typmod, b)
        for f, b in zip(fields, binary, strict=False)
    ]


def bind_parameters(buf: bytes, start: int, end: int) -> tuple[bytes, tuple[str, ...]]:
    """A Bind's parameters: its bytes after the two names (what makes two executions of
    one statement identical), and each value as an approver is shown it."""
    pos = buf.index(b"\x00", buf.index(b"\x00", start, end) + 1, end) + 1
    raw = buf[pos:end]
    (count,) = _I16.unpack_from(buf, pos)
    formats = struct.unpack_from(f"!{count}h", buf, pos + 2)
    pos += 2 + 2 * count
    (params,) = _I16.unpack_from(buf, pos)
    pos += 2
    shown: list[str] = []
    for index in range(params):
        (length,) = _I32.unpack_from(buf, pos)
        pos += 4
        if length < 0:
            shown.append("NULL")
            continue
        value = buf[pos : pos + length]
        pos += length
        binary = (formats[index] if len(formats) > 1 else formats[0] if formats else 0) == 1
        if binary:
            shown.append(f"<binary {length} bytes: {value[:32].hex()}>")
        else:
            text = value.decode("utf-8", "replace")
            shown.append(text if len(text) <= 500 else text[:500] + "...")
    return raw, tuple(shown)
