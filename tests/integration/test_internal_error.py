"""A bug on the statement path ends that one session, never the proxy."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from dbward.config import parse_config
from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore
from dbward.proxy.server import Server
from dbward.proxy.tracking import StatementTracker
from tests.conftest import UpstreamDb, free_port


@pytest.fixture
def in_process(upstream_db: UpstreamDb, tmp_path: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "listeners": [{"host": "127.0.0.1", "port": port}],
            "connections": {
                "app": {
                    "host": upstream_db.host,
                    "port": upstream_db.port,
                    "database": upstream_db.name,
                    "credentials": {"user": upstream_db.role},
                }
            },
        }
    )
    (tmp_path / "state").mkdir()
    with TokenStore(config.tokens_path) as store:
        token = store.create("svc", IdentityKind.SERVICE, (), 600)[0]
    loop = asyncio.new_event_loop()
    server = Server(config)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.serve_until_stopped())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield port, token
    loop.call_soon_threadsafe(server.request_stop)
    thread.join(20)


def test_a_bug_ends_only_its_session(
    in_process: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, token = in_process
    original = StatementTracker.on_frontend

    def buggy(self: StatementTracker, kind: int, buf: bytes, start: int, end: int) -> None:
        if b"trigger-the-bug" in buf[start:end]:
            raise RuntimeError("a bug")
        original(self, kind, buf, start, end)

    monkeypatch.setattr(StatementTracker, "on_frontend", buggy)
    dsn = f"host=127.0.0.1 port={port} dbname=app user=svc password={token} sslmode=require"
    with psycopg.connect(dsn) as healthy, psycopg.connect(dsn) as victim:
        with pytest.raises(psycopg.errors.InternalError_, match="dbward internal error"):
            victim.execute("SELECT 'trigger-the-bug'")
        assert healthy.execute("SELECT 42").fetchone() == (42,)
    with psycopg.connect(dsn) as fresh:
        assert fresh.execute("SELECT 1").fetchone() == (1,)
