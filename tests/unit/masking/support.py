"""Helpers shared by the masking tests: maskers, and PostgreSQL's wire formats.

The decoders here follow PostgreSQL's binary send/recv functions (``int2send``,
``numeric_send``, ``date_send``, ``timestamp_send``, ``uuid_send``,
``inet_send``, ``jsonb_send``, ``array_send``) and its text array literal
syntax. They are written independently of ``dbward.masking`` so that a masked
value is checked against the format, not against the code that produced it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

import pytest

from dbward.masking.entities import DEFAULT_STRATEGIES, Entity, Strategy
from dbward.masking.scanner import Scanner, shared_scanner
from dbward.masking.strategies import Pseudonymizer
from dbward.masking.values import ValueMasker

KEY = b"k" * 32
OTHER_KEY = b"o" * 32

METRICS = pytest.StashKey[str]()
"""Where the golden detector test leaves its recall/precision report for the summary."""

PG_EPOCH = datetime.date(2000, 1, 1)
PG_EPOCH_DT = datetime.datetime(2000, 1, 1)

# type oids
TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, XML, BOOL = 25, 1043, 1042, 19, 705, 142, 16
JSON, JSONB = 114, 3802
INT8, INT2, INT4, NUMERIC = 20, 21, 23, 1700
DATE, TIMESTAMP, TIMESTAMPTZ = 1082, 1114, 1184
UUID, INET, CIDR, BYTEA = 2950, 869, 650, 17
TEXT_ARRAY, VARCHAR_ARRAY, INT4_ARRAY, JSONB_ARRAY, JSON_ARRAY = 1009, 1015, 1007, 3807, 199


def scanner() -> Scanner:
    return shared_scanner()


def masker(
    strategies: Mapping[Entity, Strategy] | None = None,
    unmasked: frozenset[Entity] = frozenset(),
    key: bytes = KEY,
) -> ValueMasker:
    """A ValueMasker with the default strategies, overridden by ``strategies``."""
    merged = {**DEFAULT_STRATEGIES, **(strategies or {})}
    return ValueMasker(shared_scanner(), Pseudonymizer(key), merged, unmasked)


def varchar_typmod(n: int) -> int:
    """PostgreSQL stores varchar(n) and char(n) as typmod n + 4 (VARHDRSZ)."""
    return n + 4


# --- scalar binary formats ------------------------------------------------------------

INT_SIZES = {INT2: 2, INT4: 4, INT8: 8}


def decode_int(data: bytes, oid: int) -> int:
    size = INT_SIZES[oid]
    assert len(data) == size, f"int of oid {oid} must be {size} bytes, got {len(data)}"
    return int.from_bytes(data, "big", signed=True)


def encode_int(value: int, oid: int) -> bytes:
    return value.to_bytes(INT_SIZES[oid], "big", signed=True)


NUMERIC_POS, NUMERIC_NEG, NUMERIC_NAN = 0x0000, 0x4000, 0xC000


def encode_numeric(value: Decimal) -> bytes:
    """numeric_send: ndigits, weight, sign, dscale, then base-10000 digits."""
    if value.is_nan():
        return struct.pack("!hhHH", 0, 0, NUMERIC_NAN, 0)
    sign = NUMERIC_NEG if value.is_signed() and value != 0 else NUMERIC_POS
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    integer, _, fraction = format(value.copy_abs(), "f").partition(".")
    integer = integer.lstrip("0")
    integer = "0" * (-len(integer) % 4) + integer
    fraction = fraction + "0" * (-len(fraction) % 4)
    groups = [int(integer[i : i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHH{len(groups)}H", len(groups), weight, sign, dscale, *groups)


def decode_numeric(data: bytes) -> Decimal:
    """numeric_recv, with its checks: digits < 10000, a known sign, the length exact."""
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHH", data)
    assert sign in (NUMERIC_POS, NUMERIC_NEG, NUMERIC_NAN), f"bad numeric sign {sign:#x}"
    assert ndigits >= 0
    assert dscale >= 0
    assert len(data) == 8 + 2 * ndigits, "numeric length does not match ndigits"
    if sign == NUMERIC_NAN:
        return Decimal("NaN")
    groups = struct.unpack_from(f"!{ndigits}H", data, 8)
    assert all(0 <= g < 10000 for g in groups), f"numeric digit out of range: {groups}"
    # Exact, whatever the precision of the decimal context: build the digit string.
    digits = "".join(f"{g:04d}" for g in groups) or "0"
    exponent = 4 * (weight - len(groups) + 1) if groups else 0
    value = Decimal(f"{digits}E{exponent}")
    if dscale:
        value = value.quantize(Decimal(1).scaleb(-dscale), context=Context(prec=1000))
    return value.copy_negate() if sign == NUMERIC_NEG else value


def encode_date(value: datetime.date) -> bytes:
    return struct.pack("!i", (value - PG_EPOCH).days)


def decode_date(data: bytes) -> datetime.date:
    assert len(data) == 4
    return PG_EPOCH + datetime.timedelta(days=struct.unpack("!i", data)[0])


def encode_timestamp(value: datetime.datetime) -> bytes:
    delta = value - PG_EPOCH_DT
    return struct.pack("!q", (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def decode_timestamp(data: bytes) -> datetime.datetime:
    assert len(data) == 8
    return PG_EPOCH_DT + datetime.timedelta(microseconds=struct.unpack("!q", data)[0])


def decode_uuid(data: bytes) -> uuid.UUID:
    assert len(data) == 16
    return uuid.UUID(bytes=data)


PGSQL_AF_INET, PGSQL_AF_INET6 = 2, 3


@dataclass(frozen=True)
class Inet:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    bits: int
    is_cidr: bool


def encode_inet(text: str, cidr: bool = False) -> bytes:
    interface = ipaddress.ip_interface(text)
    family = PGSQL_AF_INET if interface.version == 4 else PGSQL_AF_INET6
    packed = interface.ip.packed
    return bytes([family, interface.network.prefixlen, int(cidr), len(packed)]) + packed


def decode_inet(data: bytes, cidr: bool) -> Inet:
    """inet_recv/cidr_recv: family, bits, is_cidr, length, address; cidr has no host bits."""
    family, bits, is_cidr, size = data[:4]
    assert family in (PGSQL_AF_INET, PGSQL_AF_INET6), f"bad inet family {family}"
    full = 32 if family == PGSQL_AF_INET else 128
    assert size == full // 8, f"bad inet address length {size}"
    assert len(data) == 4 + size
    assert 0 <= bits <= full
    assert is_cidr == int(cidr), "the is_cidr byte must say which type it is"
    address = ipaddress.ip_address(data[4:])
    if cidr:
        network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
        assert network.network_address == address, "cidr value has bits set right of mask"
    return Inet(address, bits, bool(is_cidr))


def decode_jsonb(data: bytes) -> Any:
    assert data[:1] == b"\x01", "jsonb binary starts with version byte 1"
    return json.loads(data[1:].decode("utf-8"))


# --- arrays -----------------------------------------------------------------------------


def encode_binary_array(
    elements: Sequence[bytes | None], element_oid: int, dims: Sequence[int] | None = None
) -> bytes:
    dims = list(dims) if dims is not None else ([len(elements)] if elements else [])
    has_null = any(e is None for e in elements)
    out = [struct.pack("!iii", len(dims), int(has_null), element_oid)]
    out += [struct.pack("!ii", d, 1) for d in dims]
    for element in elements:
        if element is None:
            out.append(struct.pack("!i", -1))
        else:
            out.append(struct.pack("!i", len(element)) + element)
    return b"".join(out)


@dataclass(frozen=True)
class BinaryArray:
    dims: list[int]
    has_null_flag: int
    element_oid: int
    elements: list[bytes | None]


def decode_binary_array(data: bytes) -> BinaryArray:
    """array_recv: the header, dimensions, and exactly as many elements as they say."""
    ndim, flags, element_oid = struct.unpack_from("!iii", data)
    assert flags in (0, 1)
    pos = 12
    dims = []
    for _ in range(ndim):
        size, _lbound = struct.unpack_from("!ii", data, pos)
        dims.append(size)
        pos += 8
    count = 1
    for size in dims:
        count *= size
    if not dims:
        count = 0
    elements: list[bytes | None] = []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", data, pos)
        pos += 4
        if length < 0:
            elements.append(None)
        else:
            elements.append(data[pos : pos + length])
            assert len(elements[-1] or b"") == length, "element runs past the end"
            pos += length
    assert pos == len(data), "trailing bytes after the last array element"
    return BinaryArray(dims, flags, element_oid, elements)


Nested = list[Any]


def parse_text_array(literal: bytes) -> Nested:
    """A PostgreSQL array literal (text format) as nested lists of bytes or None."""
    data = literal
    if data.startswith(b"["):
        data = data[data.index(b"=") + 1 :]
    items, pos = _parse(data, 0)
    assert data[pos:].strip() == b"", f"trailing data after array literal: {data[pos:]!r}"
    return items


def _parse(data: bytes, pos: int) -> tuple[Nested, int]:
    assert data[pos : pos + 1] == b"{", f"expected '{{' at {pos} in {data!r}"
    pos += 1
    items: Nested = []
    expect_item = True
    while True:
        char = data[pos : pos + 1]
        assert char, f"unterminated array literal {data!r}"
        if char == b"}":
            return items, pos + 1
        if char == b",":
            assert not expect_item, f"empty element at {pos} in {data!r}"
            expect_item = True
            pos += 1
            continue
        if char.isspace():
            pos += 1
            continue
        assert expect_item, f"missing ',' at {pos} in {data!r}"
        expect_item = False
        if char == b"{":
            nested, pos = _parse(data, pos)
            items.append(nested)
        elif char == b'"':
            out = bytearray()
            pos += 1
            while data[pos : pos + 1] != b'"':
                assert pos < len(data), f"unterminated quoted element in {data!r}"
                if data[pos : pos + 1] == b"\\":
                    pos += 1
                out += data[pos : pos + 1]
                pos += 1
            items.append(bytes(out))
            pos += 1
        else:
            start = pos
            while data[pos : pos + 1] not in (b",", b"}"):
                assert data[pos : pos + 1] not in (b'"', b"{", b"\\", b""), (
                    f"unquoted element with a special character in {data!r}"
                )
                pos += 1
            raw = data[start:pos].strip()
            items.append(None if raw.upper() == b"NULL" else raw)


def text_array(elements: Sequence[bytes | None]) -> bytes:
    """A one-dimensional text-format array literal, every element quoted."""

    def quote(e: bytes | None) -> bytes:
        if e is None:
            return b"NULL"
        return b'"' + e.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'

    return b"{" + b",".join(quote(e) for e in elements) + b"}"


# --- DataRow ------------------------------------------------------------------------------


def datarow(*fields: bytes | None) -> bytes:
    """A DataRow payload: int16 field count, then int32 length + bytes (-1 for NULL)."""
    out = [struct.pack("!h", len(fields))]
    for value in fields:
        if value is None:
            out.append(struct.pack("!i", -1))
        else:
            out.append(struct.pack("!i", len(value)) + value)
    return b"".join(out)


def parse_datarow(payload: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!h", payload)
    pos = 2
    fields: list[bytes | None] = []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        if length < 0:
            fields.append(None)
        else:
            fields.append(payload[pos : pos + length])
            pos += length
    assert pos == len(payload), "trailing bytes after the last field"
    return fields
