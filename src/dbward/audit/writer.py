"""Group commit for audit events, off the per-statement path.

Events submitted during one pass of the event loop are committed together in
one transaction at the end of that pass. ``commit`` returns a future that is
done once the event is durable, so a session can hold a statement's result
until its record is committed without paying a transaction per statement.
"""

from __future__ import annotations

import asyncio
import logging

from dbward.audit.events import AuditEvent
from dbward.audit.store import SqliteAuditStore

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(self, store: SqliteAuditStore) -> None:
        self._store = store
        self._pending: list[AuditEvent] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False
        self.batches = 0
        self.events = 0

    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` for the next group commit; do not wait for it."""
        self._pending.append(event)
        self._schedule()

    def commit(self, event: AuditEvent) -> asyncio.Future[None]:
        """Queue ``event``; the returned future is done when it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(event)
        self._waiters.append(future)
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        events, self._pending = self._pending, []
        waiters, self._waiters = self._waiters, []
        if not events:
            return
        error: BaseException | None = None
        try:
            self._store.write_batch(events)
            self.batches += 1
            self.events += len(events)
        except Exception as exc:  # the store failing must fail the waiting statements
            log.error("audit store write failed: %s", exc)
            error = exc
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def close(self) -> None:
        self.flush()
        self._store.close()
