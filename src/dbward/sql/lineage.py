"""Which tables and columns a statement read and wrote: the audit trail's lineage.

``{"read": {table: [column, ...]}, "write": {table: [column, ...]}}`` with
tables as the session qualified them. A column the statement did not tie to a
table (``SELECT x FROM a JOIN b``) is counted against every table the
statement part reads (or writes, when it reads none): for an auditor, a
possible touch is better reported than missed. ``*`` stands for every column:
``SELECT *``, ``COPY`` without a column list, rows removed (``DELETE``,
``TRUNCATE``, ``DROP``), and an ``INSERT`` without a column list. The columns
a ``DELETE`` names (its WHERE) count as read.
"""

from __future__ import annotations

import functools

from dbward.sql.facts import Analysis, StatementFacts, StatementKind

Lineage = dict[str, dict[str, list[str]]]

_REMOVING = ("DELETE", "TRUNCATE", "DROP")
_WRITING = (StatementKind.WRITE, StatementKind.DDL)


def lineage(analysis: Analysis) -> Lineage:
    read: dict[str, dict[str, None]] = {}
    write: dict[str, dict[str, None]] = {}
    for part in analysis.statements:
        part_read, part_write = _part(part)
        for table, columns in part_read.items():
            read.setdefault(table, {}).update(columns)
        for table, columns in part_write.items():
            write.setdefault(table, {}).update(columns)
    result: Lineage = {}
    if read:
        result["read"] = {table: list(columns) for table, columns in read.items()}
    if write:
        result["write"] = {table: list(columns) for table, columns in write.items()}
    return result


def _part(part: StatementFacts) -> tuple[dict[str, dict[str, None]], dict[str, dict[str, None]]]:
    """One statement's reads and writes (a later part's ``*`` is its own, not hidden by
    columns an earlier part named)."""
    reads = [str(r) for r in part.reads]
    writes = [str(r) for r in part.writes]
    read: dict[str, dict[str, None]] = {name: {} for name in reads}
    write: dict[str, dict[str, None]] = {name: {} for name in writes}
    removes = part.command.startswith(_REMOVING)
    assigned = {(str(c.relation), c.name) for c in part.written}
    for column in part.columns:
        owners = [str(column.relation)] if column.relation is not None else reads or writes
        for owner in owners:
            if (owner, column.name) in assigned and not removes:
                write[owner][column.name] = None
            else:  # compared, computed from, returned: read
                read.setdefault(owner, {})[column.name] = None
    for name in writes:
        if removes or (part.kind in _WRITING and not write[name]):
            write[name]["*"] = None
    if part.command.startswith("COPY"):
        for name in reads:
            if not read[name]:
                read[name]["*"] = None
    return read, write


@functools.lru_cache(maxsize=4096)
def cached_lineage(analysis: Analysis) -> Lineage:
    """:func:`lineage`, once per distinct analysis (the caller must not change the result)."""
    return lineage(analysis)
