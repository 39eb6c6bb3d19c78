"""MySQL statements as sqlglot tokens: the reading every MySQL analysis starts from.

The text is tokenized once, with MySQL's lexical rules (backtick identifiers,
``#`` and ``-- `` comments, backslash escapes, and the two ``sql_mode`` flags
that change them). A :class:`Stmt` is the tokens of one statement with the
small helpers the keyword-driven handlers need: the words, dotted names, the
top-level commas, and a way to hand tokens to sqlglot's MySQL parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.parsers.mysql import MySQLParser
from sqlglot.tokenizer_core import Token, TokenType

from dbward.sql.facts import Relation, StatementFacts

NAME_KEY = "dbward_name"  # meta key under which sqlglot keeps a function's name as written

DIALECT = MySQL()
DIALECT.ORIGINAL_NAME_META_KEY = NAME_KEY


class Refused(Exception):
    """A statement dbward cannot analyse: refused with this message."""


class _Tokenizer(MySQL.Tokenizer):
    # sqlglot swallows what follows some leading keywords (CALL, PREPARE, ...) as
    # one string; dbward classifies those statements itself and needs every token.
    COMMANDS: ClassVar[set[TokenType]] = set()


class _AnsiQuotes(_Tokenizer):  # sql_mode ANSI_QUOTES: "x" is an identifier
    QUOTES: ClassVar[list[tuple[str, str] | str]] = ["'"]
    IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ["`", '"']
    STRING_ESCAPES: ClassVar[list[str]] = ["'", "\\"]


class _NoBackslash(_Tokenizer):  # sql_mode NO_BACKSLASH_ESCAPES: \ is an ordinary character
    STRING_ESCAPES: ClassVar[list[str]] = ["'", '"']


class _AnsiNoBackslash(_AnsiQuotes):
    STRING_ESCAPES: ClassVar[list[str]] = ["'"]


for _tokenizer in (_Tokenizer, _AnsiQuotes, _NoBackslash, _AnsiNoBackslash):
    # sqlglot reads {# ... #} as a (Jinja) comment in every dialect; MySQL reads "{" and
    # then a # comment to the end of the line, and runs what follows the line.
    _tokenizer._COMMENTS = {k: v for k, v in _tokenizer._COMMENTS.items() if k != "{#"}

_TOKENIZERS: dict[tuple[bool, bool], type[_Tokenizer]] = {
    (False, False): _Tokenizer,
    (True, False): _AnsiQuotes,
    (False, True): _NoBackslash,
    (True, True): _AnsiNoBackslash,
}


def tokenize(text: str, *, ansi_quotes: bool, no_backslash_escapes: bool) -> list[Token]:
    return _TOKENIZERS[ansi_quotes, no_backslash_escapes](dialect=DIALECT).tokenize(text)


class _Parser(MySQLParser):
    def _warn_unsupported(self) -> None:
        """Unsupported syntax is refused by dbward, not logged by sqlglot."""


LITERALS = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.BYTE_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)
_NOT_WORDS = LITERALS | {TokenType.IDENTIFIER}
_WORD = re.compile(r"[^\W\d][\w$]*|\$[\w$]*")


@dataclass(slots=True)
class Context:
    """What one statement string's analysis knows as it goes from part to part."""

    text: str
    database: str | None  # the current database; changed by USE
    dispatch: Callable[[Stmt], StatementFacts]  # the facts of a statement (or of one inside one)
    ansi_quotes: bool = False
    no_backslash_escapes: bool = False
    temp: set[Relation] = field(default_factory=set)  # temporary tables created here
    parser: _Parser = field(default_factory=lambda: _Parser(dialect=DIALECT))


class Stmt:
    """The tokens of one statement (or of a part of one) and helpers over them."""

    __slots__ = ("ctx", "tokens")

    def __init__(self, tokens: list[Token], ctx: Context) -> None:
        self.tokens = tokens
        self.ctx = ctx

    def __len__(self) -> int:
        return len(self.tokens)

    def word(self, i: int) -> str:
        """The keyword (upper case) at ``i``; "" past the end, for literals and quoted names."""
        if not 0 <= i < len(self.tokens):
            return ""
        token = self.tokens[i]
        return "" if token.token_type in _NOT_WORDS else token.text.upper()

    def words(self, limit: int) -> tuple[str, ...]:
        """The first ``limit`` words ("" where there is none), "LOCK TABLES" as two."""
        out: list[str] = []
        for i in range(min(limit, len(self.tokens))):
            out.extend(self.word(i).split() or [""])
        out.extend([""] * limit)
        return tuple(out[:limit])

    def raw(self, i: int) -> str:
        """A name token as written: case kept, quotes removed."""
        token = self.tokens[i]
        if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING):
            return token.text
        return self.ctx.text[token.start : token.end + 1]

    def is_name(self, i: int) -> bool:
        """Whether the token at ``i`` can be a name: `quoted`, or a word (maybe a keyword)."""
        if not 0 <= i < len(self.tokens):
            return False
        token = self.tokens[i]
        if token.token_type in (TokenType.IDENTIFIER, TokenType.VAR):
            return True
        return token.token_type not in LITERALS and _WORD.fullmatch(token.text) is not None

    def name(self, i: int) -> tuple[list[str], int]:
        """A dotted name starting at ``i``: its parts and the index after it."""
        parts: list[str] = []
        while self.is_name(i):
            parts.append(self.raw(i))
            if self.word(i + 1) != "." or not self.is_name(i + 2):
                return parts, i + 1
            i += 2
        return parts, i

    def relation(self, i: int) -> tuple[Relation | None, int]:
        parts, end = self.name(i)
        if not parts or len(parts) > 2:
            return None, end
        schema = parts[0] if len(parts) == 2 else self.ctx.database
        return Relation(parts[-1], schema), end

    def find(self, word: str, start: int = 0) -> int:
        """The index of the first top-level (outside parentheses) ``word``, else -1."""
        depth = 0
        for i in range(start, len(self.tokens)):
            if depth == 0 and self.word(i) == word:
                return i
            kind = self.tokens[i].token_type
            if kind == TokenType.L_PAREN:
                depth += 1
            elif kind == TokenType.R_PAREN:
                depth -= 1
        return -1

    def close(self, i: int) -> int:
        """The index of the parenthesis that closes the one at ``i`` (the end if none does)."""
        depth = 0
        for j in range(i, len(self.tokens)):
            kind = self.tokens[j].token_type
            if kind == TokenType.L_PAREN:
                depth += 1
            elif kind == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    return j
        return len(self.tokens)

    def items(self, start: int, end: int | None = None) -> list[Stmt]:
        """The top-level comma-separated parts of ``tokens[start:end]``."""
        out: list[Stmt] = []
        depth = 0
        first = start
        stop = len(self.tokens) if end is None else end
        for i in range(start, stop):
            kind = self.tokens[i].token_type
            if kind == TokenType.L_PAREN:
                depth += 1
            elif kind == TokenType.R_PAREN:
                depth -= 1
            elif kind == TokenType.COMMA and depth == 0:
                out.append(self.sub(first, i))
                first = i + 1
        out.append(self.sub(first, stop))
        return [item for item in out if item.tokens]

    def relations(self, start: int, end: int | None = None) -> list[Relation]:
        """The relations a comma-separated list of table names names (aliases, options skipped)."""
        out = []
        for item in self.items(start, end):
            rel, _ = item.relation(0)
            if rel is not None:
                out.append(rel)
        return out

    def sub(self, start: int, end: int | None = None) -> Stmt:
        return Stmt(self.tokens[start:end], self.ctx)

    def drop(self, indexes: set[int]) -> Stmt:
        """The statement without the tokens at ``indexes`` (modifiers sqlglot does not know)."""
        return Stmt([t for i, t in enumerate(self.tokens) if i not in indexes], self.ctx)

    def parse(self, first: TokenType | None = None) -> exp.Expr:
        """Parse with sqlglot's MySQL grammar, reading the first token as ``first`` if given.

        ``first`` lets a statement be read as one sqlglot knows: ``REPLACE`` as
        ``INSERT``, ``CALL p(x)`` and ``DO x`` as ``SELECT``.
        """
        tokens = self.tokens
        if first is not None and tokens:
            head = tokens[0]
            swapped = Token(first, first.name, head.line, head.col, head.start, head.end)
            tokens = [swapped, *tokens[1:]]
        trees = [t for t in self.ctx.parser.parse(tokens, self.ctx.text) if t is not None]
        if len(trees) != 1 or isinstance(trees[0], exp.Command):
            words = " ".join(w for w in self.words(2) if w)
            raise Refused(f"dbward cannot analyse this MySQL statement: {words} ...")
        return trees[0]

    def expressions(self, start: int, end: int | None = None) -> list[exp.Expr]:
        """The expression list ``tokens[start:end]``, parsed as a SELECT list.

        The token before ``start`` (a keyword or ``=``) is read as ``SELECT``.
        """
        part = self.sub(start - 1, end)
        if start < 1 or len(part) < 2:
            raise Refused("an expression is missing")
        tree = part.parse(TokenType.SELECT)
        extra = any(value for key, value in tree.args.items() if key != "expressions")
        if not isinstance(tree, exp.Select) or extra:
            raise Refused("expected a list of expressions")
        return list(tree.expressions)
