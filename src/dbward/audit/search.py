"""Questions asked of the store: search the trail, and lineage (who touched which data).

Everything is answered from the records themselves: the searched columns are
generated from the hashed lines, and lineage rows (``touches``) are derived
from them when they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbward.audit.chain import ChainRecord
from dbward.audit.dialect import Dialect
from dbward.audit.events import StoredEvent
from dbward.audit.store import AuditStore


@dataclass(frozen=True, slots=True)
class Search:
    identity: str | None = None
    group: str | None = None  # sessions whose identity was in this group
    identity_kind: str | None = None  # human, service, agent
    connection: str | None = None
    environment: str | None = None
    table: str | None = None  # a table the statement touched (read or written)
    decision: str | None = None  # allow, deny, review
    kind: str | None = None  # the event kind: statement, connection.start, ...
    session: str | None = None
    agent: str | None = None  # agent name, model or run id (see agent metadata)
    text: str | None = None  # in the statement text or the error
    since: float | None = None
    until: float | None = None
    limit: int = 100
    before_id: int | None = None  # paging: records stored before this row


def _session_filter(dialect: Dialect, field: str, value: str) -> tuple[str, list[Any]]:
    """Sessions whose connection.start record says ``field`` is (or contains) ``value``."""
    if field == "groups":
        test, params = dialect.has_value("s.data", "groups"), dialect.has_value_params(value)
    else:
        test, params = f"{dialect.text('s.data', field)} = ?", [value]
    return (
        "r.session_id IN (SELECT s.session_id FROM records s"
        f" WHERE s.kind = 'connection.start' AND {test})",
        params,
    )


def _table_filter(dialect: Dialect, table: str) -> tuple[str, list[Any]]:
    return (
        "r.id IN (SELECT record_id FROM touches WHERE col = '' AND "
        f"{dialect.names_table('relation')})",
        [table, table, table],
    )


def search(store: AuditStore, query: Search) -> list[StoredEvent]:
    """Matching records, oldest first: the newest ``limit`` of them (before ``before_id``)."""
    dialect = store.dialect
    where: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        where.append(clause)
        params.extend(values)

    if query.identity:
        add("r.identity = ?", query.identity)
    if query.identity_kind:
        add("r.identity_kind = ?", query.identity_kind)
    if query.connection:
        add("r.target = ?", query.connection)
    if query.kind:
        add("r.kind = ?", query.kind)
    if query.session:
        add("r.session_id = ?", query.session)
    if query.decision:
        add(f"{dialect.text('r.data', 'decision')} = ?", query.decision)
    if query.since is not None:
        add("r.ts >= ?", query.since)
    if query.until is not None:
        add("r.ts < ?", query.until)
    if query.before_id is not None:
        add("r.id < ?", query.before_id)
    if query.text:
        statement = dialect.contains(dialect.text("r.data", "statement"))
        error = dialect.contains(dialect.text("r.data", "error"))
        add(f"({statement} OR {error})", query.text, query.text)
    if query.agent:
        add(dialect.has_value("r.data", "agent"), *dialect.has_value_params(query.agent))
    if query.group:
        clause, values = _session_filter(dialect, "groups", query.group)
        add(clause, *values)
    if query.environment:
        clause, values = _session_filter(dialect, "environment", query.environment)
        add(clause, *values)
    if query.table:
        clause, values = _table_filter(dialect, query.table)
        add(clause, *values)
    sql = "SELECT r.chain, r.seq, r.hash, r.line, r.id FROM records r"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY r.id DESC LIMIT ?"
    params.append(max(1, query.limit))  # callers bound it (the API: 1,000 a page)
    rows = store.query(sql, params)
    return [ChainRecord(*row).stored() for row in reversed(rows)]


# lineage ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Touched:
    """One line of a lineage answer: who (or which table) and how."""

    key: str  # the identity (who-touched) or the table[.column] (touched-by)
    identity_kind: str | None
    access: str  # read or write
    statements: int
    rows: int
    masked: int  # statements whose results had values masked
    first: float
    last: float
    columns: tuple[str, ...] = ()


def split_table_column(store: AuditStore, name: str) -> tuple[str, str | None]:
    """``schema.table``, ``table``, ``table.column`` or ``schema.table.column``: the
    last part is a column unless the whole name is a table the trail knows."""
    known = store.query(
        f"SELECT 1 FROM touches WHERE {store.dialect.names_table('relation')} LIMIT 1",
        (name, name, name),
    )
    if known or "." not in name:
        return name, None
    table, _, column = name.rpartition(".")
    return table, column


def _range(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append("t.ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("t.ts < ?")
        params.append(until)
    return "".join(f" AND {c}" for c in clauses), params


def _aggregate(dialect: Dialect) -> str:
    rows = dialect.number("r.data", "rows")
    masked = dialect.text("r.data", "masked")
    return (
        f" count(*), coalesce(sum({rows}), 0),"
        f" sum(CASE WHEN {masked} IS NOT NULL THEN 1 ELSE 0 END), min(r.ts), max(r.ts)"
    )


def who_touched(
    store: AuditStore,
    table: str,
    column: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
) -> list[Touched]:
    """Who read or wrote ``table`` (or its ``column``; ``*`` touches count too)."""
    span, span_params = _range(since, until)
    col_test = "t.col = ''" if column is None else "t.col IN (?, '*')"
    col_params = [] if column is None else [column]
    rows = store.query(
        "SELECT r.identity, r.identity_kind, t.access," + _aggregate(store.dialect) + " FROM"
        " (SELECT DISTINCT t.record_id, t.access FROM touches t"
        f"   WHERE {store.dialect.names_table('t.relation')} AND " + col_test + span + ") t"
        " JOIN records r ON r.id = t.record_id"
        " GROUP BY r.identity, r.identity_kind, t.access ORDER BY max(r.ts) DESC",
        [table, table, table, *col_params, *span_params],
    )
    return [
        Touched(
            row[0] or "-", row[1], row[2], int(row[3]), int(row[4]), int(row[5]), row[6], row[7]
        )
        for row in rows
    ]


def touched_by(
    store: AuditStore,
    identity: str,
    *,
    since: float | None = None,
    until: float | None = None,
) -> list[Touched]:
    """Which tables (and columns) ``identity`` read or wrote."""
    span, span_params = _range(since, until)
    rows = store.query(
        "SELECT t.relation, r.identity_kind, t.access,"
        + _aggregate(store.dialect)
        + " FROM touches t"
        " JOIN records r ON r.id = t.record_id WHERE t.identity = ? AND t.col = ''"
        + span
        + " GROUP BY t.relation, r.identity_kind, t.access ORDER BY max(r.ts) DESC",
        [identity, *span_params],
    )
    columns: dict[tuple[str, str], list[str]] = {}
    for relation, access, col in store.query(
        "SELECT DISTINCT t.relation, t.access, t.col FROM touches t"
        " WHERE t.identity = ? AND t.col != ''" + span + " ORDER BY t.col",
        [identity, *span_params],
    ):
        columns.setdefault((relation, access), []).append(col)
    return [
        Touched(
            key=row[0],
            identity_kind=row[1],
            access=row[2],
            statements=int(row[3]),
            rows=int(row[4]),
            masked=int(row[5]),
            first=row[6],
            last=row[7],
            columns=tuple(columns.get((row[0], row[2]), ())),
        )
        for row in rows
    ]
