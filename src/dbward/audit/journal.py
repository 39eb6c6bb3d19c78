"""The audit journal: an append-only file that is the commit point of the trail.

A record is committed once its line is written to the journal (handed to the
operating system: it survives a crash of dbward; ``fsync: true`` in the
config makes it survive a crash of the machine too). The SQLite store is
filled from the journal in batches, off the statement path, and a journal
segment is deleted only after everything in it is in the store. On start,
whatever a crash left in the journal is loaded into the store first.

One line per record: its hash and its line (see :mod:`dbward.audit.chain`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from dbward.audit.chain import ChainRecord, parse_journal_entry

_SEGMENT_BYTES = 64 * 1024 * 1024


def journal_segments(directory: Path) -> list[Path]:
    """Every segment under ``directory`` (workers keep theirs in subdirectories), each
    directory's oldest first."""
    if not directory.is_dir():
        return []
    return sorted(
        directory.rglob("journal-*.log"), key=lambda p: (p.parent, int(p.stem.split("-")[1]))
    )


class Journal:
    """Segments ``journal-<first id>.log`` in a directory; one writer, one cleaner."""

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._fsync = fsync
        self._fd = -1
        self._size = 0
        self._current: Path | None = None
        self._sealed: list[tuple[Path, int]] = []  # (segment, last seq in it)
        self._lock = threading.Lock()

    @staticmethod
    def read(segment: Path) -> Iterator[ChainRecord]:
        with segment.open("rb") as handle:
            for entry in handle:
                record = parse_journal_entry(entry)
                if record is not None:
                    yield record

    def append(self, data: bytes, first_id: int, last_id: int) -> None:
        """Write ``data`` (whole lines) for records ``first_id..last_id`` of the writer's
        chain (their seq); raises OSError."""
        if self._fd < 0 or self._size >= _SEGMENT_BYTES:
            self._open(first_id)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fdatasync(self._fd)
        except OSError:
            self._drop_partial()
            raise
        self._size += len(data)
        self._last_id = last_id

    def _drop_partial(self) -> None:
        """After a failed write, cut the segment back to its last whole line, so the next
        record does not land on a fragment; where that fails, the next record starts a
        new segment (a fragment at a segment's end is skipped when read)."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self._seal()

    def _open(self, first_id: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            assert self._current is not None
            with self._lock:
                self._sealed.append((self._current, self._last_id))
        self._current = self.directory / f"journal-{first_id}.log"
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._current, flags, 0o600)
        self._size = os.fstat(self._fd).st_size
        if self._size and os.pread(self._fd, 1, self._size - 1) != b"\n":
            # A segment given up after a failed write ends in a fragment: end it first.
            os.write(self._fd, b"\n")
            self._size += 1

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
            self._seal()
        self.release(stored_up_to)

    def _seal(self) -> None:
        """Close the segment being written; it is deleted once the store holds it."""
        os.close(self._fd)
        self._fd = -1
        if self._current is not None:
            with self._lock:
                self._sealed.append((self._current, self._last_id))
            self._current = None

    _last_id = 0
