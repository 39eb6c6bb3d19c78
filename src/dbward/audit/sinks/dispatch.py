"""A sink at work: records spooled as they are stored, delivered by a thread of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from dbward.audit.chain import ChainRecord
from dbward.audit.export import record_dict
from dbward.audit.sinks.formats import spool_line
from dbward.audit.sinks.senders import Sender
from dbward.audit.sinks.spool import Spool

log = logging.getLogger(__name__)

_MAX_HELD = 50_000  # records kept in memory while the spool cannot be written


class Sink:
    def __init__(
        self,
        name: str,
        sender: Sender,
        spool_dir: Path,
        *,
        batch: int = 100,
        max_retry_interval: float = 30.0,
    ) -> None:
        self.name = name
        self.sender = sender
        self.spool = Spool(spool_dir)
        self.batch = batch
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None
        self._max_retry = max_retry_interval
        self._spooled: dict[str, int] = {}  # chain -> last seq spooled
        last = self.spool.last_line()
        if last is not None:
            self._spooled[str(last.get("chain"))] = int(str(last.get("seq") or 0))
        self._held: list[ChainRecord] = []  # not spooled yet: a spool write failed
        self._gap = False  # more failed than is held: re-read what is missing
        self._reread: Callable[[int], Iterable[ChainRecord]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dbward-sink-{name}", daemon=True)

    def start(
        self,
        chain: str,
        head: int,
        backlog: Iterable[ChainRecord],
        reread: Callable[[int], Iterable[ChainRecord]] | None = None,
    ) -> None:
        """Begin: a new spool starts at the chain's head; an old one catches up first.
        ``reread(seq)`` gives the chain's records after ``seq`` (after a failed spool write)."""
        self._reread = reread
        if self.spool.new and chain not in self._spooled:
            self._spooled[chain] = head
        else:
            self.offer(list(backlog))
        self._thread.start()

    def spooled(self, chain: str) -> int:
        return self._spooled.get(chain, 0)

    def offer(self, records: list[ChainRecord]) -> None:
        """Spool the records not spooled yet (called by the storing thread)."""
        records = [*self._held, *records]
        if self._gap and self._reread is not None and records:
            try:
                records = [*self._reread(self._spooled.get(records[0].chain, 0)), *records]
            except Exception as exc:
                log.error("audit sink %s: cannot re-read records for its spool: %s", self.name, exc)
                return
        fresh: dict[int, ChainRecord] = {}
        for record in records:
            if record.seq > self._spooled.get(record.chain, 0):
                fresh.setdefault(record.seq, record)
        if not fresh:
            return
        ordered = [fresh[seq] for seq in sorted(fresh)]
        try:
            self.spool.append([spool_line(record_dict(r.stored(), r.hash)) for r in ordered])
        except OSError as exc:
            if not self._held and not self._gap:
                log.error(
                    "audit sink %s: cannot write its spool (the records are re-read and "
                    "spooled once it can): %s",
                    self.name,
                    exc,
                )
            if len(ordered) <= _MAX_HELD or self._reread is None:
                self._held = ordered
            else:
                self._held, self._gap = [], True  # re-read from the store and journal later
            return
        self._held, self._gap = [], False
        self._spooled[ordered[-1].chain] = ordered[-1].seq

    def _run(self) -> None:
        pause = 0.0
        while not self._stop.is_set():
            lines, cursor = self.spool.read(self.batch)
            if not lines:
                self.spool.wait(0.5)
                continue
            try:
                self.sender.send(lines)
            except Exception as exc:
                self.failures += 1
                if self.last_error is None:
                    log.error(
                        "audit sink %s: delivery failed, records stay spooled and are retried: %s",
                        self.name,
                        exc,
                    )
                self.last_error = str(exc) or type(exc).__name__
                pause = min(max(pause * 2, 0.1), self._max_retry)
                self._stop.wait(pause)
                continue
            if self.last_error is not None:
                log.warning("audit sink %s: delivering again", self.name)
            self.last_error = None
            pause = 0.0
            self.spool.advance(cursor)
            self.delivered += len(lines)

    def close(self, *, drain: float = 2.0) -> None:
        """Stop, after trying for up to ``drain`` seconds to deliver what is spooled."""
        if self._thread.is_alive():
            waited = 0.0
            while waited < drain and self.spool.pending() and self.last_error is None:
                self._stop.wait(0.05)
                waited += 0.05
            self._stop.set()
            with self.spool.ready:
                self.spool.ready.notify_all()
            self._thread.join(5)
        self.sender.close()
