"""`dbward demo` end to end: embedded PostgreSQL, dbward, a token, psql through it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def _demo_check(state: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dbward",
            "demo",
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_check_runs_a_query_through_dbward(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "demo"
    result = _demo_check(state, port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "dbward demo is ready" in output
    match = re.search(
        r'psql "(host=127\.0\.0\.1 port=\d+ dbname=demo user=demo '
        r'password=(dbw_\S+) sslmode=require)"',
        output,
    )
    assert match, output
    assert f"postgresql://demo:{match.group(2)}@127.0.0.1:{port}/demo?sslmode=require" in output
    assert " 500 | " in output  # the check query: 500 seeded customers
    # The upstream password never reaches the output; only the token does.
    password = (state / "postgres" / "dbward_demo.password").read_text().strip()
    assert password not in output
    # The audit trail recorded the check query under the demo identity.
    tail = subprocess.run(
        [sys.executable, "-m", "dbward", "audit", "tail", "--config", str(state / "dbward.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "demo (service)" in tail
    assert "FROM customers" in tail
    # A second start reuses the data and issues a new token; the old one is revoked.
    again = _demo_check(state, port)
    assert again.returncode == 0, again.stdout + again.stderr
    assert match.group(2) not in again.stdout
