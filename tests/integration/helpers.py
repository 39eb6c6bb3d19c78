"""Helpers shared by the real-client tests: run psql/pgbench, read and wait on the audit."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.conftest import Dbward

CLIENT_TIMEOUT = 60.0


def unique(prefix: str) -> str:
    """A table (or channel, cursor...) name no other test uses."""
    return f"{prefix}_{secrets.token_hex(3)}"


def run_client(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def psql(
    dbward: Dbward,
    *args: str,
    stdin: str | None = None,
    user: str = "app-svc",
    env: Mapping[str, str] | None = None,
    on_error_stop: bool = True,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``psql -X`` against dbward (PG* variables from ``dbward.env``)."""
    argv = ["psql", "-X", "-v", f"ON_ERROR_STOP={1 if on_error_stop else 0}", *args]
    result = run_client(argv, env or dbward.env(user), stdin=stdin, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(
            f"psql {args!r} exited with {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}\ndbward log (tail):\n{log_tail(dbward)}"
        )
    return result


def log_tail(dbward: Dbward, lines: int = 40) -> str:
    return "\n".join(dbward.log().splitlines()[-lines:])


def statements(
    dbward: Dbward, needle: str | None = None, *, identity: str | None = None
) -> list[dict[str, Any]]:
    """Statement records whose text contains ``needle`` (ignoring case and runs of spaces:
    psql sends ``\\copy t ...`` as ``COPY  t ...``)."""
    found = dbward.statements()
    if needle is not None:
        wanted = _squeeze(needle)
        found = [s for s in found if wanted in _squeeze(s["data"]["statement"])]
    if identity is not None:
        found = [s for s in found if s["identity"] == identity]
    return found


def _squeeze(text: str) -> str:
    return " ".join(text.lower().split())


def last_id(dbward: Dbward) -> int:
    events = dbward.audit()
    return events[-1]["id"] if events else 0


def since(records: list[dict[str, Any]], after: int) -> list[dict[str, Any]]:
    return [r for r in records if r["id"] > after]


def wait_for(probe: Callable[[], Any], *, timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``probe`` until it returns something truthy; for events recorded asynchronously
    (connection end, cancel), never for statements (those are committed before the result)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def run_cli(server: Dbward, *args: str) -> subprocess.CompletedProcess[str]:
    """``dbward <args> --config <the server's dbward.yaml>``, whatever its exit status (run
    from the config's folder: no ./dbward.yaml of anyone else's is picked up)."""
    return subprocess.run(
        [sys.executable, "-m", "dbward", *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=server.config_path.parent,
    )
