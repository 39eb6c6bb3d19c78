"""Rewriting MySQL result rows (text and binary protocol) as a :class:`ResultPlan` says.

The values themselves go through the same :class:`RowMasker` as PostgreSQL's
(same detectors, strategies, memo and counts). Text rows are length-encoded
strings; binary rows carry integers and dates in fixed binary forms, which
are masked through their text form and written back in their own type (or
as NULL where the masked value does not fit).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace

from dbward.codec.mysql.constants import DATE_TIME_TYPES, FIXED_SIZES, ColumnType
from dbward.codec.mysql.results import (
    ColumnDefinition,
    binary_date_text,
    binary_int,
    binary_row_spans,
    encode_binary_date,
    encode_int,
    set_null,
    text_row_spans,
)
from dbward.codec.mysql.wire import lenenc_str
from dbward.masking.plan import ColumnPlan, ResultPlan
from dbward.masking.rows import UNCHANGED, RowMasker
from dbward.masking.types import Kind, column_type

T = ColumnType
_INTS = frozenset({T.TINY, T.SHORT, T.LONG, T.INT24, T.LONGLONG})
_NULL = object()  # the value becomes NULL


_JSON = column_type(114)


@dataclass(frozen=True, slots=True)
class RowLayout:
    """What a result's rows need besides its plan, worked out once per kind of result."""

    plans: tuple[ColumnPlan | None, ...]  # per column: its plan, or None (left alone)
    # Text columns scanned for PII whose values may be JSON documents (MariaDB's JSON
    # type is LONGTEXT on the wire): a value that parses as JSON is scanned as JSON, so
    # values under PII keys are masked and the document stays valid.
    json: dict[int, ColumnPlan]
    types: tuple[int, ...]
    unsigned: tuple[bool, ...]

    @classmethod
    def of(cls, plan: ResultPlan, columns: list[ColumnDefinition]) -> RowLayout:
        plans: list[ColumnPlan | None] = [None] * len(columns)
        as_json: dict[int, ColumnPlan] = {}
        for column in plan.columns:
            plans[column.index] = column
            if column.scan and column.ctype.kind is Kind.TEXT and not column.ctype.array:
                as_json[column.index] = replace(column, ctype=_JSON)
        return cls(
            tuple(plans),
            as_json,
            tuple(c.type for c in columns),
            tuple(c.unsigned for c in columns),
        )


class MysqlRowMasker:
    """Masks the rows of one MySQL result set."""

    __slots__ = ("_count", "_json", "_masker", "_plans", "_types", "_unsigned", "binary")

    def __init__(self, masker: RowMasker, layout: RowLayout, *, binary: bool) -> None:
        self._masker = masker
        self._count = len(layout.plans)
        self._plans = layout.plans
        self._json = layout.json
        self._types = layout.types
        self._unsigned = layout.unsigned
        self.binary = binary

    def rewrite(self, payload: bytes, start: int, end: int) -> bytes | None:
        """The row at ``payload[start:end]`` masked, or None when nothing changed.

        Raises :class:`~dbward.codec.mysql.errors.MysqlProtocolError` for a malformed row.
        """
        if self.binary:
            return self._binary(payload, start, end)
        spans = text_row_spans(payload, start, end, self._count)
        edits: list[tuple[int, int, bytes]] = []
        mask = self._mask_string
        for index, plan in enumerate(self._plans):
            if plan is None:
                continue
            field_start, value_start, value_end = spans[index]
            if value_start < 0:
                continue
            masked = mask(index, plan, payload[value_start:value_end])
            if masked is UNCHANGED:
                continue
            new = b"\xfb" if masked is None else lenenc_str(masked)  # type: ignore[arg-type]
            edits.append((field_start, value_end, new))
        return _splice(payload, start, end, edits) if edits else None

    def _mask_string(self, index: int, plan: ColumnPlan, value: bytes) -> bytes | object | None:
        as_json = self._json.get(index)
        if as_json is not None and value[:1] in (b"{", b"[") and _is_json(value):
            masked = self._masker.scan_as(as_json, value)
            return UNCHANGED if masked is None else masked
        return self._masker.mask_value(plan, value)

    def _binary(self, payload: bytes, start: int, end: int) -> bytes | None:
        spans = binary_row_spans(payload, start, end, self._types)
        edits: list[tuple[int, int, bytes]] = []
        nulls: list[int] = []
        for index, plan in enumerate(self._plans):
            if plan is None:
                continue
            field_start, value_start, value_end = spans[index]
            if value_start < 0:
                continue
            new = self._binary_value(plan, index, payload[value_start:value_end])
            if new is None:
                continue
            if new is _NULL:
                nulls.append(index)
                edits.append((field_start, value_end, b""))
            else:
                if value_start != field_start:  # a length-encoded value
                    new = lenenc_str(new)  # type: ignore[arg-type]
                edits.append((field_start, value_end, new))  # type: ignore[arg-type]
        if not edits:
            return None
        if nulls:
            bitmap_len = (self._count + 9) // 8
            bitmap = bytearray(payload[start + 1 : start + 1 + bitmap_len])
            for index in nulls:
                set_null(bitmap, index)
            edits.insert(0, (start + 1, start + 1 + bitmap_len, bytes(bitmap)))
        return _splice(payload, start, end, edits)

    def _binary_value(self, plan: ColumnPlan, index: int, value: bytes) -> bytes | object | None:
        """The new binary value, _NULL, or None when it stays."""
        kind = self._types[index]
        mask = self._masker.mask_value
        if kind in _INTS:
            unsigned = self._unsigned[index]
            masked = mask(plan, str(binary_int(value, unsigned)).encode())
            if masked is UNCHANGED:
                return None
            if not isinstance(masked, bytes):
                return _NULL
            try:
                return encode_int(int(masked), len(value), unsigned)
            except (ValueError, struct.error):
                return _NULL
        if kind in DATE_TIME_TYPES:
            if kind in (T.TIME, T.TIME2) or not value or not value[0]:
                return None if plan.entity is None else _NULL
            masked = mask(plan, binary_date_text(value).encode())
            if masked is UNCHANGED:
                return None
            if not isinstance(masked, bytes):
                return _NULL
            try:
                text = masked.decode()
                return encode_binary_date(text, kind not in (T.DATE, T.NEWDATE))
            except (ValueError, UnicodeDecodeError):
                return _NULL
        if kind in FIXED_SIZES:  # floats, YEAR: nothing to detect; classified ones are NULL
            return None if plan.entity is None else _NULL
        masked = self._mask_string(index, plan, value)
        if masked is UNCHANGED:
            return None
        return _NULL if masked is None else masked


def _is_json(value: bytes) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _splice(payload: bytes, start: int, end: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    parts = []
    cursor = start
    for edit_start, edit_end, new in edits:
        parts.append(payload[cursor:edit_start])
        parts.append(new)
        cursor = edit_end
    parts.append(payload[cursor:end])
    return b"".join(parts)
