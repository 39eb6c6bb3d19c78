"""Golden fixtures for the built-in guardrails (docs/policy.md).

Every YAML file under ``tests/fixtures/guardrails/`` holds a list of cases::

    - sql: "DROP TABLE users"
      expect: deny                       # allow | deny
      rule: guardrail:destructive-ddl    # optional: the rule that must decide
      environment: production            # optional, default production
      before: ["CREATE TEMP TABLE scratch (id int)"]  # optional: applied to the session first
      why: one short line saying what this case checks

Each case runs against :func:`default_policy` (only the built-in guardrails, no
rules). With no rules, an allow can only come from the policy's default, so an
``allow`` case without a ``rule`` must be decided by ``"default"``.

Each case gets a session with its own analysis cache, so that no case depends
on which cases ran before it; cases that check that a statement of the same
shape seen earlier does not decide a later one seed the cache with ``before``
(see ``same_shape.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbward.identity.models import IdentityKind
from dbward.policy.decide import Subject, decide
from dbward.policy.loader import default_policy
from dbward.sql.cache import AnalysisCache
from dbward.sql.session import SqlSession
from tests.golden import case_id, key_problems, load_cases

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "guardrails"

KEYS = frozenset({"sql", "expect", "rule", "environment", "before", "why"})
REQUIRED = frozenset({"sql", "expect", "why"})
EXPECTS = frozenset({"allow", "deny"})
RULES = frozenset(
    {
        "default",
        "guardrail:unparsable",
        "guardrail:destructive-ddl",
        "guardrail:unbounded-write",
        "guardrail:dynamic-sql",
        "guardrail:server-access",
        "guardrail:privilege-escalation",
    }
)
UNPARSABLE = "guardrail:unparsable"
MIN_CASES = 220


def _params() -> list[Any]:
    params = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for index, case in enumerate(load_cases(path)):
            sql = case.get("sql") if isinstance(case, dict) else case
            params.append(pytest.param(case, id=case_id(path.stem, index, sql)))
    return params


CASES = _params()


def _subject(environment: str) -> Subject:
    return Subject(
        identity="alice@example.com",
        groups=(),
        identity_kind=IdentityKind.HUMAN,
        connection="main",
        environment=environment,
    )


def _problems(case: object) -> list[str]:
    out = key_problems(case, REQUIRED, KEYS)
    if not isinstance(case, dict):
        return out
    if not isinstance(case.get("sql"), str):
        out.append("sql must be a string")
    if case.get("expect") not in EXPECTS:
        out.append(f"expect must be one of {sorted(EXPECTS)}")
    if "rule" in case and case["rule"] not in RULES:
        out.append(f"unknown rule {case['rule']!r}")
    if case.get("expect") == "allow" and case.get("rule", "default") != "default":
        out.append("with only the guardrails, an allow is always decided by 'default'")
    if case.get("expect") == "deny" and case.get("rule") == "default":
        out.append("the default policy's default action is allow, never deny")
    before = case.get("before", [])
    if not isinstance(before, list) or not all(isinstance(b, str) for b in before):
        out.append("before must be a list of strings")
    if not isinstance(case.get("environment", "production"), str):
        out.append("environment must be a string")
    if not isinstance(case.get("why"), str) or not case.get("why", "").strip():
        out.append("why must be a non-empty line")
    return out


def test_fixture_files_are_well_formed() -> None:
    problems = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for index, case in enumerate(load_cases(path)):
            problems += [f"{path.name}[{index}]: {p}" for p in _problems(case)]
    assert not problems, "\n".join(problems)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} golden cases, want {MIN_CASES}"


def test_a_session_uses_the_cache_it_is_given() -> None:
    """The golden cases rely on this to be independent of each other's order."""
    cache = AnalysisCache()
    SqlSession(cache=cache).analyze("SELECT 1")
    assert len(cache) == 1, "an empty AnalysisCache was passed but the shared cache was used"


@pytest.fixture(scope="module")
def policy() -> Any:
    return default_policy()


@pytest.mark.parametrize("case", CASES)
def test_golden_guardrail(case: dict[str, Any], policy: Any) -> None:
    assert not _problems(case), _problems(case)
    session = SqlSession(cache=AnalysisCache())
    for text in case.get("before", []):
        prepared = session.analyze(text)
        assert prepared.error is None, f"fixture bug: before statement {text!r} does not parse"
        session.apply(prepared)

    analysis = session.analyze(case["sql"])
    decision = decide(policy, _subject(case.get("environment", "production")), analysis)

    expect = case["expect"]
    rule = case.get("rule", "default" if expect == "allow" else None)
    seen = f"{decision.action.value} by {decision.rule!r}: {decision.message!r}"
    assert decision.action.value == expect, f"want {expect}, got {seen} ({case['why']})"
    if rule is not None:
        assert decision.rule == rule, f"want rule {rule!r}, got {seen} ({case['why']})"
    if rule == UNPARSABLE:
        assert analysis.error, "an unparsable statement carries the parser's message"
    elif rule is not None:
        assert analysis.error is None, f"parses with PostgreSQL's grammar, got {analysis.error!r}"
    if expect == "deny":
        assert decision.message, "a denial tells the client why"
        assert len(decision.message) > 20, f"a denial says what to do, got {decision.message!r}"
