"""The C masking kernel (dbward.masking._native via dbward.masking.native) against Python.

``RowMasker(..., use_native=True)`` masks DataRows in C, ``use_native=False`` in
Python; both must give the same bytes and the same statistics. The kernel skips
the scanner for a text value when ``maybe_pii`` says no detector can match, so
``maybe_pii`` must never say False where the scanner finds something; and it
strips a person's name of the whitespace ``native.spaces()`` lists, which must be
exactly what ``str.strip()`` strips.

With ``DBWARD_NATIVE=0`` (or without the extension) the tests of the kernel are
skipped; those of the Python path still run.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import json
import os
import random
import string
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.pg.framing import Framer
from dbward.masking import native
from dbward.masking.entities import DEFAULT_STRATEGIES, Entity, Strategy
from dbward.masking.plan import ColumnRule, Field, MaskingRules, Origin, ResultPlan, build_plan
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.scanner import shared_scanner
from dbward.masking.strategies import Pseudonymizer
from dbward.masking.values import ValueMasker
from tests.golden import case_id, load_cases
from tests.unit.masking import support as s

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "masking"
KEY = b"k" * 32

needs_native = pytest.mark.skipif(
    not native.enabled(), reason="the C kernel is not built, or DBWARD_NATIVE=0"
)
BOTH_PATHS = [
    pytest.param(True, id="native", marks=needs_native),
    pytest.param(False, id="python"),
]

# --- helpers ----------------------------------------------------------------------------------


def value_masker(strategies: dict[Entity, Strategy] | None = None, key: bytes = KEY) -> ValueMasker:
    """A fresh ValueMasker (its own memos), as the rows tests make them."""
    return ValueMasker(shared_scanner(), Pseudonymizer(key), strategies or DEFAULT_STRATEGIES)


def row_masker(
    plan: ResultPlan, use_native: bool, rules: MaskingRules | None = None, key: bytes = KEY
) -> RowMasker:
    strategies = dict(rules.strategies) if rules is not None else None
    return RowMasker(plan, value_masker(strategies, key), MaskStats(), use_native=use_native)


def both(
    plan: ResultPlan, rules: MaskingRules | None = None, key: bytes = KEY
) -> tuple[RowMasker, RowMasker]:
    """(C kernel, Python) maskers for one plan, each with its own stats and memos."""
    return row_masker(plan, True, rules, key), row_masker(plan, False, rules, key)


def summary(rows: RowMasker) -> dict[str, object]:
    return rows.stats.settle().summary()


def message(kind: bytes, payload: bytes) -> bytes:
    """A backend message: type byte, int32 length (itself included), payload."""
    return kind + struct.pack("!i", len(payload) + 4) + payload


def as_datarow_message(payload: bytes) -> bytes:
    return message(b"D", payload)


def row_description(fields: Sequence[Field]) -> bytes:
    """A RowDescription payload ('T') for these fields."""
    out = [struct.pack("!h", len(fields))]
    for item in fields:
        out.append(item.name.encode() + b"\x00")
        out.append(
            struct.pack(
                "!ihihih",
                item.table_oid,
                item.attnum,
                item.type_oid,
                -1,
                item.typmod,
                int(item.binary),
            )
        )
    return b"".join(out)


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    """What a call gave, or the type of what it raised: for comparing two paths."""
    try:
        return "ok", call()
    except Exception as error:
        return "raised", type(error).__name__


def show(payload: bytes) -> str:
    try:
        return repr(s.parse_datarow(payload))
    except (AssertionError, struct.error):
        return repr(payload)


# --- texts with and without PII -------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _chars(rnd: random.Random, alphabet: str, size: int) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(size))


ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


def secrets_for(rnd: random.Random) -> list[str]:
    """One of each kind of secret the detectors know, drawn from ``rnd``."""
    jwt_header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    jwt_body = _b64url(json.dumps({"sub": _chars(rnd, ALNUM, 8), "iat": 1700000000}).encode())
    return [
        "AKIA" + _chars(rnd, UPPER_DIGITS, 16),
        "ASIA" + _chars(rnd, UPPER_DIGITS, 16),
        "aws_secret_access_key = "
        + _chars(rnd, string.ascii_lowercase, 10)
        + _chars(rnd, string.ascii_uppercase, 10)
        + _chars(rnd, string.digits, 10)
        + _chars(rnd, ALNUM + "/+", 10),
        "ghp_" + _chars(rnd, ALNUM, 36),
        "github_pat_" + _chars(rnd, ALNUM + "_", 82),
        "glpat-" + _chars(rnd, ALNUM + "_-", 20),
        "xoxb-" + _chars(rnd, string.digits, 12) + "-" + _chars(rnd, ALNUM, 24),
        "https://hooks.slack.com/services/T"
        + _chars(rnd, UPPER_DIGITS, 8)
        + "/B"
        + _chars(rnd, UPPER_DIGITS, 8)
        + "/"
        + _chars(rnd, ALNUM, 24),
        "sk_live_" + _chars(rnd, ALNUM, 24),
        "pk_test_" + _chars(rnd, ALNUM, 24),
        "whsec_" + _chars(rnd, ALNUM, 32),
        f"{jwt_header}.{jwt_body}.{_chars(rnd, ALNUM + '_-', 43)}",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + _chars(rnd, ALNUM, 40),
    ]


def _pii(fake: Faker, rnd: random.Random) -> list[str]:
    found = [fake.email(), fake.phone_number(), fake.ipv4(), fake.ipv6(), fake.name()]
    for provider in ("iban", "credit_card_number", "ssn"):
        with contextlib.suppress(AttributeError):  # a locale without this provider
            found.append(str(getattr(fake, provider)()))
    return found + secrets_for(rnd)


SEPARATORS = (" ", ", ", "\n", ": ", " (", ") ", "; ", "\t", "=")


@functools.cache
def faker_texts(locale: str, count: int = 60) -> tuple[str, ...]:
    """Sentences of ``locale`` mixed with its emails, phones, IBANs, ... and secrets."""
    fake = Faker(locale)
    fake.seed_instance(2024)
    rnd = random.Random(f"texts-{locale}")
    texts = []
    for _ in range(count):
        parts = [fake.sentence()]
        for item in rnd.sample(_pii(fake, rnd), rnd.randint(1, 3)):
            parts += [rnd.choice(SEPARATORS), item]
        if rnd.random() < 0.5:
            parts += [rnd.choice(SEPARATORS), fake.sentence()]
        texts.append("".join(parts))
    return tuple(texts)


@functools.cache
def faker_values(locale: str, provider: str, count: int = 4) -> list[bytes]:
    fake = Faker(locale)
    fake.seed_instance(7)
    return [str(getattr(fake, provider)()).encode() for _ in range(count)]


LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "ja_JP", "pt_BR"]


def golden_texts() -> list[Any]:
    """Every golden fixture case's text, known gaps included."""
    return [
        pytest.param(str(case["text"]), id=case_id(path.stem, index, case["text"]))
        for path in sorted(FIXTURES.glob("*.yaml"))
        for index, case in enumerate(load_cases(path))
    ]


# --- 1. maybe_pii is a conservative prefilter --------------------------------------------------


def assert_prefilter_allows(text: bytes) -> None:
    hits = shared_scanner().find(text)
    if hits:
        assert native.maybe_pii(text), f"maybe_pii said no, the scanner found {hits} in {text!r}"


@needs_native
@pytest.mark.parametrize("text", golden_texts())
def test_maybe_pii_lets_every_golden_detection_through(text: str) -> None:
    assert_prefilter_allows(text.encode("utf-8"))


@needs_native
@pytest.mark.parametrize("locale", LOCALES)
def test_maybe_pii_lets_every_faker_detection_through(locale: str) -> None:
    texts = [t.encode("utf-8") for t in faker_texts(locale)]
    for text in texts:
        assert_prefilter_allows(text)
    detected = sum(1 for t in texts if shared_scanner().find(t))
    assert detected >= len(texts) * 3 // 4, "the generated texts should mostly hold PII"


@needs_native
@pytest.mark.parametrize("secret", secrets_for(random.Random(5)), ids=lambda t: t[:12])
def test_maybe_pii_lets_each_kind_of_secret_through(secret: str) -> None:
    assert shared_scanner().find(secret.encode()), "the generated secret should be detected"
    for text in (secret, f"key {secret} here", f"x{secret}\n", f"({secret})"):
        assert_prefilter_allows(text.encode())


TOKENS = (
    list("0123456789" * 3)
    + list(" .-()+:@_")
    + list("ABCDEFGHJKLMNPRSTWXYZ")
    + list("abcdefghklnopqrstuwxyz")
    + [
        "AKIA", "ASIA", "ghp_", "gho_", "ghs_", "github_pat_", "glpat-", "gldt-", "glsoat-",
        "xoxb-", "xoxp-", "hooks.slack.com/services/", "https://", "sk_live_", "rk_test_",
        "whsec_", "eyJ", "eyJhbGciOiJIUzI1NiJ9", "-----BEGIN ", "PRIVATE KEY-----", "aws",
        "AWS", "secret", "Secret", "ext.", " x", "GB", "DE", "FR", "IT", "::", "fe80", "ffff",
        "\u00e9", "\u3000", "\u00a0", "\n", "/", "=", '"', "'", ",", "#", "order ", "id ",
    ]
)  # fmt: skip
GOLDEN_SPANS = sorted(
    {
        str(match)
        for path in sorted(FIXTURES.glob("*.yaml"))
        for case in load_cases(path)
        for item in case["expect"]
        for match in item.values()
    }
)
"""What the golden cases expect detected: whole PII values to drop into random text."""
RICH_TEXT = st.lists(
    st.one_of(
        st.sampled_from(TOKENS), st.sampled_from(GOLDEN_SPANS + secrets_for(random.Random(3)))
    ),
    max_size=24,
).map("".join)


@needs_native
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RICH_TEXT)
def test_maybe_pii_lets_every_detection_through_in_random_text(text: str) -> None:
    assert_prefilter_allows(text.encode("utf-8"))


@needs_native
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_maybe_pii_lets_every_detection_through_in_random_bytes(data: bytes) -> None:
    assert_prefilter_allows(data)


PLAIN = [
    "The quick brown fox jumps over the lazy dog.",
    "Please bring the report to the meeting on Tuesday morning.",
    "Ein schöner Tag am See, mit Kuchen und Kaffee.",
    "Zażółć gęślą jaźń.",
    "山田さんは東京に住んでいます。",
    "Nothing personal here, just a note about the weather: cloudy.",
    "",
]


@needs_native
@pytest.mark.parametrize("text", PLAIN)
def test_maybe_pii_rules_out_plain_sentences(text: str) -> None:
    assert native.maybe_pii(text.encode("utf-8")) is False


@needs_native
@pytest.mark.parametrize(
    "text",
    ["mail me @ home", "call 555-0143 now", "key AKIAIOSFODNN7EXAMPLE", "ip fe80::1", "eyJ"],
)
def test_maybe_pii_says_maybe_for_what_looks_like_pii(text: str) -> None:
    assert native.maybe_pii(text.encode()) is True


# --- 2. the whitespace stripped from names ---------------------------------------------------


@needs_native
def test_spaces_are_exactly_what_str_isspace_accepts() -> None:
    expected = {chr(c).encode("utf-8") for c in range(0x110000) if chr(c).isspace()}
    assert set(native.spaces()) == expected


# --- 3. the kernel and Python rewrite rows the same ----------------------------------------------

TABLE = 17000
_UUID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
_JWT = secrets_for(random.Random(9))[-2]


@dataclass(frozen=True)
class Column:
    """A column of the wide test result and the values it holds, per format."""

    name: str
    oid: int
    text: tuple[bytes | None, ...]
    binary: tuple[bytes | None, ...] | None = None  # None: the same bytes as text
    typmod: int = -1

    def values(self, binary: bool) -> tuple[bytes | None, ...]:
        return self.binary if binary and self.binary is not None else self.text


def _with_nulls(*values: bytes | None) -> tuple[bytes | None, ...]:
    return (*values, None)


NAMES = _with_nulls(
    b"Ada Lovelace",
    "José Álvarez".encode(),
    "Łukasz Żółkiewski".encode(),
    "山田太郎".encode(),
    "\u00a0José\u00a0".encode(),
    "\u3000山田太郎\u3000".encode(),
    "\u2003Łukasz\u2003".encode(),
    b" \t\nAda Lovelace\r\n\x0b\x0c",
    "\u0085\u1680Ada\u205f\u202f\u2028\u2029".encode(),
    b"\x1c\x1dAda\x1e\x1f",
    "Ada\u200bLovelace".encode(),  # a zero-width space is not whitespace
    "\u180eAda\ufeff".encode(),  # nor are these
    "🙂 Emoji Person".encode(),
    b"",
    b"   ",
    b"Ada\x00Lovelace",
    b"Jos\xe9",  # Latin-1, not UTF-8
    b"\xff\xfeAda",
    b"Ada \xc3",  # a cut character
    b"\xed\xa0\x80Ada",  # an encoded surrogate
    b"\xc0\xafAda",  # an overlong form
    b"\xe0\x80\x80",
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf0\x80\x80\x80x",
    b"\xc2\xa0Ada\xc2",
)
EMAILS = _with_nulls(
    b"alice@example.com",
    b"A.B+tag@Sub.Example.co.uk",
    b"a@b@c.example",
    b"no-at-sign.example.com",
    b"@",
    b"trailing@",
    b"@leading.example",
    b"",
    "josé@correo.es".encode(),
    "山田@例え.jp".encode(),
    b"\xffbob@example.com",
    b"bob@exa\xffmple.com",
)
PHONES = _with_nulls(
    b"+1-202-555-0143",
    b"(555)123-4567x890",
    b"+44 20 7946 0958 ext. 12",
    b"212.555.0143 x99",
    b"001-212-555-0143x455",
    b"12",
    b"a",
    b"",
    "☎ +49 30 123456".encode(),
    "٠١٢٣٤٥٦٧٨٩".encode(),
    b"\xff555-0143",
)
CARDS = _with_nulls(
    b"4111 1111 1111 1111",
    b"4111-1111-1111-1111",
    b"378282246310005",
    b"5555555555554444",
    b"1234",
    b"12",
    b"",
    "４１１１ １１１１ １１１１ １１１１".encode(),
    b"\xfe4111",
)
NOTES = _with_nulls(
    b"Call me at +1-202-555-0143 or mail jose@example.es",
    b"no personal data here",
    b"",
    b"order 12345 shipped",
    b"release v1.2.3 is out",
    "Łukasz: IBAN GB82 WEST 1234 5698 7654 32".encode(),
    b"\xff\xfe card 4111 1111 1111 1111",
    b"token " + _JWT.encode(),
    b"key: AKIAIOSFODNN7EXAMPLE",
    b"ssn 536-80-4398; ip 192.168.1.20 and fe80::1",
    "山田太郎さんのメール: yamada@example.jp".encode(),
    b"meeting at 10:30, room B",
)
MOBILE_ELEMENTS = [b"+1-202-555-0143", None, b"", b"(555) 123-4567 ext 9"]
ALIAS_ELEMENTS = [b"alice@example.com", b"bob", None, b"call 212-555-0143"]
JSON_DOCS = _with_nulls(
    b'{"email": "alice@example.com", "n": 1}',
    b'{"note": "call +44 20 7946 0958", "ok": true}',
    b'{"a": "b"}',
    b'"just a string"',
    b"[]",
    b"null",
    b'{"x": "\\u0040example.com", "y": "\\nbob@x.io"}',
    '{"name": "José", "tags": ["a@b.io"]}'.encode(),
    b"not json a@b.io",
    b"",
)


def _jsonb(docs: tuple[bytes | None, ...]) -> tuple[bytes | None, ...]:
    return tuple(None if d is None else b"\x01" + d for d in docs)


COLUMNS: tuple[Column, ...] = (
    Column("full_name", s.TEXT, NAMES),
    Column("email", s.TEXT, EMAILS),
    Column("phone", s.TEXT, PHONES),
    Column("credit_card", s.TEXT, CARDS),
    Column("ssn", s.TEXT, _with_nulls(b"536-80-4398", b"078-05-1120", b"", b"x")),
    Column("passport_number", s.TEXT, _with_nulls(b"X1234567", b"")),  # a rule: NULL
    Column("backup_email", s.TEXT, EMAILS),  # a rule: redact
    Column(
        "work_email",
        s.VARCHAR,
        _with_nulls(
            b"ann@example.com",
            b"a.very.long.address@subdomain.example.com",
            "zoë@ex.es".encode(),
            b"",
            b"no at sign",
            b"\xff@x.io",
        ),
        typmod=s.varchar_typmod(24),
    ),
    Column(
        "fax",
        s.BPCHAR,
        _with_nulls(b"212-555-0143    ", b"+44 20 7946 0958", b" " * 16, b""),
        typmod=s.varchar_typmod(16),
    ),
    Column(
        "mobile",
        s.TEXT_ARRAY,
        _with_nulls(
            s.text_array(MOBILE_ELEMENTS),
            b"{}",
            b"{NULL}",
            b"[0:1]={212-555-0143,555-0199}",
            b'{{"+1 202 555 0143"},{"x"}}',
        ),
        _with_nulls(
            s.encode_binary_array(MOBILE_ELEMENTS, s.TEXT),
            s.encode_binary_array([], s.TEXT),
            s.encode_binary_array([None], s.TEXT),
        ),
    ),
    Column(
        "aliases",
        s.TEXT_ARRAY,
        _with_nulls(
            s.text_array(ALIAS_ELEMENTS),
            b"{}",
            b"{plain,words}",
            b'{"\\"quoted\\" a@b.io"}',
        ),
        _with_nulls(
            s.encode_binary_array(ALIAS_ELEMENTS, s.TEXT),
            s.encode_binary_array([b"plain"], s.TEXT),
            s.encode_binary_array([], s.TEXT),
        ),
    ),
    Column("metadata", s.JSON, JSON_DOCS),
    Column("profile", s.JSONB, JSON_DOCS, _jsonb(JSON_DOCS)),
    Column(
        "account_number",
        s.INT4,
        _with_nulls(b"12345678", b"-42", b"0", b"2147483647", b"abc", b""),
        _with_nulls(
            s.encode_int(12345678, s.INT4), s.encode_int(-42, s.INT4), s.encode_int(0, s.INT4)
        ),
    ),
    Column(
        "card_number",
        s.NUMERIC,
        _with_nulls(b"4111111111111111", b"12.50", b"-7", b"NaN", b"0"),
        _with_nulls(
            s.encode_numeric(Decimal("4111111111111111")),
            s.encode_numeric(Decimal("12.50")),
            s.encode_numeric(Decimal("-7")),
            s.encode_numeric(Decimal("NaN")),
            b"\x00",
        ),
    ),
    Column(
        "date_of_birth",
        s.DATE,
        _with_nulls(b"1985-04-12", b"2000-01-01", b"infinity", b""),
        _with_nulls(
            s.encode_date(datetime.date(1985, 4, 12)),
            s.encode_date(datetime.date(2000, 1, 1)),
            b"\x7f\xff\xff\xff",
        ),
    ),
    Column(
        "api_token",
        s.UUID,
        _with_nulls(str(_UUID).encode(), b"not-a-uuid"),
        _with_nulls(_UUID.bytes, b"\x00\x01\x02"),
    ),
    Column("notes", s.TEXT, NOTES),
    Column(
        "quantity",
        s.INT4,
        _with_nulls(b"3", b"a@b.io 536-80-4398"),
        _with_nulls(s.encode_int(3, s.INT4)),
    ),
    Column(
        "external_id",
        s.UUID,
        _with_nulls(str(_UUID).encode()),
        _with_nulls(_UUID.bytes),
    ),
)
UNPLANNED = ("quantity", "external_id")
ORIGINS = {(TABLE, i + 1): Origin("crm", "customers", c.name) for i, c in enumerate(COLUMNS)}
COLUMN_RULES = (
    ColumnRule("crm.customers.passport_number", Entity.NATIONAL_ID, False, Strategy.NULL),
    ColumnRule("crm.customers.backup_email", Entity.EMAIL, False, Strategy.REDACT),
)
DEFAULT_RULES = MaskingRules(columns=COLUMN_RULES)
OTHER_RULES = MaskingRules(
    strategies={
        **DEFAULT_STRATEGIES,
        Entity.EMAIL: Strategy.PSEUDONYM,
        Entity.PHONE: Strategy.REDACT,
        Entity.CARD: Strategy.NULL,
        Entity.SSN: Strategy.PARTIAL,
        Entity.PERSON_NAME: Strategy.PARTIAL,
        Entity.NATIONAL_ID: Strategy.PARTIAL,
        Entity.DOB: Strategy.PARTIAL,
        Entity.IBAN: Strategy.PSEUDONYM,
        Entity.SECRET: Strategy.PSEUDONYM,
        Entity.IP: Strategy.PARTIAL,
    },
    columns=COLUMN_RULES,
)
RULES = [pytest.param(DEFAULT_RULES, id="default"), pytest.param(OTHER_RULES, id="other")]
FORMATS = [pytest.param(False, id="text"), pytest.param(True, id="binary")]


def fields(binary: bool) -> list[Field]:
    return [Field(c.name, TABLE, i + 1, c.oid, c.typmod, binary) for i, c in enumerate(COLUMNS)]


def wide_plan(binary: bool, rules: MaskingRules = DEFAULT_RULES) -> ResultPlan:
    return build_plan(fields(binary), ORIGINS, rules)


def pools(binary: bool) -> list[tuple[bytes | None, ...]]:
    """Each column's values; text columns get Faker's too, in several locales."""
    extra = {
        "full_name": [v for loc in ("es_ES", "pl_PL", "ja_JP") for v in faker_values(loc, "name")],
        "email": faker_values("de_DE", "email"),
        "phone": faker_values("en_US", "phone_number") + faker_values("fr_FR", "phone_number"),
        "credit_card": faker_values("en_US", "credit_card_number"),
        "notes": [t.encode() for t in faker_texts("en_GB", 8) + faker_texts("it_IT", 8)],
    }
    return [(*c.values(binary), *extra.get(c.name, ())) for c in COLUMNS]


RANDOM_ROWS = 120


def rows_for(binary: bool) -> list[bytes]:
    """Every value of every column at least once, then random mixes, then odd shapes."""
    columns = pools(binary)
    longest = max(map(len, columns))
    rows = [[pool[i % len(pool)] for pool in columns] for i in range(longest)]
    rnd = random.Random(f"rows-{binary}")
    rows += [[rnd.choice(pool) for pool in columns] for _ in range(RANDOM_ROWS)]
    payloads = [s.datarow(*row) for row in rows]
    payloads.append(s.datarow(*[None] * len(COLUMNS)))
    payloads.append(s.datarow(*rows[0][:5]))  # fewer fields than the plan
    payloads.append(s.datarow(*rows[1], b"extra", None))  # more fields than the plan
    payloads.append(s.datarow())
    return payloads


def test_the_wide_plan_has_every_kind_of_column() -> None:
    """The premise of the equivalence tests: each kernel mode has a column in the plan."""
    planned = {c.label.rsplit(".", 1)[1]: c for c in wide_plan(False).columns}
    assert set(planned) == {c.name for c in COLUMNS} - set(UNPLANNED)
    expected = {
        "full_name": (Entity.PERSON_NAME, Strategy.PSEUDONYM),
        "email": (Entity.EMAIL, Strategy.PARTIAL),
        "phone": (Entity.PHONE, Strategy.PARTIAL),
        "credit_card": (Entity.CARD, Strategy.PARTIAL),
        "ssn": (Entity.SSN, Strategy.REDACT),
        "passport_number": (Entity.NATIONAL_ID, Strategy.NULL),
        "backup_email": (Entity.EMAIL, Strategy.REDACT),
        "work_email": (Entity.EMAIL, Strategy.PARTIAL),
        "fax": (Entity.PHONE, Strategy.PARTIAL),
        "mobile": (Entity.PHONE, Strategy.PARTIAL),
        "account_number": (Entity.IBAN, Strategy.PARTIAL),
        "card_number": (Entity.CARD, Strategy.PARTIAL),
        "date_of_birth": (Entity.DOB, Strategy.REDACT),
        "api_token": (Entity.SECRET, Strategy.REDACT),
    }
    assert {k: (c.entity, c.strategy) for k, c in planned.items() if c.entity} == expected
    assert {k for k, c in planned.items() if c.scan} == {"aliases", "metadata", "profile", "notes"}


def _unplanned_fields_kept(payload: bytes, result: bytes | None) -> None:
    if result is None:
        return
    before, after = s.parse_datarow(payload), s.parse_datarow(result)
    assert len(after) == len(before)
    for index, column in enumerate(COLUMNS[: len(before)]):
        if column.name in UNPLANNED:
            assert after[index] == before[index]


@needs_native
@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("binary", FORMATS)
def test_kernel_and_python_rewrite_every_row_the_same(binary: bool, rules: MaskingRules) -> None:
    kernel, python = both(wide_plan(binary, rules), rules)
    for payload in rows_for(binary):
        got = kernel.rewrite(payload, 0, len(payload))
        want = python.rewrite(payload, 0, len(payload))
        assert got == want, f"row {show(payload)}"
        _unplanned_fields_kept(payload, want)
        assert summary(kernel) == summary(python), f"stats after row {show(payload)}"


@needs_native
@pytest.mark.parametrize("binary", FORMATS)
def test_kernel_and_python_agree_on_a_row_inside_a_larger_buffer(binary: bool) -> None:
    kernel, python = both(wide_plan(binary))
    for payload in rows_for(binary)[:40]:
        buffer = b"D\x00\x00\x00\x00" + payload + b"C\x00\x00\x00\x0dSELECT 1\x00"
        start, end = 5, 5 + len(payload)
        want = row_masker(wide_plan(binary), False).rewrite(payload, 0, len(payload))
        assert kernel.rewrite(buffer, start, end) == want, f"row {show(payload)}"
        assert python.rewrite(buffer, start, end) == want, f"row {show(payload)}"


@needs_native
@pytest.mark.parametrize(
    "key",
    [b"k" * 16, b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(200))],
    ids=lambda key: f"{len(key)}-bytes",
)
def test_kernel_pseudonyms_match_python_for_any_key_length(key: bytes) -> None:
    """The kernel computes HMAC-SHA256 itself; keys longer than a block are hashed first."""
    plan = build_plan([Field("full_name")], {}, MaskingRules())
    kernel, python = both(plan, key=key)
    for name in NAMES:
        payload = s.datarow(name)
        assert kernel.rewrite(payload, 0, len(payload)) == python.rewrite(
            payload, 0, len(payload)
        ), f"name {name!r}"


@pytest.mark.parametrize("use_native", BOTH_PATHS)
@pytest.mark.parametrize("space", ["\u00a0", "\u3000", "\u2003", " \t\n", "\u0085", "\x1c"])
def test_a_name_padded_with_unicode_whitespace_has_the_unpadded_pseudonym(
    use_native: bool, space: str
) -> None:
    plan = build_plan([Field("full_name")], {}, MaskingRules())
    rows = row_masker(plan, use_native)
    bare, padded = s.datarow("José".encode()), s.datarow(f"{space}José{space}".encode())
    masked = rows.rewrite(bare, 0, len(bare))
    assert masked is not None
    assert s.parse_datarow(masked)[0].startswith(b"Person ")  # type: ignore[union-attr]
    assert rows.rewrite(padded, 0, len(padded)) == masked


FUZZ_CELL = {
    binary: [
        st.one_of(
            st.none(),
            st.sampled_from([v for v in pool if v is not None]),
            st.binary(max_size=24),
            st.text(max_size=24).map(lambda t: t.encode("utf-8")),
        )
        for pool in pools(binary)
    ]
    for binary in (False, True)
}


@needs_native
@pytest.mark.parametrize("binary", FORMATS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_kernel_and_python_agree_on_arbitrary_values(binary: bool, data: st.DataObject) -> None:
    """Any bytes in any column: the same masked row, or the same exception, and the same stats."""
    cells = [data.draw(cell) for cell in FUZZ_CELL[binary]]
    width = data.draw(st.integers(0, len(cells)))
    payload = s.datarow(*cells[:width])
    kernel, python = both(wide_plan(binary))
    got = outcome(lambda: kernel.rewrite(payload, 0, len(payload)))
    want = outcome(lambda: python.rewrite(payload, 0, len(payload)))
    assert got == want
    assert summary(kernel) == summary(python)


def _one_masked_column_at(index: int) -> ResultPlan:
    items = [Field(f"c{i}", type_oid=s.INT4) for i in range(index)] + [Field("email")]
    plan = build_plan(items, {}, MaskingRules())
    assert [c.index for c in plan.columns] == [index]
    return plan


@needs_native
@pytest.mark.parametrize(
    "index",
    [
        0,
        1600,
        1663,  # a result has up to 1664 columns (MaxTupleAttributeNumber)
    ],
)
def test_kernel_masks_a_column_anywhere_in_a_wide_result(index: int) -> None:
    plan = _one_masked_column_at(index)
    payload = s.datarow(*[b"1"] * index, b"alice@example.com")
    kernel, python = both(plan)
    masked = python.rewrite(payload, 0, len(payload))
    assert masked is not None
    assert s.parse_datarow(masked)[-1] == b"****@example.com"
    assert kernel.rewrite(payload, 0, len(payload)) == masked


# --- 4. runs of DataRows -------------------------------------------------------------------

RUN_FIELDS = [
    Field("email"),
    Field("full_name"),
    Field("notes"),
    Field("quantity", type_oid=s.INT4),
]
RUN_PLAN = build_plan(RUN_FIELDS, {}, MaskingRules())
T = message(b"T", row_description(RUN_FIELDS))
C = message(b"C", b"SELECT 3\x00")
Z = message(b"Z", b"I")
PII_ROW = as_datarow_message(
    s.datarow(b"alice@example.com", b"Ada Lovelace", b"call +1-202-555-0143", b"3")
)
PLAIN_ROW = as_datarow_message(s.datarow(None, None, b"nothing to see", b"4"))
NULL_ROW = as_datarow_message(s.datarow(None, None, None, None))
NOTES_ROW = as_datarow_message(s.datarow(None, None, "mail yamada@example.jp 山田".encode(), None))
SHORT_ROW = as_datarow_message(s.datarow(b"bob@example.org"))

RUNS = [
    # messages, index to start at, the index run must stop at
    pytest.param([T, PII_ROW, PLAIN_ROW, NULL_ROW, NOTES_ROW, SHORT_ROW, C, Z], 1, 6, id="mixed"),
    pytest.param([T, PLAIN_ROW, NULL_ROW, PLAIN_ROW, C], 1, 4, id="nothing-to-mask"),
    pytest.param([T, PII_ROW, C], 0, 0, id="starts-at-a-row-description"),
    pytest.param([T, PII_ROW, C], 3, 3, id="starts-past-the-end"),
    pytest.param([T, PII_ROW, C, T, NOTES_ROW, PII_ROW, C], 4, 6, id="second-result"),
    pytest.param([T, PLAIN_ROW, PII_ROW], 1, 3, id="rows-to-the-end-of-the-block"),
    pytest.param([PII_ROW], 0, 1, id="a-single-row"),
]


def split(messages: list[bytes]) -> tuple[bytes, list[tuple[int, int, int]]]:
    framer = Framer()
    block, frames = framer.split(b"".join(messages))
    assert framer.pending == 0
    assert len(frames) == len(messages)
    return block, frames


def expected_run(
    rows: RowMasker, block: bytes, frames: list[tuple[int, int, int]], index: int, stop: int
) -> bytes | None:
    """Each DataRow of frames[index:stop] masked with ``rewrite``, as messages."""
    parts, changed = [], False
    for _, start, end in frames[index:stop]:
        masked = rows.rewrite(block, start, end)
        changed = changed or masked is not None
        parts.append(block[start - 5 : end] if masked is None else as_datarow_message(masked))
    return b"".join(parts) if changed else None


@pytest.mark.parametrize("use_native", BOTH_PATHS)
@pytest.mark.parametrize(("messages", "index", "stop"), RUNS)
def test_run_masks_the_data_rows_up_to_the_next_other_message(
    use_native: bool, messages: list[bytes], index: int, stop: int
) -> None:
    block, frames = split(messages)
    got_stop, got = row_masker(RUN_PLAN, use_native).run(block, frames, index)
    assert got_stop == stop
    assert got == expected_run(row_masker(RUN_PLAN, use_native), block, frames, index, stop)
    if got is not None:
        framer = Framer()
        out, out_frames = framer.split(got)  # whole DataRow messages, one per row
        assert (out, framer.pending) == (got, 0)
        assert [f[0] for f in out_frames] == [ord("D")] * (stop - index)


@needs_native
@pytest.mark.parametrize(("messages", "index", "stop"), RUNS)
def test_run_is_the_same_in_the_kernel_and_python(
    messages: list[bytes], index: int, stop: int
) -> None:
    block, frames = split(messages)
    kernel, python = both(RUN_PLAN)
    assert kernel.run(block, frames, index) == python.run(block, frames, index)
    assert summary(kernel) == summary(python)


def test_a_run_with_pii_changes_and_one_without_does_not() -> None:
    """Guards the run tests' premise: the rows meant to hold PII do, the others do not."""
    block, frames = split([PII_ROW, NOTES_ROW, SHORT_ROW, PLAIN_ROW, NULL_ROW])
    rows = row_masker(RUN_PLAN, False)
    changed = [rows.rewrite(block, start, end) is not None for _, start, end in frames]
    assert changed == [True, True, True, False, False]


# --- 5. malformed DataRows -----------------------------------------------------------------

MALFORMED_PLAN = build_plan(
    [Field("email"), Field("notes"), Field("full_name")], {}, MaskingRules()
)
# (name, payload, end or None for its length)
MALFORMED_CASES = [
    ("no-column-count", b"\x00", None),
    ("truncated-length-field", s.datarow(b"a@b.io")[:4], None),
    ("truncated-second-length-field", s.datarow(b"a@b.io", b"x")[:-3], None),
    ("value-past-the-end", struct.pack("!hi", 3, 100) + b"a@b.io", None),
    ("fewer-fields", struct.pack("!h", 3) + s.datarow(b"a@b.io", b"x")[2:], None),
    ("last-value-past-the-end", struct.pack("!hi", 1, 100) + b"a@b.io", None),
    ("last-value-cut-short", s.datarow(b"a@b.io", b"note")[:-2], None),
    ("end-inside-the-row", s.datarow(b"a@b.io", b"call 212-555-0143", b"Ada"), 12),
]
MALFORMED_FOR_KERNEL = [pytest.param(p, e, id=n) for n, p, e in MALFORMED_CASES]
MALFORMED_FOR_PYTHON = [pytest.param(p, e, id=n) for n, p, e in MALFORMED_CASES]


@needs_native
@pytest.mark.parametrize(("payload", "end"), MALFORMED_FOR_KERNEL)
def test_kernel_rejects_a_malformed_data_row(payload: bytes, end: int | None) -> None:
    kernel = row_masker(MALFORMED_PLAN, True)
    with pytest.raises(ValueError, match="malformed DataRow"):
        kernel.rewrite(payload, 0, len(payload) if end is None else end)


@pytest.mark.parametrize(("payload", "end"), MALFORMED_FOR_PYTHON)
def test_python_rejects_a_malformed_data_row(payload: bytes, end: int | None) -> None:
    python = row_masker(MALFORMED_PLAN, False)
    with pytest.raises((struct.error, ValueError)):
        python.rewrite(payload, 0, len(payload) if end is None else end)


def _block_with_bad_row() -> tuple[bytes, list[tuple[int, int, int]]]:
    bad = struct.pack("!hi", 1, 12) + b"x@y.io"  # says 12 bytes, holds 6
    return split([T, PII_ROW, as_datarow_message(bad), C])


@needs_native
def test_kernel_run_rejects_a_malformed_data_row() -> None:
    block, frames = _block_with_bad_row()
    with pytest.raises(ValueError, match="malformed DataRow"):
        row_masker(RUN_PLAN, True).run(block, frames, 1)


def test_python_run_rejects_a_malformed_data_row() -> None:
    block, frames = _block_with_bad_row()
    with pytest.raises((struct.error, ValueError)):
        row_masker(RUN_PLAN, False).run(block, frames, 1)


# --- 6. counts of values masked whole --------------------------------------------------------

COUNT_FIELDS = [
    Field("full_name"),
    Field("email"),
    Field("phone"),
    Field("credit_card"),
    Field("ssn"),
    Field("work_email", type_oid=s.VARCHAR, typmod=s.varchar_typmod(24)),
    Field("account_number", type_oid=s.INT4),
    Field("date_of_birth", type_oid=s.DATE),
    Field("notes"),
]
COUNT_RULES = MaskingRules(
    strategies={**DEFAULT_STRATEGIES, Entity.SSN: Strategy.NULL, Entity.PHONE: Strategy.REDACT}
)
COUNT_PLAN = build_plan(COUNT_FIELDS, {}, COUNT_RULES)
COUNT_ROW = [
    "Łukasz Żółkiewski".encode(),
    b"alice@example.com",
    b"+1-202-555-0143",
    b"4111 1111 1111 1111",
    b"536-80-4398",
    b"ann@example.com",
    b"12345678",
    b"1985-04-12",
    b"nothing here",
]


def mask_rows(rows: RowMasker, count: int, null_every: int) -> int:
    """Mask ``count`` rows, every ``null_every``-th all NULL; the rows with values."""
    with_values = 0
    for i in range(count):
        nulls = null_every and i % null_every == 0
        payload = s.datarow(*([None] * len(COUNT_ROW) if nulls else COUNT_ROW))
        rows.rewrite(payload, 0, len(payload))
        with_values += not nulls
    return with_values


@pytest.mark.parametrize("use_native", BOTH_PATHS)
@pytest.mark.parametrize(("count", "null_every"), [(1, 0), (37, 0), (40, 3)])
def test_each_value_masked_whole_is_counted_once(
    use_native: bool, count: int, null_every: int
) -> None:
    rows = row_masker(COUNT_PLAN, use_native, COUNT_RULES)
    n = mask_rows(rows, count, null_every)
    whole = [c for c in COUNT_PLAN.columns if c.entity is not None]
    assert len(whole) == 8
    result = summary(rows)
    assert result["columns"] == {c.label: {c.entity.value: n} for c in whole}  # type: ignore[union-attr]
    assert result["values"] == n * len(whole)
    assert summary(rows) == result  # settling again adds nothing


@needs_native
@pytest.mark.parametrize(("count", "null_every"), [(37, 0), (40, 3)])
def test_kernel_and_python_count_the_same(count: int, null_every: int) -> None:
    kernel, python = both(COUNT_PLAN, COUNT_RULES)
    assert mask_rows(kernel, count, null_every) == mask_rows(python, count, null_every)
    assert summary(kernel) == summary(python)


# --- 7. the kernel is there ------------------------------------------------------------------


def test_the_native_kernel_is_built() -> None:
    """CI must not fall back to Python without saying so: only DBWARD_NATIVE=0 allows it."""
    if os.environ.get("DBWARD_NATIVE") == "0":
        pytest.skip("DBWARD_NATIVE=0: rows are masked in Python on purpose")
    assert native.AVAILABLE is True, "dbward.masking._native is not built (pip install -e .)"
    assert native.enabled() is True


def test_dbward_native_0_switches_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBWARD_NATIVE", "0")
    assert native.enabled() is False
    monkeypatch.setenv("DBWARD_NATIVE", "1")
    assert native.enabled() is native.AVAILABLE
