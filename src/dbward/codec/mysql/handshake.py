"""Connection phase messages: the server's greeting, the client's answer, TLS, auth switch."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbward.codec.mysql.constants import Capability
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.wire import (
    lenenc_int,
    lenenc_str,
    p16,
    p32,
    read_attributes,
    read_lenenc_str,
    read_nul_str,
    u16,
    u32,
)

C = Capability


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """The server's first packet: who it is, what it can do, and a nonce for auth."""

    server_version: str
    connection_id: int
    nonce: bytes  # 20 bytes of auth-plugin data
    capabilities: int
    charset: int = 45
    status: int = 2
    plugin: str = "mysql_native_password"
    mariadb_capabilities: int = 0  # MariaDB's extended flags (when LONG_PASSWORD is clear)

    def encode(self) -> bytes:
        caps = self.capabilities
        nonce = self.nonce
        reserved = (
            bytes(6) + p32(self.mariadb_capabilities) if self.mariadb_capabilities else bytes(10)
        )
        return b"".join(
            (
                b"\x0a",
                self.server_version.encode() + b"\x00",
                p32(self.connection_id),
                nonce[:8],
                b"\x00",
                p16(caps & 0xFFFF),
                bytes((self.charset & 0xFF,)),
                p16(self.status),
                p16(caps >> 16 & 0xFFFF),
                bytes((len(nonce) + 1,)),
                reserved,
                nonce[8:] + b"\x00",
                self.plugin.encode() + b"\x00",
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeV10:
        if not payload:
            raise MysqlProtocolError("empty greeting")
        if payload[0] == 0xFF:
            error = ErrLike.decode(payload)
            raise MysqlProtocolError(f"server refused the connection: {error}")
        if payload[0] != 10:
            raise MysqlProtocolError(f"unsupported protocol version {payload[0]} (need 10)")
        version, pos = read_nul_str(payload, 1)
        connection_id = u32(payload, pos)
        pos += 4
        nonce = payload[pos : pos + 8]
        pos += 9
        caps = u16(payload, pos)
        pos += 2
        charset, status, plugin, mariadb = 45, 0, "mysql_native_password", 0
        auth_len = 0
        if pos < len(payload):
            if pos + 16 > len(payload):
                raise MysqlProtocolError("greeting ends inside its capability flags")
            charset = payload[pos]
            status = u16(payload, pos + 1)
            caps |= u16(payload, pos + 3) << 16
            auth_len = payload[pos + 5]
            if not caps & C.LONG_PASSWORD:
                mariadb = u32(payload, pos + 12)
            pos += 16
            if caps & C.SECURE_CONNECTION:
                more = max(13, auth_len - 8)
                nonce += payload[pos : pos + more].rstrip(b"\x00")[:12]
                pos += more
            if caps & C.PLUGIN_AUTH and pos < len(payload):
                name, _ = (
                    read_nul_str(payload, pos)
                    if b"\x00" in payload[pos:]
                    else (payload[pos:], len(payload))
                )
                plugin = name.decode("ascii", "replace")
        return cls(
            version.decode("utf-8", "replace"),
            connection_id,
            nonce,
            caps,
            charset,
            status,
            plugin,
            mariadb,
        )


@dataclass(frozen=True, slots=True)
class SslRequest:
    """The short answer a client sends to ask for TLS before its real answer."""

    capabilities: int
    max_packet: int = 1 << 24
    charset: int = 45

    def encode(self) -> bytes:
        return (
            p32(self.capabilities | C.SSL)
            + p32(self.max_packet)
            + bytes((self.charset,))
            + bytes(23)
        )


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """The client's answer to the greeting: who, with what proof, to which database."""

    capabilities: int
    max_packet: int
    charset: int
    user: str
    auth_response: bytes
    database: str | None = None
    plugin: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def wants_tls(self) -> bool:
        return bool(self.capabilities & C.SSL)

    def encode(self) -> bytes:
        caps = self.capabilities
        out = [
            p32(caps),
            p32(self.max_packet),
            bytes((self.charset & 0xFF,)),
            bytes(23),
            self.user.encode() + b"\x00",
        ]
        if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(lenenc_str(self.auth_response))
        else:
            out.append(bytes((len(self.auth_response),)) + self.auth_response)
        if caps & C.CONNECT_WITH_DB:
            out.append((self.database or "").encode() + b"\x00")
        if caps & C.PLUGIN_AUTH:
            out.append((self.plugin or "").encode() + b"\x00")
        if caps & C.CONNECT_ATTRS:
            attrs = b"".join(
                lenenc_str(k.encode()) + lenenc_str(v.encode()) for k, v in self.attributes.items()
            )
            out.append(lenenc_int(len(attrs)) + attrs)
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> SslRequest | HandshakeResponse41:
        if len(payload) < 32:
            raise MysqlProtocolError(f"handshake response of {len(payload)} bytes is too short")
        caps = u32(payload, 0)
        if not caps & C.PROTOCOL_41:
            raise MysqlProtocolError("the client does not speak protocol 4.1 (too old)")
        max_packet = u32(payload, 4)
        charset = payload[8]
        if len(payload) == 32:
            if not caps & C.SSL:
                raise MysqlProtocolError("a 32-byte handshake response that is not an SSLRequest")
            return SslRequest(caps, max_packet, charset)
        user, pos = read_nul_str(payload, 32)
        if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth, pos = read_lenenc_str(payload, pos)
        elif caps & C.SECURE_CONNECTION:
            if pos >= len(payload):
                raise MysqlProtocolError("handshake response ends before its auth data")
            length = payload[pos]
            auth = payload[pos + 1 : pos + 1 + length]
            if len(auth) != length:
                raise MysqlProtocolError("handshake response's auth data runs past the packet")
            pos += 1 + length
        else:
            auth, pos = read_nul_str(payload, pos)
        database = None
        if caps & C.CONNECT_WITH_DB and pos < len(payload):
            raw, pos = read_nul_str(payload, pos)
            database = raw.decode("utf-8", "replace") or None
        plugin = None
        if caps & C.PLUGIN_AUTH and pos < len(payload):
            raw, pos = read_nul_str(payload, pos)
            plugin = raw.decode("ascii", "replace") or None
        attributes: dict[str, str] = {}
        if caps & C.CONNECT_ATTRS and pos < len(payload):
            attributes, pos = read_attributes(payload, pos)
        return cls(
            caps,
            max_packet,
            charset,
            user.decode("utf-8", "replace"),
            auth,
            database,
            plugin,
            attributes,
        )


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    """Server: authenticate again with this plugin and nonce."""

    plugin: str
    data: bytes = b""

    def encode(self) -> bytes:
        return b"\xfe" + self.plugin.encode() + b"\x00" + self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        if not payload or payload[0] != 0xFE:
            raise MysqlProtocolError("not an auth switch request")
        if len(payload) == 1:  # the pre-4.1 "old password" switch
            return cls("mysql_old_password")
        name, pos = read_nul_str(payload, 1)
        data = payload[pos:]
        if data.endswith(b"\x00"):
            data = data[:-1]
        return cls(name.decode("ascii", "replace"), data)


@dataclass(frozen=True, slots=True)
class AuthMoreData:
    """Server: more for the current plugin (0x01 + data)."""

    data: bytes

    def encode(self) -> bytes:
        return b"\x01" + self.data


class ErrLike:
    """Enough of an ERR packet to say why (the full one is :class:`~.packets.Err`)."""

    @staticmethod
    def decode(payload: bytes) -> str:
        code = u16(payload, 1) if len(payload) >= 3 else 0
        text = payload[3:]
        if text.startswith(b"#"):
            text = text[6:]
        return f"{code}: {text.decode('utf-8', 'replace')}"
