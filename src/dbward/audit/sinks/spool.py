"""A sink's spool: JSON lines on disk, appended by the writer, consumed by the sender.

``spool-<n>.jsonl`` segments hold one record per line; ``cursor`` says how far
the sender has delivered (segment and byte offset), written atomically after
each delivery. A segment the sender has passed is deleted. Both ends live in
one process (the storing thread appends, the sink's thread reads).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

_SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._lock = threading.Lock()
        self.ready = threading.Condition(self._lock)
        segments = self._segments()
        self._segment = segments[-1] if segments else 1
        if segments:
            self._cut_torn_tail(self._path(self._segment))
        self._cursor = self._read_cursor(segments)
        self.new = not segments  # nothing was ever spooled here

    @staticmethod
    def _cut_torn_tail(path: Path) -> None:
        """A crash mid-append leaves a line without its newline: drop it (the writer
        offers that record again), so the next record does not land on the fragment."""
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def _segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("spool-*.jsonl"))

    def _path(self, segment: int) -> Path:
        return self.directory / f"spool-{segment}.jsonl"

    def _read_cursor(self, segments: list[int]) -> tuple[int, int]:
        try:
            segment, offset = (self.directory / "cursor").read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            return (segments[0] if segments else 1), 0

    def last_line(self) -> dict[str, object] | None:
        """The last record spooled (to know where to continue after a restart)."""
        for segment in reversed(self._segments()):
            data = self._path(segment).read_bytes()
            lines = [line for line in data.split(b"\n") if line.strip()]
            for line in reversed(lines):
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a torn line from a crash
                if isinstance(item, dict):
                    return item
        return None

    def append(self, lines: list[bytes]) -> None:
        """Add records (each a JSON line without its newline); raises OSError."""
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            path = self._path(self._segment)
            if path.exists() and path.stat().st_size >= _SEGMENT_BYTES:
                self._segment += 1
                path = self._path(self._segment)
            with path.open("ab") as out:
                out.write(data)
            self.ready.notify_all()

    def read(self, limit: int) -> tuple[list[bytes], tuple[int, int]]:
        """Up to ``limit`` undelivered lines and the cursor just after them."""
        with self._lock:
            segment, offset = self._cursor
            lines: list[bytes] = []
            while len(lines) < limit:
                path = self._path(segment)
                try:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        while len(lines) < limit:
                            line = handle.readline()
                            if not line.endswith(b"\n"):
                                break  # the end (or a line being written)
                            offset += len(line)
                            if line.strip():
                                lines.append(line.rstrip(b"\n"))
                except FileNotFoundError:
                    pass
                if len(lines) >= limit or segment >= self._segment:
                    break
                segment, offset = segment + 1, 0
            return lines, (segment, offset)

    def pending(self) -> bool:
        lines, _ = self.read(1)
        return bool(lines)

    def advance(self, cursor: tuple[int, int]) -> None:
        """Delivered up to ``cursor``: remember it and drop the segments before it."""
        temporary = self.directory / "cursor.tmp"
        temporary.write_text(f"{cursor[0]} {cursor[1]}\n")
        os.replace(temporary, self.directory / "cursor")
        with self._lock:
            self._cursor = cursor
            for segment in self._segments():
                if segment < cursor[0]:
                    self._path(segment).unlink(missing_ok=True)

    def wait(self, timeout: float) -> None:
        with self._lock:
            self.ready.wait(timeout)
