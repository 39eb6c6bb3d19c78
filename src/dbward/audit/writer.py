"""Recording audit events: committed on the statement path, stored off it.

:meth:`AuditWriter.record` assigns the event its id and appends it to the
journal before it returns, so a session that records a statement and then
releases its result has released nothing unrecorded; the cost is one
``write`` system call. A background thread moves journalled events into the
SQLite store in batches (one transaction for everything that arrived since
the last one) and lets the journal drop what the store holds; if it falls
behind by ``max_pending`` events, the next ``record`` stores them itself, so
memory stays bounded under any load. At start, events a crash left in the
journal are stored first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from pathlib import Path

from dbward.audit.events import AuditEvent
from dbward.audit.journal import Journal, event_line
from dbward.audit.store import SqliteAuditStore

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(
        self,
        store: SqliteAuditStore,
        journal_dir: Path,
        *,
        fsync: bool = False,
        store_interval: float = 0.02,
        max_pending: int = 10_000,
        id_stride: int = 1,
        id_offset: int = 0,
    ) -> None:
        self._store = store
        self._journal = Journal(journal_dir, fsync=fsync)
        self._interval = store_interval
        self._max_pending = max_pending
        self.inline_stores = 0
        self._queue: deque[tuple[int, bytes]] = deque()  # (event id, journal line)
        self._storing = threading.Lock()
        self.recovered = self._recover()
        # Several workers share the store: each takes the ids congruent to its offset.
        self._stride = id_stride
        first = store.max_id() + 1
        self._next_id = first + (id_offset - first) % id_stride
        self._stored_up_to = 0
        self.events = 0
        self.batches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbward-audit", daemon=True)
        self._thread.start()

    def _recover(self) -> int:
        """Store what a previous run journalled but did not store; return how many."""
        return recover_journals(self._store, self._journal.directory)

    def record(self, event: AuditEvent) -> None:
        """Commit ``event`` to the journal. Raises OSError if it cannot be written."""
        event_id = self._next_id
        line = event_line(event_id, event)
        self._journal.append(line, event_id, event_id)
        self._next_id = event_id + self._stride
        self._queue.append((event_id, line))
        self.events += 1
        if len(self._queue) >= self._max_pending:
            # The storing thread is falling behind (it competes for the interpreter with
            # the event loop): store here, so memory stays bounded and the load slows down.
            self.inline_stores += 1
            self.store_pending()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.store_pending()
        self.store_pending()

    def store_pending(self) -> None:
        """Move journalled events into the store now (also used at shutdown)."""
        with self._storing:
            queue = self._queue
            rows: list[tuple[int, bytes]] = []
            while queue:
                rows.append(queue.popleft())
            if not rows:
                return
            try:
                self._store.write_lines([line for _, line in rows])
            except Exception as exc:  # kept in the journal and the queue: retried next time
                log.error(
                    "audit store write failed (%d event(s) kept in the journal): %s", len(rows), exc
                )
                queue.extendleft(reversed(rows))
                return
            self.batches += 1
            self._stored_up_to = rows[-1][0]
            self._journal.release(self._stored_up_to)

    async def close(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        self.store_pending()
        self._journal.close(stored_up_to=self._stored_up_to if not self._queue else 0)
        self._store.close()


def recover_journals(store: SqliteAuditStore, directory: Path) -> int:
    """Store every event left in journal segments under ``directory``, then drop them.

    Loading is idempotent (events keep their journal ids), so a crash during
    recovery only means the next start does it again.
    """
    count = 0
    segments = sorted(directory.rglob("journal-*.log")) if directory.is_dir() else []
    for segment in segments:
        rows = list(Journal.read(segment))
        if rows:
            store.write_rows(rows)
            count += len(rows)
        segment.unlink()
    if count:
        log.warning("audit: stored %d event(s) left in the journal by the last run", count)
    return count
