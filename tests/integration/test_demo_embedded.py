"""The embedded demo PostgreSQL: start, seed, reuse, password over TCP, stop."""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dbward.demo import embedded
from dbward.demo.embedded import EmbeddedPostgres, load_seed, start_embedded_postgres
from dbward.errors import DbwardError

EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}")
SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")

EXPECTED_ROWS = {
    "customers": 500,
    "orders": 2000,
    "order_items": 5000,
    "support_tickets": 200,
    "employees": 50,
    "api_keys": 30,
}


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo(demo_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded_postgres(demo_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def conn(demo: EmbeddedPostgres) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(demo.conninfo(), autocommit=True) as connection:
        yield connection


def admin_conninfo(demo: EmbeddedPostgres, database: str = "postgres") -> str:
    """The bootstrap superuser over the unix socket in the cluster directory."""
    return f"host={demo.pgdata} port={demo.port} user=postgres dbname={database}"


def column(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> list[object]:
    return [row[0] for row in conn.execute(sql.encode()).fetchall()]


def test_connection_details(demo: EmbeddedPostgres, demo_dir: Path) -> None:
    assert demo.host == "127.0.0.1"
    assert demo.user == "dbward_demo"
    assert demo.database == "demo"
    assert demo.data_dir == demo_dir.resolve()
    assert demo.password
    assert demo.password not in repr(demo)
    assert demo.password_file.read_text() == demo.password
    assert stat.S_IMODE(demo.password_file.stat().st_mode) == 0o600


def test_seed_row_counts(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    for table, expected in EXPECTED_ROWS.items():
        assert column(conn, f"SELECT count(*) FROM {table}") == [expected], table
    payments, orders_paid = conn.execute(
        b"SELECT (SELECT count(*) FROM payments),"
        b" (SELECT count(*) FROM orders WHERE status NOT IN ('pending', 'cancelled'))"
    ).fetchall()[0]
    assert payments == orders_paid
    assert isinstance(payments, int)
    assert payments > 1500
    assert column(conn, "SELECT count(*) FROM customer_summary") == [500]
    assert column(conn, "SELECT count(*) FROM orders WHERE total <= 0") == [0]


def test_seed_keys_and_indexes(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    foreign_keys = column(
        conn,
        "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )
    assert {"orders", "order_items", "payments", "support_tickets", "api_keys"} <= set(
        map(str, foreign_keys)
    )
    indexes = column(conn, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    assert "orders_customer_id_idx" in indexes
    # The seed's helper functions were temporary and left nothing behind.
    assert column(
        conn, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
    ) == [0]
    # New rows continue after the generated ids.
    customer_id = column(
        conn,
        "INSERT INTO customers (full_name, email, country, created_at)"
        " VALUES ('New Person', 'new.person@example.com', 'GB', now()) RETURNING id",
    )
    assert customer_id == [501]
    conn.execute(b"DELETE FROM customers WHERE id = 501")


def test_emails_look_like_emails(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    emails = column(conn, "SELECT email FROM customers UNION ALL SELECT email FROM employees")
    assert len(emails) == 550
    assert all(isinstance(e, str) and EMAIL.fullmatch(e) for e in emails), emails[:5]
    assert all(
        str(e).endswith((".example", "example.com", "example.net", "example.org")) for e in emails
    )


def test_card_numbers_pass_luhn(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(b"SELECT card_number, card_last4 FROM payments").fetchall()
    assert rows
    for number, last4 in rows:
        assert isinstance(number, str)
        assert number.isdigit()
        assert 14 <= len(number) <= 16
        assert luhn_ok(number), number
        assert last4 == number[-4:]


def test_other_personal_data_is_well_formed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    ibans = column(conn, "SELECT iban FROM customers WHERE iban IS NOT NULL")
    assert len(ibans) > 100
    assert all(iban_ok(str(i)) for i in ibans)
    ssns = column(conn, "SELECT ssn FROM employees")
    assert all(SSN.fullmatch(str(s)) for s in ssns), ssns
    assert len(set(ssns)) == 50
    phones = column(conn, "SELECT phone FROM customers")
    assert all(re.fullmatch(r"\+\d[\d ()-]{8,}", str(p)) for p in phones)
    secrets = column(conn, "SELECT secret FROM api_keys")
    assert any(re.fullmatch(r"AKIA[0-9A-Z]{16}", str(s)) for s in secrets)
    assert any(re.fullmatch(r"ghp_[A-Za-z0-9]{36}", str(s)) for s in secrets)


def test_some_tickets_mention_contact_details(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    bodies = [str(b) for b in column(conn, "SELECT body FROM support_tickets")]
    with_email = [b for b in bodies if EMAIL.search(b)]
    with_phone = [b for b in bodies if re.search(r"\+\d{1,2} [\d ()-]{8,}", b)]
    assert 20 < len(with_email) < 200
    assert 20 < len(with_phone) < 200


def test_password_is_required_over_tcp(demo: EmbeddedPostgres) -> None:
    base = f"host=127.0.0.1 port={demo.port} dbname=demo sslmode=disable passfile=/dev/null"
    env_password = os.environ.pop("PGPASSWORD", None)
    try:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{base} user=dbward_demo", connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"{base} user=dbward_demo password=wrong", connect_timeout=5)
        # The superuser has no password: it cannot come in over TCP at all.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"{base} user=postgres password=postgres", connect_timeout=5)
    finally:
        if env_password is not None:
            os.environ["PGPASSWORD"] = env_password
    with psycopg.connect(f"{base} user=dbward_demo password={demo.password}") as ok:
        assert ok.execute(b"SELECT current_user").fetchone() == ("dbward_demo",)


def test_second_start_reuses_the_running_server(
    demo: EmbeddedPostgres, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    conn.execute(b"CREATE TABLE IF NOT EXISTS reuse_marker (note text)")
    conn.execute(b"INSERT INTO reuse_marker VALUES ('still here')")
    again = start_embedded_postgres(demo.data_dir)
    assert again == demo
    assert again.password == demo.password
    with psycopg.connect(again.conninfo()) as second:
        assert second.execute(b"SELECT note FROM reuse_marker").fetchall() == [("still here",)]
        assert second.execute(b"SELECT count(*) FROM customers").fetchone() == (500,)


def test_stop_then_start_keeps_data_and_port(demo: EmbeddedPostgres) -> None:
    with psycopg.connect(demo.conninfo(), autocommit=True) as before:
        before.execute(b"CREATE TABLE IF NOT EXISTS restart_marker (n int)")
        before.execute(b"INSERT INTO restart_marker VALUES (42)")
    demo.stop()
    assert not (demo.pgdata / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(demo.conninfo(), connect_timeout=2)
    demo.stop()  # stopping a stopped server is a no-op
    restarted = start_embedded_postgres(demo.data_dir)
    assert restarted.port == demo.port  # the previous port was free, so it is kept
    with psycopg.connect(restarted.conninfo()) as after:
        assert after.execute(b"SELECT n FROM restart_marker").fetchall() == [(42,)]
        assert after.execute(b"SELECT count(*) FROM orders").fetchone() == (2000,)


def test_load_seed_is_deterministic_with_psycopg(demo: EmbeddedPostgres) -> None:
    with psycopg.connect(admin_conninfo(demo), autocommit=True) as admin:
        admin.execute(b"DROP DATABASE IF EXISTS seed_copy")
        admin.execute(b"CREATE DATABASE seed_copy OWNER dbward_demo")
    try:
        load_seed(
            host=demo.host,
            port=demo.port,
            user=demo.user,
            password=demo.password,
            database="seed_copy",
            via="psycopg",
        )
        fingerprint = b"SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) FROM customers AS c"
        with psycopg.connect(demo.conninfo()) as original:
            expected = original.execute(fingerprint).fetchone()
        copy_info = demo.conninfo().replace("dbname='demo'", "dbname='seed_copy'")
        with psycopg.connect(copy_info) as copy:
            assert copy.execute(fingerprint).fetchone() == expected
            assert copy.execute(b"SELECT count(*) FROM order_items").fetchone() == (5000,)
    finally:
        with psycopg.connect(admin_conninfo(demo), autocommit=True) as admin:
            admin.execute(b"DROP DATABASE IF EXISTS seed_copy")


def test_no_postgres_anywhere_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_pgserver_bin_dir", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(embedded, "_SYSTEM_BIN_GLOBS", ())
    with pytest.raises(DbwardError, match=re.escape("pip install 'dbward[demo]'")):
        embedded.find_postgres_binaries()


def test_system_postgres_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        bin_dir = tmp_path / "lib" / "postgresql" / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("initdb", "pg_ctl", "postgres", "psql"):
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755)
    monkeypatch.setattr(embedded, "_pgserver_bin_dir", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(embedded, "_SYSTEM_BIN_GLOBS", (f"{tmp_path}/lib/postgresql/*/bin",))
    found = embedded.find_postgres_binaries()
    assert [b.bin_dir.parent.name for b in found] == ["16", "15", "9.6"]
    assert all(b.source == "system" for b in found)
    assert found[0].psql == found[0].bin_dir / "psql"
