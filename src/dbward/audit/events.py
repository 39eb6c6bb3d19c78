"""Audit events: what happened, to whom, where. Frozen, append-only records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    CONNECTION_START = "connection.start"
    CONNECTION_END = "connection.end"
    LOGIN_FAILED = "login.failed"
    STATEMENT = "statement"
    STATEMENT_STARTED = "statement.started"
    CANCEL = "cancel"
    POLICY_RELOAD = "policy.reload"
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name
    AUDIT_EXPORTED = "audit.exported"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_NOTIFIED = "approval.notified"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_EXPIRED = "approval.expired"
    APPROVAL_EXECUTED = "approval.executed"
    APPROVAL_REVOKED = "approval.revoked"
    APPROVAL_REVIEWED = "approval.reviewed"
    ACCESS_ENDED = "access.ended"
    CREDENTIAL_ISSUED = "credential.issued"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record.

    ``data`` holds the kind-specific facts (statement text, rows, SQLSTATE,
    TLS, client application, ...). No secret is ever put in an event.
    """

    kind: EventKind
    session_id: str
    identity: str | None = None
    identity_kind: str | None = None
    target: str | None = None
    source: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back, with its position in the trail: the store's row number
    (0 while only the journal holds it) and its place in its chain."""

    id: int
    event: AuditEvent
    chain: str = ""
    seq: int = 0
