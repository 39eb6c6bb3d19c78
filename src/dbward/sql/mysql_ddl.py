"""Facts of MySQL schema statements: CREATE / ALTER / DROP / TRUNCATE / RENAME.

Tables, views, indexes and databases (a MySQL database is a schema: dropping
one is ``DROP SCHEMA``), and stored programs: procedures, functions,
triggers and events, whose body's facts are folded into the statement's
as PostgreSQL's analyser does for SQL-language functions.
"""

from __future__ import annotations

from sqlglot import exp

from dbward.sql.facts import Relation, Risk, StatementFacts, StatementKind
from dbward.sql.mysql_tokens import Refused, Stmt
from dbward.sql.mysql_walk import MySQLFacts

K = StatementKind

_CREATE_MODIFIERS = frozenset(
    {"OR", "REPLACE", "TEMPORARY", "UNIQUE", "FULLTEXT", "SPATIAL", "AGGREGATE", "ONLINE"}
    | {"OFFLINE", "IGNORE"}
)
_ROUTINES = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT"})
# Words a stored program's body can start with (after its parameters and characteristics).
_BODY_STARTS = frozenset(
    {"SELECT", "WITH", "TABLE", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE", "CALL"}
    | {"SET", "DO", "RETURN", "BEGIN", "TRUNCATE", "DROP", "CREATE", "ALTER", "RENAME"}
    | {"GRANT", "REVOKE", "LOAD", "PREPARE", "EXECUTE", "DEALLOCATE", "KILL", "FLUSH"}
)
_KEEPS_DATA = frozenset({"INDEX", "KEY", "PRIMARY", "PRIMARY KEY", "FOREIGN", "FOREIGN KEY"})
_KEEPS_DATA |= {"CHECK", "CONSTRAINT"}


def object_word(stmt: Stmt) -> tuple[str, int, bool]:
    """The object a CREATE / ALTER / DROP is about, its index, and whether it sets a definer.

    Skips ``OR REPLACE``, ``TEMPORARY``, ``ALGORITHM = x``, ``DEFINER = user``,
    ``SQL SECURITY x`` and the like.
    """
    i, definer = 1, False
    while i < len(stmt):
        word = stmt.word(i)
        if word in ("ALGORITHM", "DEFINER") and stmt.word(i + 1) == "=":
            definer = definer or word == "DEFINER"
            i = _after_value(stmt, i + 2)
        elif word == "SQL SECURITY":
            definer = definer or stmt.word(i + 1) == "DEFINER"
            i += 2
        elif word in _CREATE_MODIFIERS:
            i += 1
        else:
            return word, i, definer
    return "", i, definer


def _after_value(stmt: Stmt, i: int) -> int:
    """The index after a ``DEFINER`` / ``ALGORITHM`` value: ``u``, ``'u'@'h'``, CURRENT_USER()."""
    i += 1
    if stmt.word(i) == "@":
        i += 2
    if stmt.word(i) == "(" and stmt.word(i + 1) == ")":
        i += 2
    return i


def _after_if(stmt: Stmt, i: int) -> int:
    """Skip ``IF EXISTS`` / ``IF NOT EXISTS`` at ``i``."""
    if stmt.word(i) != "IF":
        return i
    return i + 3 if stmt.word(i + 1) == "NOT" else i + 2


def _named(stmt: Stmt, i: int, what: str) -> tuple[Relation, int]:
    rel, end = stmt.relation(_after_if(stmt, i))
    if rel is None:
        raise Refused(f"{what} must name what it is about")
    return rel, end


# -- CREATE -----------------------------------------------------------------------------------


def create(stmt: Stmt) -> StatementFacts:
    word, i, definer = object_word(stmt)
    if word == "TABLE":
        return _create_table(stmt)
    if word == "VIEW":
        return view(stmt, "CREATE", i, definer)
    if word in _ROUTINES:
        return routine(stmt, "CREATE", word, i, definer)
    b = MySQLFacts(f"CREATE {word}", K.DDL, stmt.ctx)
    if word == "INDEX":  # read, as PostgreSQL's analyser counts an index's table
        on = stmt.find("ON", i)
        rel, _ = stmt.relation(on + 1) if on > 0 else (None, 0)
        if rel is None:
            raise Refused("CREATE INDEX must name its table")
        b.reads.append(rel)
    elif word == "SEQUENCE":
        b.write_relation(_named(stmt, i + 1, "CREATE SEQUENCE")[0])
    elif word not in ("DATABASE", "SCHEMA"):
        raise Refused(f"dbward cannot analyse this MySQL statement: CREATE {word}".rstrip())
    return b.build()


def _create_table(stmt: Stmt) -> StatementFacts:
    tree = stmt.parse()
    if not isinstance(tree, exp.Create) or tree.kind != "TABLE":
        raise Refused("dbward cannot analyse this MySQL statement: CREATE TABLE")
    schema = tree.this
    target = schema.this if isinstance(schema, exp.Schema) else schema
    if not isinstance(target, exp.Table):
        raise Refused("CREATE TABLE must name its table")
    query = tree.expression
    b = MySQLFacts("CREATE TABLE AS" if query is not None else "CREATE TABLE", K.DDL, stmt.ctx)
    rel = b.relation(target)
    properties = tree.args.get("properties")
    if properties is not None and properties.find(exp.TemporaryProperty):
        b.create_temp(rel.name)
        stmt.ctx.temp.add(rel)
    b.write_relation(rel)
    if isinstance(schema, exp.Schema):
        for column in schema.expressions:
            b.columns_of(column)  # REFERENCES other tables, CHECK (...) functions
    b.walk(properties)  # LIKE other_table
    b.walk(query)
    return b.build()


def view(stmt: Stmt, verb: str, i: int, definer: bool) -> StatementFacts:
    """``{CREATE | ALTER} ... VIEW v [(columns)] AS query``: writes v, reads the query's tables."""
    b = MySQLFacts(f"{verb} VIEW", K.DDL, stmt.ctx)
    rel, _ = _named(stmt, i + 1, f"{verb} VIEW")
    b.write_relation(rel)
    as_ = stmt.find("AS", i)
    if as_ < 0:
        raise Refused(f"{verb} VIEW must give its query after AS")
    query = stmt.sub(as_ + 1)
    n = len(query)
    if query.word(n - 2) == "CHECK" and query.word(n - 1) == "OPTION":  # WITH [LOCAL] CHECK OPTION
        query = query.sub(0, n - 3 if query.word(n - 3) == "WITH" else n - 4)
    tree = query.parse()
    if not isinstance(tree, (exp.Query, exp.Values)):
        raise Refused(f"{verb} VIEW must give a query after AS")
    b.walk(tree)
    if definer:
        b.risks.add(Risk.PRIVILEGE_CHANGE)  # runs with another account's privileges
    return b.build()


def routine(stmt: Stmt, verb: str, word: str, i: int, definer: bool) -> StatementFacts:
    """Procedures, functions, triggers, events: their body's facts are the statement's."""
    b = MySQLFacts(f"{verb} {word}", K.DDL, stmt.ctx)
    if definer:
        b.risks.add(Risk.PRIVILEGE_CHANGE)
    if word == "FUNCTION" and stmt.find("SONAME") >= 0:
        b.risks.add(Risk.PROGRAM_EXECUTION)  # a loadable function: a shared library
        return b.build()
    body = None
    if word == "EVENT":
        do = stmt.find("DO", i)
        body = do + 1 if do >= 0 else None
    elif word == "TRIGGER":
        on = stmt.find("ON", i)
        rel, _ = stmt.relation(on + 1) if on > 0 else (None, 0)
        row = stmt.find("ROW", i)
        if rel is None or row < 0:
            raise Refused("CREATE TRIGGER must name its table and FOR EACH ROW")
        b.write_relation(rel)
        body = row + 3 if stmt.word(row + 1) in ("FOLLOWS", "PRECEDES") else row + 1
    elif verb == "CREATE":
        body = _routine_body(stmt, i)
    if body is not None:
        _fold(b, stmt.sub(body))
    return b.build()


def _routine_body(stmt: Stmt, i: int) -> int:
    """Where a procedure's or function's body starts: after its parameters and characteristics."""
    _, end = stmt.name(_after_if(stmt, i + 1))
    if stmt.word(end) != "(":
        raise Refused("a stored procedure or function must list its parameters")
    j = stmt.close(end) + 1
    while j < len(stmt):
        word = stmt.word(j)
        if word in _BODY_STARTS and not (word == "SET" and stmt.word(j - 1) == "CHARACTER"):
            return j
        j += 1
    raise Refused("the body of the stored procedure or function is missing")


def _fold(b: MySQLFacts, body: Stmt) -> None:
    """Fold a stored program's body into the CREATE (what running it would do)."""
    first = body.word(0)
    if first == "BEGIN":
        if body.word(1) == "END" and len(body) == 2:
            return
        raise Refused(
            "dbward cannot analyse compound statements (BEGIN ... END) in stored programs; "
            "create them through a reviewed migration"
        )
    if first == "RETURN":
        for expression in body.expressions(1):
            b.columns_of(expression)
        return
    facts = body.ctx.dispatch(body)
    b.reads.extend(facts.reads)
    b.writes.extend(facts.writes)
    b.functions.extend(facts.functions)
    b.risks |= facts.risks


# -- ALTER / RENAME ---------------------------------------------------------------------------


def alter(stmt: Stmt) -> StatementFacts:
    word, i, definer = object_word(stmt)
    if word == "TABLE":
        return _alter_table(stmt, i)
    if word == "VIEW":
        return view(stmt, "ALTER", i, definer)
    if word in _ROUTINES:
        return routine(stmt, "ALTER", word, i, definer)
    if word in ("DATABASE", "SCHEMA"):
        return MySQLFacts(f"ALTER {word}", K.DDL, stmt.ctx).build()
    raise Refused(f"dbward cannot analyse this MySQL statement: ALTER {word}".rstrip())


def _alter_table(stmt: Stmt, i: int) -> StatementFacts:
    b = MySQLFacts("ALTER TABLE", K.DDL, stmt.ctx)
    rel, end = _named(stmt, i + 1, "ALTER TABLE")
    b.write_relation(rel)
    destroys = False
    for action in stmt.items(end):
        first, second = action.word(0), action.word(1)
        if first == "DROP":
            destroys |= second not in _KEEPS_DATA  # a column or a partition, with its data
        elif first in ("TRUNCATE", "DISCARD"):  # TRUNCATE PARTITION, DISCARD TABLESPACE
            destroys = True
        elif first == "RENAME" and second not in ("COLUMN", "INDEX", "KEY"):
            renamed, _ = action.relation(2 if second in ("TO", "AS") else 1)
            if renamed is not None:
                b.write_relation(renamed)
        elif first == "EXCHANGE":  # EXCHANGE PARTITION p WITH TABLE other: swaps their rows
            with_ = action.find("TABLE")
            other, _ = action.relation(with_ + 1) if with_ > 0 else (None, 0)
            if other is not None:
                b.write_relation(other)
        references = action.find("REFERENCES")
        if references >= 0:
            target, _ = action.relation(references + 1)
            if target is not None:
                b.reads.append(target)
    if destroys and rel not in stmt.ctx.temp:
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b.build()


def rename(stmt: Stmt) -> StatementFacts:
    """``RENAME TABLE a TO b, c TO d``: every name is written."""
    if stmt.word(1) != "TABLE" and stmt.word(1) != "TABLES":
        raise Refused(f"dbward cannot analyse this MySQL statement: RENAME {stmt.word(1)}")
    b = MySQLFacts("RENAME TABLE", K.DDL, stmt.ctx)
    for item in stmt.items(2):
        to = item.find("TO")
        old, _ = item.relation(0)
        new, _ = item.relation(to + 1) if to > 0 else (None, 0)
        if old is None or new is None:
            raise Refused("RENAME TABLE takes old TO new pairs")
        b.write_relation(old)
        b.write_relation(new)
    return b.build()


# -- DROP / TRUNCATE --------------------------------------------------------------------------


def drop(stmt: Stmt) -> StatementFacts:
    temporary = stmt.word(1) == "TEMPORARY"
    i = 2 if temporary else 1
    word = stmt.word(i)
    b = MySQLFacts(f"DROP {word}", K.DDL, stmt.ctx)
    if word in ("TABLE", "TABLES", "VIEW", "SEQUENCE"):
        b.command = "DROP TABLE" if word == "TABLES" else b.command
        targets = stmt.relations(_after_if(stmt, i + 1))
        if not targets:
            raise Refused(f"DROP {word} must name what it drops")
        for rel in targets:
            b.write_relation(rel)
        temp = stmt.ctx.temp
        if b.command == "DROP TABLE" and not temporary and not all(r in temp for r in targets):
            b.risks.add(Risk.DESTRUCTIVE_DDL)  # DROP TEMPORARY TABLE never drops a base table
        temp.difference_update(targets)
    elif word == "INDEX":
        on = stmt.find("ON", i)
        table, _ = stmt.relation(on + 1) if on > 0 else (None, 0)
        if table is None:
            raise Refused("DROP INDEX must name its table (ON table)")
        b.write_relation(table)
    elif word in ("DATABASE", "SCHEMA"):
        name, _ = stmt.name(_after_if(stmt, i + 1))
        if len(name) != 1:
            raise Refused(f"DROP {word} must name the database")
        b.write_relation(Relation("*", name[0]))
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    elif word not in _ROUTINES:
        raise Refused(f"dbward cannot analyse this MySQL statement: DROP {word}".rstrip())
    return b.build()


def truncate(stmt: Stmt) -> StatementFacts:
    b = MySQLFacts("TRUNCATE", K.DDL, stmt.ctx)
    rel, end = stmt.relation(2 if stmt.word(1) == "TABLE" else 1)
    if rel is None or end != len(stmt):
        raise Refused("TRUNCATE takes one table")
    b.write_relation(rel)
    if rel not in stmt.ctx.temp:
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b.build()
