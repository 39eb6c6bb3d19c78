"""``dbward policy check`` and ``dbward policy test`` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dbward.cli.main import cli
from dbward.cli.policy import policy

cli.add_command(policy)

POLICY = """\
version: 1
rules:
  - name: agents-read-only
    match: {identity_kind: agent, kind: [write, ddl]}
    action: deny
    message: agents may only read
  - name: prod-ddl
    match: {environment: production, kind: ddl}
    action: review
    approvers: {group: [dba], quorum: 2}
"""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def words(output: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(output.split())


def test_check_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    code, output = run("policy", "check", str(path))
    assert code == 0
    assert "valid" in output
    assert "2 rule(s)" in output


def test_check_names_the_line_of_an_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("kind: ddl}", "kind: dll}"))
    code, output = run("policy", "check", str(path))
    assert code == 2
    assert f"{path}:8:" in output.replace("\n", "")
    assert "dll" in output or "Input should be" in output


def test_check_reports_bad_yaml_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules:\n  - name: [unclosed\n")
    code, output = run("policy", "check", str(path))
    assert code == 2
    assert "not valid YAML" in words(output)


def test_test_prints_the_decision_rule_and_facts() -> None:
    code, output = run(
        "policy", "test", "--connection", "app", "--environment", "production",
        "--identity", "alice@example.com", "SELECT 1; DELETE FROM orders WHERE 1=1",
    )  # fmt: skip
    assert code == 0
    assert "DENY" in output
    assert "guardrail:unbounded-write" in output
    assert "public.orders" in output
    assert "statement 2: DELETE" in output


def test_test_json_and_expect(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    args = ["policy", "test", "--policy", str(path), "--connection", "app",
            "--environment", "production", "--identity", "bot", "--kind", "agent",
            "--json"]  # fmt: skip
    code, output = run(*args, "UPDATE t SET a = 1 WHERE id = 2")
    assert code == 0
    data = json.loads(output)
    assert data["decision"] == "deny"
    assert data["rule"] == "agents-read-only"
    assert data["message"] == "agents may only read"
    assert data["statements"][0]["writes"] == ["public.t"]
    assert data["statements"][0]["where"] is True
    code, output = run(*args, "--expect", "allow", "CREATE TABLE x (a int)")
    assert code == 1
    data = json.loads(output)
    assert data["decision"] == "deny"  # agents: deny outranks the review rule
    code, output = run(*args[:-3], "--identity", "alice", "--group", "dba", "--json",
                       "--expect", "review", "CREATE TABLE x (a int)")  # fmt: skip
    assert code == 0
    data = json.loads(output)
    assert data["approvers"] == {"groups": ["dba"], "quorum": 2}


def test_test_needs_an_environment_for_an_unknown_connection(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["policy", "test", "--connection", "nope", "--identity", "a", "SELECT 1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "no connection named 'nope'" in words(result.output)


def test_check_refuses_an_empty_file(tmp_path: Path) -> None:
    # a half-written file must not silently replace every rule with none
    path = tmp_path / "policy.yaml"
    path.write_text("")
    code, output = run("policy", "check", str(path))
    assert code == 2
    assert "the policy file is empty" in words(output)


def test_test_reads_a_mysql_connection_as_mysql(tmp_path: Path) -> None:
    """One policy file, two engines: a MySQL connection's statements are read with MySQL's
    grammar, and unqualified tables belong to its database."""
    config = tmp_path / "dbward.yaml"
    config.write_text(
        "state_dir: " + str(tmp_path / "state") + "\n"
        "connections:\n"
        "  shop:\n"
        "    engine: mysql\n"
        "    environment: production\n"
        "    database: shopdb\n"
        "    credentials: {user: u}\n"
    )
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    args = ["policy", "test", "--config", str(config), "--policy", str(policy_file),
            "--connection", "shop", "--identity", "bot", "--kind", "agent", "--json"]  # fmt: skip
    code, output = run(*args, "UPDATE `orders` SET total = 1 WHERE id = 2 LIMIT 1")
    assert code == 0, output
    data = json.loads(output)
    assert data["decision"] == "deny"
    assert data["rule"] == "agents-read-only"
    assert data["statements"][0]["writes"] == ["shopdb.orders"]
    code, output = run(*args, "DELETE FROM orders")
    data = json.loads(output)
    assert data["rule"] in ("agents-read-only", "guardrail:unbounded-write")
    assert data["decision"] == "deny"
