"""MySQL packet framing (framing.py).

Every packet is ``int<3> payload_length, int<1> sequence_id, payload``; a
payload of 0xFFFFFF bytes continues in the next packet, and a payload that is
an exact multiple of 0xFFFFFF ends with an empty packet (MySQL "Sending more
than 16Mb"). The fixtures below are spelled from that description.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import MAX_PACKET
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import Framer, logical, packet, packets_needed
from dbward.codec.mysql.wire import p24

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# COM_QUERY "select 1", sequence 0 (the MySQL docs' COM_QUERY example, shortened)
QUERY = b"\x09\x00\x00\x00" + b"\x03select 1"
# An OK packet, sequence 1: header, affected 0, insert id 0, status AUTOCOMMIT, 0 warnings
OK = b"\x07\x00\x00\x01" + b"\x00\x00\x00\x02\x00\x00\x00"
# An empty packet (the end of a 0xFFFFFF-multiple payload), sequence 2
EMPTY = b"\x00\x00\x00\x02"


def payloads(block: bytes, frames: list[tuple[int, int, int]]) -> list[tuple[int, bytes]]:
    return [(seq, block[start:end]) for seq, start, end in frames]


def logical_payloads(block: bytes, frames: list[tuple[int, int, int]]) -> list[bytes]:
    out = []
    index = 0
    while index < len(frames):
        payload, index = logical(block, frames, index)
        out.append(payload)
    return out


# -- Framer: fixtures -----------------------------------------------------------------------


def test_whole_packets_in_one_block() -> None:
    framer = Framer()
    stream = QUERY + OK + EMPTY
    block, frames = framer.split(stream)
    assert block == stream
    assert frames == [(0, 4, 13), (1, 17, 24), (2, 28, 28)]
    assert payloads(block, frames) == [(0, b"\x03select 1"), (1, OK[4:]), (2, b"")]
    assert framer.pending == 0


def test_byte_at_a_time() -> None:
    framer = Framer()
    stream = QUERY + OK
    seen: list[tuple[int, bytes]] = []
    for i in range(len(stream)):
        block, frames = framer.split(stream[i : i + 1])
        if not frames:
            assert block == b""
        seen += payloads(block, frames)
    assert seen == [(0, b"\x03select 1"), (1, OK[4:])]
    assert framer.pending == 0


def test_incomplete_tail_is_kept_and_the_block_is_only_complete_packets() -> None:
    framer = Framer()
    block, frames = framer.split(QUERY + OK[:6])
    assert block == QUERY
    assert frames == [(0, 4, 13)]
    assert framer.pending == 6
    block, frames = framer.split(OK[6:] + QUERY[:2])
    assert block == OK
    assert payloads(block, frames) == [(1, OK[4:])]
    assert framer.pending == 2
    block, frames = framer.split(QUERY[2:])
    assert block == QUERY
    assert framer.pending == 0


def test_empty_input() -> None:
    assert Framer().split(b"") == (b"", [])


def test_sequence_number_is_the_fourth_byte() -> None:
    assert Framer().split(b"\x01\x00\x00\xff\x0e")[1] == [(255, 4, 5)]


def test_continuation_packets_are_joined_by_logical() -> None:
    big = bytes(range(256)) * (MAX_PACKET // 256) + b"\xaa" * (MAX_PACKET % 256)
    assert len(big) == MAX_PACKET
    tail = b"the rest"
    stream = (
        b"\xff\xff\xff\x03" + big + p24(len(tail)) + b"\x04" + tail  # one logical packet
    ) + OK
    framer = Framer()
    block, frames = framer.split(stream)
    assert [f[0] for f in frames] == [3, 4, 1]
    payload, index = logical(block, frames, 0)
    assert payload == big + tail
    assert index == 2
    payload, index = logical(block, frames, 2)
    assert payload == OK[4:]
    assert index == 3


def test_a_payload_of_exactly_0xffffff_ends_with_an_empty_packet() -> None:
    big = b"\x5a" * MAX_PACKET
    stream = b"\xff\xff\xff\x00" + big + b"\x00\x00\x00\x01"
    framer = Framer()
    block, frames = framer.split(stream)
    assert len(frames) == 2
    assert logical(block, frames, 0) == (big, 2)


def test_a_continuation_run_is_not_returned_until_it_ends() -> None:
    big = b"\x01" * MAX_PACKET
    framer = Framer()
    block, frames = framer.split(OK + b"\xff\xff\xff\x00" + big)
    assert block == OK  # the run of the second logical packet is held back
    assert payloads(block, frames) == [(1, OK[4:])]
    assert framer.pending == 4 + MAX_PACKET
    block, frames = framer.split(b"\x02\x00\x00")  # the last packet's header, in part
    assert (block, frames) == (b"", [])
    block, frames = framer.split(b"\x01xy")
    assert logical_payloads(block, frames) == [big + b"xy"]
    assert framer.pending == 0


def test_over_max_payload_raises() -> None:
    framer = Framer(max_payload=8, what="client packet")
    assert framer.split(b"\x08\x00\x00\x00" + b"x" * 8)[1] == [(0, 4, 12)]
    with pytest.raises(MysqlProtocolError, match="client packet of 9 bytes is over the 8-byte"):
        Framer(max_payload=8, what="client packet").split(b"\x09\x00\x00\x00" + b"x" * 9)


def test_over_max_payload_counts_continuations() -> None:
    framer = Framer(max_payload=MAX_PACKET + 2)
    stream = b"\xff\xff\xff\x00" + bytes(MAX_PACKET) + b"\x03\x00\x00\x01abc"
    with pytest.raises(MysqlProtocolError, match="over the"):
        framer.split(stream)
    ok = Framer(max_payload=MAX_PACKET + 3)
    block, frames = ok.split(stream)
    assert logical_payloads(block, frames) == [bytes(MAX_PACKET) + b"abc"]


# -- packet() ---------------------------------------------------------------------------------


def test_packet_small() -> None:
    assert packet(0, b"\x03select 1") == QUERY
    assert packet(2, b"") == EMPTY
    assert packet(256 + 1, OK[4:]) == OK  # the sequence number wraps


@pytest.mark.parametrize(
    ("size", "count"),
    [
        (MAX_PACKET - 1, 1),
        (MAX_PACKET, 2),
        (MAX_PACKET + 1, 2),
        (2 * MAX_PACKET, 3),
        (16 * 1024 * 1024 + 100, 2),
    ],
)
def test_packet_splits_large_payloads_and_round_trips(size: int, count: int) -> None:
    payload = bytes(range(251)) * (size // 251) + b"\x07" * (size % 251)
    assert len(payload) == size
    wire = packet(254, payload)
    assert packets_needed(size) == count
    assert len(wire) == size + 4 * count
    framer = Framer()
    block, frames = framer.split(wire)
    assert block == wire
    assert [f[0] for f in frames] == [(254 + i) % 256 for i in range(count)]
    assert [f[2] - f[1] for f in frames[:-1]] == [MAX_PACKET] * (count - 1)
    assert frames[-1][2] - frames[-1][1] == size - MAX_PACKET * (count - 1)
    assert logical(block, frames, 0) == (payload, count)


def test_packets_needed() -> None:
    assert packets_needed(0) == 1
    assert packets_needed(MAX_PACKET - 1) == 1
    assert packets_needed(MAX_PACKET) == 2
    assert packets_needed(2 * MAX_PACKET) == 3


# -- Framer: properties -----------------------------------------------------------------------

small_payloads = st.lists(st.binary(max_size=40), min_size=1, max_size=8)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for point in [*points, len(data)]:
        out.append(data[last:point])
        last = point
    return out


@FAST
@given(payloads_=small_payloads, cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_yields_the_same_frames(payloads_: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(packet(i, p) for i, p in enumerate(payloads_))
    framer = Framer()
    blocks = []
    seen: list[tuple[int, bytes]] = []
    for chunk in chunked(stream, cuts):
        block, frames = framer.split(chunk)
        blocks.append(block)
        # the frames tile the block exactly: header, payload, header, payload, ...
        pos = 0
        for _, start, end in frames:
            assert start == pos + 4
            assert int.from_bytes(block[pos : pos + 3], "little") == end - start
            pos = end
        assert pos == len(block)
        seen += payloads(block, frames)
    assert b"".join(blocks) == stream
    assert seen == [(i % 256, p) for i, p in enumerate(payloads_)]
    assert framer.pending == 0


@settings(max_examples=10, deadline=None)
@given(
    extra=st.integers(0, 3),
    cuts=st.lists(st.integers(0, MAX_PACKET + 200), max_size=4),
)
def test_any_chunking_of_a_continued_packet(extra: int, cuts: list[int]) -> None:
    big = b"\x11" * (MAX_PACKET + extra)
    stream = packet(0, b"\x03hi") + packet(1, big) + packet(3, b"\x00\x00\x00\x02\x00\x00\x00")
    framer = Framer()
    found: list[bytes] = []
    for chunk in chunked(stream, cuts):
        block, frames = framer.split(chunk)
        found += logical_payloads(block, frames)
    assert found == [b"\x03hi", big, b"\x00\x00\x00\x02\x00\x00\x00"]
    assert framer.pending == 0
