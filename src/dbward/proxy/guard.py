"""A session's gatekeeper: the decision for each statement, cached per statement shape.

Joins the pure layers for one session: the shared analysis cache, the
session's SQL state (:class:`SqlSession`), the connecting subject, and the
policy currently in force. A decision is reused while the analysis, the
session's name resolution and the policy are unchanged, so a statement shape
already seen costs a dictionary lookup (plus a fingerprint for new literals).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from dbward.codec.pg.backend import CommandComplete, ErrorResponse, NoticeResponse
from dbward.codec.pg.frontend import Parse, Query
from dbward.policy.decide import Decision, Subject, decide
from dbward.policy.model import Action, Policy
from dbward.sql.cache import shared_cache
from dbward.sql.facts import Analysis, StatementFacts, StatementKind
from dbward.sql.session import DEFAULT_SEARCH_PATH, SqlSession, parse_search_path

_CACHE_LIMIT = 2048
_OPTION_PATH = re.compile(r"(?:-c\s*|--)search_path\s*=\s*((?:\\.|[^\s\\])*)")


class PolicySource(Protocol):
    @property
    def policy(self) -> Policy: ...


def startup_search_path(parameters: dict[str, str]) -> tuple[str, ...] | None:
    """The ``search_path`` a session starts with, from its startup parameters.

    None when ``options`` sets it in a way this does not follow.
    """
    path: tuple[str, ...] = DEFAULT_SEARCH_PATH
    if "search_path" in parameters:
        path = parse_search_path(parameters["search_path"])
    options = parameters.get("options", "")
    if "search_path" in options:
        found = _OPTION_PATH.findall(options)
        if not found:
            return None
        path = parse_search_path(found[-1].replace("\\", ""))
    return path


AUDIT_UNAVAILABLE = "audit:store-unavailable"


def audit_unavailable(environment: str) -> Decision:
    return Decision(
        Action.DENY,
        AUDIT_UNAVAILABLE,
        f"dbward cannot write its audit store, and connections in environment "
        f"{environment!r} refuse statements until it can (fail closed); this statement "
        "did not run",
        "run it again once the audit store is back (statements resume by themselves); "
        "BEGIN, COMMIT and ROLLBACK still work",
    )


class StatementGuard:
    def __init__(
        self,
        source: PolicySource,
        subject: Subject,
        search_path: tuple[str, ...] | None,
        *,
        audit_ok: Callable[[], bool] | None = None,
    ) -> None:
        self.source = source
        self.subject = subject
        self.sql = SqlSession(search_path)
        self._decisions: dict[int, tuple[Analysis, int, Policy, Analysis, Decision]] = {}
        # Fail closed: while this says the audit store is down, statements are refused.
        self._audit_ok = audit_ok
        self._audit_down = audit_unavailable(subject.environment or "")

    def check(self, text: str) -> tuple[Analysis, Decision]:
        """The resolved analysis of ``text`` and the policy's decision on it."""
        analysis, decision = self._decide(text)
        audit_ok = self._audit_ok
        if (
            audit_ok is not None
            and decision.allowed
            and not audit_ok()
            and not all(f.kind is StatementKind.TRANSACTION for f in analysis.statements)
        ):
            return analysis, self._audit_down
        return analysis, decision

    def _decide(self, text: str) -> tuple[Analysis, Decision]:
        raw = shared_cache.analyze(text)
        policy = self.source.policy
        version = self.sql.version
        key = id(raw)
        entry = self._decisions.get(key)
        if entry is not None and entry[0] is raw and entry[1] == version and entry[2] is policy:
            return entry[3], entry[4]
        resolved = self.sql.resolve(raw)
        decision = decide(policy, self.subject, resolved)
        if len(self._decisions) >= _CACHE_LIMIT:
            self._decisions.clear()
        self._decisions[key] = (raw, version, policy, resolved, decision)
        return resolved, decision

    # outcomes, from the statement tracker -----------------------------------------------

    def succeeded(self, facts: StatementFacts) -> None:
        self.sql.succeeded(facts)

    def failed(self) -> None:
        self.sql.failed()

    def ready(self, status: str, last_tag: str | None) -> None:
        self.sql.ready(status, last_tag)


# What replaces a refused request on its way upstream: text PostgreSQL's parser rejects,
# so the server answers with an error (which dbward replaces with its own) and puts an
# open transaction into the failed state, exactly as after any other error.
REFUSED_QUERY = Query("dbward refused this statement").encode()


def refused_parse(name: str) -> bytes:
    return Parse(name, "dbward refused this statement").encode()


def refusal_error(decision: Decision) -> bytes:
    """The ErrorResponse a client gets for a statement the policy did not allow."""
    if decision.action is Action.REVIEW:
        detail = (
            f"Rule {decision.rule} requires approval by {decision.quorum} of: "
            f"{', '.join(decision.approver_groups)}."
        )
        if decision.approval is not None:
            detail += f" Request {decision.approval}."
    else:
        detail = f"Denied by rule {decision.rule}."
    if decision.command and decision.statement:
        detail += f" Statement {decision.statement + 1} of the string ({decision.command})."
    message = f"dbward: {decision.message} (rule {decision.rule})"
    if decision.hint:
        message += f"; {decision.hint}"
    return ErrorResponse.build("ERROR", decision.sqlstate, message, detail=detail).encode()


def capped_completion(tag: str, withheld: int, decision: Decision) -> bytes:
    """A warning that rows were withheld, then the CommandComplete the client did get."""
    limit = decision.max_rows or 0
    head, _, count = tag.rpartition(" ")
    if head and count.isdigit():
        tag = f"{head} {limit}"
    notice = NoticeResponse.build(
        "WARNING",
        "01000",
        f"dbward: the result was cut at {limit} row(s) by rule {decision.rule}; "
        f"{withheld} more row(s) withheld",
        hint="narrow the query (WHERE, LIMIT) or ask for a rule that allows more rows",
    )
    return notice.encode() + CommandComplete(tag).encode()
