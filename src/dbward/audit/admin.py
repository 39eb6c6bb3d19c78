"""Recording what operators do from the command line (tokens, exports) in the trail.

The command line has no journal and no long-lived writer: it appends to its
own chain, ``<instance>-cli``, in one SQLite transaction that also signs the
new head, so each action is chained and checkpointed the moment it is done.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Any

from dbward.audit.chain import ChainRecord
from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.signing import SIGNING_KEY, Signer
from dbward.audit.store import AuditStore
from dbward.keyring import load_keyring


def operator() -> str:
    """Who is at the command line: the operating-system user."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def record_admin(
    store: AuditStore, state_dir: Path, instance: str, kind: EventKind, data: dict[str, Any]
) -> ChainRecord:
    """Append one operator action to the command line's chain and sign it."""
    signer = Signer(load_keyring(state_dir).key(SIGNING_KEY))
    event = AuditEvent(kind, session_id="cli", identity=operator(), source="cli", data=data)
    (record,) = store.append(
        f"{instance}-cli",
        [event],
        lambda chain, seq, head: signer.checkpoint(chain, seq, head, time.time()),
    )
    return record
