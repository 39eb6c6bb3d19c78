"""Facts of MySQL data statements: SELECT, INSERT/REPLACE, UPDATE, DELETE, LOAD DATA.

sqlglot parses them; dbward first removes what sqlglot's MySQL grammar does not
know and what does not change the facts (``LOW_PRIORITY``, ``QUICK``, ...),
and the ``INTO OUTFILE`` / ``INTO @var`` clauses, whose facts it takes itself.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from dbward.sql.facts import Relation, Risk, StatementFacts, StatementKind
from dbward.sql.mysql_tokens import Refused, Stmt
from dbward.sql.mysql_walk import MySQLFacts, table_refs

K = StatementKind

_MODIFIERS = {
    "INSERT": frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY"}),
    "REPLACE": frozenset({"LOW_PRIORITY", "DELAYED"}),
    "UPDATE": frozenset({"LOW_PRIORITY", "IGNORE"}),
    "DELETE": frozenset({"LOW_PRIORITY", "QUICK", "IGNORE"}),
}
_EXPORT_OPTIONS = frozenset(
    {"FIELDS", "COLUMNS", "TERMINATED", "BY", "OPTIONALLY", "ENCLOSED", "ESCAPED", "LINES"}
    | {"STARTING"}
)


def _plain(stmt: Stmt) -> Stmt:
    """The statement without modifiers that change how, not what, it writes."""
    modifiers = _MODIFIERS.get(stmt.word(0), frozenset())
    end = 1
    while stmt.word(end) in modifiers:
        end += 1
    return stmt.drop(set(range(1, end)))


# -- SELECT -----------------------------------------------------------------------------------


def query(stmt: Stmt) -> StatementFacts:
    """SELECT, TABLE, VALUES, ``( ... )`` and WITH ... (SELECT | UPDATE | DELETE)."""
    stmt, export = _without_into(stmt)
    tree = stmt.parse()
    if isinstance(tree, exp.Update) and export is None:
        return update_facts(tree, stmt)
    if isinstance(tree, exp.Delete) and export is None:
        return delete_facts(tree, stmt)
    if not isinstance(tree, (exp.Query, exp.Values)):
        raise Refused("dbward cannot analyse this MySQL statement: it is not a query")
    b = MySQLFacts("SELECT", K.READ, stmt.ctx)
    b.walk(tree)
    if export is not None:
        b.command = f"SELECT INTO {export}"
        b.risks |= {Risk.SERVER_FILE_ACCESS, Risk.DATA_EXPORT}
    return b.build()


def _without_into(stmt: Stmt) -> tuple[Stmt, str | None]:
    """The query without its ``INTO OUTFILE 'f' ...``, ``INTO DUMPFILE 'f'`` or ``INTO @v, ...``.

    Returns the query and ``OUTFILE`` / ``DUMPFILE`` when it writes a server file.
    """
    start = stmt.find("INTO")
    if start < 0:
        return stmt, None
    target = stmt.word(start + 1)
    i = start + 1
    if target in ("OUTFILE", "DUMPFILE"):
        if i + 1 >= len(stmt) or stmt.tokens[i + 1].token_type != TokenType.STRING:
            raise Refused(f"INTO {target} must name the file as a string")
        i += 2
        while i < len(stmt):
            word = stmt.word(i)
            if word == "CHARACTER" and stmt.word(i + 1) == "SET":
                i += 3
            elif word == "CHARSET":
                i += 2
            elif word in _EXPORT_OPTIONS or stmt.tokens[i].token_type == TokenType.STRING:
                i += 1
            else:
                break
        return stmt.drop(set(range(start, i))), target
    while True:  # a list of @user variables or (in stored programs) local variables
        if stmt.word(i) == "@" and stmt.is_name(i + 1):
            i += 2
        elif stmt.is_name(i) and stmt.word(i) != "FROM":
            i += 1
        else:
            raise Refused("INTO must be followed by OUTFILE, DUMPFILE or variables")
        if stmt.word(i) != ",":
            break
        i += 1
    return stmt.drop(set(range(start, i))), None


# -- INSERT / REPLACE -------------------------------------------------------------------------


def insert(stmt: Stmt) -> StatementFacts:
    command = stmt.word(0)  # INSERT or REPLACE (same syntax, without ON DUPLICATE KEY)
    tree = _plain(stmt).parse(TokenType.INSERT)
    if not isinstance(tree, exp.Insert):
        raise Refused(f"dbward cannot analyse this MySQL statement: {command}")
    b = MySQLFacts(command, K.WRITE, stmt.ctx)
    target = tree.this
    columns: list[exp.Expr] = []
    if isinstance(target, exp.Schema):
        columns = list(target.expressions)
        target = target.this
    if not isinstance(target, exp.Table):
        raise Refused(f"{command} must name the table it writes")
    rel = b.relation(target)
    b.write_relation(rel)
    for column in columns:
        b.written(column.name, rel)
    source = tree.expression
    if isinstance(source, exp.Values) and source.alias:  # VALUES (...) AS new ON DUPLICATE ...
        b.alias(source.alias, rel)
    conflict = tree.args.get("conflict")
    if isinstance(conflict, exp.OnConflict):  # ON DUPLICATE KEY UPDATE a = ...
        for item in conflict.expressions:
            if isinstance(item, exp.EQ) and isinstance(item.this, exp.Column):
                b.written(item.this.name, rel)
    for key, value in tree.args.items():
        if key != "this":
            b.walk_arg(value)
    return b.build()


# -- UPDATE / DELETE --------------------------------------------------------------------------


def update(stmt: Stmt) -> StatementFacts:
    tree = _plain(stmt).parse()
    if not isinstance(tree, exp.Update):
        raise Refused("dbward cannot analyse this MySQL statement: UPDATE")
    return update_facts(tree, stmt)


def update_facts(tree: exp.Update, stmt: Stmt) -> StatementFacts:
    """UPDATE, of one table or (``UPDATE a JOIN b ... SET a.x = ...``) of several."""
    b = MySQLFacts("UPDATE", K.WRITE, stmt.ctx)
    opened = b.enter_with(tree)
    refs = table_refs(tree.this)
    tables = _tables(b, refs)
    targets: list[Relation] = []
    for item in tree.expressions:
        if isinstance(item, exp.EQ) and isinstance(item.this, exp.Column):
            rels = b.resolve(item.this, tables)
            b.written(item.this.name, rels[0] if len(rels) == 1 else None)
            targets.extend(rels)
    if not targets:
        raise Refused("UPDATE must assign at least one column (SET column = value)")
    _sort(b, tables, targets)
    _walk_refs(b, refs)
    for key, value in tree.args.items():
        if key not in ("this", "with_"):
            b.walk_arg(value)
    b.bounded(tree.args.get("where"), refs)
    if opened:
        b.leave_with()
    return b.build()


def delete(stmt: Stmt) -> StatementFacts:
    tree = _plain(stmt).parse()
    if not isinstance(tree, exp.Delete):
        raise Refused("dbward cannot analyse this MySQL statement: DELETE")
    return delete_facts(tree, stmt)


def delete_facts(tree: exp.Delete, stmt: Stmt) -> StatementFacts:
    """DELETE FROM t, DELETE t1, t2 FROM <tables>, DELETE FROM t1, t2 USING <tables>."""
    b = MySQLFacts("DELETE", K.WRITE, stmt.ctx)
    opened = b.enter_with(tree)
    using = tree.args.get("using")
    if using:
        names = [_table_of(r) for r in table_refs(tree.this)]
        refs = [r for item in using for r in table_refs(item)]
    else:
        names = list(tree.args.get("tables") or ()) or [tree.this]
        refs = table_refs(tree.this)
    tables = _tables(b, refs)
    targets = [_target(b, name, tables) for name in names if isinstance(name, exp.Table)]
    if not targets or not refs:
        raise Refused("DELETE must name the table it deletes from")
    _sort(b, tables, targets)
    _walk_refs(b, refs)
    for key, value in tree.args.items():
        if key not in ("this", "with_", "using", "tables"):
            b.walk_arg(value)
    b.bounded(tree.args.get("where"), refs)
    if opened:
        b.leave_with()
    return b.build()


def _table_of(ref: exp.Expr) -> exp.Expr:
    return ref.this if isinstance(ref, exp.Join) else ref


def _tables(b: MySQLFacts, refs: list[exp.Expr]) -> list[tuple[exp.Table, Relation]]:
    """The tables among FROM items, with their relations (aliases registered)."""
    out = []
    for ref in refs:
        table = _table_of(ref)
        if isinstance(table, exp.Table) and b.names_relation(table):
            out.append((table, b.register(table)))
    return out


def _target(b: MySQLFacts, name: exp.Table, tables: list[tuple[exp.Table, Relation]]) -> Relation:
    """The relation a multi-table DELETE's target (a table name or an alias) stands for."""
    for table, rel in tables:
        if table is name:
            return rel
    db = name.text("db")
    for table, rel in tables:
        if not db and table.alias == name.name:
            return rel
    for table, rel in tables:
        if not table.alias and rel.name == name.name and (not db or rel.schema == db):
            return rel
    return b.relation(name)


def _sort(b: MySQLFacts, tables: list[tuple[exp.Table, Relation]], targets: list[Relation]) -> None:
    """Targets are written; the other tables are only read."""
    for rel in dict.fromkeys(targets):
        b.write_relation(rel)
    for _, rel in tables:
        if rel not in targets:
            b.reads.append(rel)


def _walk_refs(b: MySQLFacts, refs: list[exp.Expr]) -> None:
    """Join conditions and derived tables of FROM items whose tables are already counted."""
    for ref in refs:
        table = _table_of(ref)
        if not (isinstance(table, exp.Table) and b.names_relation(table)):
            b.walk(table)
        if isinstance(ref, exp.Join):
            for key, value in ref.args.items():
                if key != "this":
                    b.walk_arg(value)


# -- LOAD DATA / LOAD XML ---------------------------------------------------------------------


def load(stmt: Stmt) -> StatementFacts:
    """``LOAD {DATA | XML} [LOCAL] INFILE 'f' [REPLACE | IGNORE] INTO TABLE t ... [SET ...]``."""
    what = stmt.word(1)
    infile = stmt.find("INFILE")
    local = "LOCAL" in (stmt.word(i) for i in range(2, max(infile, 2)))
    into = stmt.find("INTO")
    if infile < 0 or into < 0 or stmt.word(into + 1) != "TABLE":
        raise Refused(f"LOAD {what} must name a file and INTO TABLE")
    b = MySQLFacts(f"LOAD {what} LOCAL" if local else f"LOAD {what}", K.WRITE, stmt.ctx)
    b.risks.add(Risk.SERVER_FILE_ACCESS)
    rel, end = stmt.relation(into + 2)
    if rel is None:
        raise Refused(f"LOAD {what} must name the table it loads")
    b.write_relation(rel)
    assign = stmt.find("SET", end)
    while assign > 0 and stmt.word(assign - 1) == "CHARACTER":  # CHARACTER SET utf8mb4
        assign = stmt.find("SET", assign + 1)
    stop = assign if assign >= 0 else len(stmt)
    columns = stmt.find("(", end)
    while 0 <= columns < stop and stmt.word(columns - 1) == "PARTITION":
        columns = stmt.find("(", columns + 1)
    if 0 <= columns < stop:  # (col_or_@var, ...): only the columns are written
        for item in stmt.items(columns + 1, stmt.close(columns)):
            if item.word(0) != "@" and item.is_name(0) and len(item) == 1:
                b.written(item.raw(0), rel)
    if assign >= 0:
        for expression in stmt.expressions(assign + 1):
            if isinstance(expression, exp.EQ) and isinstance(expression.this, exp.Column):
                b.written(expression.this.name, rel)
                b.walk(expression.expression)
            else:
                raise Refused(f"LOAD {what} ... SET takes assignments to columns")
    return b.build()
