"""Limits a running dbward enforces, and a clear refusal to start on a taken port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import UpstreamDb, start_dbward, stop_dbward


def test_connections_over_the_limit_are_refused_with_53300(
    upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    limits = {"startup_timeout": 3, "drain_timeout": 10, "max_connections": 2}
    server = start_dbward(tmp_path, upstream_db, extra_config={"limits": limits})
    try:
        first = psycopg.connect(server.dsn())
        second = psycopg.connect(server.dsn())
        with pytest.raises(psycopg.OperationalError, match="too many clients already"):
            psycopg.connect(server.dsn())
        second.close()
        # A slot freed is a slot usable again.
        for _ in range(50):
            try:
                third = psycopg.connect(server.dsn())
                break
            except psycopg.OperationalError:
                continue
        assert third.execute("SELECT 1").fetchone() == (1,)
        third.close()
        first.close()
    finally:
        stop_dbward(server)


def test_serve_on_a_taken_port_fails_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {
            "state_dir": str(tmp_path / "state"),
            "listeners": [{"host": "127.0.0.1", "port": port}],
            "connections": {},
        }
        path = tmp_path / "dbward.yaml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [sys.executable, "-m", "dbward", "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
