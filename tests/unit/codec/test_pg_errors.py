"""Bad input gives ProtocolError, with a message that names the cause."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import BackendParser, FrontendParser, StartupParser
from dbward.errors import DbwardError

NULL = b"\xff\xff\xff\xff"


def frontend(data: bytes) -> None:
    FrontendParser().feed(data)


def backend(data: bytes) -> None:
    BackendParser().feed(data)


def startup(data: bytes) -> None:
    StartupParser().feed(data)


def test_protocol_error_is_a_dbward_error_with_sqlstate() -> None:
    with pytest.raises(ProtocolError) as caught:
        frontend(b"Q\x00\x00\x00\x03")
    assert isinstance(caught.value, DbwardError)
    assert caught.value.sqlstate == "08P01"


# --------------------------------------------------------------------------
# Framing.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("parse", [frontend, backend])
@pytest.mark.parametrize("length", [b"\x00\x00\x00\x00", b"\x00\x00\x00\x03", b"\xff\xff\xff\xff"])
def test_length_below_four(parse: Callable[[bytes], None], length: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"of type 'Q' has invalid length -?\d"):
        parse(b"Q" + length)


def test_invalid_length_reported_as_soon_as_the_header_is_complete() -> None:
    parser = BackendParser()
    for byte in b"Z\x00\x00\x00":
        assert parser.feed(bytes((byte,))) == []
    with pytest.raises(ProtocolError, match="invalid length 2"):
        parser.feed(b"\x02")


def test_oversized_frontend_message() -> None:
    parser = FrontendParser(max_message=100)
    # Refused from the header alone, before the 97 payload bytes arrive.
    with pytest.raises(
        ProtocolError, match="frontend message of type 'Q' is 101 bytes, over the 100-byte limit"
    ):
        parser.feed(b"Q\x00\x00\x00\x65")


def test_oversized_backend_message() -> None:
    parser = BackendParser(max_message=100)
    with pytest.raises(
        ProtocolError, match="backend message of type 'D' is 101 bytes, over the 100-byte limit"
    ):
        parser.feed(b"D\x00\x00\x00\x65")


def test_oversized_backend_message_after_a_good_one() -> None:
    parser = BackendParser(max_message=100)
    with pytest.raises(ProtocolError, match="backend message of type 'D' is 1000 bytes"):
        parser.feed(b"I\x00\x00\x00\x04D\x00\x00\x03\xe8")


def test_message_at_the_limit_is_accepted() -> None:
    parser = FrontendParser(max_message=13)
    assert len(parser.feed(b"Q\x00\x00\x00\x0dSELECT 1\x00")) == 1


def test_default_limit_refuses_a_2_gib_header() -> None:
    with pytest.raises(ProtocolError, match="over the 268435456-byte limit"):
        frontend(b"d\x7f\xff\xff\xff")


@pytest.mark.parametrize("type_byte", [b"Z", b"T", b"\x00", b"\xff", b"q"])
def test_unknown_frontend_message_type(type_byte: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid frontend message type"):
        frontend(type_byte + b"\x00\x00\x00\x04")


@pytest.mark.parametrize("type_byte", [b"Q", b"P", b"B", b"\x00", b"\xff", b"X"])
def test_unknown_backend_message_type(type_byte: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid backend message type"):
        backend(type_byte + b"\x00\x00\x00\x04")


# --------------------------------------------------------------------------
# Startup packets.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length", [b"\x00\x00\x00\x00", b"\x00\x00\x00\x04", b"\x00\x00\x00\x07", b"\xff\xff\xff\xf8"]
)
def test_undersized_startup_packet(length: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid length of startup packet"):
        startup(length)


def test_oversized_startup_packet() -> None:
    with pytest.raises(
        ProtocolError, match="startup packet of 10001 bytes is over the 10000-byte limit"
    ):
        startup(b"\x00\x00\x27\x11")  # refused from the length word alone


def test_oversized_startup_packet_custom_limit() -> None:
    with pytest.raises(ProtocolError, match="over the 64-byte limit"):
        StartupParser(max_packet=64).feed(b"\x00\x00\x00\x41")


def test_tls_client_hello_is_not_a_startup_packet() -> None:
    # A client that starts TLS without an SSLRequest: 0x16 0x03 0x01 ... reads as a huge length.
    with pytest.raises(ProtocolError, match="over the 10000-byte limit"):
        startup(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")


def test_protocol_version_2() -> None:
    with pytest.raises(
        ProtocolError, match=r"unsupported frontend protocol 2\.0: dbward speaks protocol 3"
    ):
        startup(b"\x00\x00\x00\x12\x00\x02\x00\x00user\x00bob\x00\x00")


def test_protocol_version_4() -> None:
    with pytest.raises(ProtocolError, match=r"unsupported frontend protocol 4\.0"):
        startup(b"\x00\x00\x00\x12\x00\x04\x00\x00user\x00bob\x00\x00")


def test_startup_without_user() -> None:
    with pytest.raises(ProtocolError, match="no PostgreSQL user name specified"):
        startup(b"\x00\x00\x00\x15\x00\x03\x00\x00database\x00db\x00\x00")


def test_startup_with_empty_user() -> None:
    with pytest.raises(ProtocolError, match="no PostgreSQL user name specified"):
        startup(b"\x00\x00\x00\x0f\x00\x03\x00\x00user\x00\x00\x00")


def test_startup_without_any_parameter() -> None:
    with pytest.raises(ProtocolError, match="no PostgreSQL user name specified"):
        startup(b"\x00\x00\x00\x09\x00\x03\x00\x00\x00")


def test_duplicate_startup_parameter() -> None:
    with pytest.raises(ProtocolError, match="repeats the parameter 'user'"):
        startup(b"\x00\x00\x00\x1b\x00\x03\x00\x00user\x00bob\x00user\x00eve\x00\x00")


def test_startup_parameter_without_value() -> None:
    with pytest.raises(ProtocolError, match="startup message has an unterminated string"):
        startup(b"\x00\x00\x00\x0d\x00\x03\x00\x00user\x00")


def test_startup_missing_final_terminator() -> None:
    with pytest.raises(ProtocolError, match="startup message has an unterminated string"):
        startup(b"\x00\x00\x00\x11\x00\x03\x00\x00user\x00bob\x00")


def test_startup_parameter_not_utf8() -> None:
    with pytest.raises(ProtocolError, match="startup message has a string that is not UTF-8"):
        startup(b"\x00\x00\x00\x12\x00\x03\x00\x00user\x00b\xffb\x00\x00")


def test_startup_extra_bytes_after_terminator() -> None:
    with pytest.raises(ProtocolError, match="startup message has 2 unexpected extra bytes"):
        startup(b"\x00\x00\x00\x14\x00\x03\x00\x00user\x00bob\x00\x00xx")


def test_ssl_request_with_extra_bytes() -> None:
    with pytest.raises(ProtocolError, match="startup message has 4 unexpected extra bytes"):
        startup(b"\x00\x00\x00\x0c\x04\xd2\x16\x2f\x00\x00\x00\x00")


def test_cancel_request_truncated() -> None:
    with pytest.raises(ProtocolError, match="startup message is truncated"):
        startup(b"\x00\x00\x00\x0c\x04\xd2\x16\x2e\x00\x00\x10\x92")


def test_cancel_request_with_a_longer_key() -> None:
    with pytest.raises(ProtocolError, match="CancelRequest with a key longer than 4 bytes"):
        startup(b"\x00\x00\x00\x14\x04\xd2\x16\x2e\x00\x00\x10\x92" + b"\x01" * 8)


# --------------------------------------------------------------------------
# Frontend payloads.
# --------------------------------------------------------------------------

FRONTEND_BAD = [
    # truncated payloads
    pytest.param(
        b"P\x00\x00\x00\x14\x00SELECT 1\x00\x00\x02\x00\x00\x00\x17",
        "Parse message is truncated",
        id="Parse-missing-param-type",
    ),
    pytest.param(
        b"P\x00\x00\x00\x0f\x00SELECT 1\x00\x00",
        "Parse message is truncated",
        id="Parse-half-count",
    ),
    pytest.param(
        b"B\x00\x00\x00\x10\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0a42",
        "Bind message is truncated",
        id="Bind-value-shorter-than-length",
    ),
    pytest.param(
        b"B\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00",
        "Bind message is truncated",
        id="Bind-missing-result-formats",
    ),
    pytest.param(
        b"E\x00\x00\x00\x07\x00\x00\x00",
        "Execute message is truncated",
        id="Execute-half-max-rows",
    ),
    pytest.param(b"D\x00\x00\x00\x04", "Describe message is truncated", id="Describe-empty"),
    # unterminated strings
    pytest.param(
        b"Q\x00\x00\x00\x0cSELECT 1",
        "Query message has an unterminated string",
        id="Query-no-terminator",
    ),
    pytest.param(
        b"Q\x00\x00\x00\x04", "Query message has an unterminated string", id="Query-empty"
    ),
    pytest.param(
        b"P\x00\x00\x00\x07s1\x00",
        "Parse message has an unterminated string",
        id="Parse-no-sql",
    ),
    pytest.param(
        b"D\x00\x00\x00\x07Ss1",
        "Describe message has an unterminated string",
        id="Describe-name",
    ),
    pytest.param(
        b"f\x00\x00\x00\x08oops", "CopyFail message has an unterminated string", id="CopyFail"
    ),
    # non-UTF-8 strings
    pytest.param(
        b"Q\x00\x00\x00\x07\xff\xfe\x00",
        "Query message has a string that is not UTF-8",
        id="Query-not-utf8",
    ),
    pytest.param(
        b"P\x00\x00\x00\x0a\xc3\x00x\x00\x00\x00",
        "Parse message has a string that is not UTF-8",
        id="Parse-name-not-utf8",
    ),
    # extra bytes
    pytest.param(b"S\x00\x00\x00\x05\x00", "Sync message has 1 unexpected extra", id="Sync"),
    pytest.param(b"H\x00\x00\x00\x05x", "Flush message has 1 unexpected extra", id="Flush"),
    pytest.param(
        b"X\x00\x00\x00\x06xx", "Terminate message has 2 unexpected extra", id="Terminate"
    ),
    pytest.param(b"c\x00\x00\x00\x05x", "CopyDone message has 1 unexpected extra", id="CopyDone"),
    pytest.param(
        b"Q\x00\x00\x00\x0fSELECT 1\x00xx",
        "Query message has 2 unexpected extra bytes",
        id="Query-after-terminator",
    ),
    pytest.param(
        b"E\x00\x00\x00\x0a\x00\x00\x00\x00\x00x",
        "Execute message has 1 unexpected extra bytes",
        id="Execute",
    ),
    # negative counts and lengths
    pytest.param(
        b"P\x00\x00\x00\x10\x00SELECT 1\x00\xff\xff",
        "Parse message has a negative parameter count",
        id="Parse-negative-count",
    ),
    pytest.param(
        b"B\x00\x00\x00\x08\x00\x00\xff\xff",
        "Bind message has a negative parameter format count",
        id="Bind-negative-format-count",
    ),
    pytest.param(
        b"B\x00\x00\x00\x0a\x00\x00\x00\x00\xff\xfe",
        "Bind message has a negative parameter count",
        id="Bind-negative-param-count",
    ),
    pytest.param(
        b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x80\x00",
        "Bind message has a negative result format count",
        id="Bind-negative-result-count",
    ),
    pytest.param(
        b"B\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe",
        "Bind message has an invalid parameter length",
        id="Bind-value-length-minus-2",
    ),
    # invalid target types
    pytest.param(
        b"D\x00\x00\x00\x06X\x00",
        "Describe message has an invalid target type 'X'",
        id="Describe-X",
    ),
    pytest.param(
        b"C\x00\x00\x00\x06s\x00",
        "Close message has an invalid target type 's'",
        id="Close-lowercase",
    ),
]


@pytest.mark.parametrize(("data", "cause"), FRONTEND_BAD)
def test_bad_frontend_payload(data: bytes, cause: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        frontend(data)
    assert cause in str(caught.value)


@pytest.mark.parametrize(("data", "cause"), FRONTEND_BAD)
def test_bad_frontend_payload_byte_by_byte(data: bytes, cause: str) -> None:
    # The error comes with the message's last byte, not before and not never.
    parser = FrontendParser()
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) == []
    with pytest.raises(ProtocolError, match="message"):
        parser.feed(data[-1:])


def test_password_message_password_checks_its_payload() -> None:
    (message,) = FrontendParser().feed(b"p\x00\x00\x00\x07abc")
    with pytest.raises(ProtocolError, match="PasswordMessage message has an unterminated string"):
        message.password()  # type: ignore[union-attr]


# --------------------------------------------------------------------------
# Backend payloads.
# --------------------------------------------------------------------------

BACKEND_BAD = [
    # truncated payloads
    pytest.param(b"R\x00\x00\x00\x06\x00\x00", "'R' message is truncated", id="Auth-half-code"),
    pytest.param(
        b"R\x00\x00\x00\x0a\x00\x00\x00\x05\x01\x02",
        "'R' message is truncated",
        id="AuthMD5-short-salt",
    ),
    pytest.param(
        b"K\x00\x00\x00\x08\x00\x00\x10\x92", "'K' message is truncated", id="BackendKeyData"
    ),
    pytest.param(
        b"T\x00\x00\x00\x0d\x00\x01id\x00\x00\x00\x40\x00",
        "'T' message is truncated",
        id="RowDescription",
    ),
    pytest.param(
        b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x05a",
        "'D' message is truncated",
        id="DataRow-value-shorter-than-length",
    ),
    pytest.param(b"D\x00\x00\x00\x04", "'D' message is truncated", id="DataRow-empty"),
    pytest.param(b"Z\x00\x00\x00\x04", "'Z' message is truncated", id="ReadyForQuery-empty"),
    pytest.param(
        b"t\x00\x00\x00\x0a\x00\x02\x00\x00\x00\x17",
        "'t' message is truncated",
        id="ParameterDescription",
    ),
    pytest.param(
        b"G\x00\x00\x00\x09\x00\x00\x02\x00\x00",
        "'G' message is truncated",
        id="CopyInResponse",
    ),
    pytest.param(
        b"A\x00\x00\x00\x06\x00\x00", "'A' message is truncated", id="NotificationResponse"
    ),
    pytest.param(
        b"v\x00\x00\x00\x08\x00\x00\x00\x00",
        "'v' message is truncated",
        id="NegotiateProtocolVersion",
    ),
    pytest.param(b"E\x00\x00\x00\x04", "'E' message is truncated", id="ErrorResponse-empty"),
    # unterminated strings
    pytest.param(
        b"S\x00\x00\x00\x09a\x00bcd",
        "'S' message has an unterminated string",
        id="ParameterStatus-value",
    ),
    pytest.param(
        b"C\x00\x00\x00\x0cSELECT 1",
        "'C' message has an unterminated string",
        id="CommandComplete",
    ),
    pytest.param(
        b"E\x00\x00\x00\x0aSERROR",
        "'E' message has an unterminated string",
        id="ErrorResponse-field",
    ),
    pytest.param(
        b"R\x00\x00\x00\x15\x00\x00\x00\x0aSCRAM-SHA-256",
        "'R' message has an unterminated string",
        id="AuthSASL-unterminated-list",
    ),
    pytest.param(
        b"v\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x00\x00\x02a\x00",
        "'v' message has an unterminated string",
        id="NegotiateProtocolVersion-missing-name",
    ),
    # non-UTF-8 strings
    pytest.param(
        b"E\x00\x00\x00\x08M\xe9\x00\x00",
        "'E' message has a string that is not UTF-8",
        id="ErrorResponse-latin1",
    ),
    pytest.param(
        b"T\x00\x00\x00\x19\x00\x01\xff\x00" + b"\x00" * 18,
        "'T' message has a string that is not UTF-8",
        id="RowDescription-name",
    ),
    # extra bytes
    pytest.param(
        b"R\x00\x00\x00\x09\x00\x00\x00\x00x",
        "'R' message has 1 unexpected extra bytes",
        id="AuthenticationOk",
    ),
    pytest.param(
        b"R\x00\x00\x00\x0d\x00\x00\x00\x05\x01\x02\x03\x04\x05",
        "'R' message has 1 unexpected extra bytes",
        id="AuthMD5-long-salt",
    ),
    pytest.param(
        b"K\x00\x00\x00\x10\x00\x00\x10\x92" + b"\x01" * 8,
        "'K' message has 4 unexpected extra bytes",
        id="BackendKeyData-long-key",
    ),
    pytest.param(
        b"Z\x00\x00\x00\x06II", "'Z' message has 1 unexpected extra bytes", id="ReadyForQuery"
    ),
    pytest.param(
        b"1\x00\x00\x00\x05\x00", "'1' message has 1 unexpected extra", id="ParseComplete"
    ),
    pytest.param(b"n\x00\x00\x00\x05\x00", "'n' message has 1 unexpected extra", id="NoData"),
    pytest.param(
        b"D\x00\x00\x00\x08\x00\x00xx", "'D' message has 2 unexpected extra", id="DataRow"
    ),
    pytest.param(
        b"E\x00\x00\x00\x0dSERROR\x00\x00x",
        "'E' message has 1 unexpected extra",
        id="ErrorResponse",
    ),
    # negative counts and lengths
    pytest.param(
        b"T\x00\x00\x00\x06\xff\xff",
        "RowDescription message has a negative field count",
        id="RowDescription-negative",
    ),
    pytest.param(
        b"D\x00\x00\x00\x06\xff\xff",
        "DataRow message has a negative column count",
        id="DataRow-negative",
    ),
    pytest.param(
        b"D\x00\x00\x00\x0a\x00\x01\xff\xff\xff\xfe",
        "DataRow message has an invalid value length",
        id="DataRow-length-minus-2",
    ),
    pytest.param(
        b"t\x00\x00\x00\x06\x80\x00",
        "ParameterDescription has a negative count",
        id="ParameterDescription-negative",
    ),
    pytest.param(
        b"H\x00\x00\x00\x07\x00\xff\xff",
        "copy response has a negative column count",
        id="CopyOutResponse-negative",
    ),
    pytest.param(
        b"v\x00\x00\x00\x0c\x00\x00\x00\x00\xff\xff\xff\xff",
        "NegotiateProtocolVersion has a negative option count",
        id="NegotiateProtocolVersion-negative",
    ),
    # ReadyForQuery status
    pytest.param(
        b"Z\x00\x00\x00\x05X",
        "ReadyForQuery message has an invalid status 'X'",
        id="ReadyForQuery-X",
    ),
    pytest.param(
        b"Z\x00\x00\x00\x05i",
        "ReadyForQuery message has an invalid status 'i'",
        id="ReadyForQuery-lowercase",
    ),
    pytest.param(
        b"Z\x00\x00\x00\x05\x00",
        "ReadyForQuery message has an invalid status '\\x00'",
        id="ReadyForQuery-NUL",
    ),
]


@pytest.mark.parametrize(("data", "cause"), BACKEND_BAD)
def test_bad_backend_payload(data: bytes, cause: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        backend(data)
    assert cause in str(caught.value)


@pytest.mark.parametrize(("data", "cause"), BACKEND_BAD)
def test_bad_backend_payload_after_a_good_message(data: bytes, cause: str) -> None:
    parser = BackendParser()
    assert parser.feed(b"1\x00\x00\x00\x04") != []
    with pytest.raises(ProtocolError) as caught:
        parser.feed(data)
    assert cause in str(caught.value)
