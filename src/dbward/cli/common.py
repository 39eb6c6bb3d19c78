"""What every ``dbward`` subcommand shares: the config option, loading it, failing clearly."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from dbward.config import Config, load_config, parse_config
from dbward.errors import DbwardError

console = Console(stderr=True)
DEFAULT_CONFIG = Path("dbward.yaml")


def _config(path: Path | None) -> Config:
    """The given config file, ./dbward.yaml if present, else defaults (state in ./.dbward)."""
    if path is not None:
        return load_config(path)
    if DEFAULT_CONFIG.exists():
        return load_config(DEFAULT_CONFIG)
    return parse_config({"connections": {}}, base_dir=Path.cwd())


def _fail(exc: DbwardError) -> None:
    console.print(f"[red]error:[/red] {exc.message}")
    raise SystemExit(2)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="dbward.yaml (default: ./dbward.yaml if present)",
)
