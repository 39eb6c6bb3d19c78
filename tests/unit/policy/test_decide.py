"""The policy engine: matching, order and precedence, as docs/policy.md states them."""

from __future__ import annotations

import pytest

from dbward.identity.models import IdentityKind
from dbward.policy.decide import Decision, Subject, decide
from dbward.policy.loader import PolicyError, default_policy, parse_policy
from dbward.policy.model import Action
from dbward.sql.cache import AnalysisCache
from dbward.sql.session import SqlSession

ALICE = Subject("alice@example.com", ("analysts",), IdentityKind.HUMAN, "app", "production")
DBA = Subject("dora@example.com", ("dba",), IdentityKind.HUMAN, "app", "production")
BOT = Subject("report-bot", ("reports",), IdentityKind.AGENT, "app", "production")
STAGING = Subject("alice@example.com", ("analysts",), IdentityKind.HUMAN, "app", "staging")


def run(policy_text: str | None, subject: Subject, sql: str) -> Decision:
    policy = parse_policy(policy_text) if policy_text is not None else default_policy()
    return decide(policy, subject, SqlSession(cache=AnalysisCache()).analyze(sql))


def test_most_restrictive_matching_rule_wins_whatever_the_order() -> None:
    policy = """
version: 1
rules:
  - {name: reads-ok, match: {kind: read}, action: allow}
  - {name: salaries-reviewed, match: {table: hr.salaries}, action: review,
     approvers: {group: hr}}
  - {name: no-salaries-for-agents, match: {table: hr.salaries, identity_kind: agent},
     action: deny}
"""
    assert run(policy, ALICE, "SELECT * FROM hr.salaries").rule == "salaries-reviewed"
    decision = run(policy, BOT, "SELECT * FROM hr.salaries")
    assert (decision.action, decision.rule) == (Action.DENY, "no-salaries-for-agents")
    assert run(policy, BOT, "SELECT * FROM orders").rule == "reads-ok"


def test_between_rules_of_one_action_the_first_in_the_file_names_the_decision() -> None:
    policy = """
version: 1
rules:
  - {name: first, match: {kind: write}, action: deny, message: first says no}
  - {name: second, match: {table: orders}, action: deny, message: second says no}
"""
    decision = run(policy, ALICE, "UPDATE orders SET a = 1 WHERE id = 2")
    assert (decision.rule, decision.message) == ("first", "first says no")


def test_guardrails_come_first_and_rules_cannot_allow_past_them() -> None:
    policy = """
version: 1
rules:
  - {name: dba-anything, match: {group: dba}, action: allow}
"""
    assert run(policy, DBA, "TRUNCATE orders").rule == "guardrail:destructive-ddl"


def test_exempt_and_disable_switch_guardrails_off_for_some() -> None:
    policy = """
version: 1
guardrails:
  exempt: {group: dba}
  disable: [dynamic-sql]
"""
    assert run(policy, DBA, "TRUNCATE orders").action is Action.ALLOW
    assert run(policy, ALICE, "TRUNCATE orders").action is Action.DENY
    assert run(policy, ALICE, "DO $$ BEGIN END $$").action is Action.ALLOW


def test_guardrails_apply_only_in_their_environments() -> None:
    assert run(None, STAGING, "DROP TABLE orders").action is Action.ALLOW
    policy = "version: 1\nguardrails: {environments: [staging, production]}\n"
    assert run(policy, STAGING, "DROP TABLE orders").action is Action.DENY


def test_unparsable_is_denied_even_with_guardrails_off_and_default_allow() -> None:
    policy = "version: 1\nguardrails: {environments: []}\n"
    decision = run(policy, STAGING, "SELEC 1")
    assert (decision.action, decision.rule) == (Action.DENY, "guardrail:unparsable")
    assert "syntax error" in decision.message


def test_default_applies_when_no_rule_matches() -> None:
    policy = """
version: 1
default: deny
rules:
  - {name: reads, match: {kind: [read, transaction, session]}, action: allow}
"""
    assert run(policy, ALICE, "SELECT 1").rule == "reads"
    decision = run(policy, ALICE, "INSERT INTO t VALUES (1)")
    assert (decision.action, decision.rule) == (Action.DENY, "default")
    assert decision.message


def test_unless_excludes_and_the_most_restrictive_part_of_a_string_decides() -> None:
    policy = """
version: 1
rules:
  - name: bulk-cap
    match: {table: public.customers, kind: read}
    unless: {group: support-leads}
    action: allow
    limits: {max_rows: 100}
  - {name: no-agent-writes, match: {identity_kind: agent, kind: write}, action: deny}
"""
    assert run(policy, ALICE, "SELECT * FROM customers").max_rows == 100
    lead = Subject("lee", ("support-leads",), IdentityKind.HUMAN, "app", "production")
    assert run(policy, lead, "SELECT * FROM customers").max_rows is None
    decision = run(policy, BOT, "SELECT * FROM customers; INSERT INTO t VALUES (1)")
    assert (decision.action, decision.rule, decision.statement) == (
        Action.DENY,
        "no-agent-writes",
        1,
    )


def test_review_names_approvers_and_says_approval_is_required() -> None:
    policy = """
version: 1
rules:
  - {name: ddl-review, match: {kind: ddl}, action: review,
     approvers: {group: [dba, sre], quorum: 2}}
"""
    decision = run(policy, ALICE, "CREATE TABLE t (a int)")
    assert decision.action is Action.REVIEW
    assert decision.message.startswith("approval required")
    assert (decision.approver_groups, decision.quorum) == (("dba", "sre"), 2)


@pytest.mark.parametrize(
    ("pattern", "sql", "matches"),
    [
        ("public.orders", "SELECT * FROM orders", True),
        ("orders", "SELECT * FROM sales.orders", True),
        ("sales.*", "SELECT * FROM sales.orders", True),
        ("sales.*", "SELECT * FROM orders", False),
        ("*.orders", "SELECT * FROM archive.orders", True),
    ],
)
def test_table_patterns(pattern: str, sql: str, matches: bool) -> None:
    policy = f"version: 1\nrules:\n  - {{name: r, match: {{table: '{pattern}'}}, action: deny}}\n"
    assert (run(policy, STAGING, sql).rule == "r") is matches


def test_identity_patterns_fold_case_and_columns_match_qualified() -> None:
    policy = """
version: 1
rules:
  - {name: contractors, match: {identity: '*@CONTRACTOR.example'}, action: deny}
  - {name: ssn, match: {column: '*.ssn'}, action: deny}
"""
    contractor = Subject("bo@contractor.example", (), IdentityKind.HUMAN, "app", "staging")
    assert run(policy, contractor, "SELECT 1").rule == "contractors"
    assert run(policy, STAGING, "SELECT p.ssn FROM people p").rule == "ssn"
    assert run(policy, STAGING, "SELECT name FROM people").rule == "default"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("version: 1\nrules:\n  - name: x\n    action: maybe\n", 4, "action"),
        ("version: 1\nrules:\n  - name: x\n    action: review\n", 3, "approvers"),
        (
            "version: 1\nrules:\n  - {name: a, action: deny}\n  - {name: a, action: deny}\n",
            2,
            "two",
        ),
        (
            "version: 1\nrules:\n  - name: x\n    action: deny\n    match: {colour: red}\n",
            5,
            "colour",
        ),
        ("version: 2\n", 1, "version"),
    ],
)
def test_errors_point_at_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert f"p.yaml:{line}:" in caught.value.message
    assert words in caught.value.message
