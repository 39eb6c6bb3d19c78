"""Statement analysis: PostgreSQL's own grammar in, :class:`Analysis` facts out. Pure.

Each part of a statement string is parsed by libpg_query (through pglast),
walked once, and described by a :class:`StatementFacts`. Text the grammar
rejects yields an :class:`Analysis` with ``error`` set: it is refused, never
passed through unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pglast import parser

from dbward.sql.builder import FactsBuilder, qualified, relation
from dbward.sql.facts import Analysis, Relation, Risk, StatementFacts, StatementKind
from dbward.sql.tree import Node, const_string, def_elems, option_true, strings

K = StatementKind

# Built-in roles whose membership reaches server files, programs or all data.
_DANGEROUS_ROLES = frozenset(
    {
        "pg_read_server_files",
        "pg_write_server_files",
        "pg_execute_server_program",
        "pg_read_all_data",
        "pg_write_all_data",
    }
)
_ESCALATING_ROLE_OPTIONS = frozenset({"superuser", "bypassrls", "isreplication"})
_DESTRUCTIVE_DROPS = frozenset({"OBJECT_TABLE", "OBJECT_SCHEMA", "OBJECT_MATVIEW"})
_RELATION_DROPS = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_INDEX",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)
_UNTRUSTED_LANGUAGES = frozenset(
    {"c", "internal", "plpython3u", "plpythonu", "plperlu", "pltclu", "plsh", "plv8u"}
)
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
# Statements whose facts are the same whatever they name: (command, kind).
_SIMPLE: dict[str, tuple[str, StatementKind]] = {
    "VariableShowStmt": ("SHOW", K.READ),
    "FetchStmt": ("FETCH", K.READ),
    "ClosePortalStmt": ("CLOSE", K.SESSION),
    "ListenStmt": ("LISTEN", K.SESSION),
    "UnlistenStmt": ("UNLISTEN", K.SESSION),
    "NotifyStmt": ("NOTIFY", K.SESSION),
    "DiscardStmt": ("DISCARD", K.SESSION),
    "ConstraintsSetStmt": ("SET CONSTRAINTS", K.TRANSACTION),
    "CheckPointStmt": ("CHECKPOINT", K.ADMIN),
    "ReindexStmt": ("REINDEX", K.ADMIN),
    "ClusterStmt": ("CLUSTER", K.ADMIN),
    "LockStmt": ("LOCK", K.ADMIN),
    "CreatedbStmt": ("CREATE DATABASE", K.DDL),
    "AlterDatabaseStmt": ("ALTER DATABASE", K.DDL),
    "CreateSchemaStmt": ("CREATE SCHEMA", K.DDL),
    "CreateExtensionStmt": ("CREATE EXTENSION", K.DDL),
    "IndexStmt": ("CREATE INDEX", K.DDL),
    "ViewStmt": ("CREATE VIEW", K.DDL),
    "CreateSeqStmt": ("CREATE SEQUENCE", K.DDL),
    "AlterSeqStmt": ("ALTER SEQUENCE", K.DDL),
    "CreateTrigStmt": ("CREATE TRIGGER", K.DDL),
    "RuleStmt": ("CREATE RULE", K.DDL),
    "CommentStmt": ("COMMENT", K.DDL),
    "RenameStmt": ("RENAME", K.DDL),
    "AlterObjectSchemaStmt": ("ALTER SET SCHEMA", K.DDL),
    "RefreshMatViewStmt": ("REFRESH MATERIALIZED VIEW", K.WRITE),
    "AlterOwnerStmt": ("ALTER OWNER", K.PRIVILEGE),
    "CreatePolicyStmt": ("CREATE POLICY", K.PRIVILEGE),
    "AlterPolicyStmt": ("ALTER POLICY", K.PRIVILEGE),
    "AlterDefaultPrivilegesStmt": ("ALTER DEFAULT PRIVILEGES", K.PRIVILEGE),
    "DropRoleStmt": ("DROP ROLE", K.PRIVILEGE),
    "ReassignOwnedStmt": ("REASSIGN OWNED", K.PRIVILEGE),
}
_PRIVILEGE_NODES = frozenset(
    {
        "AlterOwnerStmt",
        "CreatePolicyStmt",
        "AlterPolicyStmt",
        "AlterDefaultPrivilegesStmt",
        "DropRoleStmt",
        "ReassignOwnedStmt",
    }
)


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
    temp: set[str] = set()
    parts: list[StatementFacts] = []
    cacheable = True
    for raw in tree.get("stmts", ()):
        node_type, stmt = next(iter(raw["stmt"].items()))
        builder = statement_facts(node_type, stmt, temp)
        if node_type in _LITERAL_DEPENDENT:
            cacheable = False
        parts.append(builder.build())
    return Analysis(shape, tuple(parts), cacheable=cacheable)


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
    simple = _SIMPLE.get(node_type)
    b = FactsBuilder(*(simple or _generic(node_type)), temp)
    if node_type in _PRIVILEGE_NODES:
        b.risks.add(Risk.PRIVILEGE_CHANGE)
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


def _generic(node_type: str) -> tuple[str, StatementKind]:
    """Command and kind of a statement type dbward has no special knowledge of."""
    words = "".join(f" {c}" if c.isupper() else c for c in node_type.removesuffix("Stmt")).split()
    command = " ".join(words).upper()
    if words and words[0] in ("Create", "Alter", "Drop", "Define", "Import"):
        return command, K.DDL
    return command or node_type, K.UNKNOWN


# -- data -------------------------------------------------------------------------------------


def _select(stmt: Node, temp: set[str]) -> FactsBuilder:
    into = stmt.get("intoClause")
    if into is None:
        b = FactsBuilder("SELECT", K.READ, temp)
        b.visit(stmt)
        return b
    b = FactsBuilder("SELECT INTO", K.DDL, temp)
    _create_into(b, into)
    b.visit({k: v for k, v in stmt.items() if k != "intoClause"})
    return b


def _create_into(b: FactsBuilder, into: Node) -> None:
    rel = relation(into["rel"], b.temp)
    if into["rel"].get("relpersistence") == "t":
        b.create_temp(rel.name, until_commit=into.get("onCommit") == "ONCOMMIT_DROP")
    b.write_relation(rel)


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


# -- DDL --------------------------------------------------------------------------------------


def _create_table(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("CREATE TABLE", K.DDL, temp)
    rel = stmt["relation"]
    if rel.get("relpersistence") == "t" or rel.get("schemaname") == "pg_temp":
        b.create_temp(rel.get("relname", ""), until_commit=stmt.get("oncommit") == "ONCOMMIT_DROP")
    b.write(rel)
    b.visit({k: v for k, v in stmt.items() if k != "relation"})
    return b


def _create_table_as(stmt: Node, temp: set[str]) -> FactsBuilder:
    matview = stmt.get("objtype") == "OBJECT_MATVIEW"
    b = FactsBuilder("CREATE MATERIALIZED VIEW" if matview else "CREATE TABLE AS", K.DDL, temp)
    _create_into(b, stmt["into"])
    query = stmt.get("query") or {}
    if "ExecuteStmt" in query:
        b.executes = query["ExecuteStmt"].get("name", "")
        b.risks.add(Risk.DYNAMIC_SQL)  # until the session knows what was prepared
    b.visit(query)
    return b


def _alter_table(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("ALTER TABLE", K.DDL, temp)
    target = b.write(stmt["relation"])
    for cmd in stmt.get("cmds", ()):
        subtype = cmd.get("AlterTableCmd", {}).get("subtype", "")
        if subtype == "AT_DropColumn" and not target.temporary:
            b.risks.add(Risk.DESTRUCTIVE_DDL)
        elif subtype in ("AT_DisableRowSecurity", "AT_NoForceRowSecurity"):
            b.risks.add(Risk.PRIVILEGE_CHANGE)
    b.visit(stmt.get("cmds"))
    return b


def _drop(stmt: Node, temp: set[str]) -> FactsBuilder:
    remove = stmt.get("removeType", "")
    b = FactsBuilder("DROP " + remove.removeprefix("OBJECT_").replace("_", " "), K.DDL, temp)
    if remove == "OBJECT_MATVIEW":
        b.command = "DROP MATERIALIZED VIEW"
    targets: list[Relation] = []
    for obj in stmt.get("objects", ()):
        if remove in _RELATION_DROPS and "List" in obj:
            rel = qualified(obj["List"].get("items"))
            if rel.schema is None and rel.name in temp:
                rel = Relation(rel.name, "pg_temp")
            targets.append(rel)
        elif remove == "OBJECT_SCHEMA":
            targets.append(Relation("*", const_string(obj) or ""))
    for rel in targets:
        b.write_relation(rel)
    if remove in _DESTRUCTIVE_DROPS and not all(r.temporary for r in targets):
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b


def _dropdb(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("DROP DATABASE", K.DDL, temp)
    b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b


def _drop_owned(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("DROP OWNED", K.DDL, temp)
    b.risks |= {Risk.DESTRUCTIVE_DDL, Risk.PRIVILEGE_CHANGE}
    return b


def _truncate(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("TRUNCATE", K.DDL, temp)
    targets = [b.write(r["RangeVar"]) for r in stmt.get("relations", ()) if "RangeVar" in r]
    if not all(t.temporary for t in targets):
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b


def _create_function(stmt: Node, temp: set[str]) -> FactsBuilder:
    command = "CREATE PROCEDURE" if stmt.get("is_procedure") else "CREATE FUNCTION"
    b = FactsBuilder(command, K.DDL, temp)
    language = "sql" if stmt.get("sql_body") else None
    body: str | None = None
    for name, arg in def_elems(stmt.get("options")):
        if name == "language":
            language = (const_string(arg) or "").lower()
        elif name == "as" and arg is not None:
            body = "".join(strings(arg.get("List", {}).get("items")))
        elif name == "security" and option_true(arg):
            b.risks.add(Risk.PRIVILEGE_CHANGE)  # SECURITY DEFINER
    if language in _UNTRUSTED_LANGUAGES:
        b.risks.add(Risk.PROGRAM_EXECUTION)
    elif language == "sql":
        _take_body(b, stmt.get("sql_body"), body)
    elif language not in ("plpgsql", None):
        b.risks.add(Risk.DYNAMIC_SQL)
    return b


def _take_body(b: FactsBuilder, parsed: Any, text: str | None) -> None:
    """Fold a SQL-language body's facts into the CREATE FUNCTION's (what calling it does)."""
    inner: list[StatementFacts] = []
    if parsed:
        b.visit(parsed)
        return
    if text:
        analysis = analyze(text)
        if analysis.error is not None:
            return  # PostgreSQL itself refuses the function then
        inner = list(analysis.statements)
    for facts in inner:
        b.reads.extend(facts.reads)
        b.writes.extend(facts.writes)
        b.functions.extend(facts.functions)
        b.risks |= facts.risks


# -- privileges and roles ---------------------------------------------------------------------


def _grant(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("GRANT" if stmt.get("is_grant") else "REVOKE", K.PRIVILEGE, temp)
    b.risks.add(Risk.PRIVILEGE_CHANGE)
    return b


def _grant_role(stmt: Node, temp: set[str]) -> FactsBuilder:
    granting = bool(stmt.get("is_grant"))
    b = FactsBuilder("GRANT ROLE" if granting else "REVOKE ROLE", K.PRIVILEGE, temp)
    b.risks.add(Risk.PRIVILEGE_CHANGE)
    for priv in stmt.get("granted_roles", ()):
        if granting and priv.get("AccessPriv", {}).get("priv_name") in _DANGEROUS_ROLES:
            b.risks.add(Risk.PRIVILEGE_ESCALATION)
    return b


def _role(command: str) -> Callable[[Node, set[str]], FactsBuilder]:
    def handler(stmt: Node, temp: set[str]) -> FactsBuilder:
        b = FactsBuilder(command, K.PRIVILEGE, temp)
        b.risks.add(Risk.PRIVILEGE_CHANGE)
        for name, arg in def_elems(stmt.get("options")):
            escalates = name in _ESCALATING_ROLE_OPTIONS and option_true(arg)
            joins = name == "addroleto" and _grants_dangerous_role(arg)
            # ALTER GROUP g ADD USER u is GRANT g TO u in other words.
            adds = (
                name == "rolemembers"
                and stmt.get("action", 1) == 1
                and stmt.get("role", {}).get("rolename") in _DANGEROUS_ROLES
            )
            if escalates or joins or adds:
                b.risks.add(Risk.PRIVILEGE_ESCALATION)
        return b

    return handler


def _grants_dangerous_role(arg: Node | None) -> bool:
    """``CREATE ROLE x IN ROLE pg_execute_server_program``: membership given at creation."""
    items = (arg or {}).get("List", {}).get("items", ())
    return any(item.get("RoleSpec", {}).get("rolename") in _DANGEROUS_ROLES for item in items)


def _alter_role_set(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("ALTER ROLE SET", K.PRIVILEGE, temp)
    b.risks |= {Risk.PRIVILEGE_CHANGE, Risk.CONFIG_CHANGE}
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


def _alter_database_set(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("ALTER DATABASE SET", K.DDL, temp)
    b.risks.add(Risk.CONFIG_CHANGE)
    return b


def _alter_system(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("ALTER SYSTEM", K.ADMIN, temp)
    b.risks.add(Risk.CONFIG_CHANGE)
    return b


def _vacuum(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("VACUUM" if stmt.get("is_vacuumcmd") else "ANALYZE", K.ADMIN, temp)
    b.visit(stmt.get("rels"))
    return b


def _do(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("DO", K.UNKNOWN, temp)
    b.risks.add(Risk.DYNAMIC_SQL)
    return b


def _call(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("CALL", K.UNKNOWN, temp)
    b.function(stmt.get("funccall", {}))
    return b


def _load(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("LOAD", K.ADMIN, temp)
    b.risks.add(Risk.PROGRAM_EXECUTION)  # loads a shared library into the server
    return b


_HANDLERS: dict[str, Callable[[Node, set[str]], FactsBuilder]] = {
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
    "CreateStmt": _create_table,
    "CreateTableAsStmt": _create_table_as,
    "AlterTableStmt": _alter_table,
    "DropStmt": _drop,
    "DropdbStmt": _dropdb,
    "DropOwnedStmt": _drop_owned,
    "TruncateStmt": _truncate,
    "CreateFunctionStmt": _create_function,
    "GrantStmt": _grant,
    "GrantRoleStmt": _grant_role,
    "CreateRoleStmt": _role("CREATE ROLE"),
    "AlterRoleStmt": _role("ALTER ROLE"),
    "AlterRoleSetStmt": _alter_role_set,
    "VariableSetStmt": _set,
    "TransactionStmt": _transaction,
    "AlterSystemStmt": _alter_system,
    "AlterDatabaseSetStmt": _alter_database_set,
    "VacuumStmt": _vacuum,
    "DoStmt": _do,
    "CallStmt": _call,
    "LoadStmt": _load,
}
