"""Masking on the MySQL protocol, measured on Faker data in a real MariaDB through real clients.

A table is filled upstream (not through dbward) with rows from four locales: names,
emails, phones, cards that pass Luhn, IBANs, US SSNs (a BIGINT column), IPs, dates of
birth and secret tokens, plus free text (``notes``, TEXT) and a JSON document
(``profile``) that embed some of them, next to values that are not personal (order ids,
UUIDs, timestamps, DECIMAL prices, version strings). Every planted value is remembered.

The table is read through dbward with PyMySQL (text protocol rows) and with
mysql-connector-python's prepared cursor (binary protocol rows), and the same read is
made straight from MariaDB with the same client: what is personal must appear nowhere
in dbward's answer, and what is not must come back exactly as the client gets it
without dbward. Each read prints its recall (planted PII masked / planted PII) and
precision (changed values that were PII / all changed values); ``pytest -s`` shows them.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import mysql.connector
import pymysql
import pytest
from faker import Faker

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, stop_dbward
from tests.integration.helpers import log_tail, unique
from tests.integration.mysql_test_helpers import (
    connector_connect,
    direct_connector,
    direct_pymysql,
    error_code,
    error_message,
    pymysql_connect,
    start_server,
    upstream_exec,
)
from tests.mysql_upstream import MysqlDb, mysql_db  # noqa: F401 - the fixture, used by name

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR")
ROWS_PER_LOCALE = 40
SEED = 20_241_123
CARD_TYPES = ("visa16", "mastercard", "amex", "discover", "visa13", "jcb16")
TAGS = ("vip", "newsletter", "b2b", "returning", "beta", "wholesale")
CLIENT_ERRORS = (pymysql.MySQLError, mysql.connector.Error)

# The table's columns in order; widths of VARCHAR columns are set from the data (the
# longest value exactly), so a masked value that grows does not fit unless dbward fits it.
VARCHAR_COLUMNS = (
    "order_id",
    "version",
    "full_name",
    "email",
    "phone_number",
    "iban",
    "card_number",
    "ip_address",
    "api_token",
)
FIXED_TYPES = {
    "row_uuid": "CHAR(36)",
    "created_at": "DATETIME(6)",
    "price": "DECIMAL(10,2)",
    "date_of_birth": "DATE",
    "ssn": "BIGINT",
    "notes": "TEXT",
    "profile": "JSON",
}
NAMES = (
    "order_id",
    "row_uuid",
    "created_at",
    "price",
    "version",
    "full_name",
    "email",
    "phone_number",
    "date_of_birth",
    "iban",
    "card_number",
    "ssn",
    "ip_address",
    "api_token",
    "notes",
    "profile",
)
HARMLESS_COLUMNS = ("order_id", "row_uuid", "created_at", "price", "version")
# Every column under a name that says nothing.
ALIASES: tuple[tuple[str, str], ...] = (
    ("order_id", "order_id"),
    ("u", "row_uuid"),
    ("t", "created_at"),
    ("amount", "price"),
    ("v", "version"),
    ("who", "full_name"),
    ("contact", "email"),
    ("reach", "phone_number"),
    ("d", "date_of_birth"),
    ("acct", "iban"),
    ("pay", "card_number"),
    ("ref", "ssn"),
    ("origin", "ip_address"),
    ("k", "api_token"),
    ("n", "notes"),
    ("p", "profile"),
)


# --- what is planted --------------------------------------------------------------------


@dataclass(frozen=True)
class Pii:
    """A planted personal value: it must appear nowhere in dbward's output."""

    value: str
    entity: str
    locale: str
    key: str  # the row's order_id
    column: str  # where it was planted
    needles: tuple[str, ...]  # the forms searched for


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
    widths: dict[str, int]
    rows: list[dict[str, Any]]
    pii: list[Pii]
    harmless: list[Harmless]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _needles(value: str, entity: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    forms = [value, *extra]
    if entity == "email":
        forms.append(value.lower())
    if entity in ("phone", "card", "ssn") and len(_digits(value)) >= 7:
        forms.append(_digits(value))
    if entity == "iban":
        forms.append(re.sub(r"\s", "", value))
    return tuple(dict.fromkeys(f for f in forms if f))


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in _digits(number)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: Any, number: int) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": f"user-{number}", "iat": 1_700_000_000 + number}).encode())
    return f"{header}.{claims}.{_b64(rng.randbytes(32))}"


def _aws_key(rng: Any) -> str:
    return "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _github_token(rng: Any) -> str:
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


# Which planted values a row's notes embed: email, phone, card, iban, ssn, ip, aws key, jwt.
_EMBEDS = (
    ("e", "k"),
    ("p", "j"),
    ("c", "a"),
    ("i", "e"),
    ("s", "p"),
    ("c", "k"),
    ("a", "j"),
    ("i", "s"),
)


def _row(fake: Faker, us: Faker, locale: str, index: int, number: int) -> dict[str, Any]:
    rng = fake.random
    order_id = f"ORD-2024-{number * 7 + 100:06d}"
    created = fake.date_time_between(
        datetime.datetime(2023, 1, 1), datetime.datetime(2024, 12, 31)
    ).replace(microsecond=rng.randrange(1_000_000))
    email = (fake.email, fake.free_email, fake.company_email)[index % 3]()
    card = fake.credit_card_number(card_type=CARD_TYPES[index % len(CARD_TYPES)])
    assert luhn_ok(card), card
    phone = fake.phone_number()
    version = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
    price = Decimal(rng.randint(100, 9_999_999)).scaleb(-2)
    row_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    ip = fake.ipv6() if index % 6 == 5 else fake.ipv4_public()
    ssn_text = us.ssn()
    aws, jwt = _aws_key(rng), _jwt(rng, number)
    api_token = (aws, _github_token(rng), jwt)[index % 3]
    sentence = fake.sentence(nb_words=6)
    embeds = _EMBEDS[index % len(_EMBEDS)]
    iban = fake.iban()
    pieces = {
        "e": f"write to {email}",
        "p": f"call {phone}",
        "c": f"paid with card {card}",
        "i": f"refund to IBAN {iban}",
        "s": f"SSN {ssn_text}",
        "a": f"logged in from {ip}",
        "k": f"aws_access_key_id={aws}",
        "j": f"session {jwt}",
    }
    notes = (
        f"Order {order_id} (build {version}, total {price} EUR, placed {created:%Y-%m-%d}): "
        + "; ".join(pieces[e] for e in embeds)
        + f". {sentence} Ref {row_uuid}."
    )
    tags = rng.sample(TAGS, 2)
    profile = {
        "contact": {"email": email, "phone": phone},
        "login_ip": ip,
        "keys": {"aws": aws},
        "session": jwt,
        "tags": tags,
        "score": rng.randint(0, 100),
        "last_order": order_id,
    }
    return {
        "order_id": order_id,
        "row_uuid": row_uuid,
        "created_at": created,
        "price": price,
        "version": version,
        "full_name": fake.name(),
        "email": email,
        "phone_number": phone,
        "date_of_birth": fake.date_of_birth(minimum_age=18, maximum_age=90),
        "iban": iban,
        "card_number": card,
        "ssn": int(_digits(ssn_text)),
        "ip_address": ip,
        "api_token": api_token,
        "notes": notes,
        "profile": json.dumps(profile, ensure_ascii=False),
        # not columns: what the row was made of
        "_locale": locale,
        "_embeds": embeds,
        "_ssn_text": ssn_text,
        "_aws": aws,
        "_jwt": jwt,
        "_sentence": sentence,
        "_tags": tags,
    }


def generate_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    us = Faker("en_US")
    us.seed_instance(SEED - 1)
    for offset, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(SEED + offset)
        for index in range(ROWS_PER_LOCALE):
            rows.append(_row(fake, us, locale, index, len(rows) + 1))
    return rows


def _adder(pii: list[Pii], key: str, locale: str) -> Callable[..., None]:
    def add(column: str, entity: str, value: str, *extra: str) -> None:
        pii.append(Pii(value, entity, locale, key, column, _needles(value, entity, extra)))

    return add


def planted(rows: list[dict[str, Any]]) -> tuple[list[Pii], list[Harmless]]:
    pii: list[Pii] = []
    harmless: list[Harmless] = []
    for row in rows:
        key = row["order_id"]
        add = _adder(pii, key, row["_locale"])
        add("full_name", "person_name", row["full_name"])
        add("email", "email", row["email"])
        add("phone_number", "phone", row["phone_number"])
        add("date_of_birth", "dob", row["date_of_birth"].isoformat())
        add("iban", "iban", row["iban"])
        add("card_number", "card", row["card_number"])
        add("ssn", "ssn", str(row["ssn"]), row["_ssn_text"])
        add("ip_address", "ip", row["ip_address"])
        add("api_token", "secret", row["api_token"])
        embedded = {
            "e": ("email", row["email"]),
            "p": ("phone", row["phone_number"]),
            "c": ("card", row["card_number"]),
            "i": ("iban", row["iban"]),
            "s": ("ssn", row["_ssn_text"]),
            "a": ("ip", row["ip_address"]),
            "k": ("secret", row["_aws"]),
            "j": ("secret", row["_jwt"]),
        }
        for embed in row["_embeds"]:
            entity, value = embedded[embed]
            add("notes", entity, value)
        add("profile", "email", row["email"])
        add("profile", "phone", row["phone_number"])
        add("profile", "ip", row["ip_address"])
        add("profile", "secret", row["_aws"])
        add("profile", "secret", row["_jwt"])

        for column in HARMLESS_COLUMNS:
            harmless.append(Harmless(str(row[column]), key, column, whole=True))
        created = row["created_at"].strftime("%Y-%m-%d")
        for piece in (key, row["version"], f"{row['price']} EUR", created, row["_sentence"]):
            harmless.append(Harmless(piece, key, "notes", whole=False))
        harmless.append(Harmless(row["row_uuid"], key, "notes", whole=False))
        harmless.append(Harmless(f'"last_order": "{key}"', key, "profile", whole=False))
        for tag in row["_tags"]:
            harmless.append(Harmless(f'"{tag}"', key, "profile", whole=False))
    return pii, harmless


# --- what a client read -----------------------------------------------------------------


@dataclass
class Output:
    names: list[str]
    exact: list[list[Any]]
    shown: list[list[str | None]]

    def blob(self) -> str:
        return "\x00".join(c for row in self.shown for c in row if c is not None)


def show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def text_value(value: Any) -> Any:
    """A string column's value as text, whatever the client gave (str, bytes, bytearray)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return value


@dataclass(frozen=True)
class Query:
    sql: str
    outputs: tuple[tuple[str, str], ...]  # (output name, source column)


@dataclass
class Lab:
    server: Dbward
    db: MysqlDb
    data: Dataset


Reader = Callable[[Lab, str, bool], Output]


def read_pymysql(lab: Lab, sql: str, direct: bool) -> Output:
    conn = direct_pymysql(lab.db) if direct else pymysql_connect(lab.server)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            rows = [list(r) for r in cur.fetchall()]
    finally:
        conn.close()
    return Output(names, rows, [[show(v) for v in r] for r in rows])


def read_connector_prepared(lab: Lab, sql: str, direct: bool) -> Output:
    conn = direct_connector(lab.db) if direct else connector_connect(lab.server)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute(sql)
        names = list(cur.column_names)
        rows = [[text_value(v) for v in r] for r in cur.fetchall()]
        cur.close()
    finally:
        conn.close()
    return Output(names, rows, [[show(v) for v in r] for r in rows])


CLIENTS: dict[str, Reader] = {
    "pymysql-text": read_pymysql,
    "connector-binary": read_connector_prepared,
}


# --- scoring ----------------------------------------------------------------------------


@dataclass
class Score:
    label: str
    planted: int = 0
    masked: int = 0
    leaks: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    columns_changed: list[str] = field(default_factory=list)
    pieces_changed: list[str] = field(default_factory=list)

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
            f"[{self.label}] recall {self.masked}/{self.planted} = {self.recall:.4f}; "
            f"precision {self.masked}/{self.changed} = {self.precision:.4f}; "
            f"{len(self.leaks)} PII leaked, {len(self.elsewhere)} PII found elsewhere, "
            f"{len(self.columns_changed)} non-PII cells changed, "
            f"{len(self.pieces_changed)} harmless pieces changed"
        )

    def report(self, limit: int = 60) -> str:
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


SCORES: list[Score] = []


def _clip(text: str | None, size: int = 140) -> str:
    if text is None:
        return "NULL"
    return repr(text if len(text) <= size else text[:size] + "...")


def score(label: str, data: Dataset, query: Query, got: Output, want: Output) -> Score:
    """Compare dbward's read ``got`` with the same client's direct read ``want``."""
    result = Score(label)
    assert len(got.exact) == len(want.exact), (label, len(got.exact))
    columns_of: dict[str, list[int]] = {}
    for index, (_, source) in enumerate(query.outputs):
        columns_of.setdefault(source, []).append(index)
    key_index = columns_of["order_id"][0]
    row_of = {row[key_index]: r for r, row in enumerate(want.shown)}
    assert [row[key_index] for row in got.shown] == [row[key_index] for row in want.shown]

    def cells(out: Output, key: str, column: str) -> list[str]:
        r = row_of[key]
        return [c for c in (out.shown[r][i] for i in columns_of.get(column, [])) if c is not None]

    pii = [p for p in data.pii if p.column in columns_of]
    harmless = [h for h in data.harmless if h.column in columns_of]
    for item in pii:  # the direct read holds what was planted, else the search proves nothing
        mine = cells(want, item.key, item.column)
        assert any(n in c for n in item.needles for c in mine), f"test bug: {item} not in {mine}"

    blob = got.blob()
    found = {n for item in pii for n in item.needles if n in blob}
    in_own_cell: set[str] = set()
    result.planted = len(pii)
    for item in pii:
        mine = cells(got, item.key, item.column)
        hits = [n for n in item.needles if n in found and any(n in c for c in mine)]
        if hits:
            in_own_cell.update(hits)
            result.leaks.append(
                f"{item.entity} [{item.locale}] {item.column} row {item.key}: {item.value!r} "
                f"in {' | '.join(_clip(c) for c in mine)}"
            )
        else:
            result.masked += 1
    for needle in sorted(found - in_own_cell):
        owners = sorted({f"{p.entity} {p.column} row {p.key}" for p in pii if needle in p.needles})
        result.elsewhere.append(f"{needle!r} ({'; '.join(owners)})")

    for item in harmless:
        r = row_of[item.key]
        for c in columns_of[item.column]:
            if item.whole:
                g, w = got.exact[r][c], want.exact[r][c]
                same = g == w and type(g) is type(w)
            else:
                same = item.value in (got.shown[r][c] or "")
            if not same:
                changed = result.columns_changed if item.whole else result.pieces_changed
                changed.append(
                    f"{item.column} ({got.names[c]}) row {item.key}: {item.value!r} came back as "
                    f"{_clip(got.shown[r][c])}"
                )
    print("\n" + result.report(limit=400))
    SCORES.append(result)
    return result


def check(label: str, lab: Lab, query: Query, read: Reader) -> tuple[Output, Output]:
    want = read(lab, query.sql, True)
    got = read(lab, query.sql, False)
    assert got.names == want.names == [name for name, _ in query.outputs], (got.names, want.names)
    result = score(label, lab.data, query, got, want)
    problems = []
    if result.leaks or result.elsewhere:
        problems.append(f"recall {result.recall:.4f} != 1.0: planted PII leaked")
    if result.columns_changed or result.pieces_changed:
        problems.append(f"precision {result.precision:.4f} != 1.0: non-PII values were changed")
    assert not problems, "; ".join(problems) + "\n" + result.report()
    return got, want


# --- the table --------------------------------------------------------------------------


def create_table(db: MysqlDb, table: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    widths = {c: max(len(str(r[c])) for r in rows) for c in VARCHAR_COLUMNS}
    types = {**{c: f"VARCHAR({widths[c]})" for c in VARCHAR_COLUMNS}, **FIXED_TYPES}
    columns = ", ".join(f"{name} {types[name]}" for name in NAMES)
    conn = db.admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {table} ({columns}, PRIMARY KEY (order_id)) DEFAULT CHARSET=utf8mb4"
            )
            placeholders = ", ".join(["%s"] * len(NAMES))
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(NAMES)}) VALUES ({placeholders})",
                [[row[n] for n in NAMES] for row in rows],
            )
    finally:
        conn.close()
    return widths


@pytest.fixture(scope="module")
def db(mysql_db: MysqlDb) -> MysqlDb:  # noqa: F811 - the fixture imported above
    return mysql_db


@pytest.fixture(scope="module")
def server(db: MysqlDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dbward]:
    started = start_server(tmp_path_factory.mktemp("mysql-masking"), db)
    yield started
    alive = started.proc.poll() is None
    stop_dbward(started)
    assert alive, f"dbward exited during the tests\n{log_tail(started)}"


@pytest.fixture(scope="module")
def lab(server: Dbward, db: MysqlDb) -> Iterator[Lab]:
    table = unique("customers")
    view, renaming_view = f"{table}_v", f"{table}_r"
    rows = generate_rows()
    widths = create_table(db, table, rows)
    renamed = ", ".join(s if a == s else f"{s} AS {a}" for a, s in ALIASES)
    upstream_exec(
        db,
        f"CREATE VIEW {view} AS SELECT * FROM {table}",
        f"CREATE VIEW {renaming_view} AS SELECT {renamed} FROM {table}",
    )
    pii, harmless = planted(rows)
    SCORES.clear()
    yield Lab(server, db, Dataset(table, view, renaming_view, widths, rows, pii, harmless))
    print("\n\nmasking on Faker data through the MySQL protocol, per client and read:")
    for item in SCORES:
        print("  " + item.line())


def all_columns(table: str) -> Query:
    return Query(
        f"SELECT {', '.join(NAMES)} FROM {table} ORDER BY order_id", tuple((n, n) for n in NAMES)
    )


def shapes(data: Dataset) -> dict[str, Query]:
    table = data.table
    alias_sql = ", ".join(s if a == s else f"{s} AS {a}" for a, s in ALIASES)
    star = tuple((n, n) for n in NAMES)
    return {
        "select-star": Query(f"SELECT * FROM {table} ORDER BY order_id", star),
        "aliases": Query(f"SELECT {alias_sql} FROM {table} ORDER BY order_id", ALIASES),
        "expressions": Query(
            f"SELECT order_id, LOWER(email) AS x, CONCAT('mailto:', email) AS y, "
            f"UPPER(iban) AS z, CONCAT(card_number, '') AS w, CONCAT(notes, '') AS n, "
            f"CONCAT(profile, '') AS j FROM {table} ORDER BY order_id",
            (
                ("order_id", "order_id"),
                ("x", "email"),
                ("y", "email"),
                ("z", "iban"),
                ("w", "card_number"),
                ("n", "notes"),
                ("j", "profile"),
            ),
        ),
        "view": Query(f"SELECT * FROM {data.view} ORDER BY order_id", star),
        "renaming-view": Query(f"SELECT * FROM {data.renaming_view} ORDER BY order_id", ALIASES),
        "derived-table": Query(
            f"SELECT * FROM (SELECT {alias_sql} FROM {table}) AS s ORDER BY order_id", ALIASES
        ),
    }


# --- the tests ---------------------------------------------------------------------------


def test_planted_data_is_what_the_test_thinks(lab: Lab) -> None:
    """The planted values are valid of their kind (else a miss would prove nothing)."""
    data = lab.data
    assert len(data.rows) == len(LOCALES) * ROWS_PER_LOCALE
    cards = [r["card_number"] for r in data.rows]
    assert all(luhn_ok(c) for c in cards)
    assert len({len(c) for c in cards}) > 1  # 13 to 16 digits
    assert data.widths["card_number"] == 16
    for row in data.rows:
        assert 1_000_000_000 > row["ssn"] > 1_000_000, row["ssn"]
        json.loads(row["profile"])
    assert len(data.pii) == 16 * len(data.rows)  # 9 columns, 2 in notes, 5 in profile


@pytest.mark.parametrize("client", list(CLIENTS))
def test_whole_table_through_each_client(lab: Lab, client: str) -> None:
    check(client, lab, all_columns(lab.data.table), CLIENTS[client])


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("shape", ["select-star", "aliases", "expressions", "view"])
def test_query_shapes_do_not_hide_pii(lab: Lab, shape: str, client: str) -> None:
    query = shapes(lab.data)[shape]
    check(f"{client} {shape}", lab, query, CLIENTS[client])


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("shape", ["renaming-view", "derived-table"])
def test_renamed_through_a_view_or_subquery(lab: Lab, shape: str, client: str) -> None:
    """A view or a derived table that renames the columns: MariaDB's column definitions then
    name the view (or the derived table) and the new name, not the table's column."""
    query = shapes(lab.data)[shape]
    check(f"{client} {shape}", lab, query, CLIENTS[client])


# --- masked values stay valid values of their column's type --------------------------------


@pytest.mark.parametrize("client", list(CLIENTS))
def test_masked_values_keep_their_types(lab: Lab, client: str) -> None:
    data = lab.data
    query = all_columns(data.table)
    got = CLIENTS[client](lab, query.sql, False)
    index = {name: i for i, name in enumerate(got.names)}
    original = {row["order_id"]: row for row in data.rows}
    too_long: list[str] = []
    for row in got.exact:
        key = row[index["order_id"]]
        source = original[key]
        for column in VARCHAR_COLUMNS:
            value = row[index[column]]
            assert value is None or isinstance(value, str), (column, value)
            if value is not None and len(value) > data.widths[column]:
                too_long.append(
                    f"{column} VARCHAR({data.widths[column]}) row {key}: {value!r} "
                    f"({len(value)} characters)"
                )
        ssn = row[index["ssn"]]
        assert isinstance(ssn, int), (key, ssn)
        assert not isinstance(ssn, bool)
        assert ssn != source["ssn"], (key, ssn)
        born = row[index["date_of_birth"]]
        assert type(born) is datetime.date, (key, born)
        assert born != source["date_of_birth"], (key, born)
        profile = row[index["profile"]]
        assert isinstance(profile, str), (key, profile)
        document = json.loads(profile)  # still valid JSON
        assert isinstance(document, dict), profile
        assert set(document) == set(json.loads(source["profile"])), profile
        assert document["last_order"] == key
        assert document["score"] == json.loads(source["profile"])["score"]
        assert isinstance(row[index["price"]], Decimal)
        assert type(row[index["created_at"]]) is datetime.datetime
    assert not too_long, f"{len(too_long)} masked values do not fit their column:\n" + "\n".join(
        too_long[:40]
    )


@pytest.mark.parametrize("client", list(CLIENTS))
def test_classified_numbers_and_dates_keep_their_types(lab: Lab, client: str) -> None:
    """Columns classified by name whose type cannot hold text: a masked value is still a
    value of the column's type (a number, a date, a datetime), in text and binary rows."""
    table = unique("typed_people")
    upstream_exec(
        lab.db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, ssn INT, card_number BIGINT UNSIGNED, "
        "pin SMALLINT, birthday DATETIME, date_of_birth DATE, born DATE)",
        f"INSERT INTO {table} VALUES (1, 219099999, 4111111111111111, 4321, "
        "'1980-02-03 04:05:06', '1975-06-07', NULL)",
    )
    got = CLIENTS[client](
        lab,
        f"SELECT id, ssn, card_number, pin, birthday, date_of_birth, born FROM {table}",
        False,
    )
    [[key, ssn, card, pin, birthday, born_on, born]] = got.exact
    assert key == 1
    for name, value, original in (
        ("ssn", ssn, 219099999),
        ("card_number", card, 4111111111111111),
        ("pin", pin, 4321),
    ):
        assert type(value) is int, (name, value)
        assert value != original, (name, value)
    assert card != 4111111111111111
    assert type(birthday) is datetime.datetime, birthday
    assert birthday.date() != datetime.date(1980, 2, 3), birthday
    assert type(born_on) is datetime.date, born_on
    assert born_on != datetime.date(1975, 6, 7), born_on
    assert born is None  # NULL stays NULL


TIGHT = {  # column -> (width, a value whose usual mask is longer than the column)
    "full_name": (6, "Ann Li"),  # a pseudonym: "Person 4B470589"
    "email": (8, "jo@ex.io"),  # partial: "****@ex.io"
    "ip_address": (7, "1.2.3.4"),  # a pseudonym: "10.x.y.z"
    "notes": (13, "mail jo@ex.io"),  # found inside: "mail ****@ex.io"
    "phone_number": (10, "4155552671"),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_masks_fit_short_varchar_columns(lab: Lab, client: str) -> None:
    table = unique("tight")
    columns = ", ".join(f"{name} VARCHAR({width})" for name, (width, _) in TIGHT.items())
    values = ", ".join(f"'{value}'" for _, value in TIGHT.values())
    upstream_exec(
        lab.db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, {columns})",
        f"INSERT INTO {table} VALUES (1, {values})",
    )
    got = CLIENTS[client](lab, f"SELECT {', '.join(TIGHT)} FROM {table}", False)
    [row] = got.exact
    for (name, (width, value)), masked in zip(TIGHT.items(), row, strict=True):
        assert isinstance(masked, str), (name, masked)
        assert masked != value, (name, masked)
        assert len(masked) <= width, f"{name} VARCHAR({width}) came back as {masked!r}"
    assert "jo@ex.io" not in got.blob()


def test_json_values_under_pii_keys(lab: Lab) -> None:
    """In a JSON document, a value under a key that names PII is masked whole, even where
    its content alone says nothing (a name, a birth date, an SSN without dashes)."""
    table = unique("profiles")
    doc = {
        "id": 7,
        "full_name": "Ada Lovelace",
        "date_of_birth": "1815-12-10",
        "ssn": "219099999",
        "home": {"street": "12 St James Square", "city": "London"},
        "plan": "gold",
    }
    upstream_exec(
        lab.db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, doc JSON)",
        f"INSERT INTO {table} VALUES (7, '{json.dumps(doc)}')",
    )
    for client, read in CLIENTS.items():
        got = read(lab, f"SELECT doc FROM {table}", False)
        [[text]] = got.shown
        assert text is not None
        masked = json.loads(text)
        leaked = [
            v for v in ("Ada Lovelace", "1815-12-10", "219099999", "12 St James") if v in text
        ]
        assert not leaked, f"{client}: {leaked} in {text}"
        assert masked["plan"] == "gold", (client, masked)
        assert masked["id"] == 7, (client, masked)


# --- error messages ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duplicates(lab: Lab) -> str:
    table = unique("accounts")
    upstream_exec(
        lab.db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, ref VARCHAR(20), email VARCHAR(64), "
        "contact VARCHAR(64), full_name VARCHAR(64), "
        "UNIQUE KEY email (email), UNIQUE KEY uq_contact (contact), "
        "UNIQUE KEY full_name (full_name), UNIQUE KEY ref (ref))",
        f"INSERT INTO {table} VALUES (1, 'ORD-1', 'alice@example.com', 'bob@example.net', "
        "'Alice Liddell')",
    )
    return table


DUPLICATES = {
    # what is inserted twice -> (the value the server echoes, what must not be seen)
    "email-key": ("(2, 'ORD-2', 'alice@example.com', 'x@example.org', 'X')", "alice@example.com"),
    "content": ("(2, 'ORD-2', 'y@example.org', 'bob@example.net', 'Y')", "bob@example.net"),
    "name-key": (
        "(2, 'ORD-2', 'z@example.org', 'z@example.net', 'Alice Liddell')",
        "Alice Liddell",
    ),
}
INCORRECT_VALUE = "('carol.ann@example.com', 'ORD-9', 'w@example.org', 'w@example.net', 'W')"


@pytest.mark.parametrize("client", ["pymysql-text", "connector-binary"])
@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_key_error_is_masked(lab: Lab, duplicates: str, case: str, client: str) -> None:
    values, secret = DUPLICATES[case]
    sql = f"INSERT INTO {duplicates} VALUES {values}"
    with pytest.raises(CLIENT_ERRORS) as direct:
        _run(lab, sql, client, direct=True)
    assert secret in error_message(direct.value)  # MariaDB echoes it
    with pytest.raises(CLIENT_ERRORS) as caught:
        _run(lab, sql, client, direct=False)
    message = error_message(caught.value)
    assert error_code(caught.value) == 1062, repr(caught.value)
    assert message.startswith("Duplicate entry '"), message
    assert secret not in message, message
    assert secret.split("@")[0] not in message, message
    assert "for key" in message, message
    records = [
        s for s in lab.server.statements() if s["data"]["statement"] == sql and "error" in s["data"]
    ]
    assert records, "the failed INSERT was not recorded"
    for record in records:  # the trail keeps the error as the client saw it
        assert record["data"]["error"] == f"1062: {message}", record
        assert record["data"]["masked"]["values"] >= 1, record


@pytest.mark.parametrize("client", ["pymysql-text", "connector-binary"])
def test_other_error_messages_are_scanned(lab: Lab, duplicates: str, client: str) -> None:
    """``Incorrect integer value: 'carol.ann@example.com' for column ...`` (strict mode)."""
    sql = f"INSERT INTO {duplicates} VALUES {INCORRECT_VALUE}"
    with pytest.raises(CLIENT_ERRORS) as direct:
        _run(lab, sql, client, direct=True)
    assert "carol.ann@example.com" in error_message(direct.value)
    with pytest.raises(CLIENT_ERRORS) as caught:
        _run(lab, sql, client, direct=False)
    assert error_code(caught.value) == error_code(direct.value) == 1366, repr(caught.value)
    message = error_message(caught.value)
    assert message.startswith("Incorrect integer value: '"), message
    assert "carol.ann" not in message, message
    assert "@example.com" in message, message  # partial: the domain stays


def test_duplicate_key_error_on_harmless_value_is_untouched(lab: Lab, duplicates: str) -> None:
    sql = f"INSERT INTO {duplicates} VALUES (3, 'ORD-1', 'q@example.org', 'q@example.net', 'Q')"
    conn = pymysql_connect(lab.server)
    try:
        with pytest.raises(pymysql.err.IntegrityError) as caught, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()
    assert error_code(caught.value) == 1062
    assert error_message(caught.value) == "Duplicate entry 'ORD-1' for key 'ref'"


def _run(lab: Lab, sql: str, client: str, *, direct: bool) -> None:
    if client == "pymysql-text":
        conn = direct_pymysql(lab.db) if direct else pymysql_connect(lab.server)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()
        return
    conn = direct_connector(lab.db) if direct else connector_connect(lab.server)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute(sql)
    finally:
        conn.close()


# --- unmasking by policy ----------------------------------------------------------------------

UNMASK_POLICY = """\
version: 1
masking:
  unmask:
    - name: support-sees-email
      match: {group: support}
      entities: [email]
"""
EMAIL = "ada.lovelace@example.org"
PHONE = "+44 20 7946 0958"


@pytest.fixture(scope="module")
def unmasking(
    db: MysqlDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dbward, str]]:
    server = start_server(tmp_path_factory.mktemp("mysql-unmask"), db, policy=UNMASK_POLICY)
    server.token("sam", IdentityKind.SERVICE, ("support",))
    server.token("app-svc", IdentityKind.SERVICE, ("eng",))
    server.token("support-bot", IdentityKind.AGENT, ("support",))
    table = unique("contacts")
    upstream_exec(
        db,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(64), phone_number VARCHAR(32), "
        "notes TEXT)",
        f"INSERT INTO {table} VALUES (1, '{EMAIL}', '{PHONE}', 'reach me at {EMAIL} or {PHONE}')",
    )
    yield server, table
    alive = server.proc.poll() is None
    stop_dbward(server)
    assert alive, f"dbward exited during the tests\n{log_tail(server)}"


def _read_as(server: Dbward, user: str, sql: str, client: str) -> tuple[Any, ...]:
    if client == "pymysql-text":
        conn = pymysql_connect(server, user)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                [row] = cur.fetchall()
        finally:
            conn.close()
        return tuple(row)
    conn = connector_connect(server, user)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute(sql)
        [row] = cur.fetchall()
    finally:
        conn.close()
    return tuple(text_value(v) for v in row)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_policy_unmasks_email_for_its_group_only(
    unmasking: tuple[Dbward, str], client: str
) -> None:
    server, table = unmasking
    sql = f"SELECT email, phone_number, notes FROM {table} WHERE id = 1"

    email, phone, notes = _read_as(server, "sam", sql, client)
    assert email == EMAIL  # the grant's entity, for its group
    assert EMAIL in notes
    assert phone != PHONE, phone  # phones stay masked
    assert "7946" not in phone, phone
    assert PHONE not in notes, notes

    for user in ("app-svc", "support-bot"):  # another group; an agent of the group
        email, phone, notes = _read_as(server, user, sql, client)
        assert email != EMAIL, (user, email)
        assert email.endswith("@example.org"), (user, email)
        assert EMAIL not in notes, (user, notes)
        assert PHONE not in notes, (user, notes)
        assert phone != PHONE, (user, phone)

    records = [s for s in server.statements() if s["data"]["statement"] == sql]
    by_identity = {r["identity"]: r["data"].get("masked", {}) for r in records}
    assert "email" not in by_identity["sam"].get("entities", {}), by_identity
    assert by_identity["app-svc"]["entities"]["email"] == 2, by_identity
