"""``COPY ... TO STDOUT``: the rows of its CopyData messages, masked in their own format.

The server sends one row per CopyData message. Text format: fields split by
the delimiter, backslash escapes, ``\\N`` for NULL. CSV: fields quoted as
needed, NULL as the (unquoted) null string, an optional header line. Binary:
a signature header before the first tuple, then per tuple a field count and
length-prefixed fields, and a -1 trailer. Masked values never contain a
delimiter, quote, backslash or line break, and masked CSV fields are quoted.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pglast import parse_sql, parser
from pglast.stream import RawStream

from dbward.codec.pg.framing import Frame
from dbward.masking.native import Kernel
from dbward.masking.rows import UNCHANGED, RowMasker

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_UNESCAPE = {b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"f": b"\f", b"v": b"\v"}


@dataclass(frozen=True, slots=True)
class CopyOptions:
    format: str = "text"  # text, csv or binary
    delimiter: bytes = b"\t"
    null: bytes = b"\\N"
    quote: bytes = b'"'
    header: bool = False
    schema: str | None = None  # COPY table: the table; COPY (query): None
    table: str | None = None
    columns: tuple[str, ...] = ()
    query: str | None = None  # COPY (query): the query, as PostgreSQL's deparser writes it

    @property
    def binary(self) -> bool:
        return self.format == "binary"


def _option(element: dict[str, Any]) -> tuple[str, Any]:
    definition = element["DefElem"]
    arg = definition.get("arg", {})
    if "String" in arg:
        value: Any = arg["String"].get("sval", "")
    elif "Boolean" in arg:
        value = arg["Boolean"].get("boolval", False)
    elif "Integer" in arg:
        value = arg["Integer"].get("ival", 0)
    else:
        value = True
    return definition["defname"], value


def copy_options(text: str) -> CopyOptions | None:
    """The options of the ``COPY ... TO`` in ``text`` (None: not a single COPY TO)."""
    try:
        stmts = json.loads(parser.parse_sql_json(text))["stmts"]
    except parser.ParseError:
        return None
    if len(stmts) != 1 or "CopyStmt" not in stmts[0]["stmt"]:
        return None
    node = stmts[0]["stmt"]["CopyStmt"]
    options = dict(_option(o) for o in node.get("options", []))
    fmt = str(options.get("format", "text")).lower()
    csv = fmt == "csv"
    delimiter = str(options.get("delimiter", "," if csv else "\t")).encode()
    null = str(options.get("null", "" if csv else "\\N")).encode()
    header = options.get("header", False)
    relation = node.get("relation")
    return CopyOptions(
        query=None if relation else _inner_query(text),
        format=fmt,
        delimiter=delimiter,
        null=null,
        quote=str(options.get("quote", '"')).encode(),
        header=bool(header) and header != "false",
        schema=relation.get("schemaname") if relation else None,
        table=relation.get("relname") if relation else None,
        columns=tuple(a["String"]["sval"] for a in node.get("attlist", [])),
    )


def _inner_query(text: str) -> str | None:
    try:
        query = getattr(parse_sql(text)[0].stmt, "query", None)
        return str(RawStream()(query)) if query is not None else None
    except (parser.ParseError, AttributeError, IndexError):
        return None


def _unescape(field: bytes) -> bytes:
    if b"\\" not in field:
        return field
    out = bytearray()
    pos = 0
    while pos < len(field):
        char = field[pos : pos + 1]
        if char == b"\\" and pos + 1 < len(field):
            nxt = field[pos + 1 : pos + 2]
            out += _UNESCAPE.get(nxt, nxt)
            pos += 2
        else:
            out += char
            pos += 1
    return bytes(out)


def _escape(value: bytes, delimiter: bytes) -> bytes:
    value = value.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return value.replace(delimiter, b"\\" + delimiter)


def _split_text(body: bytes, delimiter: bytes) -> list[bytes]:
    """Text-format fields: split at each delimiter that no backslash escapes."""
    if b"\\" + delimiter not in body:
        return body.split(delimiter)
    fields = []
    start = pos = 0
    while pos < len(body):
        char = body[pos : pos + 1]
        if char == b"\\":
            pos += 2
            continue
        if char == delimiter:
            fields.append(body[start:pos])
            start = pos + 1
        pos += 1
    fields.append(body[start:])
    return fields


def _split_csv(line: bytes, delimiter: bytes, quote: bytes) -> list[tuple[bytes, bool]]:
    """CSV fields as (raw text, was quoted); quotes removed and doubled quotes undone."""
    fields: list[tuple[bytes, bool]] = []
    pos = 0
    size = len(line)
    while True:
        if line[pos : pos + 1] == quote:
            out = bytearray()
            pos += 1
            while pos < size:
                char = line[pos : pos + 1]
                if char == quote:
                    if line[pos + 1 : pos + 2] == quote:
                        out += quote
                        pos += 2
                        continue
                    pos += 1
                    break
                out += char
                pos += 1
            fields.append((bytes(out), True))
        else:
            end = line.find(delimiter, pos)
            end = size if end < 0 else end
            fields.append((line[pos:end], False))
            pos = end
        if pos >= size:
            return fields
        pos += len(delimiter)  # past the delimiter
        if pos >= size:
            fields.append((b"", False))
            return fields


MaskerFor = Callable[[int], RowMasker | None]
"""A row masker for rows of ``n`` fields (COPY of a query, whose columns are unknown)."""


class CopyMasker:
    """Masks the CopyData rows of one COPY."""

    def __init__(self, options: CopyOptions, masker: RowMasker | None, fallback: MaskerFor) -> None:
        self.options = options
        self.masker = masker
        self._fallback = fallback
        self._rows = 0
        self._kernel: Kernel | None = None
        self._kernel_for: RowMasker | None = None

    def _text_kernel(self, masker: RowMasker) -> Kernel | None:
        """The C kernel for text lines, if rows are masked in C."""
        if self._kernel_for is not masker:
            delimiter = self.options.delimiter
            self._kernel = masker.copy_kernel(lambda v: _escape(v, delimiter), _unescape)
            self._kernel_for = masker
        return self._kernel

    def _masker(self, width: int) -> RowMasker | None:
        if self.masker is None:
            self.masker = self._fallback(width)
        return self.masker

    def run(self, block: bytes, frames: list[Frame], index: int) -> tuple[int, bytes | None]:
        """The CopyData messages ``frames[index:next]`` of ``block`` masked, as messages
        (None if none changed), and ``next``: where they end."""
        options = self.options
        kernel = None
        if self.masker is not None and not (options.header and self._rows == 0):
            kernel = self.masker.kernel if options.binary else None
            if options.format == "text":
                kernel = self._text_kernel(self.masker)
        if kernel is not None:
            delimiter = -1 if options.binary else options.delimiter[0]
            stop, out = kernel.copy_run(block, frames, index, delimiter, options.null)
            self._rows += stop - index
            return stop, out
        # In Python: a CSV, a header line, or the first line of an unknown query's result.
        _, start, end = frames[index]
        masked = self.rewrite(block, start, end)
        if masked is None:
            return index + 1, None
        return index + 1, b"d" + _I32.pack(len(masked) + 4) + masked

    def rewrite(self, block: bytes, start: int, end: int) -> bytes | None:
        """The CopyData payload at ``block[start:end]`` masked, or None if unchanged."""
        self._rows += 1
        if self.options.binary:
            return self._binary(block[start:end])
        line = block[start:end]
        newline = b"\n" if line.endswith(b"\n") else b""
        body = line[:-1] if newline else line
        if body.endswith(b"\r"):
            newline = b"\r" + newline
            body = body[:-1]
        if self.options.header and self._rows == 1:
            return None
        masked = self._csv(body) if self.options.format == "csv" else self._text(body)
        return None if masked is None else masked + newline

    def _text(self, body: bytes) -> bytes | None:
        delimiter = self.options.delimiter
        fields = _split_text(body, delimiter)
        masker = self._masker(len(fields))
        if masker is None:
            return None
        kernel = self._text_kernel(masker)
        if kernel is not None:
            return kernel.copy(body, 0, len(body), delimiter[0], self.options.null)
        changed = False
        for column in masker.plan.columns:
            if column.index >= len(fields) or fields[column.index] == self.options.null:
                continue
            raw = fields[column.index]
            value = _unescape(raw) if column.entity is not None else raw
            masked = masker.mask_value(column, value)
            if masked is UNCHANGED:
                continue
            assert masked is None or isinstance(masked, bytes)
            fields[column.index] = (
                self.options.null if masked is None else _escape(masked, delimiter)
            )
            changed = True
        return delimiter.join(fields) if changed else None

    def _csv(self, body: bytes) -> bytes | None:
        options = self.options
        fields = _split_csv(body, options.delimiter, options.quote)
        masker = self._masker(len(fields))
        if masker is None:
            return None
        changed = False
        out = [
            options.quote + value.replace(options.quote, options.quote * 2) + options.quote
            if quoted
            else value
            for value, quoted in fields
        ]
        for column in masker.plan.columns:
            if column.index >= len(fields):
                continue
            value, quoted = fields[column.index]
            if not quoted and value == options.null:
                continue
            masked = masker.mask_value(column, value)
            if masked is UNCHANGED:
                continue
            if masked is None:
                out[column.index] = options.null
            else:
                assert isinstance(masked, bytes)
                doubled = masked.replace(options.quote, options.quote * 2)
                out[column.index] = options.quote + doubled + options.quote
            changed = True
        return options.delimiter.join(out) if changed else None

    def _binary(self, data: bytes) -> bytes | None:
        kernel = self.masker.kernel if self.masker is not None else None
        if kernel is not None:
            return kernel.copy(data, 0, len(data), -1, b"")
        prefix = b""
        pos = 0
        if data.startswith(_SIGNATURE):
            (extension,) = _I32.unpack_from(data, 15)
            pos = 19 + extension
            prefix = data[:pos]
        parts = [prefix]
        changed = False
        while pos + 2 <= len(data):
            (count,) = _I16.unpack_from(data, pos)
            if count < 0:  # the trailer
                parts.append(data[pos:])
                return b"".join(parts) if changed else None
            tuple_start = pos
            pos += 2
            fields: list[bytes | None] = []
            for _ in range(count):
                (length,) = _I32.unpack_from(data, pos)
                pos += 4
                fields.append(None if length < 0 else data[pos : pos + length])
                pos += max(length, 0)
            masked = self._binary_tuple(fields)
            if masked is None:
                parts.append(data[tuple_start:pos])
            else:
                parts.append(masked)
                changed = True
        parts.append(data[pos:])
        return b"".join(parts) if changed else None

    def _binary_tuple(self, fields: list[bytes | None]) -> bytes | None:
        masker = self._masker(len(fields))
        changed = False
        if masker is None:
            # Columns dbward could not learn: binary values cannot be scanned, so none leaves.
            fields = [None] * len(fields)
            changed = True
        else:
            for column in masker.plan.columns:
                value = fields[column.index] if column.index < len(fields) else None
                if value is None:
                    continue
                masked = masker.mask_value(column, value)
                if masked is not UNCHANGED:
                    assert masked is None or isinstance(masked, bytes)
                    fields[column.index] = masked
                    changed = True
        if not changed:
            return None
        out = [_I16.pack(len(fields))]
        for value in fields:
            out.append(b"\xff\xff\xff\xff" if value is None else _I32.pack(len(value)) + value)
        return b"".join(out)
