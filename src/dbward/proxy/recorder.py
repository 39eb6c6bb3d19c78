"""A session's view of the audit trail: every event it writes says who, where and what."""

from __future__ import annotations

import logging
from typing import Any

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.writer import AuditWriter
from dbward.identity.models import Identity

log = logging.getLogger(__name__)


class SessionRecorder:
    def __init__(self, writer: AuditWriter, session_id: str, source: str) -> None:
        self.writer = writer
        self.session_id = session_id
        self.source = source
        self.identity: Identity | None = None
        self.target: str | None = None

    def event(self, kind: EventKind, data: dict[str, Any]) -> AuditEvent:
        identity = self.identity
        return AuditEvent(
            kind=kind,
            session_id=self.session_id,
            identity=identity.name if identity else None,
            identity_kind=identity.kind.value if identity else None,
            target=self.target,
            source=self.source,
            data=data,
        )

    def record(self, kind: EventKind, data: dict[str, Any]) -> bool:
        """Commit an event to the audit trail; False (and logged) if it cannot be written."""
        try:
            self.writer.record(self.event(kind, data))
        except OSError as exc:
            log.error("session %s: cannot write the audit journal: %s", self.session_id, exc)
            return False
        return True
