"""One hierarchy for every error dbward raises on purpose.

Each error carries a message meant for a person: it names the cause and, where
there is one, the fix. Errors that reach a PostgreSQL client also carry the
SQLSTATE they are sent with.
"""

from __future__ import annotations


class DbwardError(Exception):
    """Base of all errors dbward raises on purpose."""

    sqlstate: str = "XX000"

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate


class ConfigError(DbwardError):
    """The configuration file is missing, malformed or inconsistent."""


class CredentialError(DbwardError):
    """dbward could not read the upstream credentials it was told to use."""

    sqlstate = "08006"


class AuthenticationError(DbwardError):
    """A client could not be authenticated. The message never contains a secret."""

    sqlstate = "28P01"


class AuthorizationError(DbwardError):
    """An authenticated identity may not use what it asked for."""

    sqlstate = "28000"


class UpstreamError(DbwardError):
    """The upstream database could not be reached or refused dbward."""

    sqlstate = "08006"
