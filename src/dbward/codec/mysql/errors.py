"""The one error the MySQL codec raises on bad input."""

from __future__ import annotations

from dbward.errors import DbwardError


class MysqlProtocolError(DbwardError):
    """Bytes that are not a valid MySQL protocol packet in this position."""

    sqlstate = "08S01"
