"""The policy file's model: rules, guardrail settings, matches. Frozen, validated.

See ``docs/policy.md`` for the file format, matching order and precedence.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from dbward.identity.models import IdentityKind
from dbward.masking.entities import Entity, Strategy
from dbward.sql.facts import Risk, StatementKind


class Action(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.REVIEW: 1, Action.DENY: 2}


class Guardrail(StrEnum):
    DESTRUCTIVE_DDL = "destructive-ddl"
    UNBOUNDED_WRITE = "unbounded-write"
    DYNAMIC_SQL = "dynamic-sql"
    SERVER_ACCESS = "server-access"
    PRIVILEGE_ESCALATION = "privilege-escalation"


def _as_tuple(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (value,)
    return value


def _upper(value: Any) -> Any:
    value = _as_tuple(value)
    return tuple(str(v).upper() for v in value) if isinstance(value, (list, tuple)) else value


Names = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
Commands = Annotated[tuple[str, ...], BeforeValidator(_upper)]
Kinds = Annotated[tuple[StatementKind, ...], BeforeValidator(_as_tuple)]
IdentityKinds = Annotated[tuple[IdentityKind, ...], BeforeValidator(_as_tuple)]
Risks = Annotated[tuple[Risk, ...], BeforeValidator(_as_tuple)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    """Conditions that must all hold; each list holds if any of its values does."""

    identity: Names = ()
    group: Names = ()
    identity_kind: IdentityKinds = ()
    connection: Names = ()
    environment: Names = ()
    kind: Kinds = ()
    command: Commands = ()
    table: Names = ()
    reads: Names = ()
    writes: Names = ()
    column: Names = ()
    function: Names = ()
    risk: Risks = ()

    @property
    def statement_keys(self) -> bool:
        """Whether any condition is about the statement (not only about who and where)."""
        return bool(
            self.kind
            or self.command
            or self.table
            or self.reads
            or self.writes
            or self.column
            or self.function
            or self.risk
        )


class Approvers(_Model):
    group: Names = Field(min_length=1)
    quorum: int = Field(default=1, ge=1, le=20)
    reason_required: bool = Field(
        default=False, description="an approver must say why (approving or rejecting)"
    )
    expires: float | None = Field(
        default=None,
        gt=0,
        description="seconds the request stays open (default: approvals.request_ttl)",
    )


class Limits(_Model):
    max_rows: int | None = Field(default=None, ge=0)


_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Rule(_Model):
    name: str
    description: str = ""
    match: Match = Match()
    unless: Match | None = None
    action: Action
    message: str | None = None
    approvers: Approvers | None = None
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if not _RULE_NAME.match(self.name):
            raise ValueError(
                f"rule name {self.name!r}: use letters, digits, '-', '_' or '.' (at most 100)"
            )
        if self.action is Action.REVIEW and self.approvers is None:
            raise ValueError(f"rule {self.name!r}: action review needs approvers (group, quorum)")
        if self.action is not Action.REVIEW and self.approvers is not None:
            raise ValueError(f"rule {self.name!r}: approvers only apply to action review")
        if self.action is not Action.ALLOW and self.limits.max_rows is not None:
            raise ValueError(f"rule {self.name!r}: limits only apply to action allow")
        return self


class Guardrails(_Model):
    environments: Names = ("production",)
    disable: Annotated[tuple[Guardrail, ...], BeforeValidator(_as_tuple)] = ()
    exempt: Match | None = None


Entities = Annotated[tuple[Entity, ...], BeforeValidator(_as_tuple)]


class Unmask(_Model):
    """Who may see which PII unmasked: entity types, columns, or both."""

    name: str
    match: Match
    entities: Entities = ()
    columns: Names = ()

    @model_validator(mode="after")
    def _consistent(self) -> Unmask:
        if self.match.statement_keys:
            raise ValueError(
                f"unmask {self.name!r}: match only on who and where (identity, group, "
                "identity_kind, connection, environment)"
            )
        if not self.entities and not self.columns:
            raise ValueError(f"unmask {self.name!r}: name entities, columns, or both")
        return self


class ColumnClass(_Model):
    """A column classified by hand: what it holds overrides what its name suggests."""

    column: str = Field(description="schema.table.column pattern; 'users.email' means any schema")
    holds: Entity | Literal["free_text", "nothing"]
    strategy: Strategy | None = None


class Masking(_Model):
    enabled: bool = True
    strategies: dict[Entity, Strategy] = {}
    columns: tuple[ColumnClass, ...] = ()
    unmask: tuple[Unmask, ...] = ()


class AuditSettings(_Model):
    statement_literals: Literal["placeholders", "keep"] = Field(
        default="placeholders",
        description="placeholders: statement text is stored with its literals replaced by $n",
    )


class Policy(_Model):
    version: Literal[1] = 1
    default: Action = Action.ALLOW
    guardrails: Guardrails = Guardrails()
    approvers: Approvers | None = Field(
        default=None, description="who approves when the default action is review"
    )
    rules: tuple[Rule, ...] = ()
    masking: Masking = Masking()
    audit: AuditSettings = AuditSettings()

    @model_validator(mode="after")
    def _default_approvers(self) -> Policy:
        if self.default is Action.REVIEW and self.approvers is None:
            raise ValueError("default: review needs top-level approvers (group, quorum)")
        return self

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; names must be unique")
            if rule.name.startswith("guardrail") or rule.name == "default":
                raise ValueError(f"rule name {rule.name!r} is reserved for dbward's own rules")
            seen.add(rule.name)
        return rules
