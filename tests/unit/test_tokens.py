"""Service and agent tokens in SQLite."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.models import Identity, IdentityKind
from dbward.identity.tokens import TokenRecord, TokenStore, TokenStoreError, parse_ttl

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> TokenStore:
    return TokenStore(tmp_path / "state" / "tokens.db", clock=clock)


def _stored_bytes(path: Path) -> bytes:
    """The database file and its WAL and shared-memory files, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


# -- create --------------------------------------------------------------------------------


def test_create_returns_token_once_and_stores_only_its_digest(
    store: TokenStore, clock: Clock
) -> None:
    token, record = store.create("etl-nightly", IdentityKind.SERVICE, ["etl", "reader"], 30 * DAY)
    assert re.fullmatch(r"dbw_[A-Za-z0-9_-]{43}", token)
    assert re.fullmatch(r"tok_[0-9a-f]{8}", record.id)
    assert record == TokenRecord(
        id=record.id,
        name="etl-nightly",
        kind=IdentityKind.SERVICE,
        groups=("etl", "reader"),
        created_at=clock.now,
        expires_at=clock.now + 30 * DAY,
        revoked_at=None,
    )
    on_disk = _stored_bytes(store.path)
    assert token.encode() not in on_disk
    assert token[4:].encode() not in on_disk
    with sqlite3.connect(store.path) as db:
        (digest,) = db.execute("SELECT digest FROM tokens WHERE id = ?", (record.id,)).fetchone()
        dump = "\n".join(db.iterdump())
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in dump
    assert token[4:] not in dump


def test_tokens_are_all_different(store: TokenStore) -> None:
    tokens = {store.create(f"svc-{n}", IdentityKind.SERVICE, [], None)[0] for n in range(20)}
    assert len(tokens) == 20


def test_file_is_private_and_parent_is_created(store: TokenStore) -> None:
    assert store.path.parent.is_dir()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.create("svc", IdentityKind.SERVICE, [], None)
    for companion in store.path.parent.glob(store.path.name + "-*"):
        assert stat.S_IMODE(companion.stat().st_mode) & 0o077 == 0


def test_unopenable_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(TokenStoreError, match="cannot open the token store"):
        TokenStore(tmp_path / "file" / "tokens.db")


def test_human_tokens_are_refused(store: TokenStore) -> None:
    with pytest.raises(TokenStoreError, match="people sign in with their identity provider"):
        store.create("ada", IdentityKind.HUMAN, [], None)


def test_duplicate_active_name_is_refused(store: TokenStore) -> None:
    _, first = store.create("agent-1", IdentityKind.AGENT, [], None)
    with pytest.raises(TokenStoreError) as caught:
        store.create("agent-1", IdentityKind.AGENT, [], None)
    assert str(caught.value) == (
        f"a token named 'agent-1' already exists ({first.id}, active); "
        "revoke it first with `dbward token revoke agent-1`"
    )
    store.revoke("agent-1")
    _, second = store.create("agent-1", IdentityKind.AGENT, [], None)
    assert second.id != first.id


def test_expired_token_still_holds_its_name(store: TokenStore, clock: Clock) -> None:
    store.create("svc", IdentityKind.SERVICE, [], 60)
    clock.now += 120
    with pytest.raises(TokenStoreError, match=r"already exists \(tok_[0-9a-f]+, expired on "):
        store.create("svc", IdentityKind.SERVICE, [], 60)


@pytest.mark.parametrize("name", ["", " svc", "svc name", "-svc", "tok_12345678", "x" * 64, "a;b"])
def test_invalid_names(store: TokenStore, name: str) -> None:
    with pytest.raises(TokenStoreError, match="invalid token name"):
        store.create(name, IdentityKind.SERVICE, [], None)


def test_invalid_groups_and_ttl(store: TokenStore) -> None:
    with pytest.raises(TokenStoreError, match="invalid group names"):
        store.create("svc", IdentityKind.SERVICE, ["two words"], None)
    with pytest.raises(TokenStoreError, match="not one string"):
        store.create("svc", IdentityKind.SERVICE, "etl", None)
    with pytest.raises(TokenStoreError, match="must be positive"):
        store.create("svc", IdentityKind.SERVICE, [], 0)


# -- verify --------------------------------------------------------------------------------


def test_verify_gives_identity(store: TokenStore, clock: Clock) -> None:
    token, record = store.create("report-bot", IdentityKind.AGENT, ["analytics"], 3600)
    assert store.verify(token, "report-bot") == Identity(
        name="report-bot",
        kind=IdentityKind.AGENT,
        groups=("analytics",),
        provider="token",
        subject=record.id,
        expires_at=clock.now + 3600,
        token_id=record.id,
    )


def test_verify_checks_user_name(store: TokenStore) -> None:
    token, _ = store.create("report-bot", IdentityKind.AGENT, [], None)
    with pytest.raises(AuthorizationError) as caught:
        store.verify(token, "postgres")
    assert caught.value.sqlstate == "28000"
    assert "token was issued to 'report-bot', not 'postgres'" in str(caught.value)
    assert token not in str(caught.value)


@pytest.mark.parametrize("token", ["dbw_" + "A" * 43, "dbw_short", "password", ""])
def test_unknown_token(store: TokenStore, token: str) -> None:
    store.create("svc", IdentityKind.SERVICE, [], None)
    with pytest.raises(AuthenticationError, match=r"^unknown token") as caught:
        store.verify(token, "svc")
    assert caught.value.sqlstate == "28P01"


def test_expired_token(store: TokenStore, clock: Clock) -> None:
    token, _ = store.create("svc", IdentityKind.SERVICE, [], parse_ttl("1h"))
    clock.now += 3599
    store.verify(token, "svc")
    clock.now += 1
    with pytest.raises(AuthenticationError) as caught:
        store.verify(token, "svc")
    assert str(caught.value).startswith("token expired on 2023-11-14 23:13:20 UTC")
    assert token not in str(caught.value)


def test_revoke_by_name_and_by_id(store: TokenStore, clock: Clock) -> None:
    first, first_record = store.create("one", IdentityKind.SERVICE, [], None)
    second, second_record = store.create("two", IdentityKind.SERVICE, [], None)
    clock.now += 10
    revoked = store.revoke("one")
    assert revoked.id == first_record.id
    assert revoked.revoked_at == clock.now
    assert store.revoke(second_record.id).name == "two"
    for token, name in ((first, "one"), (second, "two")):
        with pytest.raises(AuthenticationError, match=r"^token revoked on 2023-11-14 22:13:30 UTC"):
            store.verify(token, name)


def test_revoke_unknown_or_twice(store: TokenStore) -> None:
    with pytest.raises(TokenStoreError, match="no active token has the name or id 'ghost'"):
        store.revoke("ghost")
    store.create("svc", IdentityKind.SERVICE, [], None)
    store.revoke("svc")
    with pytest.raises(TokenStoreError, match="'svc' was already revoked on"):
        store.revoke("svc")


def test_list(store: TokenStore, clock: Clock) -> None:
    store.create("a", IdentityKind.SERVICE, [], None)
    clock.now += 1
    store.create("b", IdentityKind.AGENT, ["g"], None)
    clock.now += 1
    store.revoke("a")
    assert [r.name for r in store.list()] == ["b"]
    everything = store.list(include_revoked=True)
    assert [(r.name, r.revoked_at is not None) for r in everything] == [("a", True), ("b", False)]


def test_two_stores_share_one_file(tmp_path: Path, clock: Clock) -> None:
    """Several dbward processes open the same file: changes are seen by all of them."""
    path = tmp_path / "tokens.db"
    with TokenStore(path, clock=clock) as cli, TokenStore(path, clock=clock) as proxy:
        token, _ = cli.create("svc", IdentityKind.SERVICE, [], None)
        assert proxy.verify(token, "svc").name == "svc"
        cli.revoke("svc")
        with pytest.raises(AuthenticationError, match="token revoked"):
            proxy.verify(token, "svc")
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopened_store_keeps_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    with TokenStore(path) as store:
        token, _ = store.create("svc", IdentityKind.SERVICE, ["x"], None)
    with TokenStore(path) as store:
        assert store.verify(token, "svc").groups == ("x",)


# -- parse_ttl -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 12 * 3600),
        ("90m", 90 * 60),
        ("3600s", 3600),
        ("2w", 14 * DAY),
        ("3600", 3600),
        (" 1.5h ", 5400),
        ("7D", 7 * DAY),
    ],
)
def test_parse_ttl(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0d", "-5m", "10y", "d", "1 day", "1h30m", "abc"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="give a positive number with a unit, like 30d"):
        parse_ttl(text)
