"""The ``dbward`` command: serve, demo, token; audit and policy live in their own modules."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dbward.audit.events import EventKind
from dbward.cli.approvals import access, approvals
from dbward.cli.audit import audit
from dbward.cli.common import _config, _fail, config_option, console
from dbward.cli.evidence import evidence
from dbward.cli.login import connect, login, logout
from dbward.cli.policy import policy
from dbward.errors import DbwardError
from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore, format_time, parse_ttl


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(package_name="dbward")
def cli() -> None:
    """dbward: identity-aware access proxy for databases."""


def _metrics_folder(state_dir: Path) -> None:
    """Where every worker keeps its Prometheus counts (``dbward.metrics``): emptied at each
    start, and named before prometheus_client is imported (it reads the name then)."""
    folder = state_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@cli.command()
@config_option
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="processes sharing the ports (overrides the config's workers)",
)
def serve(config_path: Path | None, log_level: str, workers: int | None) -> None:
    """Run the proxy until SIGTERM/SIGINT, then drain connections and stop."""
    _setup_logging(log_level)
    try:
        config = _config(config_path)
    except DbwardError as exc:
        _fail(exc)
        return
    if workers is not None:
        config = config.model_copy(update={"workers": workers})
    _metrics_folder(config.state_dir)
    from dbward.proxy.workers import run

    try:
        status = run(config)
    except DbwardError as exc:
        _fail(exc)
        return
    raise SystemExit(status)


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".dbward-demo"),
    show_default=True,
)
@click.option("--port", type=int, default=6432, show_default=True)
@click.option("--check", is_flag=True, help="run one query through dbward, print it, and stop")
@click.option("--log-level", default="warning", show_default=True)
def demo(state_dir: Path, port: int, check: bool, log_level: str) -> None:
    """Start a seeded embedded PostgreSQL with dbward in front of it."""
    _setup_logging(log_level)
    from dbward.demo.run import run_demo

    try:
        run_demo(state_dir.resolve(), port=port, check=check, console=console)
    except DbwardError as exc:
        _fail(exc)


@cli.group()
def token() -> None:
    """Service and agent tokens: create, list, revoke."""


def _tokens(config_path: Path | None) -> TokenStore:
    try:
        return TokenStore(_config(config_path).tokens_path)
    except DbwardError as exc:
        _fail(exc)
        raise


def _record_admin(config_path: Path | None, kind: EventKind, data: dict[str, Any]) -> None:
    """Chain an operator's action into the audit trail (never a secret)."""
    from dbward.audit.admin import record_admin
    from dbward.stores import open_audit_store

    config = _config(config_path)
    store = open_audit_store(config)
    try:
        record_admin(store, config.state_dir, config.audit.instance, kind, data)
    finally:
        store.close()


@token.command("create")
@config_option
@click.option("--name", required=True, help="the identity's name; clients connect as this user")
@click.option("--group", "groups", multiple=True, help="group membership (repeatable)")
@click.option(
    "--kind", type=click.Choice(["service", "agent"]), default="service", show_default=True
)
@click.option("--ttl", default="30d", show_default=True, help="lifetime: 30d, 12h, 90m, never")
def token_create(
    config_path: Path | None, name: str, groups: tuple[str, ...], kind: str, ttl: str
) -> None:
    """Create a token; it is shown once and stored only as a hash."""
    try:
        ttl_seconds = None if ttl == "never" else parse_ttl(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    with _tokens(config_path) as store:
        try:
            secret, record = store.create(name, IdentityKind(kind), groups, ttl_seconds)
        except DbwardError as exc:
            _fail(exc)
            return
    expires = format_time(record.expires_at) if record.expires_at else "never"
    _record_admin(
        config_path,
        EventKind.TOKEN_CREATED,
        {"token": record.id, "name": name, "kind": kind, "groups": list(record.groups),
         "expires": record.expires_at},
    )  # fmt: skip
    console.print(
        f"created {kind} token [bold]{record.id}[/bold] for [bold]{name}[/bold] "
        f"(groups: {', '.join(record.groups) or '-'}; expires {expires})"
    )
    console.print("it is shown only this once; connect with it as the password:")
    click.echo(secret)


@token.command("list")
@config_option
@click.option("--all", "include_revoked", is_flag=True, help="include revoked tokens")
def token_list(config_path: Path | None, include_revoked: bool) -> None:
    """List tokens (never their secrets)."""
    with _tokens(config_path) as store:
        records = store.list(include_revoked=include_revoked)
    table = Table("id", "name", "kind", "groups", "created", "expires", "revoked")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            r.kind.value,
            ",".join(r.groups),
            format_time(r.created_at),
            format_time(r.expires_at) if r.expires_at else "never",
            format_time(r.revoked_at) if r.revoked_at else "",
        )
    Console().print(table)


@token.command("revoke")
@config_option
@click.argument("name_or_id")
def token_revoke(config_path: Path | None, name_or_id: str) -> None:
    """Revoke a token by name or id; new logins with it fail at once."""
    with _tokens(config_path) as store:
        try:
            record = store.revoke(name_or_id)
        except DbwardError as exc:
            _fail(exc)
            return
    _record_admin(config_path, EventKind.TOKEN_REVOKED, {"token": record.id, "name": record.name})
    console.print(f"revoked token {record.id} ({record.name})")


cli.add_command(approvals)
cli.add_command(access)
cli.add_command(login)
cli.add_command(logout)
cli.add_command(connect)
cli.add_command(audit)
cli.add_command(evidence)
cli.add_command(policy)


def main() -> None:
    cli(prog_name="dbward")
