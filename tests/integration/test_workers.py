"""Several worker processes sharing the port: sessions, cancels across workers, audit, stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import asyncpg
import psycopg

from tests.conftest import UpstreamDb, start_dbward


def test_workers_share_the_port_cancel_across_workers_and_drain(
    upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    server = start_dbward(tmp_path, upstream_db, extra_config={"workers": 2})
    try:
        token = server.token()
        # Many short sessions: the kernel spreads them over both workers.
        for i in range(20):
            with psycopg.connect(server.dsn()) as conn:
                assert conn.execute("SELECT %s::int", [i]).fetchone() == (i,)

        async def cancel_many() -> list[float]:
            took = []
            for _ in range(12):
                conn = await asyncpg.connect(
                    host="127.0.0.1",
                    port=server.port,
                    user="app-svc",
                    database="app",
                    password=token,
                    ssl="require",
                )
                started = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.fetch("SELECT pg_sleep(20)"), 0.3)
                took.append(time.monotonic() - started)
                assert await conn.fetchval("SELECT 1") == 1
                await conn.close()
            return took

        # A CancelRequest arrives on a new connection, so about half land on the worker
        # that does not hold the session and must be passed on; every one must work.
        took = asyncio.run(cancel_many())
        assert max(took) < 3, took
        events = server.audit()
        cancels = [e for e in events if e["kind"] == "cancel"]
        assert len(cancels) == 12
        cancelled = [e for e in server.statements() if e["data"].get("sqlstate") == "57014"]
        assert len(cancelled) == 12
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids))
        starts = [e for e in events if e["kind"] == "connection.start"]
        assert len(starts) == 32
        assert (server.state_dir / "audit-journal" / "worker-0").is_dir()
        assert (server.state_dir / "audit-journal" / "worker-1").is_dir()
        # SIGTERM reaches every worker through the parent; all drain and exit 0.
        idle = psycopg.connect(server.dsn())
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        idle.close()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    # Everything journalled is in the store once they are gone.
    assert not list((server.state_dir / "audit-journal").rglob("journal-*.log"))
    log = server.log()
    assert "started 2 workers" in log
    # With 12 cancels the chance that none crossed workers is 1 in 2,048.
    assert "passing a cancel request to worker" in log
    assert "Traceback" not in log
