"""psql through dbward: queries, catalog commands, COPY both ways, \\watch, errors, TLS."""

from __future__ import annotations

import datetime
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Dbward
from tests.integration.helpers import (
    last_id,
    log_tail,
    psql,
    run_client,
    since,
    statements,
    unique,
    wait_for,
)


def upstream_rows(dbward: Dbward, query: str) -> list[tuple[object, ...]]:
    """Read the upstream database directly, bypassing dbward."""
    with psycopg.connect(dbward.upstream.dsn()) as conn:
        return conn.execute(query).fetchall()


def test_query_returns_rows_and_is_recorded(dbward: Dbward) -> None:
    result = psql(
        dbward,
        "-At",
        "-c",
        "SELECT g, g * g AS square FROM generate_series(1, 3) AS g ORDER BY g",
    )
    assert result.stdout.splitlines() == ["1|1", "2|4", "3|9"]
    [record] = statements(dbward, "g * g AS square")
    assert record["identity"] == "app-svc"
    assert record["identity_kind"] == "service"
    assert record["target"] == "app"
    data = record["data"]
    assert data["protocol"] == "simple"
    assert data["rows"] == 3
    assert data["tags"] == ["SELECT 3"]
    assert "sqlstate" not in data
    assert data["duration_ms"] >= 0


def test_session_is_the_upstream_role_with_dbward_application_name(dbward: Dbward) -> None:
    result = psql(
        dbward,
        "-At",
        "-c",
        "SELECT current_user, current_database(), application_name "
        "FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    user, database, app = result.stdout.strip().split("|")
    assert user == dbward.upstream.role
    assert database == dbward.upstream.name
    assert app == "app-svc via dbward (psql)"
    starts = [e for e in dbward.audit() if e["kind"] == "connection.start"]
    assert starts[-1]["data"]["client_application"] == "psql"
    assert starts[-1]["data"]["environment"] == "staging"
    assert starts[-1]["data"]["tls"] in ("TLSv1.2", "TLSv1.3")


def test_describe_table_runs_catalog_queries(dbward: Dbward) -> None:
    table = unique("described")
    psql(
        dbward,
        "-c",
        f"CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL DEFAULT 'x', "
        "note varchar(20))",
    )
    psql(dbward, "-c", f"COMMENT ON COLUMN {table}.note IS 'free text'")
    before = last_id(dbward)

    plain = psql(dbward, "-c", rf"\d {table}")
    assert f'Table "public.{table}"' in plain.stdout
    assert "id     | integer" in plain.stdout
    assert "'x'::text" in plain.stdout
    assert "character varying(20)" in plain.stdout
    assert f'"{table}_pkey" PRIMARY KEY, btree (id)' in plain.stdout

    plus = psql(dbward, "-c", rf"\d+ {table}")
    assert "Storage" in plus.stdout
    assert "free text" in plus.stdout
    assert "Access method: heap" in plus.stdout

    catalog = since(statements(dbward, "pg_catalog."), before)
    # \d and \d+ each look the table up by name, then read its columns, indexes, ...
    lookups = [s for s in catalog if f"'^({table})$'" in s["data"]["statement"]]
    assert len(lookups) == 2
    assert all(s["data"]["rows"] == 1 for s in lookups)
    assert len(catalog) >= 8
    for record in catalog:
        assert record["identity"] == "app-svc"
        assert record["data"]["protocol"] == "simple"
        assert "sqlstate" not in record["data"]
    columns = [s for s in catalog if "pg_catalog.pg_attribute a" in s["data"]["statement"]]
    assert columns
    assert all(s["data"]["rows"] == 3 for s in columns)


def test_copy_from_stdin(dbward: Dbward) -> None:
    table = unique("copy_in")
    psql(dbward, "-c", f"CREATE TABLE {table} (id integer, name text)")
    script = f"\\copy {table} FROM stdin\n1\talpha\n2\t\\N\n3\tgrüße, tab\\there\n\\.\n"
    psql(dbward, "-q", stdin=script)

    rows = upstream_rows(dbward, f"SELECT id, name FROM {table} ORDER BY id")
    assert rows == [(1, "alpha"), (2, None), (3, "grüße, tab\there")]
    [record] = statements(dbward, f"COPY {table} FROM STDIN")
    assert record["data"]["tags"] == ["COPY 3"]
    assert record["data"]["rows"] == 3
    assert record["data"]["protocol"] == "simple"


def test_copy_with_bad_data_is_recorded_as_failed(dbward: Dbward) -> None:
    table = unique("copy_bad")
    psql(dbward, "-c", f"CREATE TABLE {table} (id integer)")
    script = f"\\copy {table} FROM stdin\n1\n2\nthree\n4\n\\.\nSELECT 'after';\n"
    result = psql(dbward, stdin=script, check=False)
    assert result.returncode == 3
    assert 'invalid input syntax for type integer: "three"' in result.stderr
    assert upstream_rows(dbward, f"SELECT count(*) FROM {table}") == [(0,)]
    [record] = statements(dbward, f"COPY {table} FROM STDIN")
    assert record["data"]["sqlstate"] == "22P02"
    assert record["data"]["tags"] == []


def test_copy_from_file_and_to_file(dbward: Dbward, tmp_path: Path) -> None:
    table = unique("copy_file")
    psql(dbward, "-c", f"CREATE TABLE {table} (id integer, label text, amount numeric(10,2))")
    source = tmp_path / "in.csv"
    lines = [f"{i},label {i},{i * 1.25:.2f}" for i in range(1, 2001)]
    lines[10] = '11,"comma, and ""quotes""",13.75'
    source.write_text("\n".join(lines) + "\n")

    psql(dbward, "-c", rf"\copy {table} FROM '{source}' WITH (FORMAT csv)")
    assert upstream_rows(dbward, f"SELECT count(*), sum(amount) FROM {table}") == [
        (2000, sum(Decimal(i) * Decimal("1.25") for i in range(1, 2001)))
    ]

    target = tmp_path / "out.csv"
    psql(
        dbward, "-c", rf"\copy (SELECT * FROM {table} ORDER BY id) TO '{target}' WITH (FORMAT csv)"
    )
    assert target.read_text() == source.read_text()

    plain_target = tmp_path / "out.tsv"
    psql(dbward, "-c", rf"\copy {table} TO '{plain_target}'")
    assert len(plain_target.read_text().splitlines()) == 2000

    [copy_in] = statements(dbward, f"COPY {table} FROM STDIN")
    assert copy_in["data"]["tags"] == ["COPY 2000"]
    assert copy_in["data"]["rows"] == 2000
    [copy_out] = statements(dbward, f"FROM {table} ORDER BY id ) TO STDOUT")
    assert copy_out["data"]["tags"] == ["COPY 2000"]
    assert copy_out["data"]["rows"] == 2000
    [copy_table_out] = statements(dbward, f"COPY {table} TO STDOUT")
    assert copy_table_out["data"]["tags"] == ["COPY 2000"]


def large_object_round_trip(dbward: Dbward, directory: Path) -> tuple[bytes, bytes, str]:
    """\\lo_import and \\lo_export: libpq's large-object calls use the fast-path
    FunctionCall message, not SQL text."""
    source = directory / "in.bin"
    source.write_bytes(bytes(range(256)) * 800)
    imported = psql(dbward, "-At", "-c", rf"\lo_import '{source}'")
    oid = imported.stdout.split()[-1]
    target = directory / "out.bin"
    psql(dbward, "-At", "-c", rf"\lo_export {oid} '{target}'")
    return source.read_bytes(), target.read_bytes(), oid


def test_large_object_import_export(dbward: Dbward, tmp_path: Path) -> None:
    before = last_id(dbward)
    sent, received, oid = large_object_round_trip(dbward, tmp_path)
    assert received == sent
    assert upstream_rows(dbward, f"SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}")[
        0
    ] == (1,)
    calls = [
        r for r in since(dbward.statements(), before) if r["data"]["protocol"] == "function-call"
    ]
    assert len(calls) >= 4  # lo_creat, lo_open, lowrite..., lo_close, loread...
    assert all("sqlstate" not in r["data"] for r in calls)
    assert {r["identity"] for r in calls} == {"app-svc"}


def test_function_call_records_name_the_function(dbward: Dbward, tmp_path: Path) -> None:
    before = last_id(dbward)
    large_object_round_trip(dbward, tmp_path)
    calls = [
        r for r in since(dbward.statements(), before) if r["data"]["protocol"] == "function-call"
    ]
    # lo_creat, lo_open, lowrite, loread and lo_close are different functions: an auditor
    # must be able to tell them apart (a fast-path call can run any function by its OID)
    assert len({r["data"]["statement"] for r in calls}) >= 4, calls[0]["data"]


def test_watch_repeats_the_query_until_interrupted(dbward: Dbward, tmp_path: Path) -> None:
    sequence = unique("watched")
    psql(dbward, "-c", f"CREATE SEQUENCE {sequence}")
    script = tmp_path / "watch.sql"
    script.write_text(f"SELECT nextval('{sequence}') AS tick\n\\watch 0.05\n")
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", str(script)],
        env=dbward.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: len(statements(dbward, f"nextval('{sequence}')")) >= 5,
            timeout=10,
            what="five \\watch executions in the audit",
        )
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: ends \watch, psql goes on
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    ticks = [int(line) for line in out.splitlines() if line.strip().isdigit()]
    assert len(ticks) >= 5
    assert ticks == list(range(1, len(ticks) + 1))
    records = statements(dbward, f"nextval('{sequence}')")
    assert len(records) in (len(ticks), len(ticks) + 1)  # Ctrl-C may land after a query
    assert all(r["data"]["tags"] == ["SELECT 1"] for r in records)
    assert len({r["session_id"] for r in records}) == 1


def test_query_repeated_with_g(dbward: Dbward) -> None:
    sequence = unique("repeated")
    psql(dbward, "-c", f"CREATE SEQUENCE {sequence}")
    script = f"SELECT nextval('{sequence}');\n" + "\\g\n" * 9
    result = psql(dbward, "-At", stdin=script)
    assert [int(x) for x in result.stdout.split()] == list(range(1, 11))
    records = statements(dbward, f"nextval('{sequence}')")
    assert len(records) == 10
    assert len({r["session_id"] for r in records}) == 1
    assert all(r["data"]["rows"] == 1 for r in records)


def test_error_in_transaction_is_recorded_with_sqlstate(dbward: Dbward) -> None:
    table = unique("tx_error")
    psql(dbward, "-c", f"CREATE TABLE {table} (id integer)")
    script = (
        "BEGIN;\n"
        f"INSERT INTO {table} VALUES (1);\n"
        "SELECT 1/0;\n"
        "SELECT 'after the error';\n"
        "ROLLBACK;\n"
        f"SELECT count(*) FROM {table};\n"
    )
    result = psql(dbward, "-At", stdin=script, on_error_stop=False)
    assert "division by zero" in result.stderr
    assert "current transaction is aborted" in result.stderr
    assert result.stdout.splitlines()[-1] == "0"  # the insert was rolled back

    [division] = statements(dbward, "SELECT 1/0")
    assert division["data"]["sqlstate"] == "22012"
    assert division["data"]["error"] == "division by zero"
    assert division["data"]["tags"] == []
    [aborted] = statements(dbward, "'after the error'")
    assert aborted["data"]["sqlstate"] == "25P02"
    session = division["session_id"]
    in_session = [s for s in dbward.statements() if s["session_id"] == session]
    assert [s["data"]["tags"] for s in in_session] == [
        ["BEGIN"],
        ["INSERT 0 1"],
        [],
        [],
        ["ROLLBACK"],
        ["SELECT 1"],
    ]


def test_on_error_stop_ends_psql_with_the_error(dbward: Dbward) -> None:
    result = psql(
        dbward,
        stdin="BEGIN;\nSELECT 1/0 AS stop_here;\nSELECT 'never sent';\n",
        check=False,
    )
    assert result.returncode == 3
    assert "ERROR:  division by zero" in result.stderr
    assert statements(dbward, "'never sent'") == []
    [record] = statements(dbward, "1/0 AS stop_here")
    assert record["data"]["sqlstate"] == "22012"
    end = wait_for(
        lambda: [
            e
            for e in dbward.audit()
            if e["kind"] == "connection.end" and e["session_id"] == record["session_id"]
        ],
        what="the session's connection.end",
    )
    assert end[0]["data"]["statements"] == 2


def test_multi_statement_string_is_one_simple_query(dbward: Dbward) -> None:
    table = unique("multi")
    result = psql(
        dbward,
        "-At",
        "-c",
        f"CREATE TABLE {table} (id integer); INSERT INTO {table} VALUES (1); "
        f"INSERT INTO {table} VALUES (2), (3); SELECT sum(id) FROM {table}",
    )
    # psql 15 shows the result of each statement of the string
    assert result.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 1", "INSERT 0 2", "6"]
    [record] = statements(dbward, f"CREATE TABLE {table}")
    assert record["data"]["protocol"] == "simple"
    assert record["data"]["tags"] == ["CREATE TABLE", "INSERT 0 1", "INSERT 0 2", "SELECT 1"]
    assert f"SELECT sum(id) FROM {table}" in record["data"]["statement"]


def test_verify_full_with_dbward_ca(dbward: Dbward) -> None:
    dsn = (
        f"host=localhost port={dbward.port} dbname=app user=app-svc "
        f"sslmode=verify-full sslrootcert={dbward.ca_file}"
    )
    env = {**dbward.env(), "PGSSLMODE": "verify-full"}
    result = psql(dbward, "-At", "-d", dsn, "-c", "SELECT 'verified'", env=env)
    assert result.stdout.strip() == "verified"
    [record] = statements(dbward, "'verified'")
    start = [
        e
        for e in dbward.audit()
        if e["kind"] == "connection.start" and e["session_id"] == record["session_id"]
    ]
    assert start[0]["data"]["tls"] in ("TLSv1.2", "TLSv1.3")


def _other_ca(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not dbward")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "other-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("root", ["none", "other-ca"])
def test_verify_full_without_dbward_ca_fails(dbward: Dbward, tmp_path: Path, root: str) -> None:
    # HOME without ~/.postgresql/root.crt: libpq has no root certificate to check against.
    env = {**dbward.env(), "HOME": str(tmp_path), "PGSSLMODE": "verify-full"}
    dsn = f"host=localhost port={dbward.port} dbname=app user=app-svc sslmode=verify-full"
    if root == "other-ca":
        dsn += f" sslrootcert={_other_ca(tmp_path)}"
    marker = unique("must_not_run")
    before = last_id(dbward)
    result = run_client(["psql", "-X", "-At", "-d", dsn, "-c", f"SELECT '{marker}'"], env)
    assert result.returncode == 2, result.stderr
    if root == "none":
        assert "root certificate file" in result.stderr
        assert "does not exist" in result.stderr
    else:
        assert "certificate verify failed" in result.stderr
    time.sleep(0.2)
    after = since(dbward.audit(), before)
    assert [e for e in after if e["kind"] in ("connection.start", "statement")] == [], log_tail(
        dbward
    )
