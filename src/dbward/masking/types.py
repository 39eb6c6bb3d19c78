"""PostgreSQL types as masking sees them: which can hold PII, and how to write a value.

Types not listed (booleans, floats, times, intervals, geometric, ranges, ...)
cannot hold the PII dbward detects; if a column of such a type is classified
by name anyway, its values are replaced by NULL, which every type accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    TEXT = "text"  # text, varchar, char(n), name, unknown, citext, xml: scanned
    JSON = "json"
    JSONB = "jsonb"
    INT = "int"
    NUMERIC = "numeric"
    DATE = "date"
    TIMESTAMP = "timestamp"
    UUID = "uuid"
    INET = "inet"
    BYTEA = "bytea"
    OTHER = "other"

    @property
    def scannable(self) -> bool:
        return self in (Kind.TEXT, Kind.JSON, Kind.JSONB)


_SCALARS: dict[int, Kind] = {
    25: Kind.TEXT, 1043: Kind.TEXT, 1042: Kind.TEXT, 19: Kind.TEXT, 705: Kind.TEXT,
    142: Kind.TEXT, 18: Kind.OTHER,
    114: Kind.JSON, 3802: Kind.JSONB,
    20: Kind.INT, 21: Kind.INT, 23: Kind.INT, 1700: Kind.NUMERIC,
    1082: Kind.DATE, 1114: Kind.TIMESTAMP, 1184: Kind.TIMESTAMP,
    2950: Kind.UUID, 869: Kind.INET, 650: Kind.INET, 17: Kind.BYTEA,
}  # fmt: skip

# array type oid -> element type oid
ARRAYS: dict[int, int] = {
    1009: 25, 1015: 1043, 1014: 1042, 1003: 19, 143: 142, 199: 114, 3807: 3802,
    1016: 20, 1005: 21, 1007: 23, 1231: 1700, 1182: 1082, 1115: 1114, 1185: 1184,
    2951: 2950, 1041: 869, 651: 650, 1001: 17,
}  # fmt: skip

INT_BYTES = {20: 8, 21: 2, 23: 4}


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's type as masking needs it. ``oid`` is the (base) scalar type."""

    oid: int
    kind: Kind
    typmod: int = -1
    array: bool = False

    @property
    def max_chars(self) -> int | None:
        """The longest text value the type accepts (varchar(n), char(n), name)."""
        if self.oid in (1043, 1042) and self.typmod >= 4:
            return self.typmod - 4
        if self.oid == 19:
            return 63
        return None

    @property
    def fixed_chars(self) -> bool:
        return self.oid == 1042 and self.typmod >= 4

    @property
    def scannable(self) -> bool:
        return self.kind.scannable

    def element(self) -> ColumnType:
        return ColumnType(self.oid, self.kind, self.typmod)


def column_type(oid: int, typmod: int = -1, *, base: int | None = None) -> ColumnType:
    """The masking view of type ``oid``; ``base`` is a domain's (or citext's) base type."""
    if base is not None and base in _SCALARS:
        return ColumnType(base, _SCALARS[base], typmod)
    if oid in _SCALARS:
        return ColumnType(oid, _SCALARS[oid], typmod)
    element = ARRAYS.get(oid if base is None else base)
    if element is not None:
        return ColumnType(element, _SCALARS[element], typmod, array=True)
    return ColumnType(oid, Kind.OTHER, typmod)


def known(oid: int) -> bool:
    """Built-in types need no catalog lookup; other OIDs (domains, extensions) do."""
    return oid < 10000
