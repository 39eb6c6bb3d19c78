"""The audit journal: an append-only file that is the commit point of the trail.

A record is committed once its line is written to the journal (handed to the
operating system: it survives a crash of dbward; ``fsync: true`` in the
config makes it survive a crash of the machine too). The SQLite store is
filled from the journal in batches, off the statement path, and a journal
segment is deleted only after everything in it is in the store. On start,
whatever a crash left in the journal is loaded into the store first.

One line per event: a JSON array ``[id, ts, kind, session, identity,
identity_kind, target, source, data]``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dbward.audit.events import AuditEvent

Row = tuple[int, float, str, str, str | None, str | None, str | None, str | None, str]
"""An event as the store keeps it: id first, ``data`` as JSON text."""

_SEGMENT_BYTES = 64 * 1024 * 1024
# One encoder for every event: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode


def event_line(event_id: int, event: AuditEvent) -> bytes:
    """The journal line for an event, in one encoding pass (the statement path's form)."""
    item = [
        event_id,
        event.ts,
        event.kind.value,
        event.session_id,
        event.identity,
        event.identity_kind,
        event.target,
        event.source,
        event.data,
    ]
    return (_encode(item) + "\n").encode()


def event_row(event_id: int, event: AuditEvent) -> Row:
    """An event as the store keeps it (the same fields as its journal line)."""
    row = line_row(event_line(event_id, event))
    assert row is not None
    return row


def row_line(row: Row) -> bytes:
    head = _encode(row[:8])
    return f"{head[:-1]},{row[8]}]\n".encode()


def line_row(line: bytes) -> Row | None:
    """Parse one journal line; None for a torn last line (crash mid-write)."""
    try:
        item: list[Any] = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, list) or len(item) != 9:
        return None
    data = _encode(item[8])
    return (int(item[0]), float(item[1]), *item[2:8], data)


class Journal:
    """Segments ``journal-<first id>.log`` in a directory; one writer, one cleaner."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._fsync = fsync
        self._fd = -1
        self._size = 0
        self._current: Path | None = None
        self._sealed: list[tuple[Path, int]] = []  # (segment, last id in it)
        self._lock = threading.Lock()

    def leftovers(self) -> list[Path]:
        """Segments a previous run left behind, oldest first."""
        return sorted(self.directory.glob("journal-*.log"), key=lambda p: int(p.stem.split("-")[1]))

    @staticmethod
    def read(segment: Path) -> Iterator[Row]:
        with segment.open("rb") as handle:
            for line in handle:
                row = line_row(line)
                if row is not None:
                    yield row

    def append(self, data: bytes, first_id: int, last_id: int) -> None:
        """Write ``data`` (whole lines) for events ``first_id..last_id``; raises OSError."""
        if self._fd < 0 or self._size >= _SEGMENT_BYTES:
            self._open(first_id)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._fsync:
            os.fdatasync(self._fd)
        self._size += len(data)
        self._last_id = last_id

    def _open(self, first_id: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            assert self._current is not None
            with self._lock:
                self._sealed.append((self._current, self._last_id))
        self._current = self.directory / f"journal-{first_id}.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._current, flags, 0o600)
        self._size = 0

    def release(self, stored_up_to: int) -> None:
        """Delete sealed segments whose every event is in the store."""
        with self._lock:
            keep = []
            for segment, last_id in self._sealed:
                if last_id <= stored_up_to:
                    segment.unlink(missing_ok=True)
                else:
                    keep.append((segment, last_id))
            self._sealed = keep

    def close(self, *, stored_up_to: int) -> None:
        """Close; delete every segment if the store holds all events."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._current is not None:
                with self._lock:
                    self._sealed.append((self._current, self._last_id))
                self._current = None
        self.release(stored_up_to)

    _last_id = 0
