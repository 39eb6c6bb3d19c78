"""Exporting the trail: JSON lines, CSV and OCSF for a SIEM, and signed bundles for auditors.

A *bundle* is a JSON-lines file an auditor can check offline with nothing but
dbward's public key (``dbward audit verify --file``): a header, every record
of each chain in the chosen time range (whole and in order, as hashed), the
hash each chain segment follows, the checkpoints signed while dbward ran, and
a last line that signs the SHA-256 of everything before it. A changed,
missing, added or moved record breaks its chain; a cut-off file loses its
signature line; a changed header breaks the signature.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dbward.audit.chain import GENESIS, ChainRecord
from dbward.audit.events import EventKind, StoredEvent
from dbward.audit.signing import Checkpoint, Signer, signature_valid, trusted
from dbward.audit.store import AuditStore
from dbward.audit.verify import Problem, Verification, verify_chain

BUNDLE_FORMAT = "dbward-audit-bundle"
BUNDLE_VERSION = 1
OCSF_VERSION = "1.1.0"


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


def record_dict(stored: StoredEvent, digest: str | None = None) -> dict[str, Any]:
    e = stored.event
    item: dict[str, Any] = {
        "chain": stored.chain,
        "seq": stored.seq,
        "time": _iso(e.ts),
        "ts": e.ts,
        "kind": e.kind.value,
        "session_id": e.session_id,
        "identity": e.identity,
        "identity_kind": e.identity_kind,
        "connection": e.target,
        "source": e.source,
        "data": e.data,
    }
    if digest is not None:
        item["hash"] = digest
    return item


# SIEM formats -------------------------------------------------------------------------

CSV_COLUMNS = (
    "time", "chain", "seq", "kind", "session_id", "identity", "identity_kind", "connection",
    "source", "decision", "rule", "statement", "rows", "sqlstate", "tables_read",
    "tables_written", "masked_values", "agent", "hash",
)  # fmt: skip


def write_jsonl(records: Iterable[ChainRecord], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record_dict(record.stored(), record.hash), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def write_csv(records: Iterable[ChainRecord], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        stored = record.stored()
        e, data = stored.event, stored.event.data
        lineage = data.get("lineage") or {}
        masked = data.get("masked") or {}
        agent = data.get("agent") or {}
        writer.writerow(
            [
                _iso(e.ts), record.chain, record.seq, e.kind.value, e.session_id,
                e.identity or "", e.identity_kind or "", e.target or "", e.source or "",
                data.get("decision", ""), data.get("rule", ""), data.get("statement", ""),
                "" if data.get("rows") is None else data["rows"], data.get("sqlstate", ""),
                " ".join(lineage.get("read", {})), " ".join(lineage.get("write", {})),
                masked.get("values", ""), " ".join(f"{k}={v}" for k, v in sorted(agent.items())),
                record.hash,
            ]
        )  # fmt: skip
        count += 1
    return count


_ACTIVITY = {  # OCSF Datastore Activity (6005) activity by the command's first word
    "SELECT": (1, "Read"), "FETCH": (1, "Read"), "SHOW": (1, "Read"), "COPY": (1, "Read"),
    "UPDATE": (2, "Update"), "INSERT": (5, "Write"), "MERGE": (5, "Write"),
    "CREATE": (6, "Create"), "DELETE": (7, "Delete"), "DROP": (7, "Delete"),
    "TRUNCATE": (7, "Delete"),
}  # fmt: skip


def ocsf_event(record: ChainRecord) -> dict[str, Any]:
    """One record as an OCSF 1.1 event: Authentication (3002) for logons and logoffs,
    Datastore Activity (6005) for everything else."""
    stored = record.stored()
    e, data = stored.event, stored.event.data
    user: dict[str, Any] = {"name": e.identity or data.get("user") or "unknown"}
    if e.identity_kind:
        user["type"] = e.identity_kind
    if data.get("groups"):
        user["groups"] = [{"name": g} for g in data["groups"]]
    host, _, port = (e.source or "").rpartition(":")
    event: dict[str, Any] = {
        "time": int(e.ts * 1000),
        "severity_id": 1,
        "severity": "Informational",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{record.chain}#{record.seq}",
            "product": {"name": "dbward", "vendor_name": "dbward"},
            "log_name": "audit",
        },
        "actor": {"user": user, "session": {"uid": e.session_id}},
        "unmapped": {"dbward": {"kind": e.kind.value, "hash": record.hash, **data}},
    }
    if host:
        event["src_endpoint"] = {"ip": host.strip("[]"), "port": int(port) if port.isdigit() else 0}
    failed = bool(data.get("sqlstate")) or e.kind is EventKind.LOGIN_FAILED
    denied = data.get("decision") in ("deny", "review")
    event["status_id"], event["status"] = (2, "Failure") if failed or denied else (1, "Success")
    if e.kind in (EventKind.CONNECTION_START, EventKind.CONNECTION_END, EventKind.LOGIN_FAILED):
        logoff = e.kind is EventKind.CONNECTION_END
        event.update(
            class_uid=3002,
            class_name="Authentication",
            category_uid=3,
            category_name="Identity & Access Management",
            activity_id=2 if logoff else 1,
            activity_name="Logoff" if logoff else "Logon",
        )
        event["type_uid"] = 300200 + event["activity_id"]
        event["message"] = data.get("reason") or e.kind.value
        return event
    tags = data.get("tags")
    command = str(tags[0]).split(" ", 1)[0] if isinstance(tags, list) and tags else ""
    activity_id, activity_name = _ACTIVITY.get(command, (4, "Query"))
    event.update(
        class_uid=6005,
        class_name="Datastore Activity",
        category_uid=6,
        category_name="Application Activity",
        activity_id=activity_id,
        activity_name=activity_name,
        type_uid=600500 + activity_id,
        message=data.get("statement") or e.kind.value,
    )
    event["database"] = {"name": e.target or "", "type": "PostgreSQL"}
    if data.get("statement"):
        event["query_info"] = {"query_string": data["statement"]}
    if denied:
        event["disposition_id"], event["disposition"] = 2, "Blocked"
    elif data.get("decision") == "allow":
        event["disposition_id"], event["disposition"] = 1, "Allowed"
    return event


def write_ocsf(records: Iterable[ChainRecord], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(ocsf_event(record), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


# signed bundles -----------------------------------------------------------------------


def chain_segment(
    store: AuditStore, chain: str, since: float | None, until: float | None
) -> tuple[int, str, list[ChainRecord]]:
    """The contiguous run of a chain's records from the first at or after ``since`` to
    the last before ``until``: (the seq before it, the hash it follows, the records)."""
    clauses, params = ["chain = ?"], [chain]
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)  # type: ignore[arg-type]
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)  # type: ignore[arg-type]
    bounds = store.query(
        f"SELECT min(seq), max(seq) FROM records WHERE {' AND '.join(clauses)}", params
    )[0]
    if bounds[0] is None:
        return 0, GENESIS.hex(), []
    first, last = int(bounds[0]), int(bounds[1])
    before = store.query("SELECT hash FROM records WHERE chain = ? AND seq = ?", (chain, first - 1))
    anchor = before[0][0] if before else GENESIS.hex()
    rows = store.query(
        "SELECT chain, seq, hash, line, id FROM records WHERE chain = ? AND seq BETWEEN ? AND ?"
        " ORDER BY seq",
        (chain, first, last),
    )
    return first - 1, anchor, [ChainRecord(*row) for row in rows]


def bundle_lines(
    store: AuditStore,
    signer: Signer,
    *,
    since: float | None = None,
    until: float | None = None,
) -> Iterator[str]:
    """The bundle, line by line (each ending in a newline), the signature last."""
    digest = hashlib.sha256()

    def emit(item: dict[str, Any]) -> str:
        line = json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n"
        digest.update(line.encode())
        return line

    segments = {}
    for chain in store.chains():
        after, anchor, records = chain_segment(store, chain, since, until)
        if records:
            segments[chain] = (after, anchor, records)
    yield emit(
        {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created": time.time(),
            "key_id": signer.key_id,
            "since": since,
            "until": until,
            "chains": {
                chain: {"after_seq": after, "after_hash": anchor, "records": len(records)}
                for chain, (after, anchor, records) in segments.items()
            },
        }
    )
    for chain, (after, _, records) in segments.items():
        last = records[-1].seq
        for record in records:
            yield emit(
                {"chain": chain, "seq": record.seq, "hash": record.hash, "line": record.line}
            )
        for c in store.checkpoints(chain):
            if after < c.seq <= last:
                yield emit(
                    {
                        "checkpoint": {
                            "chain": c.chain, "seq": c.seq, "head": c.head, "ts": c.ts,
                            "key_id": c.key_id, "signature": c.signature,
                        }
                    }
                )  # fmt: skip
    body = digest.hexdigest()
    yield json.dumps({"sha256": body, "signature": signer.sign(body.encode())}) + "\n"


class BundleError(Exception):
    pass


def verify_bundle(
    data: bytes, public_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]
) -> Verification:
    """Check a bundle's signature (by one of the trusted keys), then every chain segment."""
    keys = list(trusted(public_keys).values())
    lines = data.splitlines(keepends=True)
    if not lines:
        return Verification(problems=(Problem("-", 0, "truncated", "the file is empty"),))
    try:
        last = json.loads(lines[-1])
        if not isinstance(last, dict) or "signature" not in last:
            raise ValueError
    except ValueError:
        return Verification(
            problems=(
                Problem(
                    "-", 0, "truncated", "the last line is not the bundle's signature: the file "
                    "was cut short or appended to",
                ),
            )
        )  # fmt: skip
    body = b"".join(lines[:-1])
    actual = hashlib.sha256(body).hexdigest()
    if actual != last.get("sha256") or not any(
        signature_valid(key, actual.encode(), str(last["signature"])) for key in keys
    ):
        return Verification(
            problems=(
                Problem(
                    "-", 0, "signature", "the bundle's content does not match its signature by "
                    "this key (a line was changed, added, removed or moved, or another key signed "
                    "it)",
                ),
            )
        )  # fmt: skip
    try:
        header = json.loads(lines[0])
        if header.get("format") != BUNDLE_FORMAT:
            raise ValueError
        records: dict[str, list[ChainRecord]] = {chain: [] for chain in header["chains"]}
        checkpoints: dict[str, list[Checkpoint]] = {chain: [] for chain in header["chains"]}
        for raw in lines[1:-1]:
            item = json.loads(raw)
            if "checkpoint" in item:
                c = item["checkpoint"]
                checkpoints[c["chain"]].append(Checkpoint(**c))
            else:
                records[item["chain"]].append(
                    ChainRecord(item["chain"], item["seq"], item["hash"], item["line"])
                )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"not a dbward audit bundle: {type(exc).__name__}: {exc}") from None
    reports = []
    for chain, segment in header["chains"].items():
        report = verify_chain(
            chain,
            records[chain],
            checkpoints[chain],
            keys,
            anchor=(segment["after_seq"], bytes.fromhex(segment["after_hash"])),
        )
        reports.append(report)
    return Verification(tuple(reports))
