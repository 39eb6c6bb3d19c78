"""PostgreSQL arrays in both wire formats: split into elements and put back together.

Text format: ``{a,"b c",NULL,{nested}}`` with an optional ``[1:2]=`` bounds
prefix, which is kept as it was. Binary format: dimensions, then each element
as an int32 length (-1 for NULL) and its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

Element = bytes | None
Nested = list["Nested | Element"]

_HEADER = struct.Struct("!iii")
_DIM = struct.Struct("!ii")
_LEN = struct.Struct("!i")


class ArrayFormatError(ValueError):
    pass


def _parse_text(data: bytes, pos: int) -> tuple[Nested, int]:
    """Parse the ``{...}`` at ``data[pos]``; return the items and the offset after it."""
    if data[pos : pos + 1] != b"{":
        raise ArrayFormatError("array literal does not start with '{'")
    items: Nested = []
    pos += 1
    size = len(data)
    while pos < size:
        char = data[pos : pos + 1]
        if char == b"}":
            return items, pos + 1
        if char in (b",", b" "):
            pos += 1
        elif char == b"{":
            nested, pos = _parse_text(data, pos)
            items.append(nested)
        elif char == b'"':
            out = bytearray()
            pos += 1
            while pos < size and data[pos : pos + 1] != b'"':
                if data[pos : pos + 1] == b"\\":
                    pos += 1
                out += data[pos : pos + 1]
                pos += 1
            items.append(bytes(out))
            pos += 1
        else:
            start = pos
            while pos < size and data[pos : pos + 1] not in (b",", b"}"):
                pos += 1
            raw = data[start:pos].strip()
            items.append(None if raw.upper() == b"NULL" else raw)
    raise ArrayFormatError("array literal is not closed")


def _quote(value: Element) -> bytes:
    if value is None:
        return b"NULL"
    if not value or value.upper() == b"NULL" or any(c in value for c in b'{},"\\ \t\n\r'):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return value


def _write_text(items: Nested) -> bytes:
    parts = [_write_text(i) if isinstance(i, list) else _quote(i) for i in items]
    return b"{" + b",".join(parts) + b"}"


def _map(items: Nested, mask: Callable[[bytes], Element]) -> tuple[Nested, bool]:
    changed = False
    out: Nested = []
    for item in items:
        if isinstance(item, list):
            nested, inner = _map(item, mask)
            out.append(nested)
            changed = changed or inner
        elif item is None:
            out.append(None)
        else:
            new = mask(item)
            out.append(new)
            changed = changed or new is not item
    return out, changed


def map_text(data: bytes, mask: Callable[[bytes], Element]) -> bytes | None:
    """The text-format array with each element passed through ``mask``; None if unchanged.

    ``mask`` returns its argument itself when it leaves an element alone.
    """
    prefix_end = data.find(b"=") + 1 if data.startswith(b"[") else 0
    items, end = _parse_text(data, prefix_end)
    if data[end:].strip():
        raise ArrayFormatError("trailing data after the array literal")
    mapped, changed = _map(items, mask)
    return data[:prefix_end] + _write_text(mapped) if changed else None


def map_binary(data: bytes, mask: Callable[[bytes], Element]) -> bytes | None:
    """The binary-format array with each element passed through ``mask``; None if unchanged."""
    if len(data) < 12:
        raise ArrayFormatError("binary array is shorter than its header")
    ndim, _flags, element_oid = _HEADER.unpack_from(data, 0)
    pos = 12 + 8 * ndim
    dims = data[12:pos]
    out = [b""]
    changed = has_null = False
    size = len(data)
    while pos < size:
        (length,) = _LEN.unpack_from(data, pos)
        pos += 4
        if length < 0:
            out.append(_LEN.pack(-1))
            has_null = True
            continue
        value = data[pos : pos + length]
        pos += length
        new = mask(value)
        if new is not value:
            changed = True
        if new is None:
            out.append(_LEN.pack(-1))
            has_null = True
        else:
            out.append(_LEN.pack(len(new)) + new)
    if not changed:
        return None
    out[0] = _HEADER.pack(ndim, 1 if has_null else 0, element_oid) + dims
    return b"".join(out)
