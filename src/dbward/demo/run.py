"""``dbward demo``: a seeded embedded PostgreSQL with dbward in front, ready to paste into psql."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import uvloop
import yaml
from rich.console import Console

from dbward.config import load_config
from dbward.demo.embedded import EmbeddedPostgres, find_psql, start_embedded_postgres
from dbward.errors import DbwardError
from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore

DEMO_USER = "demo"
DEMO_CONNECTION = "demo"


def _write_config(state_dir: Path, pg: EmbeddedPostgres, port: int) -> Path:
    config: dict[str, Any] = {
        "state_dir": str(state_dir / "dbward"),
        "listeners": [{"host": "127.0.0.1", "port": port}],
        "connections": {
            DEMO_CONNECTION: {
                "environment": "development",
                "host": pg.host,
                "port": pg.port,
                "database": pg.database,
                "credentials": {"user": pg.user, "password_file": str(pg.password_file)},
                "tls": {"mode": "prefer"},
            }
        },
    }
    path = state_dir / "dbward.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _fresh_token(tokens_path: Path) -> str:
    """A new demo token; the previous one (shown at the last start) is revoked."""
    with TokenStore(tokens_path) as store:
        for record in store.list():
            if record.name == DEMO_USER:
                store.revoke(record.id)
        secret, _ = store.create(DEMO_USER, IdentityKind.SERVICE, ("demo",), 7 * 86400)
    return secret


def run_demo(state_dir: Path, *, port: int, check: bool, console: Console) -> None:
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    with console.status("starting the embedded PostgreSQL and seeding the demo data..."):
        pg = start_embedded_postgres(state_dir / "postgres")
    try:
        config_path = _write_config(state_dir, pg, port)
        config = load_config(config_path)
        token = _fresh_token(config.tokens_path)
        uvloop.run(_serve(config_path, token, port, check, console, started))
    finally:
        pg.stop()


async def _serve(
    config_path: Path, token: str, port: int, check: bool, console: Console, started: float
) -> None:
    from dbward.proxy.server import Server

    server = Server(load_config(config_path))
    try:
        await server.start()
    except OSError as exc:
        raise DbwardError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; pass --port to use another"
        ) from None
    conninfo = (
        f"host=127.0.0.1 port={port} dbname={DEMO_CONNECTION} user={DEMO_USER} "
        f"password={token} sslmode=require"
    )
    uri = f"postgresql://{DEMO_USER}:{token}@127.0.0.1:{port}/{DEMO_CONNECTION}?sslmode=require"
    console.print(
        f"[bold green]dbward demo is ready[/bold green] in {time.monotonic() - started:.1f} s: "
        f"a seeded shop database (customers, orders, payments, tickets) behind dbward on "
        f"127.0.0.1:{port}. The database password stays inside dbward; you connect with a "
        f"dbward token:"
    )
    # Plain prints: the commands must not be wrapped, they are meant to be pasted.
    print(f'\n  psql "{conninfo}"\n\n  {uri}\n', flush=True)
    console.print(f"Audit trail: dbward audit tail --config {config_path}   Stop: Ctrl-C")
    if check:
        await _check(conninfo, console)
        await server.stop()
        return
    server.install_signal_handlers()
    await server.serve_until_stopped()


async def _check(conninfo: str, console: Console) -> None:
    """Run one query through dbward with psql and show it (``dbward demo --check``)."""
    on_path = shutil.which("psql")  # the system's psql has TLS; an embedded one may not
    psql = Path(on_path) if on_path else find_psql()
    if psql is None:
        raise DbwardError("no psql found to run the demo check with")
    query = "SELECT count(*) AS customers, min(email) AS first_email FROM customers"
    proc = await asyncio.create_subprocess_exec(
        str(psql),
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        conninfo,
        "-c",
        query,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    console.print(out.decode(errors="replace"))
    if proc.returncode != 0:
        raise DbwardError(f"the demo check query failed (psql exit {proc.returncode})")
