"""Deciding, once per result, what happens to each column.

At RowDescription dbward knows each column's output name, type, format and
origin (table OID and attribute number, resolved through the catalog to
``schema.table.column``). From that and the session's masking rules a
:class:`ResultPlan` says which columns are masked whole (classified by name
or by policy), which are scanned for PII (text, JSON and arrays of them), and
which are left alone. A result whose plan is empty costs nothing per row.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from dbward.masking.columns import Classification, classify
from dbward.masking.entities import DEFAULT_STRATEGIES, Entity, Strategy
from dbward.masking.types import ColumnType, Kind, column_type


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription (or of a COPY's table)."""

    name: str
    table_oid: int = 0
    attnum: int = 0
    type_oid: int = 25
    typmod: int = -1
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Origin:
    schema: str
    table: str
    column: str

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """A column classified by hand in the policy: ``entity``, free text, or nothing."""

    pattern: str  # fnmatch over schema.table.column
    entity: Entity | None = None
    scan: bool = True
    strategy: Strategy | None = None


@dataclass(frozen=True, slots=True)
class MaskingRules:
    """What masking applies for one session (identity, connection): from the policy."""

    enabled: bool = True
    strategies: Mapping[Entity, Strategy] = field(default_factory=lambda: dict(DEFAULT_STRATEGIES))
    unmasked_entities: frozenset[Entity] = frozenset()
    unmasked_columns: tuple[str, ...] = ()
    columns: tuple[ColumnRule, ...] = ()

    def column_unmasked(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, p) for p in self.unmasked_columns)


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    index: int
    label: str  # schema.table.column where known, else the output name
    ctype: ColumnType
    binary: bool
    entity: Entity | None  # mask every value as this
    strategy: Strategy | None
    scan: bool  # look for PII inside the value


@dataclass(frozen=True, slots=True)
class ResultPlan:
    width: int  # columns in the result
    columns: tuple[ColumnPlan, ...]  # only the columns with something to do

    @property
    def active(self) -> bool:
        return bool(self.columns)


def _manual(rules: MaskingRules, label: str | None) -> ColumnRule | None:
    if label is None:
        return None
    for rule in rules.columns:
        if fnmatch.fnmatchcase(label, rule.pattern):
            return rule
    return None


def _type_of(item: Field, base_types: Mapping[int, int]) -> ColumnType:
    base = base_types.get(item.type_oid)
    ctype = column_type(item.type_oid, item.typmod, base=base)
    if ctype.kind is Kind.OTHER and base is None and item.type_oid >= 10000 and not item.binary:
        # A type dbward could not look up: its text form is scanned like text.
        return ColumnType(item.type_oid, Kind.TEXT, item.typmod)
    return ctype


def plan_column(
    index: int,
    item: Field,
    origin: Origin | None,
    rules: MaskingRules,
    base_types: Mapping[int, int],
) -> ColumnPlan | None:
    label = origin.label if origin is not None else item.name
    if origin is not None and rules.column_unmasked(label):
        return None
    ctype = _type_of(item, base_types)
    manual = _manual(rules, origin.label if origin is not None else None)
    strategy: Strategy | None = None
    if manual is not None:
        found: Classification = Classification(manual.entity, manual.scan)
        strategy = manual.strategy
    else:
        found = classify(origin.column, origin.table) if origin is not None else classify(item.name)
        if found.entity is None and origin is not None and item.name != origin.column:
            by_alias = classify(item.name)  # an alias that names PII is masked as PII too
            if by_alias.entity is not None:
                found = by_alias
    entity = found.entity
    if entity is not None and entity in rules.unmasked_entities:
        entity = None
    if entity is not None:
        strategy = strategy or rules.strategies[entity]
        return ColumnPlan(index, label, ctype, item.binary, entity, strategy, scan=False)
    if ctype.scannable and (manual is None or manual.scan):
        return ColumnPlan(index, label, ctype, item.binary, None, None, scan=True)
    return None


def build_plan(
    fields: list[Field],
    origins: Mapping[tuple[int, int], Origin],
    rules: MaskingRules,
    base_types: Mapping[int, int] | None = None,
) -> ResultPlan:
    """The plan for a result with these columns, for a session with these rules."""
    if not rules.enabled:
        return ResultPlan(len(fields), ())
    types = base_types or {}
    columns = []
    for index, item in enumerate(fields):
        origin = origins.get((item.table_oid, item.attnum)) if item.table_oid else None
        column = plan_column(index, item, origin, rules, types)
        if column is not None:
            columns.append(column)
    return ResultPlan(len(fields), tuple(columns))
