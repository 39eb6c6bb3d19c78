"""A session's view of the audit trail: every event it writes says who, where and what."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.writer import AuditWriter
from dbward.errors import DbwardError
from dbward.identity.attribution import from_statement, merged
from dbward.identity.models import Identity
from dbward.masking.rows import MaskStats
from dbward.metrics import BY_DECISION, MASKED_VALUES
from dbward.policy.decide import Decision
from dbward.proxy.connection import Conn
from dbward.sql.facts import Analysis
from dbward.sql.lineage import cached_lineage

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

    def login_failed(self, user: str, exc: DbwardError, *, upstream: bool = False) -> None:
        """A login that did not succeed: whose, why, and whether the upstream refused."""
        data: dict[str, Any] = {"user": user, "reason": exc.message}
        if upstream:
            data["stage"] = "upstream"
        data["sqlstate"] = exc.sqlstate
        self.record(EventKind.LOGIN_FAILED, data)

    def connection_end(self, reason: str, duration_s: float, statements: int, client: Conn) -> None:
        """The session is over: why, how long, and what passed through ``client``."""
        self.record(
            EventKind.CONNECTION_END,
            {
                "reason": reason,
                "duration_s": round(duration_s, 3),
                "statements": statements,
                "bytes_from_client": client.bytes_in,
                "bytes_to_client": client.bytes_out,
            },
        )

    def record(self, kind: EventKind, data: dict[str, Any]) -> bool:
        """Commit an event to the audit trail; False (and logged) if it cannot be written."""
        try:
            self.writer.record(self.event(kind, data))
        except OSError as exc:
            log.error("session %s: cannot write the audit journal: %s", self.session_id, exc)
            return False
        return True


@dataclass(frozen=True, slots=True)
class StatementOutcome:
    """What one statement's audit record says, whatever the protocol it came by."""

    text: str  # as sent (for sqlcommenter tags; never stored unless literals are kept)
    shown: str  # as the audit keeps it
    protocol: str
    duration_ms: float
    rows: int | None
    analysis: Analysis | None
    decision: Decision | None
    failed: bool  # the server refused or failed it: it touched nothing
    tags: tuple[str, ...] = ()
    prepared: str | None = None
    withheld: int = 0
    masked: MaskStats | None = None
    sqlstate: str | None = None
    error: str | None = None
    incomplete: bool = False


def statement_data(outcome: StatementOutcome, agent: dict[str, str]) -> dict[str, Any]:
    """The data of a ``statement`` audit event (and its metrics counted)."""
    data: dict[str, Any] = {
        "statement": outcome.shown,
        "protocol": outcome.protocol,
        "duration_ms": outcome.duration_ms,
        "rows": outcome.rows,
        "tags": list(outcome.tags),
    }
    analysis, decision = outcome.analysis, outcome.decision
    if analysis is not None and not outcome.failed and (decision is None or decision.allowed):
        touched = cached_lineage(analysis)  # what ran; a refused or failed one touched nothing
        if touched:
            data["lineage"] = touched
    if "*/" in outcome.text:
        tagged = from_statement(outcome.text)
        if tagged:
            agent = merged(agent, tagged)
    if agent:
        data["agent"] = agent
    if outcome.prepared:
        data["prepared"] = outcome.prepared
    BY_DECISION[decision.action.value if decision is not None else "none"].inc()
    if decision is not None:
        data["decision"] = decision.action.value
        data["rule"] = decision.rule
        if not decision.allowed:
            data["reason"] = decision.message
        if decision.approval is not None:
            data["approval"] = decision.approval
    if outcome.withheld:
        data["withheld_rows"] = outcome.withheld
    masked = outcome.masked
    if masked is not None and masked.settle().values:
        data["masked"] = masked.summary()
        MASKED_VALUES.inc(masked.values)
    if outcome.sqlstate:
        data["sqlstate"] = outcome.sqlstate
        data["error"] = outcome.error
    if outcome.incomplete:
        data["incomplete"] = True
    return data
