"""Finding PII inside a value: one Hyperscan pass, then exact patterns and validators.

Hyperscan runs every detector's prefilter over the value at once; only the
detectors it names run their exact regex and validator, so a value with
nothing that looks like PII costs one native call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hyperscan

from dbward.masking.detectors import DETECTORS, Detector
from dbward.masking.entities import Entity


@dataclass(frozen=True, slots=True)
class Hit:
    start: int
    end: int
    entity: Entity
    detector: str


def _compile(detectors: tuple[Detector, ...]) -> hyperscan.Database:
    database = hyperscan.Database()
    flags = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
    database.compile(
        expressions=[d.prefilter for d in detectors],
        ids=list(range(len(detectors))),
        elements=len(detectors),
        flags=[flags] * len(detectors),
    )
    return database


class Scanner:
    """Finds validated PII spans in UTF-8 bytes. One per process: compiling takes ~50 ms."""

    def __init__(self, detectors: tuple[Detector, ...] = DETECTORS) -> None:
        self.detectors = detectors
        self._database = _compile(detectors)
        self._found: list[int] = []
        found = self._found

        def on_match(id_: int, start: int, end: int, flags: int, context: object) -> None:
            found.append(id_)

        self._on_match = on_match

    def candidates(self, data: bytes) -> list[int]:
        """Indexes of the detectors whose prefilter matched somewhere in ``data``."""
        found = self._found
        found.clear()
        self._database.scan(data, match_event_handler=self._on_match)
        return found[:] if found else []

    @staticmethod
    def _accept(
        detector: Detector, data: bytes, start: int, end: int, hits: list[Hit]
    ) -> int | None:
        """Where the PII starting at ``start`` ends, or None. A candidate that fails its
        check is cut back at its separators: a card followed by its expiry date, two
        phone numbers in a row."""
        before = detector.not_after
        if before is not None and before.search(data, max(start - 20, 0), start):
            return None
        if _valid(detector, data, start, end, hits):
            return end
        if detector.shrink:  # the cuts are looked for only once the whole is rejected
            for stop in _cuts(data, start, end):
                if _valid(detector, data, start, stop, hits):
                    return stop
        return None

    def find(self, data: bytes) -> list[Hit]:
        """The PII spans in ``data``, validated, without overlaps, in order."""
        ids = self.candidates(data)
        if not ids:
            return []
        hits: list[Hit] = []
        for index in sorted(set(ids)):
            detector = self.detectors[index]
            pos = 0
            while True:
                match = detector.pattern.search(data, pos)
                if match is None:
                    break
                start, end = match.span("value")
                found = self._accept(detector, data, start, end, hits)
                if found is None:
                    # A stray short number before a phone ("qty 3 212-555-0143") is
                    # skipped; a long rejected number is not searched for smaller ones.
                    lead = _LEAD.match(data, start)
                    pos = start + 1 if lead is not None else end
                    continue
                hits.append(Hit(start, found, detector.entity, detector.name))
                pos = found
        hits.sort(key=lambda h: h.start)
        return hits


def _valid(detector: Detector, data: bytes, start: int, stop: int, hits: list[Hit]) -> bool:
    if any(h.start < stop and start < h.end for h in hits):
        return False  # an earlier (higher-priority) detector has this text
    validate = detector.validate
    return validate is None or validate(data[start:stop].decode("utf-8", "replace"))


_SEPARATOR_RUN = re.compile(rb"[ -]+")
_LEAD = re.compile(rb"\+?\d{1,2}[ -]")


def _cuts(data: bytes, start: int, end: int) -> list[int]:
    """Where a rejected number may end instead, longest first: before a change of
    separator (``212-555-0143 212-555-0144``, or two spaces after one) or before a
    short tail (an expiry date or a CVV after a card), never inside a run of like
    groups (a tracking number is not a card followed by more digits)."""
    runs = [(m.start(), m.group(0)) for m in _SEPARATOR_RUN.finditer(data, start + 1, end)]
    cuts = []
    previous_end = start
    for index, (position, run) in enumerate(runs):
        changed = index > 0 and runs[index - 1][1] != run
        tail = sum(1 for c in data[position:end] if 48 <= c <= 57)
        group = position - previous_end
        if changed or (tail <= 4 and tail != group):
            cuts.append(position)
        previous_end = position + len(run)
    return cuts[::-1]


_shared: Scanner | None = None


def shared_scanner() -> Scanner:
    global _shared
    if _shared is None:
        _shared = Scanner()
    return _shared
