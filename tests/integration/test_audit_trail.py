"""The audit trail end to end: real clients write it, the real ``dbward audit`` command reads,
verifies, searches, questions and exports it.

One dbward (production guardrails, statement literals replaced by placeholders, a
checkpoint every 0.2 s) serves a small workload through psql and psycopg: DDL, an INSERT
of PII, masked reads, an UPDATE, a DELETE refused by a guardrail and a statement that
fails in PostgreSQL, from a service token and an agent token made with ``dbward token
create``. The first test looks at the trail while dbward runs; the rest after a graceful
stop (SIGTERM), in file order: verification, tampering with the store and with an export
bundle, lineage, search, exports and operator records.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import psql, run_cli, unique, wait_for

INSTANCE = "auditlab"
SERVER_CHAIN = f"{INSTANCE}-0"  # worker 0 of the instance
CLI_CHAIN = f"{INSTANCE}-cli"
CHECKPOINT_INTERVAL = 0.2
EMAIL = "ada.lovelace@example.org"  # the PII inserted: never to be seen in the trail
OTHER_EMAIL = "grace.hopper@example.net"
MASKED_EMAIL = "****@example.org"
UNBOUNDED = "guardrail:unbounded-write"
CSV_HEADER = [
    "time", "chain", "seq", "kind", "session_id", "identity", "identity_kind", "connection",
    "source", "decision", "rule", "statement", "rows", "sqlstate", "tables_read",
    "tables_written", "masked_values", "agent", "hash",
]  # fmt: skip


# the command line ---------------------------------------------------------------------


def cli_ok(server: Dbward, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(server, *args)
    assert result.returncode == 0, describe(result)
    return result


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def text_of(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed, with runs of spaces and line breaks (table cells,
    wrapped lines) squeezed to one space."""
    return " ".join((result.stdout + result.stderr).split())


def verify(server: Dbward, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(server, "audit", "verify", *args)


def verify_json(server: Dbward, *args: str) -> dict[str, Any]:
    result = verify(server, "--json", *args)
    assert result.returncode in (0, 1), describe(result)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is (result.returncode == 0), describe(result)
    return report


def chain_report(report: dict[str, Any], chain: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in report["chains"] if c["chain"] == chain]
    assert len(found) == 1, report
    return found[0]


def assert_tampered(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """``dbward audit verify`` exited 1 and said TAMPERED, naming every needle."""
    assert result.returncode == 1, describe(result)
    said = text_of(result)
    assert "TAMPERED" in said, said
    assert "verified" not in said, said
    for needle in needles:
        assert needle in said, (needle, said)
    return said


def search(server: Dbward, *filters: str) -> list[dict[str, Any]]:
    result = cli_ok(server, "audit", "search", "--json", *filters)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in records]


def texts(records: list[dict[str, Any]]) -> list[str]:
    return [r["data"]["statement"] for r in records if r["kind"] == "statement"]


def touched(server: Dbward, command: str, name: str, *args: str) -> dict[tuple[str, str], Any]:
    """``dbward audit who-touched|touched-by NAME --json`` keyed by (who or what, access)."""
    result = cli_ok(server, "audit", command, name, "--json", *args)
    rows = json.loads(result.stdout)
    keyed = {(row["key"], row["access"]): row for row in rows}
    assert len(keyed) == len(rows), rows
    return keyed


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()


# the store, for tampering and for looking at its bytes --------------------------------


def store_path(server: Dbward) -> Path:
    return server.state_dir / "audit.db"


def store_bytes(server: Dbward) -> bytes:
    """The store file and its WAL, as they are on disk."""
    path = store_path(server)
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def journal_bytes(server: Dbward) -> bytes:
    return b"".join(
        p.read_bytes() for p in sorted((server.state_dir / "audit-journal").rglob("*.log"))
    )


def tamper(server: Dbward, change: Callable[[sqlite3.Connection], object]) -> None:
    db = sqlite3.connect(store_path(server), isolation_level=None)
    try:
        db.execute("BEGIN")
        change(db)
        db.execute("COMMIT")
    finally:
        db.close()


def rows_of(server: Dbward, chain: str) -> list[tuple[int, str, str]]:
    """(seq, hash, line) of a chain's records, by seq, read straight from the store."""
    db = sqlite3.connect(store_path(server))
    try:
        return db.execute(
            "SELECT seq, hash, line FROM records WHERE chain = ? ORDER BY seq", (chain,)
        ).fetchall()
    finally:
        db.close()


def seq_of(server: Dbward, needle: str) -> int:
    """The server chain's one record whose line holds ``needle``."""
    [seq] = [seq for seq, _, line in rows_of(server, SERVER_CHAIN) if needle in line]
    return seq


def store_ids(server: Dbward) -> list[int]:
    db = sqlite3.connect(store_path(server))
    try:
        return [row[0] for row in db.execute("SELECT id FROM records ORDER BY id")]
    finally:
        db.close()


def relink(previous: bytes, line: str) -> str:
    """A record's hash as the chain defines it: SHA-256(previous hash || line)."""
    return hashlib.sha256(previous + line.encode()).hexdigest()


def encode_line(item: list[Any]) -> str:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


# the workload -------------------------------------------------------------------------


@dataclass
class Workload:
    server: Dbward
    table: str
    agent_secret: str
    between: float  # after the service sessions and the token's creation, before the agent's

    @property
    def qualified(self) -> str:
        return f"public.{self.table}"


@pytest.fixture(scope="module")
def server(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    dbward = start_dbward(
        tmp_path_factory.mktemp("audit-trail"),
        upstream_db,
        environment="production",
        statement_literals="placeholders",
        extra_config={"audit": {"instance": INSTANCE, "checkpoint_interval": CHECKPOINT_INTERVAL}},
    )
    yield dbward
    stop_dbward(dbward)


@pytest.fixture(scope="module")
def workload(server: Dbward) -> Workload:
    table = unique("people")
    server.token("app-svc", groups=("eng",))
    server.token("night-owl", groups=("ops",))

    out = psql(
        server,
        "-At",
        "-c", f"CREATE TABLE {table} (id int PRIMARY KEY, email text, note text)",
        "-c", f"INSERT INTO {table} VALUES (1, '{EMAIL}', 'first'), (2, '{OTHER_EMAIL}', 'second')",
        "-c", f"SELECT * FROM {table} ORDER BY id",
    ).stdout  # fmt: skip
    assert MASKED_EMAIL in out, out
    assert EMAIL not in out, out
    assert OTHER_EMAIL not in out, out

    with psycopg.connect(server.dsn("app-svc"), autocommit=True, connect_timeout=10) as conn:
        assert conn.execute(f"SELECT email FROM {table} WHERE id = 1").fetchall() == [
            (MASKED_EMAIL,)
        ]
        conn.execute(f"UPDATE {table} SET note = 'updated' WHERE id = 2")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=UNBOUNDED):
            conn.execute(f"DELETE FROM {table}")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(f"SELECT email, id / 0 FROM {table}")

    created = cli_ok(
        server, "token", "create", "--name", "helper-bot", "--kind", "agent", "--group", "bots"
    )
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("dbw_"), describe(created)

    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    with psycopg.connect(
        server.dsn("helper-bot", password=secret), autocommit=True, connect_timeout=10
    ) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)

    wait_for(
        lambda: len([e for e in server.audit() if e["kind"] == "connection.end"]) == 3,
        what="three connection.end records",
    )
    return Workload(server, table, secret, between)


@pytest.fixture(scope="module")
def stopped(workload: Workload) -> Workload:
    """dbward stopped with SIGTERM while a session (night-owl's) sits idle: the drain ends
    it, so the trail's last record is written during shutdown."""
    server = workload.server
    with psycopg.connect(server.dsn("night-owl"), autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        stop_dbward(server)
    assert server.proc.returncode == 0, server.log()[-3000:]
    return workload


@pytest.fixture
def pristine_store(stopped: Workload, tmp_path: Path) -> Iterator[None]:
    """The stopped store copied aside, and put back after the test has tampered with it."""
    path = store_path(stopped.server)
    files = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]
    saved = {f: tmp_path / f"saved{f.name}" for f in files if f.exists()}
    for original, copy in saved.items():
        shutil.copy2(original, copy)
    yield
    for f in files:
        f.unlink(missing_ok=True)
    for original, copy in saved.items():
        shutil.copy2(copy, original)


# 1. while running, and after a graceful stop -------------------------------------------


def test_checkpoints_follow_the_head_while_running(workload: Workload) -> None:
    server = workload.server
    assert server.proc.poll() is None, "dbward is not running"
    time.sleep(2 * CHECKPOINT_INTERVAL + 0.1)
    report = verify_json(server)
    assert report["ok"] is True, report
    chain = chain_report(report, SERVER_CHAIN)
    # 3 sessions: their starts and ends, and 8 statements
    assert chain["last_seq"] == chain["records"] == 14, report
    assert chain["signed_seq"] == chain["last_seq"], report
    assert chain["checkpoints"] >= 2, report  # periodic ones, while running
    assert chain["unsigned"] == 0, report
    assert chain_report(report, CLI_CHAIN)["signed_seq"] == 1, report  # token.created

    journal = journal_bytes(server)
    assert workload.table.encode() in journal  # the journal holds the records...
    assert EMAIL.encode() not in journal  # ...no PII
    assert OTHER_EMAIL.encode() not in journal
    assert b"ada.lovelace" not in journal


def test_verify_after_a_graceful_stop(stopped: Workload) -> None:
    server = stopped.server
    result = verify(server)
    assert result.returncode == 0, describe(result)
    said = text_of(result)
    assert "verified" in said, said
    assert "TAMPERED" not in said, said
    assert SERVER_CHAIN in said, said
    assert CLI_CHAIN in said, said

    report = verify_json(server)
    assert report["ok"] is True, report
    assert report["first_problem"] is None, report
    chain = chain_report(report, SERVER_CHAIN)
    assert chain["last_seq"] == 17, report  # + night-owl's session, ended by the drain
    assert chain["signed_seq"] == chain["last_seq"], report  # the shutdown checkpoint
    cli = chain_report(report, CLI_CHAIN)
    assert cli["signed_seq"] == cli["last_seq"] == 1, report
    assert report["records"] == 18, report

    last = json.loads(rows_of(server, SERVER_CHAIN)[-1][2])
    assert last[3] == "connection.end", last
    assert last[5] == "night-owl", last
    assert "shutting down" in last[9]["reason"], last

    tail = cli_ok(server, "audit", "tail", "-n", "2", "--json").stdout.splitlines()
    assert [(r["kind"], r["identity"]) for r in map(json.loads, tail)] == [
        ("statement", "night-owl"),
        ("connection.end", "night-owl"),
    ], tail


# 2. tampering with the store -----------------------------------------------------------


def test_a_modified_record_is_found(stopped: Workload, pristine_store: None) -> None:
    server = stopped.server
    seq = seq_of(server, f"UPDATE {stopped.table}")

    def change(db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE records SET line = replace(line, 'UPDATE', 'SELECT')"
            " WHERE chain = ? AND seq = ?",
            (SERVER_CHAIN, seq),
        )

    tamper(server, change)
    assert_tampered(verify(server), f"record {SERVER_CHAIN}#{seq}", "modified")
    report = verify_json(server)
    assert report["first_problem"]["kind"] == "modified", report
    assert (report["first_problem"]["chain"], report["first_problem"]["seq"]) == (SERVER_CHAIN, seq)


def test_a_deleted_record_is_found(stopped: Workload, pristine_store: None) -> None:
    server = stopped.server
    seq = seq_of(server, f"UPDATE {stopped.table}")
    tamper(
        server,
        lambda db: db.execute(
            "DELETE FROM records WHERE chain = ? AND seq = ?", (SERVER_CHAIN, seq)
        ),
    )
    assert_tampered(
        verify(server), f"record {SERVER_CHAIN}#{seq}", "deleted", f"record(s) {seq} are missing"
    )


def test_a_cut_tail_is_found(stopped: Workload, pristine_store: None) -> None:
    server = stopped.server
    last = rows_of(server, SERVER_CHAIN)[-1][0]
    tamper(
        server,
        lambda db: db.execute(
            "DELETE FROM records WHERE chain = ? AND seq > ?", (SERVER_CHAIN, last - 2)
        ),
    )
    assert_tampered(
        verify(server),
        f"record {SERVER_CHAIN}#{last - 1}",
        "truncated",
        f"{last - 1}..{last} were removed",
    )


def test_swapped_records_are_found(stopped: Workload, pristine_store: None) -> None:
    server = stopped.server
    first = seq_of(server, f"SELECT email FROM {stopped.table}")
    second = seq_of(server, f"UPDATE {stopped.table}")
    rows = {seq: (digest, line) for seq, digest, line in rows_of(server, SERVER_CHAIN)}

    def swap(db: sqlite3.Connection) -> None:
        for seq, other in ((first, second), (second, first)):
            db.execute(
                "UPDATE records SET hash = ?, line = ? WHERE chain = ? AND seq = ?",
                (*rows[other], SERVER_CHAIN, seq),
            )

    tamper(server, swap)
    said = assert_tampered(verify(server), f"record {SERVER_CHAIN}#{first}")
    assert "reordered" in said or "modified" in said, said


def test_a_forged_record_with_a_wrong_hash_is_found(
    stopped: Workload, pristine_store: None
) -> None:
    server = stopped.server
    last_seq, _, last_line = rows_of(server, SERVER_CHAIN)[-1]
    item = json.loads(last_line)
    item[1], item[3] = last_seq + 1, "statement"
    item[9] = {"statement": "SELECT 1", "rows": 1, "decision": "allow"}
    forged = encode_line(item)
    tamper(
        server,
        lambda db: db.execute(
            "INSERT INTO records (chain, seq, hash, line) VALUES (?, ?, ?, ?)",
            (SERVER_CHAIN, last_seq + 1, hashlib.sha256(forged.encode()).hexdigest(), forged),
        ),
    )
    assert_tampered(verify(server), f"record {SERVER_CHAIN}#{last_seq + 1}", "modified")


def test_a_forged_record_rechained_into_the_middle_is_found(
    stopped: Workload, pristine_store: None
) -> None:
    """The forger inserts a record and recomputes every later line and hash: only the
    signed checkpoints can tell, at the first one after the insertion."""
    server = stopped.server
    rows = rows_of(server, SERVER_CHAIN)
    at = seq_of(server, f"UPDATE {stopped.table}")
    template = json.loads(rows[at - 1][2])
    template[9] = {**template[9], "statement": f"SELECT note FROM {stopped.table}"}
    lines = [json.loads(line) for _, _, line in rows[at - 1 :]]
    rewritten = [template, *lines]
    previous = bytes.fromhex(rows[at - 2][1])
    new_rows = []
    for seq, item in enumerate(rewritten, at):
        item[1] = seq
        line = encode_line(item)
        digest = relink(previous, line)
        new_rows.append((SERVER_CHAIN, seq, digest, line))
        previous = bytes.fromhex(digest)

    db = sqlite3.connect(store_path(server))
    try:
        signed = [
            s for (s,) in db.execute("SELECT seq FROM checkpoints WHERE chain = ?", (SERVER_CHAIN,))
        ]
    finally:
        db.close()
    first_pinned = min(s for s in signed if s >= at)

    def rechain(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM records WHERE chain = ? AND seq >= ?", (SERVER_CHAIN, at))
        db.executemany("INSERT INTO records (chain, seq, hash, line) VALUES (?, ?, ?, ?)", new_rows)

    tamper(server, rechain)
    said = assert_tampered(verify(server), f"record {SERVER_CHAIN}#{first_pinned}", "modified")
    assert "signed" in said, said


def test_a_forged_record_appended_after_the_last_checkpoint_is_flagged(
    stopped: Workload, pristine_store: None
) -> None:
    """Correctly chained but never signed: after a graceful stop every record is signed,
    so a record beyond the last checkpoint must at least be reported."""
    server = stopped.server
    last_seq, last_hash, last_line = rows_of(server, SERVER_CHAIN)[-1]
    item = json.loads(last_line)
    item[1], item[3] = last_seq + 1, "statement"
    item[9] = {"statement": "SELECT 1", "rows": 1, "decision": "allow"}
    forged = encode_line(item)
    digest = relink(bytes.fromhex(last_hash), forged)
    tamper(
        server,
        lambda db: db.execute(
            "INSERT INTO records (chain, seq, hash, line) VALUES (?, ?, ?, ?)",
            (SERVER_CHAIN, last_seq + 1, digest, forged),
        ),
    )
    report = verify_json(server)
    chain = chain_report(report, SERVER_CHAIN)
    assert not report["ok"] or chain["unsigned"] == 1, report
    said = text_of(verify(server))
    assert "TAMPERED" in said or "not yet signed" in said, said


def test_restored_store_verifies_again(stopped: Workload) -> None:
    """The tampering above was undone: the rest of the module reads the real trail."""
    assert verify(stopped.server).returncode == 0


# 3. export bundles ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(stopped: Workload, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle, pub.pem) as an auditor receives them."""
    server = stopped.server
    where = tmp_path_factory.mktemp("bundle")
    pem = where / "pub.pem"
    pem.write_text(cli_ok(server, "audit", "pubkey").stdout)  # dbward audit pubkey > pub.pem
    text = pem.read_text()
    assert text.startswith("-----BEGIN PUBLIC KEY-----\n"), text
    assert text.endswith("-----END PUBLIC KEY-----\n"), text  # nothing else on stdout
    path = where / "b.jsonl"
    cli_ok(server, "audit", "export", "--format", "bundle", "-o", str(path))
    return path, pem


def bundle_variant(path: Path, change: Callable[[list[str]], list[str]]) -> Path:
    lines = path.read_text().splitlines(keepends=True)
    changed = path.with_name(f"changed-{unique('b')}.jsonl")
    changed.write_text("".join(change(lines)))
    return changed


def record_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if '"line":' in line]


def edit_statement(lines: list[str]) -> list[str]:
    for i, raw in enumerate(lines):
        item = json.loads(raw)
        if "UPDATE" in item.get("line", ""):
            item["line"] = item["line"].replace("UPDATE", "SELECT")
            lines[i] = json.dumps(item, sort_keys=True) + "\n"
            return lines
    raise AssertionError("no UPDATE record in the bundle")


def delete_a_record(lines: list[str]) -> list[str]:
    del lines[record_lines(lines)[3]]
    return lines


def swap_two_records(lines: list[str]) -> list[str]:
    a, b = record_lines(lines)[2:4]
    lines[a], lines[b] = lines[b], lines[a]
    return lines


def test_a_bundle_verifies_with_the_public_key(
    stopped: Workload, bundle: tuple[Path, Path]
) -> None:
    path, pem = bundle
    lines = path.read_text().splitlines()
    header, last = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "dbward-audit-bundle", header
    assert header["chains"][SERVER_CHAIN]["records"] == 17, header
    assert "signature" in last, last
    assert "sha256" in last, last
    result = verify(stopped.server, "--file", str(path), "--public-key", str(pem))
    assert result.returncode == 0, describe(result)
    assert "verified" in text_of(result), describe(result)
    report = verify_json(stopped.server, "--file", str(path), "--public-key", str(pem))
    assert report["ok"] is True, report
    assert chain_report(report, SERVER_CHAIN)["signed_seq"] == 17, report


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(edit_statement, "signature", id="edited-line"),
        pytest.param(delete_a_record, "signature", id="deleted-line"),
        pytest.param(swap_two_records, "signature", id="reordered-lines"),
        pytest.param(lambda lines: lines[:-1], "truncated", id="last-line-dropped"),
        pytest.param(lambda lines: lines[:-3], "truncated", id="tail-cut"),
    ],
)
def test_a_changed_bundle_is_refused(
    stopped: Workload,
    bundle: tuple[Path, Path],
    change: Callable[[list[str]], list[str]],
    problem: str,
) -> None:
    path, pem = bundle
    changed = bundle_variant(path, change)
    assert changed.read_text() != path.read_text()
    assert_tampered(
        verify(stopped.server, "--file", str(changed), "--public-key", str(pem)), problem
    )


def another_key(where: Path) -> Path:
    """The public half of a fresh Ed25519 key, as PEM: a key dbward never signed with."""
    path = where / "other.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def test_a_bundle_checked_with_another_key_is_refused(
    stopped: Workload, bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    path, _ = bundle
    other = another_key(tmp_path)
    assert_tampered(
        verify(stopped.server, "--file", str(path), "--public-key", str(other)),
        "signature",
        "another key",
    )


def test_the_store_checked_with_another_key_is_refused(
    stopped: Workload, bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    server, (_, pem) = stopped.server, bundle
    other = another_key(tmp_path)
    assert_tampered(
        verify(server, "--public-key", str(other)), "signature", "not among the trusted keys"
    )
    result = verify(server, "--public-key", str(other), "--public-key", str(pem))
    assert result.returncode == 0, describe(result)


def test_a_bundle_needs_a_public_key(stopped: Workload, bundle: tuple[Path, Path]) -> None:
    path, _ = bundle
    result = verify(stopped.server, "--file", str(path))
    assert result.returncode == 2, describe(result)
    assert "--public-key" in text_of(result), describe(result)


def test_a_bundle_takes_only_a_time_range(stopped: Workload, tmp_path: Path) -> None:
    result = run_cli(
        stopped.server,
        "audit", "export", "--format", "bundle", "--identity", "app-svc",
        "-o", str(tmp_path / "b.jsonl"),
    )  # fmt: skip
    assert result.returncode == 2, describe(result)
    assert "--since and --until" in text_of(result), describe(result)


def test_a_refused_export_leaves_the_output_file_alone(stopped: Workload, tmp_path: Path) -> None:
    kept = tmp_path / "november.bundle"
    kept.write_text("an earlier bundle\n")
    result = run_cli(
        stopped.server, "audit", "export", "--format", "bundle", "--identity", "app-svc",
        "-o", str(kept),
    )  # fmt: skip
    assert result.returncode == 2, describe(result)
    assert kept.read_text() == "an earlier bundle\n"


# 4. lineage ----------------------------------------------------------------------------


def test_who_touched_a_pii_column(stopped: Workload) -> None:
    """Read: SELECT email and SELECT *; the refused DELETE and the failed SELECT touched
    nothing; written: by the CREATE TABLE and the INSERT (every column); the agent's
    count(*) named no column."""
    server = stopped.server
    rows = touched(server, "who-touched", f"{stopped.table}.email")
    assert set(rows) == {("app-svc", "read"), ("app-svc", "write")}, rows
    read = rows[("app-svc", "read")]
    assert read["identity_kind"] == "service"
    assert (read["statements"], read["rows"], read["masked"]) == (2, 3, 2), read
    assert rows[("app-svc", "write")]["statements"] == 2, rows
    assert touched(server, "who-touched", f"{stopped.qualified}.email") == rows


def test_who_touched_a_table(stopped: Workload) -> None:
    rows = touched(stopped.server, "who-touched", stopped.table)
    assert set(rows) == {("app-svc", "read"), ("app-svc", "write"), ("helper-bot", "read")}
    assert rows[("app-svc", "write")]["statements"] == 3, rows  # CREATE, INSERT, UPDATE
    assert rows[("helper-bot", "read")]["identity_kind"] == "agent", rows
    assert rows[("helper-bot", "read")]["statements"] == 1, rows


def test_touched_by_an_identity(stopped: Workload) -> None:
    rows = touched(stopped.server, "touched-by", "app-svc")
    assert set(rows) == {(stopped.qualified, "read"), (stopped.qualified, "write")}, rows
    assert rows[(stopped.qualified, "read")]["columns"] == ["*", "email", "id"], rows
    assert {"*", "note"} <= set(rows[(stopped.qualified, "write")]["columns"]), rows
    assert rows[(stopped.qualified, "write")]["statements"] == 3, rows
    agent = touched(stopped.server, "touched-by", "helper-bot")
    assert set(agent) == {(stopped.qualified, "read")}, agent
    assert agent[(stopped.qualified, "read")]["columns"] == [], agent


def test_an_update_reads_its_where_columns(stopped: Workload) -> None:
    rows = touched(stopped.server, "who-touched", f"{stopped.table}.id")
    # read: SELECT email ... WHERE id, SELECT *, UPDATE ... WHERE id
    assert rows[("app-svc", "read")]["statements"] == 3, rows
    # written: CREATE TABLE and INSERT (every column); the UPDATE set only note
    assert rows[("app-svc", "write")]["statements"] == 2, rows


def test_lineage_time_range(stopped: Workload) -> None:
    server, table = stopped.server, stopped.table
    assert touched(server, "who-touched", f"{table}.email", "--since", "1h")
    assert touched(server, "who-touched", f"{table}.email", "--since", "2099-01-01") == {}
    assert touched(server, "who-touched", table, "--until", "2000-01-01") == {}
    assert touched(server, "touched-by", "app-svc", "--since", "2099-01-01T00:00") == {}
    assert touched(server, "touched-by", "app-svc", "--until", "2000-01-01") == {}
    # only the agent's statement came after ``between``
    later = touched(server, "who-touched", table, "--since", iso(stopped.between))
    assert set(later) == {("helper-bot", "read")}, later


# 5. search -----------------------------------------------------------------------------


def app_svc_statements(table: str) -> list[str]:
    return [
        f"CREATE TABLE {table} (id int PRIMARY KEY, email text, note text)",
        f"INSERT INTO {table} VALUES ($1, $2, $3), ($4, $5, $6)",
        f"SELECT * FROM {table} ORDER BY id",
        f"SELECT email FROM {table} WHERE id = $1",
        f"UPDATE {table} SET note = $1 WHERE id = $2",
        f"DELETE FROM {table}",
        f"SELECT email, id / $1 FROM {table}",
    ]


def test_search_by_identity_and_group(stopped: Workload) -> None:
    server, table = stopped.server, stopped.table
    found = search(server, "--identity", "app-svc")
    session = ["connection.start"] + ["statement"] * 3 + ["connection.end"]
    other = ["connection.start"] + ["statement"] * 4 + ["connection.end"]
    assert kinds(found) == session + other, found
    assert texts(found) == app_svc_statements(table), found
    assert {r["identity"] for r in found} == {"app-svc"}
    assert search(server, "--group", "eng") == found

    bot = search(server, "--group", "bots")
    assert kinds(bot) == ["connection.start", "statement", "connection.end"], bot
    assert texts(bot) == [f"SELECT count(*) FROM {table}"], bot
    assert {r["identity"] for r in bot} == {"helper-bot"}
    assert search(server, "--kind", "agent") == bot
    assert search(server, "--identity", "nobody") == []


def test_search_by_decision_table_and_text(stopped: Workload) -> None:
    server, table = stopped.server, stopped.table
    [denied] = search(server, "--decision", "deny")
    assert denied["data"]["statement"] == f"DELETE FROM {table}", denied
    assert denied["data"]["rule"] == UNBOUNDED, denied
    assert denied["identity"] == "app-svc"

    statements = app_svc_statements(table)
    assert texts(search(server, "--table", table)) == [
        *statements[:5],
        f"SELECT count(*) FROM {table}",
    ]  # the refused DELETE and the failed SELECT touched nothing
    assert texts(search(server, "--table", f"public.{table}", "--identity", "helper-bot")) == [
        f"SELECT count(*) FROM {table}"
    ]
    assert search(server, "--table", unique("nosuch")) == []

    [failed] = search(server, "--text", "division by zero")
    assert failed["data"]["statement"] == statements[6], failed
    assert failed["data"]["sqlstate"] == "22012", failed
    assert texts(search(server, "--text", f"update {table}")) == [statements[4]]
    assert search(server, "--decision", "review") == []


def test_a_table_name_is_not_a_pattern(stopped: Workload) -> None:
    lookalike = stopped.table[:-1] + "_"  # people_1a2b3_: no such table
    assert search(stopped.server, "--table", lookalike) == []


def test_search_by_event_and_time(stopped: Workload) -> None:
    server = stopped.server
    starts = search(server, "--event", "connection.start")
    assert [r["identity"] for r in starts] == ["app-svc", "app-svc", "helper-bot", "night-owl"]
    assert {r["data"]["environment"] for r in starts} == {"production"}
    [created] = search(server, "--event", "token.created")
    assert created["data"]["name"] == "helper-bot"
    assert created["data"]["kind"] == "agent"

    everything = search(server, "--since", "1h")
    assert [r["id"] for r in everything] == store_ids(server)
    assert search(server, "--since", "2099-01-01") == []
    assert search(server, "--until", "2000-01-01") == []
    between = iso(stopped.between)
    later = search(server, "--event", "connection.start", "--since", between)
    assert [r["identity"] for r in later] == ["helper-bot", "night-owl"], later
    earlier = search(server, "--event", "connection.start", "--until", between)
    assert [r["identity"] for r in earlier] == ["app-svc", "app-svc"], earlier
    assert len(search(server, "--since", "1h", "-n", "3")) == 3


# 6. exports ----------------------------------------------------------------------------


def export(server: Dbward, fmt: str, where: Path, *filters: str) -> str:
    path = where / f"export.{fmt}"
    result = cli_ok(server, "audit", "export", "--format", fmt, "-o", str(path), *filters)
    assert f"as {fmt}" in text_of(result), describe(result)
    return path.read_text(encoding="utf-8")


def assert_no_pii(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in (EMAIL, OTHER_EMAIL, "ada.lovelace", "grace.hopper"):
        assert secret.encode() not in data, f"{secret} found in {where}"


def test_exports_hold_no_pii_and_are_themselves_recorded(
    stopped: Workload, bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    server, table = stopped.server, stopped.table
    records = len(store_ids(server))
    cli_before = chain_report(verify_json(server), CLI_CHAIN)
    exported_before = search(server, "--event", "audit.exported")

    raw = {fmt: export(server, fmt, tmp_path) for fmt in ("jsonl", "csv", "ocsf")}
    jsonl = [json.loads(line) for line in raw["jsonl"].splitlines()]
    assert len(jsonl) == records
    by_place = {(r["chain"], r["seq"]): r for r in jsonl}
    assert len(by_place) == records
    assert all(len(r["hash"]) == 64 for r in jsonl)
    [read] = [r for r in jsonl if r["data"].get("statement", "").startswith("SELECT email FROM")]
    assert read["chain"] == SERVER_CHAIN
    assert read["identity"] == "app-svc"
    assert read["data"]["masked"]["values"] == 1, read

    reader = csv.DictReader(io.StringIO(raw["csv"]))
    assert reader.fieldnames == CSV_HEADER
    rows = list(reader)
    assert len(rows) == records + 1  # and the jsonl export's record
    [deleted] = [r for r in rows if r["statement"] == f"DELETE FROM {table}"]
    assert (deleted["decision"], deleted["rule"], deleted["sqlstate"]) == (
        "deny",
        UNBOUNDED,
        "42501",
    )
    assert deleted["tables_written"] == ""  # refused: nothing written
    [masked] = [r for r in rows if r["statement"].startswith("SELECT email FROM")]
    assert masked["masked_values"] == "1", masked
    assert masked["tables_read"] == stopped.qualified, masked
    assert {r["chain"] for r in rows} == {SERVER_CHAIN, CLI_CHAIN}

    ocsf = [json.loads(line) for line in raw["ocsf"].splitlines()]
    assert len(ocsf) == records + 2
    ts = {f"{r['chain']}#{r['seq']}": r["ts"] for r in jsonl}
    for event in ocsf:
        assert event["class_uid"] in (6005, 3002), event
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"], event
        assert event["metadata"]["version"], event
        assert event["actor"]["user"]["name"], event
        uid = event["metadata"]["uid"]
        if uid in ts:
            assert event["time"] == int(ts[uid] * 1000), event
    logons = [e for e in ocsf if e["class_uid"] == 3002]
    assert sorted(e["activity_id"] for e in logons) == [1] * 4 + [2] * 4, logons
    [blocked] = [e for e in ocsf if e.get("disposition") == "Blocked"]
    assert blocked["actor"]["user"]["name"] == "app-svc", blocked

    for fmt, text in raw.items():
        assert_no_pii(text, f"the {fmt} export")
    assert_no_pii(bundle[0].read_bytes(), "the bundle")
    assert_no_pii(store_bytes(server), "audit.db")

    exported = search(server, "--event", "audit.exported")
    assert exported[: len(exported_before)] == exported_before
    new = exported[len(exported_before) :]
    assert [r["data"]["format"] for r in new] == ["jsonl", "csv", "ocsf"], new
    assert [r["data"]["records"] for r in new] == [records, records + 1, records + 2], new
    assert {(r["source"], r["session_id"]) for r in new} == {("cli", "cli")}, new
    assert all(r["identity"].startswith("os:") for r in new), new

    report = verify_json(server)
    assert report["ok"] is True, report
    cli = chain_report(report, CLI_CHAIN)
    assert cli["last_seq"] == cli_before["last_seq"] + 3, report
    assert cli["signed_seq"] == cli["last_seq"], report  # each action checkpointed at once
    placed = export(server, "jsonl", tmp_path, "--event", "audit.exported")
    chains = {json.loads(line)["chain"] for line in placed.splitlines()}
    assert chains == {CLI_CHAIN}, placed


# 7. operator actions -------------------------------------------------------------------


def test_token_records_hold_no_secret(stopped: Workload) -> None:
    server = stopped.server
    revoked = cli_ok(server, "token", "revoke", "helper-bot")
    assert "revoked" in text_of(revoked)
    [created] = search(server, "--event", "token.created")
    [gone] = search(server, "--event", "token.revoked")
    assert created["data"]["token"] == gone["data"]["token"]
    assert gone["data"]["name"] == "helper-bot", gone
    assert gone["identity"].startswith("os:"), gone
    assert stopped.agent_secret not in json.dumps([created, gone])

    secret = stopped.agent_secret.encode()
    assert secret not in store_bytes(server)
    assert secret.split(b"_", 1)[1] not in store_bytes(server)
    assert secret not in server.log_path.read_bytes()
    assert verify(server).returncode == 0
