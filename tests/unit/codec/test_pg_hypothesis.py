"""Property tests for the PostgreSQL codec.

(a) Whatever bytes arrive, in whatever chunks, the parsers return messages or
    raise ProtocolError: nothing else escapes, and the chunking never changes
    the outcome.
(b) Random valid messages, encoded, concatenated and split anywhere, parse
    back to equal messages.
(c) Framer.split hands back every byte exactly once, and its frames tile the
    block it returns.
"""

from __future__ import annotations

import itertools
import struct
import typing
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.pg import backend as be
from dbward.codec.pg import frontend as fe
from dbward.codec.pg import startup as su
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import BackendParser, Framer, FrontendParser, StartupParser

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FRONTEND_TYPES = typing.get_args(fe.FrontendMessage)
BACKEND_TYPES = typing.get_args(be.BackendMessage)
STARTUP_TYPES = typing.get_args(su.StartupPacket)

# --------------------------------------------------------------------------
# Strategies for valid messages.
# --------------------------------------------------------------------------

text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)
name = text.filter(bool)  # where an empty string would end a list
int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
raw = st.binary(max_size=24)
value = st.none() | raw


def tuples(
    elements: st.SearchStrategy[Any], max_size: int = 4
) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(elements, max_size=max_size).map(tuple)


kind = st.sampled_from("SP")

frontend_messages: st.SearchStrategy[Any] = st.one_of(
    st.builds(fe.Query, text),
    st.builds(fe.Parse, text, text, tuples(uint32)),
    st.builds(fe.Bind, text, text, tuples(int16), tuples(value), tuples(int16)),
    st.builds(fe.Describe, kind, text),
    st.builds(fe.Execute, text, int32),
    st.builds(fe.Close, kind, text),
    st.just(fe.Sync()),
    st.just(fe.Flush()),
    st.just(fe.Terminate()),
    st.builds(fe.CopyData, raw),
    st.just(fe.CopyDone()),
    st.builds(fe.CopyFail, text),
    st.builds(fe.PasswordMessage, raw),
    st.builds(fe.FunctionCall, raw),
)

KNOWN_AUTH_CODES = {
    be.AUTH_OK,
    be.AUTH_CLEARTEXT,
    be.AUTH_MD5,
    be.AUTH_SASL,
    be.AUTH_SASL_CONTINUE,
    be.AUTH_SASL_FINAL,
}
field_codes = st.characters(min_codepoint=1, max_codepoint=255)  # one byte on the wire

backend_messages: st.SearchStrategy[Any] = st.one_of(
    st.just(be.AuthenticationOk()),
    st.just(be.AuthenticationCleartextPassword()),
    st.builds(be.AuthenticationMD5Password, st.binary(min_size=4, max_size=4)),
    st.builds(be.AuthenticationSASL, tuples(name)),
    st.builds(be.AuthenticationSASLContinue, raw),
    st.builds(be.AuthenticationSASLFinal, raw),
    st.builds(be.AuthenticationOther, int32.filter(lambda c: c not in KNOWN_AUTH_CODES), raw),
    st.builds(be.BackendKeyData, int32, uint32),
    st.builds(be.ParameterStatus, text, text),
    st.builds(be.ReadyForQuery, st.sampled_from("ITE")),
    st.builds(
        be.RowDescription,
        tuples(st.builds(be.FieldDescription, text, uint32, int16, uint32, int16, int32, int16)),
    ),
    st.builds(be.DataRow, tuples(value)),
    st.builds(be.CommandComplete, text),
    st.just(be.EmptyQueryResponse()),
    st.builds(be.ErrorResponse, st.dictionaries(field_codes, text, max_size=5)),
    st.builds(be.NoticeResponse, st.dictionaries(field_codes, text, max_size=5)),
    st.builds(be.NotificationResponse, int32, text, text),
    st.just(be.ParseComplete()),
    st.just(be.BindComplete()),
    st.just(be.CloseComplete()),
    st.just(be.NoData()),
    st.just(be.PortalSuspended()),
    st.builds(be.ParameterDescription, tuples(uint32)),
    st.builds(be.CopyInResponse, st.integers(0, 255), tuples(int16)),
    st.builds(be.CopyOutResponse, st.integers(0, 255), tuples(int16)),
    st.builds(be.CopyBothResponse, st.integers(0, 255), tuples(int16)),
    st.builds(be.NegotiateProtocolVersion, int32, tuples(text)),
    st.builds(be.FunctionCallResponse, raw),
    st.builds(fe.CopyData, raw),
    st.just(fe.CopyDone()),
)


@st.composite
def startup_messages(draw: st.DrawFn) -> su.StartupMessage:
    parameters = {"user": draw(name)}
    for key, val in draw(st.dictionaries(name, text, max_size=4)).items():
        parameters.setdefault(key, val)
    return su.StartupMessage(parameters, su.PROTOCOL_3, draw(st.integers(0, 0xFFFF)))


@st.composite
def startup_conversations(draw: st.DrawFn) -> list[Any]:
    """SSL/GSSENC requests (each refused), then a StartupMessage or a CancelRequest."""
    requests = draw(st.lists(st.sampled_from([su.SSLRequest(), su.GSSENCRequest()]), max_size=3))
    last = draw(startup_messages() | st.builds(su.CancelRequest, int32, uint32))
    return [*requests, last]


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


def chunks(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def typed_frame(type_code: int, payload: bytes) -> bytes:
    return bytes((type_code,)) + struct.pack("!i", len(payload) + 4) + payload


def untyped_frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload) + 4) + payload


def run(parser: Any, pieces: Sequence[bytes]) -> tuple[list[Any], bool]:
    """Feed the pieces; return the messages and whether ProtocolError was raised.

    Any other exception propagates and fails the test.
    """
    out: list[Any] = []
    error: ProtocolError | None = None
    try:
        for piece in pieces:
            out.extend(parser.feed(piece))
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.message, "a ProtocolError must say what is wrong"
    return out, error is not None


# --------------------------------------------------------------------------
# (a) Only ProtocolError escapes, whatever the bytes and the chunking.
# --------------------------------------------------------------------------


@st.composite
def noisy_stream(
    draw: st.DrawFn, messages: st.SearchStrategy[Any], type_codes: bytes, typed: bool
) -> bytes:
    """Bytes near the protocol: real messages, mangled payloads, random frames, noise."""

    def mangled(message: Any) -> bytes:
        encoded = message.encode()
        payload = bytearray(encoded[5:] if typed else encoded[4:])
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["flip", "cut", "grow"]))
            if op == "flip" and payload:
                payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
            elif op == "cut" and payload:
                del payload[draw(st.integers(0, len(payload) - 1)) :]
            else:
                payload += draw(st.binary(min_size=1, max_size=4))
        if typed:
            return typed_frame(encoded[0], bytes(payload))
        return untyped_frame(bytes(payload))

    if typed:
        random_frame = st.builds(typed_frame, st.sampled_from(type_codes), st.binary(max_size=40))
    else:
        code = st.sampled_from(
            [su.SSL_REQUEST_CODE, su.GSSENC_REQUEST_CODE, su.CANCEL_REQUEST_CODE, 0x30000, 0x20000]
        )
        random_frame = st.builds(
            lambda c, body: untyped_frame(struct.pack("!i", c) + body), code, st.binary(max_size=40)
        )
    parts = draw(
        st.lists(
            st.one_of(
                messages.map(lambda m: m.encode()),
                messages.map(mangled),
                random_frame,
                st.binary(max_size=12),
            ),
            max_size=6,
        )
    )
    return b"".join(parts)


FRONTEND_CODES = bytes(sorted(fe.FRONTEND_NAMES)) + b"Z\x00"
BACKEND_CODES = b"RKSZTDCIENA12 3nstGHWvVdcQ\xff"


def check_only_protocol_error(
    make: Callable[[], Any], types: tuple[type, ...], data: bytes, pieces: list[bytes]
) -> list[Any] | None:
    """Messages decoded from ``data`` (None if it is invalid), the same for any chunking."""
    whole, whole_failed = run(make(), [data])
    chunked, chunked_failed = run(make(), pieces)
    for message in whole + chunked:
        assert isinstance(message, types), message
    assert whole_failed == chunked_failed
    if whole_failed:
        return None
    assert chunked == whole
    return whole


def repeats_a_field(message: Any, payload: bytes) -> bool:
    """An ErrorResponse/NoticeResponse naming one field twice (the decoder keeps the last)."""
    if not isinstance(message, be.ErrorResponse | be.NoticeResponse):
        return False
    codes, pos = [], 0
    while payload[pos] != 0:
        codes.append(payload[pos])
        pos = payload.index(0, pos + 1) + 1
    return len(codes) != len(set(codes))


def check_nothing_lost(messages: list[Any] | None, data: bytes) -> None:
    """Re-encoding each decoded message gives back exactly the bytes it came from."""
    if messages is None:
        return
    block, frames = Framer().split(data)
    assert len(frames) == len(messages)
    for message, (_, start, end) in zip(messages, frames, strict=True):
        if not repeats_a_field(message, block[start:end]):
            assert message.encode() == block[start - 5 : end]


@FAST
@given(st.data())
def test_frontend_parser_only_raises_protocol_error(data: st.DataObject) -> None:
    stream = data.draw(noisy_stream(frontend_messages, FRONTEND_CODES, typed=True))
    pieces = chunks(data.draw, stream)
    check_nothing_lost(
        check_only_protocol_error(FrontendParser, FRONTEND_TYPES, stream, pieces), stream
    )


@FAST
@given(st.data())
def test_backend_parser_only_raises_protocol_error(data: st.DataObject) -> None:
    stream = data.draw(noisy_stream(backend_messages, BACKEND_CODES, typed=True))
    pieces = chunks(data.draw, stream)
    check_nothing_lost(
        check_only_protocol_error(BackendParser, BACKEND_TYPES, stream, pieces), stream
    )


@FAST
@given(st.data())
def test_startup_parser_only_raises_protocol_error(data: st.DataObject) -> None:
    packets = startup_messages() | st.sampled_from([su.SSLRequest(), su.GSSENCRequest()])
    stream = data.draw(noisy_stream(packets, b"", typed=False))
    check_only_protocol_error(StartupParser, STARTUP_TYPES, stream, chunks(data.draw, stream))


@FAST
@given(st.binary(max_size=200), st.data())
def test_arbitrary_bytes_only_raise_protocol_error(blob: bytes, data: st.DataObject) -> None:
    pieces = chunks(data.draw, blob)
    check_only_protocol_error(FrontendParser, FRONTEND_TYPES, blob, pieces)
    check_only_protocol_error(BackendParser, BACKEND_TYPES, blob, pieces)
    check_only_protocol_error(StartupParser, STARTUP_TYPES, blob, pieces)
    small = lambda: FrontendParser(max_message=16)  # noqa: E731
    check_only_protocol_error(small, FRONTEND_TYPES, blob, pieces)


# --------------------------------------------------------------------------
# (b) Round trip.
# --------------------------------------------------------------------------


@FAST
@given(st.lists(frontend_messages, max_size=8), st.data())
def test_frontend_round_trip(messages: list[Any], data: st.DataObject) -> None:
    stream = b"".join(m.encode() for m in messages)
    out, failed = run(FrontendParser(), chunks(data.draw, stream))
    assert not failed
    assert out == messages


@FAST
@given(st.lists(backend_messages, max_size=8), st.data())
def test_backend_round_trip(messages: list[Any], data: st.DataObject) -> None:
    stream = b"".join(m.encode() for m in messages)
    parser = BackendParser()
    out, failed = run(parser, chunks(data.draw, stream))
    assert not failed
    assert out == messages
    assert parser.pending == 0


@FAST
@given(startup_conversations(), st.lists(frontend_messages, max_size=3), st.data())
def test_startup_round_trip(packets: list[Any], early: list[Any], data: st.DataObject) -> None:
    after = b"".join(m.encode() for m in early)  # typed messages a client sent early
    stream = b"".join(p.encode() for p in packets) + after
    parser = StartupParser()
    out, failed = run(parser, chunks(data.draw, stream))
    assert not failed
    assert out == packets
    rest = parser.take_rest()
    assert rest == after
    assert FrontendParser().feed(rest) == early


# --------------------------------------------------------------------------
# (c) Framer.split invariant.
# --------------------------------------------------------------------------

frames_strategy = st.lists(
    st.builds(typed_frame, st.integers(0, 255), st.binary(max_size=30)), max_size=10
)


@FAST
@given(frames_strategy, st.binary(max_size=12), st.data())
def test_framer_split_invariant(frames: list[bytes], tail: bytes, data: st.DataObject) -> None:
    stream = b"".join(frames)
    # An incomplete last message: a strict prefix of one more frame.
    incomplete = typed_frame(0x64, tail)[: len(tail) + 4] if tail else b""
    framer = Framer()
    blocks: list[bytes] = []
    seen: list[tuple[int, bytes]] = []
    for piece in chunks(data.draw, stream + incomplete):
        block, found = framer.split(piece)
        blocks.append(block)
        pos = 0
        for type_code, start, end in found:
            # The frames tile the block: each starts where the previous ended.
            assert start == pos + 5
            assert block[pos] == type_code
            (length,) = struct.unpack_from("!i", block, pos + 1)
            assert length == end - start + 4
            seen.append((type_code, bytes(block[start:end])))
            pos = end
        assert pos == len(block)
    assert framer.pending == len(incomplete)
    assert b"".join(blocks) + incomplete == stream + incomplete
    assert seen == [(f[0], f[5:]) for f in frames]
