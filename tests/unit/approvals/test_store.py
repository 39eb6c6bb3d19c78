"""The SQLite approvals store: requests, atomic updates under concurrent votes, lookups
for held statements and grants, the identity directory, one-time credentials."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dbward.approvals.requests import (
    ApprovalError,
    ApprovalRequest,
    Approver,
    Kind,
    Status,
    approve,
    executed,
)
from dbward.approvals.store import SqliteAccessStore, new_request_id
from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.models import Identity, IdentityKind

T0 = 1_000_000.0
BOB = Approver("bob", ("dba",))
CAROL = Approver("carol", ("dba",))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[SqliteAccessStore]:
    opened = SqliteAccessStore(tmp_path / "access.db", clock=clock)
    yield opened
    opened.close()


def request(**changes: Any) -> ApprovalRequest:
    base = ApprovalRequest(
        id=new_request_id(),
        kind=Kind.STATEMENT,
        status=Status.PENDING,
        requester="alice",
        requester_kind="human",
        connection="app",
        environment="staging",
        created=T0,
        expires=T0 + 600,
        rule="deletes-need-approval",
        approver_groups=("dba",),
        quorum=1,
        statement="DELETE FROM t WHERE id = 1",
        fingerprint="fp-1",
    )
    return replace(base, **changes)


def grant(**changes: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "kind": Kind.ACCESS,
        "status": Status.APPROVED,
        "statement": "",
        "fingerprint": "",
        "role": "write",
        "duration": 3600.0,
        "approved_until": T0 + 3600,
    }
    fields.update(changes)
    return request(**fields)


def identity(name: str, groups: tuple[str, ...] = ("dba",)) -> Identity:
    return Identity(name, IdentityKind.HUMAN, groups, "oidc:https://idp.example", name)


def ids(found: list[ApprovalRequest]) -> list[str]:
    return [r.id for r in found]


# requests ------------------------------------------------------------------------------------


def test_new_request_ids_are_distinct_and_prefixed() -> None:
    made = {new_request_id() for _ in range(200)}
    assert len(made) == 200
    assert all(i.startswith("apr_") and len(i) == 16 for i in made)


def test_add_get_many(store: SqliteAccessStore) -> None:
    one, two = request(), request(parameters=("5",), votes=())
    store.add(one)
    store.add(two)
    assert store.get(one.id) == one
    assert store.get("apr_nope") is None
    assert store.many([one.id, two.id, "apr_nope"]) == {one.id: one, two.id: two}
    assert store.many([]) == {}


def test_add_refuses_a_duplicate_id(store: SqliteAccessStore) -> None:
    one = request()
    store.add(one)
    with pytest.raises(Exception, match="UNIQUE"):
        store.add(one)
    assert store.get(one.id) == one


def test_a_request_survives_reopening_the_file(tmp_path: Path) -> None:
    one = request()
    first = SqliteAccessStore(tmp_path / "a.db")
    first.add(one)
    first.close()
    again = SqliteAccessStore(tmp_path / "a.db")
    try:
        assert again.get(one.id) == one
    finally:
        again.close()


def test_the_file_is_private(store: SqliteAccessStore) -> None:
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_list_filters_and_orders_newest_first(store: SqliteAccessStore) -> None:
    a = request(created=T0 + 1)
    b = request(created=T0 + 2, status=Status.APPROVED, requester="Bob")
    c = request(created=T0 + 3, connection="prod")
    d = grant(created=T0 + 4, requester="ALICE")
    e = request(created=T0 + 5, status=Status.EXPIRED)
    for r in (a, b, c, d, e):
        store.add(r)
    assert ids(store.list()) == [e.id, d.id, c.id, b.id, a.id]
    assert ids(store.list(status=(Status.PENDING,))) == [c.id, a.id]
    assert ids(store.list(status=(Status.PENDING, Status.APPROVED))) == [d.id, c.id, b.id, a.id]
    assert ids(store.list(kind=Kind.ACCESS)) == [d.id]
    assert ids(store.list(kind=Kind.STATEMENT, status=(Status.APPROVED,))) == [b.id]
    assert ids(store.list(requester="alice")) == [e.id, d.id, c.id, a.id]  # any case
    assert ids(store.list(requester="BOB")) == [b.id]
    assert ids(store.list(connection="prod")) == [c.id]
    assert ids(store.list(limit=2)) == [e.id, d.id]
    assert ids(store.list(limit=2, offset=2)) == [c.id, b.id]
    assert store.list(connection="nowhere") == []


def test_update_writes_the_change_back(store: SqliteAccessStore, clock: Clock) -> None:
    one = request()
    store.add(one)
    clock.now = T0 + 1
    after = store.update(one.id, lambda r: approve(r, BOB, clock.now, max_window=60))
    assert after.status is Status.APPROVED
    assert store.get(one.id) == after
    assert ids(store.list(status=(Status.APPROVED,))) == [one.id]


def test_update_of_an_unknown_request(store: SqliteAccessStore) -> None:
    with pytest.raises(ApprovalError, match="there is no approval request 'apr_nope'"):
        store.update("apr_nope", lambda r: r)


def test_update_without_change(store: SqliteAccessStore) -> None:
    one = request()
    store.add(one)
    assert store.update(one.id, lambda r: None) == one
    assert store.update(one.id, lambda r: r) == one
    assert store.get(one.id) == one


def test_a_refused_change_leaves_the_request_alone(store: SqliteAccessStore) -> None:
    one = request()
    store.add(one)
    with pytest.raises(ApprovalError, match="own request"):
        store.update(one.id, lambda r: approve(r, Approver("alice", ("dba",)), T0, max_window=1))
    assert store.get(one.id) == one
    # the store is still usable afterwards (the transaction was rolled back)
    assert store.update(one.id, lambda r: approve(r, BOB, T0, max_window=1)).status is (
        Status.APPROVED
    )


def _vote_at_once(stores: list[SqliteAccessStore], request_id: str) -> list[ApprovalRequest]:
    """bob and carol vote on ``request_id`` at the same moment, each through its own store
    handle (a store shared by two threads, or two processes' handles on one file). Each
    change sleeps while it holds the row, so the other vote arrives meanwhile."""
    barrier = threading.Barrier(2)
    results: list[ApprovalRequest] = []
    errors: list[BaseException] = []
    inside = threading.Event()

    def change(who: Approver) -> Any:
        def apply(r: ApprovalRequest) -> ApprovalRequest:
            inside.set()
            time.sleep(0.1)  # a slow vote: the other one must wait, not overwrite it
            return approve(r, who, T0 + 1, max_window=60)

        return apply

    def run(store: SqliteAccessStore, who: Approver) -> None:
        try:
            barrier.wait(5)
            results.append(store.update(request_id, change(who)))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(stores[0], BOB)),
        threading.Thread(target=run, args=(stores[-1], CAROL)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert inside.is_set()
    return results


@pytest.mark.parametrize("handles", [1, 2], ids=["one-handle", "two-handles"])
def test_two_votes_at_once_both_count(tmp_path: Path, handles: int) -> None:
    stores = [SqliteAccessStore(tmp_path / "access.db") for _ in range(handles)]
    try:
        one = request(quorum=2)
        stores[0].add(one)
        results = _vote_at_once(stores, one.id)
        # one vote saw the other: the quorum was reached exactly once
        assert sorted(r.status.value for r in results) == ["approved", "pending"]
        final = stores[0].get(one.id)
        assert final is not None
        assert final.status is Status.APPROVED
        assert sorted(v.approver for v in final.approvals) == ["bob", "carol"]
        assert stores[-1].get(one.id) == final
    finally:
        for s in stores:
            s.close()


def test_two_handles_execute_a_one_time_approval_once(tmp_path: Path) -> None:
    """Two sessions (two processes) race to use one approval: only one gets it."""
    stores = [SqliteAccessStore(tmp_path / "access.db") for _ in range(2)]
    try:
        one = request(status=Status.APPROVED)
        stores[0].add(one)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def use(store: SqliteAccessStore) -> None:
            barrier.wait(5)
            try:
                store.update(one.id, lambda r: executed(r, T0 + 1))
                outcomes.append("ran")
            except ApprovalError:
                outcomes.append("refused")

        threads = [threading.Thread(target=use, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(outcomes) == ["ran", "refused"]
        final = stores[1].get(one.id)
        assert final is not None
        assert final.status is Status.EXECUTED
        assert final.executions == 1
    finally:
        for s in stores:
            s.close()


# lookups for held statements -----------------------------------------------------------------


def test_usable(store: SqliteAccessStore) -> None:
    once = request(fingerprint="fp-once", status=Status.APPROVED)
    window = request(fingerprint="fp-window", status=Status.APPROVED, approved_until=T0 + 60)
    for r in (
        once,
        window,
        request(fingerprint="fp-pending"),
        request(fingerprint="fp-done", status=Status.EXECUTED, executions=1),
        request(fingerprint="fp-rejected", status=Status.REJECTED),
        request(fingerprint="fp-revoked", status=Status.REVOKED),
    ):
        store.add(r)
    assert store.usable("fp-once", T0 + 10_000) == once
    assert store.usable("fp-window", T0 + 59) == window
    assert store.usable("fp-window", T0 + 60) is None
    for fp in ("fp-pending", "fp-done", "fp-rejected", "fp-revoked", "fp-unknown"):
        assert store.usable(fp, T0 + 1) is None, fp
    store.update(once.id, lambda r: executed(r, T0 + 1))
    assert store.usable("fp-once", T0 + 2) is None


def test_usable_prefers_the_oldest_approval_still_in_force(store: SqliteAccessStore) -> None:
    old_ended = request(fingerprint="fp", status=Status.APPROVED, created=T0, approved_until=T0 + 5)
    older = request(fingerprint="fp", status=Status.APPROVED, created=T0 + 1)
    newer = request(fingerprint="fp", status=Status.APPROVED, created=T0 + 2)
    for r in (newer, old_ended, older):
        store.add(r)
    assert store.usable("fp", T0 + 10) == older


def test_open_for(store: SqliteAccessStore) -> None:
    older = request(fingerprint="fp", created=T0)
    newer = request(fingerprint="fp", created=T0 + 1)
    store.add(older)
    store.add(newer)
    store.add(request(fingerprint="fp", created=T0 + 2, status=Status.APPROVED))
    store.add(request(fingerprint="fp", created=T0 + 3, status=Status.EXPIRED))
    assert store.open_for("fp") == newer
    assert store.open_for("other") is None


def test_grants(store: SqliteAccessStore) -> None:
    mine = grant(requester="alice", created=T0 + 1)
    for r in (
        mine,
        grant(requester="alice", connection="prod"),
        grant(requester="bob"),
        grant(requester="alice", status=Status.REVOKED),
        grant(requester="alice", status=Status.PENDING, approved_until=None),
        grant(requester="alice", approved_until=T0 + 10),
        request(requester="alice", status=Status.APPROVED),  # a statement, not a grant
    ):
        store.add(r)
    assert ids(store.grants("ALICE", "app", T0 + 20)) == [mine.id]
    assert len(store.grants("alice", "app", T0 + 5)) == 2
    assert store.grants("alice", "app", T0 + 3600) == []


def test_due(store: SqliteAccessStore) -> None:
    late = request(expires=T0 + 10)
    window_over = request(status=Status.APPROVED, approved_until=T0 + 10)
    grant_over = grant(approved_until=T0 + 10)
    for r in (
        late,
        window_over,
        grant_over,
        request(expires=T0 + 100),
        request(status=Status.APPROVED),  # one-time approval: no end
        request(status=Status.APPROVED, approved_until=T0 + 100),
        request(status=Status.EXECUTED, expires=T0),
        request(status=Status.REJECTED, expires=T0),
    ):
        store.add(r)
    assert set(ids(store.due(T0 + 10))) == {late.id, window_over.id, grant_over.id}
    assert store.due(T0 + 9) == []


# the identity directory ----------------------------------------------------------------------


def test_directory_by_email_ignores_case(store: SqliteAccessStore, clock: Clock) -> None:
    store.saw(identity("Ada.Lovelace@Example.org", ("dba", "eng")))
    found = store.by_email("ada.lovelace@EXAMPLE.ORG")
    assert found is not None
    assert found.name == "Ada.Lovelace@Example.org"
    assert found.email == "ada.lovelace@example.org"
    assert found.groups == ("dba", "eng")
    assert found.kind == "human"
    assert found.provider == "oidc:https://idp.example"
    assert found.seen == T0
    assert store.by_email("someone@example.org") is None


def test_directory_with_an_explicit_email(store: SqliteAccessStore) -> None:
    store.saw(identity("bob"), email="Bob@Corp.Example")
    found = store.by_email("bob@corp.example")
    assert found is not None
    assert found.name == "bob"


def test_a_token_name_is_never_an_email(store: SqliteAccessStore) -> None:
    """Whoever makes a token chooses its name: it must not pass for someone's address."""
    token = Identity("ceo@example.org", IdentityKind.SERVICE, ("dba",), "token", "x")
    store.saw(token)
    assert store.by_email("ceo@example.org") is None
    # a one-time credential issued to a person verified by the identity provider is findable
    store.saw(replace(identity("ada@example.org"), provider="credential:oidc:https://i"))
    assert store.by_email("ada@example.org") is not None


def test_directory_without_an_email(store: SqliteAccessStore) -> None:
    store.saw(identity("svc-batch"))
    assert store.by_email("svc-batch") is None


def test_directory_keeps_the_latest_groups(store: SqliteAccessStore, clock: Clock) -> None:
    store.saw(identity("ada@example.org", ("eng",)))
    clock.now = T0 + 50
    store.saw(identity("ada@example.org", ("eng", "dba")))
    found = store.by_email("ada@example.org")
    assert found is not None
    assert found.groups == ("eng", "dba")
    assert found.seen == T0 + 50


# one-time credentials ------------------------------------------------------------------------


def test_credential_redeemed_once(store: SqliteAccessStore, clock: Clock) -> None:
    secret, expires = store.issue_credential(identity("ada@example.org"), "app", 300)
    assert secret.startswith("dbwc_")
    assert expires == T0 + 300
    clock.now = T0 + 10
    who = store.redeem_credential(secret, "ADA@example.org", "app")
    assert who.name == "ada@example.org"
    assert who.kind is IdentityKind.HUMAN
    assert who.groups == ("dba",)
    assert who.provider == "credential:oidc:https://idp.example"
    assert who.expires_at == T0 + 300
    with pytest.raises(AuthenticationError, match="already used: run dbward connect again"):
        store.redeem_credential(secret, "ada@example.org", "app")


def test_each_credential_is_new(store: SqliteAccessStore) -> None:
    one, _ = store.issue_credential(identity("ada"), "app", 300)
    two, _ = store.issue_credential(identity("ada"), "app", 300)
    assert one != two
    assert store.redeem_credential(two, "ada", "app").name == "ada"
    assert store.redeem_credential(one, "ada", "app").name == "ada"


@pytest.mark.parametrize("late", [300.0, 301.0, 86_400.0])
def test_expired_credential_refused(store: SqliteAccessStore, clock: Clock, late: float) -> None:
    secret, _ = store.issue_credential(identity("ada"), "app", 300)
    clock.now = T0 + late
    with pytest.raises(AuthenticationError, match="expired: run dbward connect again"):
        store.redeem_credential(secret, "ada", "app")


def test_credential_just_before_expiry(store: SqliteAccessStore, clock: Clock) -> None:
    secret, _ = store.issue_credential(identity("ada"), "app", 300)
    clock.now = T0 + 299.9
    assert store.redeem_credential(secret, "ada", "app").name == "ada"


@pytest.mark.parametrize(
    ("user", "connection", "error", "match"),
    [
        ("ada", "prod", AuthorizationError, "issued for connection 'app', not 'prod'"),
        ("bob", "app", AuthorizationError, "issued to 'ada': connect as user 'ada'"),
    ],
)
def test_credential_bound_to_user_and_connection(
    store: SqliteAccessStore, user: str, connection: str, error: type[Exception], match: str
) -> None:
    secret, _ = store.issue_credential(identity("ada"), "app", 300)
    with pytest.raises(error, match=match):
        store.redeem_credential(secret, user, connection)


@pytest.mark.parametrize("secret", ["dbwc_unknown", "", "dbwt_not-a-credential"])
def test_unknown_credential_refused(store: SqliteAccessStore, secret: str) -> None:
    store.issue_credential(identity("ada"), "app", 300)
    with pytest.raises(AuthenticationError, match="not known: run dbward connect again"):
        store.redeem_credential(secret, "ada", "app")


def test_credential_secret_is_never_stored_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    store = SqliteAccessStore(path)
    secrets_issued = [store.issue_credential(identity("ada"), "app", 300)[0] for _ in range(3)]
    store.redeem_credential(secrets_issued[0], "ada", "app")
    # look at every byte on disk while open (the WAL too) and after closing
    files = [p for p in tmp_path.iterdir() if p.name.startswith("access.db")]
    on_disk = b"".join(p.read_bytes() for p in files)
    store.close()
    on_disk += b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"ada" in on_disk  # the file is readable as bytes: the check would see a secret
    for secret in secrets_issued:
        assert secret.encode() not in on_disk
        assert secret.removeprefix("dbwc_").encode() not in on_disk
