"""A MySQL session's gatekeeper: the decision for each statement, with MySQL's name rules.

Statements are analysed with sqlglot's MySQL dialect into the same facts as
PostgreSQL's, so one policy decides both. An unqualified table belongs to the
session's current database, which follows ``USE`` and ``COM_INIT_DB`` once
they succeed. Analyses are shared between sessions (keyed by text and current
database) and decisions are cached per analysis and policy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from dbward.policy.decide import Decision, Subject, decide
from dbward.policy.model import Policy
from dbward.proxy.guard import PolicySource, audit_unavailable
from dbward.sql.facts import Analysis, Column, Relation, Risk, StatementFacts, StatementKind
from dbward.sql.mysql_analyze import analyze_mysql
from dbward.sql.mysql_shape import literal_key
from dbward.sql.session import merge_prepared

_SHARED_LIMIT = 8192
_DECISIONS_LIMIT = 2048
_TEMP_RISKS = frozenset({Risk.UNBOUNDED_WRITE, Risk.DESTRUCTIVE_DDL})


_Key = tuple[str, str | None, bool]  # text (or shape), current database, string escapes


class _SharedAnalyses:
    """Analyses by (text, current database, string escapes), in a bounded LRU shared by
    all sessions."""

    def __init__(self, capacity: int = _SHARED_LIMIT) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[_Key, Analysis] = OrderedDict()
        self._shapes: OrderedDict[_Key, Analysis] = OrderedDict()

    def analyze(self, text: str, database: str | None, no_backslash_escapes: bool) -> Analysis:
        key = (text, database, no_backslash_escapes)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        analysis = self._by_shape(text, database, no_backslash_escapes)
        self._remember(self._entries, key, analysis)
        return analysis

    def _by_shape(self, text: str, database: str | None, no_backslash_escapes: bool) -> Analysis:
        """A text of a known shape (other literal values) shares that shape's analysis."""
        shape = literal_key(text, no_backslash_escapes=no_backslash_escapes)
        key = (shape or "", database, no_backslash_escapes)
        if shape is not None:
            found = self._shapes.get(key)
            if found is not None:
                self._shapes.move_to_end(key)
                return found
        analysis = analyze_mysql(text, database=database, no_backslash_escapes=no_backslash_escapes)
        if shape is not None and analysis.cacheable and analysis.error is None:
            self._remember(self._shapes, key, analysis)
        return analysis

    def _remember(
        self, entries: OrderedDict[_Key, Analysis], key: _Key, analysis: Analysis
    ) -> None:
        entries[key] = analysis
        if len(entries) > self.capacity:
            entries.popitem(last=False)


shared_analyses = _SharedAnalyses()


class MysqlGuard:
    """Decides each statement of one MySQL session, resolving names as the session does:
    unqualified tables belong to the current database, the session's temporary tables
    shadow permanent ones (and are exempt from the unbounded-write and destructive-DDL
    guardrails, as PostgreSQL's are), and ``EXECUTE name`` has the facts of the
    statement ``PREPARE name FROM '...'`` gave that name."""

    def __init__(
        self,
        source: PolicySource,
        subject: Subject,
        database: str | None,
        *,
        audit_ok: Callable[[], bool] | None = None,
    ) -> None:
        self.source = source
        self.subject = subject
        self.database = database
        # The server's sql_mode NO_BACKSLASH_ESCAPES (from its status flags) changes where
        # a string literal ends, so it changes what the text means.
        self.no_backslash_escapes = False
        self._temp: set[str] = set()  # this session's temporary tables
        self._prepared: dict[str, StatementFacts] = {}  # SQL-level PREPARE
        self._version = 0  # changes whenever resolution could change
        self._decisions: dict[int, tuple[Analysis, int, Policy, Analysis, Decision]] = {}
        self._audit_ok = audit_ok
        self._audit_down = audit_unavailable(subject.environment or "")

    def analyze(self, text: str) -> Analysis:
        return shared_analyses.analyze(text, self.database, self.no_backslash_escapes)

    def check(self, text: str) -> tuple[Analysis, Decision]:
        """The resolved analysis of ``text`` and the policy's decision on it (fail closed
        while the audit store is down, except for transaction control)."""
        return self.decided(self.analyze(text))

    def decided(self, raw: Analysis) -> tuple[Analysis, Decision]:
        """``raw`` resolved in this session, and the policy's decision on it."""
        policy = self.source.policy
        entry = self._decisions.get(id(raw))
        if (
            entry is not None
            and entry[0] is raw
            and entry[1] == self._version
            and entry[2] is policy
        ):
            resolved, decision = entry[3], entry[4]
        else:
            resolved = self._resolve(raw)
            decision = decide(policy, self.subject, resolved)
            if len(self._decisions) >= _DECISIONS_LIMIT:
                self._decisions.clear()
            self._decisions[id(raw)] = (raw, self._version, policy, resolved, decision)
        audit_ok = self._audit_ok
        if (
            audit_ok is not None
            and decision.allowed
            and not audit_ok()
            and not all(f.kind is StatementKind.TRANSACTION for f in resolved.statements)
        ):
            return resolved, self._audit_down
        return resolved, decision

    def _resolve(self, raw: Analysis) -> Analysis:
        if raw.error is not None or not raw.statements:
            return raw
        if not self._temp and not any(f.executes for f in raw.statements):
            return raw
        temp = set(self._temp)
        prepared = dict(self._prepared)
        parts = []
        for facts in raw.statements:
            if facts.executes is not None and facts.executes in prepared:
                facts = merge_prepared(facts, prepared[facts.executes])
            if temp:
                facts = self._temporary(facts, temp)
            parts.append(facts)
            temp.update(facts.creates_temp)
            if facts.prepares is not None:
                prepared[facts.prepares] = facts
        return replace(raw, statements=tuple(parts))

    def _temporary(self, facts: StatementFacts, temp: set[str]) -> StatementFacts:
        database = self.database

        def qualify(rel: Relation) -> Relation:
            if rel.name in temp and rel.schema in (None, database):
                return Relation(rel.name, "pg_temp")  # what Relation.temporary looks for
            return rel

        def column(col: Column) -> Column:
            return Column(col.name, qualify(col.relation)) if col.relation else col

        writes = tuple(qualify(r) for r in facts.writes)
        risks = facts.risks
        if risks & _TEMP_RISKS and writes and all(r.temporary for r in writes):
            risks = risks - _TEMP_RISKS
        return replace(
            facts,
            reads=tuple(qualify(r) for r in facts.reads),
            writes=writes,
            columns=tuple(column(c) for c in facts.columns),
            written=tuple(column(c) for c in facts.written),
            risks=risks,
        )

    def succeeded(self, analysis: Analysis | None) -> None:
        """Statements ran: follow ``USE``, temporary tables and SQL-level PREPARE."""
        if analysis is None:
            return
        for facts in analysis.statements:
            for name, value in facts.settings:
                if name == "database" and value:
                    self.database = value
                    self._version += 1
            if facts.creates_temp:
                self._temp.update(facts.creates_temp)
                self._version += 1
            if facts.command.startswith("DROP") and self._temp:
                self._temp.difference_update(r.name for r in facts.writes if r.temporary)
                self._version += 1
            if facts.prepares is not None:
                self._prepared[facts.prepares] = facts
                self._version += 1
            if facts.deallocates is not None:
                if facts.deallocates:
                    self._prepared.pop(facts.deallocates, None)
                else:
                    self._prepared.clear()
                self._version += 1

    def reset(self) -> None:
        """COM_RESET_CONNECTION: temporary tables and prepared statements are gone."""
        self._temp.clear()
        self._prepared.clear()
        self._version += 1
