"""Whether a rule's ``match`` holds for a subject and a statement's facts.

Patterns take ``*`` and ``?`` wildcards. Identity names and groups compare
case-insensitively; table, column and function names as PostgreSQL folded
them. A table pattern without a schema (``orders``) matches that name in any
schema. A relation whose schema dbward could not resolve matches on its name
alone when ``cautious`` is set (deny and review rules), and only schema-less
patterns otherwise (allow rules).
"""

from __future__ import annotations

import re
from fnmatch import translate
from functools import lru_cache
from typing import TYPE_CHECKING

from dbward.sql.facts import Column, Relation, StatementFacts
from dbward.sql.functions import base_name

if TYPE_CHECKING:
    from dbward.policy.decide import Subject
    from dbward.policy.model import Match


@lru_cache(maxsize=4096)
def _pattern(pattern: str, fold: bool) -> re.Pattern[str]:
    return re.compile(translate(pattern), re.IGNORECASE if fold else 0)


def _any(patterns: tuple[str, ...], value: str, *, fold: bool = False) -> bool:
    return any(_pattern(p, fold).match(value) for p in patterns)


def matches_subject(match: Match, subject: Subject) -> bool:
    if match.identity and not _any(match.identity, subject.identity, fold=True):
        return False
    if match.group and not any(_any(match.group, g, fold=True) for g in subject.groups):
        return False
    if match.identity_kind and subject.identity_kind not in match.identity_kind:
        return False
    if match.connection and not _any(match.connection, subject.connection):
        return False
    return not (match.environment and not _any(match.environment, subject.environment))


def matches_statement(match: Match, facts: StatementFacts, *, cautious: bool) -> bool:
    if match.kind and facts.kind not in match.kind:
        return False
    if match.command and facts.command not in match.command:
        return False
    if match.risk and not any(r in facts.risks for r in match.risk):
        return False
    if match.table and not _tables(match.table, facts.tables, cautious):
        return False
    if match.reads and not _tables(match.reads, facts.reads, cautious):
        return False
    if match.writes and not _tables(match.writes, facts.writes, cautious):
        return False
    if match.column and not any(
        _column(p, c, cautious) for p in match.column for c in facts.columns
    ):
        return False
    return not (
        match.function
        and not any(
            _any(match.function, f) or _any(match.function, base_name(f)) for f in facts.functions
        )
    )


def _tables(patterns: tuple[str, ...], relations: tuple[Relation, ...], cautious: bool) -> bool:
    return any(_relation(p, r, cautious) for p in patterns for r in relations)


def _relation(pattern: str, rel: Relation, cautious: bool) -> bool:
    schema_pattern, dot, name_pattern = pattern.rpartition(".")
    if not _pattern(name_pattern, False).match(rel.name):
        return False
    if not dot:
        return True
    if rel.schema is None:
        return cautious
    return bool(_pattern(schema_pattern, False).match(rel.schema))


def _column(pattern: str, column: Column, cautious: bool) -> bool:
    table_pattern, dot, name_pattern = pattern.rpartition(".")
    if not _pattern(name_pattern, False).match(column.name):
        return False
    if not dot:
        return True
    if column.relation is None:
        return cautious
    return _relation(table_pattern, column.relation, cautious)
