"""ValueMasker.whole: a value of a classified column, masked, still valid for its type.

Binary results are decoded with PostgreSQL's binary format rules (see
:mod:`tests.unit.masking.support`), text results with the type's text syntax.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dbward.masking.entities import Entity, Strategy
from dbward.masking.strategies import Pseudonymizer, mask_text
from dbward.masking.types import ColumnType, Kind, column_type
from dbward.masking.values import ValueMasker, _numeric_binary
from tests.unit.masking import support as s

NON_NULL = [Strategy.REDACT, Strategy.PARTIAL, Strategy.PSEUDONYM]
FORMATS = [pytest.param(False, id="text"), pytest.param(True, id="binary")]
SETTINGS = settings(max_examples=150, deadline=None)


def ct(oid: int, typmod: int = -1) -> ColumnType:
    return column_type(oid, typmod)


M = s.masker()


def whole(
    value: bytes, entity: Entity, strategy: Strategy, ctype: ColumnType, binary: bool
) -> bytes | None:
    return M.whole(value, entity, strategy, ctype, binary)


# --- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "kind"),
    [
        (s.TEXT, Kind.TEXT),
        (s.VARCHAR, Kind.TEXT),
        (s.BPCHAR, Kind.TEXT),
        (s.NAME, Kind.TEXT),
        (s.JSON, Kind.JSON),
        (s.JSONB, Kind.JSONB),
        (s.INT2, Kind.INT),
        (s.INT4, Kind.INT),
        (s.INT8, Kind.INT),
        (s.NUMERIC, Kind.NUMERIC),
        (s.DATE, Kind.DATE),
        (s.TIMESTAMP, Kind.TIMESTAMP),
        (s.TIMESTAMPTZ, Kind.TIMESTAMP),
        (s.UUID, Kind.UUID),
        (s.INET, Kind.INET),
        (s.CIDR, Kind.INET),
        (s.BYTEA, Kind.BYTEA),
        (s.BOOL, Kind.OTHER),
        (701, Kind.OTHER),
    ],
)
def test_column_kinds(oid: int, kind: Kind) -> None:
    ctype = column_type(oid)
    assert (ctype.kind, ctype.array) == (kind, False)


def test_array_and_domain_types() -> None:
    assert column_type(s.TEXT_ARRAY) == ColumnType(s.TEXT, Kind.TEXT, -1, array=True)
    assert column_type(s.VARCHAR_ARRAY, s.varchar_typmod(5)).element().max_chars == 5
    assert column_type(50000, base=s.VARCHAR).kind is Kind.TEXT
    assert column_type(50000, base=s.TEXT_ARRAY).array
    assert column_type(50000).kind is Kind.OTHER


@pytest.mark.parametrize(
    ("oid", "typmod", "max_chars", "fixed"),
    [
        (s.VARCHAR, s.varchar_typmod(10), 10, False),
        (s.BPCHAR, s.varchar_typmod(3), 3, True),
        (s.VARCHAR, -1, None, False),
        (s.BPCHAR, -1, None, False),
        (s.NAME, -1, 63, False),
        (s.TEXT, -1, None, False),
    ],
)
def test_length_limits(oid: int, typmod: int, max_chars: int | None, fixed: bool) -> None:
    ctype = ct(oid, typmod)
    assert (ctype.max_chars, ctype.fixed_chars) == (max_chars, fixed)


# --- NULL strategy and types that cannot hold PII ---------------------------------------------

ALL_TYPES = [
    s.TEXT, s.VARCHAR, s.JSON, s.JSONB, s.INT2, s.INT4, s.INT8, s.NUMERIC, s.DATE, s.TIMESTAMP,
    s.TIMESTAMPTZ, s.UUID, s.INET, s.CIDR, s.BYTEA, s.BOOL, s.TEXT_ARRAY, s.INT4_ARRAY,
]  # fmt: skip


@pytest.mark.parametrize("oid", ALL_TYPES)
@pytest.mark.parametrize("binary", FORMATS)
def test_null_strategy_is_sql_null_for_every_type(oid: int, binary: bool) -> None:
    assert whole(b"anything", Entity.EMAIL, Strategy.NULL, ct(oid), binary) is None


@pytest.mark.parametrize("oid", [s.BOOL, 701, 1186, 600])  # bool, float8, interval, point
@pytest.mark.parametrize("strategy", NON_NULL)
@pytest.mark.parametrize("binary", FORMATS)
def test_types_that_cannot_be_rewritten_become_null(
    oid: int, strategy: Strategy, binary: bool
) -> None:
    assert whole(b"t", Entity.SECRET, strategy, ct(oid), binary) is None


# --- text -------------------------------------------------------------------------------------

TEXT_SAMPLES = [
    (Entity.EMAIL, "alice@example.com"),
    (Entity.PHONE, "+44 20 7946 0958"),
    (Entity.CARD, "4111 1111 1111 1111"),
    (Entity.SSN, "536-80-4398"),
    (Entity.IBAN, "DE89370400440532013000"),
    (Entity.IP, "192.168.1.10"),
    (Entity.DOB, "1985-07-14"),
    (Entity.PERSON_NAME, "Ada Lovelace"),
    (Entity.ADDRESS, "10 Downing Street"),
    (Entity.NATIONAL_ID, "AB123456C"),
    (Entity.SECRET, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (Entity.PASSWORD, "hunter2"),
]


@pytest.mark.parametrize(("entity", "text"), TEXT_SAMPLES)
@pytest.mark.parametrize("strategy", NON_NULL)
@pytest.mark.parametrize("binary", FORMATS)
@pytest.mark.parametrize("oid", [s.TEXT, s.VARCHAR, s.UNKNOWN])
def test_text_is_masked_as_the_strategy_says(
    entity: Entity, text: str, strategy: Strategy, binary: bool, oid: int
) -> None:
    """Text and varchar have the same binary and text representation: UTF-8."""
    result = whole(text.encode(), entity, strategy, ct(oid), binary)
    assert result is not None
    assert result.decode("utf-8") == mask_text(entity, strategy, text, Pseudonymizer(s.KEY))
    if strategy is not Strategy.PARTIAL:
        assert text.encode() not in result


@pytest.mark.parametrize("n", [1, 2, 5, 8, 12, 30])
@pytest.mark.parametrize(("entity", "text"), TEXT_SAMPLES)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_varchar_n_limit_holds(n: int, entity: Entity, text: str, strategy: Strategy) -> None:
    text = text[:n]  # a value the column can hold
    result = whole(text.encode(), entity, strategy, ct(s.VARCHAR, s.varchar_typmod(n)), False)
    assert result is not None
    assert len(result.decode("utf-8")) <= n


@pytest.mark.parametrize("n", [1, 4, 11, 20])
@pytest.mark.parametrize(("entity", "text"), TEXT_SAMPLES)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_char_n_is_padded_to_exactly_n(
    n: int, entity: Entity, text: str, strategy: Strategy
) -> None:
    value = text[:n].ljust(n).encode()
    result = whole(value, entity, strategy, ct(s.BPCHAR, s.varchar_typmod(n)), True)
    assert result is not None
    assert len(result.decode("utf-8")) == n


def test_a_too_long_mask_becomes_stars() -> None:
    result = whole(b"a@b.io", Entity.EMAIL, Strategy.PSEUDONYM, ct(s.VARCHAR, 10), False)
    assert result == b"******"


@SETTINGS
@given(
    text=st.text(max_size=40),
    entity=st.sampled_from(list(Entity)),
    strategy=st.sampled_from(NON_NULL),
    n=st.integers(1, 40),
    binary=st.booleans(),
    fixed=st.booleans(),
)
def test_any_text_masks_to_valid_utf8_within_the_limit(
    text: str, entity: Entity, strategy: Strategy, n: int, binary: bool, fixed: bool
) -> None:
    oid = s.BPCHAR if fixed else s.VARCHAR
    value = text[:n]
    if fixed:
        value = value.ljust(n)
    result = whole(value.encode(), entity, strategy, ct(oid, s.varchar_typmod(n)), binary)
    assert result is not None
    decoded = result.decode("utf-8")  # never invalid UTF-8
    assert len(decoded) <= n
    if fixed:
        assert len(decoded) == n


@SETTINGS
@given(st.binary(max_size=30), st.sampled_from(list(Entity)), st.sampled_from(NON_NULL))
def test_invalid_utf8_input_still_gives_valid_utf8(
    value: bytes, entity: Entity, strategy: Strategy
) -> None:
    result = whole(value, entity, strategy, ct(s.TEXT), False)
    assert result is not None
    result.decode("utf-8")


# --- json and jsonb ------------------------------------------------------------------------------

JSON_VALUES = [b'"alice@example.com"', b'{"email": "a@b.io", "n": [1, 2]}', b"12345", b"null"]


@pytest.mark.parametrize("value", JSON_VALUES)
@pytest.mark.parametrize("strategy", NON_NULL)
@pytest.mark.parametrize("entity", [Entity.EMAIL, Entity.SECRET, Entity.PHONE])
def test_json_whole_is_a_json_string(value: bytes, strategy: Strategy, entity: Entity) -> None:
    for binary in (False, True):
        result = whole(value, entity, strategy, ct(s.JSON), binary)
        assert result is not None
        assert isinstance(json.loads(result), str)


@pytest.mark.parametrize("value", JSON_VALUES)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_jsonb_whole_is_valid_in_both_formats(value: bytes, strategy: Strategy) -> None:
    text = whole(value, Entity.EMAIL, strategy, ct(s.JSONB), False)
    assert text is not None
    assert isinstance(json.loads(text), str)
    binary = whole(b"\x01" + value, Entity.EMAIL, strategy, ct(s.JSONB), True)
    assert binary is not None
    assert s.decode_jsonb(binary) == json.loads(text)


def test_json_whole_redacts_to_the_label() -> None:
    assert json.loads(whole(b'{"a": 1}', Entity.SECRET, Strategy.REDACT, ct(s.JSON), False)) == (
        "[secret]"
    )


@pytest.mark.parametrize(
    ("entity", "value", "want"),
    [
        (Entity.EMAIL, "alice@example.com", "****@example.com"),
        (Entity.PHONE, "+1 212 555 0143", "+* *** *** **43"),
        (Entity.CARD, "4111111111111111", "************1111"),
    ],
)
def test_json_whole_partial_masks_the_string_content(entity: Entity, value: str, want: str) -> None:
    result = whole(json.dumps(value).encode(), entity, Strategy.PARTIAL, ct(s.JSON), False)
    assert result is not None
    assert json.loads(result) == want


def test_json_whole_pseudonym_matches_the_text_column_pseudonym() -> None:
    text = whole(b"alice@example.com", Entity.EMAIL, Strategy.PSEUDONYM, ct(s.TEXT), False)
    js = whole(b'"alice@example.com"', Entity.EMAIL, Strategy.PSEUDONYM, ct(s.JSON), False)
    assert text is not None
    assert js is not None
    assert json.loads(js) == text.decode()


# --- integers -------------------------------------------------------------------------------------

INT_LIMITS = {s.INT2: 2**15 - 1, s.INT4: 2**31 - 1, s.INT8: 2**63 - 1}
INT_ENTITIES = [Entity.PHONE, Entity.CARD, Entity.SSN, Entity.NATIONAL_ID, Entity.IBAN]


def _int_values(oid: int) -> list[int]:
    top = INT_LIMITS[oid]
    return [0, 1, -1, 42, 1234, 12345, -12345, top, -top - 1, top // 3]


def _check_int(result: bytes | None, oid: int, binary: bool) -> int:
    assert result is not None
    if binary:
        number = s.decode_int(result, oid)
    else:
        raw = result.decode("ascii")
        assert raw == raw.strip(), raw
        assert raw.lstrip("-").isdigit(), raw
        number = int(raw)
    assert -INT_LIMITS[oid] - 1 <= number <= INT_LIMITS[oid]
    return number


@pytest.mark.parametrize("oid", [s.INT2, s.INT4, s.INT8])
@pytest.mark.parametrize("strategy", NON_NULL)
@pytest.mark.parametrize("entity", INT_ENTITIES)
def test_integers_stay_integers_of_their_size(oid: int, strategy: Strategy, entity: Entity) -> None:
    for value in _int_values(oid):
        text = whole(str(value).encode(), entity, strategy, ct(oid), False)
        binary = whole(s.encode_int(value, oid), entity, strategy, ct(oid), True)
        assert _check_int(text, oid, False) == _check_int(binary, oid, True), value


@pytest.mark.parametrize("oid", [s.INT2, s.INT4, s.INT8])
def test_integer_strategies(oid: int) -> None:
    def mask(value: int, strategy: Strategy) -> int:
        result = whole(s.encode_int(value, oid), Entity.CARD, strategy, ct(oid), True)
        return _check_int(result, oid, True)

    assert mask(12345, Strategy.REDACT) == 0
    assert mask(12345, Strategy.PARTIAL) == 2345  # the last four digits
    assert mask(-12345, Strategy.PARTIAL) == 2345
    assert mask(1234, Strategy.PARTIAL) == 0  # four digits or fewer: nothing kept
    assert mask(12345, Strategy.PSEUDONYM) == mask(12345, Strategy.PSEUDONYM)
    assert mask(12345, Strategy.PSEUDONYM) != 12345


@SETTINGS
@given(
    oid=st.sampled_from([s.INT2, s.INT4, s.INT8]),
    data=st.data(),
    strategy=st.sampled_from(NON_NULL),
    entity=st.sampled_from(INT_ENTITIES),
)
def test_any_integer_masks_to_an_integer_of_its_size(
    oid: int, data: st.DataObject, strategy: Strategy, entity: Entity
) -> None:
    value = data.draw(st.integers(-INT_LIMITS[oid] - 1, INT_LIMITS[oid]))
    text = whole(str(value).encode(), entity, strategy, ct(oid), False)
    binary = whole(s.encode_int(value, oid), entity, strategy, ct(oid), True)
    assert _check_int(text, oid, False) == _check_int(binary, oid, True)


@pytest.mark.parametrize("value", [b"abc", b"", b"1.5"])
def test_an_unparsable_integer_becomes_null(value: bytes) -> None:
    assert whole(value, Entity.CARD, Strategy.PARTIAL, ct(s.INT8), False) is None


# --- numeric --------------------------------------------------------------------------------------

NUMERIC_VALUES = [
    "4111111111111111",
    "-12.50",
    "0.5",
    "0",
    "12340000",
    "123456789012345678901234567890",
    "99999.9999",
    "0.0001",
    "10000",
]


def _check_numeric_text(result: bytes | None) -> Decimal:
    assert result is not None
    raw = result.decode("ascii")
    assert "E" not in raw.upper(), f"PostgreSQL's numeric input takes no exponent form: {raw}"
    return Decimal(raw)


@pytest.mark.parametrize(
    ("value", "strategy"),
    [
        (value, strategy)
        for value in NUMERIC_VALUES
        for strategy in NON_NULL
        # the pseudonym of 0: see test_numeric_zero_pseudonym_does_not_depend_on_the_format
        if not (value == "0" and strategy is Strategy.PSEUDONYM)
    ],
)
def test_numeric_is_valid_in_both_formats_and_they_agree(value: str, strategy: Strategy) -> None:
    number = Decimal(value)
    text = _check_numeric_text(whole(value.encode(), Entity.CARD, strategy, ct(s.NUMERIC), False))
    binary = whole(s.encode_numeric(number), Entity.CARD, strategy, ct(s.NUMERIC), True)
    assert binary is not None
    decoded = s.decode_numeric(binary)
    assert decoded == text
    assert decoded == decoded.to_integral_value(), "only the integer part is kept"
    assert decoded >= 0


def test_numeric_strategies() -> None:
    def mask(value: str, strategy: Strategy) -> Decimal:
        result = whole(s.encode_numeric(Decimal(value)), Entity.CARD, strategy, ct(s.NUMERIC), True)
        assert result is not None
        return s.decode_numeric(result)

    assert mask("4111111111111111", Strategy.REDACT) == 0
    assert mask("4111111111111111", Strategy.PARTIAL) == 1111
    assert mask("4111111111111234.99", Strategy.PARTIAL) == 1234
    pseudonym = mask("4111111111111111", Strategy.PSEUDONYM)
    assert len(str(pseudonym)) == 16
    assert pseudonym != Decimal("4111111111111111")


@pytest.mark.parametrize("strategy", NON_NULL)
def test_numeric_nan_is_masked_to_a_valid_number(strategy: Strategy) -> None:
    result = whole(s.encode_numeric(Decimal("NaN")), Entity.CARD, strategy, ct(s.NUMERIC), True)
    assert result is not None
    assert not s.decode_numeric(result).is_nan()
    assert _check_numeric_text(whole(b"NaN", Entity.CARD, strategy, ct(s.NUMERIC), False)) == 0


@pytest.mark.xfail(
    strict=True,
    reason="a binary numeric with no digits (0 or NaN) is read as integer part '0000' but its text "
    "form as '0': the pseudonym of 0 is a 4-digit number from binary and a 1-digit one from text",
)
@pytest.mark.parametrize("value", ["0", "NaN"])
def test_numeric_zero_pseudonym_does_not_depend_on_the_format(value: str) -> None:
    binary = whole(s.encode_numeric(Decimal(value)), Entity.CARD, Strategy.PSEUDONYM,
                   ct(s.NUMERIC), True)  # fmt: skip
    text = whole(value.encode(), Entity.CARD, Strategy.PSEUDONYM, ct(s.NUMERIC), False)
    assert binary is not None
    assert s.decode_numeric(binary) == _check_numeric_text(text)


@SETTINGS
@given(
    value=st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20
    ),
    strategy=st.sampled_from(NON_NULL),
)
def test_any_numeric_masks_to_a_valid_binary_numeric(value: Decimal, strategy: Strategy) -> None:
    binary = whole(s.encode_numeric(value), Entity.CARD, strategy, ct(s.NUMERIC), True)
    text = whole(format(value, "f").encode(), Entity.CARD, strategy, ct(s.NUMERIC), False)
    assert binary is not None
    assert s.decode_numeric(binary) == _check_numeric_text(text)


@SETTINGS
@given(st.integers(0, 10**40))
def test_numeric_binary_encoding_of_integers(value: int) -> None:
    assert _numeric_binary(Decimal(value)) == s.encode_numeric(Decimal(value))


@pytest.mark.xfail(
    strict=True,
    reason="values._numeric_binary loses leading zeros of the fraction when the value has fewer "
    "digits than its scale: Decimal('0.0001') is encoded as 0.1000 (latent: whole() only "
    "encodes integers today)",
)
@pytest.mark.parametrize("value", ["0.0001", "0.05", "-0.007"])
def test_numeric_binary_encoding_of_small_fractions(value: str) -> None:
    assert s.decode_numeric(_numeric_binary(Decimal(value))) == Decimal(value)


# --- dates and timestamps ---------------------------------------------------------------------

BIRTH = datetime.date(1985, 7, 14)
REDACTED_DATE = datetime.date(1900, 1, 1)


def _check_date_text(result: bytes | None) -> datetime.date:
    assert result is not None
    return datetime.date.fromisoformat(result.decode("ascii"))


@pytest.mark.parametrize("binary", FORMATS)
def test_date_strategies(binary: bool) -> None:
    def mask(strategy: Strategy) -> datetime.date:
        value = s.encode_date(BIRTH) if binary else BIRTH.isoformat().encode()
        result = whole(value, Entity.DOB, strategy, ct(s.DATE), binary)
        return s.decode_date(result) if binary and result else _check_date_text(result)

    assert mask(Strategy.REDACT) == REDACTED_DATE
    assert mask(Strategy.PARTIAL) == datetime.date(1985, 1, 1)
    pseudonym = mask(Strategy.PSEUDONYM)
    assert pseudonym == mask(Strategy.PSEUDONYM) != BIRTH
    assert REDACTED_DATE <= pseudonym < REDACTED_DATE + datetime.timedelta(days=40000)


@SETTINGS
@given(st.dates(min_value=datetime.date(1, 1, 1)), st.sampled_from(NON_NULL))
def test_any_date_masks_to_a_date_and_the_formats_agree(
    value: datetime.date, strategy: Strategy
) -> None:
    binary = whole(s.encode_date(value), Entity.DOB, strategy, ct(s.DATE), True)
    text = whole(value.isoformat().encode(), Entity.DOB, strategy, ct(s.DATE), False)
    assert binary is not None
    assert s.decode_date(binary) == _check_date_text(text)


@pytest.mark.parametrize(
    ("value", "binary"),
    [
        (b"infinity", False),
        (b"-infinity", False),
        (b"\x7f\xff\xff\xff", True),  # +infinity
        (b"\x80\x00\x00\x00", True),  # -infinity
        (b"not a date", False),
        (b"\x00", True),
    ],
)
def test_dates_that_cannot_be_rewritten_become_null(value: bytes, binary: bool) -> None:
    assert whole(value, Entity.DOB, Strategy.PARTIAL, ct(s.DATE), binary) is None


@pytest.mark.parametrize(
    ("value", "suffix"),
    [
        (b"1985-07-14 10:11:12", b""),
        (b"1985-07-14 10:11:12.123456", b""),
        (b"1985-07-14 10:11:12+02", b"+02"),
        (b"1985-07-14 10:11:12.5-03:30", b"-03:30"),
        (b"1985-07-14 23:59:59+05:45", b"+05:45"),
    ],
)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_timestamp_text_keeps_the_offset_and_drops_the_time(
    value: bytes, suffix: bytes, strategy: Strategy
) -> None:
    oid = s.TIMESTAMPTZ if suffix else s.TIMESTAMP
    result = whole(value, Entity.DOB, strategy, ct(oid), False)
    assert result is not None
    assert result.endswith(b" 00:00:00" + suffix)
    parsed = datetime.datetime.fromisoformat(result.decode("ascii"))
    if strategy is Strategy.PARTIAL:
        assert parsed.date() == datetime.date(1985, 1, 1)


@SETTINGS
@given(
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
    st.sampled_from(NON_NULL),
    st.sampled_from([s.TIMESTAMP, s.TIMESTAMPTZ]),
)
def test_any_binary_timestamp_masks_to_midnight_of_the_masked_date(
    value: datetime.datetime, strategy: Strategy, oid: int
) -> None:
    binary = whole(s.encode_timestamp(value), Entity.DOB, strategy, ct(oid), True)
    assert binary is not None
    masked = s.decode_timestamp(binary)
    assert masked.time() == datetime.time(0)
    text = whole(value.isoformat(" ").encode(), Entity.DOB, strategy, ct(oid), False)
    assert text is not None
    assert datetime.datetime.fromisoformat(text.decode()).date() == masked.date()


def test_binary_timestamp_infinity_becomes_null() -> None:
    infinity = (2**63 - 1).to_bytes(8, "big")
    assert whole(infinity, Entity.DOB, Strategy.PARTIAL, ct(s.TIMESTAMP), True) is None


# --- uuid ---------------------------------------------------------------------------------------

SOME_UUID = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")


@pytest.mark.parametrize("strategy", NON_NULL)
def test_uuid_in_both_formats(strategy: Strategy) -> None:
    text = whole(str(SOME_UUID).encode(), Entity.PERSON_NAME, strategy, ct(s.UUID), False)
    binary = whole(SOME_UUID.bytes, Entity.PERSON_NAME, strategy, ct(s.UUID), True)
    assert text is not None
    assert binary is not None
    parsed = uuid.UUID(text.decode("ascii"))
    assert s.decode_uuid(binary) == parsed
    if strategy is Strategy.PSEUDONYM:
        assert parsed.version == 4
        assert parsed != SOME_UUID
    else:
        assert parsed == uuid.UUID(int=0)


def test_uuid_pseudonyms_are_deterministic_and_distinct() -> None:
    other = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    one = whole(SOME_UUID.bytes, Entity.PERSON_NAME, Strategy.PSEUDONYM, ct(s.UUID), True)
    assert one == whole(SOME_UUID.bytes, Entity.PERSON_NAME, Strategy.PSEUDONYM, ct(s.UUID), True)
    assert one != whole(other.bytes, Entity.PERSON_NAME, Strategy.PSEUDONYM, ct(s.UUID), True)


# --- inet and cidr --------------------------------------------------------------------------------

INET_VALUES = ["192.168.1.10", "192.168.1.10/24", "8.8.8.8", "2001:db8:abcd:12::1", "::1"]
CIDR_VALUES = ["192.168.1.0/24", "10.0.0.0/8", "2001:db8:abcd:1200::/56", "192.168.1.10/32"]


def _inet_text(result: bytes | None, cidr: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    assert result is not None
    text = result.decode("ascii")
    if cidr:
        return ipaddress.ip_network(text, strict=True)  # cidr: no host bits
    return ipaddress.ip_interface(text).network


@pytest.mark.parametrize("value", INET_VALUES)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_inet_is_valid_in_both_formats(value: str, strategy: Strategy) -> None:
    text = whole(value.encode(), Entity.IP, strategy, ct(s.INET), False)
    binary = whole(s.encode_inet(value), Entity.IP, strategy, ct(s.INET), True)
    assert binary is not None
    decoded = s.decode_inet(binary, cidr=False)
    interface = ipaddress.ip_interface(text.decode("ascii") if text else "")
    assert decoded.address == interface.ip
    assert decoded.bits == interface.network.prefixlen
    original = ipaddress.ip_interface(value)
    assert decoded.address.version == original.version
    if strategy is Strategy.REDACT:
        assert decoded.address.is_unspecified
    elif strategy is Strategy.PARTIAL:
        keep = 16 if original.version == 4 else 48
        assert decoded.address in ipaddress.ip_network(f"{original.ip}/{keep}", strict=False)
        assert (
            decoded.address != original.ip
            or original.ip
            == ipaddress.ip_network(f"{original.ip}/{keep}", strict=False).network_address
        )
    else:
        net = "10.0.0.0/8" if original.version == 4 else "fd00::/8"
        assert decoded.address in ipaddress.ip_network(net)


@pytest.mark.parametrize("value", CIDR_VALUES)
@pytest.mark.parametrize("strategy", NON_NULL)
def test_cidr_stays_a_valid_cidr_in_both_formats(value: str, strategy: Strategy) -> None:
    text = _inet_text(whole(value.encode(), Entity.IP, strategy, ct(s.CIDR), False), cidr=True)
    binary = whole(s.encode_inet(value, cidr=True), Entity.IP, strategy, ct(s.CIDR), True)
    assert binary is not None
    decoded = s.decode_inet(binary, cidr=True)
    if strategy is Strategy.PSEUDONYM and value.endswith("/32"):
        return  # see test_cidr_host_route_pseudonym_does_not_depend_on_the_format
    assert (decoded.address, decoded.bits) == (text.network_address, text.prefixlen)


@pytest.mark.xfail(
    strict=True,
    reason="PostgreSQL writes a cidr host route as '192.168.1.10/32' in text; from binary dbward "
    "rebuilds '192.168.1.10' (no /32), and the pseudonym is taken over that text: the two formats "
    "give different addresses",
)
def test_cidr_host_route_pseudonym_does_not_depend_on_the_format() -> None:
    value = "192.168.1.10/32"
    text = _inet_text(whole(value.encode(), Entity.IP, Strategy.PSEUDONYM, ct(s.CIDR), False), True)
    binary = whole(s.encode_inet(value, cidr=True), Entity.IP, Strategy.PSEUDONYM, ct(s.CIDR), True)
    assert binary is not None
    assert s.decode_inet(binary, cidr=True).address == text.network_address


@pytest.mark.parametrize("value", [b"", b"\x02", b"\x02\x20\x00"])
def test_an_unparsable_binary_inet_becomes_null(value: bytes) -> None:
    assert whole(value, Entity.IP, Strategy.PARTIAL, ct(s.INET), True) is None


# --- bytea ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", NON_NULL)
def test_bytea_in_both_formats(strategy: Strategy) -> None:
    raw = bytes.fromhex("deadbeef")
    text = whole(b"\\x" + raw.hex().encode(), Entity.SECRET, strategy, ct(s.BYTEA), False)
    binary = whole(raw, Entity.SECRET, strategy, ct(s.BYTEA), True)
    assert text is not None
    assert binary is not None
    assert text.startswith(b"\\x")
    decoded = bytes.fromhex(text[2:].decode("ascii"))  # the hex format: even, valid hex
    if strategy is Strategy.PSEUDONYM:
        assert len(decoded) == 16
        assert len(binary) == 16
    else:
        assert decoded == b""
        assert binary == b""


@pytest.mark.xfail(
    strict=True,
    reason="the bytea pseudonym hashes the wire bytes: the text form '\\\\xdeadbeef' and the "
    "binary form of the same value give different pseudonyms",
)
def test_bytea_pseudonym_does_not_depend_on_the_format() -> None:
    raw = bytes.fromhex("deadbeef")
    text = whole(b"\\x" + raw.hex().encode(), Entity.SECRET, Strategy.PSEUDONYM, ct(s.BYTEA), False)
    binary = whole(raw, Entity.SECRET, Strategy.PSEUDONYM, ct(s.BYTEA), True)
    assert text is not None
    assert binary is not None
    assert bytes.fromhex(text[2:].decode()) == binary


# --- pseudonyms agree across formats --------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "entity", "text", "binary"),
    [
        (s.INT8, Entity.PHONE, b"2125550143", s.encode_int(2125550143, s.INT8)),
        (s.INT4, Entity.SSN, b"536804398", s.encode_int(536804398, s.INT4)),
        (s.NUMERIC, Entity.CARD, b"4111111111111111", s.encode_numeric(Decimal(4111111111111111))),
        (s.DATE, Entity.DOB, b"1985-07-14", s.encode_date(BIRTH)),
        (s.UUID, Entity.PERSON_NAME, str(SOME_UUID).encode(), SOME_UUID.bytes),
        (s.INET, Entity.IP, b"192.168.1.10", s.encode_inet("192.168.1.10")),
        (s.TEXT, Entity.EMAIL, b"alice@example.com", b"alice@example.com"),
    ],
)
def test_a_pseudonym_is_the_same_in_text_and_binary_results(
    oid: int, entity: Entity, text: bytes, binary: bytes
) -> None:
    """Joins between a text-format client and a binary-format client keep working."""
    from_text = whole(text, entity, Strategy.PSEUDONYM, ct(oid), False)
    from_binary = whole(binary, entity, Strategy.PSEUDONYM, ct(oid), True)
    assert from_text is not None
    assert from_binary is not None
    kind = ct(oid).kind
    if kind is Kind.INT:
        assert int(from_text) == s.decode_int(from_binary, oid)
    elif kind is Kind.NUMERIC:
        assert Decimal(from_text.decode()) == s.decode_numeric(from_binary)
    elif kind is Kind.DATE:
        assert _check_date_text(from_text) == s.decode_date(from_binary)
    elif kind is Kind.UUID:
        assert uuid.UUID(from_text.decode()) == s.decode_uuid(from_binary)
    elif kind is Kind.INET:
        assert ipaddress.ip_address(from_text.decode()) == s.decode_inet(from_binary, False).address
    else:
        assert from_text == from_binary


def test_a_pseudonym_depends_on_the_key() -> None:
    other = ValueMasker(M.scanner, Pseudonymizer(s.OTHER_KEY), M.strategies)
    mine = whole(b"alice@example.com", Entity.EMAIL, Strategy.PSEUDONYM, ct(s.TEXT), False)
    theirs = other.whole(b"alice@example.com", Entity.EMAIL, Strategy.PSEUDONYM, ct(s.TEXT), False)
    assert mine != theirs


# --- arrays ---------------------------------------------------------------------------------------


def test_text_array_in_text_format() -> None:
    value = b'{alice@example.com,NULL,"bob smith@x.org",carol@example.org}'
    result = whole(value, Entity.EMAIL, Strategy.PARTIAL, ct(s.TEXT_ARRAY), False)
    assert result is not None
    assert s.parse_text_array(result) == [
        b"****@example.com",
        None,
        b"****@x.org",
        b"****@example.org",
    ]


def test_text_array_elements_that_need_quotes_are_quoted() -> None:
    phones = b'{"+44 20 7946 0958","(212) 555-0143"}'
    result = whole(phones, Entity.PHONE, Strategy.PARTIAL, ct(s.TEXT_ARRAY), False)
    assert result is not None
    assert s.parse_text_array(result) == [b"+** ** **** **58", b"(***) ***-**43"]
    names = whole(b"{Ada Lovelace,Alan Turing}", Entity.PERSON_NAME, Strategy.PSEUDONYM,
                  ct(s.TEXT_ARRAY), False)  # fmt: skip
    assert names is not None
    parsed = s.parse_text_array(names)
    assert len(parsed) == 2
    assert all(p.startswith(b"Person ") for p in parsed)


def test_multidimensional_text_array_keeps_its_shape() -> None:
    value = b"[0:1][1:2]={{a@b.io,c@d.io},{e@f.io,NULL}}"
    result = whole(value, Entity.EMAIL, Strategy.REDACT, ct(s.TEXT_ARRAY), False)
    assert result is not None
    assert result.startswith(b"[0:1][1:2]=")
    assert s.parse_text_array(result) == [[b"[email]", b"[email]"], [b"[email]", None]]


def test_text_array_in_binary_format() -> None:
    elements = [b"alice@example.com", None, b"bob@example.org"]
    value = s.encode_binary_array(elements, s.TEXT)
    result = whole(value, Entity.EMAIL, Strategy.PARTIAL, ct(s.TEXT_ARRAY), True)
    assert result is not None
    decoded = s.decode_binary_array(result)
    assert decoded.dims == [3]
    assert decoded.element_oid == s.TEXT
    assert decoded.has_null_flag == 1
    assert decoded.elements == [b"****@example.com", None, b"****@example.org"]


def test_int_array_in_binary_format() -> None:
    value = s.encode_binary_array(
        [s.encode_int(12345, s.INT4), None, s.encode_int(-7, s.INT4)], s.INT4
    )
    result = whole(value, Entity.CARD, Strategy.PARTIAL, ct(s.INT4_ARRAY), True)
    assert result is not None
    decoded = s.decode_binary_array(result)
    assert [None if e is None else s.decode_int(e, s.INT4) for e in decoded.elements] == [
        2345,
        None,
        0,
    ]


def test_jsonb_array_in_binary_format_keeps_each_version_byte() -> None:
    value = s.encode_binary_array([b'\x01"a@b.io"', b'\x01{"x": 1}'], s.JSONB)
    result = whole(value, Entity.EMAIL, Strategy.REDACT, ct(s.JSONB_ARRAY), True)
    assert result is not None
    assert [s.decode_jsonb(e) for e in s.decode_binary_array(result).elements if e] == [
        "[email]",
        "[email]",
    ]


def test_a_varchar_n_array_limits_each_element() -> None:
    value = b"{alice@example.com,b@c.io}"
    ctype = ct(s.VARCHAR_ARRAY, s.varchar_typmod(8))
    result = whole(value, Entity.EMAIL, Strategy.PSEUDONYM, ctype, False)
    assert result is not None
    assert all(len(e) <= 8 for e in s.parse_text_array(result) if e is not None)


# \v and \f: see test_array_elements_with_vertical_tab_or_form_feed_are_quoted.
ELEMENT_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x0b\x0c"), max_size=15)
ELEMENTS = st.lists(st.one_of(st.none(), ELEMENT_TEXT), max_size=8)


@SETTINGS
@given(ELEMENTS, st.sampled_from(NON_NULL), st.sampled_from(list(Entity)))
def test_any_text_array_masks_to_an_array_of_the_same_shape(
    elements: list[str | None], strategy: Strategy, entity: Entity
) -> None:
    raw = [None if e is None else e.encode() for e in elements]
    p = Pseudonymizer(s.KEY)
    want = [None if e is None else mask_text(entity, strategy, e, p).encode() for e in elements]
    # An array where no element becomes a new bytes object counts as unchanged: see
    # test_an_array_with_nothing_new_stays_an_array.
    assume(any(w is not None and len(w) > 1 for w in want))
    text = whole(s.text_array(raw), entity, strategy, ct(s.TEXT_ARRAY), False)
    assert text is not None
    assert s.parse_text_array(text) == want
    binary = whole(s.encode_binary_array(raw, s.TEXT), entity, strategy, ct(s.TEXT_ARRAY), True)
    assert binary is not None
    decoded = s.decode_binary_array(binary)
    assert decoded.elements == want
    assert decoded.element_oid == s.TEXT


@pytest.mark.parametrize(
    ("value", "binary", "want"),
    [
        (b"{}", False, b"{}"),
        (b"{NULL,NULL}", False, b"{NULL,NULL}"),
        (s.encode_binary_array([], s.TEXT), True, s.encode_binary_array([], s.TEXT)),
        (s.encode_binary_array([None], s.TEXT), True, s.encode_binary_array([None], s.TEXT)),
        (b'{""}', False, b'{""}'),
        (b"{5}", False, b"{5}"),
    ],
)
def test_an_array_with_nothing_new_stays_an_array(value: bytes, binary: bool, want: bytes) -> None:
    result = whole(value, Entity.PHONE, Strategy.PARTIAL, ct(s.TEXT_ARRAY), binary)
    assert result == want


@pytest.mark.xfail(
    strict=True,
    reason="arrays._quote quotes space, \\t, \\n and \\r but not \\v and \\f, which PostgreSQL's "
    "array parser also trims from unquoted elements: a masked element ending in \\f loses it",
)
def test_array_elements_with_vertical_tab_or_form_feed_are_quoted() -> None:
    value = s.text_array([b"ab\x0c", b"\x0bcd"])
    result = whole(value, Entity.PHONE, Strategy.PARTIAL, ct(s.TEXT_ARRAY), False)
    assert result is not None
    assert s.parse_text_array(result) == [b"ab\x0c", b"\x0bcd"]


# --- the fast path for whole text values (RowMasker uses whole_fn) ------------------------------


@SETTINGS
@given(
    st.text(st.characters(max_codepoint=127), max_size=30),
    st.sampled_from(list(Entity)),
    st.sampled_from(list(Strategy)),
    st.booleans(),
)
def test_whole_fn_gives_the_same_results_as_whole(
    text: str, entity: Entity, strategy: Strategy, binary: bool
) -> None:
    value = text.encode()
    fast = M.whole_fn(entity, strategy, ct(s.TEXT), binary)
    assert fast(value) == whole(value, entity, strategy, ct(s.TEXT), binary)


@pytest.mark.xfail(
    strict=True,
    reason="values._keep_last_bytes counts only ASCII letters and digits as kept characters, "
    "strategies._keep_last counts any Unicode alnum: with non-ASCII digits at the end the fast "
    "path (rows) and whole() mask different characters",
)
@pytest.mark.parametrize(
    ("entity", "text"), [(Entity.PHONE, "+44 20 7946 ٠٩٥٨"), (Entity.CARD, "4111 1111 1111 ١١١١")]
)
def test_whole_fn_agrees_with_whole_on_non_ascii_digits(entity: Entity, text: str) -> None:
    fast = M.whole_fn(entity, Strategy.PARTIAL, ct(s.TEXT), False)
    assert fast(text.encode()) == whole(text.encode(), entity, Strategy.PARTIAL, ct(s.TEXT), False)


@pytest.mark.xfail(
    strict=True,
    reason="partial masking replaces only ASCII letters and digits with '*': a card, phone or "
    "SSN written with full-width (or other non-ASCII) digits is left entirely visible",
)
@pytest.mark.parametrize(
    ("entity", "text"),
    [
        (Entity.CARD, "４１１１ １１１１ １１１１ １１１１"),
        (Entity.PHONE, "０３－１２３４－５６７８"),
        (Entity.SSN, "５３６-８０-４３９８"),
    ],
)
def test_partial_hides_non_ascii_digits(entity: Entity, text: str) -> None:
    result = whole(text.encode(), entity, Strategy.PARTIAL, ct(s.TEXT), False)
    assert result is not None
    digits = [c for c in result.decode() if c.isdigit()]
    assert len(digits) <= 4
