"""Statement analysis for MySQL and MariaDB: the same :class:`Analysis` facts as PostgreSQL's.

One policy file governs both engines, so a MySQL statement is described with
the commands, kinds and risks :func:`dbward.sql.analyze.analyze` gives its
PostgreSQL counterpart (``DELETE`` without a WHERE is an unbounded write,
``TRUNCATE TABLE t`` is destructive DDL, ``GRANT ALL ON *.*`` escalates, ...).
A relation's ``schema`` is its MySQL database: the current one (``database``,
then each ``USE``) for unqualified names.

The text is read with MySQL's own lexical rules through sqlglot's MySQL
dialect, then each part is classified by its leading keywords
(:mod:`dbward.sql.mysql_commands`). Text that cannot be read, statements
dbward does not know and executable comments (``/*! ... */``, whose contents
MySQL runs) yield an analysis with ``error`` set: refused, never passed
through unchecked.
"""

from __future__ import annotations

import re

from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from dbward.sql.facts import Analysis, StatementFacts
from dbward.sql.mysql_commands import statement_facts
from dbward.sql.mysql_tokens import LITERALS, Context, Refused, Stmt, tokenize

_TOO_DEEP = "the statement is nested too deeply for dbward to analyse"
_EXECUTABLE = (
    "the statement holds a MySQL executable comment (/*! ... */), whose contents the server "
    "runs but dbward would not see; write the statement without the comment markers"
)


def analyze_mysql(
    text: str,
    *,
    database: str | None = None,
    ansi_quotes: bool = False,
    no_backslash_escapes: bool = False,
) -> Analysis:
    """Parse ``text`` (one or more statements separated by ``;``) and describe each part.

    ``database``: the session's current database, the schema of unqualified
    names. ``ansi_quotes`` / ``no_backslash_escapes``: the session's
    ``sql_mode`` has ``ANSI_QUOTES`` ("x" names a column, not a string) or
    ``NO_BACKSLASH_ESCAPES`` (the server reports it in every OK packet's
    status flags); both change where strings end, so they must match the
    server's for the facts to be right. The facts depend on all three, which
    belong in any cache key beside the shape.
    """
    if "\x00" in text:
        return Analysis("", (), error="the statement text contains a NUL byte")
    try:
        tokens = tokenize(text, ansi_quotes=ansi_quotes, no_backslash_escapes=no_backslash_escapes)
    except TokenError as exc:
        return Analysis("", (), error=f"dbward cannot read this text as MySQL: {_cause(exc)}")
    if _executable_comment(text, tokens):
        return Analysis("", (), error=_EXECUTABLE)
    space = _odd_space(text, tokens)
    if space is not None:
        error = (
            f"the statement holds the character {space} outside quotes: Python reads it as a "
            "space, MySQL as part of a name (after -- it does not start a comment); "
            "use ordinary spaces"
        )
        return Analysis("", (), error=error)
    ctx = Context(text, database, statement_facts, ansi_quotes, no_backslash_escapes)
    parts: list[StatementFacts] = []
    try:
        for chunk in _statements(tokens):
            parts.append(statement_facts(Stmt(chunk, ctx)))
    except Refused as exc:
        return Analysis("", (), error=str(exc))
    except ParseError as exc:
        return Analysis("", (), error=_parse_error(exc))
    except RecursionError:
        return Analysis("", (), error=_TOO_DEEP)
    except Exception as exc:  # sqlglot failing on odd input: refuse, never raise
        error = f"dbward cannot analyse this MySQL statement ({type(exc).__name__} in the parser)"
        return Analysis("", (), error=error)
    cacheable = not any(_literal_dependent(f) for f in parts)
    return Analysis(_shape(text, tokens), tuple(parts), cacheable=cacheable)


def _statements(tokens: list[Token]) -> list[list[Token]]:
    """The tokens of each statement; empty statements (``;;``) left out."""
    out: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            out.append([])
        else:
            out[-1].append(token)
    return [chunk for chunk in out if chunk]


def _executable_comment(text: str, tokens: list[Token]) -> bool:
    """``/*! ... */`` (MySQL) or ``/*M! ... */`` (MariaDB): comments the server executes."""
    if not tokens:  # only comments: they are kept on no token
        return "/*!" in text or "/*M!" in text
    return any(c.startswith(("!", "M!", "m!")) for token in tokens for c in token.comments)


# Characters Python counts as white space and MySQL does not: outside quotes, the two
# would split the text into different tokens.
_ODD_SPACE = re.compile(r"[^\S \t\n\r\x0b\x0c]")
_QUOTED = LITERALS | {TokenType.IDENTIFIER}


def _odd_space(text: str, tokens: list[Token]) -> str | None:
    """The first such character outside a string or quoted name (``U+00A0``), if any."""
    if _ODD_SPACE.search(text) is None:
        return None
    quoted = [(t.start, t.end) for t in tokens if t.token_type in _QUOTED]
    for match in _ODD_SPACE.finditer(text):
        at = match.start()
        if not any(start <= at <= end for start, end in quoted):
            return f"U+{ord(match.group()):04X}"
    return None


def _shape(text: str, tokens: list[Token]) -> str:
    """The text with every literal replaced by ``?``, comments and optimizer hints left out."""
    out: list[str] = []
    end = -1
    for token in tokens:
        kind = token.token_type
        if kind == TokenType.HINT:
            continue
        if out and token.start > end + 1:
            out.append(" ")
        if kind in LITERALS:
            out.append("?")
        elif kind == TokenType.IDENTIFIER:
            out.append(text[token.start : token.end + 1])  # with its quotes
        else:
            out.append(token.text)
        end = token.end
    return "".join(out)


def _literal_dependent(facts: StatementFacts) -> bool:
    """Facts that depend on literal values (SET values, PREPARE's text): never reused."""
    return bool(
        facts.settings
        or facts.command.startswith("SET")
        or facts.prepares is not None
        or facts.executes is not None
        or facts.deallocates is not None
    )


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    return str(cause) if cause is not None else str(exc)


def _parse_error(exc: ParseError) -> str:
    errors = exc.errors
    if not errors:
        return f"dbward cannot read this MySQL statement: {exc}"
    first = errors[0]
    near = str(first.get("highlight") or "")[:40]
    where = f"line {first.get('line')}, column {first.get('col')}"
    description = _TOKEN.sub(_token_text, str(first.get("description")))
    return f"syntax error at or near {near!r} ({where}): {description}"


_TOKEN = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: .*?>")


def _token_text(match: re.Match[str]) -> str:
    """sqlglot's token repr in its messages, as a user would say it."""
    return "the end of the statement" if match[1] == "SENTINEL" else repr(match[2])
