"""Cancel keys: dbward hands each client its own key and maps it to the upstream's.

A client's CancelRequest arrives on a new connection with the key dbward
gave it; the registry finds the upstream backend behind it, and dbward sends
the upstream's own key there. Upstream keys never reach clients.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from dbward.codec.pg.backend import BackendKeyData
from dbward.config import Connection


@dataclass(frozen=True, slots=True)
class CancelTarget:
    connection_name: str
    connection: Connection
    upstream_key: BackendKeyData
    session_id: str
    identity: str
    identity_kind: str


class CancelRegistry:
    def __init__(self) -> None:
        self._targets: dict[tuple[int, int], CancelTarget] = {}

    def issue(self, target: CancelTarget) -> BackendKeyData:
        """A fresh client-facing key for ``target``."""
        while True:
            key = (secrets.randbelow(2**31 - 1) + 1, secrets.randbits(32))
            if key not in self._targets:
                self._targets[key] = target
                return BackendKeyData(*key)

    def find(self, process_id: int, secret_key: int) -> CancelTarget | None:
        return self._targets.get((process_id, secret_key))

    def forget(self, key: BackendKeyData) -> None:
        self._targets.pop((key.process_id, key.secret_key), None)

    def __len__(self) -> int:
        return len(self._targets)
