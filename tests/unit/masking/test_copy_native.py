"""COPY rows masked by the C kernel and by Python give the same bytes and counts."""

from __future__ import annotations

import struct

import pytest

from dbward.codec.pg.framing import Framer
from dbward.masking import native
from dbward.masking.copy import CopyMasker, CopyOptions
from dbward.masking.entities import DEFAULT_STRATEGIES
from dbward.masking.plan import Field, MaskingRules, build_plan
from dbward.masking.rows import MaskStats, RowMasker
from dbward.masking.scanner import shared_scanner
from dbward.masking.strategies import Pseudonymizer
from dbward.masking.values import ValueMasker

needs_native = pytest.mark.skipif(not native.enabled(), reason="the C kernel is not in use")

FIELDS = [Field("id", type_oid=23), Field("email"), Field("notes"), Field("full_name")]


def copy_masker(options: CopyOptions, use_native: bool) -> tuple[CopyMasker, MaskStats]:
    binary = options.binary
    fields = [Field(f.name, type_oid=f.type_oid, binary=binary) for f in FIELDS]
    plan = build_plan(fields, {}, MaskingRules())
    values = ValueMasker(shared_scanner(), Pseudonymizer(b"k" * 32), DEFAULT_STRATEGIES)
    stats = MaskStats()
    rows = RowMasker(plan, values, stats, use_native=use_native)
    return CopyMasker(options, rows, lambda width: None), stats


def copy_data(*payloads: bytes) -> bytes:
    return b"".join(b"d" + struct.pack("!i", len(p) + 4) + p for p in payloads)


def mask_all(options: CopyOptions, payloads: list[bytes], use_native: bool) -> tuple[bytes, dict]:
    """The block of CopyData messages (then CopyDone) as the session would send it on."""
    masker, stats = copy_masker(options, use_native)
    block, frames = Framer().split(copy_data(*payloads) + b"c\x00\x00\x00\x04")
    out = []
    index = 0
    while frames[index][0] == ord("d"):
        stop, masked = masker.run(block, frames, index)
        assert stop > index
        first, last = frames[index][1] - 5, frames[stop - 1][2]
        out.append(block[first:last] if masked is None else masked)
        index = stop
    return b"".join(out), stats.settle().summary()


def text_lines(delimiter: bytes, null: bytes) -> list[bytes]:
    d = delimiter
    return [
        d.join([b"1", b"ana@example.com", b"call me", b"Ana Lopez"]) + b"\n",
        d.join([b"2", null, b"write to bo@example.org today", b"Bo Smith"]) + b"\n",
        d.join([b"3", b"c\\\\d@example.net", b"a\\tb and +1 212 555 0143", null]) + b"\n",
        d.join([b"4", b"no-at-sign", b"x\\" + d + b"y", b"Jos\xc3\xa9 \xc3\xb1"]) + b"\r\n",
        d.join([b"5", b"", b"", b"\\\\"]) + b"\n",
        d.join([b"6", b"e@x.io"]) + b"\n",  # fewer fields than the plan
        b"",
    ]


TEXT_OPTIONS = [
    pytest.param(CopyOptions(), id="text"),
    pytest.param(CopyOptions(delimiter=b",", null=b"NULL"), id="text-comma-null"),
    pytest.param(CopyOptions(delimiter=b"|", null=b""), id="text-pipe-empty-null"),
    pytest.param(CopyOptions(header=True), id="text-header"),
]


@needs_native
@pytest.mark.parametrize("options", TEXT_OPTIONS)
def test_text_lines_are_masked_the_same_in_c_and_python(options: CopyOptions) -> None:
    lines = text_lines(options.delimiter, options.null)
    if options.header:
        lines.insert(0, options.delimiter.join(f.name.encode() for f in FIELDS) + b"\n")
    assert mask_all(options, lines, True) == mask_all(options, lines, False)


@pytest.mark.parametrize("use_native", [pytest.param(True, marks=needs_native), False])
def test_an_escaped_delimiter_does_not_shift_the_columns(use_native: bool) -> None:
    options = CopyOptions(delimiter=b",")
    line = b"7,ann@example.com,one\\, two\\, three,Ann Lee\n"
    out, _ = mask_all(options, [line], use_native)
    body = out[5:]
    assert body.startswith(b"7,****@example.com,one\\, two\\, three,Person ")
    assert b"Ann Lee" not in body


@pytest.mark.parametrize("use_native", [pytest.param(True, marks=needs_native), False])
def test_a_header_line_is_left_alone(use_native: bool) -> None:
    options = CopyOptions(header=True)
    header = b"id\temail\tnotes\tfull_name\n"
    out, _ = mask_all(options, [header, b"1\ta@b.io\tx\ty\n"], use_native)
    assert out.startswith(copy_data(header))
    assert b"****@b.io" in out


@needs_native
def test_csv_lines_are_masked_the_same_in_c_and_python() -> None:
    options = CopyOptions(format="csv", delimiter=b",", null=b"")
    lines = [
        b'1,ana@example.com,"hi, it\'s ""me"" at +1 212 555 0143",Ana\n',
        b"2,,plain,\n",
    ]
    assert mask_all(options, lines, True) == mask_all(options, lines, False)


def binary_tuple(*values: bytes | None) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        out += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return out


SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)


@needs_native
def test_binary_chunks_are_masked_the_same_in_c_and_python() -> None:
    options = CopyOptions(format="binary")
    chunks = [
        SIGNATURE + binary_tuple(struct.pack("!i", 1), b"ana@example.com", b"hi", b"Ana"),
        binary_tuple(struct.pack("!i", 2), None, b"mail bo@example.org", None),
        binary_tuple(struct.pack("!i", 3), b"x@y.io", b"ok", b"Jos\xc3\xa9")
        + binary_tuple(struct.pack("!i", 4), b"z@y.io", b"+44 20 7946 0958", b"Zed"),
        struct.pack("!h", -1),
    ]
    native_out = mask_all(options, chunks, True)
    assert native_out == mask_all(options, chunks, False)
    assert b"ana@example.com" not in native_out[0]
    assert b"z@y.io" not in native_out[0]  # a second tuple in one message is masked too


@needs_native
def test_a_malformed_binary_tuple_is_refused() -> None:
    options = CopyOptions(format="binary")
    masker, _ = copy_masker(options, True)
    bad = struct.pack("!hi", 4, 50) + b"short"
    block, frames = Framer().split(copy_data(bad))
    with pytest.raises(ValueError, match="malformed DataRow"):
        masker.run(block, frames, 0)
