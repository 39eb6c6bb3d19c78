"""``decide(policy, subject, analysis) -> Decision``: the policy engine. Pure.

Order and precedence (``docs/policy.md``): an unparsable statement is denied;
then the guardrails (where they apply); then every rule in file order, the
most restrictive matching action winning (deny > review > allow, the first
rule of that action naming the decision); then the policy's default. For a
multi-statement string the most restrictive part decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbward.identity.models import IdentityKind
from dbward.policy.guardrails import CHECKS
from dbward.policy.matching import matches_statement, matches_subject
from dbward.policy.model import Action, Match, Policy, Rule
from dbward.sql.facts import Analysis, StatementFacts


@dataclass(frozen=True, slots=True)
class Subject:
    """Who runs the statement and where: fixed for a whole session."""

    identity: str
    groups: tuple[str, ...]
    identity_kind: IdentityKind
    connection: str
    environment: str


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: str  # "guardrail:...", a policy rule's name, or "default"
    message: str = ""  # why, for the client (empty for a plain allow)
    hint: str = ""  # what to do about it
    statement: int | None = None  # which part of a multi-statement string decided
    command: str | None = None
    approver_groups: tuple[str, ...] = ()
    quorum: int = 0
    max_rows: int | None = None
    reason_required: bool = False
    expires: float | None = None  # seconds a review request stays open; None: the default
    approval: str | None = None  # the approval request that let a review statement run
    sqlstate: str = "42501"  # what a refusal is answered with (insufficient_privilege)

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW


UNPARSABLE = "guardrail:unparsable"


def decide(policy: Policy, subject: Subject, analysis: Analysis) -> Decision:
    if analysis.error is not None:
        return Decision(
            Action.DENY,
            UNPARSABLE,
            f"dbward cannot parse this statement, so it does not run: {analysis.error}",
            "fix the syntax; dbward refuses what PostgreSQL's grammar does not accept",
        )
    if not analysis.statements:
        return _default_decision(policy, None, 0)
    decided: Decision | None = None
    max_rows: int | None = None
    for index, facts in enumerate(analysis.statements):
        part = decide_statement(policy, subject, facts, index)
        if part.max_rows is not None:
            max_rows = part.max_rows if max_rows is None else min(max_rows, part.max_rows)
        if decided is None or part.action.severity > decided.action.severity:
            decided = part
    assert decided is not None
    if decided.allowed and max_rows != decided.max_rows:
        return _with_rows(decided, max_rows)
    return decided


def _with_rows(decision: Decision, max_rows: int | None) -> Decision:
    return Decision(
        decision.action,
        decision.rule,
        decision.message,
        decision.hint,
        decision.statement,
        decision.command,
        max_rows=max_rows,
    )


def decide_statement(
    policy: Policy, subject: Subject, facts: StatementFacts, index: int = 0
) -> Decision:
    guardrails = policy.guardrails
    if subject.environment in guardrails.environments and not (
        guardrails.exempt is not None and _holds(guardrails.exempt, subject, facts)
    ):
        for check in CHECKS:
            if check.guardrail not in guardrails.disable and check.applies(facts):
                return Decision(
                    Action.DENY,
                    check.rule,
                    check.message(facts),
                    check.hint,
                    index,
                    facts.command,
                )
    winner: Rule | None = None
    max_rows: int | None = None
    for rule in policy.rules:
        if not _rule_matches(rule, subject, facts):
            continue
        if rule.action is Action.ALLOW and rule.limits.max_rows is not None:
            limit = rule.limits.max_rows
            max_rows = limit if max_rows is None else min(max_rows, limit)
        if winner is None or rule.action.severity > winner.action.severity:
            winner = rule
    if winner is None:
        return _default_decision(policy, facts.command, index)
    return _rule_decision(winner, facts, index, max_rows)


def _default_decision(policy: Policy, command: str | None, index: int) -> Decision:
    message, hint = _default_words(policy.default)
    approvers = policy.approvers if policy.default is Action.REVIEW else None
    if approvers is None:
        return Decision(policy.default, "default", message, hint, index, command)
    return Decision(
        Action.REVIEW,
        "default",
        message,
        hint,
        index,
        command,
        approver_groups=approvers.group,
        quorum=approvers.quorum,
        reason_required=approvers.reason_required,
        expires=approvers.expires,
    )


def _holds(match: Match, subject: Subject, facts: StatementFacts, *, cautious: bool = True) -> bool:
    return matches_subject(match, subject) and matches_statement(match, facts, cautious=cautious)


def _rule_matches(rule: Rule, subject: Subject, facts: StatementFacts) -> bool:
    # Where a fact is uncertain (a table whose schema dbward could not resolve), a deny or
    # review rule errs on matching, an allow rule on not matching; for `unless`, the reverse.
    restrictive = rule.action is not Action.ALLOW
    if not _holds(rule.match, subject, facts, cautious=restrictive):
        return False
    return rule.unless is None or not _holds(rule.unless, subject, facts, cautious=not restrictive)


def _default_words(action: Action) -> tuple[str, str]:
    if action is Action.ALLOW:
        return "", ""
    if action is Action.DENY:
        return (
            "no policy rule allows this statement and the policy denies by default",
            "ask the policy owners for a rule that allows it",
        )
    return (
        "approval required: no policy rule covers this statement and the policy asks for "
        "approval by default",
        "an approver can approve it with dbward approvals approve",
    )


def _rule_decision(rule: Rule, facts: StatementFacts, index: int, max_rows: int | None) -> Decision:
    if rule.action is Action.ALLOW:
        return Decision(
            Action.ALLOW, rule.name, statement=index, command=facts.command, max_rows=max_rows
        )
    if rule.action is Action.DENY:
        return Decision(
            Action.DENY,
            rule.name,
            rule.message or f"{facts.command} is denied by policy rule {rule.name!r}",
            "ask the policy owners if you need this to run",
            index,
            facts.command,
        )
    approvers = rule.approvers
    assert approvers is not None
    groups = ", ".join(approvers.group)
    return Decision(
        Action.REVIEW,
        rule.name,
        "approval required: "
        + (rule.message or f"{facts.command} needs approval under policy rule {rule.name!r}"),
        f"{approvers.quorum} approver(s) from {groups} must approve it",
        index,
        facts.command,
        approver_groups=approvers.group,
        quorum=approvers.quorum,
        reason_required=approvers.reason_required,
        expires=approvers.expires,
    )
