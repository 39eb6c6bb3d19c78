"""Upstream credentials, read from where the config says: environment or file.

They are read at connect time (so a rotated secret file is picked up) and
never logged, echoed or stored. ``UpstreamCredentials.__repr__`` hides the
password so it cannot slip into a log line by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dbward.config import Credentials
from dbward.errors import CredentialError


@dataclass(frozen=True, slots=True)
class UpstreamCredentials:
    user: str
    password: str | None = field(repr=False)

    def __repr__(self) -> str:
        return f"UpstreamCredentials(user={self.user!r}, password=<hidden>)"


def read_credentials(spec: Credentials, connection: str) -> UpstreamCredentials:
    """Resolve ``spec`` for the named connection; errors name the source, never the value."""
    user = spec.user
    if spec.user_env is not None:
        user = os.environ.get(spec.user_env)
        if not user:
            raise CredentialError(
                f"connection {connection!r}: environment variable {spec.user_env} "
                "(upstream user) is not set"
            )
    assert user is not None  # the config model requires user or user_env
    password: str | None = None
    if spec.password_env is not None:
        password = os.environ.get(spec.password_env)
        if password is None:
            raise CredentialError(
                f"connection {connection!r}: environment variable {spec.password_env} "
                "(upstream password) is not set"
            )
    elif spec.password_file is not None:
        try:
            password = spec.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CredentialError(
                f"connection {connection!r}: cannot read the upstream password file "
                f"{spec.password_file}: {exc.strerror}"
            ) from None
    return UpstreamCredentials(user, password)
