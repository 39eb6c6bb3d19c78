"""Masking measured on generated personal data: Faker rows in six locales, through every client.

A table is filled upstream (not through dbward) with names, emails, phones,
cards, IBANs, national ids, addresses, IPs, birth dates, tokens, free text that
embeds some of them and JSON that nests them, next to values that are not
personal (order ids, UUIDs, timestamps, prices, versions). Every planted value
is remembered. The table is then read through dbward by psql, psycopg (text and
binary), asyncpg and COPY (text, csv, binary; a table and a query), and the same
read is made directly upstream with the same client: what must be masked must
appear nowhere in dbward's output, and what is not personal must come back
exactly as the client gets it without dbward.

Each read prints its recall (planted PII masked / planted PII) and precision
(changed values that were PII / all changed values); ``pytest -s`` shows them,
and a failed assertion lists every value that leaked or was changed.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import ipaddress
import json
import os
import re
import string
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import hyperscan
import psycopg
import pytest
from faker import Faker
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import log_tail, run_client, unique
from tests.integration.policy_helpers import aconnect, connect, upstream_exec

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT")
ROWS_PER_LOCALE = 60
SEED = 20_240_611

# The table, in column order: (name, SQL type).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("order_id", "text"),
    ("row_uuid", "uuid"),
    ("created_at", "timestamptz"),
    ("price", "numeric(10,2)"),
    ("version", "text"),
    ("full_name", "text"),
    ("email", "text"),
    ("phone_number", "text"),
    ("date_of_birth", "date"),
    ("address", "text"),
    ("iban", "text"),
    ("card_number", "text"),
    ("ssn", "text"),
    ("ip_address", "inet"),
    ("notes", "text"),
    ("profile", "jsonb"),
    ("api_token", "text"),
)
NAMES = tuple(name for name, _ in COLUMNS)
TYPES = dict(COLUMNS)
HARMLESS_COLUMNS = ("order_id", "row_uuid", "created_at", "price", "version")
TYPE_OIDS = {
    "text": 25,
    "uuid": 2950,
    "timestamptz": 1184,
    "numeric(10,2)": 1700,
    "date": 1082,
    "inet": 869,
    "jsonb": 3802,
}

# The national id each locale's rows hold in ``ssn`` (a Faker method of that locale).
NATIONAL_ID = {
    "en_US": "ssn",  # US SSN
    "en_GB": "ssn",  # National Insurance number
    "de_DE": "rvnr",  # Rentenversicherungsnummer
    "fr_FR": "ssn",  # NIR
    "es_ES": "nif",  # DNI/NIF
    "it_IT": "ssn",  # codice fiscale
}
# Every column under a name that says nothing (aliases, a renaming view, COPY of a query).
ALIASES: tuple[tuple[str, str], ...] = (
    ("order_id", "order_id"),
    ("contact", "email"),
    ("who", "full_name"),
    ("reach", "phone_number"),
    ("pay", "card_number"),
    ("acct", "iban"),
    ("ref", "ssn"),
    ("d", "date_of_birth"),
    ("origin", "ip_address"),
    ("loc", "address"),
    ("k", "api_token"),
    ("n", "notes"),
    ("p", "profile"),
    ("amount", "price"),
    ("v", "version"),
    ("u", "row_uuid"),
    ("t", "created_at"),
)
TAGS = ("vip", "newsletter", "b2b", "returning", "beta", "wholesale")


# --- what is planted ------------------------------------------------------------------


@dataclass(frozen=True)
class Pii:
    """A planted personal value: it must appear nowhere in dbward's output."""

    value: str
    entity: str
    locale: str
    key: str  # the row's order_id
    column: str  # where it was planted
    needles: tuple[str, ...]  # the forms searched for: the value, its digits, ...


@dataclass(frozen=True)
class Harmless:
    """A planted value that is not personal: it must come back untouched."""

    value: str
    key: str
    column: str
    whole: bool  # the whole cell; else a piece of the free text or JSON in the cell


@dataclass
class Dataset:
    table: str
    view: str  # SELECT * FROM table
    renaming_view: str  # every column renamed as ALIASES says
    rows: list[dict[str, Any]]
    pii: list[Pii]
    harmless: list[Harmless]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _needles(value: str, entity: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    forms = [value, *extra]
    if entity == "email":
        forms.append(value.lower())
    if entity in ("phone", "card", "ssn") and len(_digits(value)) >= 7:
        forms.append(_digits(value))
    if entity in ("iban", "national_id", "ssn"):
        forms.append(re.sub(r"[\s-]", "", value))
    return tuple(dict.fromkeys(f for f in forms if f))


def _token(fake: Faker, index: int) -> str | None:
    rng = fake.random
    alnum = string.ascii_letters + string.digits
    kind = index % 4
    if kind == 0:
        return "ghp_" + "".join(rng.choice(alnum) for _ in range(36))
    if kind == 1:
        return "AKIA" + "".join(
            rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)
        )
    if kind == 2:
        return "sk_live_" + "".join(rng.choice(alnum) for _ in range(24))
    return None


def _grouped(card: str) -> str:
    return " ".join(card[i : i + 4] for i in range(0, len(card), 4))


# Which of the row's email (e), phone (p) and card (c) its notes embed, by row.
_EMBEDS = (("e",), ("p",), ("c",), ("e", "p"), ("p", "c"), ("e", "c"))


def _row(fake: Faker, locale: str, index: int, number: int) -> dict[str, Any]:
    rng = fake.random
    order_id = f"ORD-2024-{number * 7 + 100:06d}"
    created = fake.date_time_between(
        datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(2024, 12, 31, tzinfo=datetime.UTC),
        tzinfo=datetime.UTC,
    ).replace(microsecond=rng.randrange(1_000_000))
    email = (fake.email, fake.free_email, fake.company_email)[index % 3]()
    card = fake.credit_card_number()
    card_in_notes = _grouped(card) if index % 4 == 0 else card
    phone = fake.phone_number()
    version = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
    price = Decimal(rng.randint(100, 9_999_999)).scaleb(-2)
    row_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
    tags = rng.sample(TAGS, 2)
    ip = fake.ipv6() if index % 6 == 5 else fake.ipv4_public()
    full_name = fake.name()
    sentence = fake.sentence(nb_words=6)
    pieces = {
        "e": f"write to {email}",
        "p": f"call {phone}",
        "c": f"paid with card {card_in_notes}",
    }
    embeds = _EMBEDS[index % len(_EMBEDS)]
    notes = (
        f"Order {order_id} (build {version}, total {price} EUR, placed {created:%Y-%m-%d}): "
        + "; ".join(pieces[e] for e in embeds)
        + f". {sentence} Ref {row_uuid}."
    )
    return {
        "order_id": order_id,
        "row_uuid": row_uuid,
        "created_at": created,
        "price": price,
        "version": version,
        "full_name": full_name,
        "email": email,
        "phone_number": phone,
        "date_of_birth": fake.date_of_birth(minimum_age=18, maximum_age=90),
        "address": fake.address(),
        "iban": fake.iban(),
        "card_number": card,
        "ssn": getattr(fake, NATIONAL_ID[locale])(),
        "ip_address": ipaddress.ip_address(ip),
        "notes": notes,
        "profile": {
            "contact": {"email": email, "phone": phone},
            "display_name": full_name,
            "tags": tags,
            "score": rng.randint(0, 100),
            "last_order": order_id,
        },
        "api_token": _token(fake, index),
        # not columns: what the row was made of
        "_locale": locale,
        "_embeds": embeds,
        "_card_in_notes": card_in_notes,
        "_sentence": sentence,
    }


def generate_rows() -> list[dict[str, Any]]:
    rows = []
    for offset, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(SEED + offset)
        for index in range(ROWS_PER_LOCALE):
            rows.append(_row(fake, locale, index, len(rows) + 1))
    return rows


def _adder(pii: list[Pii], key: str, locale: str) -> Callable[..., None]:
    def add(column: str, entity: str, value: str, *extra: str) -> None:
        pii.append(Pii(value, entity, locale, key, column, _needles(value, entity, extra)))

    return add


def planted(
    rows: list[dict[str, Any]], ip_text: dict[str, str]
) -> tuple[list[Pii], list[Harmless]]:
    """Every PII value and every harmless value in ``rows``; ``ip_text``: inet as PG writes it."""
    pii: list[Pii] = []
    harmless: list[Harmless] = []
    for row in rows:
        key, locale = row["order_id"], row["_locale"]
        add = _adder(pii, key, locale)
        add("full_name", "person_name", row["full_name"])
        add("email", "email", row["email"])
        add("phone_number", "phone", row["phone_number"])
        add("date_of_birth", "dob", row["date_of_birth"].isoformat())
        add("address", "address", row["address"])
        add("iban", "iban", row["iban"])
        add("card_number", "card", row["card_number"], _grouped(row["card_number"]))
        add("ssn", "ssn" if locale == "en_US" else "national_id", row["ssn"])
        ip = row["ip_address"]
        add("ip_address", "ip", str(ip), ip.exploded, ip_text[key])
        if row["api_token"] is not None:
            add("api_token", "secret", row["api_token"])
        for embed in row["_embeds"]:
            if embed == "e":
                add("notes", "email", row["email"])
            elif embed == "p":
                add("notes", "phone", row["phone_number"])
            else:
                add("notes", "card", row["_card_in_notes"], row["card_number"])
        add("profile", "email", row["email"])
        add("profile", "phone", row["phone_number"])
        add("profile", "person_name", row["full_name"])

        for column in HARMLESS_COLUMNS:
            harmless.append(Harmless(str(row[column]), key, column, whole=True))
        created = row["created_at"].strftime("%Y-%m-%d")
        for piece in (key, row["version"], f"{row['price']} EUR", created, row["_sentence"]):
            harmless.append(Harmless(piece, key, "notes", whole=False))
        harmless.append(Harmless(str(row["row_uuid"]), key, "notes", whole=False))
        harmless.append(Harmless(key, key, "profile", whole=False))
        for tag in row["profile"]["tags"]:
            harmless.append(Harmless(tag, key, "profile", whole=False))
    return pii, harmless


# --- what a client read -----------------------------------------------------------------


@dataclass
class Output:
    """One read: each cell exactly as the client gave it, and as text to search."""

    names: list[str]
    exact: list[list[Any]]
    shown: list[list[str | None]]
    raw: str = ""  # the client's whole output, for text formats

    def blob(self) -> bytes:
        cells = "\x00".join(c for row in self.shown for c in row if c is not None)
        return (self.raw + "\x00" + cells).encode()


def show(value: Any) -> str | None:
    """A value as text, the way it is searched for planted values."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Env:
    server: Dbward
    data: Dataset


@dataclass(frozen=True)
class Query:
    """A read: its SQL and, per output column, the table column it comes from and its type."""

    sql: str
    outputs: tuple[tuple[str, str], ...]  # (output name, source column)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.outputs]

    @property
    def types(self) -> list[str]:
        return [TYPES[source] for _, source in self.outputs]


# -- psql


def _upstream_env(db: UpstreamDb) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": db.host,
        "PGPORT": str(db.port),
        "PGDATABASE": db.name,
        "PGUSER": db.role,
        "PGPASSWORD": db.password,
        "PGSSLMODE": "prefer",
    }


def _psql(env: Env, direct: bool, *args: str) -> str:
    server = env.server
    run_env = _upstream_env(server.upstream) if direct else server.env()
    result = run_client(["psql", "-X", "-v", "ON_ERROR_STOP=1", *args], run_env)
    if result.returncode != 0:
        raise AssertionError(
            f"psql {args!r} ({'upstream' if direct else 'dbward'}) exited with "
            f"{result.returncode}\nstderr:\n{result.stderr}\ndbward log:\n{log_tail(server)}"
        )
    return result.stdout


def read_psql_csv(env: Env, query: Query, direct: bool) -> Output:
    out = _psql(env, direct, "--csv", "-c", query.sql)
    rows = list(csv.reader(io.StringIO(out)))
    header, body = rows[0], rows[1:]
    return Output(header, body, [list(r) for r in body], out)


RECORD_SEP = "\x1e"


def read_psql_unaligned(env: Env, query: Query, direct: bool) -> Output:
    out = _psql(env, direct, "-At", "-F", "\t", "-R", RECORD_SEP, "-c", query.sql)
    records = out.removesuffix("\n").split(RECORD_SEP) if out.strip() else []
    body = [record.split("\t") for record in records]
    return Output(query.names, body, [list(r) for r in body], out)


# -- psycopg and asyncpg


def _psycopg_conn(env: Env, direct: bool) -> psycopg.Connection[Any]:
    if direct:
        return psycopg.connect(env.server.upstream.dsn(), autocommit=True, connect_timeout=10)
    return connect(env.server, autocommit=True)


def _read_psycopg(env: Env, query: Query, direct: bool, binary: bool) -> Output:
    with _psycopg_conn(env, direct) as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(query.sql)
        assert cur.description is not None
        names = [d.name for d in cur.description]
        rows = [list(r) for r in cur.fetchall()]
    return Output(names, rows, [[show(v) for v in r] for r in rows])


def read_psycopg_binary(env: Env, query: Query, direct: bool) -> Output:
    return _read_psycopg(env, query, direct, binary=True)


def read_psycopg_text(env: Env, query: Query, direct: bool) -> Output:
    return _read_psycopg(env, query, direct, binary=False)


def read_asyncpg(env: Env, query: Query, direct: bool) -> Output:
    async def run() -> Output:
        if direct:
            db = env.server.upstream
            conn = await asyncpg.connect(
                host=db.host,
                port=db.port,
                user=db.role,
                password=db.password,
                database=db.name,
                timeout=10,
            )
        else:
            conn = await aconnect(env.server)
        try:
            records = await conn.fetch(query.sql)
        finally:
            await conn.close()
        names = list(records[0].keys()) if records else query.names
        rows = [list(r.values()) for r in records]
        return Output(names, rows, [[show(v) for v in r] for r in rows])

    return asyncio.run(run())


# -- COPY


def _copy_bytes(env: Env, sql: str, direct: bool) -> tuple[bytes, psycopg.Connection[Any]]:
    conn = _psycopg_conn(env, direct)
    try:
        with conn.cursor().copy(sql) as copy:
            data = b"".join(bytes(block) for block in copy)
    except BaseException:
        conn.close()
        raise
    return data, conn


_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def unescape_copy_text(value: bytes) -> bytes | None:
    """One field of COPY's text format decoded: ``\\N`` is NULL, backslash escapes undone."""
    if value == b"\\N":
        return None

    def replace(match: re.Match[bytes]) -> bytes:
        if match[1]:
            return bytes([int(match[1], 8) & 0xFF])
        if match[2]:
            return bytes([int(match[2], 16)])
        return _SIMPLE.get(match[3], match[3])

    return _ESCAPE.sub(replace, value)


def parse_copy_text(data: bytes) -> list[list[bytes]]:
    lines = data.split(b"\n")
    assert lines[-1] == b"", data[-200:]
    return [line.split(b"\t") for line in lines[:-1]]


PGCOPY = b"PGCOPY\n\xff\r\n\x00"


def parse_copy_binary(data: bytes) -> list[list[bytes | None]]:
    """The PGCOPY stream as rows of raw field bytes (None for NULL)."""
    assert data[:11] == PGCOPY, data[:20]
    _flags, extension = struct.unpack_from("!ii", data, 11)
    pos = 19 + extension
    rows: list[list[bytes | None]] = []
    while True:
        (count,) = struct.unpack_from("!h", data, pos)
        pos += 2
        if count == -1:
            assert pos == len(data), (pos, len(data))
            return rows
        row: list[bytes | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from("!i", data, pos)
            pos += 4
            if length < 0:
                row.append(None)
            else:
                row.append(data[pos : pos + length])
                pos += length
        rows.append(row)


def read_copy(env: Env, query: Query, direct: bool, sql: str, fmt: str) -> Output:
    data, conn = _copy_bytes(env, sql, direct)
    try:
        if fmt == "text":
            raw = parse_copy_text(data)
            shown: list[list[str | None]] = [
                [show(unescape_copy_text(v)) for v in row] for row in raw
            ]
            return Output(
                query.names, [list(r) for r in raw], shown, data.decode("utf-8", "replace")
            )
        if fmt == "csv":
            rows = list(csv.reader(io.StringIO(data.decode())))
            return Output(query.names, rows, [list(r) for r in rows], data.decode())
        assert fmt == "binary", fmt
        parsed = parse_copy_binary(data)
        loaders = []
        for type_name in query.types:
            oid = TYPE_OIDS[type_name]
            loader_class = conn.adapters.get_loader(oid, Format.BINARY)
            assert loader_class is not None, type_name
            loaders.append(loader_class(oid, conn))
        shown = []
        for row in parsed:
            assert len(row) == len(loaders), (len(row), len(loaders))
            shown.append(
                [
                    None if v is None else show(ld.load(v))
                    for ld, v in zip(loaders, row, strict=True)
                ]
            )
        return Output(query.names, [list(r) for r in parsed], shown)
    finally:
        conn.close()


Reader = Callable[[Env, Query, bool], Output]

CLIENTS: dict[str, Reader] = {
    "psql-csv": read_psql_csv,
    "psql-unaligned": read_psql_unaligned,
    "psycopg-binary": read_psycopg_binary,
    "psycopg-text": read_psycopg_text,
    "asyncpg": read_asyncpg,
}


# --- scoring ----------------------------------------------------------------------------


@dataclass
class Score:
    client: str
    planted: int = 0
    masked: int = 0
    leaks: list[str] = field(default_factory=list)  # planted PII found in its own cell
    elsewhere: list[str] = field(default_factory=list)  # planted PII found in another cell
    columns_changed: list[str] = field(default_factory=list)  # cells of non-PII columns
    pieces_changed: list[str] = field(default_factory=list)  # harmless text inside PII cells

    @property
    def recall(self) -> float:
        return self.masked / self.planted if self.planted else 1.0

    @property
    def changed(self) -> int:
        return self.masked + len(self.columns_changed) + len(self.pieces_changed)

    @property
    def precision(self) -> float:
        return self.masked / self.changed if self.changed else 1.0

    def line(self) -> str:
        return (
            f"[{self.client}] recall {self.masked}/{self.planted} = {self.recall:.4f}; "
            f"precision {self.masked}/{self.changed} = {self.precision:.4f}; "
            f"{len(self.leaks)} PII leaked, {len(self.elsewhere)} PII found elsewhere, "
            f"{len(self.columns_changed)} non-PII cells changed, "
            f"{len(self.pieces_changed)} harmless pieces of free text changed"
        )

    def report(self, limit: int = 400) -> str:
        parts = [self.line()]
        for title, items in (
            ("leaked (planted PII still in its cell)", self.leaks),
            ("planted PII found in another cell", self.elsewhere),
            ("non-PII cells changed", self.columns_changed),
            ("harmless pieces of free text changed", self.pieces_changed),
        ):
            if items:
                parts.append(f"{title}: {len(items)}")
                parts.extend("  " + item for item in items[:limit])
                if len(items) > limit:
                    parts.append(f"  ... and {len(items) - limit} more")
        return "\n".join(parts)

    def problems(self) -> list[str]:
        found = []
        if self.leaks or self.elsewhere:
            found.append(f"recall {self.recall:.4f} != 1.0: planted PII leaked")
        if self.columns_changed:
            found.append(f"precision {self.precision:.4f} != 1.0: non-PII columns were changed")
        if self.pieces_changed:
            found.append(
                f"precision {self.precision:.4f} != 1.0: harmless text next to PII was changed"
            )
        return found


SCORES: list[Score] = []
_DATABASES: dict[tuple[str, ...], hyperscan.Database] = {}


def _found_needles(needles: list[str], blob: bytes) -> set[str]:
    """Which of ``needles`` occur anywhere in ``blob`` (one Hyperscan pass, literals)."""
    key = tuple(needles)
    database = _DATABASES.get(key)
    if database is None:
        database = hyperscan.Database()
        database.compile(
            expressions=[n.encode() for n in needles],
            ids=list(range(len(needles))),
            elements=len(needles),
            flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(needles),
            literal=True,
        )
        _DATABASES[key] = database
    hits: set[int] = set()

    def on_match(id_: int, start: int, end: int, flags: int, context: object) -> None:
        hits.add(id_)

    database.scan(blob, match_event_handler=on_match)
    return {needles[i] for i in hits}


def _clip(text: str | None, size: int = 160) -> str:
    if text is None:
        return "NULL"
    return repr(text if len(text) <= size else text[:size] + "...")


def score(client: str, env: Env, query: Query, got: Output, want: Output) -> Score:
    """Compare dbward's read ``got`` with the same client's direct read ``want``."""
    data = env.data
    result = Score(client)
    assert len(got.exact) == len(want.exact), (client, len(got.exact), len(want.exact))
    sources = dict(query.outputs)
    columns_of: dict[str, list[int]] = {}
    for index, (_, source) in enumerate(query.outputs):
        columns_of.setdefault(source, []).append(index)
    key_index = columns_of["order_id"][0]
    row_of = {row[key_index]: r for r, row in enumerate(want.shown)}
    assert len(row_of) == len(want.shown) == len(data.rows), (client, len(row_of))

    def cells(out: Output, key: str, column: str) -> list[str | None]:
        r = row_of[key]
        return [out.shown[r][c] for c in columns_of.get(column, [])]

    pii = [p for p in data.pii if p.column in columns_of]
    harmless = [h for h in data.harmless if h.column in columns_of]

    # The direct read holds what was planted: else the search below would prove nothing.
    for item in pii:
        mine = [c for c in cells(want, item.key, item.column) if c is not None]
        assert any(n in c for n in item.needles for c in mine), (
            f"test bug: {item} is not in the direct read {mine!r}"
        )
    for item in harmless:
        if item.column == "created_at":
            continue  # its text depends on the client and the TimeZone: compared exactly below
        mine = [c for c in cells(want, item.key, item.column) if c is not None]
        assert any(item.value in c for c in mine), f"test bug: {item} not in {mine!r}"

    needles = sorted({n for item in pii for n in item.needles})
    found = _found_needles(needles, got.blob())
    result.planted = len(pii)
    in_own_cell: set[str] = set()
    for item in pii:
        mine = [c for c in cells(got, item.key, item.column) if c is not None]
        hits = [n for n in item.needles if n in found and any(n in c for c in mine)]
        if hits:
            in_own_cell.update(hits)
            shown = " | ".join(_clip(c) for c in mine)
            result.leaks.append(
                f"{item.entity} [{item.locale}] {item.column} row {item.key}: {item.value!r} "
                f"(found {hits[0]!r}) in {shown}"
            )
        else:
            result.masked += 1
    for needle in sorted(found - in_own_cell):
        places = [
            f"row {want.shown[r][key_index]} column {got.names[c] if c < len(got.names) else c}"
            for r, row in enumerate(got.shown)
            for c, cell in enumerate(row)
            if cell is not None and needle in cell
        ]
        owners = sorted(
            {f"{p.entity} [{p.locale}] {p.column} row {p.key}" for p in pii if needle in p.needles}
        )
        result.elsewhere.append(
            f"{needle!r} ({'; '.join(owners)}) found in {', '.join(places) or 'the raw output'}"
        )

    # Harmless values: whole cells exactly as the direct read has them, pieces still there.
    pii_cells = {(p.key, p.column) for p in data.pii}
    for item in harmless:
        r = row_of[item.key]
        for c in columns_of[item.column]:
            if item.whole:
                same = got.exact[r][c] == want.exact[r][c] and type(got.exact[r][c]) is type(
                    want.exact[r][c]
                )
                same = same and got.shown[r][c] == want.shown[r][c]
            else:
                same = got.shown[r][c] is not None and item.value in (got.shown[r][c] or "")
            if not same:
                changed = result.columns_changed if item.whole else result.pieces_changed
                changed.append(
                    f"{item.column} ({got.names[c]}) row {item.key}: {item.value!r} came back as "
                    f"{_clip(got.shown[r][c])}"
                )
    for r, row in enumerate(want.exact):
        key = want.shown[r][key_index]
        assert key is not None
        for c, value in enumerate(row):
            source = sources[query.outputs[c][0]]
            if source in HARMLESS_COLUMNS or (key, source) in pii_cells:
                continue  # counted above
            if got.exact[r][c] != value:
                result.columns_changed.append(
                    f"{source} ({got.names[c]}) row {key}: {_clip(want.shown[r][c])} came back as "
                    f"{_clip(got.shown[r][c])}"
                )
    print("\n" + result.report(limit=2000))
    SCORES.append(result)
    return result


def check(client: str, env: Env, query: Query, read: Callable[[bool], Output]) -> Score:
    want = read(True)
    got = read(False)
    result = score(client, env, query, got, want)
    problems = result.problems()
    assert not problems, "; ".join(problems) + "\n" + result.report()
    return result


# --- the table --------------------------------------------------------------------------


def all_columns(table: str) -> Query:
    return Query(
        f"SELECT {', '.join(NAMES)} FROM {table} ORDER BY order_id",
        tuple((n, n) for n in NAMES),
    )


@pytest.fixture(scope="module")
def env(upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = start_dbward(Path(tmp_path_factory.mktemp("masking-faker")), upstream_db)
    table = unique("faker_people")
    view = f"{table}_v"
    renaming_view = f"{table}_r"
    rows = generate_rows()
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in COLUMNS)
    upstream_exec(server, f"CREATE TABLE {table} ({columns})")
    with psycopg.connect(upstream_db.dsn(), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(NAMES)}) "
                f"VALUES ({', '.join(['%s'] * len(NAMES))})",
                [[Jsonb(row[n]) if n == "profile" else row[n] for n in NAMES] for row in rows],
            )
        found = conn.execute(f"SELECT order_id, host(ip_address) FROM {table}").fetchall()
        ip_text = {key: text for key, text in found}
    upstream_exec(server, f"CREATE VIEW {view} AS SELECT * FROM {table}")
    renamed = ", ".join(s if a == s else f"{s} AS {a}" for a, s in ALIASES)
    upstream_exec(server, f"CREATE VIEW {renaming_view} AS SELECT {renamed} FROM {table}")
    pii, harmless = planted(rows, ip_text)
    SCORES.clear()
    yield Env(server, Dataset(table, view, renaming_view, rows, pii, harmless))
    stop_dbward(server)
    print("\n\nmasking on Faker data, per client and read:")
    for item in SCORES:
        print("  " + item.line())


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", list(CLIENTS))
def test_whole_table_through_each_client(env: Env, client: str) -> None:
    query = all_columns(env.data.table)
    check(client, env, query, lambda direct: CLIENTS[client](env, query, direct))


def _shapes(data: Dataset) -> dict[str, Query]:
    table, view = data.table, data.view
    alias_sql = ", ".join(s if a == s else f"{s} AS {a}" for a, s in ALIASES)
    return {
        "select-star": Query(
            f"SELECT * FROM {table} ORDER BY order_id", tuple((n, n) for n in NAMES)
        ),
        "aliases": Query(f"SELECT {alias_sql} FROM {table} ORDER BY order_id", ALIASES),
        "expressions": Query(
            f"SELECT order_id, lower(email) AS x, 'mailto:' || email AS y, upper(iban) AS z "
            f"FROM {table} ORDER BY order_id",
            (("order_id", "order_id"), ("x", "email"), ("y", "email"), ("z", "iban")),
        ),
        "view": Query(f"SELECT * FROM {view} ORDER BY order_id", tuple((n, n) for n in NAMES)),
        "renaming-view": Query(f"SELECT * FROM {data.renaming_view} ORDER BY order_id", ALIASES),
    }


@pytest.mark.parametrize("client", ["psql-csv", "psycopg-binary", "asyncpg"])
@pytest.mark.parametrize(
    "shape", ["select-star", "aliases", "expressions", "view", "renaming-view"]
)
def test_query_shapes_stay_masked(env: Env, shape: str, client: str) -> None:
    query = _shapes(env.data)[shape]
    check(f"{client} {shape}", env, query, lambda direct: CLIENTS[client](env, query, direct))


COPY_FORMATS = {"text": "", "csv": " WITH (FORMAT csv)", "binary": " WITH (FORMAT binary)"}


@pytest.mark.parametrize("fmt", list(COPY_FORMATS))
def test_copy_table_to_stdout(env: Env, fmt: str) -> None:
    table = env.data.table
    query = Query(f"COPY {table} TO STDOUT", tuple((n, n) for n in NAMES))
    sql = f"COPY {table} TO STDOUT{COPY_FORMATS[fmt]}"
    check(f"COPY table {fmt}", env, query, lambda direct: read_copy(env, query, direct, sql, fmt))


@pytest.mark.parametrize("fmt", list(COPY_FORMATS))
@pytest.mark.parametrize("select", ["star", "aliases"])
def test_copy_query_to_stdout(env: Env, select: str, fmt: str) -> None:
    table = env.data.table
    if select == "star":
        query = Query(f"SELECT * FROM {table} ORDER BY order_id", tuple((n, n) for n in NAMES))
    else:
        outputs = (*ALIASES, ("x", "email"))
        items = ", ".join(
            "lower(email) AS x" if a == "x" else s if a == s else f"{s} AS {a}" for a, s in outputs
        )
        query = Query(f"SELECT {items} FROM {table} ORDER BY order_id", outputs)
    sql = f"COPY ({query.sql}) TO STDOUT{COPY_FORMATS[fmt]}"
    check(
        f"COPY (SELECT {select}) {fmt}",
        env,
        query,
        lambda direct: read_copy(env, query, direct, sql, fmt),
    )
