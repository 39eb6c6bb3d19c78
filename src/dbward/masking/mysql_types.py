"""MySQL/MariaDB result columns in masking's terms: a :class:`Field` and an origin.

A MySQL column definition carries its origin itself (database, table and
column before any alias), so no catalog is asked. Types map to the
PostgreSQL types whose text form is the same, so one set of value maskers
serves both engines: strings are text (with their length limit), JSON is
JSON, integers, decimals, dates and datetimes keep their types; binary
strings, floats, times and bits cannot hold detectable PII and are never
scanned (classified by name, they become NULL).
"""

from __future__ import annotations

from dbward.codec.mysql.constants import BINARY_CHARSET, ColumnType
from dbward.codec.mysql.results import ColumnDefinition
from dbward.masking.plan import Field, Origin

T = ColumnType

_STRINGS = frozenset({T.VARCHAR, T.VAR_STRING, T.STRING, T.ENUM, T.SET})
_BLOBS = frozenset({T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB, T.BLOB})
_INTS = frozenset({T.TINY, T.SHORT, T.LONG, T.INT24, T.LONGLONG})
_DATETIMES = frozenset({T.DATETIME, T.TIMESTAMP, T.DATETIME2, T.TIMESTAMP2})

# PostgreSQL type OIDs with the same text form
_TEXT, _VARCHAR, _JSON, _INT8, _NUMERIC, _DATE, _TIMESTAMP, _NONE = (
    25, 1043, 114, 20, 1700, 1082, 1114, 0,
)  # fmt: skip

_LATIN1 = frozenset({5, 8, 15, 31, 47, 48, 49, 94})
_UTF8MB3 = frozenset({33, 83, *range(192, 216)})


def bytes_per_char(charset: int) -> int:
    """The most bytes one character takes in ``charset`` (4 where unsure)."""
    if charset in _LATIN1:
        return 1
    if charset in _UTF8MB3:
        return 3
    return 4


def type_oid(column: ColumnDefinition) -> tuple[int, int]:
    """The (PostgreSQL type OID, typmod) whose values look like this column's."""
    kind = column.type
    if kind in _STRINGS or kind in _BLOBS:
        if column.charset == BINARY_CHARSET:
            return _NONE, -1  # bytes, not text
        chars = column.length // bytes_per_char(column.charset)
        if kind in _STRINGS and 0 < chars <= 65535:
            return _VARCHAR, chars + 4
        return _TEXT, -1
    if kind == T.JSON:
        return _JSON, -1
    if kind in _INTS:
        return _INT8, -1
    if kind in (T.DECIMAL, T.NEWDECIMAL):
        return _NUMERIC, -1
    if kind in (T.DATE, T.NEWDATE):
        return _DATE, -1
    if kind in _DATETIMES:
        return _TIMESTAMP, -1
    return _NONE, -1


def field(column: ColumnDefinition) -> Field:
    oid, typmod = type_oid(column)
    return Field(column.name, 0, 0, oid, typmod, False)


def origin(column: ColumnDefinition) -> Origin | None:
    """database.table.column of where the values come from, when the server says."""
    if column.org_table and column.org_name:
        return Origin(column.schema, column.org_table, column.org_name)
    return None
