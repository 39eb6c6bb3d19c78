"""Verifying the trail: every chain re-hashed, every checkpoint's signature checked.

Works on records from anywhere (the live store, an export bundle) and needs
only the public key. It reports the first record that is not as it was
written, and why:

- modified: the line no longer hashes to the value recorded for it, or the
  chain up to a checkpoint no longer ends in the head that was signed;
- deleted: a sequence number is missing;
- inserted or reordered: a sequence number comes again or out of order, or a
  record's stored place differs from the place its hashed line names;
- truncated: a signed checkpoint covers more records than the chain holds.

Records after a chain's last checkpoint are reported as not yet signed: a
checkpoint follows within seconds while dbward runs, and at shutdown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dbward.audit.chain import GENESIS, ChainRecord, link
from dbward.audit.signing import Checkpoint, signature_valid, trusted
from dbward.audit.store import AuditStore


@dataclass(frozen=True, slots=True)
class Problem:
    chain: str
    seq: int  # where the chain first goes wrong
    kind: str  # "modified", "deleted", "inserted", "reordered", "truncated", "signature"
    detail: str
    record_id: int = 0  # the store's row, when there is one

    def __str__(self) -> str:
        if self.chain == "-":  # the bundle as a whole
            return f"bundle: {self.kind}: {self.detail}"
        where = f"record {self.chain}#{self.seq}"
        if self.record_id:
            where += f" (row {self.record_id})"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    chain: str
    records: int  # records checked
    first_seq: int
    last_seq: int
    signed_seq: int  # the last seq a valid checkpoint covers (0: none)
    checkpoints: int  # valid checkpoints seen
    problem: Problem | None = None

    @property
    def unsigned(self) -> int:
        """Records after the last checkpoint."""
        return max(self.last_seq - self.signed_seq, 0) if self.problem is None else 0


@dataclass(frozen=True, slots=True)
class Verification:
    chains: tuple[ChainReport, ...] = ()
    problems: tuple[Problem, ...] = field(default=())  # outside any chain (bundle signature)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.problem is None for c in self.chains)

    @property
    def first_problem(self) -> Problem | None:
        if self.problems:
            return self.problems[0]
        return next((c.problem for c in self.chains if c.problem is not None), None)

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)


def verify_chain(
    chain: str,
    records: Iterable[ChainRecord],
    checkpoints: Iterable[Checkpoint],
    public_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey],
    *,
    anchor: tuple[int, bytes] = (0, GENESIS),
) -> ChainReport:
    """Check one chain's records, in their stored order, from ``anchor`` (seq, hash) on.

    A checkpoint counts when one of ``public_keys`` (the keys the auditor trusts: one per
    dbward instance whose chains are checked) signed it."""
    keys = trusted(public_keys)
    signed: dict[int, Checkpoint] = {}
    bad_signature: Checkpoint | None = None
    for checkpoint in checkpoints:
        if checkpoint.chain != chain:
            continue
        key = keys.get(checkpoint.key_id)
        if key is not None and signature_valid(key, checkpoint.payload(), checkpoint.signature):
            signed[checkpoint.seq] = checkpoint
        elif bad_signature is None:
            bad_signature = checkpoint
    seq, previous = anchor
    first = seq + 1
    count = 0
    signed_seq = 0
    seen_checkpoints = 0

    def report(problem: Problem | None) -> ChainReport:
        return ChainReport(chain, count, first, seq, signed_seq, seen_checkpoints, problem)

    if bad_signature is not None:
        return report(
            Problem(
                chain,
                bad_signature.seq,
                "signature",
                (
                    f"the checkpoint of record {bad_signature.seq} does not carry a valid "
                    "signature: it was changed after it was signed"
                    if bad_signature.key_id in keys
                    else f"the checkpoint of record {bad_signature.seq} is signed by key "
                    f"{bad_signature.key_id}, which is not among the trusted keys (if that is "
                    "another dbward instance's key, add its public key: --public-key FILE)"
                ),
            )
        )
    for record in records:
        expected = seq + 1
        try:
            item = record.fields()
            named_chain, named_seq = item[0], item[1]
        except ValueError:
            return report(
                Problem(chain, expected, "modified", "the line is not a record", record.id)
            )
        if named_chain != chain or named_seq != record.seq:
            return report(
                Problem(
                    chain,
                    record.seq,
                    "reordered",
                    f"it is stored as {record.chain}#{record.seq} but its hashed line says "
                    f"{named_chain}#{named_seq}",
                    record.id,
                )
            )
        if named_seq > expected:
            missing = f"{expected}" if named_seq == expected + 1 else f"{expected}..{named_seq - 1}"
            return report(
                Problem(chain, expected, "deleted", f"record(s) {missing} are missing", record.id)
            )
        if named_seq < expected:
            return report(
                Problem(
                    chain,
                    named_seq,
                    "inserted",
                    f"seq {named_seq} comes again (or out of order) after seq {seq}",
                    record.id,
                )
            )
        digest = link(previous, record.line.encode())
        if digest.hex() != record.hash:
            return report(
                Problem(
                    chain,
                    named_seq,
                    "modified",
                    "its content no longer matches the hash it was recorded with",
                    record.id,
                )
            )
        pinned = signed.get(named_seq)
        if pinned is not None:
            if pinned.head != record.hash:
                return report(
                    Problem(
                        chain,
                        named_seq,
                        "modified",
                        "the chain up to here no longer ends in the head signed at "
                        f"{pinned.ts:.3f}: a record at or before it was changed and the "
                        "hashes after it recomputed",
                        record.id,
                    )
                )
            signed_seq = named_seq
            seen_checkpoints += 1
        seq, previous = named_seq, digest
        count += 1
    beyond = [c for s, c in signed.items() if s > seq]
    if beyond:
        last = max(beyond, key=lambda c: c.seq)
        return report(
            Problem(
                chain,
                seq + 1,
                "truncated",
                f"the chain ends at record {seq}, but a checkpoint signed at {last.ts:.3f} "
                f"covers {last.seq} records: {seq + 1}..{last.seq} were removed",
            )
        )
    return report(None)


def verify_store(
    store: AuditStore, public_keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]
) -> Verification:
    """Verify every chain in a store (each instance's chains with its own key)."""
    keys = list(trusted(public_keys).values())
    reports = [
        verify_chain(chain, store.chain_records(chain), store.checkpoints(chain), keys)
        for chain in store.chains()
    ]
    return Verification(tuple(reports))
