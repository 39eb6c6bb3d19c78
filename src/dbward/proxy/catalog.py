"""What the upstream's catalog says about result columns: origins and type bases.

RowDescription names each column's table by OID and attribute number, and its
type by OID. Masking needs names (``public.users.email``) and, for domains and
extension types (citext), the base type. dbward asks the upstream through a
connection of its own, once per table and type; answers are kept for
``ttl`` seconds and forgotten when a session changes the schema.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable

from dbward.codec.pg.backend import DataRow, ErrorResponse, ReadyForQuery, RowDescription
from dbward.codec.pg.framing import BackendParser
from dbward.codec.pg.frontend import Describe, Parse, Query, Sync
from dbward.config import Connection
from dbward.credentials import read_credentials
from dbward.errors import DbwardError
from dbward.masking.plan import Field, Origin
from dbward.masking.types import known
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.upstream import connect_upstream

log = logging.getLogger(__name__)

_TEXT = 25
_TEXT_ARRAY = 1009


_TARGET_ENTRY = re.compile(
    r":resno (\d+) :resname (?:\\.|\S)+ :ressortgroupref \d+ :resorigtbl (\d+) :resorigcol (\d+)"
)


def view_sources(action: str) -> dict[int, tuple[int, int]]:
    """From a view's ``_RETURN`` rule (``pg_rewrite.ev_action``): output column number ->
    (table OID, column number) for the columns of its top-level select list that come
    straight from a table column.

    Only entries of the outermost query count: its ``:targetList`` at brace depth 1,
    its entries at depth 2; subqueries nest deeper.
    """
    sources: dict[int, tuple[int, int]] = {}
    depth = 0
    in_targets = False
    for position, char in enumerate(action):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ":" and depth == 1:
            in_targets = action.startswith(":targetList", position)
        elif char == ":" and depth == 2 and in_targets:
            entry = _TARGET_ENTRY.match(action, position)
            if entry is not None and int(entry.group(2)):
                sources[int(entry.group(1))] = (int(entry.group(2)), int(entry.group(3)))
    return sources


class CatalogError(DbwardError):
    """The catalog lookup failed; masking falls back to scanning every text column."""


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def qualified(schema: str | None, name: str) -> str:
    """``"schema"."name"`` quoted for ``to_regclass``."""
    quoted = '"' + name.replace('"', '""') + '"'
    return quoted if not schema else '"' + schema.replace('"', '""') + '".' + quoted


class Catalog:
    """Column origins and type bases of one upstream database."""

    def __init__(self, name: str, settings: Connection, *, ttl: float = 300.0) -> None:
        self.name = name
        self.settings = settings
        self.ttl = ttl
        self.origins: dict[tuple[int, int], Origin] = {}
        self.bases: dict[int, int] = {}  # type oid -> base type oid (0: nothing to scan)
        self._tables: dict[int, float] = {}  # table oid -> when it was looked up
        self._types: set[int] = set()
        self._relations: dict[str, tuple[float, list[Field]]] = {}  # COPY's tables by name
        self._conn: Conn | None = None
        self._lock = asyncio.Lock()

    def missing(self, fields: Iterable[Field]) -> tuple[set[int], set[int]]:
        """Table and type OIDs of ``fields`` that are not known (or too old)."""
        now = time.monotonic()
        tables = {
            f.table_oid
            for f in fields
            if f.table_oid and now - self._tables.get(f.table_oid, -1e18) > self.ttl
        }
        types = {
            f.type_oid for f in fields if not known(f.type_oid) and f.type_oid not in self._types
        }
        return tables, types

    def forget(self) -> None:
        """The schema may have changed: look everything up again."""
        self._tables.clear()
        self._types.clear()
        self._relations.clear()

    def cached_table(self, relation: str) -> list[Field] | None:
        """The columns of ``relation`` if they were looked up recently."""
        entry = self._relations.get(relation)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        return entry[1]

    async def load(self, fields: Iterable[Field]) -> None:
        tables, types = self.missing(fields)
        if not tables and not types:
            return
        async with self._lock:
            if tables:
                await self._load_tables(tables)
            if types:
                await self._load_types(types)

    async def _load_tables(self, tables: set[int], depth: int = 0) -> None:
        oids = ",".join(str(int(t)) for t in sorted(tables))
        rows = await self._query(
            "SELECT a.attrelid, a.attnum, n.nspname, c.relname, a.attname, c.relkind "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE a.attrelid IN ({oids}) AND a.attnum > 0 AND NOT a.attisdropped"
        )
        now = time.monotonic()
        for table in tables:
            self._tables[table] = now
        views: set[int] = set()
        for relid, attnum, schema, relname, column, relkind in rows:
            self.origins[(int(relid or 0), int(attnum or 0))] = Origin(
                schema or "", relname or "", column or ""
            )
            if relkind in ("v", "m"):
                views.add(int(relid or 0))
        if views and depth < 3:
            await self._trace_views(views, depth)

    async def _trace_views(self, views: set[int], depth: int) -> None:
        """A view's column that passes a table's column through is that column: a view
        that renames ``email`` to ``contact`` still returns emails."""
        oids = ",".join(str(v) for v in sorted(views))
        rows = await self._query(
            "SELECT ev_class, ev_action FROM pg_catalog.pg_rewrite "
            f"WHERE ev_class IN ({oids}) AND rulename = '_RETURN'"
        )
        passed: dict[tuple[int, int], tuple[int, int]] = {}
        for view, action in rows:
            for resno, source in view_sources(action or "").items():
                passed[(int(view or 0), resno)] = source
        bases = {table for table, _ in passed.values()} - set(self._tables)
        if bases:
            await self._load_tables(bases, depth + 1)
        for column, source in passed.items():
            origin = self.origins.get(source)
            if origin is not None:
                self.origins[column] = origin

    async def _load_types(self, types: set[int]) -> None:
        pending = set(types)
        for _ in range(4):  # a domain over a domain over text: follow a few levels
            if not pending:
                break
            oids = ",".join(str(int(t)) for t in sorted(pending))
            rows = await self._query(
                "SELECT oid, typtype, typbasetype, typelem, typcategory "
                f"FROM pg_catalog.pg_type WHERE oid IN ({oids})"
            )
            follow: set[int] = set()
            for oid_text, typtype, basetype, element, category in rows:
                oid = int(oid_text or 0)
                self._types.add(oid)
                base = int(basetype or 0)
                elem = int(element or 0)
                if typtype == "d" and base:
                    resolved = base if known(base) else self.bases.get(base)
                    if resolved is None:
                        follow.add(base)
                        self.bases[oid] = base
                    else:
                        self.bases[oid] = resolved
                elif category == "S":
                    self.bases[oid] = _TEXT  # citext and other string types
                elif category == "A" and elem and not known(elem):
                    follow.add(elem)
                    self.bases[oid] = -elem  # resolved below
                else:
                    self.bases[oid] = 0
            pending = follow - self._types
        for oid, base in list(self.bases.items()):
            if base < 0:
                self.bases[oid] = _TEXT_ARRAY if self.bases.get(-base) == _TEXT else 0
            elif base and not known(base):
                self.bases[oid] = self.bases.get(base, 0)

    async def table_fields(self, relation: str) -> list[Field]:
        """The columns of ``relation`` (schema-qualified or as the search_path finds it)."""
        async with self._lock:
            rows = await self._query(
                "SELECT a.attname, a.attrelid, a.attnum, a.atttypid, a.atttypmod, "
                "n.nspname, c.relname FROM pg_catalog.pg_attribute a "
                "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE a.attrelid = pg_catalog.to_regclass({_literal(relation)}) "
                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            )
        fields = []
        for name, relid, attnum, typid, typmod, schema, table in rows:
            origin = Origin(schema or "", table or "", name or "")
            self.origins[(int(relid or 0), int(attnum or 0))] = origin
            self._tables[int(relid or 0)] = time.monotonic()
            fields.append(
                Field(
                    name or "",
                    int(relid or 0),
                    int(attnum or 0),
                    int(typid or 0),
                    int(typmod or -1),
                )
            )
        await self.load(fields)
        self._relations[relation] = (time.monotonic(), fields)
        return fields

    async def describe(self, query: str) -> list[Field]:
        """The result columns of ``query`` as the server describes it (it is not run)."""
        async with self._lock:
            try:
                conn = await self._connection()
                conn.write(Parse("", query).encode() + Describe("S", "").encode() + Sync().encode())
                parser = BackendParser()
                fields: list[Field] = []
                error: str | None = None
                while True:
                    for message in parser.feed(await asyncio.wait_for(conn.read(), 10)):
                        if isinstance(message, RowDescription):
                            fields = [
                                Field(f.name, f.table_oid, f.column, f.type_oid, f.type_modifier)
                                for f in message.fields
                            ]
                        elif isinstance(message, ErrorResponse):
                            error = message.message
                        elif isinstance(message, ReadyForQuery):
                            if error is not None:
                                raise CatalogError(f"describing the COPY's query failed: {error}")
                            break
                    else:
                        continue
                    break
            except (ConnectionClosed, TimeoutError, OSError) as exc:
                self._drop()
                raise CatalogError(f"catalog lookup on {self.name!r} failed: {exc!r}") from None
        await self.load(fields)
        return fields

    # the connection ------------------------------------------------------------------

    async def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed_future.done():
            credentials = read_credentials(self.settings.credentials, self.name)
            upstream = await connect_upstream(
                self.settings, credentials, {"application_name": "dbward catalog"}
            )
            self._conn = upstream.conn
        return self._conn

    async def _query(self, sql: str) -> list[tuple[str | None, ...]]:
        try:
            conn = await self._connection()
            conn.write(Query(sql).encode())
            parser = BackendParser()
            rows: list[tuple[str | None, ...]] = []
            error: str | None = None
            while True:
                for message in parser.feed(await asyncio.wait_for(conn.read(), 10)):
                    if isinstance(message, DataRow):
                        rows.append(
                            tuple(
                                None if v is None else v.decode("utf-8", "replace")
                                for v in message.values
                            )
                        )
                    elif isinstance(message, ErrorResponse):
                        error = message.message
                    elif isinstance(message, ReadyForQuery):
                        if error is not None:
                            raise CatalogError(f"catalog lookup failed: {error}")
                        return rows
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            self._drop()
            raise CatalogError(f"catalog lookup on {self.name!r} failed: {exc!r}") from None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.abort()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Catalogs:
    """One :class:`Catalog` per connection, made when first needed."""

    def __init__(self, connections: dict[str, Connection]) -> None:
        self._connections = connections
        self._catalogs: dict[str, Catalog] = {}

    def get(self, name: str) -> Catalog:
        catalog = self._catalogs.get(name)
        if catalog is None:
            catalog = self._catalogs[name] = Catalog(name, self._connections[name])
        return catalog

    def close(self) -> None:
        for catalog in self._catalogs.values():
            catalog.close()
