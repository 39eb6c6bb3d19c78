"""``dbward policy check`` and ``dbward policy test``: the policy file, before it is live."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from dbward.errors import DbwardError
from dbward.identity.models import IdentityKind
from dbward.policy.decide import Decision, Subject, decide
from dbward.policy.explain import explain
from dbward.policy.loader import default_policy, load_policy
from dbward.policy.masking import preview
from dbward.policy.model import Policy
from dbward.sql.facts import Analysis
from dbward.sql.session import DEFAULT_SEARCH_PATH, SqlSession, parse_search_path

out = Console()


@click.group("policy")
def policy() -> None:
    """Check a policy file and try statements against it."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def policy_check(file: Path) -> None:
    """Validate FILE; errors name the line."""
    from dbward.cli.common import _fail

    try:
        loaded = load_policy(file)
    except DbwardError as exc:
        _fail(exc)
        return
    guardrails = loaded.guardrails
    active = [g for g in _guardrail_names() if g not in {d.value for d in guardrails.disable}]
    out.print(
        f"{file}: valid. {len(loaded.rules)} rule(s), default {loaded.default.value}; "
        f"guardrails ({', '.join(active) or 'none'}) in environments: "
        f"{', '.join(guardrails.environments) or 'none'}"
    )


def _guardrail_names() -> list[str]:
    from dbward.policy.model import Guardrail

    return [g.value for g in Guardrail]


@policy.command("test")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="dbward.yaml, for the connection's environment and the policy file",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="policy file (default: the config's, else the built-in guardrails only)",
)
@click.option("--connection", required=True, help="connection name as clients use it")
@click.option("--environment", default=None, help="override the connection's environment")
@click.option("--identity", required=True, help="identity name (email, token name)")
@click.option("--group", "groups", multiple=True, help="group membership (repeatable)")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in IdentityKind]),
    default=IdentityKind.HUMAN.value,
    show_default=True,
)
@click.option("--search-path", default=None, help='e.g. "app, public" (default "$user", public)')
@click.option(
    "--expect",
    type=click.Choice(["allow", "deny", "review"]),
    default=None,
    help="exit with status 1 unless the decision is this (for CI)",
)
@click.option("--json", "as_json", is_flag=True, help="print the decision and facts as JSON")
@click.argument("sql")
def policy_test(
    config_path: Path | None,
    policy_path: Path | None,
    connection: str,
    environment: str | None,
    identity: str,
    groups: tuple[str, ...],
    kind: str,
    search_path: str | None,
    expect: str | None,
    as_json: bool,
    sql: str,
) -> None:
    """Show the decision on SQL ("-" reads it from stdin), the rule and the facts behind it."""
    from dbward.cli.common import _config, _fail

    try:
        config = _config(config_path)
        settings = config.connections.get(connection)
        if environment is None:
            if settings is None:
                raise DbwardError(
                    f"no connection named {connection!r} in the configuration; "
                    "give --config, or --environment to name its environment"
                )
            environment = settings.environment
        path = policy_path or config.policy.file
        loaded: Policy = load_policy(path) if path is not None else default_policy()
    except DbwardError as exc:
        _fail(exc)
        return
    text = sys.stdin.read() if sql == "-" else sql
    subject = Subject(identity, groups, IdentityKind(kind), connection, environment)
    if settings is not None and settings.engine == "mysql":
        from dbward.sql.mysql_analyze import analyze_mysql

        analysis = analyze_mysql(text, database=settings.database)
    else:
        path_setting = parse_search_path(search_path) if search_path else DEFAULT_SEARCH_PATH
        analysis = SqlSession(path_setting).analyze(text)
    decision = decide(loaded, subject, analysis)
    masking = preview(loaded, subject, analysis)
    if as_json:
        click.echo(
            json.dumps({**explain(subject, decision, analysis), "masking": masking}, indent=2)
        )
    else:
        _print(subject, decision, analysis, str(path) if path else "built-in guardrails")
        _print_masking(masking)
    if expect is not None and decision.action.value != expect:
        raise SystemExit(1)


_COLOURS = {"allow": "green", "deny": "red", "review": "yellow"}


def _print_masking(masking: dict[str, Any]) -> None:
    if not masking["enabled"]:
        out.print("  masking: off (policy masking.enabled is false)")
        return
    grants = ", ".join(masking["grants"]) or "none"
    out.print(f"  masking: on; unmask grants that apply: {grants}")
    by_strategy: dict[str, list[str]] = {}
    for entity, strategy in masking["entities"].items():
        by_strategy.setdefault(strategy, []).append(entity)
    for strategy, entities in sorted(by_strategy.items()):
        out.print(f"      {strategy}: {', '.join(entities)}", soft_wrap=True)
    for column, what in masking["columns"].items():
        out.print(f"      column {column}: {what}", soft_wrap=True)


def _print(subject: Subject, decision: Decision, analysis: Analysis, source: str) -> None:
    action = decision.action.value
    out.print(
        f"[bold {_COLOURS[action]}]{action.upper()}[/]  rule [bold]{decision.rule}[/]  ({source})"
    )
    if decision.message:
        out.print(f"  why:  {decision.message}")
    if decision.hint:
        out.print(f"  what to do: {decision.hint}")
    if decision.max_rows is not None:
        out.print(f"  row limit: {decision.max_rows}")
    out.print(
        f"  who:  {subject.identity} ({subject.identity_kind.value}; groups: "
        f"{', '.join(subject.groups) or '-'}) on {subject.connection} ({subject.environment})"
    )
    if analysis.error is not None:
        out.print(f"  parse error: {analysis.error}")
        return
    for index, facts in enumerate(analysis.statements):
        marker = "  <- decided" if decision.statement == index and not decision.allowed else ""
        out.print(f"  statement {index + 1}: [bold]{facts.command}[/] ({facts.kind.value}){marker}")
        rows = {
            "reads": ", ".join(str(r) for r in facts.reads),
            "writes": ", ".join(str(r) for r in facts.writes),
            "columns": ", ".join(str(c) for c in facts.columns),
            "where": "" if facts.where is None else ("effective" if facts.where else "none"),
            "functions": ", ".join(facts.functions),
            "risks": ", ".join(sorted(r.value for r in facts.risks)),
        }
        for name, value in rows.items():
            if value:
                out.print(f"      {name}: {value}", soft_wrap=True)
