"""Reading the whole committed trail: the store, plus what only the journal holds yet.

The journal is ahead of the store by up to one storing interval while dbward
runs, and by whatever a crash left behind until dbward starts again; an
auditor reading the trail sees both.
"""

from __future__ import annotations

from pathlib import Path

from dbward.audit.events import StoredEvent
from dbward.audit.journal import Journal, Row
from dbward.audit.store import SqliteAuditStore, stored_event


class AuditTrail:
    def __init__(self, store_path: Path, journal_dir: Path) -> None:
        self._store = SqliteAuditStore(store_path)
        self._journal_dir = journal_dir

    def _journal_rows(self, after_id: int) -> list[Row]:
        if not self._journal_dir.is_dir():
            return []
        rows: list[Row] = []
        for segment in sorted(self._journal_dir.rglob("journal-*.log")):
            try:
                rows.extend(row for row in Journal.read(segment) if row[0] > after_id)
            except FileNotFoundError:
                continue  # stored and released meanwhile: the store has it
        return rows

    def read(self, limit: int, *, after_id: int = 0) -> list[StoredEvent]:
        """The latest ``limit`` events, or up to ``limit`` events after ``after_id``."""
        pending = self._journal_rows(after_id)  # first: a segment released later is stored
        stored = self._store.tail(limit, after_id=after_id)
        merged = {s.id: s for s in stored}
        newest = max(merged, default=after_id)
        for row in pending:
            if row[0] > newest or row[0] not in merged:
                merged[row[0]] = stored_event(row)
        events = [merged[i] for i in sorted(merged)]
        return events[:limit] if after_id else events[-limit:]

    def close(self) -> None:
        self._store.close()
