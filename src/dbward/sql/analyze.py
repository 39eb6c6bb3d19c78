"""Statement analysis: PostgreSQL's own grammar in, :class:`Analysis` facts out. Pure.

Each part of a statement string is parsed by libpg_query (through pglast),
walked once, and described by a :class:`StatementFacts`. Text the grammar
rejects yields an :class:`Analysis` with ``error`` set: it is refused, never
passed through unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pglast import parser

from dbward.sql.builder import FactsBuilder
from dbward.sql.ddl import DDL_HANDLERS, create_into
from dbward.sql.facts import Analysis, Risk, StatementFacts, StatementKind
from dbward.sql.tree import Node, const_string, def_elems, option_true

K = StatementKind

_TRANSACTION_COMMANDS = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START TRANSACTION",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK TO SAVEPOINT",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}
_NONE: frozenset[Risk] = frozenset()
_PRIV = frozenset({Risk.PRIVILEGE_CHANGE})
# Statements whose facts are the same whatever they name: (command, kind, risks).
_SIMPLE: dict[str, tuple[str, StatementKind, frozenset[Risk]]] = {
    "VariableShowStmt": ("SHOW", K.READ, _NONE),
    "FetchStmt": ("FETCH", K.READ, _NONE),
    "ClosePortalStmt": ("CLOSE", K.SESSION, _NONE),
    "ListenStmt": ("LISTEN", K.SESSION, _NONE),
    "UnlistenStmt": ("UNLISTEN", K.SESSION, _NONE),
    "NotifyStmt": ("NOTIFY", K.SESSION, _NONE),
    "DiscardStmt": ("DISCARD", K.SESSION, _NONE),
    "ConstraintsSetStmt": ("SET CONSTRAINTS", K.TRANSACTION, _NONE),
    "CheckPointStmt": ("CHECKPOINT", K.ADMIN, _NONE),
    "ReindexStmt": ("REINDEX", K.ADMIN, _NONE),
    "ClusterStmt": ("CLUSTER", K.ADMIN, _NONE),
    "LockStmt": ("LOCK", K.ADMIN, _NONE),
    "CreatedbStmt": ("CREATE DATABASE", K.DDL, _NONE),
    "AlterDatabaseStmt": ("ALTER DATABASE", K.DDL, _NONE),
    "CreateSchemaStmt": ("CREATE SCHEMA", K.DDL, _NONE),
    "CreateExtensionStmt": ("CREATE EXTENSION", K.DDL, _NONE),
    "IndexStmt": ("CREATE INDEX", K.DDL, _NONE),
    "ViewStmt": ("CREATE VIEW", K.DDL, _NONE),
    "CreateSeqStmt": ("CREATE SEQUENCE", K.DDL, _NONE),
    "AlterSeqStmt": ("ALTER SEQUENCE", K.DDL, _NONE),
    "CreateTrigStmt": ("CREATE TRIGGER", K.DDL, _NONE),
    "RuleStmt": ("CREATE RULE", K.DDL, _NONE),
    "CommentStmt": ("COMMENT", K.DDL, _NONE),
    "RenameStmt": ("RENAME", K.DDL, _NONE),
    "AlterObjectSchemaStmt": ("ALTER SET SCHEMA", K.DDL, _NONE),
    "RefreshMatViewStmt": ("REFRESH MATERIALIZED VIEW", K.WRITE, _NONE),
    "AlterOwnerStmt": ("ALTER OWNER", K.PRIVILEGE, _PRIV),
    "CreatePolicyStmt": ("CREATE POLICY", K.PRIVILEGE, _PRIV),
    "AlterPolicyStmt": ("ALTER POLICY", K.PRIVILEGE, _PRIV),
    "AlterDefaultPrivilegesStmt": ("ALTER DEFAULT PRIVILEGES", K.PRIVILEGE, _PRIV),
    "DropRoleStmt": ("DROP ROLE", K.PRIVILEGE, _PRIV),
    "ReassignOwnedStmt": ("REASSIGN OWNED", K.PRIVILEGE, _PRIV),
    "DropdbStmt": ("DROP DATABASE", K.DDL, frozenset({Risk.DESTRUCTIVE_DDL})),
    "DropOwnedStmt": (
        "DROP OWNED",
        K.DDL,
        frozenset({Risk.DESTRUCTIVE_DDL, Risk.PRIVILEGE_CHANGE}),
    ),
    "AlterRoleSetStmt": (
        "ALTER ROLE SET",
        K.PRIVILEGE,
        frozenset({Risk.PRIVILEGE_CHANGE, Risk.CONFIG_CHANGE}),
    ),
    "AlterDatabaseSetStmt": ("ALTER DATABASE SET", K.DDL, frozenset({Risk.CONFIG_CHANGE})),
    "AlterSystemStmt": ("ALTER SYSTEM", K.ADMIN, frozenset({Risk.CONFIG_CHANGE})),
    "DoStmt": ("DO", K.UNKNOWN, frozenset({Risk.DYNAMIC_SQL})),
    # LOAD puts a shared library into the server.
    "LoadStmt": ("LOAD", K.ADMIN, frozenset({Risk.PROGRAM_EXECUTION})),
}


def analyze(text: str, *, shape: str | None = None) -> Analysis:
    """Parse ``text`` (one or more statements) and describe each part.

    ``shape``: the text with its constants replaced, when the caller has it.
    """
    if "\x00" in text:
        # libpg_query stops at a NUL; what follows it would go unseen.
        return Analysis("", (), error="the statement text contains a NUL byte")
    try:
        tree = json.loads(parser.parse_sql_json(text))
        if shape is None:
            shape = parser.normalize(text)
    except parser.ParseError as exc:
        return Analysis("", (), error=_parse_error(exc))
    except RecursionError:
        return Analysis("", (), error=_TOO_DEEP)
    temp: set[str] = set()
    parts: list[StatementFacts] = []
    cacheable = True
    try:
        for raw in tree.get("stmts", ()):
            node_type, stmt = next(iter(raw["stmt"].items()))
            builder = statement_facts(node_type, stmt, temp)
            if node_type in _LITERAL_DEPENDENT:
                cacheable = False
            parts.append(builder.build())
    except RecursionError:  # refused, as anything dbward cannot see through is
        return Analysis("", (), error=_TOO_DEEP)
    return Analysis(shape, tuple(parts), cacheable=cacheable)


_TOO_DEEP = "the statement is nested too deeply for dbward to analyse"


def _parse_error(exc: Exception) -> str:
    message = str(exc.args[0]) if exc.args else str(exc)
    position = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(position, int) and position >= 0:
        return f"{message} (at character {position + 1})"
    return message


# Facts that depend on constant values: never reuse another text's analysis for them.
_LITERAL_DEPENDENT = frozenset(
    {"VariableSetStmt", "PrepareStmt", "ExecuteStmt", "DeallocateStmt", "CreateFunctionStmt"}
)


def statement_facts(node_type: str, stmt: Node, temp: set[str]) -> FactsBuilder:
    handler = _HANDLERS.get(node_type)
    if handler is not None:
        return handler(stmt, temp)
    command, kind, risks = _SIMPLE.get(node_type) or _generic(node_type)
    b = FactsBuilder(command, kind, temp)
    b.risks |= risks
    if node_type.startswith(("Create", "Alter", "Define")) or node_type in (
        "RuleStmt",
        "RenameStmt",
    ):
        target = stmt.get("relation") or stmt.get("view") or stmt.get("sequence")
        if isinstance(target, dict) and "relname" in target:
            b.write(target)
            rest = {k: v for k, v in stmt.items() if k not in ("relation", "view", "sequence")}
            b.visit(rest)
            return b
    b.visit(stmt)
    return b


def _generic(node_type: str) -> tuple[str, StatementKind, frozenset[Risk]]:
    """Command and kind of a statement type dbward has no special knowledge of."""
    words = "".join(f" {c}" if c.isupper() else c for c in node_type.removesuffix("Stmt")).split()
    command = " ".join(words).upper()
    if words and words[0] in ("Create", "Alter", "Drop", "Define", "Import"):
        return command, K.DDL, _NONE
    return command or node_type, K.UNKNOWN, _NONE


# -- data -------------------------------------------------------------------------------------


def _select(stmt: Node, temp: set[str]) -> FactsBuilder:
    into = stmt.get("intoClause")
    if into is None:
        b = FactsBuilder("SELECT", K.READ, temp)
        b.visit(stmt)
        return b
    b = FactsBuilder("SELECT INTO", K.DDL, temp)
    create_into(b, into)
    b.visit({k: v for k, v in stmt.items() if k != "intoClause"})
    return b


def _dml(command: str, node_type: str) -> Callable[[Node, set[str]], FactsBuilder]:
    def handler(stmt: Node, temp: set[str]) -> FactsBuilder:
        b = FactsBuilder(command, K.WRITE, temp)
        b.dml(node_type, stmt)
        return b

    return handler


def _copy(stmt: Node, temp: set[str]) -> FactsBuilder:
    if stmt.get("is_from"):
        b = FactsBuilder("COPY FROM", K.WRITE, temp)
        if "relation" in stmt:
            b.write(stmt["relation"])
    else:
        b = FactsBuilder("COPY TO", K.READ, temp)
        b.risks.add(Risk.DATA_EXPORT)
        if "relation" in stmt:
            b.read(stmt["relation"])
    b.visit(stmt.get("query"))
    b.visit(stmt.get("whereClause"))
    if stmt.get("is_program"):
        b.risks.add(Risk.PROGRAM_EXECUTION)
    elif stmt.get("filename") is not None:
        b.risks.add(Risk.SERVER_FILE_ACCESS)
    return b


def _explain(stmt: Node, temp: set[str]) -> FactsBuilder:
    analyse = any(
        name == "analyze" and option_true(arg) for name, arg in def_elems(stmt.get("options"))
    )
    node_type, inner = next(iter(stmt["query"].items()))
    b = statement_facts(node_type, inner, temp)
    if analyse:
        b.command = "EXPLAIN ANALYZE"
        return b
    # Plain EXPLAIN plans without running: everything it names is only read.
    plain = FactsBuilder("EXPLAIN", K.READ, temp)
    plain.reads = b.reads + b.writes
    plain.functions = b.functions
    return plain


def _prepare(stmt: Node, temp: set[str]) -> FactsBuilder:
    node_type, inner = next(iter(stmt["query"].items()))
    b = statement_facts(node_type, inner, temp)
    b.command = "PREPARE"
    b.prepares = stmt.get("name", "")
    return b


def _execute(stmt: Node, temp: set[str]) -> FactsBuilder:
    # Resolved by the session to what was prepared; unseen, it could be anything.
    b = FactsBuilder("EXECUTE", K.UNKNOWN, temp)
    b.executes = stmt.get("name", "")
    b.risks.add(Risk.DYNAMIC_SQL)
    b.visit(stmt.get("params"))
    return b


def _deallocate(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("DEALLOCATE", K.SESSION, temp)
    b.deallocates = "" if stmt.get("isall") else stmt.get("name", "")
    return b


def _declare(stmt: Node, temp: set[str]) -> FactsBuilder:
    node_type, inner = next(iter(stmt["query"].items()))
    b = statement_facts(node_type, inner, temp)
    b.command = "DECLARE CURSOR"
    return b


# -- session, transaction, administration -----------------------------------------------------


def _set(stmt: Node, temp: set[str]) -> FactsBuilder:
    kind = stmt.get("kind", "")
    name = (stmt.get("name") or "").lower()
    b = FactsBuilder("RESET" if kind.startswith("VAR_RESET") else "SET", K.SESSION, temp)
    if name == "transaction" or name.startswith("session characteristics"):
        b.kind = K.TRANSACTION
        return b
    if name in ("role", "session_authorization"):
        b.risks.add(Risk.ROLE_CHANGE)
    else:
        b.risks.add(Risk.CONFIG_CHANGE)
    if kind == "VAR_SET_VALUE":
        values = [const_string(arg) or "" for arg in stmt.get("args", ())]
        if name == "search_path":  # identifiers, exactly as written: quote each
            values = ['"' + v.replace('"', '""') + '"' for v in values]
        b.settings.append((name, ", ".join(values)))
    elif kind in ("VAR_SET_DEFAULT", "VAR_RESET"):
        b.settings.append((name, None))
    elif kind == "VAR_RESET_ALL":
        b.settings.append(("all", None))
    return b


def _transaction(stmt: Node, temp: set[str]) -> FactsBuilder:
    return FactsBuilder(
        _TRANSACTION_COMMANDS.get(stmt.get("kind", ""), "TRANSACTION"), K.TRANSACTION, temp
    )


def _vacuum(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("VACUUM" if stmt.get("is_vacuumcmd") else "ANALYZE", K.ADMIN, temp)
    b.visit(stmt.get("rels"))
    return b


def _call(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("CALL", K.UNKNOWN, temp)
    b.function(stmt.get("funccall", {}))
    return b


_HANDLERS: dict[str, Callable[[Node, set[str]], FactsBuilder]] = {
    **DDL_HANDLERS,
    "SelectStmt": _select,
    "InsertStmt": _dml("INSERT", "InsertStmt"),
    "UpdateStmt": _dml("UPDATE", "UpdateStmt"),
    "DeleteStmt": _dml("DELETE", "DeleteStmt"),
    "MergeStmt": _dml("MERGE", "MergeStmt"),
    "CopyStmt": _copy,
    "ExplainStmt": _explain,
    "PrepareStmt": _prepare,
    "ExecuteStmt": _execute,
    "DeallocateStmt": _deallocate,
    "DeclareCursorStmt": _declare,
    "VariableSetStmt": _set,
    "TransactionStmt": _transaction,
    "VacuumStmt": _vacuum,
    "CallStmt": _call,
}
