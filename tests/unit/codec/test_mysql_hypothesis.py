"""Property tests across the MySQL codec: whatever bytes arrive, every decoder returns
a value or raises MysqlProtocolError; nothing else (IndexError, struct.error,
UnicodeDecodeError, KeyError, ...) escapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import Capability
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.handshake import AuthSwitchRequest, HandshakeResponse41, HandshakeV10
from dbward.codec.mysql.packets import (
    ChangeUser,
    Eof,
    Err,
    Ok,
    PrepareOk,
    eof_status,
    is_eof,
    ok_affected,
    ok_status,
    query_text,
    statement_id,
)
from dbward.codec.mysql.results import ColumnDefinition, decode_execute, text_row_spans

C = Capability
FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

capabilities = st.integers(0, 2**32 - 1)
# bytes that favour the values the protocol gives meaning to
interesting = st.sampled_from([0x00, 0x01, 0x03, 0x0A, 0x0C, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF])
payloads = st.lists(interesting | st.integers(0, 255), max_size=80).map(bytes)

DECODERS: list[tuple[str, Callable[[bytes, int], Any]]] = [
    ("HandshakeV10", lambda b, c: HandshakeV10.decode(b"\x0a" + b)),
    ("HandshakeResponse41", lambda b, c: HandshakeResponse41.decode(b)),
    (
        "HandshakeResponse41 (4.1)",
        lambda b, c: HandshakeResponse41.decode((c | C.PROTOCOL_41).to_bytes(4, "little") + b),
    ),
    (
        "HandshakeResponse41 (4.1, 32+)",
        lambda b, c: HandshakeResponse41.decode(
            (c | C.PROTOCOL_41).to_bytes(4, "little") + bytes(28) + b
        ),
    ),
    ("AuthSwitchRequest", lambda b, c: AuthSwitchRequest.decode(b"\xfe" + b)),
    ("Ok", lambda b, c: Ok.decode(b"\x00" + b, c)),
    ("Err", lambda b, c: Err.decode(b"\xff" + b)),
    ("Eof", lambda b, c: Eof.decode(b"\xfe" + b)),
    ("ChangeUser", lambda b, c: ChangeUser.decode(b"\x11" + b, c)),
    ("query_text", lambda b, c: query_text(b"\x03" + b, c)),
    ("statement_id", lambda b, c: statement_id(b)),
    ("PrepareOk", lambda b, c: PrepareOk.decode(b"\x00" + b)),
    ("ColumnDefinition", lambda b, c: ColumnDefinition.decode(b)),
    ("eof_status", lambda b, c: eof_status(b, 0, len(b), bool(c & 1))),
    ("ok_status", lambda b, c: ok_status(b, 0, len(b))),
    ("ok_affected", lambda b, c: ok_affected(b, 0, len(b))),
    ("is_eof", lambda b, c: is_eof(b, 0, len(b), bool(c & 1))),
    ("text_row_spans", lambda b, c: text_row_spans(b, 0, len(b), c % 6)),
    ("decode_execute", lambda b, c: decode_execute(b"\x17" + b, c % 20)),
]


@FAST
@given(st.sampled_from(DECODERS), payloads, capabilities)
def test_decoders_raise_only_protocol_errors(
    decoder: tuple[str, Callable[[bytes, int], Any]], payload: bytes, caps: int
) -> None:
    _, decode = decoder
    with contextlib.suppress(MysqlProtocolError):
        decode(payload, caps)
