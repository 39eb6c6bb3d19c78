"""A decision and the facts behind it, as plain data (``dbward policy test --json``, the API's
dry run). Pure."""

from __future__ import annotations

from typing import Any

from dbward.policy.decide import Decision, Subject
from dbward.sql.facts import Analysis, StatementFacts


def facts_json(facts: StatementFacts) -> dict[str, Any]:
    return {
        "command": facts.command,
        "kind": facts.kind.value,
        "reads": [str(r) for r in facts.reads],
        "writes": [str(r) for r in facts.writes],
        "columns": [str(c) for c in facts.columns],
        "functions": list(facts.functions),
        "risks": sorted(r.value for r in facts.risks),
        "where": facts.where,
    }


def explain(subject: Subject, decision: Decision, analysis: Analysis) -> dict[str, Any]:
    return {
        "decision": decision.action.value,
        "rule": decision.rule,
        "message": decision.message,
        "hint": decision.hint,
        "statement": decision.statement,
        "approvers": {"groups": list(decision.approver_groups), "quorum": decision.quorum}
        if decision.approver_groups
        else None,
        "max_rows": decision.max_rows,
        "subject": {
            "identity": subject.identity,
            "groups": list(subject.groups),
            "kind": subject.identity_kind.value,
            "connection": subject.connection,
            "environment": subject.environment,
        },
        "parse_error": analysis.error,
        "statements": [facts_json(f) for f in analysis.statements],
    }
