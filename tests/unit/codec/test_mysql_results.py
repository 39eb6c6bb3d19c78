"""Column definitions, text and binary rows, binary values and COM_STMT_EXECUTE (results.py).

Layouts from the MySQL "Column Definition" (Protocol::ColumnDefinition41),
"Text Resultset Row", "Binary Protocol Resultset Row" (NULL bitmap offset 2),
"Binary Protocol Value" (MYSQL_TYPE_DATE/DATETIME/TIMESTAMP of length 0, 4, 7
or 11; TIME of 0, 8 or 12) and "COM_STMT_EXECUTE" (NULL bitmap offset 0) pages.
"""

from __future__ import annotations

import contextlib
import struct
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import BINARY_CHARSET, ColumnType
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.results import (
    ColumnDefinition,
    ExecuteParams,
    binary_date_text,
    binary_int,
    binary_row_spans,
    binary_value_end,
    decode_execute,
    encode_binary_date,
    encode_int,
    set_null,
    text_row_spans,
)

T = ColumnType
FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- column definitions -----------------------------------------------------------------------

# The MySQL docs' Binary Protocol Resultset example's column: catalog "def", no
# schema/table, name "col1", charset 8, length 6, VAR_STRING, flags 0, decimals 0x1f.
DOCS_COLUMN = bytes.fromhex("0364656600000004636f6c31000c080006000000fd00001f0000")

# `shop`.`people` AS p, column `id` AS ident: INT UNSIGNED NOT NULL PRIMARY KEY
ID_COLUMN = (
    b"\x03def"
    + b"\x04shop"
    + b"\x01p"
    + b"\x06people"
    + b"\x05ident"
    + b"\x02id"
    + b"\x0c"
    + b"\x3f\x00"  # binary collation (63)
    + b"\x0a\x00\x00\x00"  # display length 10
    + b"\x03"  # LONG
    + b"\x23\x42"  # NOT_NULL | PRI_KEY | UNSIGNED | PART_KEY | AUTO_INCREMENT
    + b"\x00"
    + b"\x00\x00"
)


def test_docs_column_definition() -> None:
    column = ColumnDefinition.decode(DOCS_COLUMN)
    assert column == ColumnDefinition("", "", "", "col1", "", 8, 6, T.VAR_STRING, 0, 0x1F, "def")
    assert column.encode() == DOCS_COLUMN
    assert not column.unsigned
    assert not column.binary


def test_column_definition_with_names_and_flags() -> None:
    column = ColumnDefinition.decode(ID_COLUMN)
    assert (column.schema, column.table, column.org_table, column.name, column.org_name) == (
        "shop",
        "p",
        "people",
        "ident",
        "id",
    )
    assert (column.charset, column.length, column.type, column.flags, column.decimals) == (
        BINARY_CHARSET,
        10,
        T.LONG,
        0x4223,
        0,
    )
    assert column.unsigned
    assert column.binary
    assert column.encode() == ID_COLUMN


def test_column_definition_at_an_offset() -> None:
    block = b"\x01\x02\x03" + ID_COLUMN + DOCS_COLUMN
    first = ColumnDefinition.decode(block, 3, 3 + len(ID_COLUMN))
    assert first.org_name == "id"
    second = ColumnDefinition.decode(block, 3 + len(ID_COLUMN))
    assert second.name == "col1"


def test_column_definition_of_field_list_has_a_default_value() -> None:
    # COM_FIELD_LIST appends the column's default value (lenenc); it is ignored
    column = ColumnDefinition.decode(DOCS_COLUMN + b"\x03abc")
    assert column.name == "col1"


def test_column_definition_utf8_names() -> None:
    column = ColumnDefinition("db", "t", "t", "prénom", "prénom", 45, 80, T.VAR_STRING)
    assert ColumnDefinition.decode(column.encode()) == column
    assert "prénom".encode() in column.encode()


def test_every_truncation_of_a_column_definition_raises() -> None:
    for full in (DOCS_COLUMN, ID_COLUMN):
        # the 2 filler bytes at the end are not required
        for cut in range(len(full) - 2):
            with pytest.raises(MysqlProtocolError):
                ColumnDefinition.decode(full[:cut])
            with pytest.raises(MysqlProtocolError):
                ColumnDefinition.decode(full + b"\x00" * 16, 0, cut)


def test_column_definition_with_a_null_name_is_malformed() -> None:
    with pytest.raises(MysqlProtocolError):
        ColumnDefinition.decode(b"\x03def\xfb" + DOCS_COLUMN[5:])


names = st.text(st.characters(exclude_categories=("Cs",)), max_size=70)


@FAST
@given(
    st.builds(
        ColumnDefinition,
        names,
        names,
        names,
        names,
        names,
        st.integers(0, 0xFFFF),
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 255),
        names,
    )
)
def test_column_definition_round_trip(column: ColumnDefinition) -> None:
    encoded = column.encode()
    assert ColumnDefinition.decode(encoded) == column
    assert ColumnDefinition.decode(b"\xff" + encoded + b"\xff", 1, 1 + len(encoded)) == column


# -- text rows --------------------------------------------------------------------------------

LONG_VALUE = b"v" * 300
TEXT_ROW = (
    b"\x011"  # "1"
    + b"\xfb"  # NULL
    + b"\x00"  # ""
    + b"\x03abc"
    + b"\xfc\x2c\x01"
    + LONG_VALUE  # 300 bytes, two-byte length
)


def test_text_row_spans() -> None:
    spans = text_row_spans(TEXT_ROW, 0, len(TEXT_ROW), 5)
    assert spans == [(0, 1, 2), (2, -1, 3), (3, 4, 4), (4, 5, 8), (8, 11, 311)]
    values = [None if v < 0 else TEXT_ROW[v:e] for _, v, e in spans]
    assert values == [b"1", None, b"", b"abc", LONG_VALUE]


def test_text_row_spans_at_an_offset() -> None:
    block = b"\x99\x99" + TEXT_ROW + b"\x05more!"
    spans = text_row_spans(block, 2, 2 + len(TEXT_ROW), 5)
    assert spans == [(2, 3, 4), (4, -1, 5), (5, 6, 6), (6, 7, 10), (10, 13, 313)]


def test_text_row_of_nulls_and_empty_row() -> None:
    assert text_row_spans(b"\xfb\xfb", 0, 2, 2) == [(0, -1, 1), (1, -1, 2)]
    assert text_row_spans(b"", 0, 0, 0) == []


def test_text_row_value_with_three_byte_length() -> None:
    value = b"z" * 70000
    row = b"\xfd\x70\x11\x01" + value
    assert text_row_spans(row, 0, len(row), 1) == [(0, 4, 70004)]


@pytest.mark.parametrize(
    ("row", "count", "message"),
    [
        (TEXT_ROW, 6, "fewer values"),
        (TEXT_ROW, 4, "more values"),
        (TEXT_ROW[:-1], 5, "runs past"),
        (b"\x05abc", 1, "runs past"),
        (b"\xff", 1, "invalid length-encoded"),
        (b"\xfc\x01", 1, "runs past"),
        (b"", 1, "fewer values"),
        (b"\x00", 0, "more values"),
    ],
)
def test_malformed_text_rows(row: bytes, count: int, message: str) -> None:
    with pytest.raises(MysqlProtocolError, match=message):
        text_row_spans(row, 0, len(row), count)


def test_text_row_end_bound_is_honoured() -> None:
    row = b"\x03abc" + b"\x03def"
    with pytest.raises(MysqlProtocolError, match="runs past"):
        text_row_spans(row, 0, 6, 2)


@FAST
@given(st.lists(st.none() | st.binary(max_size=300), max_size=8), st.binary(max_size=3))
def test_text_row_round_trip(values: list[bytes | None], around: bytes) -> None:
    row = b"".join(b"\xfb" if v is None else _lenenc(len(v)) + v for v in values)
    block = around + row + around
    start = len(around)
    spans = text_row_spans(block, start, start + len(row), len(values))
    assert [None if v < 0 else block[v:e] for _, v, e in spans] == values


def _lenenc(n: int) -> bytes:
    # spelled out here rather than taken from wire.py
    if n < 251:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    return b"\xfd" + struct.pack("<I", n)[:3]


# -- binary rows ------------------------------------------------------------------------------

# (type, the value's bytes in the row, or None for NULL)
BINARY_COLUMNS: list[tuple[int, bytes | None]] = [
    (T.TINY, b"\x85"),  # -123, or 133 unsigned
    (T.SHORT, b"\x39\x30"),  # 12345
    (T.YEAR, b"\xe8\x07"),  # 2024
    (T.LONG, b"\x15\xcd\x5b\x07"),  # 123456789
    (T.INT24, b"\x40\xe2\x01\x00"),  # 123456
    (T.FLOAT, b"\x00\x00\xc0\x3f"),  # 1.5
    (T.LONGLONG, b"\xff" * 8),  # -1, or 2^64-1 unsigned
    (T.DOUBLE, b"\x00\x00\x00\x00\x00\x00\x04\x40"),  # 2.5
    (T.VAR_STRING, None),
    (T.DATE, b"\x00"),  # 0000-00-00
    (T.DATE, b"\x04\xe8\x07\x01\x02"),  # 2024-01-02
    (T.DATETIME, b"\x07\xe8\x07\x01\x02\x03\x04\x05"),  # 2024-01-02 03:04:05
    (T.TIMESTAMP, b"\x0b\xe8\x07\x01\x02\x03\x04\x05\x40\xe2\x01\x00"),  # .123456
    (T.TIME, b"\x08\x00\x01\x00\x00\x00\x02\x03\x04"),  # 1 day 02:03:04
    (T.VAR_STRING, b"\x03abc"),
    (T.NEWDECIMAL, b"\x06-15.50"),
    (T.BLOB, b"\x00"),  # empty
    (T.NULL, None),
    (T.TIMESTAMP, None),
]
# 19 columns + 2 = 21 bits: 3 bytes. NULL columns 8, 17, 18 are bits 10, 19, 20.
BINARY_BITMAP = b"\x00\x04\x18"
BINARY_ROW = b"\x00" + BINARY_BITMAP + b"".join(v for _, v in BINARY_COLUMNS if v is not None)
LENENC_TYPES = {T.VAR_STRING, T.NEWDECIMAL, T.BLOB}


def test_binary_row_spans_every_kind_of_value() -> None:
    types = [t for t, _ in BINARY_COLUMNS]
    spans = binary_row_spans(BINARY_ROW, 0, len(BINARY_ROW), types)
    pos = 4
    for (type_, value), (field, start, end) in zip(BINARY_COLUMNS, spans, strict=True):
        assert field == pos
        if value is None:
            assert (start, end) == (-1, pos)
            continue
        if type_ in LENENC_TYPES:  # the value without its length
            assert (start, end) == (pos + 1, pos + len(value))
        else:  # fixed sizes; dates and times with their length byte
            assert (start, end) == (pos, pos + len(value))
        pos += len(value)
    assert pos == len(BINARY_ROW)


def test_binary_row_values_decode() -> None:
    types = [t for t, _ in BINARY_COLUMNS]
    spans = binary_row_spans(BINARY_ROW, 0, len(BINARY_ROW), types)
    value = [BINARY_ROW[s:e] for _, s, e in spans]
    assert binary_int(value[0], False) == -123
    assert binary_int(value[0], True) == 133
    assert binary_int(value[1], False) == 12345
    assert binary_int(value[2], True) == 2024
    assert binary_int(value[3], False) == 123456789
    assert binary_int(value[4], False) == 123456
    assert struct.unpack("<f", value[5]) == (1.5,)
    assert binary_int(value[6], False) == -1
    assert binary_int(value[6], True) == 2**64 - 1
    assert struct.unpack("<d", value[7]) == (2.5,)
    assert binary_date_text(value[9]) == "0000-00-00"
    assert binary_date_text(value[10]) == "2024-01-02"
    assert binary_date_text(value[11]) == "2024-01-02 03:04:05"
    assert binary_date_text(value[12]) == "2024-01-02 03:04:05.123456"
    assert value[14] == b"abc"
    assert value[15] == b"-15.50"
    assert value[16] == b""


def test_docs_binary_row() -> None:
    # "09 00 00 04 | 00 00 06 66 6f 6f 62 61 72": one VAR_STRING column, "foobar"
    row = bytes.fromhex("00000666 6f6f626172".replace(" ", ""))
    assert binary_row_spans(row, 0, len(row), [T.VAR_STRING]) == [(2, 3, 9)]


def test_binary_row_spans_at_an_offset() -> None:
    row = b"\x00\x00" + b"\x2a\x00\x00\x00"  # one LONG: 42
    block = b"\xee" * 5 + row + b"\xee" * 5
    assert binary_row_spans(block, 5, 5 + len(row), [T.LONG]) == [(7, 7, 11)]


def test_binary_row_null_bitmap_boundaries() -> None:
    # 6 columns + 2 = 8 bits: one byte; 7 columns: two bytes
    six = b"\x00" + b"\xfc" + b""  # all six NULL (bits 2..7)
    assert [s[1] for s in binary_row_spans(six, 0, len(six), [T.LONG] * 6)] == [-1] * 6
    seven = b"\x00" + b"\xfc\x01"
    assert [s[1] for s in binary_row_spans(seven, 0, len(seven), [T.LONG] * 7)] == [-1] * 7
    # the unused bits 0 and 1 are ignored
    one = b"\x00\x03" + b"\x01"
    assert binary_row_spans(one, 0, 3, [T.TINY]) == [(2, 2, 3)]


@pytest.mark.parametrize(
    ("row", "types", "message"),
    [
        (b"", [T.LONG], "header"),
        (b"\x01\x00\x01\x00\x00\x00", [T.LONG], "header"),  # not 0x00
        (b"\x00", [T.LONG], "header"),  # no bitmap
        (b"\x00\x00\x01\x00\x00", [T.LONG], "runs past"),  # LONG needs 4 bytes
        (b"\x00\x00", [T.DATE], "runs past"),  # no length byte
        (b"\x00\x00\x04\xe8\x07\x01", [T.DATE], "runs past"),
        (b"\x00\x00\x04abc", [T.VAR_STRING], "runs past"),
        (b"\x00\x00\xfc\x01", [T.BLOB], "runs past"),
        (b"\x00\x00\xff", [T.VAR_STRING], "invalid length-encoded"),
        (b"\x00\x00\x01", [T.TINY, T.TINY], "runs past"),
        (b"\x00\x00\x01\x02", [T.TINY], "more bytes"),
        (b"\x00\x04\x01", [T.TINY], "more bytes"),  # the column is NULL
    ],
)
def test_malformed_binary_rows(row: bytes, types: list[int], message: str) -> None:
    with pytest.raises(MysqlProtocolError, match=message):
        binary_row_spans(row, 0, len(row), types)


def test_binary_value_end() -> None:
    data = b"\x07\xe8\x07\x01\x02\x03\x04\x05" + b"\x02hi" + b"\x2a"
    assert binary_value_end(data, 0, len(data), T.DATETIME) == 8
    assert binary_value_end(data, 8, len(data), T.VARCHAR) == 11
    assert binary_value_end(data, 11, len(data), T.TINY) == 12
    assert binary_value_end(data, 12, len(data), T.NULL) == 12
    with pytest.raises(MysqlProtocolError):
        binary_value_end(data, 11, len(data), T.SHORT)


def test_set_null() -> None:
    bitmap = bytearray(3)
    set_null(bitmap, 0)
    set_null(bitmap, 8)
    set_null(bitmap, 18)
    assert bytes(bitmap) == b"\x04\x04\x10"


binary_values = st.sampled_from(sorted(BINARY_COLUMNS, key=lambda c: (c[0], c[1] or b"")))


@FAST
@given(st.lists(st.tuples(binary_values, st.booleans()), max_size=20), st.binary(max_size=3))
def test_binary_row_round_trip(
    columns: list[tuple[tuple[int, bytes | None], bool]], around: bytes
) -> None:
    types = [t for (t, _), _ in columns]
    bitmap = bytearray((len(columns) + 9) // 8)
    values = b""
    for index, ((_, value), null) in enumerate(columns):
        if null or value is None:
            set_null(bitmap, index)
        else:
            values += value
    row = b"\x00" + bytes(bitmap) + values
    block = around + row + around
    start = len(around)
    spans = binary_row_spans(block, start, start + len(row), types)
    got = b"".join(block[f:e] for f, s, e in spans if s >= 0)
    assert got == values


# -- binary integers and dates ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "unsigned", "number", "encoded"),
    [
        (1, False, -128, b"\x80"),
        (1, False, 127, b"\x7f"),
        (1, True, 255, b"\xff"),
        (2, False, -32768, b"\x00\x80"),
        (2, True, 65535, b"\xff\xff"),
        (4, False, -(2**31), b"\x00\x00\x00\x80"),
        (4, True, 2**32 - 1, b"\xff\xff\xff\xff"),
        (8, False, -(2**63), b"\x00" * 7 + b"\x80"),
        (8, True, 2**64 - 1, b"\xff" * 8),
        (8, False, 1, b"\x01" + b"\x00" * 7),
    ],
)
def test_binary_int(size: int, unsigned: bool, number: int, encoded: bytes) -> None:
    assert encode_int(number, size, unsigned) == encoded
    assert binary_int(encoded, unsigned) == number


@pytest.mark.parametrize(
    ("number", "size", "unsigned"), [(128, 1, False), (-1, 1, True), (2**32, 4, True)]
)
def test_encode_int_out_of_range(number: int, size: int, unsigned: bool) -> None:
    with pytest.raises(struct.error):
        encode_int(number, size, unsigned)


@FAST
@given(st.sampled_from([1, 2, 4, 8]), st.booleans(), st.data())
def test_binary_int_round_trip(size: int, unsigned: bool, data: st.DataObject) -> None:
    bits = size * 8
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    number = data.draw(st.integers(low, high))
    assert binary_int(encode_int(number, size, unsigned), unsigned) == number


@pytest.mark.parametrize(
    ("binary", "text"),
    [
        (b"\x00", "0000-00-00"),
        (b"\x04\xe8\x07\x0c\x1f", "2024-12-31"),
        (b"\x04\x01\x00\x01\x01", "0001-01-01"),
        (b"\x07\xe8\x07\x0c\x1f\x17\x3b\x3b", "2024-12-31 23:59:59"),
        (b"\x0b\xe8\x07\x0c\x1f\x17\x3b\x3b\x3f\x42\x0f\x00", "2024-12-31 23:59:59.999999"),
        (b"\x0b\xe8\x07\x0c\x1f\x17\x3b\x3b\x01\x00\x00\x00", "2024-12-31 23:59:59.000001"),
        (b"\x0b\xe8\x07\x0c\x1f\x00\x00\x00\x00\x00\x00\x00", "2024-12-31 00:00:00"),
    ],
)
def test_binary_date_text(binary: bytes, text: str) -> None:
    assert binary_date_text(binary) == text


@pytest.mark.parametrize(
    ("text", "with_time", "binary"),
    [
        ("2024-12-31", False, b"\x04\xe8\x07\x0c\x1f"),
        ("2024-12-31 23:59:59", False, b"\x04\xe8\x07\x0c\x1f"),  # a DATE drops the time
        ("2024-12-31 23:59:59", True, b"\x07\xe8\x07\x0c\x1f\x17\x3b\x3b"),
        ("2024-12-31T23:59:59", True, b"\x07\xe8\x07\x0c\x1f\x17\x3b\x3b"),
        ("2024-12-31", True, b"\x07\xe8\x07\x0c\x1f\x00\x00\x00"),
        (
            "2024-12-31 23:59:59.999999",
            True,
            b"\x0b\xe8\x07\x0c\x1f\x17\x3b\x3b\x3f\x42\x0f\x00",
        ),
        ("2024-12-31 23:59:59.5", True, b"\x0b\xe8\x07\x0c\x1f\x17\x3b\x3b\x20\xa1\x07\x00"),
    ],
)
def test_encode_binary_date(text: str, with_time: bool, binary: bytes) -> None:
    assert encode_binary_date(text, with_time) == binary


@pytest.mark.parametrize("text", ["not a date", "2024-13-01", ""])
def test_encode_binary_date_refuses_what_is_not_a_date(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (datetime's own error)
        encode_binary_date(text, True)


@FAST
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_binary_datetime_round_trip(moment: datetime) -> None:
    text = binary_date_text(encode_binary_date(moment.isoformat(" "), True))
    m = moment
    expected = f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"
    if moment.microsecond:
        expected += f".{moment.microsecond:06d}"
    assert text == expected
    assert encode_binary_date(text, True) == encode_binary_date(moment.isoformat(" "), True)


@FAST
@given(st.dates())
def test_binary_date_round_trip(day: object) -> None:
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"  # type: ignore[attr-defined]
    binary = encode_binary_date(text, False)
    assert len(binary) == 5
    assert binary_date_text(binary) == text


@pytest.mark.parametrize(
    "binary",
    [b"\x00", b"\x04\xe8\x07\x00\x00", b"\x07\x00\x00\x00\x00\x00\x00\x00"],
    ids=["zero-length", "2024-00-00", "0000-00-00-00:00:00"],
)
def test_zero_dates_round_trip(binary: bytes) -> None:
    text = binary_date_text(binary)
    assert binary_date_text(encode_binary_date(text, len(binary) > 5)) == text


# -- COM_STMT_EXECUTE -------------------------------------------------------------------------


def execute_header(statement: int = 1, flags: int = 0) -> bytes:
    return b"\x17" + struct.pack("<I", statement) + bytes((flags,)) + b"\x01\x00\x00\x00"


def test_execute_without_parameters() -> None:
    payload = execute_header(7)
    assert decode_execute(payload, 0) == ExecuteParams(7, 0, (), b"", ())


def test_execute_with_new_parameters_bound() -> None:
    params = (
        b"\x04\x00"  # NULL bitmap (9 parameters: 2 bytes): parameter 2 is NULL
        + b"\x01"  # new-params-bound
        + b"\x08\x00"  # LONGLONG
        + b"\xfd\x00"  # VAR_STRING
        + b"\xfd\x00"  # VAR_STRING (NULL)
        + b"\x01\x80"  # TINY UNSIGNED
        + b"\x05\x00"  # DOUBLE
        + b"\x0c\x00"  # DATETIME
        + b"\x0a\x00"  # DATE
        + b"\x0b\x00"  # TIME
        + b"\x04\x00"  # FLOAT
        + b"\x29\x00\x00\x00\x00\x00\x00\x00"  # 41
        + b"\x03xyz"
        + b"\xc8"  # 200
        + b"\x00\x00\x00\x00\x00\x00\x04\x40"  # 2.5
        + b"\x07\xe8\x07\x01\x02\x03\x04\x05"
        + b"\x00"  # 0000-00-00
        + b"\x08\x00\x01\x00\x00\x00\x02\x03\x04"
        + b"\x00\x00\xc0\x3f"  # 1.5
    )
    payload = execute_header(3, flags=1) + params
    decoded = decode_execute(payload, 9)
    assert decoded.statement_id == 3
    assert decoded.flags == 1
    assert decoded.types == (
        (T.LONGLONG, False),
        (T.VAR_STRING, False),
        (T.VAR_STRING, False),
        (T.TINY, True),
        (T.DOUBLE, False),
        (T.DATETIME, False),
        (T.DATE, False),
        (T.TIME, False),
        (T.FLOAT, False),
    )
    assert decoded.raw == params
    assert decoded.shown == (
        "41",
        "xyz",
        "NULL",
        "200",
        "2.5",
        "2024-01-02 03:04:05",
        "0000-00-00",
        "080001000000020304",  # TIME is shown as its bytes
        "1.5",
    )


def test_execute_with_previous_types() -> None:
    previous = ((T.LONG, False), (T.VAR_STRING, False))
    params = b"\x00" + b"\x00" + b"\xff\xff\xff\xff" + b"\x02hi"  # not bound: no types
    decoded = decode_execute(execute_header() + params, 2, previous)
    assert decoded.types == previous
    assert decoded.shown == ("-1", "hi")
    unsigned = decode_execute(execute_header() + params, 2, ((T.LONG, True), (T.BLOB, False)))
    assert unsigned.shown == ("4294967295", "hi")


def test_execute_new_types_replace_previous_ones() -> None:
    params = b"\x00" + b"\x01" + b"\x01\x00" + b"\x07"
    decoded = decode_execute(execute_header() + params, 1, ((T.LONG, False),))
    assert decoded.types == ((T.TINY, False),)
    assert decoded.shown == ("7",)


def test_execute_all_null_parameters() -> None:
    params = b"\x03" + b"\x01" + b"\x08\x00\x06\x00"  # both NULL; no values
    assert decode_execute(execute_header() + params, 2).shown == ("NULL", "NULL")


def test_execute_shows_undecodable_text_as_replacement() -> None:
    params = b"\x00\x01\xfe\x00" + b"\x02\xff\xfe"
    assert decode_execute(execute_header() + params, 1).shown == ("\ufffd\ufffd",)


@pytest.mark.parametrize(
    ("payload", "params", "message"),
    [
        (execute_header()[:9], 0, "too short"),
        (execute_header(), 1, "ends before its parameters"),
        (execute_header() + b"\x00", 1, "ends before its parameters"),
        (execute_header() + b"\x00\x01\x08", 1, "inside its parameter types"),
        (execute_header() + b"\x00\x00\x01", 1, "without their types"),
        (execute_header() + b"\x00\x01\x08\x00\x01\x02", 1, "runs past"),
        (execute_header() + b"\x00\x01\xfd\x00\x05abc", 1, "runs past"),
        (execute_header() + b"\x00\x01\x0c\x00\x07\xe8\x07", 1, "runs past"),
        (execute_header() + b"\x00\x01\x0c\x00", 1, "runs past"),
    ],
)
def test_malformed_execute(payload: bytes, params: int, message: str) -> None:
    with pytest.raises(MysqlProtocolError, match=message):
        decode_execute(payload, params)


@FAST
@given(st.binary(max_size=60), st.integers(0, 12), st.booleans())
def test_execute_raises_only_protocol_errors(data: bytes, params: int, previous: bool) -> None:
    types = ((T.LONG, False),) * params if previous else ()
    with contextlib.suppress(MysqlProtocolError):
        decode_execute(execute_header() + data, params, types)


@FAST
@given(st.binary(max_size=40), st.lists(st.sampled_from(sorted(set(T))), max_size=6))
def test_binary_rows_raise_only_protocol_errors(data: bytes, types: list[int]) -> None:
    with contextlib.suppress(MysqlProtocolError):
        binary_row_spans(b"\x00" + data, 0, len(data) + 1, types)
    with contextlib.suppress(MysqlProtocolError):
        text_row_spans(data, 0, len(data), len(types))
    with contextlib.suppress(MysqlProtocolError):
        ColumnDefinition.decode(data)
