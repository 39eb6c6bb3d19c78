"""The MySQL protocol's primitive fields (wire.py).

Length-encoded integers are one byte below 0xFB, or 0xFC + int<2>, 0xFD + int<3>,
0xFE + int<8>; 0xFB is NULL in a text row and 0xFF is never an integer (MySQL
"Basic Data Types"). The fixtures below are spelled from that description.
Whatever the input, the readers raise MysqlProtocolError, never IndexError or
struct.error.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import MAX_PACKET
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.wire import (
    lenenc_int,
    lenenc_str,
    p16,
    p24,
    p32,
    read_lenenc,
    read_lenenc_str,
    read_nul_str,
    u16,
    u32,
)

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- wire: length-encoded integers ------------------------------------------------------------

LENENC = [
    (0, b"\x00"),
    (1, b"\x01"),
    (250, b"\xfa"),
    (251, b"\xfc\xfb\x00"),
    (252, b"\xfc\xfc\x00"),
    (255, b"\xfc\xff\x00"),
    (2**16 - 1, b"\xfc\xff\xff"),
    (2**16, b"\xfd\x00\x00\x01"),
    (2**24 - 1, b"\xfd\xff\xff\xff"),
    (2**24, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    (2**32, b"\xfe\x00\x00\x00\x00\x01\x00\x00\x00"),
    (2**64 - 1, b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("value", "encoded"), LENENC, ids=[hex(v) for v, _ in LENENC])
def test_lenenc_int_boundaries(value: int, encoded: bytes) -> None:
    assert lenenc_int(value) == encoded
    assert read_lenenc(encoded, 0) == (value, len(encoded))
    # at an offset, with bytes behind it
    assert read_lenenc(b"xx" + encoded + b"yy", 2) == (value, 2 + len(encoded))
    assert read_lenenc(b"xx" + encoded + b"yy", 2, 2 + len(encoded)) == (value, 2 + len(encoded))


@pytest.mark.parametrize(("value", "encoded"), LENENC[1:], ids=[hex(v) for v, _ in LENENC[1:]])
def test_truncated_lenenc_int_raises(value: int, encoded: bytes) -> None:
    for cut in range(len(encoded)):
        with pytest.raises(MysqlProtocolError):
            read_lenenc(encoded[:cut], 0)
        # the end bound is honoured even when the buffer goes on
        with pytest.raises(MysqlProtocolError):
            read_lenenc(encoded + b"\x00" * 9, 0, cut)


@pytest.mark.parametrize("prefix", [b"\xfb", b"\xff"])
def test_null_and_ff_are_not_integers(prefix: bytes) -> None:
    with pytest.raises(MysqlProtocolError, match="invalid length-encoded"):
        read_lenenc(prefix + b"\x00" * 8, 0)


@FAST
@given(st.integers(0, 2**64 - 1))
def test_lenenc_int_round_trip(value: int) -> None:
    encoded = lenenc_int(value)
    assert read_lenenc(encoded, 0) == (value, len(encoded))
    assert len(encoded) == (1 if value < 251 else 3 if value < 2**16 else 4 if value < 2**24 else 9)


def test_lenenc_str() -> None:
    assert lenenc_str(b"") == b"\x00"
    assert lenenc_str(b"def") == b"\x03def"
    long = b"a" * 300
    assert lenenc_str(long) == b"\xfc\x2c\x01" + long
    assert read_lenenc_str(b"\x03def\x00", 0) == (b"def", 4)
    assert read_lenenc_str(b"\xfc\x2c\x01" + long, 0) == (long, 303)


def test_truncated_lenenc_str_raises() -> None:
    with pytest.raises(MysqlProtocolError, match="runs past"):
        read_lenenc_str(b"\x04def", 0)
    with pytest.raises(MysqlProtocolError, match="runs past"):
        read_lenenc_str(b"\x03def", 0, 3)
    with pytest.raises(MysqlProtocolError):
        read_lenenc_str(b"\xfc\x2c", 0)
    with pytest.raises(MysqlProtocolError):
        read_lenenc_str(b"", 0)


@FAST
@given(st.binary(max_size=70_000), st.binary(max_size=4))
def test_lenenc_str_round_trip(value: bytes, behind: bytes) -> None:
    encoded = lenenc_str(value)
    assert read_lenenc_str(encoded + behind, 0) == (value, len(encoded))


def test_nul_str() -> None:
    assert read_nul_str(b"root\x00rest", 0) == (b"root", 5)
    assert read_nul_str(b"\x00", 0) == (b"", 1)
    with pytest.raises(MysqlProtocolError, match="no NUL"):
        read_nul_str(b"root", 0)
    with pytest.raises(MysqlProtocolError, match="no NUL"):
        read_nul_str(b"root\x00", 0, 4)  # the NUL is past the end bound
    with pytest.raises(MysqlProtocolError):
        read_nul_str(b"ab", 5)


def test_fixed_integers() -> None:
    assert p16(0x0102) == b"\x02\x01"
    assert p24(0x010203) == b"\x03\x02\x01"
    assert p32(0x01020304) == b"\x04\x03\x02\x01"
    assert u16(b"\x00\x02\x01", 1) == 0x0102
    assert u32(b"\x04\x03\x02\x01", 0) == 0x01020304
    with pytest.raises(MysqlProtocolError, match="2-byte"):
        u16(b"\x01\x02", 1)
    with pytest.raises(MysqlProtocolError, match="4-byte"):
        u32(b"\x01\x02\x03", 0)


@FAST
@given(st.binary(max_size=12), st.integers(0, 14))
def test_readers_raise_only_protocol_errors(data: bytes, pos: int) -> None:
    for reader in (read_lenenc, read_lenenc_str, read_nul_str, u16, u32):
        with contextlib.suppress(MysqlProtocolError):
            reader(data, pos)  # type: ignore[operator]


def test_p24_of_header_matches_struct() -> None:
    for n in (0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, MAX_PACKET):
        assert p24(n) == struct.pack("<I", n)[:3]
