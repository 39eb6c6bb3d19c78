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

from dbward.policy.decide import Decision, Subject, decide
from dbward.policy.model import Policy
from dbward.proxy.guard import PolicySource, audit_unavailable
from dbward.sql.facts import Analysis, StatementKind
from dbward.sql.mysql_analyze import analyze_mysql

_SHARED_LIMIT = 8192
_DECISIONS_LIMIT = 2048


class _SharedAnalyses:
    """Analyses by (text, current database, string escapes), in a bounded LRU shared by
    all sessions."""

    def __init__(self, capacity: int = _SHARED_LIMIT) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str | None, bool], Analysis] = OrderedDict()

    def analyze(self, text: str, database: str | None, no_backslash_escapes: bool) -> Analysis:
        key = (text, database, no_backslash_escapes)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        analysis = analyze_mysql(text, database=database, no_backslash_escapes=no_backslash_escapes)
        self._entries[key] = analysis
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return analysis


shared_analyses = _SharedAnalyses()


class MysqlGuard:
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
        self._decisions: dict[int, tuple[Analysis, Policy, Decision]] = {}
        self._audit_ok = audit_ok
        self._audit_down = audit_unavailable(subject.environment or "")

    def analyze(self, text: str) -> Analysis:
        return shared_analyses.analyze(text, self.database, self.no_backslash_escapes)

    def check(self, text: str) -> tuple[Analysis, Decision]:
        """The analysis of ``text`` and the policy's decision on it (fail closed while the
        audit store is down, except for transaction control)."""
        analysis = self.analyze(text)
        return analysis, self.decide(analysis)

    def decide(self, analysis: Analysis) -> Decision:
        """The policy's decision on an analysis (a prepared statement's, at execution)."""
        policy = self.source.policy
        entry = self._decisions.get(id(analysis))
        if entry is not None and entry[0] is analysis and entry[1] is policy:
            decision = entry[2]
        else:
            decision = decide(policy, self.subject, analysis)
            if len(self._decisions) >= _DECISIONS_LIMIT:
                self._decisions.clear()
            self._decisions[id(analysis)] = (analysis, policy, decision)
        audit_ok = self._audit_ok
        if (
            audit_ok is not None
            and decision.allowed
            and not audit_ok()
            and not all(f.kind is StatementKind.TRANSACTION for f in analysis.statements)
        ):
            return self._audit_down
        return decision

    def succeeded(self, analysis: Analysis | None) -> None:
        """A statement ran: follow ``USE`` to the new current database."""
        if analysis is None:
            return
        for facts in analysis.statements:
            for name, value in facts.settings:
                if name == "database" and value:
                    self.database = value
