"""Reading the shape of a result off the wire: RowDescription fields and Bind's formats.

In the extended protocol the DataRows of an Execute may come with no
RowDescription before them (a driver that described the statement once, as
asyncpg does); their columns are the statement's description with the
result formats its Bind asked for.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable

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


def parse_parameter_types(buf: bytes, query: int, end: int) -> tuple[int, ...]:
    """The parameter type OIDs of the Parse payload whose query text starts at ``query``."""
    pos = buf.index(b"\x00", query, end) + 1
    if pos + 2 > end:
        return ()
    (count,) = _I16.unpack_from(buf, pos)
    return struct.unpack_from(f"!{count}I", buf, pos + 2) if count > 0 else ()


_BINARY_SHOWN: dict[int, Callable[[bytes], str]] = {
    16: lambda v: "true" if v == b"\x01" else "false",  # bool
    20: lambda v: str(int.from_bytes(v, "big", signed=True)),  # int8
    21: lambda v: str(int.from_bytes(v, "big", signed=True)),  # int2
    23: lambda v: str(int.from_bytes(v, "big", signed=True)),  # int4
    26: lambda v: str(int.from_bytes(v, "big")),  # oid
    700: lambda v: repr(struct.unpack("!f", v)[0]),  # float4
    701: lambda v: repr(struct.unpack("!d", v)[0]),  # float8
    2950: lambda v: str(uuid.UUID(bytes=v)),  # uuid
}
_TEXT_TYPES = frozenset({18, 19, 25, 1042, 1043, 114, 3802})  # char, name, text, json(b)...
_SHOWN_LIMIT = 500


def _shown_binary(value: bytes, type_oid: int) -> str:
    show = _BINARY_SHOWN.get(type_oid)
    if show is not None:
        try:
            return show(value)
        except (ValueError, struct.error):
            pass
    if type_oid in _TEXT_TYPES:
        text = value[1:] if type_oid == 3802 and value[:1] == b"\x01" else value
        return text.decode("utf-8", "replace")
    return f"<binary {len(value)} bytes: {value[:32].hex()}>"


def bind_parameters(
    buf: bytes, start: int, end: int, types: tuple[int, ...] = ()
) -> tuple[bytes, tuple[str, ...]]:
    """A Bind's parameter values: as bytes that are equal when the values are (what makes
    two executions of one statement identical; result formats do not count), and as an
    approver is shown them (binary values of common types decoded with the Parse's types)."""
    pos = buf.index(b"\x00", buf.index(b"\x00", start, end) + 1, end) + 1
    (count,) = _I16.unpack_from(buf, pos)
    formats = struct.unpack_from(f"!{count}h", buf, pos + 2)
    pos += 2 + 2 * count
    (params,) = _I16.unpack_from(buf, pos)
    pos += 2
    key: list[bytes] = []
    shown: list[str] = []
    for index in range(params):
        (length,) = _I32.unpack_from(buf, pos)
        pos += 4
        binary = (formats[index] if len(formats) > 1 else formats[0] if formats else 0) == 1
        if length < 0:
            key.append(b"\xff")
            shown.append("NULL")
            continue
        value = buf[pos : pos + length]
        pos += length
        key.append(bytes((binary,)) + _I32.pack(length) + value)
        if binary:
            text = _shown_binary(value, types[index] if index < len(types) else 0)
        else:
            text = value.decode("utf-8", "replace")
        shown.append(text if len(text) <= _SHOWN_LIMIT else text[:_SHOWN_LIMIT] + "...")
    return b"".join(key), tuple(shown)
