"""Generic response packets (OK, ERR, EOF) and the commands a client sends."""

from __future__ import annotations

from dataclasses import dataclass

from dbward.codec.mysql.constants import Capability, Command
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.wire import (
    lenenc_int,
    lenenc_str,
    p16,
    p32,
    read_attributes,
    read_lenenc,
    read_lenenc_str,
    read_nul_str,
    u16,
    u32,
)

OK = 0x00
EOF_HEADER = 0xFE
ERR = 0xFF
LOCAL_INFILE = 0xFB


@dataclass(frozen=True, slots=True)
class Ok:
    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = 2
    warnings: int = 0
    info: str = ""

    def encode(self, *, header: int = OK, capabilities: int = 0) -> bytes:
        """The packet; ``capabilities`` as negotiated (the info string's form depends on
        CLIENT_SESSION_TRACK)."""
        out = bytes((header,)) + lenenc_int(self.affected_rows) + lenenc_int(self.last_insert_id)
        out += p16(self.status) + p16(self.warnings)
        if self.info:
            info = self.info.encode()
            out += lenenc_str(info) if capabilities & Capability.SESSION_TRACK else info
        return out

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = 0) -> Ok:
        if not payload or payload[0] not in (OK, EOF_HEADER):
            raise MysqlProtocolError("not an OK packet")
        affected, pos = read_lenenc(payload, 1)
        insert_id, pos = read_lenenc(payload, pos)
        status = u16(payload, pos) if pos + 2 <= len(payload) else 0
        warnings = u16(payload, pos + 2) if pos + 4 <= len(payload) else 0
        pos += 4
        info = b""
        if pos < len(payload):
            if capabilities & Capability.SESSION_TRACK:
                try:
                    info, pos = read_lenenc_str(payload, pos)
                except MysqlProtocolError:
                    info = b""
            else:
                info = payload[pos:]
        return cls(affected, insert_id, status, warnings, info.decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class Err:
    code: int
    sqlstate: str
    message: str

    def encode(self) -> bytes:
        state = (self.sqlstate + "HY000")[:5].encode()
        return b"\xff" + p16(self.code) + b"#" + state + self.message.encode()

    @classmethod
    def decode(cls, payload: bytes) -> Err:
        if len(payload) < 3 or payload[0] != ERR:
            raise MysqlProtocolError("not an ERR packet")
        code = u16(payload, 1)
        rest = payload[3:]
        state = "HY000"
        if rest.startswith(b"#") and len(rest) >= 6:
            state = rest[1:6].decode("ascii", "replace")
            rest = rest[6:]
        return cls(code, state, rest.decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class Eof:
    warnings: int = 0
    status: int = 2

    def encode(self) -> bytes:
        return b"\xfe" + p16(self.warnings) + p16(self.status)

    @classmethod
    def decode(cls, payload: bytes) -> Eof:
        if not payload or payload[0] != EOF_HEADER:
            raise MysqlProtocolError("not an EOF packet")
        if len(payload) >= 5:
            return cls(u16(payload, 1), u16(payload, 3))
        return cls()


def is_eof(payload: bytes, start: int, end: int, deprecate_eof: bool) -> bool:
    """Is the packet at ``payload[start:end]`` an end-of-rows marker (EOF, or an OK with
    the EOF header when CLIENT_DEPRECATE_EOF is on), not a row starting with 0xFE?"""
    if start >= end or payload[start] != EOF_HEADER:
        return False
    return end - start < (0xFFFFFF if deprecate_eof else 9)


def eof_status(payload: bytes, start: int, end: int, deprecate_eof: bool) -> int:
    """The server status flags of an EOF (or EOF-headed OK) packet."""
    if deprecate_eof:
        _, pos = read_lenenc(payload, start + 1, end)
        _, pos = read_lenenc(payload, pos, end)
        return u16(payload, pos) if pos + 2 <= end else 0
    return u16(payload, start + 3) if end - start >= 5 else 0


def ok_status(payload: bytes, start: int, end: int) -> int:
    _, pos = read_lenenc(payload, start + 1, end)
    _, pos = read_lenenc(payload, pos, end)
    return u16(payload, pos) if pos + 2 <= end else 0


def ok_affected(payload: bytes, start: int, end: int) -> int:
    affected, _ = read_lenenc(payload, start + 1, end)
    return affected


# commands ----------------------------------------------------------------------------


def command_name(code: int) -> str:
    try:
        return "COM_" + Command(code).name
    except ValueError:
        return f"command 0x{code:02x}"


@dataclass(frozen=True, slots=True)
class ChangeUser:
    user: str
    auth_response: bytes
    database: str | None
    charset: int | None
    plugin: str | None
    attributes: dict[str, str]

    @classmethod
    def decode(cls, payload: bytes, capabilities: int) -> ChangeUser:
        user, pos = read_nul_str(payload, 1)
        if capabilities & Capability.SECURE_CONNECTION:
            if pos >= len(payload):
                raise MysqlProtocolError("COM_CHANGE_USER ends before its auth data")
            length = payload[pos]
            auth = payload[pos + 1 : pos + 1 + length]
            if len(auth) != length:
                raise MysqlProtocolError("COM_CHANGE_USER's auth data runs past the packet")
            pos += 1 + length
        else:
            auth, pos = read_nul_str(payload, pos)
        database: str | None = None
        charset: int | None = None
        plugin: str | None = None
        attributes: dict[str, str] = {}
        if pos < len(payload):
            raw, pos = read_nul_str(payload, pos)
            database = raw.decode("utf-8", "replace") or None
        if pos + 2 <= len(payload):
            charset = u16(payload, pos)
            pos += 2
        if capabilities & Capability.PLUGIN_AUTH and pos < len(payload):
            raw, pos = read_nul_str(payload, pos)
            plugin = raw.decode("ascii", "replace") or None
        if capabilities & Capability.CONNECT_ATTRS and pos < len(payload):
            attributes, pos = read_attributes(payload, pos)
        return cls(user.decode("utf-8", "replace"), auth, database, charset, plugin, attributes)


def query_text(payload: bytes, capabilities: int) -> str:
    """The SQL of a COM_QUERY (after its query attributes, when they are sent)."""
    pos = 1
    if capabilities & Capability.QUERY_ATTRIBUTES:
        count, pos = read_lenenc(payload, pos)
        _, pos = read_lenenc(payload, pos)  # parameter sets (always 1)
        if count:
            raise MysqlProtocolError("query attributes are not supported through dbward")
    return payload[pos:].decode("utf-8", "surrogateescape")


def statement_id(payload: bytes) -> int:
    """The statement id of a COM_STMT_EXECUTE/CLOSE/RESET/SEND_LONG_DATA/FETCH."""
    return u32(payload, 1)


@dataclass(frozen=True, slots=True)
class PrepareOk:
    statement_id: int
    columns: int
    params: int
    warnings: int = 0

    def encode(self) -> bytes:
        return (
            b"\x00"
            + p32(self.statement_id)
            + p16(self.columns)
            + p16(self.params)
            + b"\x00"
            + p16(self.warnings)
        )

    @classmethod
    def decode(cls, payload: bytes) -> PrepareOk:
        if len(payload) < 9 or payload[0] != OK:
            raise MysqlProtocolError("not a COM_STMT_PREPARE answer")
        warnings = u16(payload, 10) if len(payload) >= 12 else 0
        return cls(u32(payload, 1), u16(payload, 5), u16(payload, 7), warnings)


def local_infile_name(payload: bytes) -> str:
    return payload[1:].decode("utf-8", "replace")


def encode_query(sql: str) -> bytes:
    return bytes((Command.QUERY,)) + sql.encode()


def encode_lenenc_values(values: list[bytes | None]) -> bytes:
    return b"".join(b"\xfb" if v is None else lenenc_str(v) for v in values)
