"""Facts of MySQL privilege statements: GRANT and REVOKE, of privileges and of roles.

Every one is a privilege change. A GRANT is also an escalation where it
confers what PostgreSQL's analyser counts as one there (superuser,
server files, replication, all data): any privilege on every database
(``ON *.*``, which is how MySQL gives SUPER, FILE, PROCESS, REPLICATION ...,
and reading or writing all data), any privilege on the ``mysql`` system
database (its tables hold the accounts and their grants), ``PROXY`` (acting
as another account) and ``WITH GRANT OPTION`` (passing privileges on).
"""

from __future__ import annotations

from dbward.sql.facts import Risk, StatementFacts, StatementKind
from dbward.sql.mysql_tokens import Refused, Stmt
from dbward.sql.mysql_walk import MySQLFacts

_OBJECT_TYPES = frozenset({"TABLE", "FUNCTION", "PROCEDURE"})
_NO_PRIVILEGE = frozenset({"USAGE"})


def grant(stmt: Stmt) -> StatementFacts:
    verb = stmt.word(0)  # GRANT or REVOKE
    start = 3 if verb == "REVOKE" and stmt.words(3)[1:] == ("IF", "EXISTS") else 1
    on = stmt.find("ON", start)
    to = stmt.find("TO" if verb == "GRANT" else "FROM", start)
    if to < 0:
        raise Refused(f"{verb} must name the accounts ({'TO' if verb == 'GRANT' else 'FROM'} ...)")
    b = MySQLFacts(verb, StatementKind.PRIVILEGE, stmt.ctx)
    b.risks.add(Risk.PRIVILEGE_CHANGE)
    privileges = [_privilege(item) for item in stmt.items(start, on if 0 <= on < to else to)]
    if not privileges or not all(privileges):
        raise Refused(f"{verb} must name the privileges or roles it gives")
    if not 0 <= on < to:
        # GRANT role, ... TO account; REVOKE ALL [PRIVILEGES], GRANT OPTION FROM account
        if not (verb == "REVOKE" and privileges[0] in ("ALL", "ALL PRIVILEGES")):
            b.command = f"{verb} ROLE"
        return b.build()
    if verb == "GRANT" and _escalates(stmt, privileges, on + 1, to):
        b.risks.add(Risk.PRIVILEGE_ESCALATION)
    return b.build()


def _privilege(item: Stmt) -> str:
    """A privilege's name (``SELECT``, ``CREATE USER``, ``SUPER``): its words before any columns."""
    words = []
    for i in range(len(item)):
        if item.word(i) == "(":
            break
        words.append(item.word(i) or item.raw(i).upper())
    return " ".join(words)


def _escalates(stmt: Stmt, privileges: list[str], start: int, to: int) -> bool:
    if "PROXY" in privileges or _with_grant_option(stmt, to):
        return True
    if all(p in _NO_PRIVILEGE for p in privileges):
        return False
    i = start + 1 if stmt.word(start) in _OBJECT_TYPES else start
    level = [stmt.word(j) if stmt.word(j) in ("*", ".") else stmt.raw(j) for j in range(i, to)]
    if level in (["*", ".", "*"], ["*"]) and (level == ["*", ".", "*"] or not stmt.ctx.database):
        return True  # every database (a lone * when no database is selected)
    database = level[0] if len(level) == 3 else stmt.ctx.database
    return (database or "").lower() == "mysql"


def _with_grant_option(stmt: Stmt, to: int) -> bool:
    with_ = stmt.find("WITH", to)
    return with_ >= 0 and (stmt.word(with_ + 1), stmt.word(with_ + 2)) == ("GRANT", "OPTION")
