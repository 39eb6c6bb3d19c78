"""Which MySQL statement a part of a string is, by its leading keywords.

One explicit table maps leading keywords to a handler. sqlglot's parser is
used where it reads MySQL faithfully (queries, INSERT, UPDATE, DELETE,
CREATE TABLE); the rest is classified here from the words, because sqlglot
reads several of them as something else entirely (``SAVEPOINT s`` as a
column alias, ``START SLAVE`` as a transaction, ``FLUSH PRIVILEGES`` as an
expression) or not at all. A statement whose leading keywords are not in the
table is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from dbward.sql.facts import Risk, StatementFacts, StatementKind
from dbward.sql.mysql_ddl import alter, create, drop, rename, truncate
from dbward.sql.mysql_dml import delete, insert, load, query, update
from dbward.sql.mysql_grant import grant
from dbward.sql.mysql_set import set_statement, use
from dbward.sql.mysql_tokens import Refused, Stmt
from dbward.sql.mysql_walk import MySQLFacts

K = StatementKind
Handler = Callable[[Stmt], StatementFacts]

_EXPLAINABLE = frozenset({"SELECT", "WITH", "TABLE", "VALUES", "(", "INSERT", "REPLACE"})
_EXPLAINABLE |= {"UPDATE", "DELETE"}
_SHOW_ADMIN = frozenset({"PROCESSLIST", "ENGINE", "MASTER", "BINARY", "BINLOG", "RELAYLOG"})
_SHOW_ADMIN |= {"REPLICA", "REPLICAS", "SLAVE"}


def statement_facts(stmt: Stmt) -> StatementFacts:
    words = stmt.words(3)
    for length in (3, 2, 1):
        handler = _HANDLERS.get(words[:length])
        if handler is not None:
            return handler(stmt)
    shown = " ".join(w for w in words if w) or "(no keyword)"
    raise Refused(f"dbward cannot analyse this MySQL statement: {shown} ...")


def _simple(command: str, kind: StatementKind, *risks: Risk) -> Handler:
    def handler(stmt: Stmt) -> StatementFacts:
        return StatementFacts(command, kind, risks=frozenset(risks))

    return handler


# -- transactions -----------------------------------------------------------------------------


def _begin(stmt: Stmt) -> StatementFacts:
    if stmt.words(3)[1:] not in (("", ""), ("WORK", "")):
        raise Refused("dbward cannot analyse BEGIN followed by anything but WORK (compound block)")
    return StatementFacts("BEGIN", K.TRANSACTION)


def _rollback(stmt: Stmt) -> StatementFacts:
    to = stmt.find("TO") >= 0
    return StatementFacts("ROLLBACK TO SAVEPOINT" if to else "ROLLBACK", K.TRANSACTION)


# -- reading about the server -----------------------------------------------------------------


def _show(stmt: Stmt) -> StatementFacts:
    words = stmt.words(4)[1:]
    what = words[1:] if words[0] in ("FULL", "GLOBAL", "SESSION") else words
    if not what[0]:
        raise Refused("SHOW must say what it shows")
    admin = what[0] in _SHOW_ADMIN or what[:2] == ("CREATE", "USER")
    b = MySQLFacts("SHOW", K.ADMIN if admin else K.READ, stmt.ctx)
    where = stmt.find("WHERE")
    if where >= 0:  # SHOW ... WHERE expression: what a subquery in it reads
        for expression in stmt.expressions(where + 1):
            b.columns_of(expression)
    return b.build()


def _explain(stmt: Stmt) -> StatementFacts:
    """EXPLAIN / DESCRIBE of a statement (ANALYZE runs it) or of a table's columns."""
    i, analyse = 1, stmt.word(0) == "ANALYZE"  # MariaDB: ANALYZE statement
    while True:
        word = stmt.word(i)
        if word in ("EXTENDED", "PARTITIONS"):
            i += 1
        elif (word, stmt.word(i + 1)) in (("FORMAT", "="), ("INTO", "@")):
            i += 3
        elif word == "ANALYZE":
            analyse, i = True, i + 1
        else:
            break
    if (word, stmt.word(i + 1)) == ("FOR", "CONNECTION"):
        return StatementFacts("EXPLAIN", K.ADMIN)  # the plan of another session's statement
    if word in _EXPLAINABLE:
        inner = stmt.ctx.dispatch(stmt.sub(i))
        if analyse:
            return replace(inner, command="EXPLAIN ANALYZE")
        # Plain EXPLAIN plans without running: everything it names is only read.
        reads = tuple(dict.fromkeys(inner.reads + inner.writes))
        return StatementFacts("EXPLAIN", K.READ, reads=reads, functions=inner.functions)
    rel, end = stmt.relation(i)
    if rel is None or analyse or end < len(stmt) - 1:  # DESCRIBE t [column | 'pattern']
        raise Refused("EXPLAIN / DESCRIBE takes a statement or a table")
    return StatementFacts("DESCRIBE", K.READ)  # the table's columns, not its rows


def _analyze(stmt: Stmt) -> StatementFacts:
    if stmt.word(1) in ("TABLE", "NO_WRITE_TO_BINLOG", "LOCAL"):
        return _maintenance(stmt)
    return _explain(stmt)


def _maintenance(stmt: Stmt) -> StatementFacts:
    """ANALYZE / OPTIMIZE / CHECK / REPAIR / CHECKSUM TABLE t, ...: administration of tables."""
    word = stmt.word(0)
    table = stmt.find("TABLE")
    if table < 0:
        raise Refused(f"{word} must be followed by TABLE")
    b = MySQLFacts("ANALYZE" if word == "ANALYZE" else f"{word} TABLE", K.ADMIN, stmt.ctx)
    b.reads.extend(stmt.relations(table + 1))
    return b.build()


def _lock(stmt: Stmt) -> StatementFacts:
    b = MySQLFacts("LOCK", K.ADMIN, stmt.ctx)
    b.reads.extend(stmt.relations(1 if stmt.word(0) == "LOCK TABLES" else 2))
    return b.build()


def _handler(stmt: Stmt) -> StatementFacts:
    """HANDLER t OPEN / READ ... / CLOSE: reads rows of t without a SELECT."""
    rel, end = stmt.relation(1)
    if rel is None:
        raise Refused("HANDLER must name its table")
    if stmt.word(end) == "CLOSE":
        return StatementFacts("HANDLER", K.SESSION)
    return StatementFacts("HANDLER", K.READ, reads=(rel,))


# -- routines and prepared statements ---------------------------------------------------------


def _call(stmt: Stmt) -> StatementFacts:
    parts, end = stmt.name(1)
    if not parts or len(parts) > 2:
        raise Refused("CALL must name a procedure")
    b = MySQLFacts("CALL", K.UNKNOWN, stmt.ctx)
    b.functions.append(".".join([*parts[:-1], parts[-1].lower()]))
    if end < len(stmt):
        if stmt.word(end) != "(" or stmt.close(end) != len(stmt) - 1:
            raise Refused("CALL takes a procedure and its arguments in parentheses")
        call = stmt.expressions(1)  # read as SELECT name(arguments)
        func = call[0].expression if isinstance(call[0], exp.Dot) else call[0]
        if len(call) != 1 or not isinstance(func, exp.Func):
            raise Refused("CALL takes a procedure and its arguments in parentheses")
        for argument in func.iter_expressions():
            b.walk(argument)
    return b.build()


def _do(stmt: Stmt) -> StatementFacts:
    b = MySQLFacts("DO", K.READ, stmt.ctx)
    for expression in stmt.expressions(1):
        b.walk(expression)
    return b.build()


def _prepare(stmt: Stmt) -> StatementFacts:
    """PREPARE name FROM 'statement' (its facts) or FROM @variable (unseen)."""
    if not stmt.is_name(1) or stmt.word(2) != "FROM" or len(stmt) < 4:
        raise Refused("PREPARE takes a name and FROM 'statement' or FROM @variable")
    name = stmt.raw(1).lower()
    if stmt.word(3) == "@" and len(stmt) == 5:
        risks = frozenset({Risk.DYNAMIC_SQL})
        return StatementFacts("PREPARE", K.UNKNOWN, risks=risks, prepares=name)
    source = stmt.tokens[3]
    if len(stmt) != 4 or source.token_type != TokenType.STRING:
        raise Refused("PREPARE takes FROM 'statement' or FROM @variable")
    from dbward.sql.mysql_analyze import analyze_mysql  # the text is a statement string itself

    ctx = stmt.ctx
    inner = analyze_mysql(
        source.text,
        database=ctx.database,
        ansi_quotes=ctx.ansi_quotes,
        no_backslash_escapes=ctx.no_backslash_escapes,
    )
    if inner.error is not None:
        raise Refused(f"the statement PREPARE {name} prepares: {inner.error}")
    if len(inner.statements) != 1:
        raise Refused("PREPARE takes exactly one statement")
    return replace(inner.statements[0], command="PREPARE", prepares=name)


def _execute(stmt: Stmt) -> StatementFacts:
    # Resolved by the session to what was prepared; unseen, it could be anything.
    if not stmt.is_name(1):
        raise Refused("EXECUTE must name a prepared statement")
    risks = frozenset({Risk.DYNAMIC_SQL})
    return StatementFacts("EXECUTE", K.UNKNOWN, risks=risks, executes=stmt.raw(1).lower())


def _deallocate(stmt: Stmt) -> StatementFacts:
    if not stmt.is_name(2) or len(stmt) != 3:
        raise Refused("DEALLOCATE PREPARE takes the name of a prepared statement")
    return StatementFacts("DEALLOCATE", K.SESSION, deallocates=stmt.raw(2).lower())


def _privilege(command: str) -> Handler:
    return _simple(command, K.PRIVILEGE, Risk.PRIVILEGE_CHANGE)


_ADMIN = _simple
_STOP = Risk.ADMIN_FUNCTION  # what PostgreSQL does with pg_terminate_backend, pg_promote, ...

_HANDLERS: dict[tuple[str, ...], Handler] = {
    # data
    ("SELECT",): query,
    ("WITH",): query,
    ("TABLE",): query,
    ("VALUES",): query,
    ("(",): query,
    ("INSERT",): insert,
    ("REPLACE",): insert,
    ("UPDATE",): update,
    ("DELETE",): delete,
    ("LOAD", "DATA"): load,
    ("LOAD", "XML"): load,
    ("DO",): _do,
    ("HANDLER",): _handler,
    # schema
    ("CREATE",): create,
    ("ALTER",): alter,
    ("DROP",): drop,
    ("TRUNCATE",): truncate,
    ("RENAME",): rename,
    ("IMPORT", "TABLE"): _simple("IMPORT TABLE", K.DDL, Risk.SERVER_FILE_ACCESS),
    # privileges
    ("GRANT",): grant,
    ("REVOKE",): grant,
    ("CREATE", "USER"): _privilege("CREATE USER"),
    ("ALTER", "USER"): _privilege("ALTER USER"),
    ("DROP", "USER"): _privilege("DROP USER"),
    ("RENAME", "USER"): _privilege("RENAME USER"),
    ("CREATE", "ROLE"): _privilege("CREATE ROLE"),
    ("DROP", "ROLE"): _privilege("DROP ROLE"),
    # session
    ("USE",): use,
    ("SET",): set_statement,
    ("PREPARE",): _prepare,
    ("EXECUTE",): _execute,
    ("DEALLOCATE", "PREPARE"): _deallocate,
    ("DROP", "PREPARE"): _deallocate,
    ("CALL",): _call,
    ("GET", "DIAGNOSTICS"): _simple("GET DIAGNOSTICS", K.SESSION),
    ("GET", "CURRENT", "DIAGNOSTICS"): _simple("GET DIAGNOSTICS", K.SESSION),
    ("GET", "STACKED", "DIAGNOSTICS"): _simple("GET DIAGNOSTICS", K.SESSION),
    # transactions
    ("START", "TRANSACTION"): _simple("START TRANSACTION", K.TRANSACTION),
    ("BEGIN",): _begin,
    ("COMMIT",): _simple("COMMIT", K.TRANSACTION),
    ("ROLLBACK",): _rollback,
    ("SAVEPOINT",): _simple("SAVEPOINT", K.TRANSACTION),
    ("RELEASE", "SAVEPOINT"): _simple("RELEASE", K.TRANSACTION),
    ("XA",): _simple("XA", K.TRANSACTION),
    # reading about the server
    ("SHOW",): _show,
    ("EXPLAIN",): _explain,
    ("DESCRIBE",): _explain,
    ("DESC",): _explain,
    ("HELP",): _simple("HELP", K.READ),
    # administration
    ("ANALYZE",): _analyze,
    ("OPTIMIZE",): _maintenance,
    ("CHECK",): _maintenance,
    ("REPAIR",): _maintenance,
    ("CHECKSUM",): _maintenance,
    ("LOCK", "TABLES"): _lock,
    ("LOCK", "TABLE"): _lock,
    ("UNLOCK", "TABLES"): _ADMIN("UNLOCK", K.ADMIN),
    ("UNLOCK", "TABLE"): _ADMIN("UNLOCK", K.ADMIN),
    ("LOCK", "INSTANCE"): _ADMIN("LOCK INSTANCE", K.ADMIN),
    ("UNLOCK", "INSTANCE"): _ADMIN("UNLOCK INSTANCE", K.ADMIN),
    ("CACHE", "INDEX"): _ADMIN("CACHE INDEX", K.ADMIN),
    ("LOAD", "INDEX"): _ADMIN("LOAD INDEX", K.ADMIN),
    ("KILL",): _ADMIN("KILL", K.ADMIN, _STOP),
    ("SHUTDOWN",): _ADMIN("SHUTDOWN", K.ADMIN, _STOP),
    ("RESTART",): _ADMIN("RESTART", K.ADMIN, _STOP),
    ("FLUSH",): _ADMIN("FLUSH", K.ADMIN, _STOP),
    ("RESET",): _ADMIN("RESET", K.ADMIN, _STOP),
    ("RESET", "PERSIST"): _ADMIN("RESET PERSIST", K.ADMIN, Risk.CONFIG_CHANGE),
    ("PURGE",): _ADMIN("PURGE", K.ADMIN, _STOP),
    ("ALTER", "INSTANCE"): _ADMIN("ALTER INSTANCE", K.ADMIN, _STOP),
    ("CHANGE", "MASTER"): _ADMIN("CHANGE MASTER", K.ADMIN, _STOP, Risk.CONFIG_CHANGE),
    ("CHANGE", "REPLICATION"): _ADMIN("CHANGE REPLICATION", K.ADMIN, _STOP, Risk.CONFIG_CHANGE),
    ("START", "SLAVE"): _ADMIN("START REPLICA", K.ADMIN, _STOP),
    ("START", "REPLICA"): _ADMIN("START REPLICA", K.ADMIN, _STOP),
    ("START", "GROUP_REPLICATION"): _ADMIN("START GROUP_REPLICATION", K.ADMIN, _STOP),
    ("STOP", "SLAVE"): _ADMIN("STOP REPLICA", K.ADMIN, _STOP),
    ("STOP", "REPLICA"): _ADMIN("STOP REPLICA", K.ADMIN, _STOP),
    ("STOP", "GROUP_REPLICATION"): _ADMIN("STOP GROUP_REPLICATION", K.ADMIN, _STOP),
    # a shared library loaded into the server; a backup's copy of the data directory
    ("INSTALL",): _ADMIN("INSTALL", K.ADMIN, Risk.PROGRAM_EXECUTION),
    ("UNINSTALL",): _ADMIN("UNINSTALL", K.ADMIN),
    ("CLONE",): _ADMIN("CLONE", K.ADMIN, Risk.SERVER_FILE_ACCESS, _STOP),
    # binary log events given as text: row changes dbward cannot see
    ("BINLOG",): _ADMIN("BINLOG", K.UNKNOWN, Risk.DYNAMIC_SQL),
}
