"""A cheap key under which MySQL texts that differ only in literal values share facts.

Drivers and ORMs send the same statement with new values every time
(``... WHERE id = 4711``); parsing each with sqlglot costs far more than the
statement. :func:`literal_key` replaces string and number literals with
``?`` using MySQL's lexical rules for where a literal starts and ends. It is
only a cache key: the first text of each key is analysed in full, and an
analysis is shared only when its facts do not depend on literal values
(``Analysis.cacheable``). Where the text holds anything whose reading is
not plain (comments, ``/*!`` executable comments, characters outside ASCII
outside a literal, odd quoting), there is no key and the text is analysed
on its own.
"""

from __future__ import annotations

import re

# Outside literals: plain ASCII SQL. No comment markers (# -- /*), no backslash.
_PLAIN = r"[A-Za-z_$@.,;:()=<>!+*/%&|^~?{}\[\]\s-]"
_LEXEME = r"""
    (?P<ident>`(?:[^`]|``)*`)
  | (?P<str>'(?:{quoted})*')
  | (?P<dstr>"(?:{dquoted})*")
  | (?P<hex>\b[xX]'[0-9A-Fa-f]*'|\b0x[0-9A-Fa-f]+\b|\b[bB]'[01]*'|\b0b[01]+\b)
  | (?P<num>(?<![\w$@.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w$]))
  | (?P<word>[A-Za-z_$@][A-Za-z0-9_$@]*|\d+)
  | (?P<other>{plain})
"""
_LITERAL = r"""
    (?P<ident>`(?:[^`]|``)*`)
  | '(?:{quoted})*'
  | "(?:{dquoted})*"
  | \b[xX]'[0-9A-Fa-f]*'|\b0x[0-9A-Fa-f]+\b|\b[bB]'[01]*'|\b0b[01]+\b
  | (?<![\w$@.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w$])
"""


def _patterns(quoted: str, dquoted: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(the whole text as lexemes, for a check in one pass; identifiers and literals,
    for replacing the literals in another)."""
    # Atomic and possessive: a text that is not all lexemes fails at once, without
    # trying other ways to cut it (which could take exponential time).
    # (No named groups there: CPython 3.11 mis-tracks them inside a possessive repeat.)
    lexeme = re.sub(r"\(\?P<\w+>", "(?:", _LEXEME)
    whole = "(?>" + lexeme.format(quoted=quoted, dquoted=dquoted, plain=_PLAIN) + ")*+"
    return (
        re.compile(whole, re.X | re.S),
        re.compile(_LITERAL.format(quoted=quoted, dquoted=dquoted), re.X | re.S),
    )


_ESCAPES = _patterns(r"[^'\\]|\\.|''", r'[^"\\]|\\.|""')
_NO_ESCAPES = _patterns(r"[^']|''", r'[^"]|""')
_COMMENTS = re.compile(r"--|#|/\*|\*/")


def literal_key(text: str, *, no_backslash_escapes: bool = False) -> str | None:
    """``text`` with its literals replaced by ``?``; None when the text is not plain
    enough to be sure where each literal is."""
    if _COMMENTS.search(text):
        return None  # comment markers (even inside a literal): analysed on its own
    whole, literal = _NO_ESCAPES if no_backslash_escapes else _ESCAPES
    if whole.fullmatch(text) is None:
        return None
    literals = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal literals
        if match.lastgroup == "ident":
            return match.group()
        literals += 1
        return "?"

    key = literal.sub(placeholder, text)
    return key if literals else None  # without literals the exact text is the key
