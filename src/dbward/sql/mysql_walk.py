"""Collects the facts of one MySQL statement while walking sqlglot's parse tree.

:class:`MySQLFacts` is the PostgreSQL :class:`FactsBuilder` (same fields, same
column resolution, same result) with a walk over sqlglot expressions instead
of libpg_query's JSON. Names follow MySQL: a table's schema is its database
(the current one when unqualified), table names keep their case, column and
function names are compared without case and so kept in lower case.
"""

from __future__ import annotations

from sqlglot import exp

from dbward.sql.builder import FactsBuilder
from dbward.sql.facts import Column, Relation, Risk, StatementKind
from dbward.sql.mysql_tokens import NAME_KEY, Context, Refused

_FUNCTION_RISKS: dict[str, frozenset[Risk]] = {
    "load_file": frozenset({Risk.SERVER_FILE_ACCESS}),
    # lib_mysqludf_sys, the classic UDFs that run a shell command on the server
    "sys_exec": frozenset({Risk.PROGRAM_EXECUTION}),
    "sys_eval": frozenset({Risk.PROGRAM_EXECUTION}),
}
_FUNCTION_KINDS: dict[str, StatementKind] = {
    "sys_exec": StatementKind.UNKNOWN,
    "sys_eval": StatementKind.UNKNOWN,
    "nextval": StatementKind.WRITE,  # MariaDB sequences
    "setval": StatementKind.WRITE,
}
_SELF_COMPARISONS = (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)
# A table reference's parts that name things, not columns or other tables.
_NAME_PARTS = frozenset({"this", "db", "catalog", "alias", "partition", "hints"})


class MySQLFacts(FactsBuilder):
    """A :class:`FactsBuilder` fed from sqlglot: use ``walk`` and the methods below.

    The inherited libpg_query walk (``visit``, ``read``, ``dml``, ...) does not apply.
    """

    def __init__(self, command: str, kind: StatementKind, ctx: Context) -> None:
        super().__init__(command, kind, set())
        self.ctx = ctx
        self._ctes: list[set[str]] = []  # CTE names visible where the walk is

    # relations ----------------------------------------------------------------------------

    def relation(self, table: exp.Table) -> Relation:
        if not isinstance(table.this, exp.Identifier) or not table.name:
            raise Refused("a table name dbward cannot read")
        return Relation(table.name, table.text("db") or self.ctx.database)

    def register(self, table: exp.Table) -> Relation:
        """The relation a table reference names, its alias remembered for columns."""
        rel = self.relation(table)
        if table.alias:
            self._aliases[table.alias] = rel
        return rel

    def alias(self, name: str, rel: Relation) -> None:
        self._aliases[name] = rel

    def names_relation(self, table: exp.Expr) -> bool:
        """Whether a FROM item is a table (not a CTE, DUAL, derived table or table function)."""
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            return False
        if table.text("db"):
            return True
        name = table.name
        return name.upper() != "DUAL" and not any(name in scope for scope in self._ctes)

    def _table(self, table: exp.Table) -> None:
        if self.names_relation(table):
            self.reads.append(self.register(table))
        elif not isinstance(table.this, exp.Identifier):
            self.walk(table.this)  # a table function
        self.walk_parts(table)

    def walk_parts(self, table: exp.Expr) -> None:
        """Visit what hangs off a table reference: joins and their conditions, not its name."""
        for key, value in table.args.items():
            if key not in _NAME_PARTS:
                self.walk_arg(value)

    def walk_arg(self, value: object) -> None:
        if isinstance(value, exp.Expr):
            self.walk(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, exp.Expr):
                    self.walk(item)

    # walking ------------------------------------------------------------------------------

    def walk(self, node: exp.Expr | None) -> None:
        """Visit a subtree: relations read, columns, functions."""
        if node is None or isinstance(node, (exp.Hint, exp.Into)):
            return  # optimizer hints; SELECT ... INTO @variables
        if isinstance(node, exp.Command):
            raise Refused("dbward cannot analyse this MySQL statement: a part sqlglot cannot read")
        if isinstance(node, exp.Table):
            self._table(node)
            return
        if isinstance(node, exp.Column):
            self._column(node)
            return
        if isinstance(node, exp.Func):
            self._function(node)
        elif isinstance(node, exp.Select):
            for item in node.expressions:
                if isinstance(item, exp.Star):
                    self._column_refs.append(((), "*"))
        opened = self.enter_with(node)
        for child in node.iter_expressions():
            if not isinstance(child, exp.With):
                self.walk(child)
        if opened:
            self._ctes.pop()

    def enter_with(self, node: exp.Expr) -> bool:
        """Open the scope of the WITH list of ``node``, if it has one."""
        with_ = node.args.get("with_")
        if not isinstance(with_, exp.With):
            return False
        self._open_with(with_)
        return True

    def leave_with(self) -> None:
        self._ctes.pop()

    def _open_with(self, with_: exp.With) -> None:
        """Visit a WITH list's queries, then open the scope its names are visible in."""
        ctes = [c for c in with_.expressions if isinstance(c, exp.CTE)]
        names = [c.alias for c in ctes]
        recursive = bool(with_.args.get("recursive"))
        for index, cte in enumerate(ctes):
            self._ctes.append(set(names if recursive else names[:index]))
            self.walk(cte.this)
            self._ctes.pop()
        self._ctes.append(set(names))

    def _column(self, column: exp.Column) -> None:
        name = "*" if isinstance(column.this, exp.Star) else column.name.lower()
        qualifier = tuple(p for p in (column.text("db"), column.table) if p)
        self._column_refs.append((qualifier, name))

    def _function(self, func: exp.Func) -> None:
        name = func.meta.get(NAME_KEY)
        if name is None and isinstance(func, exp.Anonymous):
            name = func.name
        if not isinstance(name, str) or not name:
            return  # syntax sqlglot reads as a function (CAST, CASE, ->>, ...)
        name = name.lower()
        self.risks |= _FUNCTION_RISKS.get(name, frozenset())
        kind = _FUNCTION_KINDS.get(name)
        if kind is not None:
            self.at_least(kind)
        parent = func.parent
        if isinstance(parent, exp.Dot) and parent.expression is func:
            name = f"{parent.this.name}.{name}"  # a stored function qualified by its database
        self.functions.append(name)

    def columns_of(self, node: exp.Expr) -> None:
        """Visit an expression for relations and functions only (SHOW ... WHERE, ...)."""
        before = len(self._column_refs)
        self.walk(node)
        del self._column_refs[before:]

    # data-modifying statements ------------------------------------------------------------

    def written(self, name: str, rel: Relation | None) -> None:
        self._written_columns.append(Column(name.lower(), rel))

    def bounded(self, where: exp.Expr | None, refs: list[exp.Expr]) -> None:
        """Set ``where`` for an UPDATE/DELETE and the risk when it spares no row."""
        self.where = effective_where(where) or any(_restricting_join(r) for r in refs)
        if not self.where and not all(rel in self.ctx.temp for rel in self.writes):
            self.risks.add(Risk.UNBOUNDED_WRITE)

    def resolve(
        self, column: exp.Column, tables: list[tuple[exp.Table, Relation]]
    ) -> list[Relation]:
        """The relations a column of a multi-table UPDATE may belong to (all when unqualified)."""
        qualifier = column.table
        if not qualifier:
            return [rel for _, rel in tables]
        db = column.text("db")
        for table, rel in tables:
            if not db and table.alias == qualifier:
                return [rel]
        for table, rel in tables:
            if not table.alias and rel.name == qualifier and (not db or rel.schema == db):
                return [rel]
        return [Relation(qualifier, db or self.ctx.database)]


def table_refs(node: object) -> list[exp.Expr]:
    """A FROM-list item and the tables joined to it, in order (derived tables included)."""
    if not isinstance(node, exp.Expr):
        return []
    out: list[exp.Expr] = [node]
    for join in node.args.get("joins") or ():
        out.append(join)
    return out


def _restricting_join(ref: exp.Expr) -> bool:
    """An inner join whose ON or USING limits the rows that take part."""
    if not isinstance(ref, exp.Join) or ref.side or ref.kind.upper() == "CROSS":
        return False
    return bool(ref.args.get("using")) or effective_where(ref.args.get("on"))


# -- WHERE ------------------------------------------------------------------------------------


def effective_where(clause: exp.Expr | None) -> bool:
    """True when ``clause`` can limit the rows an UPDATE/DELETE touches.

    The rules of :mod:`dbward.sql.where`: only the shape counts, so a clause
    that compares no column is constant whatever its values (``1=1``,
    ``1=0``, ``?``), and so are ``x = x``, ``x OR NOT x``, ``x IS NULL OR x
    IS NOT NULL`` and an OR with a constant branch.
    """
    if isinstance(clause, exp.Where):
        clause = clause.this
    return clause is not None and _restricts(clause)


def _restricts(node: exp.Expr) -> bool:
    node = node.unnest()
    if node.find(exp.Column) is None:
        return False  # constant: true for every row or for none
    if isinstance(node, exp.And):
        return any(_restricts(arg) for arg in node.flatten())
    if isinstance(node, exp.Or):
        args = list(node.flatten())
        return all(_restricts(arg) for arg in args) and not _complementary(args)
    if isinstance(node, exp.Not):
        return _restricts(node.this)
    if isinstance(node, _SELF_COMPARISONS):
        return not _same_operand(node.this, node.expression)
    return True


def _same_operand(left: exp.Expr, right: exp.Expr) -> bool:
    """The same expression, counting ``t.id`` and ``id`` (in any case) as one column."""
    left, right = left.unnest(), right.unnest()
    if isinstance(left, exp.Column) and isinstance(right, exp.Column):
        if left.name.lower() != right.name.lower():
            return False
        return not left.table or not right.table or left.table == right.table
    return left == right


def _complementary(args: list[exp.Expr]) -> bool:
    """Whether an OR's branches hold some ``x`` and ``NOT x`` (IS NOT NULL is NOT IS NULL)."""
    plain = [a.unnest() for a in args]
    negated = [a.this.unnest() for a in plain if isinstance(a, exp.Not)]
    return any(n == a for n in negated for a in plain)
