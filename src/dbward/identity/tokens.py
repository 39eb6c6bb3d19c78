"""dbward service and agent tokens, kept in a small SQLite file.

A token is shown once, when it is created; the store keeps only its SHA-256
digest, with a short non-secret id (``tok_...``) to list and revoke it by.
The client sends the token as its password and the token's name as its user.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from dbward.errors import AuthenticationError, AuthorizationError, DbwardError
from dbward.identity.models import Identity, IdentityKind

TOKEN_PREFIX = "dbw_"  # noqa: S105 (a prefix, not a secret)
_TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,62}")
_GROUP = re.compile(r"[^\s,]{1,200}")
_TTL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
"""
_COLUMNS = "id, name, kind, groups, created_at, expires_at, revoked_at"
_Row = tuple[str, str, str, str, float, float | None, float | None]


class TokenStoreError(DbwardError):
    """A token could not be created or revoked as asked."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What the store knows about a token: everything but the token itself."""

    id: str
    name: str
    kind: IdentityKind
    groups: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_LONGEST = 100 * 365 * 86400  # seconds: a century is longer than anything here means


def parse_ttl(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` or plain ``3600`` (at most
    a hundred years)."""
    match = _TTL.fullmatch(text.strip().lower())
    seconds = float(match[1]) * _UNITS[match[2]] if match else 0.0
    if not 0 < seconds <= _LONGEST:
        raise ValueError(
            f"invalid length of time {text!r}: give a positive number with a unit, "
            "like 30d, 12h, 90m, 3600s or 2w (plain numbers are seconds), at most 100 years"
        )
    return seconds


def wal_mode(db: sqlite3.Connection, *, patience: float = 10.0) -> None:
    """Switch ``db`` to WAL. SQLite answers "database is locked" at once (ignoring the busy
    timeout) while another process writes, as sibling workers do when they start together;
    so this tries again for up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _record(row: _Row) -> TokenRecord:
    token_id, name, kind, groups, created_at, expires_at, revoked_at = row
    return TokenRecord(
        id=token_id,
        name=name,
        kind=IdentityKind(kind),
        groups=tuple(json.loads(groups)),
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise TokenStoreError(
            f"invalid token name {name!r}: use 1 to 63 letters, digits and . _ @ + -, "
            "starting with a letter or digit (clients connect with it as their user name)"
        )
    if name.startswith("tok_"):
        raise TokenStoreError(f"invalid token name {name!r}: 'tok_' starts token ids")


def _check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    if isinstance(groups, str):
        raise TokenStoreError("groups must be a list of group names, not one string")
    bad = [group for group in groups if not _GROUP.fullmatch(group)]
    if bad:
        raise TokenStoreError(f"invalid group names {bad!r}: no spaces or commas, 1 to 200 chars")
    return tuple(dict.fromkeys(groups))


class TokenStore:
    """Service and agent tokens in SQLite; safe to share between processes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                # Created 0600 here; never opened and closed again once SQLite has it open:
                # closing any descriptor of the file drops the process's SQLite locks.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            os.chmod(path, 0o600)
            self._db = sqlite3.connect(
                path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TokenStoreError(f"cannot open the token store {path}: {reason}") from exc
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            wal_mode(self._db)
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise TokenStoreError(f"cannot open the token store {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- administration

    def create(
        self,
        name: str,
        kind: IdentityKind,
        groups: Sequence[str],
        ttl_seconds: float | None,
    ) -> tuple[str, TokenRecord]:
        """Make a token; returns the plaintext token (shown this once) and its record."""
        _check_name(name)
        if kind not in (IdentityKind.SERVICE, IdentityKind.AGENT):
            raise TokenStoreError(
                f"tokens are for services and agents, not {kind.value!r} identities: "
                "people sign in with their identity provider (OIDC)"
            )
        group_names = _check_groups(groups)
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise TokenStoreError(f"the time to live must be positive, not {ttl_seconds:g} s")
        now = self._clock()
        expires_at = None if ttl_seconds is None else now + ttl_seconds
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)[:43]
        with self._lock:
            for _attempt in range(5):
                record = TokenRecord(
                    id="tok_" + secrets.token_hex(4),
                    name=name,
                    kind=kind,
                    groups=group_names,
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=None,
                )
                try:
                    self._db.execute(
                        "INSERT INTO tokens (id, name, kind, groups, digest, created_at, "
                        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            record.id,
                            name,
                            kind.value,
                            json.dumps(list(group_names)),
                            _digest(token),
                            now,
                            expires_at,
                        ),
                    )
                except sqlite3.IntegrityError:
                    existing = self._active_named(name)
                    if existing is not None:
                        raise TokenStoreError(self._duplicate_message(existing, now)) from None
                    continue  # the random id was taken: draw another
                return token, record
        raise TokenStoreError("could not draw a free token id; try again")

    def revoke(self, name_or_id: str) -> TokenRecord:
        """Revoke the active token with this id or name."""
        now = self._clock()
        with self._lock:
            # fetchall: a RETURNING statement commits only once it has been stepped to the end
            rows = self._db.execute(
                f"UPDATE tokens SET revoked_at = ? WHERE revoked_at IS NULL "
                f"AND (id = ? OR name = ?) RETURNING {_COLUMNS}",
                (now, name_or_id, name_or_id),
            ).fetchall()
        if rows:
            return _record(rows[0])
        revoked = [
            record
            for record in self.list(include_revoked=True)
            if name_or_id in (record.id, record.name)
        ]
        if revoked and revoked[-1].revoked_at is not None:
            raise TokenStoreError(
                f"token {name_or_id!r} was already revoked on {format_time(revoked[-1].revoked_at)}"
            )
        raise TokenStoreError(
            f"no active token has the name or id {name_or_id!r}; list them with `dbward token list`"
        )

    def list(self, include_revoked: bool = False) -> builtins.list[TokenRecord]:
        """Tokens by creation time; revoked ones only when asked."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL "
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens {where}ORDER BY created_at, id"
            ).fetchall()
        return [_record(row) for row in rows]

    # -- login

    def verify(self, token: str, claimed_user: str | None) -> Identity:
        """The identity of ``token``, which must be active and named ``claimed_user``
        (None: any name, for an API bearer token)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) != _TOKEN_LENGTH:
            raise AuthenticationError("unknown token: this is not a dbward token")
        digest = _digest(token)
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS}, digest FROM tokens WHERE digest = ?",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[-1], digest):
            raise AuthenticationError("unknown token: it was never issued by this dbward")
        record = _record(row[:-1])
        if record.revoked_at is not None:
            raise AuthenticationError(
                f"token revoked on {format_time(record.revoked_at)} ({record.id}, {record.name})"
            )
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise AuthenticationError(
                f"token expired on {format_time(record.expires_at)} ({record.id}, "
                f"{record.name}): create a new one with `dbward token create`"
            )
        if claimed_user is not None and claimed_user != record.name:
            raise AuthorizationError(
                f"token was issued to {record.name!r}, not {claimed_user!r}: "
                f"connect as user {record.name!r}"
            )
        return Identity(
            name=record.name,
            kind=record.kind,
            groups=record.groups,
            provider="token",
            subject=record.id,
            expires_at=record.expires_at,
            token_id=record.id,
        )

    # -- helpers

    def _active_named(self, name: str) -> TokenRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM tokens WHERE name = ? AND revoked_at IS NULL",
            (name,),
        ).fetchone()
        return None if row is None else _record(row)

    @staticmethod
    def _duplicate_message(existing: TokenRecord, now: float) -> str:
        state = (
            f"expired on {format_time(existing.expires_at)}"
            if existing.expires_at is not None and existing.expires_at <= now
            else "active"
        )
        return (
            f"a token named {existing.name!r} already exists ({existing.id}, {state}); "
            f"revoke it first with `dbward token revoke {existing.name}`"
        )
