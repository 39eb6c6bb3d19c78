"""The connection phase (handshake.py): greeting, client answer, TLS request, auth switch.

Layouts from the MySQL "Protocol::HandshakeV10", "Protocol::HandshakeResponse41",
"Protocol::SSLRequest" and "Protocol::AuthSwitchRequest" pages, and MariaDB's
"Connection" page for the extended capabilities in the greeting's reserved bytes
(present when CLIENT_MYSQL, bit 0, is clear).
"""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import Capability
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.handshake import (
    AuthMoreData,
    AuthSwitchRequest,
    ErrLike,
    HandshakeResponse41,
    HandshakeV10,
    SslRequest,
)

C = Capability
FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- greetings --------------------------------------------------------------------------------

# The greeting payload (without its 4-byte packet header) of a real MariaDB 10.11
# (10.11.19, Debian 12 package), captured once with a plain TCP socket from a local
# test server and pasted here; it is never fetched at test time.
MARIADB_10_11_GREETING = bytes.fromhex(
    "0a"  # protocol version 10
    "352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531"
    "00"
    # ^ "5.5.5-10.11.19-MariaDB-0+deb12u1" NUL (the 5.5.5- prefix is for old clients)
    "2a000000"  # connection id 42
    "4f266c706f5b592c"  # auth-plugin-data part 1 (8 bytes)
    "00"  # filler
    "fef7"  # capabilities, low 16 bits: 0xf7fe (bit 0 CLIENT_MYSQL clear: MariaDB)
    "2d"  # character set 45 (utf8mb4_general_ci)
    "0200"  # status: AUTOCOMMIT
    "ff81"  # capabilities, high 16 bits: 0x81ff
    "15"  # auth-plugin-data length 21
    "000000000000"  # 6 reserved bytes
    "1d000000"  # MariaDB extended capabilities 0x1d
    "706f5c615151235979745d51"
    "00"  # auth-plugin-data part 2 (12 bytes) and its NUL
    "6d7973716c5f6e61746976655f70617373776f7264"
    "00"  # "mysql_native_password" NUL
)

# A MySQL 8.0-style greeting spelled by hand: CLIENT_MYSQL set (no MariaDB flags),
# caching_sha2_password, collation 255.
MYSQL_8_GREETING = (
    b"\x0a"
    + b"8.0.36\x00"
    + b"\x0c\x00\x00\x00"  # connection id 12
    + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    + b"\x00"
    + b"\xff\xff"  # capabilities low
    + b"\xff"  # utf8mb4_0900_ai_ci
    + b"\x02\x00"
    + b"\xff\xdf"  # capabilities high
    + b"\x15"
    + b"\x00" * 10
    + b"\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"
    + b"\x00"
    + b"caching_sha2_password\x00"
)


def test_mariadb_greeting_decodes() -> None:
    greeting = HandshakeV10.decode(MARIADB_10_11_GREETING)
    assert greeting.server_version == "5.5.5-10.11.19-MariaDB-0+deb12u1"
    assert greeting.connection_id == 42
    assert greeting.nonce == bytes.fromhex("4f266c706f5b592c706f5c615151235979745d51")
    assert len(greeting.nonce) == 20
    assert greeting.capabilities == 0x81FF_F7FE
    assert not greeting.capabilities & C.LONG_PASSWORD  # CLIENT_MYSQL: clear on MariaDB
    for flag in (
        C.PROTOCOL_41,
        C.SECURE_CONNECTION,
        C.PLUGIN_AUTH,
        C.PLUGIN_AUTH_LENENC_CLIENT_DATA,
        C.CONNECT_ATTRS,
        C.MULTI_STATEMENTS,
        C.MULTI_RESULTS,
        C.PS_MULTI_RESULTS,
        C.SESSION_TRACK,
        C.DEPRECATE_EOF,
        C.CONNECT_WITH_DB,
    ):
        assert greeting.capabilities & flag, flag
    assert not greeting.capabilities & C.SSL  # this test server has no TLS
    assert greeting.charset == 45
    assert greeting.status == 2
    assert greeting.plugin == "mysql_native_password"
    assert greeting.mariadb_capabilities == 0x1D


def test_mariadb_greeting_reencodes_byte_for_byte() -> None:
    assert HandshakeV10.decode(MARIADB_10_11_GREETING).encode() == MARIADB_10_11_GREETING


def test_mysql_8_greeting() -> None:
    greeting = HandshakeV10.decode(MYSQL_8_GREETING)
    assert greeting == HandshakeV10(
        "8.0.36",
        12,
        bytes(range(1, 21)),
        0xDFFF_FFFF,
        255,
        2,
        "caching_sha2_password",
        0,
    )
    assert greeting.encode() == MYSQL_8_GREETING


def test_greeting_without_the_optional_part() -> None:
    # "if more data in the packet": a greeting may stop after the low capability flags
    payload = b"\x0a" + b"3.23\x00" + b"\x01\x00\x00\x00" + b"abcdefgh" + b"\x00" + b"\x00\x82"
    greeting = HandshakeV10.decode(payload)
    assert greeting.nonce == b"abcdefgh"
    assert greeting.capabilities == C.PROTOCOL_41 | C.SECURE_CONNECTION
    assert greeting.plugin == "mysql_native_password"
    assert greeting.status == 0


def test_greeting_plugin_name_without_its_nul() -> None:
    # some servers (MySQL 5.5.7-5.5.9) left the plugin name's NUL out
    payload = MYSQL_8_GREETING[:-1]
    assert HandshakeV10.decode(payload).plugin == "caching_sha2_password"


def test_greeting_that_is_an_error() -> None:
    payload = b"\xff\x6a\x04" + b"Host '10.0.0.9' is not allowed to connect to this MariaDB server"
    with pytest.raises(MysqlProtocolError, match="refused the connection: 1130: Host"):
        HandshakeV10.decode(payload)


def test_greeting_with_an_error_and_sqlstate() -> None:
    payload = b"\xff\x10\x04#08004Too many connections"
    with pytest.raises(MysqlProtocolError, match="1040: Too many connections"):
        HandshakeV10.decode(payload)


@pytest.mark.parametrize("payload", [b"", b"\x09" + MYSQL_8_GREETING[1:]])
def test_greeting_not_protocol_10(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError):
        HandshakeV10.decode(payload)


@pytest.mark.parametrize("cut", [1, 5, 8, 11, 15, 19, 20])
def test_truncated_greeting_before_the_optional_part(cut: int) -> None:
    with pytest.raises(MysqlProtocolError):
        HandshakeV10.decode(MYSQL_8_GREETING[:cut])


def test_every_truncation_of_a_greeting_raises_protocol_error() -> None:
    for cut in range(len(MARIADB_10_11_GREETING)):
        with contextlib.suppress(MysqlProtocolError):
            HandshakeV10.decode(MARIADB_10_11_GREETING[:cut])


greetings = st.builds(
    HandshakeV10,
    server_version=st.text(
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30
    ),
    connection_id=st.integers(0, 2**32 - 1),
    nonce=st.binary(min_size=20, max_size=20).map(
        lambda b: bytes(x or 1 for x in b)  # servers never put a NUL in the nonce
    ),
    capabilities=st.integers(0, 2**32 - 1).map(
        lambda c: c | C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH
    ),
    charset=st.integers(0, 255),
    status=st.integers(0, 0xFFFF),
    plugin=st.sampled_from(["mysql_native_password", "caching_sha2_password", "ed25519", ""]),
    mariadb_capabilities=st.just(0),
).flatmap(
    lambda g: (
        st.just(g)
        if g.capabilities & C.LONG_PASSWORD
        else st.integers(0, 2**32 - 1).map(
            lambda m: HandshakeV10(
                g.server_version,
                g.connection_id,
                g.nonce,
                g.capabilities,
                g.charset,
                g.status,
                g.plugin,
                m,
            )
        )
    )
)


@FAST
@given(greetings)
def test_greeting_round_trip(greeting: HandshakeV10) -> None:
    encoded = greeting.encode()
    assert HandshakeV10.decode(encoded) == greeting
    assert HandshakeV10.decode(encoded).encode() == encoded


# -- the client's answer ----------------------------------------------------------------------

# The MySQL docs' HandshakeResponse41 example: capabilities 0x000fa68d (no
# PLUGIN_AUTH_LENENC_CLIENT_DATA, no CONNECT_ATTRS), max packet 16 MiB, charset 8,
# user "pam", a 20-byte native scramble with a one-byte length, database "test".
DOCS_RESPONSE = bytes.fromhex(
    "8da60f00"
    "00000001"
    "08"
    "0000000000000000000000000000000000000000000000"
    "70616d00"
    "14"
    "ab09eef6bcb1323e61143865c0991d957d75d447"
    "7465737400"
    "6d7973716c5f6e61746976655f70617373776f726400"
)

LENENC_ATTRS_RESPONSE = (
    # PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | PLUGIN_AUTH_LENENC_CLIENT_DATA |
    # CONNECT_ATTRS | LONG_PASSWORD | DEPRECATE_EOF = 0x013a8201
    b"\x01\x82\x38\x01"
    + b"\x00\x00\x00\x40"  # max packet 1 GiB
    + b"\x2d"
    + bytes(23)
    + b"app\x00"
    + b"\x20"
    + bytes(range(32))  # a 32-byte caching_sha2_password scramble, lenenc length
    + b"caching_sha2_password\x00"
    + b"\x22"  # 34 bytes of attributes
    + b"\x03_os\x05Linux"
    + b"\x0c_client_name\x0alibmariadb"
)


def test_docs_handshake_response() -> None:
    hello = HandshakeResponse41.decode(DOCS_RESPONSE)
    assert isinstance(hello, HandshakeResponse41)
    assert hello == HandshakeResponse41(
        0x000FA68D,
        1 << 24,
        8,
        "pam",
        bytes.fromhex("ab09eef6bcb1323e61143865c0991d957d75d447"),
        "test",
        "mysql_native_password",
        {},
    )
    assert not hello.wants_tls
    assert hello.encode() == DOCS_RESPONSE


def test_handshake_response_with_lenenc_auth_and_attributes() -> None:
    hello = HandshakeResponse41.decode(LENENC_ATTRS_RESPONSE)
    assert isinstance(hello, HandshakeResponse41)
    assert hello.capabilities == 0x0138_8201
    assert hello.max_packet == 1 << 30
    assert hello.user == "app"
    assert hello.auth_response == bytes(range(32))
    assert hello.database is None
    assert hello.plugin == "caching_sha2_password"
    assert hello.attributes == {"_os": "Linux", "_client_name": "libmariadb"}
    assert hello.encode() == LENENC_ATTRS_RESPONSE


def test_handshake_response_with_a_long_lenenc_auth_response() -> None:
    # a 256-byte RSA-encrypted password needs a 3-byte length-encoded length
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
    payload = (
        (caps).to_bytes(4, "little")
        + b"\x00\x00\x00\x01"
        + b"\x2d"
        + bytes(23)
        + b"u\x00"
        + b"\xfc\x00\x01"
        + b"\xa5" * 256
        + b"caching_sha2_password\x00"
    )
    hello = HandshakeResponse41.decode(payload)
    assert isinstance(hello, HandshakeResponse41)
    assert hello.auth_response == b"\xa5" * 256
    assert hello.plugin == "caching_sha2_password"
    assert hello.encode() == payload


def test_handshake_response_with_database_no_plugin() -> None:
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.CONNECT_WITH_DB
    payload = (
        caps.to_bytes(4, "little")
        + b"\xff\xff\xff\x00"
        + b"\x21"
        + bytes(23)
        + b"root\x00"
        + b"\x00"  # empty password: no auth data
        + b"shop\x00"
    )
    hello = HandshakeResponse41.decode(payload)
    assert isinstance(hello, HandshakeResponse41)
    assert (hello.user, hello.auth_response, hello.database, hello.plugin) == (
        "root",
        b"",
        "shop",
        None,
    )
    assert hello.encode() == payload


def test_handshake_response_of_a_client_that_stops_after_auth() -> None:
    # flags promise a database and a plugin, but the packet ends after the auth data
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.CONNECT_WITH_DB | C.PLUGIN_AUTH
    payload = caps.to_bytes(4, "little") + bytes(4) + b"\x08" + bytes(23) + b"x\x00\x01\xaa"
    hello = HandshakeResponse41.decode(payload)
    assert isinstance(hello, HandshakeResponse41)
    assert (hello.auth_response, hello.database, hello.plugin) == (b"\xaa", None, None)


def test_handshake_response_without_secure_connection_has_nul_terminated_auth() -> None:
    caps = C.PROTOCOL_41 | C.PLUGIN_AUTH
    payload = (
        caps.to_bytes(4, "little")
        + bytes(4)
        + b"\x08"
        + bytes(23)
        + b"old\x00"
        + b"abcdefgh\x00"
        + b"mysql_old_password\x00"
    )
    hello = HandshakeResponse41.decode(payload)
    assert isinstance(hello, HandshakeResponse41)
    assert (hello.auth_response, hello.plugin) == (b"abcdefgh", "mysql_old_password")


SSL_REQUEST = (
    # PROTOCOL_41 | SECURE_CONNECTION | SSL | PLUGIN_AUTH | LONG_PASSWORD = 0x00088a01
    b"\x01\x8a\x08\x00" + b"\x00\x00\x00\x01" + b"\x2d" + bytes(23)
)


def test_ssl_request_is_detected_by_its_32_bytes() -> None:
    assert len(SSL_REQUEST) == 32
    request = HandshakeResponse41.decode(SSL_REQUEST)
    assert request == SslRequest(0x0008_8A01, 1 << 24, 45)
    assert SslRequest(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | 1).encode() == (
        SSL_REQUEST
    )


def test_ssl_request_encode_sets_the_ssl_flag() -> None:
    encoded = SslRequest(C.PROTOCOL_41, max_packet=1000, charset=8).encode()
    assert encoded == (C.PROTOCOL_41 | C.SSL).to_bytes(4, "little") + b"\xe8\x03\x00\x00\x08" + (
        bytes(23)
    )


def test_full_response_after_tls_keeps_the_ssl_flag() -> None:
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.SSL
    payload = caps.to_bytes(4, "little") + bytes(4) + b"\x08" + bytes(23) + b"u\x00\x00"
    hello = HandshakeResponse41.decode(payload)
    assert isinstance(hello, HandshakeResponse41)
    assert hello.wants_tls


def test_32_bytes_without_ssl_is_an_error() -> None:
    payload = (C.PROTOCOL_41 | C.SECURE_CONNECTION).to_bytes(4, "little") + bytes(28)
    with pytest.raises(MysqlProtocolError, match="not an SSLRequest"):
        HandshakeResponse41.decode(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (SSL_REQUEST[:31], "too short"),
        (b"\x85\x24\x00\x00" + bytes(28) + b"u\x00", "4.1"),  # HandshakeResponse320 flags
        (DOCS_RESPONSE[:35], "no NUL"),  # the user name is cut before its NUL
        (DOCS_RESPONSE[:36], "before its auth data"),
        (DOCS_RESPONSE[:50], "auth data runs past"),
        (LENENC_ATTRS_RESPONSE[:40], "runs past"),  # the lenenc scramble is cut
        (LENENC_ATTRS_RESPONSE[:-3], "run past"),  # the attributes are cut
        # attributes' total length (0x22) says 0x30
        (LENENC_ATTRS_RESPONSE[:-35] + b"\x30" + LENENC_ATTRS_RESPONSE[-34:], "run past"),
        # the total is right but the last value's length (0x0a) says 0x0b
        (LENENC_ATTRS_RESPONSE[:-11] + b"\x0b" + LENENC_ATTRS_RESPONSE[-10:], "runs past"),
    ],
)
def test_malformed_handshake_responses(payload: bytes, message: str) -> None:
    with pytest.raises(MysqlProtocolError, match=message):
        HandshakeResponse41.decode(payload)


def test_every_truncation_of_a_handshake_response_raises_protocol_error_or_decodes() -> None:
    for full in (DOCS_RESPONSE, LENENC_ATTRS_RESPONSE, SSL_REQUEST):
        for cut in range(len(full)):
            with contextlib.suppress(MysqlProtocolError):
                HandshakeResponse41.decode(full[:cut])


names = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=16)
plugins = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=24)


@st.composite
def handshake_responses(draw: st.DrawFn) -> HandshakeResponse41:
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION
    for flag in (
        C.CONNECT_WITH_DB,
        C.PLUGIN_AUTH,
        C.CONNECT_ATTRS,
        C.PLUGIN_AUTH_LENENC_CLIENT_DATA,
    ):
        if draw(st.booleans()):
            caps |= flag
    auth_max = 300 if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA else 255
    return HandshakeResponse41(
        caps,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 255)),
        draw(names),
        draw(st.binary(max_size=auth_max)),
        draw(names.filter(bool)) if caps & C.CONNECT_WITH_DB else None,
        draw(plugins) if caps & C.PLUGIN_AUTH else None,
        draw(st.dictionaries(st.text(max_size=8), st.text(max_size=300), max_size=4))
        if caps & C.CONNECT_ATTRS
        else {},
    )


@FAST
@given(handshake_responses())
def test_handshake_response_round_trip(hello: HandshakeResponse41) -> None:
    assert HandshakeResponse41.decode(hello.encode()) == hello


# -- auth switch and more data ----------------------------------------------------------------

NONCE = b"zQg4i6oNy6=]YYY_If*M"  # 20 bytes, no NUL


def test_auth_switch_request() -> None:
    payload = b"\xfe" + b"mysql_native_password\x00" + NONCE + b"\x00"
    switch = AuthSwitchRequest.decode(payload)
    assert switch == AuthSwitchRequest("mysql_native_password", NONCE)
    assert switch.encode() == b"\xfe" + b"mysql_native_password\x00" + NONCE


def test_auth_switch_request_to_clear_password_without_data() -> None:
    payload = b"\xfemysql_clear_password\x00"
    assert AuthSwitchRequest.decode(payload) == AuthSwitchRequest("mysql_clear_password", b"")
    assert AuthSwitchRequest("mysql_clear_password").encode() == payload


def test_old_auth_switch_request() -> None:
    assert AuthSwitchRequest.decode(b"\xfe") == AuthSwitchRequest("mysql_old_password")


@pytest.mark.parametrize("payload", [b"", b"\x01abc", b"\x00", b"\xfemysql_native_password"])
def test_not_an_auth_switch_request(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError):
        AuthSwitchRequest.decode(payload)


@FAST
@given(plugins, st.binary(max_size=40))
def test_auth_switch_round_trip(plugin: str, data: bytes) -> None:
    decoded = AuthSwitchRequest.decode(AuthSwitchRequest(plugin, data).encode())
    # one trailing NUL is the terminator servers put after the nonce
    assert decoded == AuthSwitchRequest(plugin, data[:-1] if data.endswith(b"\x00") else data)


def test_auth_more_data() -> None:
    assert AuthMoreData(b"\x04").encode() == b"\x01\x04"  # caching_sha2: perform full auth
    assert AuthMoreData(b"-----BEGIN PUBLIC KEY-----").encode()[:1] == b"\x01"


def test_err_like() -> None:
    assert ErrLike.decode(b"\xff\x15\x04#28000Access denied") == "1045: Access denied"
    assert ErrLike.decode(b"\xff\x15\x04Access denied") == "1045: Access denied"
    assert ErrLike.decode(b"\xff") == "0: "
