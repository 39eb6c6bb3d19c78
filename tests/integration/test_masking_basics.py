"""Masking on the wire through real clients: the basic paths, text and binary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import psql, statements
from tests.integration.policy_helpers import aconnect, connect, upstream_exec

TABLE = f"people_{uuid.uuid4().hex[:8]}"
EMAIL = "ada.lovelace@example.org"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def server(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    dbward = start_dbward(
        Path(tmp_path_factory.mktemp("masking")), upstream_db, statement_literals="placeholders"
    )
    upstream_exec(
        dbward,
        f"CREATE TABLE {TABLE} (id int PRIMARY KEY, full_name text, email varchar(64), "
        "notes text, card numeric, born date, price numeric(10,2), ref uuid)",
    )
    upstream_exec(
        dbward,
        f"INSERT INTO {TABLE} VALUES (1, 'Ada Lovelace', '{EMAIL}', "
        f"'call +44 20 7946 0958 or pay with {CARD}', 4111111111111111, '1815-12-10', 19.99, "
        "'123e4567-e89b-12d3-a456-426614174000')",
    )
    yield dbward
    stop_dbward(dbward)


def test_psql_text_results_are_masked(server: Dbward) -> None:
    out = psql(server, "-At", "-c", f"SELECT * FROM {TABLE}").stdout
    assert EMAIL not in out, out
    assert "Lovelace" not in out, out
    assert "7946" not in out, out
    assert "****@example.org" in out, out
    assert "**** **** **** 1111" in out, out
    assert "4111111111111111" not in out, out
    assert "1815" not in out, out
    assert "19.99" in out, out
    assert "123e4567-e89b-12d3-a456-426614174000" in out, out


def test_aliases_do_not_hide_a_column(server: Dbward) -> None:
    out = psql(server, "-At", "-c", f"SELECT email AS x, full_name AS y FROM {TABLE}").stdout
    assert EMAIL not in out, out
    assert "Lovelace" not in out, out


def test_psycopg_binary_results_are_masked(server: Dbward) -> None:
    with connect(server, autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        row = cur.execute(f"SELECT * FROM {TABLE}").fetchone()
    assert row is not None
    assert row[2] == "****@example.org"
    assert "7946" not in row[3]
    assert str(row[4]) == "1111"
    assert str(row[5]) == "1900-01-01"
    assert str(row[6]) == "19.99"


def test_asyncpg_binary_results_are_masked(server: Dbward) -> None:
    async def run() -> list[object]:
        conn = await aconnect(server)
        try:
            row = await conn.fetchrow(f"SELECT * FROM {TABLE} WHERE id = $1", 1)
            return list(row.values())
        finally:
            await conn.close()

    row = asyncio.run(run())
    assert row[2] == "****@example.org"
    assert "Lovelace" not in str(row[1])
    assert str(row[7]) == "123e4567-e89b-12d3-a456-426614174000"


def test_audit_records_what_was_masked_without_values(server: Dbward) -> None:
    psql(server, "-At", "-c", f"SELECT email FROM {TABLE} WHERE email = '{EMAIL}'")
    records = [r for r in statements(server) if "WHERE email" in r["data"]["statement"]]
    assert records, statements(server)[-5:]
    data = records[-1]["data"]
    assert EMAIL not in str(data)
    assert "$1" in data["statement"]
    assert data["masked"]["entities"] == {"email": 1}


@pytest.mark.parametrize(
    "options", ["", "WITH (FORMAT csv)", "WITH (FORMAT csv, HEADER, DELIMITER ';')"]
)
def test_copy_to_stdout_is_masked(server: Dbward, options: str) -> None:
    out = psql(server, "-c", f"COPY {TABLE} TO STDOUT {options}").stdout
    assert EMAIL not in out, out
    assert "Lovelace" not in out, out
    assert "7946" not in out, out
    assert "****@example.org" in out, out
    assert "19.99" in out, out


def test_copy_of_a_query_is_scanned(server: Dbward) -> None:
    out = psql(server, "-c", f"COPY (SELECT email, notes FROM {TABLE}) TO STDOUT").stdout
    assert EMAIL not in out, out
    assert "7946" not in out, out


def test_binary_copy_is_masked(server: Dbward) -> None:
    query = f"COPY {TABLE} (id, email, price) TO STDOUT WITH (FORMAT binary)"
    with connect(server, autocommit=True) as conn, conn.cursor() as cur, cur.copy(query) as copy:
        copy.set_types(["int4", "varchar", "numeric"])
        rows = list(copy.rows())
    assert rows[0][1] == "****@example.org"
    assert str(rows[0][2]) == "19.99"


def test_unique_violation_detail_is_masked(server: Dbward) -> None:
    upstream_exec(server, f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_email ON {TABLE} (email)")
    result = psql(
        server,
        "-c",
        f"INSERT INTO {TABLE} (id, email) VALUES (2, '{EMAIL}')",
        check=False,
    )
    assert "already exists" in result.stderr, result.stderr
    assert EMAIL not in result.stderr, result.stderr


UNMASK_POLICY = """\
version: 1
masking:
  unmask:
    - name: support-sees-email
      match: {group: support}
      entities: [email]
"""


def test_an_unmask_grant_shows_what_it_names_and_nothing_more(
    upstream_db: UpstreamDb, tmp_path: Path, server: Dbward
) -> None:
    granted = start_dbward(tmp_path, upstream_db, policy=UNMASK_POLICY)
    try:
        granted.token("helpdesk", groups=("support",))
        granted.token("helper-bot", kind=IdentityKind.AGENT, groups=("support",))
        human = psql(granted, "-At", "-c", f"SELECT email, full_name FROM {TABLE}", user="helpdesk")
        assert EMAIL in human.stdout, human.stdout
        assert "Lovelace" not in human.stdout, human.stdout
        # An agent acting for the same group still sees masked data.
        agent = psql(granted, "-At", "-c", f"SELECT email FROM {TABLE}", user="helper-bot")
        assert EMAIL not in agent.stdout, agent.stdout
    finally:
        stop_dbward(granted)


def test_a_column_renamed_through_dbward_is_classified_by_its_new_name(server: Dbward) -> None:
    table = f"renamed_{uuid.uuid4().hex[:8]}"
    upstream_exec(server, f"CREATE TABLE {table} (id int, label text)")
    upstream_exec(server, f"INSERT INTO {table} VALUES (1, 'Grace Hopper')")
    before = psql(server, "-At", "-c", f"SELECT label FROM {table}").stdout
    assert "Grace Hopper" in before, before
    psql(server, "-c", f"ALTER TABLE {table} RENAME COLUMN label TO full_name")
    after = psql(server, "-At", "-c", f"SELECT * FROM {table}").stdout
    assert "Grace Hopper" not in after, after
