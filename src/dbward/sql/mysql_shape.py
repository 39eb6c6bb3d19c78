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
_ESCAPES = re.compile(
    _LEXEME.format(quoted=r"[^'\\]|\\.|''", dquoted=r'[^"\\]|\\.|""', plain=_PLAIN),
    re.X | re.S,
)
_NO_ESCAPES = re.compile(
    _LEXEME.format(quoted=r"[^']|''", dquoted=r'[^"]|""', plain=_PLAIN), re.X | re.S
)
_LITERALS = frozenset({"str", "dstr", "hex", "num"})
_COMMENTS = re.compile(r"--|#|/\*|\*/")


def literal_key(text: str, *, no_backslash_escapes: bool = False) -> str | None:
    """``text`` with its literals replaced by ``?``; None when the text is not plain
    enough to be sure where each literal is."""
    if _COMMENTS.search(text):
        return None  # comment markers (even inside a literal): analysed on its own
    pattern = _NO_ESCAPES if no_backslash_escapes else _ESCAPES
    parts: list[str] = []
    pos = 0
    size = len(text)
    literals = 0
    while pos < size:
        match = pattern.match(text, pos)
        if match is None:
            return None
        kind = match.lastgroup
        if kind in _LITERALS:
            parts.append("?")
            literals += 1
        else:
            parts.append(match.group())
        pos = match.end()
    if not literals:
        return None  # nothing to share: the exact text is the key
    return "".join(parts)
