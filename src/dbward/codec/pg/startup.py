"""Startup-phase messages: the untyped packets a client sends first.

A client opens with SSLRequest, GSSENCRequest, CancelRequest or a
StartupMessage, each an int32 length followed by an int32 code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dbward.codec.pg.buffer import Reader, Writer, untyped_frame
from dbward.codec.pg.errors import ProtocolError

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3 = 3


@dataclass(frozen=True, slots=True)
class SSLRequest:
    def encode(self) -> bytes:
        return untyped_frame(struct.pack("!i", SSL_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    def encode(self) -> bytes:
        return untyped_frame(struct.pack("!i", GSSENC_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest:
    process_id: int
    secret_key: int

    def encode(self) -> bytes:
        return untyped_frame(
            struct.pack("!iiI", CANCEL_REQUEST_CODE, self.process_id, self.secret_key)
        )


@dataclass(frozen=True, slots=True)
class StartupMessage:
    parameters: dict[str, str] = field(default_factory=dict)
    major: int = PROTOCOL_3
    minor: int = 0

    @property
    def user(self) -> str:
        return self.parameters.get("user", "")

    @property
    def database(self) -> str:
        return self.parameters.get("database", "") or self.user

    def encode(self) -> bytes:
        w = Writer().int32((self.major << 16) | self.minor)  # minor is a uint16
        for name, value in self.parameters.items():
            w.cstring(name).cstring(value)
        w.byte(0)
        return untyped_frame(w.payload())


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def decode_startup_packet(payload: bytes) -> StartupPacket:
    """Decode one startup-phase packet (its body, without the length word)."""
    r = Reader(payload, "startup")
    code = r.int32()
    if code == SSL_REQUEST_CODE:
        r.done()
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.done()
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid = r.int32()
        secret = r.uint32()
        if r.remaining() > 0:
            # Protocol 3.2 allows longer cancel keys; keep the first 4 bytes' meaning only.
            raise ProtocolError("CancelRequest with a key longer than 4 bytes is not supported")
        return CancelRequest(pid, secret)
    major, minor = code >> 16, code & 0xFFFF
    if major != PROTOCOL_3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: dbward speaks protocol 3"
        )
    params: dict[str, str] = {}
    while True:
        name = r.cstring()
        if name == "":
            break
        if name in params:
            raise ProtocolError(f"startup packet repeats the parameter {name!r}")
        params[name] = r.cstring()
    r.done()
    if "user" not in params or not params["user"]:
        raise ProtocolError("no PostgreSQL user name specified in startup packet")
    return StartupMessage(params, major, minor)
