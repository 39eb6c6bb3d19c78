"""The C kernel for masking rows, when it was built (see ``_native.c`` and ``setup.py``).

:func:`kernel_for` turns a :class:`ResultPlan` into a kernel that masks whole
DataRow messages in C: common whole-value masks are done there, everything
else calls back into :class:`ValueMasker`. Without the extension (no compiler
or OpenSSL headers at install time), or with ``DBWARD_NATIVE=0``, rows are
masked by the same logic in Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dbward.masking.entities import Entity, Strategy
from dbward.masking.plan import ColumnPlan
from dbward.masking.strategies import label
from dbward.masking.types import Kind
from dbward.masking.values import KEEP_LAST

_native: Any
try:
    from dbward.masking import _native  # type: ignore[attr-defined,no-redef]
except ImportError:  # pragma: no cover - the build skipped the extension
    _native = None

AVAILABLE = _native is not None


def enabled() -> bool:
    """Whether rows are masked in C: built, and not switched off with DBWARD_NATIVE=0."""
    return AVAILABLE and os.environ.get("DBWARD_NATIVE", "1") != "0"


class Kernel(Protocol):
    def row(self, data: bytes, start: int, end: int) -> bytes | None: ...
    def run(self, block: bytes, frames: list[Any], index: int) -> tuple[int, bytes | None]: ...
    def value(self, slot: int, data: bytes) -> object: ...
    def copy(
        self, data: bytes, start: int, end: int, delimiter: int, null: bytes
    ) -> bytes | None: ...
    def copy_run(
        self, block: bytes, frames: list[Any], index: int, delimiter: int, null: bytes
    ) -> tuple[int, bytes | None]: ...
    def counts(self) -> list[int]: ...


Whole = Callable[[bytes], bytes | None]


def _whole_spec(
    column: ColumnPlan, whole: Whole, fallback: Whole | None
) -> tuple[int, object, object]:
    """(mode, arg, extra) for a column masked whole: done in C where it can be;
    ``fallback`` is for the values C leaves to Python (COPY text with escapes)."""
    entity, strategy, ctype = column.entity, column.strategy, column.ctype
    if ctype.kind is Kind.TEXT and not ctype.array and ctype.max_chars is None:
        if strategy is Strategy.REDACT:
            assert entity is not None
            return _native.CONST, label(entity).encode(), fallback
        if strategy is Strategy.NULL:
            return _native.CONST, None, fallback
        if strategy is Strategy.PARTIAL and entity is Entity.EMAIL:
            return _native.EMAIL, label(entity).encode(), fallback
        if strategy is Strategy.PARTIAL and entity in KEEP_LAST:
            return _native.LAST, KEEP_LAST[entity], fallback
        if strategy is Strategy.PSEUDONYM and entity is Entity.PERSON_NAME:
            return _native.NAME, entity.value.encode() + b"\x00", fallback or whole
    return _native.CALL, whole, None


def kernel_for(
    columns: Sequence[ColumnPlan],
    whole: Callable[[ColumnPlan], Whole],
    scan: Callable[[ColumnPlan], Whole],
    key: bytes,
    unchanged: object,
    *,
    escaped: bool = False,
) -> Kernel:
    """A kernel for these columns. ``whole(column)`` and ``scan(column)`` give the Python
    functions for what C does not do itself: a whole-value mask (bytes, or None for NULL),
    and a scan (the masked bytes, or None when nothing was found). ``value()`` returns
    ``unchanged`` for a value it leaves as it is. ``escaped``: the values are COPY text
    fields (backslash escapes), and ``whole`` and ``scan`` take and give them escaped."""
    specs: list[tuple[int, int, object, object]] = []
    for column in columns:
        if column.entity is not None:
            fn = whole(column)
            mode, arg, extra = _whole_spec(column, fn, fn if escaped else None)
        else:
            text = column.ctype.kind is Kind.TEXT and not column.ctype.array
            mode, arg, extra = (_native.SCAN if text else _native.SCAN_ALL), scan(column), None
        specs.append((column.index, mode, arg, extra))
    kernel: Kernel = _native.Kernel(specs, key, unchanged)
    return kernel


def maybe_pii(data: bytes) -> bool:
    """The kernel's quick test: False only where no detector can find anything."""
    return bool(_native.maybe_pii(data))


def spaces() -> list[bytes]:
    """The whitespace the kernel strips from a person's name before its pseudonym."""
    found: list[bytes] = _native.spaces()
    return found
