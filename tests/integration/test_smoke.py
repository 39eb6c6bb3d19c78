"""The shortest path through dbward: psycopg in, a row out, a record in the audit."""

from __future__ import annotations

import psycopg

from tests.conftest import Dbward


def test_select_through_dbward_is_recorded(dbward: Dbward) -> None:
    with psycopg.connect(dbward.dsn()) as conn:
        row = conn.execute(
            "SELECT current_user, application_name FROM pg_stat_activity "
            "WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    assert row[0] == dbward.upstream.role
    assert row[1].startswith("app-svc via dbward")
    statements = [s for s in dbward.statements() if "pg_stat_activity" in s["data"]["statement"]]
    assert statements[-1]["identity"] == "app-svc"
    assert statements[-1]["data"]["rows"] == 1
