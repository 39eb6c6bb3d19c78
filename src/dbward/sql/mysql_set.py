"""Facts of MySQL session statements: SET in all its forms, and USE.

``SET`` assigns user variables (``@x``: session state, no risk), session
system variables (a configuration change, as PostgreSQL's SET), global or
persisted ones (server administration), and stands for several unrelated
statements: SET TRANSACTION, SET PASSWORD, SET ROLE, SET DEFAULT ROLE, ...
The values assigned are kept in ``settings``, so such facts depend on literal
values (the analysis is not cacheable).
"""

from __future__ import annotations

from sqlglot.tokenizer_core import TokenType

from dbward.sql.facts import Risk, StatementFacts, StatementKind
from dbward.sql.mysql_tokens import LITERALS, Refused, Stmt
from dbward.sql.mysql_walk import MySQLFacts

K = StatementKind

_SCOPES = frozenset({"GLOBAL", "SESSION", "LOCAL", "PERSIST", "PERSIST_ONLY"})
_SERVER_SCOPES = frozenset({"GLOBAL", "PERSIST", "PERSIST_ONLY"})
_PRIV = frozenset({Risk.PRIVILEGE_CHANGE})
# SET statements that are not assignments: (words) -> (command, kind, risks)
_FORMS: dict[tuple[str, ...], tuple[str, StatementKind, frozenset[Risk]]] = {
    ("PASSWORD",): ("SET PASSWORD", K.PRIVILEGE, _PRIV),
    ("DEFAULT", "ROLE"): ("SET DEFAULT ROLE", K.PRIVILEGE, _PRIV),
    ("ROLE",): ("SET", K.SESSION, frozenset({Risk.ROLE_CHANGE})),
    ("RESOURCE", "GROUP"): ("SET RESOURCE GROUP", K.ADMIN, frozenset()),
    ("TRANSACTION",): ("SET", K.TRANSACTION, frozenset()),
    ("SESSION", "TRANSACTION"): ("SET", K.TRANSACTION, frozenset()),
    ("LOCAL", "TRANSACTION"): ("SET", K.TRANSACTION, frozenset()),
    ("GLOBAL", "TRANSACTION"): ("SET", K.ADMIN, frozenset({Risk.CONFIG_CHANGE})),
}


def set_statement(stmt: Stmt) -> StatementFacts:
    words = stmt.words(3)[1:]
    for length in (2, 1):
        form = _FORMS.get(words[:length])
        if form is not None:
            command, kind, risks = form
            b = MySQLFacts(command, kind, stmt.ctx)
            b.risks |= risks
            return b.build()
    if words[0] == "STATEMENT":  # MariaDB: SET STATEMENT var = value, ... FOR statement
        for_ = stmt.find("FOR")
        if for_ < 0:
            raise Refused("SET STATEMENT must be followed by FOR and a statement")
        inner = stmt.ctx.dispatch(stmt.sub(for_ + 1))
        b = MySQLFacts("SET", K.SESSION, stmt.ctx)
        for item in stmt.items(2, for_):
            _assignment(b, item, "SESSION")
        return _merge(inner, b)
    b = MySQLFacts("SET", K.SESSION, stmt.ctx)
    scope = "SESSION"
    for item in stmt.items(1):
        scope = _assignment(b, item, scope)
    return b.build()


def _merge(inner: StatementFacts, b: MySQLFacts) -> StatementFacts:
    """A statement run with some variables set for its duration only."""
    extra = b.build()
    return StatementFacts(
        command=inner.command,
        kind=inner.kind,
        reads=tuple(dict.fromkeys(inner.reads + extra.reads)),
        writes=inner.writes,
        columns=tuple(dict.fromkeys(inner.columns + extra.columns)),
        written=inner.written,
        functions=tuple(dict.fromkeys(inner.functions + extra.functions)),
        risks=inner.risks | extra.risks,
        where=inner.where,
    )


def _assignment(b: MySQLFacts, item: Stmt, carried: str) -> str:
    """One ``name = value`` of a SET list; returns the scope later items without one take."""
    first = item.word(0)
    if first == "NAMES" or first == "CHARSET" or (first, item.word(1)) == ("CHARACTER", "SET"):
        start = 2 if first == "CHARACTER" else 1
        b.settings.append(("names" if first == "NAMES" else "character_set", _text(item, start)))
        b.risks.add(Risk.CONFIG_CHANGE)
        return carried
    i, scope, user = 0, None, False
    if first in _SCOPES:
        scope, i = first, 1
    if item.word(i) == "@@":
        i += 1
        if item.word(i) in _SCOPES and item.word(i + 1) == ".":
            scope, i = item.word(i), i + 2
    elif item.word(i) == "@":
        user, i = True, i + 1
    if user and i < len(item) and item.tokens[i].token_type == TokenType.STRING:
        parts, i = [item.raw(i)], i + 1  # @'name'
    else:
        parts, i = item.name(i)
    if not parts or item.word(i) not in ("=", ":="):
        raise Refused("SET takes assignments: name = value")
    value = _value(b, item, i + 1)
    scope = scope or carried
    if user:
        b.settings.append(("@" + parts[0].lower(), value))
    elif len(parts) == 2 and parts[0].upper() in ("NEW", "OLD"):
        pass  # a trigger's row: SET NEW.column = ...
    elif scope in _SERVER_SCOPES:
        b.at_least(K.ADMIN)
        b.risks.add(Risk.CONFIG_CHANGE)
    else:
        b.settings.append((".".join(parts).lower(), value))
        b.risks.add(Risk.CONFIG_CHANGE)
    return scope if scope in _SERVER_SCOPES else carried


def _value(b: MySQLFacts, item: Stmt, start: int) -> str | None:
    """The value assigned, as text (None for DEFAULT); an expression's tables are read."""
    if start >= len(item):
        raise Refused("SET needs a value after =")
    if len(item) == start + 1 and item.tokens[start].token_type != TokenType.PARAMETER:
        word = item.word(start)
        return None if word == "DEFAULT" else _text(item, start)
    for expression in item.expressions(start):
        b.walk(expression)
    return _text(item, start)


def _text(item: Stmt, start: int) -> str:
    """The text of ``tokens[start:]``: a literal's value, else the source as written."""
    tokens = item.tokens[start:]
    if not tokens:
        raise Refused("SET needs a value")
    if len(tokens) == 1 and tokens[0].token_type in LITERALS:
        return tokens[0].text
    return item.ctx.text[tokens[0].start : tokens[-1].end + 1]


def use(stmt: Stmt) -> StatementFacts:
    """``USE db``: the database unqualified names resolve to from now on."""
    parts, end = stmt.name(1)
    if len(parts) != 1 or end != len(stmt):
        raise Refused("USE takes one database name")
    b = MySQLFacts("USE", K.SESSION, stmt.ctx)
    b.settings.append(("database", parts[0]))
    stmt.ctx.database = parts[0]
    return b.build()
