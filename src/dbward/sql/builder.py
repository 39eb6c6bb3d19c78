"""Collects the facts of one statement while walking its parse tree.

The walk is generic (every dict and list is visited) with a few node types
handled on the way: relations, column references, function calls, CTE names
and data-modifying statements nested anywhere (a CTE, a PREPARE, an
EXPLAIN ANALYZE). The statement-level choices (kind, command, risks specific
to one statement type) are made in :mod:`dbward.sql.analyze`.
"""

from __future__ import annotations

from typing import Any

from dbward.sql.facts import Column, Relation, Risk, StatementFacts, StatementKind
from dbward.sql.functions import function_kind, function_risks
from dbward.sql.tree import Node, strings
from dbward.sql.where import effective_where

_RANK = {
    StatementKind.READ: 0,
    StatementKind.TRANSACTION: 1,
    StatementKind.SESSION: 2,
    StatementKind.WRITE: 3,
    StatementKind.ADMIN: 4,
    StatementKind.DDL: 5,
    StatementKind.PRIVILEGE: 6,
    StatementKind.UNKNOWN: 7,
}

_DML = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")


def relation(node: Node, temp: set[str] | frozenset[str] = frozenset()) -> Relation:
    """The relation a ``RangeVar`` names; temporary when created as such or known to be."""
    schema = node.get("schemaname")
    name = node.get("relname", "")
    if schema is None and (node.get("relpersistence") == "t" or name in temp):
        schema = "pg_temp"
    return Relation(name, schema)


def qualified(items: list[Any] | None) -> Relation:
    """A relation named by a list of ``String`` nodes (``DROP TABLE a.b``)."""
    parts = strings(items)
    if not parts:
        return Relation("")
    return Relation(parts[-1], parts[-2] if len(parts) > 1 else None)


class FactsBuilder:
    def __init__(self, command: str, kind: StatementKind, temp: set[str]) -> None:
        self.command = command
        self.kind = kind
        self.temp = temp  # temporary tables known so far in this statement string
        self.reads: list[Relation] = []
        self.writes: list[Relation] = []
        self.functions: list[str] = []
        self.risks: set[Risk] = set()
        self.where: bool | None = None
        self.creates_temp: list[str] = []
        self.temp_until_commit: list[str] = []
        self.settings: list[tuple[str, str | None]] = []
        self.prepares: str | None = None
        self.executes: str | None = None
        self.deallocates: str | None = None
        self._scopes: list[set[str]] = []  # CTE names visible where the walk is
        self._aliases: dict[str, Relation] = {}
        self._column_refs: list[tuple[tuple[str, ...], str]] = []
        self._written_columns: list[Column] = []

    # kind ---------------------------------------------------------------------------------

    def at_least(self, kind: StatementKind) -> None:
        if _RANK[kind] > _RANK[self.kind]:
            self.kind = kind

    # relations ----------------------------------------------------------------------------

    def read(self, node: Node) -> Relation | None:
        if self._is_cte(node):
            return None
        rel = relation(node, self.temp)
        self.reads.append(rel)
        alias = node.get("alias")
        if alias:
            self._aliases[alias.get("aliasname", "")] = rel
        return rel

    def write(self, node: Node) -> Relation:
        rel = relation(node, self.temp)
        self.writes.append(rel)
        alias = node.get("alias")
        if alias:
            self._aliases[alias.get("aliasname", "")] = rel
        return rel

    def write_relation(self, rel: Relation) -> None:
        self.writes.append(rel)

    def create_temp(self, name: str, *, until_commit: bool = False) -> None:
        self.creates_temp.append(name)
        self.temp.add(name)
        if until_commit:
            self.temp_until_commit.append(name)

    # walking ------------------------------------------------------------------------------

    def visit(self, node: Any) -> None:
        """Visit a subtree: relations read, columns, functions, nested DML."""
        if isinstance(node, list):
            for item in node:
                self.visit(item)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("withClause"), dict):
            self._enter_with(node["withClause"])
            self.visit({k: v for k, v in node.items() if k != "withClause"})
            self._scopes.pop()
            return
        for key, value in node.items():
            if key == "RangeVar":
                self.read(value)
            elif key == "ColumnRef":
                self._column_ref(value)
            elif key == "FuncCall":
                self.function(value)
            elif key in _DML:
                self.dml(key, value)
            elif isinstance(value, dict):
                if "relname" in value:
                    self.read(value)
                else:
                    self.visit(value)
            elif isinstance(value, list):
                self.visit(value)

    def _enter_with(self, with_clause: Node) -> None:
        """Visit a WITH list's queries, then open the scope its names are visible in.

        A CTE name stands for the CTE only inside its statement, and, unless
        the WITH is RECURSIVE, only in the CTEs after it: elsewhere the same
        name is a real table, and read as one.
        """
        ctes = [c["CommonTableExpr"] for c in with_clause.get("ctes", ()) if "CommonTableExpr" in c]
        names = [cte.get("ctename", "") for cte in ctes]
        recursive = bool(with_clause.get("recursive"))
        for index, cte in enumerate(ctes):
            self._scopes.append(set(names if recursive else names[:index]))
            self.visit(cte.get("ctequery"))
            self._scopes.pop()
        self._scopes.append(set(names))

    def _is_cte(self, node: Node) -> bool:
        if node.get("schemaname") is not None:
            return False
        name = node.get("relname", "")
        return any(name in scope for scope in self._scopes)

    def function(self, call: Node) -> None:
        name = ".".join(strings(call.get("funcname")))  # folded by the parser unless quoted
        self.functions.append(name)
        self.risks |= function_risks(name)
        kind = function_kind(name)
        if kind is not None:
            self.at_least(kind)
        self.visit(call.get("args"))
        self.visit(call.get("agg_filter"))
        self.visit(call.get("over"))
        self.visit(call.get("agg_order"))

    def _column_ref(self, ref: Node) -> None:
        parts = []
        for field in ref.get("fields", ()):
            value = field.get("String")
            parts.append(value.get("sval", "") if value is not None else "*")
        if parts:
            self._column_refs.append((tuple(parts[:-1]), parts[-1]))

    # data-modifying statements ------------------------------------------------------------

    def dml(self, node_type: str, stmt: Node) -> None:
        """INSERT / UPDATE / DELETE / MERGE, at the top or nested in a CTE."""
        self.at_least(StatementKind.WRITE)
        with_clause = stmt.get("withClause")
        if isinstance(with_clause, dict):
            self._enter_with(with_clause)
        target = self.write(stmt["relation"]) if "relation" in stmt else None
        if node_type in ("UpdateStmt", "DeleteStmt"):
            bounded = effective_where(stmt.get("whereClause"))
            self.where = bounded if self.where is None else (self.where and bounded)
            if not bounded and target is not None and not target.temporary:
                self.risks.add(Risk.UNBOUNDED_WRITE)
        if target is not None and node_type in ("UpdateStmt", "InsertStmt"):
            key = "targetList" if node_type == "UpdateStmt" else "cols"
            for item in stmt.get(key) or ():
                name = item.get("ResTarget", {}).get("name")
                if name:
                    self._written_columns.append(Column(name, target))
        for key, value in stmt.items():
            if key not in ("relation", "withClause"):
                self.visit(value)
        if isinstance(with_clause, dict):
            self._scopes.pop()

    # result -------------------------------------------------------------------------------

    def columns(self) -> tuple[Column, ...]:
        tables = list(dict.fromkeys(self.reads + self.writes))
        by_name: dict[str, Relation] = {r.name: r for r in tables}
        by_name.update(self._aliases)
        only = tables[0] if len(tables) == 1 else None
        out: list[Column] = list(self._written_columns)
        for qualifier, name in self._column_refs:
            rel: Relation | None
            if not qualifier:
                rel = only
            elif len(qualifier) == 1:
                rel = by_name.get(qualifier[0])
            else:
                rel = Relation(qualifier[-1], qualifier[-2])
            out.append(Column(name, rel))
        return tuple(dict.fromkeys(out))

    def build(self) -> StatementFacts:
        return StatementFacts(
            command=self.command,
            kind=self.kind,
            reads=tuple(dict.fromkeys(self.reads)),
            writes=tuple(dict.fromkeys(self.writes)),
            columns=self.columns(),
            written=tuple(dict.fromkeys(self._written_columns)),
            functions=tuple(dict.fromkeys(self.functions)),
            risks=frozenset(self.risks),
            where=self.where,
            creates_temp=tuple(self.creates_temp),
            temp_until_commit=tuple(self.temp_until_commit),
            settings=tuple(self.settings),
            prepares=self.prepares,
            executes=self.executes,
            deallocates=self.deallocates,
        )
