"""Reading the whole committed trail: the store, plus what only the journal holds yet.

The journal is ahead of the store by up to one storing interval while dbward
runs, and by whatever a crash left behind until dbward starts again; an
auditor reading the trail sees both.
"""

from __future__ import annotations

from pathlib import Path

from dbward.audit.chain import ChainRecord
from dbward.audit.events import StoredEvent
from dbward.audit.journal import Journal, journal_segments
from dbward.audit.store import AuditStore


class AuditTrail:
    def __init__(self, store: AuditStore, journal_dir: Path) -> None:
        self.store = store
        self._journal_dir = journal_dir

    def pending(self) -> list[ChainRecord]:
        """Records the journal holds that the store does not yet, oldest first."""
        found: list[ChainRecord] = []
        for segment in journal_segments(self._journal_dir):
            try:
                found.extend(Journal.read(segment))
            except FileNotFoundError:
                continue  # stored and released meanwhile: the store has it
        heads: dict[str, int] = {}
        pending = []
        for record in found:
            if record.chain not in heads:
                heads[record.chain] = self.store.head(record.chain)[0]
            if record.seq > heads[record.chain]:
                pending.append(record)
        return sorted(pending, key=lambda r: r.stored().event.ts)

    def read(self, limit: int, *, after_id: int = 0) -> list[StoredEvent]:
        """The latest ``limit`` events, or up to ``limit`` events stored after row
        ``after_id``; either way followed by what only the journal holds (row 0)."""
        pending = [r.stored() for r in self.pending()]  # first: a segment released later is stored
        stored = self.store.tail(limit, after_id=after_id)
        events = stored + pending
        return events[:limit] if after_id else events[-limit:]

    def close(self) -> None:
        self.store.close()
