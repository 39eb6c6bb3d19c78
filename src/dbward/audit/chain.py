"""The hash chain: each record's hash covers the previous record's hash and its own line.

A record's *line* is the exact JSON text that was hashed (and journalled, and
stored): ``[chain, seq, ts, kind, session, identity, identity_kind, target,
source, data]``. A chain belongs to one writer (one dbward process, or the
command line), and ``seq`` counts its records from 1. Its hash is
``SHA-256(previous hash || line)``, the first record of a chain following
:data:`GENESIS`. Changing, removing,
adding or moving a record changes every hash after it; signed checkpoints
(:mod:`dbward.audit.signing`) pin the chain's head so that cutting its tail
shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbward.audit.events import AuditEvent, EventKind, StoredEvent

GENESIS = bytes(32)
"""The 'previous hash' of a chain's first record."""

# One encoder for every line: json.dumps with options builds a new one per call.
encode_json = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode


def link(previous: bytes, line: bytes) -> bytes:
    """The hash of a record whose line is ``line``, following a record hashed ``previous``."""
    return hashlib.sha256(previous + line).digest()


def event_line(chain: str, seq: int, event: AuditEvent) -> str:
    """The line an event is hashed, journalled and stored as (one encoding pass)."""
    return encode_json(
        [
            chain,
            seq,
            event.ts,
            event.kind.value,
            event.session_id,
            event.identity,
            event.identity_kind,
            event.target,
            event.source,
            event.data,
        ]
    )


def extend(
    chain: str, seq: int, previous: bytes, events: Iterable[AuditEvent]
) -> list[ChainRecord]:
    """``events`` chained after record ``seq`` (hashed ``previous``) of ``chain``."""
    records = []
    for event in events:
        seq += 1
        line = event_line(chain, seq, event)
        previous = link(previous, line.encode())
        records.append(ChainRecord(chain, seq, previous.hex(), line))
    return records


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """A record as it is kept: its place in its chain, its hash (hex) and the exact line
    hashed. ``id`` is the store's row number (the order records were stored in,
    0 for one read from the journal); it is not part of what is hashed."""

    chain: str
    seq: int
    hash: str
    line: str
    id: int = 0

    def fields(self) -> list[Any]:
        """The line's fields; raises ValueError when the line is not a record's JSON."""
        item = json.loads(self.line)
        if not isinstance(item, list) or len(item) != 10 or not isinstance(item[9], dict):
            raise ValueError("not an audit record line")
        return item

    def stored(self) -> StoredEvent:
        item = self.fields()
        return StoredEvent(
            self.id,
            AuditEvent(
                kind=EventKind(item[3]),
                session_id=item[4],
                identity=item[5],
                identity_kind=item[6],
                target=item[7],
                source=item[8],
                data=item[9],
                ts=item[2],
            ),
            self.chain,
            self.seq,
        )


def journal_entry(record: ChainRecord) -> bytes:
    """The journal's form of a record: ``<hash> <line>``, one per line."""
    return f"{record.hash} {record.line}\n".encode()


def parse_journal_entry(entry: bytes) -> ChainRecord | None:
    """A journal line back as a record; None for a torn last line (a crash mid-write)."""
    if not entry.endswith(b"\n"):
        return None
    try:
        digest, line = entry[:-1].decode().split(" ", 1)
        item = json.loads(line)
        if not isinstance(item, list) or len(item) != 10:
            return None
        return ChainRecord(str(item[0]), int(item[1]), digest, line)
    except (ValueError, TypeError):
        return None
