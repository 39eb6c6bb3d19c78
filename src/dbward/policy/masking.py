"""The masking rules that hold for one subject: what it sees unmasked, and how the rest is
masked. Pure; computed once per session (and again after a policy reload).

An unmask grant applies to an agent only when it says so: its match names the
agent identity kind or the agent's own identity. A grant to a group does not
reach the agents that act for it.
"""

from __future__ import annotations

from dbward.identity.models import IdentityKind
from dbward.masking.entities import DEFAULT_STRATEGIES, Entity
from dbward.masking.plan import ColumnRule, MaskingRules
from dbward.policy.decide import Subject
from dbward.policy.matching import matches_subject
from dbward.policy.model import Policy, Unmask


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
