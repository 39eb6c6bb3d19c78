"""The masking rules that hold for one subject: what it sees unmasked, and how the rest is
masked. Pure; computed once per session (and again after a policy reload).

An unmask grant applies to an agent only when it says so: its match names the
agent identity kind or the agent's own identity. A grant to a group does not
reach the agents that act for it.
"""

from __future__ import annotations

from typing import Any

from dbward.identity.models import IdentityKind
from dbward.masking.entities import DEFAULT_STRATEGIES, Entity
from dbward.masking.plan import ColumnRule, Field, MaskingRules, Origin, plan_column
from dbward.policy.decide import Subject
from dbward.policy.matching import matches_subject
from dbward.policy.model import Policy, Unmask
from dbward.sql.facts import Analysis


def column_pattern(pattern: str) -> str:
    """``email`` -> ``*.*.email``; ``users.email`` -> ``*.users.email``."""
    dots = pattern.count(".")
    return "*." * max(2 - dots, 0) + pattern


def _applies(grant: Unmask, subject: Subject) -> bool:
    if not matches_subject(grant.match, subject):
        return False
    if subject.identity_kind is IdentityKind.AGENT:
        return IdentityKind.AGENT in grant.match.identity_kind or bool(grant.match.identity)
    return True


def masking_rules(policy: Policy, subject: Subject) -> MaskingRules:
    masking = policy.masking
    entities: set[Entity] = set()
    columns: list[str] = []
    for grant in masking.unmask:
        if _applies(grant, subject):
            entities.update(grant.entities)
            columns.extend(column_pattern(c) for c in grant.columns)
    manual = tuple(
        ColumnRule(
            column_pattern(c.column),
            c.holds if isinstance(c.holds, Entity) else None,
            scan=c.holds == "free_text",
            strategy=c.strategy,
        )
        for c in masking.columns
    )
    return MaskingRules(
        enabled=masking.enabled,
        strategies={**DEFAULT_STRATEGIES, **masking.strategies},
        unmasked_entities=frozenset(entities),
        unmasked_columns=tuple(columns),
        columns=manual,
    )


def unmask_grants(policy: Policy, subject: Subject) -> list[str]:
    """The names of the unmask grants that apply to ``subject`` (for ``policy test``)."""
    return [grant.name for grant in policy.masking.unmask if _applies(grant, subject)]


def preview(policy: Policy, subject: Subject, analysis: Analysis) -> dict[str, Any]:
    """What masking would do for ``subject`` on the columns the statement names.

    Columns are judged by name here; at run time their types count too (a
    text column is also scanned for PII inside it) and ``SELECT *`` is
    judged column by column from the result's description.
    """
    rules = masking_rules(policy, subject)
    entities = {
        e.value: "unmasked" if e in rules.unmasked_entities else rules.strategies[e].value
        for e in Entity
    }
    columns: dict[str, str] = {}
    for facts in analysis.statements:
        for column in facts.columns:
            relation = column.relation
            origin = (
                Origin(relation.schema or "public", relation.name, column.name)
                if relation
                else None
            )
            planned = plan_column(0, Field(column.name), origin, rules, {})
            label = origin.label if origin is not None else column.name
            if not rules.enabled:
                columns[label] = "not masked (masking is off)"
            elif planned is None:
                columns[label] = "unmasked (grant)"
            elif planned.entity is not None:
                assert planned.strategy is not None
                columns[label] = f"{planned.entity.value}: {planned.strategy.value}"
            else:
                columns[label] = "scanned for PII inside (text, JSON)"
    return {
        "enabled": rules.enabled,
        "grants": unmask_grants(policy, subject),
        "entities": entities,
        "columns": columns,
    }
