"""Recording audit events: chained and committed on the statement path, stored off it.

:meth:`AuditWriter.record` gives the event its place in this process's chain
(sequence number and hash, see :mod:`dbward.audit.chain`) and appends it to
the journal before it returns, so a session that records a statement and then
releases its result has released nothing unrecorded; the cost is one SHA-256
and one ``write`` system call. A background thread moves journalled records
into the store in batches (one transaction for everything that arrived since
the last one), signs a checkpoint of the chain's head every
``checkpoint_interval`` seconds (and at shutdown), and lets the journal drop
what the store holds. If it falls behind by ``max_pending`` records, the next
``record`` stores them itself, so memory stays bounded under any load. At
start, records a crash left in the journal are stored first, and the chain
continues from its stored head.

When the store cannot be written (a PostgreSQL store that is down, a locked
or full disk), records stay in the journal, ``store_ok`` turns False (the
proxy then refuses statements in fail-closed environments), and the storing
thread retries with a growing pause (up to ``max_retry_interval``). Past
``max_pending`` records it lets go of its in-memory copies and reads them
back from the journal once the store answers again, so an outage of any
length costs disk, not memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from dbward.audit.chain import ChainRecord, event_line
from dbward.audit.events import AuditEvent
from dbward.audit.journal import Journal, journal_segments
from dbward.audit.signing import Checkpoint, Signer
from dbward.audit.sinks.dispatch import Sink
from dbward.audit.store import AuditStore

log = logging.getLogger(__name__)

_sha256 = hashlib.sha256


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        journal_dir: Path,
        *,
        chain: str,
        signer: Signer,
        fsync: bool = False,
        store_interval: float = 0.02,
        checkpoint_interval: float = 5.0,
        max_pending: int = 10_000,
        max_retry_interval: float = 1.0,
        stall_seconds: float = 3.0,
        sinks: Sequence[Sink] = (),
    ) -> None:
        self._store = store
        self._journal = Journal(journal_dir, fsync=fsync)
        self._interval = store_interval
        self._checkpoint_interval = checkpoint_interval
        self._max_pending = max_pending
        self.chain = chain
        self.signer = signer
        self.inline_stores = 0
        self._ok = True  # the last store write succeeded
        self._attempt_since = 0.0  # when the store write now in progress began (0: none)
        self._stall = stall_seconds
        self.store_error: str | None = None
        self._max_retry = max_retry_interval
        self._queue_lock = threading.Lock()  # held only for in-memory steps, never for I/O
        self._reload_from: int | None = None  # let go of queued records: read them back
        self._queue: deque[ChainRecord] = deque()
        self._storing = threading.Lock()
        self.recovered = recover_journals(store, self._journal.directory)
        self._seq, self._previous = store.head(chain)
        self._stored_head: ChainRecord | None = None  # the last record this writer stored
        self._signed_seq = self._seq  # a checkpoint is due once the head moves past this
        self._last_checkpoint = 0.0
        self.events = 0
        self.batches = 0
        self.checkpoints = 0
        self.sinks = list(sinks)
        for sink in self.sinks:
            backlog = store.chain_records(chain, after_seq=sink.spooled(chain))
            sink.start(chain, self._seq, backlog, self.records_after)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbward-audit", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records journalled and not yet stored (held in memory)."""
        return len(self._queue)

    @property
    def store_ok(self) -> bool:
        """False while the store cannot be written: the last write failed, or the one in
        progress has hung for ``stall_seconds`` (a server that stopped answering)."""
        since = self._attempt_since
        if since and time.monotonic() - since > self._stall:
            return False
        return self._ok

    def record(self, event: AuditEvent) -> None:
        """Chain ``event`` and commit it to the journal. Raises OSError if it cannot be written."""
        seq = self._seq + 1
        line = event_line(self.chain, seq, event)
        data = line.encode()
        digest = _sha256(self._previous + data).digest()
        hexdigest = digest.hex()
        self._journal.append(hexdigest.encode() + b" " + data + b"\n", seq, seq)
        self.events += 1
        # Only once the journal holds it does the record count as part of the chain.
        with self._queue_lock:
            self._seq = seq
            self._previous = digest
            if self._reload_from is not None:
                return  # the store is down: read back from the journal on recovery
            queue = self._queue
            queue.append(ChainRecord(self.chain, seq, hexdigest, line))
            if len(queue) < self._max_pending:
                return
            busy = not self.store_ok or not self._storing.acquire(blocking=False)
            if busy:
                # The store is down, or the storing thread is in the middle of a write that
                # may hang: never wait for it here. Let go of the copies; the journal has all.
                self._reload_from = queue[0].seq
                queue.clear()
                return
        # The storing thread is falling behind (it competes for the interpreter with the
        # event loop): store here, so memory stays bounded and the load slows down.
        try:
            self.inline_stores += 1
            self._store_locked(final=False)
        finally:
            self._storing.release()

    def _run(self) -> None:
        pause = self._interval
        while not self._stop.wait(pause):
            self.store_pending()
            pause = self._interval if self.store_ok else min(pause * 2, self._max_retry)
        self.store_pending(final=True)

    def _checkpoint_due(self, head: ChainRecord | None, *, final: bool) -> Checkpoint | None:
        """A signed checkpoint of ``head`` when the chain moved past the last one and the
        interval has passed (at shutdown, whenever it moved)."""
        if head is None or head.seq <= self._signed_seq:
            return None
        now = time.time()
        if not final and now - self._last_checkpoint < self._checkpoint_interval:
            return None
        return self.signer.checkpoint(self.chain, head.seq, head.hash, now)

    def _take(self) -> tuple[list[ChainRecord], int | None, int]:
        """What to store now: the queued records, or (after letting go of them) the
        journal's from ``reload_from`` on; and the chain's head seq at this moment."""
        with self._queue_lock:
            records = list(self._queue)
            self._queue.clear()
            reload_from = self._reload_from
            high = self._seq
        if reload_from is not None:
            records = [r for r in self._journalled() if reload_from <= r.seq <= high]
        return records, reload_from, high

    def _give_back(self, records: list[ChainRecord], reload_from: int | None) -> None:
        """The store failed: keep the records for the next try (or the journal keeps them)."""
        with self._queue_lock:
            if reload_from is not None or not records:
                return
            if self._reload_from is not None:  # let go meanwhile: start from these
                self._reload_from = min(self._reload_from, records[0].seq)
            else:
                self._queue.extendleft(reversed(records))

    def _stored(self, reload_from: int | None, high: int) -> None:
        with self._queue_lock:
            if reload_from is not None and self._reload_from == reload_from:
                # Records after ``high`` were journalled but not queued: next time.
                self._reload_from = high + 1 if self._seq > high else None

    def store_pending(self, *, final: bool = False) -> None:
        """Move journalled records into the store now, with a checkpoint when one is due."""
        with self._storing:
            self._store_locked(final=final)

    def _store_locked(self, *, final: bool) -> None:
        records, reload_from, high = self._take()
        for sink in self.sinks:
            sink.offer(records)
        head = records[-1] if records else self._stored_head
        checkpoint = self._checkpoint_due(head, final=final)
        if not records and checkpoint is None:
            return
        self._attempt_since = time.monotonic()
        try:
            if records:
                self._store.write(records, checkpoint)
            elif checkpoint is not None:
                self._store.put_checkpoint(checkpoint)
        except Exception as exc:  # kept in the journal: retried next time
            self._attempt_since = 0.0
            if self._ok:
                log.error(
                    "audit store write failed (records are kept in the journal and "
                    "stored once it works again): %s",
                    exc,
                )
            self._ok = False
            self.store_error = str(exc) or type(exc).__name__
            self._give_back(records, reload_from)
            return
        self._attempt_since = 0.0
        if not self._ok:
            log.warning("audit store writable again: %d record(s) stored", len(records))
        self._ok = True
        self.store_error = None
        self._stored(reload_from, high)
        if checkpoint is not None:
            self.checkpoints += 1
            self._signed_seq = checkpoint.seq
            self._last_checkpoint = checkpoint.ts
        if records:
            self.batches += 1
            self._stored_head = records[-1]
            self._journal.release(records[-1].seq)

    def records_after(self, seq: int) -> list[ChainRecord]:
        """The chain's records after ``seq``: the store's, then what only the journal holds."""
        try:
            found = list(self._store.chain_records(self.chain, after_seq=seq))
        except Exception:
            found = []  # the store is down: the journal still holds what it lacks
        last = found[-1].seq if found else seq
        found.extend(r for r in self._journalled() if r.seq > last)
        return found

    def _journalled(self) -> list[ChainRecord]:
        """Every record of this writer's chain in its journal segments (not yet released)."""
        found: list[ChainRecord] = []
        for segment in journal_segments(self._journal.directory):
            if segment.parent == self._journal.directory:
                with contextlib.suppress(FileNotFoundError):
                    found.extend(r for r in Journal.read(segment) if r.chain == self.chain)
        return found

    async def close(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        self.store_pending(final=True)
        done = not self._queue and self._reload_from is None
        self._journal.close(stored_up_to=self._seq if done else 0)
        self._store.close()
        for sink in self.sinks:
            await asyncio.to_thread(sink.close)


class DisabledAuditWriter(AuditWriter):
    """``audit.enabled: false`` (benchmarks): records are counted, not kept."""

    def record(self, event: AuditEvent) -> None:
        self.events += 1


def recover_journals(store: AuditStore, directory: Path) -> int:
    """Store every record left in journal segments under ``directory``, then drop them.

    Loading is idempotent (a record is known by its chain and seq), so a crash
    during recovery only means the next start does it again.
    """
    count = 0
    segments = journal_segments(directory)
    for segment in segments:
        records = list(Journal.read(segment))
        if records:
            store.write(records)
            count += len(records)
        segment.unlink()
    if count:
        log.warning("audit: stored %d record(s) left in the journal by the last run", count)
    return count
