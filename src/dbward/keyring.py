"""dbward's own keys, kept in one file under the state directory (mode 0600).

Created with fresh random keys the first time dbward starts; after that, the
same keys every time, so that pseudonyms stay stable across restarts and
workers. A key never leaves this module in a log or an error.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from dbward.errors import ConfigError

KEY_NAMES = ("pseudonym", "audit-signing")
_FILE = "keyring.json"


@dataclass(frozen=True, slots=True)
class Keyring:
    keys: dict[str, bytes] = field(repr=False)

    def key(self, name: str) -> bytes:
        return self.keys[name]

    def __repr__(self) -> str:
        return f"Keyring(keys={sorted(self.keys)})"


def _fresh() -> dict[str, bytes]:
    return {name: secrets.token_bytes(32) for name in KEY_NAMES}


def _encode(keys: dict[str, bytes]) -> bytes:
    data = {"version": 1, "keys": {n: base64.b64encode(k).decode() for n, k in keys.items()}}
    return json.dumps(data, indent=2).encode()


def load_keyring(state_dir: Path) -> Keyring:
    """The keyring in ``state_dir``, created (atomically, 0600) if there is none yet.

    Keys missing from an older file are added and the file is rewritten.
    """
    path = state_dir / _FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        keys = _fresh()
        with os.fdopen(fd, "wb") as out:
            out.write(_encode(keys))
        return Keyring(keys)
    try:
        data = json.loads(path.read_bytes())
        keys = {n: base64.b64decode(k, validate=True) for n, k in data["keys"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read dbward's keyring {path}: {type(exc).__name__}; restore it from a "
            "backup (a new keyring changes every pseudonym)"
        ) from None
    missing = [name for name in KEY_NAMES if name not in keys]
    if missing:
        keys.update({name: secrets.token_bytes(32) for name in missing})
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(_encode(keys))
        temporary.replace(path)
    return Keyring(keys)
