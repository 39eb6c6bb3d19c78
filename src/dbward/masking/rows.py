"""Rewriting DataRow payloads as a :class:`ResultPlan` says, and counting what was masked.

A row is split into fields only when the plan has work; a row whose values
all stay as they were is not rebuilt. Whole-column masks are memoized per
column (a bounded dict): a repeated value costs one lookup.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from dbward.masking.entities import Entity
from dbward.masking.plan import ColumnPlan, ResultPlan
from dbward.masking.values import Found, ValueMasker

_LEN = struct.Struct("!i")
_COUNT = struct.Struct("!h")
_MEMO_LIMIT = 8192
UNCHANGED = object()  # what mask_value returns for a value it leaves alone


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
    """Masks the rows of one result."""

    __slots__ = ("_actions", "_counts", "_fns", "_last", "_masker", "_memo", "plan", "stats")

    def __init__(self, plan: ResultPlan, masker: ValueMasker, stats: MaskStats) -> None:
        self.plan = plan
        self._masker = masker
        self.stats = stats
        self._actions: dict[int, ColumnPlan] = {c.index: c for c in plan.columns}
        self._last = max(self._actions, default=-1)
        # Whole-value masks are memoized per session (the masker's), per kind of column.
        self._memo: dict[int, dict[bytes, bytes | None]] = {
            c.index: masker.memo((c.entity, c.strategy, c.ctype, c.binary))
            for c in plan.columns
            if c.entity is not None
        }
        self._fns = {
            c.index: masker.whole_fn(c.entity, c.strategy, c.ctype, c.binary)
            for c in plan.columns
            if c.entity is not None and c.strategy is not None
        }
        self._counts: dict[int, int] = dict.fromkeys(self._memo, 0)
        stats.maskers.append(self)

    def flush(self) -> None:
        """Move the counts of whole-value masks into the statement's stats."""
        for index, count in self._counts.items():
            if count:
                column = self._actions[index]
                assert column.entity is not None
                self.stats.add_whole(column.label, column.entity.value, count)
                self._counts[index] = 0

    def mask_value(self, column: ColumnPlan, value: bytes) -> bytes | object | None:
        """The masked value, None for NULL, or ``UNCHANGED`` when it stays as it is."""
        entity = column.entity
        if entity is not None:
            memo = self._memo[column.index]
            masked = memo.get(value, UNCHANGED)
            if masked is UNCHANGED:
                masked = self._fns[column.index](value)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[value] = masked
            self._counts[column.index] += 1
            return masked
        found: list[Entity] = []
        scanned = self._masker.scan(value, column.ctype, column.binary, found)
        if scanned is None:
            return UNCHANGED
        self.stats.add(column.label, found)
        return scanned

    def rewrite(self, payload: bytes, start: int, end: int) -> bytes | None:
        """The DataRow payload at ``payload[start:end]`` masked, or None if unchanged."""
        actions = self._actions
        last = self._last
        unpack = _LEN.unpack_from
        pos = start + 2
        (count,) = _COUNT.unpack_from(payload, start)
        edits: list[tuple[int, int, bytes | None]] | None = None
        for index in range(min(count, last + 1)):
            (length,) = unpack(payload, pos)
            value_start = pos + 4
            pos = value_start + (length if length > 0 else 0)
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
