"""The one error the PostgreSQL codec raises on bad input."""

from __future__ import annotations

from dbward.errors import DbwardError


class ProtocolError(DbwardError):
    """Bytes that are not a valid PostgreSQL v3 protocol message in this position."""

    sqlstate = "08P01"
