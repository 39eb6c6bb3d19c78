"""Where approval requests, grants, the identity directory and one-time credentials live.

One store per installation, shared by every process that must see the same
requests: the proxy's workers (which hold statements), the API (where
approvers answer) and the command line. SQLite in the state directory by
default; PostgreSQL (the audit store's schema ``dbward_audit``) when
several dbward instances share one, so an approval given on one instance
releases a statement held on another.

A change to a request is read, passed through a pure transition
(:mod:`dbward.approvals.requests`) and written back in one transaction that
locks the row, so two approvers voting at once on two instances both count.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dbward.approvals import requests as transitions
from dbward.approvals.requests import ApprovalError, ApprovalRequest, Kind, Status
from dbward.errors import AuthenticationError, AuthorizationError
from dbward.identity.authenticator import CREDENTIAL_PREFIX
from dbward.identity.models import Identity, IdentityKind
from dbward.identity.tokens import wal_mode

_TABLES = """
CREATE TABLE IF NOT EXISTS approval_requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    connection TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_requests_open ON approval_requests (status, kind);
CREATE INDEX IF NOT EXISTS approval_requests_fingerprint ON approval_requests (fingerprint);
CREATE INDEX IF NOT EXISTS approval_requests_created ON approval_requests (created);
CREATE TABLE IF NOT EXISTS approval_directory (
    name TEXT PRIMARY KEY,
    email TEXT,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    provider TEXT NOT NULL,
    seen DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_directory_email ON approval_directory (email);
CREATE TABLE IF NOT EXISTS one_time_credentials (
    digest TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    provider TEXT NOT NULL,
    connection TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    used DOUBLE PRECISION
);
"""
_COLUMNS = "id, kind, status, requester, connection, fingerprint, created, updated, doc"


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """An identity as dbward last saw it sign in: how Slack users map to approvers."""

    name: str
    email: str | None
    kind: str
    groups: tuple[str, ...]
    provider: str
    seen: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _from_provider(provider: str) -> bool:
    return provider.startswith(("oidc:", "credential:oidc:"))


def new_request_id() -> str:
    return "apr_" + secrets.token_hex(6)


class _Db(Protocol):
    """The few DB-API calls both stores use (sqlite3 and psycopg)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


class AccessStore:
    """The store's logic over a DB-API connection; subclasses open it and lock rows."""

    placeholder = "?"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()

    # the backend's part ------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[_Db]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def _lock_row(self) -> str:
        return ""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    # requests ----------------------------------------------------------------------------

    def add(self, request: ApprovalRequest) -> None:
        with self._transaction() as db:
            db.execute(
                self._sql(
                    f"INSERT INTO approval_requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                self._row(request),
            )

    def _row(self, request: ApprovalRequest) -> tuple[Any, ...]:
        return (
            request.id,
            request.kind.value,
            request.status.value,
            request.requester,
            request.connection,
            request.fingerprint,
            request.created,
            self.clock(),
            json.dumps(request.as_dict(), separators=(",", ":")),
        )

    def get(self, request_id: str) -> ApprovalRequest | None:
        with self._transaction() as db:
            row = db.execute(
                self._sql("SELECT doc FROM approval_requests WHERE id = ?"), (request_id,)
            ).fetchone()
        return ApprovalRequest.from_dict(json.loads(row[0])) if row else None

    def many(self, ids: Sequence[str]) -> dict[str, ApprovalRequest]:
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        with self._transaction() as db:
            rows = db.execute(
                self._sql(f"SELECT doc FROM approval_requests WHERE id IN ({marks})"), tuple(ids)
            ).fetchall()
        found = [ApprovalRequest.from_dict(json.loads(r[0])) for r in rows]
        return {r.id: r for r in found}

    def update(
        self, request_id: str, change: Callable[[ApprovalRequest], ApprovalRequest | None]
    ) -> ApprovalRequest:
        """Apply ``change`` to the request under a row lock; its result is written back
        (None: no change). Raises ApprovalError for an unknown id or a refused change."""
        with self._transaction() as db:
            row = db.execute(
                self._sql(f"SELECT doc FROM approval_requests WHERE id = ?{self._lock_row()}"),
                (request_id,),
            ).fetchone()
            if row is None:
                raise ApprovalError(f"there is no approval request {request_id!r}")
            current = ApprovalRequest.from_dict(json.loads(row[0]))
            changed = change(current)
            if changed is None or changed == current:
                return current
            values = self._row(changed)
            db.execute(
                self._sql(
                    "UPDATE approval_requests SET status = ?, updated = ?, doc = ? WHERE id = ?",
                ),
                (values[2], values[7], values[8], request_id),
            )
            return changed

    def list(
        self,
        *,
        status: Sequence[Status] = (),
        kind: Kind | None = None,
        requester: str | None = None,
        connection: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[ApprovalRequest]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append(f"status IN ({', '.join('?' for _ in status)})")
            params.extend(s.value for s in status)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        if requester is not None:
            where.append("lower(requester) = lower(?)")
            params.append(requester)
        if connection is not None:
            where.append("connection = ?")
            params.append(connection)
        sql = "SELECT doc FROM approval_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        with self._transaction() as db:
            rows = db.execute(self._sql(sql), tuple(params)).fetchall()
        return [ApprovalRequest.from_dict(json.loads(r[0])) for r in rows]

    def usable(self, fingerprint: str, now: float) -> ApprovalRequest | None:
        """An approved request for this exact statement that may run now."""
        with self._transaction() as db:
            rows = db.execute(
                self._sql(
                    "SELECT doc FROM approval_requests "
                    "WHERE fingerprint = ? AND status = 'approved' ORDER BY created"
                ),
                (fingerprint,),
            ).fetchall()
        for row in rows:
            request = ApprovalRequest.from_dict(json.loads(row[0]))
            if request.usable(now):
                return request
        return None

    def open_for(self, fingerprint: str) -> ApprovalRequest | None:
        """A pending request for this exact statement (a re-run joins it, no new request)."""
        with self._transaction() as db:
            row = db.execute(
                self._sql(
                    "SELECT doc FROM approval_requests "
                    "WHERE fingerprint = ? AND status = 'pending' ORDER BY created DESC LIMIT 1"
                ),
                (fingerprint,),
            ).fetchone()
        return ApprovalRequest.from_dict(json.loads(row[0])) if row else None

    def grants(self, requester: str, connection: str, now: float) -> builtins.list[ApprovalRequest]:
        """Access grants in force for ``requester`` on ``connection``."""
        found = self.list(
            status=(Status.APPROVED,), kind=Kind.ACCESS, requester=requester, connection=connection
        )
        return [g for g in found if g.usable(now)]

    def due(self, now: float) -> builtins.list[ApprovalRequest]:
        """Open requests whose deadline or window has passed."""
        found = self.list(status=(Status.PENDING, Status.APPROVED), limit=10_000)
        return [r for r in found if transitions.expire(r, now) is not None]

    # the identity directory --------------------------------------------------------------

    def saw(self, identity: Identity, email: str | None = None) -> None:
        """Remember an identity that signed in (its groups, as of now). Only a person
        verified by an identity provider is findable by email: a token's name is chosen
        by whoever made it, so it never stands for someone's address."""
        if email is None and "@" in identity.name and _from_provider(identity.provider):
            email = identity.name
        with self._transaction() as db:
            db.execute(self._sql("DELETE FROM approval_directory WHERE name = ?"), (identity.name,))
            db.execute(
                self._sql(
                    "INSERT INTO approval_directory (name, email, kind, groups, provider, seen) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (
                    identity.name,
                    email.casefold() if email else None,
                    identity.kind.value,
                    json.dumps(list(identity.groups)),
                    identity.provider,
                    self.clock(),
                ),
            )

    def by_email(self, email: str) -> DirectoryEntry | None:
        with self._transaction() as db:
            row = db.execute(
                self._sql(
                    "SELECT name, email, kind, groups, provider, seen FROM approval_directory "
                    "WHERE email = ? ORDER BY seen DESC LIMIT 1"
                ),
                (email.casefold(),),
            ).fetchone()
        if row is None:
            return None
        return DirectoryEntry(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5])

    # one-time credentials ----------------------------------------------------------------

    def issue_credential(
        self, identity: Identity, connection: str, ttl: float
    ) -> tuple[str, float]:
        """A fresh one-time password for ``identity`` on ``connection``, and when it expires.

        Only its digest is kept; the secret is returned once.
        """
        secret = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + ttl
        with self._transaction() as db:
            db.execute(
                self._sql("DELETE FROM one_time_credentials WHERE expires < ?"), (now - 86400,)
            )
            db.execute(
                self._sql(
                    "INSERT INTO one_time_credentials (digest, identity, kind, groups, provider, "
                    "connection, created, expires, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)"
                ),
                (
                    _digest(secret),
                    identity.name,
                    identity.kind.value,
                    json.dumps(list(identity.groups)),
                    identity.provider,
                    connection,
                    now,
                    expires,
                ),
            )
        return secret, expires

    def redeem_credential(self, secret: str, user: str, connection: str) -> Identity:
        """The identity a one-time credential was issued to; it cannot be used again."""
        now = self.clock()
        with self._transaction() as db:
            row = db.execute(
                self._sql(
                    "SELECT identity, kind, groups, provider, connection, expires, used "
                    f"FROM one_time_credentials WHERE digest = ?{self._lock_row()}"
                ),
                (_digest(secret),),
            ).fetchone()
            if row is None:
                raise AuthenticationError(
                    "this one-time credential is not known: run dbward connect again"
                )
            name, kind, groups, provider, bound, expires, used = row
            if used is not None:
                raise AuthenticationError(
                    "this one-time credential was already used: run dbward connect again"
                )
            if now >= expires:
                raise AuthenticationError(
                    "this one-time credential expired: run dbward connect again"
                )
            if bound != connection:
                raise AuthorizationError(
                    f"this credential was issued for connection {bound!r}, not {connection!r}"
                )
            if name.casefold() != user.casefold():
                raise AuthorizationError(
                    f"this credential was issued to {name!r}: connect as user {name!r}"
                )
            db.execute(
                self._sql("UPDATE one_time_credentials SET used = ? WHERE digest = ?"),
                (now, _digest(secret)),
            )
        return Identity(
            name=name,
            kind=IdentityKind(kind),
            groups=tuple(json.loads(groups)),
            provider=f"credential:{provider}",
            subject=name,
            expires_at=expires,
        )


class SqliteAccessStore(AccessStore):
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.execute("PRAGMA busy_timeout=10000")
        wal_mode(self._db)
        self._db.executescript(_TABLES.replace("DOUBLE PRECISION", "REAL"))
        path.chmod(0o600)

    @contextmanager
    def _transaction(self) -> Iterator[_Db]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresAccessStore(AccessStore):
    """The shared store: tables beside the audit trail's, in schema ``dbward_audit`` (whose
    owner needs no privilege on the database itself)."""

    placeholder = "%s"

    def __init__(
        self, conninfo: str, *, connect_timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        import psycopg

        super().__init__(clock)
        self._conninfo = conninfo
        self._timeout = connect_timeout
        self._psycopg = psycopg
        self._db = self._connect()
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext('dbward_audit'))")
            exists = self._db.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = 'dbward_audit'"
            ).fetchone()
            if exists is None:
                self._db.execute("CREATE SCHEMA IF NOT EXISTS dbward_audit")
            for statement in _TABLES.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def _connect(self) -> Any:
        db = self._psycopg.connect(
            self._conninfo,
            connect_timeout=max(1, int(self._timeout)),
            autocommit=True,
            options="-c search_path=dbward_audit -c statement_timeout=10000",
            keepalives=1,
            keepalives_idle=10,
        )
        return db

    def _lock_row(self) -> str:
        return " FOR UPDATE"

    @contextmanager
    def _transaction(self) -> Iterator[_Db]:
        with self._lock:
            if self._db.closed or self._db.broken:
                self._db = self._connect()
            with self._db.transaction():
                yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()
