"""The built-in guardrails: what production refuses with no policy written at all.

Each guardrail is a predicate over one statement's facts plus the words the
client is told: what was refused and what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dbward.policy.model import Guardrail
from dbward.sql.facts import Risk, StatementFacts


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    guardrail: Guardrail
    applies: Callable[[StatementFacts], bool]
    message: Callable[[StatementFacts], str]
    hint: str

    @property
    def rule(self) -> str:
        return f"guardrail:{self.guardrail.value}"


_SERVER_RISKS = frozenset({Risk.SERVER_FILE_ACCESS, Risk.PROGRAM_EXECUTION, Risk.LARGE_OBJECT})


def _targets(facts: StatementFacts) -> str:
    names = [str(r) for r in facts.writes if not r.temporary]
    return ", ".join(names[:5]) if names else "it"


CHECKS: tuple[GuardrailCheck, ...] = (
    GuardrailCheck(
        Guardrail.DESTRUCTIVE_DDL,
        lambda f: Risk.DESTRUCTIVE_DDL in f.risks,
        lambda f: f"{f.command} of {_targets(f)} destroys data and is not allowed here",
        "run destructive changes through a reviewed migration, or ask for approval",
    ),
    GuardrailCheck(
        Guardrail.UNBOUNDED_WRITE,
        lambda f: Risk.UNBOUNDED_WRITE in f.risks,
        lambda f: (
            f"{f.command} would change every row of {_targets(f)}: "
            "it has no WHERE clause that limits the rows"
        ),
        "add a WHERE clause that names the rows to change (a constant or a tautology "
        "such as WHERE 1=1 does not count)",
    ),
    GuardrailCheck(
        Guardrail.DYNAMIC_SQL,
        lambda f: Risk.DYNAMIC_SQL in f.risks,
        lambda f: (
            f"{f.command} runs SQL that dbward cannot see before it runs "
            "(DO blocks, dynamic-SQL functions, EXECUTE of an unknown prepared statement)"
        ),
        "send the statements themselves instead of code that builds them",
    ),
    GuardrailCheck(
        Guardrail.SERVER_ACCESS,
        lambda f: bool(f.risks & _SERVER_RISKS),
        lambda f: (
            f"{f.command} reaches the database server's files or programs "
            f"({', '.join(sorted(r.value for r in f.risks & _SERVER_RISKS))})"
        ),
        "use COPY ... TO STDOUT / FROM STDIN to move data through your own client",
    ),
    GuardrailCheck(
        Guardrail.PRIVILEGE_ESCALATION,
        lambda f: Risk.PRIVILEGE_ESCALATION in f.risks,
        lambda f: (
            f"{f.command} would confer superuser, BYPASSRLS, replication or server-file privileges"
        ),
        "ask a database administrator to change roles through a reviewed change",
    ),
)
