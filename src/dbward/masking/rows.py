"""Rewriting DataRow payloads as a :class:`ResultPlan` says, and counting what was masked.

A row is split into fields only when the plan has work; a row whose values
all stay as they were is not rebuilt. Whole-column masks are memoized per
column (a bounded dict): a repeated value costs one lookup.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dbward.codec.pg.framing import Frame
from dbward.masking import native
from dbward.masking.entities import Entity
from dbward.masking.plan import ColumnPlan, ResultPlan
from dbward.masking.values import Found, ValueMasker

_LEN = struct.Struct("!i")
_COUNT = struct.Struct("!h")
_MEMO_LIMIT = 8192
UNCHANGED = object()  # what mask_value returns for a value it leaves alone
_DATA_ROW = ord("D")


@dataclass(slots=True)
class MaskStats:
    """What one statement's results had masked: per column and per entity, no values."""

    columns: dict[str, Counter[str]] = field(default_factory=dict)
    entities: Counter[str] = field(default_factory=Counter)
    values: int = 0
    maskers: list[RowMasker] = field(default_factory=list)  # their counts are settled later

    def settle(self) -> MaskStats:
        """Take in the counts the row maskers kept on their own (the hot path's)."""
        for masker in self.maskers:
            masker.flush()
        return self

    def add(self, label: str, entities: Found) -> None:
        per_column = self.columns.get(label)
        if per_column is None:
            per_column = self.columns[label] = Counter()
        for entity in entities:
            value = entity.value
            per_column[value] += 1
            self.entities[value] += 1
        self.values += 1

    def add_whole(self, label: str, entity: str, count: int) -> None:
        """``count`` values of a column masked whole as ``entity``."""
        per_column = self.columns.get(label)
        if per_column is None:
            per_column = self.columns[label] = Counter()
        per_column[entity] += count
        self.entities[entity] += count
        self.values += count

    def summary(self) -> dict[str, object]:
        return {
            "values": self.values,
            "entities": dict(sorted(self.entities.items())),
            "columns": {
                label: dict(sorted(c.items())) for label, c in sorted(self.columns.items())
            },
        }


class RowMasker:
    """Masks the rows of one result: in C when the kernel is built (see :mod:`.native`),
    else in Python, with the same results."""

    __slots__ = (
        "_actions",
        "_copy_kernel",
        "_counts",
        "_kernel",
        "_last",
        "_masker",
        "_slots",
        "_whole",
        "plan",
        "stats",
    )

    def __init__(
        self,
        plan: ResultPlan,
        masker: ValueMasker,
        stats: MaskStats,
        *,
        use_native: bool | None = None,
    ) -> None:
        self.plan = plan
        self._masker = masker
        self.stats = stats
        self._actions: dict[int, ColumnPlan] = {c.index: c for c in plan.columns}
        self._last = max(self._actions, default=-1)
        self._slots = {c.index: slot for slot, c in enumerate(plan.columns)}
        self._whole = {c.index: self._memoized(c) for c in plan.columns if c.entity is not None}
        self._counts: dict[int, int] = dict.fromkeys(self._whole, 0)
        self._kernel: native.Kernel | None = None
        self._copy_kernel: native.Kernel | None = None
        if native.enabled() if use_native is None else use_native:
            self._kernel = native.kernel_for(
                plan.columns,
                lambda column: self._whole[column.index],
                lambda column: lambda value: self._scan(column, value),
                masker.pseudonyms.key,
                UNCHANGED,
            )
        stats.maskers.append(self)

    def _memoized(self, column: ColumnPlan) -> Callable[[bytes], bytes | None]:
        """The column's whole-value mask, memoized per session and kind of column."""
        assert column.entity is not None
        assert column.strategy is not None
        masker = self._masker
        memo = masker.memo((column.entity, column.strategy, column.ctype, column.binary))
        fn = masker.whole_fn(column.entity, column.strategy, column.ctype, column.binary)

        def whole(value: bytes) -> bytes | None:
            masked = memo.get(value, UNCHANGED)
            if masked is UNCHANGED:
                masked = fn(value)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[value] = masked
            return masked  # type: ignore[return-value]

        return whole

    def flush(self) -> None:
        """Move the counts of whole-value masks into the statement's stats."""
        counts = self._counts
        for kernel in (self._kernel, self._copy_kernel):
            if kernel is not None:
                for column, count in zip(self.plan.columns, kernel.counts(), strict=True):
                    if count:
                        counts[column.index] += count
        for index, count in counts.items():
            if count:
                column = self._actions[index]
                assert column.entity is not None
                self.stats.add_whole(column.label, column.entity.value, count)
                counts[index] = 0

    def copy_kernel(
        self, escape: Callable[[bytes], bytes], unescape: Callable[[bytes], bytes]
    ) -> native.Kernel | None:
        """A kernel for the lines of a COPY in text format, whose fields are escaped; None
        when rows are masked in Python."""
        if self._kernel is None:
            return None
        if self._copy_kernel is None:

            def whole(column: ColumnPlan) -> Callable[[bytes], bytes | None]:
                fn = self._whole[column.index]
                return lambda raw: None if (m := fn(unescape(raw))) is None else escape(m)

            def scan(column: ColumnPlan) -> Callable[[bytes], bytes | None]:
                return lambda raw: None if (m := self._scan(column, raw)) is None else escape(m)

            self._copy_kernel = native.kernel_for(
                self.plan.columns,
                whole,
                scan,
                self._masker.pseudonyms.key,
                UNCHANGED,
                escaped=True,
            )
        return self._copy_kernel

    @property
    def kernel(self) -> native.Kernel | None:
        """The C kernel masking these rows, or None when they are masked in Python."""
        return self._kernel

    def _scan(self, column: ColumnPlan, value: bytes) -> bytes | None:
        found: list[Entity] = []
        scanned = self._masker.scan(value, column.ctype, column.binary, found)
        if scanned is not None:
            self.stats.add(column.label, found)
        return scanned

    def scan_as(self, column: ColumnPlan, value: bytes) -> bytes | None:
        """``value`` scanned as ``column`` says (its type may differ from the planned
        column's, e.g. JSON text in a text column); None when nothing was masked."""
        return self._scan(column, value)

    def mask_value(self, column: ColumnPlan, value: bytes) -> bytes | object | None:
        """The masked value, None for NULL, or ``UNCHANGED`` when it stays as it is."""
        if self._kernel is not None:
            return self._kernel.value(self._slots[column.index], value)
        if column.entity is not None:
            self._counts[column.index] += 1
            return self._whole[column.index](value)
        scanned = self._scan(column, value)
        return UNCHANGED if scanned is None else scanned

    def run(self, block: bytes, frames: list[Frame], index: int) -> tuple[int, bytes | None]:
        """The DataRow messages ``frames[index:next]`` of ``block`` masked, as messages
        (None if none changed), and ``next``: where the DataRows end."""
        if self._kernel is not None:
            return self._kernel.run(block, frames, index)
        parts: list[bytes] = []
        changed = False
        stop = index
        while stop < len(frames) and frames[stop][0] == _DATA_ROW:
            _, start, end = frames[stop]
            masked = self.rewrite(block, start, end)
            if masked is None:
                parts.append(block[start - 5 : end])
            else:
                changed = True
                parts.append(b"D" + _LEN.pack(len(masked) + 4) + masked)
            stop += 1
        return stop, b"".join(parts) if changed else None

    def rewrite(self, payload: bytes, start: int, end: int) -> bytes | None:
        """The DataRow payload at ``payload[start:end]`` masked, or None if unchanged."""
        if self._kernel is not None:
            return self._kernel.row(payload, start, end)
        actions = self._actions
        last = self._last
        unpack = _LEN.unpack_from
        pos = start + 2
        if end - start < 2:
            raise ValueError("malformed DataRow: no column count")
        (count,) = _COUNT.unpack_from(payload, start)
        edits: list[tuple[int, int, bytes | None]] | None = None
        for index in range(min(count, last + 1)):
            if end - pos < 4:
                raise ValueError("malformed DataRow: a column runs past the message")
            (length,) = unpack(payload, pos)
            value_start = pos + 4
            pos = value_start + (length if length > 0 else 0)
            if pos > end:
                raise ValueError("malformed DataRow: a value runs past the message")
            column = actions.get(index)
            if column is None or length < 0:
                continue
            masked = self.mask_value(column, payload[value_start:pos])
            if masked is UNCHANGED:
                continue
            if edits is None:
                edits = []
            edits.append((value_start - 4, pos, masked))  # type: ignore[arg-type]
        if edits is None:
            return None
        parts = []
        cursor = start
        for field_start, field_end, masked in edits:
            parts.append(payload[cursor:field_start])
            if masked is None:
                parts.append(b"\xff\xff\xff\xff")
            else:
                parts.append(_LEN.pack(len(masked)))
                parts.append(masked)
            cursor = field_end
        parts.append(payload[cursor:end])
        return b"".join(parts)
