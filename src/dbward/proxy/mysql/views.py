"""What each MySQL view's columns are renamed from, per connection, for masking.

Read from ``information_schema.VIEWS`` on a session's own upstream connection
as it logs in (at most once a minute per connection), and learned at once
from the ``CREATE VIEW`` statements sessions run. A view that renames
``full_name`` to ``who`` then has ``who`` masked as the name it is.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dbward.codec.mysql.constants import Capability, Command
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.responses import Event, Response
from dbward.codec.mysql.results import text_row_spans
from dbward.proxy.mysql.packets_io import PacketReader
from dbward.proxy.mysql.upstream import MysqlUpstream
from dbward.sql.mysql_renames import renames

log = logging.getLogger(__name__)

ViewMap = dict[tuple[str, str], dict[str, str]]  # (database, view) -> {column: source}
_QUERY = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
    "WHERE TABLE_SCHEMA NOT IN ('sys', 'mysql', 'information_schema', 'performance_schema')"
)


class ViewRenames:
    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._maps: dict[str, ViewMap] = {}
        self._loaded: dict[str, float] = {}

    def get(self, connection: str) -> ViewMap:
        return self._maps.get(connection, {})

    def stale(self, connection: str) -> bool:
        return time.monotonic() - self._loaded.get(connection, -self.ttl - 1) > self.ttl

    def learn(self, connection: str, database: str, view: str, text: str) -> None:
        """A session created or replaced ``view``: its renames, from its own text."""
        self._maps.setdefault(connection, {})[(database, view)] = renames(text)

    async def load(self, connection: str, upstream: MysqlUpstream, within: float) -> None:
        """Read every view's definition over ``upstream`` (before the client uses it)."""
        try:
            rows = await asyncio.wait_for(_query(upstream, _QUERY, 3), within)
        except (TimeoutError, MysqlProtocolError) as exc:
            log.warning("cannot read the views of %s: %s", connection, exc)
            return
        found: ViewMap = {}
        for schema, name, definition in rows:
            if schema and name and definition:
                found[(schema, name)] = renames(definition)
        self._maps[connection] = found
        self._loaded[connection] = time.monotonic()


async def _query(upstream: MysqlUpstream, sql: str, width: int) -> list[tuple[str | None, ...]]:
    """The rows of a text query run on ``upstream`` (no client is attached yet)."""
    reader = PacketReader(upstream.conn, max_payload=64 * 1024 * 1024, what="upstream packet")
    reader.send_first(bytes((Command.QUERY,)) + sql.encode())
    response = Response(
        Command.QUERY, deprecate_eof=bool(upstream.capabilities & Capability.DEPRECATE_EOF)
    )
    rows: list[tuple[str | None, ...]] = []
    while not response.done:
        payload = await reader.next()
        event = response.feed(payload, 0, len(payload))
        if event == Event.ROW:
            spans = text_row_spans(payload, 0, len(payload), width)
            rows.append(
                tuple(
                    payload[start:end].decode("utf-8", "replace") if start >= 0 else None
                    for _, start, end in spans
                )
            )
    if response.error is not None:
        raise MysqlProtocolError(f"{response.error.code}: {response.error.message}")
    if reader.buffered:
        raise MysqlProtocolError("upstream sent more than the answer")
    return rows
