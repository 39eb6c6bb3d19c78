"""A client session's SQL state: what an unqualified name means, what was prepared.

Facts from :mod:`dbward.sql.analyze` name tables as the statement wrote them.
A session qualifies them: through its ``search_path`` (followed across ``SET
search_path``), to ``pg_temp`` for the temporary tables it created, and it
resolves ``EXECUTE name`` to the statement ``PREPARE`` gave that name.

The state changes only with statements that succeeded, and transactional
changes (``SET``, ``CREATE TEMP TABLE``, ``DROP``) only when their
transaction commits: the proxy reports each finished statement
(:meth:`SqlSession.succeeded`) and each end of a request (:meth:`ready`).
Where dbward cannot know the ``search_path`` any more (``set_config`` was
called), the schema of an unqualified name is left unknown (None), and policy
matching treats it conservatively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from dbward.sql.cache import AnalysisCache, shared_cache
from dbward.sql.facts import Analysis, Column, Relation, Risk, StatementFacts, StatementKind

DEFAULT_SEARCH_PATH = ("$user", "public")
_TEMP_RISKS = frozenset({Risk.UNBOUNDED_WRITE, Risk.DESTRUCTIVE_DDL})
_FORGETS_TEMP = frozenset({"DROP TABLE", "RENAME", "ALTER TABLE", "ALTER SET SCHEMA"})


@dataclass(slots=True)
class _State:
    search_path: tuple[str, ...] | None  # None: unknown
    temp: set[str] = field(default_factory=set)

    def copy(self) -> _State:
        return _State(self.search_path, set(self.temp))


_PATH_ITEM = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^,"]*?))\s*(?:,|$)')


def parse_search_path(value: str) -> tuple[str, ...]:
    """A ``search_path`` setting's schemas: unquoted names fold to lower case."""
    parts: list[str] = []
    for quoted, plain in _PATH_ITEM.findall(value):
        name = quoted.replace('""', '"') if quoted else plain.strip().lower()
        if name:
            parts.append(name)
    return tuple(parts)


@dataclass(slots=True)
class _Scope:
    """How names resolve at one point of a statement string."""

    path: tuple[str, ...] | None
    temp: set[str]
    prepared: dict[str, StatementFacts]

    def default_schema(self) -> str | None:
        if self.path is None:
            return None
        for schema in self.path:
            if schema not in ("$user", "pg_temp", "pg_catalog"):
                return schema
        return None

    def temp_first(self) -> bool:
        """Unqualified names find temporary tables first unless pg_temp is listed later."""
        path = self.path
        return path is not None and (path[0] == "pg_temp" if "pg_temp" in path else True)


def merge_prepared(facts: StatementFacts, prepared: StatementFacts) -> StatementFacts:
    """``EXECUTE p`` (or ``EXPLAIN ANALYZE EXECUTE p``, ``CREATE TABLE .. AS EXECUTE p``)."""
    if facts.command in ("EXECUTE", "EXPLAIN ANALYZE"):
        return replace(prepared, command=facts.command, prepares=None, executes=facts.executes)
    return replace(
        facts,
        reads=facts.reads + prepared.reads + prepared.writes,
        functions=facts.functions + prepared.functions,
        risks=(facts.risks - {Risk.DYNAMIC_SQL}) | prepared.risks,
        columns=facts.columns + prepared.columns,
    )


class SqlSession:
    def __init__(
        self,
        search_path: tuple[str, ...] | None = DEFAULT_SEARCH_PATH,
        *,
        cache: AnalysisCache | None = None,
    ) -> None:
        self._cache = cache if cache is not None else shared_cache
        self._initial_path = search_path
        self._committed = _State(search_path)
        self._current = self._committed.copy()  # includes the open transaction's changes
        self._failed = False
        self._gone_at_commit: set[str] = set()
        self._prepared: dict[str, StatementFacts] = {}
        self.version = 0  # changes whenever resolution could change

    # analysis ---------------------------------------------------------------------------

    def analyze(self, text: str) -> Analysis:
        """The facts of ``text`` with names qualified as this session would resolve them."""
        return self.resolve(self._cache.analyze(text))

    def resolve(self, analysis: Analysis) -> Analysis:
        if analysis.error is not None or not analysis.statements:
            return analysis
        # Earlier parts of one string change how later parts resolve, before anything runs.
        scope = _Scope(self._current.search_path, set(self._current.temp), {})
        parts = []
        for facts in analysis.statements:
            parts.append(self._resolve(facts, scope))
            scope.temp.update(facts.creates_temp)
            if facts.prepares is not None:
                scope.prepared[facts.prepares] = facts
            for name, value in facts.settings:
                if name == "search_path":
                    scope.path = parse_search_path(value) if value else self._initial_path
        return replace(analysis, statements=tuple(parts))

    @property
    def search_path(self) -> tuple[str, ...] | None:
        return self._current.search_path

    @property
    def temporary_tables(self) -> frozenset[str]:
        return frozenset(self._current.temp)

    def _resolve(self, facts: StatementFacts, scope: _Scope) -> StatementFacts:
        if facts.executes is not None:
            raw = scope.prepared.get(facts.executes) or self._prepared.get(facts.executes)
            if raw is not None:
                facts = merge_prepared(facts, raw)
        schema = scope.default_schema()
        temp_first = scope.temp_first()
        temp = scope.temp

        def qualify(rel: Relation) -> Relation:
            if rel.schema is not None:
                return rel
            if temp_first and rel.name in temp:
                return Relation(rel.name, "pg_temp")
            return Relation(rel.name, schema)

        writes = tuple(qualify(r) for r in facts.writes)
        risks = facts.risks
        if risks & _TEMP_RISKS and writes and all(r.temporary for r in writes):
            risks = risks - _TEMP_RISKS
        return replace(
            facts,
            reads=tuple(qualify(r) for r in facts.reads),
            writes=writes,
            columns=tuple(
                Column(c.name, qualify(c.relation)) if c.relation else c for c in facts.columns
            ),
            written=tuple(
                Column(c.name, qualify(c.relation)) if c.relation else c for c in facts.written
            ),
            risks=risks,
            unresolved=facts.unresolved or facts,
        )

    # state changes ----------------------------------------------------------------------

    def apply(self, analysis: Analysis) -> None:
        """Every statement of ``analysis`` ran and committed (outside a transaction)."""
        for facts in analysis.statements:
            self.succeeded(facts)
        self.ready("I")

    def succeeded(self, facts: StatementFacts) -> None:
        """One statement ran without error (its transaction may still roll back)."""
        if facts.prepares is not None:
            # PREPARE is not transactional; EXECUTE resolves the names afresh, as
            # PostgreSQL re-analyses a prepared statement when search_path changed.
            self._prepared[facts.prepares] = facts.unresolved or facts
            self.version += 1
        if facts.deallocates is not None:
            if facts.deallocates:
                self._prepared.pop(facts.deallocates, None)
            else:
                self._prepared.clear()
            self.version += 1
        if _changes_resolution(facts):
            self._change(facts)

    def _change(self, facts: StatementFacts) -> None:
        state = self._current
        if facts.command in _FORGETS_TEMP:
            # Dropped, renamed or altered: forget those names (a forgotten temporary
            # table is only treated more strictly, as the permanent one it may shadow).
            state.temp.difference_update(
                r.name for r in facts.tables if r.temporary or r.schema is None
            )
        state.temp.update(facts.creates_temp)
        self._gone_at_commit.update(facts.temp_until_commit)
        if facts.command == "DISCARD":
            state.temp.clear()
            self._prepared.clear()
        for name, value in facts.settings:
            if name == "search_path":
                state.search_path = (
                    parse_search_path(value) if value is not None else self._initial_path
                )
            elif name == "all":
                state.search_path = self._initial_path
        if facts.kind is StatementKind.UNKNOWN or any(
            f.endswith("set_config") for f in facts.functions
        ):
            state.search_path = None  # it may have changed in ways dbward cannot see
        self.version += 1

    def failed(self) -> None:
        """A statement failed: its implicit transaction, if any, rolls back."""
        self._failed = True

    def ready(self, status: str, last_tag: str | None = None) -> None:
        """The server is ready for the next request; ``status`` is its transaction status.

        ``last_tag`` is the command tag of the last statement that ended a
        transaction block or rolled back to a savepoint, if any.
        """
        before = self._current
        if status == "I":
            if self._failed or last_tag == "ROLLBACK":
                self._current = self._committed.copy()
            elif self._current != self._committed:
                self._committed = self._current.copy()
            self._failed = False
            if self._gone_at_commit:  # ON COMMIT DROP tables: their transaction ended
                self._current.temp -= self._gone_at_commit
                self._committed.temp -= self._gone_at_commit
                self._gone_at_commit.clear()
                self.version += 1
        elif status == "T" and last_tag == "ROLLBACK":
            # ROLLBACK TO SAVEPOINT: which changes it undid is not tracked; forget them all.
            self._current = self._committed.copy()
        if self._current != before:
            self.version += 1


def _changes_resolution(facts: StatementFacts) -> bool:
    return bool(
        facts.creates_temp
        or facts.settings
        or facts.command in _FORGETS_TEMP
        or facts.command == "DISCARD"
        or facts.kind is StatementKind.UNKNOWN
        or (facts.functions and any(f.endswith("set_config") for f in facts.functions))
    )
