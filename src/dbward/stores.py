"""Opening the configured audit store (SQLite by default, PostgreSQL when configured) and
its sinks."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from psycopg.conninfo import make_conninfo

from dbward.approvals.store import AccessStore, PostgresAccessStore, SqliteAccessStore
from dbward.audit.sinks.dispatch import Sink
from dbward.audit.sinks.senders import Sender, StdoutSender, SyslogSender, WebhookSender
from dbward.audit.store import AuditStore, SqliteAuditStore
from dbward.config import AuditPostgres, Config, SinkConfig
from dbward.credentials import read_credentials
from dbward.errors import ConfigError, DbwardError


def audit_conninfo(settings: AuditPostgres) -> str:
    """The libpq connection string for the PostgreSQL store (the password read now)."""
    credentials = read_credentials(settings.credentials, "audit store")
    return make_conninfo(
        host=settings.host,
        port=settings.port,
        dbname=settings.database,
        user=credentials.user,
        password=credentials.password,
        sslmode=settings.sslmode,
        sslrootcert=str(settings.ca_file) if settings.ca_file else None,
    )


_Store = TypeVar("_Store")


def _on_postgres(config: Config, store: Callable[..., _Store], what: str) -> _Store:
    """``store`` opened on the PostgreSQL database ``audit.postgres`` names."""
    settings = config.audit.postgres
    assert settings is not None  # the config model requires it
    try:
        return store(audit_conninfo(settings), connect_timeout=settings.connect_timeout)
    except Exception as exc:  # psycopg's errors name the cause, never the password
        raise DbwardError(
            f"cannot open the PostgreSQL {what} ({settings.host}:{settings.port}/"
            f"{settings.database}): {exc}"
        ) from None


def open_audit_store(config: Config, *, must_exist: bool = False) -> AuditStore:
    """The store ``config`` names. ``must_exist``: a missing SQLite file is an error (for
    the commands that read the trail), not a new empty store."""
    if config.audit.store == "postgres":
        from dbward.audit.store_pg import PostgresAuditStore

        return _on_postgres(config, PostgresAuditStore, "audit store")
    if must_exist and not config.audit_path.exists():
        raise DbwardError(f"no audit store at {config.audit_path}: has dbward run here?")
    return SqliteAuditStore(config.audit_path)


def store_name(config: Config) -> str:
    """Where the trail is, for messages (never a password)."""
    pg = config.audit.postgres
    if config.audit.store == "postgres" and pg is not None:
        return f"postgres {pg.host}:{pg.port}/{pg.database}"
    return str(config.audit_path)


def _secret(sink: SinkConfig) -> bytes:
    if sink.secret_env is not None:
        value = os.environ.get(sink.secret_env)
        if not value:
            raise ConfigError(
                f"audit sink {sink.name!r}: environment variable {sink.secret_env} "
                "(the webhook's HMAC key) is not set"
            )
        return value.encode()
    assert sink.secret_file is not None
    try:
        return sink.secret_file.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(
            f"audit sink {sink.name!r}: cannot read {sink.secret_file}: {exc.strerror}"
        ) from None


def _sender(sink: SinkConfig) -> Sender:
    if sink.type == "syslog":
        assert sink.host is not None
        assert sink.port is not None
        return SyslogSender(
            sink.host, sink.port, tls=sink.tls, ca_file=sink.ca_file, timeout=sink.timeout
        )
    if sink.type == "webhook":
        assert sink.url is not None
        return WebhookSender(sink.url, _secret(sink), timeout=sink.timeout)
    return StdoutSender()


def build_sinks(config: Config, worker: int) -> list[Sink]:
    """The configured sinks for one process, each with its own spool."""
    base = config.state_dir / "audit-sinks"
    sinks = []
    for sink in config.audit.sinks:
        directory = base / sink.name
        if config.workers > 1:
            directory = directory / f"worker-{worker}"
        sinks.append(Sink(sink.name, _sender(sink), directory, batch=sink.batch))
    return sinks


def open_access_store(config: Config) -> AccessStore:
    """The approvals store: beside the audit store (shared PostgreSQL, or SQLite here)."""
    if config.audit.store == "postgres":
        return _on_postgres(config, PostgresAccessStore, "approvals store")
    return SqliteAccessStore(config.access_path)
