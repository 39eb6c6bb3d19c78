"""Signed checkpoints: an Ed25519 signature over a chain's head, its length and the time.

The signing key is derived from a seed in dbward's keyring; auditors need only
the public key (``dbward audit pubkey``). A checkpoint proves that, at its
time, the chain had exactly ``seq`` records ending in ``head``: a record
removed from the end, or the whole tail replaced, no longer matches it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dbward.errors import DbwardError

SIGNING_KEY = "audit-signing"
"""The keyring entry that seeds the audit signing key."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    seq: int  # records in the chain up to and including the head (the head's seq)
    head: str  # the hash (hex) of record ``seq``
    ts: float
    key_id: str
    signature: str  # base64

    def payload(self) -> bytes:
        return checkpoint_payload(self.chain, self.seq, self.head, self.ts, self.key_id)


def checkpoint_payload(chain: str, seq: int, head: str, ts: float, key_id: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    body = {"chain": chain, "head": head, "key": key_id, "seq": seq, "ts": ts}
    return b"dbward-audit-checkpoint/1 " + json.dumps(body, sort_keys=True).encode()


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; DbwardError naming the cause otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise DbwardError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DbwardError("the public key is not an Ed25519 key (see `dbward audit pubkey`)")
    return key


class Signer:
    """Signs checkpoints and export bundles with the audit key."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        self.public = self._key.public_key()
        self.key_id = key_id(self.public)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode()

    def checkpoint(self, chain: str, seq: int, head: str, ts: float) -> Checkpoint:
        ts = float(ts)  # the payload must read back the same from the store
        payload = checkpoint_payload(chain, seq, head, ts, self.key_id)
        return Checkpoint(chain, seq, head, ts, self.key_id, self.sign(payload))


Trusted = dict[str, Ed25519PublicKey]
"""Public keys an auditor trusts, by key id."""


def trusted(keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]) -> Trusted:
    """One key or several, by their key ids."""
    if isinstance(keys, Ed25519PublicKey):
        keys = [keys]
    return {key_id(key): key for key in keys}


def signature_valid(public: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True
