"""Facts of schema and privilege statements: CREATE / ALTER / DROP / TRUNCATE, GRANT, roles.

Handlers take a statement's parse-tree fields and the string's temporary
tables, and return the :class:`FactsBuilder` they filled; :mod:`dbward.sql.analyze`
dispatches to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbward.sql.builder import FactsBuilder, qualified, relation
from dbward.sql.facts import Relation, Risk, StatementKind
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


def create_into(b: FactsBuilder, into: Node) -> None:
    rel = relation(into["rel"], b.temp)
    if into["rel"].get("relpersistence") == "t":
        b.create_temp(rel.name, until_commit=into.get("onCommit") == "ONCOMMIT_DROP")
    b.write_relation(rel)


def create_table(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("CREATE TABLE", K.DDL, temp)
    rel = stmt["relation"]
    if rel.get("relpersistence") == "t" or rel.get("schemaname") == "pg_temp":
        b.create_temp(rel.get("relname", ""), until_commit=stmt.get("oncommit") == "ONCOMMIT_DROP")
    b.write(rel)
    b.visit({k: v for k, v in stmt.items() if k != "relation"})
    return b


def create_table_as(stmt: Node, temp: set[str]) -> FactsBuilder:
    matview = stmt.get("objtype") == "OBJECT_MATVIEW"
    b = FactsBuilder("CREATE MATERIALIZED VIEW" if matview else "CREATE TABLE AS", K.DDL, temp)
    create_into(b, stmt["into"])
    query = stmt.get("query") or {}
    if "ExecuteStmt" in query:
        b.executes = query["ExecuteStmt"].get("name", "")
        b.risks.add(Risk.DYNAMIC_SQL)  # until the session knows what was prepared
    b.visit(query)
    return b


def alter_table(stmt: Node, temp: set[str]) -> FactsBuilder:
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


def drop(stmt: Node, temp: set[str]) -> FactsBuilder:
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


def truncate(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("TRUNCATE", K.DDL, temp)
    targets = [b.write(r["RangeVar"]) for r in stmt.get("relations", ()) if "RangeVar" in r]
    if not all(t.temporary for t in targets):
        b.risks.add(Risk.DESTRUCTIVE_DDL)
    return b


def create_function(stmt: Node, temp: set[str]) -> FactsBuilder:
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
    if parsed:
        b.visit(parsed)
        return
    from dbward.sql.analyze import analyze  # a body is statements: analysed the same way

    analysis = analyze(text) if text else None
    if analysis is None or analysis.error is not None:
        return  # no body, or one PostgreSQL itself refuses
    for facts in analysis.statements:
        b.reads.extend(facts.reads)
        b.writes.extend(facts.writes)
        b.functions.extend(facts.functions)
        b.risks |= facts.risks


# -- privileges and roles ---------------------------------------------------------------------


def grant(stmt: Node, temp: set[str]) -> FactsBuilder:
    b = FactsBuilder("GRANT" if stmt.get("is_grant") else "REVOKE", K.PRIVILEGE, temp)
    b.risks.add(Risk.PRIVILEGE_CHANGE)
    return b


def grant_role(stmt: Node, temp: set[str]) -> FactsBuilder:
    granting = bool(stmt.get("is_grant"))
    b = FactsBuilder("GRANT ROLE" if granting else "REVOKE ROLE", K.PRIVILEGE, temp)
    b.risks.add(Risk.PRIVILEGE_CHANGE)
    for priv in stmt.get("granted_roles", ()):
        if granting and priv.get("AccessPriv", {}).get("priv_name") in _DANGEROUS_ROLES:
            b.risks.add(Risk.PRIVILEGE_ESCALATION)
    return b


def role(command: str) -> Callable[[Node, set[str]], FactsBuilder]:
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


DDL_HANDLERS: dict[str, Callable[[Node, set[str]], FactsBuilder]] = {
    "CreateStmt": create_table,
    "CreateTableAsStmt": create_table_as,
    "AlterTableStmt": alter_table,
    "DropStmt": drop,
    "TruncateStmt": truncate,
    "CreateFunctionStmt": create_function,
    "GrantStmt": grant,
    "GrantRoleStmt": grant_role,
    "CreateRoleStmt": role("CREATE ROLE"),
    "AlterRoleStmt": role("ALTER ROLE"),
}
