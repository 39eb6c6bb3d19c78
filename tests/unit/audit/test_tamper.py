"""Tampering with a stored trail, the way someone with write access to the SQLite file could,
and what verification says about it: the kind of change and the first record it touches.

One trail is written through AuditWriter (RECORDS statements, a signed checkpoint
every CHECKPOINT_EVERY records); each test changes a copy of it with plain sqlite3.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from dbward.audit.chain import GENESIS, event_line, link
from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.signing import Signer
from dbward.audit.store import SqliteAuditStore
from dbward.audit.verify import ChainReport, Problem, verify_store
from dbward.audit.writer import AuditWriter

SIGNER = Signer(b"tamper-test audit seed")
FORGER = Signer(b"someone else's seed")
CHAIN = "proxy-0"
RECORDS = 200
CHECKPOINT_EVERY = 40
SIGNED = list(range(CHECKPOINT_EVERY, RECORDS + 1, CHECKPOINT_EVERY))  # 40, 80, ... 200


def _statement(i: int) -> AuditEvent:
    return AuditEvent(
        EventKind.STATEMENT,
        f"session-{i % 7}",
        identity="dev@example.com",
        identity_kind="human",
        target="app",
        source="127.0.0.1:5000",
        data={"statement": f"SELECT email FROM people WHERE id = {i}", "rows": 1},
        ts=1_700_000_000.0 + i,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untouched trail (the writer stores and signs every CHECKPOINT_EVERY records)."""
    directory = tmp_path_factory.mktemp("trail")

    async def write() -> None:
        writer = AuditWriter(
            SqliteAuditStore(directory / "audit.db"),
            directory / "journal",
            chain=CHAIN,
            signer=SIGNER,
            store_interval=3600,  # only the test stores
            checkpoint_interval=0,  # every store is signed
        )
        for i in range(1, RECORDS + 1):
            writer.record(_statement(i))
            if i % CHECKPOINT_EVERY == 0:
                writer.store_pending()
        await writer.close()

    asyncio.run(write())
    return directory / "audit.db"


@pytest.fixture
def trail(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the trail for one test to tamper with."""
    path = tmp_path / "audit.db"
    shutil.copy(pristine, path)
    return path


@contextmanager
def tamper(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path)) as db:
        yield db
        db.commit()


def report(path: Path, signer: Signer = SIGNER) -> ChainReport:
    store = SqliteAuditStore(path)
    try:
        verification = verify_store(store, signer.public)
    finally:
        store.close()
    (chain,) = verification.chains
    assert verification.first_problem == chain.problem
    return chain


def problem(path: Path, signer: Signer = SIGNER) -> tuple[str, int]:
    """The first problem verification finds, as (kind, seq)."""
    found = report(path, signer).problem
    assert isinstance(found, Problem), "the tampering went unnoticed"
    return found.kind, found.seq


def record(db: sqlite3.Connection, seq: int) -> tuple[int, str, str]:
    """(id, hash, line) of the record at ``seq``."""
    row = db.execute("SELECT id, hash, line FROM records WHERE seq = ?", (seq,)).fetchone()
    return row[0], row[1], row[2]


def hash_before(db: sqlite3.Connection, seq: int) -> bytes:
    return GENESIS if seq == 1 else bytes.fromhex(record(db, seq - 1)[1])


def forge(db: sqlite3.Connection, seq: int) -> None:
    """Change the statement text of record ``seq``, leaving its hash as it was."""
    db.execute(
        "UPDATE records SET line = replace(line, 'FROM people', 'FROM payroll') WHERE seq = ?",
        (seq,),
    )


def rehash_from(db: sqlite3.Connection, seq: int) -> None:
    """Recompute the hashes of record ``seq`` and every later one, as a forger would."""
    previous = hash_before(db, seq)
    rows = db.execute("SELECT id, line FROM records WHERE seq >= ? ORDER BY seq", (seq,))
    for row_id, line in rows.fetchall():
        previous = link(previous, line.encode())
        db.execute("UPDATE records SET hash = ? WHERE id = ?", (previous.hex(), row_id))


def make_room(db: sqlite3.Connection, at_id: int) -> None:
    """Move rows ``at_id`` and later one row on, so a row can be put in at ``at_id``."""
    db.execute("UPDATE records SET id = -id WHERE id >= ?", (at_id,))
    db.execute("UPDATE records SET id = 1 - id WHERE id < 0")


def forged_record(db: sqlite3.Connection, seq: int) -> tuple[str, str]:
    """A line for position ``seq`` and the hash it would have there: (hash, line)."""
    event = AuditEvent(EventKind.STATEMENT, "session-x", data={"statement": "SELECT 'alibi'"})
    line = event_line(CHAIN, seq, event)
    return link(hash_before(db, seq), line.encode()).hex(), line


# --------------------------------------------------------------------------- untouched


def test_an_untouched_trail_verifies_and_is_signed_to_its_end(trail: Path) -> None:
    chain = report(trail)
    assert chain.problem is None
    assert (chain.records, chain.first_seq, chain.last_seq) == (RECORDS, 1, RECORDS)
    assert (chain.signed_seq, chain.checkpoints, chain.unsigned) == (RECORDS, len(SIGNED), 0)
    with tamper(trail) as db:
        assert [r[0] for r in db.execute("SELECT seq FROM checkpoints ORDER BY seq")] == SIGNED


def test_the_trail_is_only_trusted_under_its_own_key(trail: Path) -> None:
    assert problem(trail, FORGER) == ("signature", SIGNED[0])


# --------------------------------------------------------------------------- modified


@pytest.mark.parametrize("seq", [1, 57, 80, RECORDS])
def test_a_changed_line_no_longer_matches_its_hash(trail: Path, seq: int) -> None:
    with tamper(trail) as db:
        forge(db, seq)
    assert problem(trail) == ("modified", seq)


def test_a_line_that_is_not_a_record_is_modified(trail: Path) -> None:
    with tamper(trail) as db:
        db.execute("""UPDATE records SET line = '"gone"' WHERE seq = 57""")  # JSON, no record
    assert problem(trail) == ("modified", 57)


@pytest.mark.parametrize(
    ("seq", "caught_at"),
    [(1, 40), (57, 80), (80, 80), (81, 120), (170, RECORDS), (RECORDS, RECORDS)],
)
def test_a_changed_and_rehashed_chain_is_caught_by_the_next_checkpoint(
    trail: Path, seq: int, caught_at: int
) -> None:
    with tamper(trail) as db:
        forge(db, seq)
        rehash_from(db, seq)
    assert problem(trail) == ("modified", caught_at)


def test_a_rehashed_chain_signed_again_by_another_key_is_caught(trail: Path) -> None:
    with tamper(trail) as db:
        forge(db, 57)
        rehash_from(db, 57)
        checkpoints = db.execute("SELECT seq, ts FROM checkpoints").fetchall()
        for seq, ts in checkpoints:
            forged = FORGER.checkpoint(CHAIN, seq, record(db, seq)[1], ts)
            db.execute(
                "UPDATE checkpoints SET head = ?, key_id = ?, signature = ? WHERE seq = ?",
                (forged.head, forged.key_id, forged.signature, seq),
            )
    assert problem(trail) == ("signature", SIGNED[0])


# --------------------------------------------------------------------------- deleted


@pytest.mark.parametrize("seqs", [(1,), (2,), (57,), (80,), (100, 101, 102)])
def test_a_deleted_record_is_named(trail: Path, seqs: tuple[int, ...]) -> None:
    with tamper(trail) as db:
        db.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in seqs])
    assert problem(trail) == ("deleted", seqs[0])


# --------------------------------------------------------------------------- inserted


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        (57, ("inserted", 57)),  # consistent with the record before: the real 57 comes again
        (80, ("modified", 80)),  # at a signed position: the signed head does not match
    ],
)
def test_a_record_forged_in_before_a_real_one(
    trail: Path, seq: int, expected: tuple[str, int]
) -> None:
    with tamper(trail) as db:
        db.execute("DROP INDEX records_chain_seq")  # the one thing in the way
        at_id = record(db, seq)[0]
        digest, line = forged_record(db, seq)
        make_room(db, at_id)
        db.execute(
            "INSERT INTO records (id, chain, seq, hash, line) VALUES (?, ?, ?, ?, ?)",
            (at_id, CHAIN, seq, digest, line),
        )
    assert problem(trail) == expected


def test_a_record_forged_in_at_the_end_for_an_earlier_place(trail: Path) -> None:
    with tamper(trail) as db:
        db.execute("DROP INDEX records_chain_seq")
        digest, line = forged_record(db, 57)
        db.execute(
            "INSERT INTO records (chain, seq, hash, line) VALUES (?, ?, ?, ?)",
            (CHAIN, 57, digest, line),
        )
    assert problem(trail) == ("inserted", 57)


def test_a_record_added_after_the_last_checkpoint_shows_as_unsigned(trail: Path) -> None:
    # A consistent extension of the chain cannot be told from a real record yet:
    # it is reported as not signed, which a closed writer never leaves behind.
    with tamper(trail) as db:
        digest, line = forged_record(db, RECORDS + 1)
        db.execute(
            "INSERT INTO records (chain, seq, hash, line) VALUES (?, ?, ?, ?)",
            (CHAIN, RECORDS + 1, digest, line),
        )
    chain = report(trail)
    assert chain.problem is None
    assert (chain.last_seq, chain.signed_seq, chain.unsigned) == (RECORDS + 1, RECORDS, 1)


# --------------------------------------------------------------------------- reordered


@pytest.mark.parametrize(("a", "b"), [(100, 101), (30, 150), (1, RECORDS)])
def test_records_swapped_in_their_places_are_reordered(trail: Path, a: int, b: int) -> None:
    with tamper(trail) as db:
        id_a, hash_a, line_a = record(db, a)
        id_b, hash_b, line_b = record(db, b)
        db.execute("UPDATE records SET hash = ?, line = ? WHERE id = ?", (hash_b, line_b, id_a))
        db.execute("UPDATE records SET hash = ?, line = ? WHERE id = ?", (hash_a, line_a, id_b))
    assert problem(trail) == ("reordered", a)


@pytest.mark.parametrize(("a", "b"), [(100, 101), (30, 150)])
def test_rows_swapped_in_the_stored_order_are_detected(trail: Path, a: int, b: int) -> None:
    with tamper(trail) as db:
        id_a, id_b = record(db, a)[0], record(db, b)[0]
        db.execute("UPDATE records SET id = 0 WHERE id = ?", (id_a,))
        db.execute("UPDATE records SET id = ? WHERE id = ?", (id_a, id_b))
        db.execute("UPDATE records SET id = ? WHERE id = 0", (id_b,))
    kind, seq = problem(trail)
    # Record b turns up where a belongs: verification names a, as missing from its place.
    assert seq == a
    assert kind in {"deleted", "reordered"}


def test_a_record_moved_to_another_seq_is_reordered(trail: Path) -> None:
    with tamper(trail) as db:
        db.execute("UPDATE records SET seq = 1000 WHERE seq = 57")
    kind, seq = problem(trail)
    assert kind == "reordered"
    assert seq in {57, 1000}  # its place in the chain, or the place it is stored as


# --------------------------------------------------------------------------- truncated


@pytest.mark.parametrize("first_removed", [1, 79, 151, RECORDS])
def test_a_cut_tail_is_truncated(trail: Path, first_removed: int) -> None:
    with tamper(trail) as db:
        db.execute("DELETE FROM records WHERE seq >= ?", (first_removed,))
    assert problem(trail) == ("truncated", first_removed)


def test_a_cut_tail_with_its_checkpoints_leaves_the_rest_unsigned(trail: Path) -> None:
    # What the checkpoints cannot pin: the tail and its checkpoints removed together
    # verify as a shorter chain, and only ``unsigned`` is left to show it.
    with tamper(trail) as db:
        db.execute("DELETE FROM records WHERE seq > 150")
        db.execute("DELETE FROM checkpoints WHERE seq > 150")
    chain = report(trail)
    assert chain.problem is None
    assert (chain.last_seq, chain.signed_seq, chain.unsigned) == (150, 120, 30)


# --------------------------------------------------------------------------- signature


def _b64_of_zeros() -> str:
    return "A" * 86 + "=="  # 64 zero bytes: well-formed, but no signature


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("head", "00" * 32),
        ("ts", 1.0),
        ("key_id", "0123456789abcdef"),
        ("signature", _b64_of_zeros()),
        ("signature", "not base64!"),
    ],
    ids=["head", "ts", "key_id", "signature", "signature-not-base64"],
)
def test_a_changed_checkpoint_fails_its_signature(trail: Path, column: str, value: object) -> None:
    with tamper(trail) as db:
        db.execute(f"UPDATE checkpoints SET {column} = ? WHERE seq = 120", (value,))
    assert problem(trail) == ("signature", 120)


def test_a_checkpoint_moved_to_another_seq_fails_its_signature(trail: Path) -> None:
    with tamper(trail) as db:
        db.execute("UPDATE checkpoints SET seq = 119 WHERE seq = 120")
    assert problem(trail) == ("signature", 119)


def test_a_checkpoint_signed_by_another_key_fails(trail: Path) -> None:
    with tamper(trail) as db:
        head, ts = db.execute("SELECT head, ts FROM checkpoints WHERE seq = 120").fetchone()
        forged = FORGER.checkpoint(CHAIN, 120, head, ts)
        db.execute(
            "UPDATE checkpoints SET key_id = ?, signature = ? WHERE seq = 120",
            (forged.key_id, forged.signature),
        )
    assert problem(trail) == ("signature", 120)


def test_a_checkpoint_added_by_another_key_fails(trail: Path) -> None:
    with tamper(trail) as db:
        forged = FORGER.checkpoint(CHAIN, 57, record(db, 57)[1], 1.0)
        db.execute(
            "INSERT INTO checkpoints (chain, seq, head, ts, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (forged.chain, forged.seq, forged.head, forged.ts, forged.key_id, forged.signature),
        )
    assert problem(trail) == ("signature", 57)
