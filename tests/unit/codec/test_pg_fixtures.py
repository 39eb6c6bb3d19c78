"""Byte fixtures for every PostgreSQL v3 message, written out by hand.

Each fixture was spelled from the protocol documentation ("Message Formats"),
not produced by the encoder under test. Each one is decoded whole, one byte
at a time, with the first bytes of the next message behind it, and re-encoded
to the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from dbward.codec.pg.backend import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationOther,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FieldDescription,
    FunctionCallResponse,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
)
from dbward.codec.pg.framing import BackendParser, Framer, FrontendParser, StartupParser
from dbward.codec.pg.frontend import (
    Bind,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    Parse,
    PasswordMessage,
    Query,
    Sync,
    Terminate,
)
from dbward.codec.pg.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
)

NULL = b"\xff\xff\xff\xff"  # Int32(-1): a NULL value

# --------------------------------------------------------------------------
# Startup phase: Int32 length (itself included), Int32 code, body.
# --------------------------------------------------------------------------

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # 80877103 = 1234 << 16 | 5679
GSSENC_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x30"  # 80877104
CANCEL_REQUEST = (
    b"\x00\x00\x00\x10"  # length 16
    b"\x04\xd2\x16\x2e"  # 80877102
    b"\x00\x00\x10\x92"  # process id 4242
    b"\xde\xad\xbe\xef"  # secret key (all 32 bits used)
)
STARTUP_MESSAGE = (
    b"\x00\x00\x00\x38"  # length 56
    b"\x00\x03\x00\x00"  # protocol 3.0
    b"user\x00alice\x00"
    b"database\x00shop\x00"
    b"application_name\x00psql\x00"
    b"\x00"
)

STARTUP_MESSAGE_DECODED = StartupMessage(
    {"user": "alice", "database": "shop", "application_name": "psql"}
)

STARTUP_FIXTURES = [
    pytest.param(SSL_REQUEST, SSLRequest(), id="SSLRequest"),
    pytest.param(GSSENC_REQUEST, GSSENCRequest(), id="GSSENCRequest"),
    pytest.param(CANCEL_REQUEST, CancelRequest(4242, 0xDEADBEEF), id="CancelRequest"),
    pytest.param(STARTUP_MESSAGE, STARTUP_MESSAGE_DECODED, id="StartupMessage"),
]

# --------------------------------------------------------------------------
# Frontend: Byte1 type, Int32 length (itself included), payload.
# --------------------------------------------------------------------------

QUERY = b"Q\x00\x00\x00\x0dSELECT 1\x00"
PARSE = (
    b"P\x00\x00\x00\x24"  # length 36
    b"s1\x00"
    b"SELECT $1::int, $2\x00"
    b"\x00\x02"  # two parameter types
    b"\x00\x00\x00\x17"  # int4 (23)
    b"\x00\x00\x00\x19"  # text (25)
)
BIND_TEXT = (
    b"B\x00\x00\x00\x18"  # length 24
    b"\x00"  # unnamed portal
    b"s1\x00"
    b"\x00\x00"  # no parameter format codes: all text
    b"\x00\x02"  # two parameters
    b"\x00\x00\x00\x02"
    b"42"
    b"\xff\xff\xff\xff"  # NULL
    b"\x00\x00"  # no result format codes: all text
)
BIND_BINARY = (
    b"B\x00\x00\x00\x22"  # length 34
    b"p1\x00"
    b"s1\x00"
    b"\x00\x02"
    b"\x00\x01"
    b"\x00\x00"  # formats: binary, text
    b"\x00\x02"  # two parameters
    b"\x00\x00\x00\x04"
    b"\x00\x00\x00\x2a"  # int4 42, binary
    b"\xff\xff\xff\xff"  # NULL
    b"\x00\x01"
    b"\x00\x01"  # one result format: binary for all columns
)
DESCRIBE_STATEMENT = b"D\x00\x00\x00\x08Ss1\x00"
DESCRIBE_PORTAL = b"D\x00\x00\x00\x06P\x00"
EXECUTE_MAX_ROWS = b"E\x00\x00\x00\x0bp1\x00\x00\x00\x00\x64"  # at most 100 rows
EXECUTE_ALL = b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
CLOSE_STATEMENT = b"C\x00\x00\x00\x08Ss1\x00"
CLOSE_PORTAL = b"C\x00\x00\x00\x08Pp1\x00"
SYNC = b"S\x00\x00\x00\x04"
FLUSH = b"H\x00\x00\x00\x04"
TERMINATE = b"X\x00\x00\x00\x04"
COPY_DATA = b"d\x00\x00\x00\x0c1\talice\n"
COPY_DONE = b"c\x00\x00\x00\x04"
COPY_FAIL = b"f\x00\x00\x00\x0caborted\x00"
PASSWORD_CLEARTEXT = b"p\x00\x00\x00\x0chunter2\x00"
PASSWORD_MD5 = b"p\x00\x00\x00\x28md58ef180592219ca1befb43f0d4e7a5664\x00"
SASL_INITIAL_RESPONSE = (
    b"p\x00\x00\x00\x32"  # length 50
    b"SCRAM-SHA-256\x00"
    b"\x00\x00\x00\x1c"  # 28 bytes of client-first message follow
    b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
)
FUNCTION_CALL_PAYLOAD = (
    b"\x00\x00\x05\x75"  # function oid 1397 (abs(int4))
    b"\x00\x01"
    b"\x00\x01"  # one argument format: binary
    b"\x00\x01"  # one argument
    b"\x00\x00\x00\x04"
    b"\xff\xff\xff\xfb"  # int4 -5
    b"\x00\x01"  # result in binary
)
FUNCTION_CALL = b"F\x00\x00\x00\x18" + FUNCTION_CALL_PAYLOAD

FRONTEND_FIXTURES = [
    pytest.param(QUERY, Query("SELECT 1"), id="Query"),
    pytest.param(PARSE, Parse("s1", "SELECT $1::int, $2", (23, 25)), id="Parse"),
    pytest.param(BIND_TEXT, Bind("", "s1", (), (b"42", None), ()), id="Bind-text"),
    pytest.param(
        BIND_BINARY,
        Bind("p1", "s1", (1, 0), (b"\x00\x00\x00\x2a", None), (1,)),
        id="Bind-binary",
    ),
    pytest.param(DESCRIBE_STATEMENT, Describe("S", "s1"), id="Describe-S"),
    pytest.param(DESCRIBE_PORTAL, Describe("P", ""), id="Describe-P"),
    pytest.param(EXECUTE_MAX_ROWS, Execute("p1", 100), id="Execute-max-rows"),
    pytest.param(EXECUTE_ALL, Execute("", 0), id="Execute-all"),
    pytest.param(CLOSE_STATEMENT, Close("S", "s1"), id="Close-S"),
    pytest.param(CLOSE_PORTAL, Close("P", "p1"), id="Close-P"),
    pytest.param(SYNC, Sync(), id="Sync"),
    pytest.param(FLUSH, Flush(), id="Flush"),
    pytest.param(TERMINATE, Terminate(), id="Terminate"),
    pytest.param(COPY_DATA, CopyData(b"1\talice\n"), id="CopyData"),
    pytest.param(COPY_DONE, CopyDone(), id="CopyDone"),
    pytest.param(COPY_FAIL, CopyFail("aborted"), id="CopyFail"),
    pytest.param(PASSWORD_CLEARTEXT, PasswordMessage(b"hunter2\x00"), id="PasswordMessage"),
    pytest.param(
        PASSWORD_MD5,
        PasswordMessage(b"md58ef180592219ca1befb43f0d4e7a5664\x00"),
        id="PasswordMessage-md5",
    ),
    pytest.param(
        SASL_INITIAL_RESPONSE,
        PasswordMessage(SASL_INITIAL_RESPONSE[5:]),
        id="SASLInitialResponse",
    ),
    pytest.param(FUNCTION_CALL, FunctionCall(FUNCTION_CALL_PAYLOAD), id="FunctionCall"),
]

# --------------------------------------------------------------------------
# Backend.
# --------------------------------------------------------------------------

SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

AUTH_OK = b"R\x00\x00\x00\x08\x00\x00\x00\x00"
AUTH_CLEARTEXT = b"R\x00\x00\x00\x08\x00\x00\x00\x03"
AUTH_MD5 = b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x93\x3f\x1a\x07"
AUTH_SASL = (
    b"R\x00\x00\x00\x2a"  # length 42
    b"\x00\x00\x00\x0a"  # 10: SASL
    b"SCRAM-SHA-256-PLUS\x00"
    b"SCRAM-SHA-256\x00"
    b"\x00"  # end of the list
)
AUTH_SASL_CONTINUE = b"R\x00\x00\x00\x5e\x00\x00\x00\x0b" + SERVER_FIRST  # 4 + 4 + 86
AUTH_SASL_FINAL = b"R\x00\x00\x00\x36\x00\x00\x00\x0c" + SERVER_FINAL  # 4 + 4 + 46
AUTH_GSS = b"R\x00\x00\x00\x08\x00\x00\x00\x07"
AUTH_GSS_CONTINUE = b"R\x00\x00\x00\x0a\x00\x00\x00\x08\x60\x82"
BACKEND_KEY_DATA = b"K\x00\x00\x00\x0c\x00\x00\x10\x92\xde\xad\xbe\xef"
PARAMETER_STATUS = b"S\x00\x00\x00\x18server_version\x0016.3\x00"
READY_IDLE = b"Z\x00\x00\x00\x05I"
READY_IN_TRANSACTION = b"Z\x00\x00\x00\x05T"
READY_FAILED = b"Z\x00\x00\x00\x05E"
ROW_DESCRIPTION = (
    b"T\x00\x00\x00\x33"  # length 51
    b"\x00\x02"  # two fields
    b"id\x00"
    b"\x00\x00\x40\x00"  # table oid 16384
    b"\x00\x01"  # column 1
    b"\x00\x00\x00\x17"  # int4
    b"\x00\x04"  # 4 bytes
    b"\xff\xff\xff\xff"  # no type modifier
    b"\x00\x00"  # text
    b"email\x00"
    b"\x00\x00\x40\x00"
    b"\x00\x02"
    b"\x00\x00\x00\x19"  # text
    b"\xff\xff"  # variable size (-1)
    b"\xff\xff\xff\xff"
    b"\x00\x00"
)
DATA_ROW = (
    b"D\x00\x00\x00\x18"  # length 24
    b"\x00\x03"
    b"\x00\x00\x00\x01"
    b"1"
    b"\xff\xff\xff\xff"  # NULL
    b"\x00\x00\x00\x05"
    b"a@b.c"
)
EMPTY_QUERY_RESPONSE = b"I\x00\x00\x00\x04"
ERROR_RESPONSE = (
    b"E\x00\x00\x00\x3e"  # length 62
    b"SERROR\x00"
    b"VERROR\x00"
    b"C42P01\x00"
    b'Mrelation "nope" does not exist\x00'
    b"P15\x00"
    b"\x00"
)
NOTICE_RESPONSE = (
    b"N\x00\x00\x00\x23"  # length 35
    b"SNOTICE\x00"
    b"VNOTICE\x00"
    b"C00000\x00"
    b"Mhello\x00"
    b"\x00"
)
NOTIFICATION_RESPONSE = b"A\x00\x00\x00\x10\x00\x00\x10\x92jobs\x0042\x00"
PARSE_COMPLETE = b"1\x00\x00\x00\x04"
BIND_COMPLETE = b"2\x00\x00\x00\x04"
CLOSE_COMPLETE = b"3\x00\x00\x00\x04"
NO_DATA = b"n\x00\x00\x00\x04"
PORTAL_SUSPENDED = b"s\x00\x00\x00\x04"
PARAMETER_DESCRIPTION = b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19"
COPY_IN_RESPONSE = b"G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"
COPY_OUT_RESPONSE = b"H\x00\x00\x00\x0d\x01\x00\x03\x00\x01\x00\x01\x00\x01"
COPY_BOTH_RESPONSE = b"W\x00\x00\x00\x07\x00\x00\x00"
NEGOTIATE_PROTOCOL_VERSION = (
    b"v\x00\x00\x00\x1d"  # length 29
    b"\x00\x00\x00\x00"  # newest minor version supported: 0
    b"\x00\x00\x00\x01"  # one option not recognized
    b"_pq_.compression\x00"
)
FUNCTION_CALL_RESPONSE = b"V\x00\x00\x00\x0c\x00\x00\x00\x04\x00\x00\x00\x05"
FUNCTION_CALL_RESPONSE_NULL = b"V\x00\x00\x00\x08\xff\xff\xff\xff"
BACKEND_COPY_DATA = b"d\x00\x00\x00\x0a2\tbob\n"
BACKEND_COPY_DONE = b"c\x00\x00\x00\x04"


COMMAND_COMPLETE_SELECT = b"C\x00\x00\x00\x0dSELECT 5\x00"
COMMAND_COMPLETE_INSERT = b"C\x00\x00\x00\x0fINSERT 0 3\x00"
COMMAND_COMPLETE_UPDATE = b"C\x00\x00\x00\x0dUPDATE 2\x00"
COMMAND_COMPLETE_COPY = b"C\x00\x00\x00\x0cCOPY 10\x00"
COMMAND_COMPLETE_CREATE = b"C\x00\x00\x00\x11CREATE TABLE\x00"
COMMAND_COMPLETE_BEGIN = b"C\x00\x00\x00\x0aBEGIN\x00"

BACKEND_FIXTURES = [
    pytest.param(AUTH_OK, AuthenticationOk(), id="AuthenticationOk"),
    pytest.param(AUTH_CLEARTEXT, AuthenticationCleartextPassword(), id="AuthenticationCleartext"),
    pytest.param(AUTH_MD5, AuthenticationMD5Password(b"\x93\x3f\x1a\x07"), id="AuthenticationMD5"),
    pytest.param(
        AUTH_SASL,
        AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")),
        id="AuthenticationSASL",
    ),
    pytest.param(
        AUTH_SASL_CONTINUE, AuthenticationSASLContinue(SERVER_FIRST), id="AuthenticationSASLCont"
    ),
    pytest.param(
        AUTH_SASL_FINAL, AuthenticationSASLFinal(SERVER_FINAL), id="AuthenticationSASLFinal"
    ),
    pytest.param(AUTH_GSS, AuthenticationOther(7), id="AuthenticationGSS-unsupported"),
    pytest.param(
        AUTH_GSS_CONTINUE, AuthenticationOther(8, b"\x60\x82"), id="AuthenticationGSSContinue"
    ),
    pytest.param(BACKEND_KEY_DATA, BackendKeyData(4242, 0xDEADBEEF), id="BackendKeyData"),
    pytest.param(PARAMETER_STATUS, ParameterStatus("server_version", "16.3"), id="ParameterStatus"),
    pytest.param(READY_IDLE, ReadyForQuery("I"), id="ReadyForQuery-I"),
    pytest.param(READY_IN_TRANSACTION, ReadyForQuery("T"), id="ReadyForQuery-T"),
    pytest.param(READY_FAILED, ReadyForQuery("E"), id="ReadyForQuery-E"),
    pytest.param(
        ROW_DESCRIPTION,
        RowDescription(
            (
                FieldDescription("id", 16384, 1, 23, 4, -1, 0),
                FieldDescription("email", 16384, 2, 25, -1, -1, 0),
            )
        ),
        id="RowDescription",
    ),
    pytest.param(DATA_ROW, DataRow((b"1", None, b"a@b.c")), id="DataRow-with-NULL"),
    pytest.param(COMMAND_COMPLETE_SELECT, CommandComplete("SELECT 5"), id="CommandComplete-SELECT"),
    pytest.param(
        COMMAND_COMPLETE_INSERT, CommandComplete("INSERT 0 3"), id="CommandComplete-INSERT"
    ),
    pytest.param(COMMAND_COMPLETE_UPDATE, CommandComplete("UPDATE 2"), id="CommandComplete-UPDATE"),
    pytest.param(COMMAND_COMPLETE_COPY, CommandComplete("COPY 10"), id="CommandComplete-COPY"),
    pytest.param(
        COMMAND_COMPLETE_CREATE, CommandComplete("CREATE TABLE"), id="CommandComplete-CREATE"
    ),
    pytest.param(COMMAND_COMPLETE_BEGIN, CommandComplete("BEGIN"), id="CommandComplete-BEGIN"),
    pytest.param(EMPTY_QUERY_RESPONSE, EmptyQueryResponse(), id="EmptyQueryResponse"),
    pytest.param(
        ERROR_RESPONSE,
        ErrorResponse(
            {
                "S": "ERROR",
                "V": "ERROR",
                "C": "42P01",
                "M": 'relation "nope" does not exist',
                "P": "15",
            }
        ),
        id="ErrorResponse",
    ),
    pytest.param(
        NOTICE_RESPONSE,
        NoticeResponse({"S": "NOTICE", "V": "NOTICE", "C": "00000", "M": "hello"}),
        id="NoticeResponse",
    ),
    pytest.param(
        NOTIFICATION_RESPONSE, NotificationResponse(4242, "jobs", "42"), id="NotificationResponse"
    ),
    pytest.param(PARSE_COMPLETE, ParseComplete(), id="ParseComplete"),
    pytest.param(BIND_COMPLETE, BindComplete(), id="BindComplete"),
    pytest.param(CLOSE_COMPLETE, CloseComplete(), id="CloseComplete"),
    pytest.param(NO_DATA, NoData(), id="NoData"),
    pytest.param(PORTAL_SUSPENDED, PortalSuspended(), id="PortalSuspended"),
    pytest.param(PARAMETER_DESCRIPTION, ParameterDescription((23, 25)), id="ParameterDescription"),
    pytest.param(COPY_IN_RESPONSE, CopyInResponse(0, (0, 0)), id="CopyInResponse"),
    pytest.param(COPY_OUT_RESPONSE, CopyOutResponse(1, (1, 1, 1)), id="CopyOutResponse"),
    pytest.param(COPY_BOTH_RESPONSE, CopyBothResponse(0, ()), id="CopyBothResponse"),
    pytest.param(
        NEGOTIATE_PROTOCOL_VERSION,
        NegotiateProtocolVersion(0, ("_pq_.compression",)),
        id="NegotiateProtocolVersion",
    ),
    pytest.param(
        FUNCTION_CALL_RESPONSE,
        FunctionCallResponse(b"\x00\x00\x00\x04\x00\x00\x00\x05"),
        id="FunctionCallResponse",
    ),
    pytest.param(
        FUNCTION_CALL_RESPONSE_NULL, FunctionCallResponse(NULL), id="FunctionCallResponse-NULL"
    ),
    pytest.param(BACKEND_COPY_DATA, CopyData(b"2\tbob\n"), id="CopyData"),
    pytest.param(BACKEND_COPY_DONE, CopyDone(), id="CopyDone"),
]

# The first bytes of the message that follows, for the trailing-data tests.
NEXT_FRONTEND, NEXT_FRONTEND_MESSAGE = QUERY, Query("SELECT 1")
NEXT_BACKEND, NEXT_BACKEND_MESSAGE = PARAMETER_STATUS, ParameterStatus("server_version", "16.3")
CUTS = [1, 4, 5, 6]  # inside the type byte/length word, right after it, into the payload


def feed_bytewise(parser: Any, data: bytes) -> list[Any]:
    """Feed one byte at a time; nothing may come out before the message's last byte."""
    out: list[Any] = []
    for i in range(len(data)):
        got = parser.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == [], f"a message came out after {i + 1} of {len(data)} bytes"
        out.extend(got)
    return out


# --------------------------------------------------------------------------
# Startup packets.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), STARTUP_FIXTURES)
class TestStartupFixtures:
    def test_whole(self, data: bytes, message: Any) -> None:
        parser = StartupParser()
        assert parser.feed(data) == [message]
        assert parser.take_rest() == b""

    def test_byte_by_byte(self, data: bytes, message: Any) -> None:
        assert feed_bytewise(StartupParser(), data) == [message]

    @pytest.mark.parametrize("cut", CUTS)
    def test_trailing_data(self, data: bytes, message: Any, cut: int) -> None:
        parser = StartupParser()
        if isinstance(message, SSLRequest | GSSENCRequest):
            # Refused with 'N', the client goes on with a StartupMessage.
            assert parser.feed(data + STARTUP_MESSAGE[:cut]) == [message]
            assert parser.feed(STARTUP_MESSAGE[cut:]) == [STARTUP_MESSAGE_DECODED]
            return
        # After a StartupMessage (or CancelRequest) the startup phase is over: what
        # follows is typed messages, held back for take_rest(), never read as a packet.
        assert parser.feed(data + NEXT_FRONTEND[:cut]) == [message]
        assert parser.feed(NEXT_FRONTEND[cut:]) == []
        rest = parser.take_rest()
        assert rest == NEXT_FRONTEND
        assert FrontendParser().feed(rest) == [NEXT_FRONTEND_MESSAGE]

    def test_reencode(self, data: bytes, message: Any) -> None:
        assert message.encode() == data


def test_startup_message_properties() -> None:
    (startup,) = StartupParser().feed(STARTUP_MESSAGE)
    assert isinstance(startup, StartupMessage)
    assert (startup.major, startup.minor) == (3, 0)
    assert startup.user == "alice"
    assert startup.database == "shop"
    assert StartupMessage({"user": "bob"}).database == "bob"


def test_startup_message_protocol_3_2() -> None:
    data = b"\x00\x00\x00\x12\x00\x03\x00\x02user\x00bob\x00\x00"
    (startup,) = StartupParser().feed(data)
    assert startup == StartupMessage({"user": "bob"}, 3, 2)
    assert startup.encode() == data


def test_startup_message_minor_above_int16_reencodes() -> None:
    data = b"\x00\x00\x00\x12\x00\x03\xff\xfeuser\x00bob\x00\x00"
    (startup,) = StartupParser().feed(data)
    assert startup == StartupMessage({"user": "bob"}, 3, 0xFFFE)
    assert startup.encode() == data


def test_cancel_request_ends_the_startup_phase() -> None:
    parser = StartupParser()
    assert parser.feed(CANCEL_REQUEST + SSL_REQUEST) == [CancelRequest(4242, 0xDEADBEEF)]
    assert parser.take_rest() == SSL_REQUEST


# --------------------------------------------------------------------------
# Frontend messages.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), FRONTEND_FIXTURES)
class TestFrontendFixtures:
    def test_whole(self, data: bytes, message: Any) -> None:
        assert FrontendParser().feed(data) == [message]

    def test_byte_by_byte(self, data: bytes, message: Any) -> None:
        assert feed_bytewise(FrontendParser(), data) == [message]

    @pytest.mark.parametrize("cut", CUTS)
    def test_trailing_data(self, data: bytes, message: Any, cut: int) -> None:
        parser = FrontendParser()
        assert parser.feed(data + NEXT_FRONTEND[:cut]) == [message]
        assert parser.feed(NEXT_FRONTEND[cut:]) == [NEXT_FRONTEND_MESSAGE]

    def test_reencode(self, data: bytes, message: Any) -> None:
        assert message.encode() == data

    def test_framer_offsets(self, data: bytes, message: Any) -> None:
        block, frames = Framer().split(data)
        assert block == data
        assert frames == [(data[0], 5, len(data))]


def test_password_message_helpers() -> None:
    (message,) = FrontendParser().feed(PASSWORD_CLEARTEXT)
    assert isinstance(message, PasswordMessage)
    assert message.password() == "hunter2"
    assert PasswordMessage.cleartext("hunter2").encode() == PASSWORD_CLEARTEXT


# --------------------------------------------------------------------------
# Backend messages.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), BACKEND_FIXTURES)
class TestBackendFixtures:
    def test_whole(self, data: bytes, message: Any) -> None:
        parser = BackendParser()
        assert parser.feed(data) == [message]
        assert parser.pending == 0

    def test_byte_by_byte(self, data: bytes, message: Any) -> None:
        assert feed_bytewise(BackendParser(), data) == [message]

    @pytest.mark.parametrize("cut", CUTS)
    def test_trailing_data(self, data: bytes, message: Any, cut: int) -> None:
        parser = BackendParser()
        assert parser.feed(data + NEXT_BACKEND[:cut]) == [message]
        assert parser.pending == cut
        assert parser.feed(NEXT_BACKEND[cut:]) == [NEXT_BACKEND_MESSAGE]
        assert parser.pending == 0

    def test_reencode(self, data: bytes, message: Any) -> None:
        assert message.encode() == data


@pytest.mark.parametrize(
    ("tag", "rows"),
    [
        ("SELECT 5", 5),
        ("INSERT 0 3", 3),
        ("UPDATE 2", 2),
        ("DELETE 0", 0),
        ("COPY 10", 10),
        ("FETCH 100", 100),
        ("CREATE TABLE", None),
        ("BEGIN", None),
        ("SELECT ²", None),  # str.isdigit() is true for "²", int() is not
    ],
)
def test_command_complete_rows(tag: str, rows: int | None) -> None:
    assert CommandComplete(tag).rows == rows


def test_error_response_accessors() -> None:
    (error,) = BackendParser().feed(ERROR_RESPONSE)
    assert isinstance(error, ErrorResponse)
    assert (error.severity, error.sqlstate, error.message) == (
        "ERROR",
        "42P01",
        'relation "nope" does not exist',
    )
    (notice,) = BackendParser().feed(NOTICE_RESPONSE)
    assert isinstance(notice, NoticeResponse)
    assert (notice.severity, notice.sqlstate, notice.message) == ("NOTICE", "00000", "hello")


def test_error_response_build() -> None:
    built = ErrorResponse.build("FATAL", "28P01", "denied", detail="why", hint="fix")
    assert built.encode() == (
        b"E\x00\x00\x00\x2c"  # length 44
        b"SFATAL\x00"
        b"VFATAL\x00"
        b"C28P01\x00"
        b"Mdenied\x00"
        b"Dwhy\x00"
        b"Hfix\x00"
        b"\x00"
    )


def test_error_response_unknown_field_code_reencodes_as_one_byte() -> None:
    # Frontends must ignore field types they do not know; a proxy must keep them intact.
    data = b"E\x00\x00\x00\x0fSERROR\x00\xc3x\x00\x00"
    (error,) = BackendParser().feed(data)
    assert isinstance(error, ErrorResponse)
    assert error.fields == {"S": "ERROR", "\xc3": "x"}
    assert error.encode() == data


def test_error_response_repeated_field_keeps_the_last_value() -> None:
    # PostgreSQL never repeats a field; libpq would show the last one, and so does the
    # decoder. This is the one decoded message whose re-encoding is shorter than its input.
    data = b"E\x00\x00\x00\x12Mfirst\x00Mlast\x00\x00"
    (error,) = BackendParser().feed(data)
    assert isinstance(error, ErrorResponse)
    assert error.message == "last"
    assert error.encode() == b"E\x00\x00\x00\x0bMlast\x00\x00"


# --------------------------------------------------------------------------
# Conversations: a pipelined extended-protocol batch and COPY both ways.
# --------------------------------------------------------------------------

BATCH = (
    PARSE  # Parse s1
    + BIND_BINARY  # Bind p1 to s1
    + b"D\x00\x00\x00\x08"
    b"P"
    b"p1\x00"  # Describe portal p1
    + EXECUTE_MAX_ROWS  # Execute p1, 100 rows
    + b"P\x00\x00\x00\x10"
    b"\x00"
    b"SELECT 1\x00"
    b"\x00\x00"  # Parse unnamed
     + b"B\x00\x00\x00\x0c"
    b"\x00"
    b"\x00"
    b"\x00\x00"
    b"\x00\x00"
    b"\x00\x00"  # Bind unnamed
     + EXECUTE_ALL + SYNC
)
BATCH_MESSAGES = [
    Parse("s1", "SELECT $1::int, $2", (23, 25)),
    Bind("p1", "s1", (1, 0), (b"\x00\x00\x00\x2a", None), (1,)),
    Describe("P", "p1"),
    Execute("p1", 100),
    Parse("", "SELECT 1", ()),
    Bind("", "", (), (), ()),
    Execute("", 0),
    Sync(),
]
BATCH_ANSWER = (
    PARSE_COMPLETE
    + BIND_COMPLETE
    + (
        b"T\x00\x00\x00\x34"  # length 52
        b"\x00\x02"
        b"int4\x00"
        b"\x00\x00\x00\x00"
        b"\x00\x00"
        b"\x00\x00\x00\x17"
        b"\x00\x04"
        b"\xff\xff\xff\xff"
        b"\x00\x01"
        b"text\x00"
        b"\x00\x00\x00\x00"
        b"\x00\x00"
        b"\x00\x00\x00\x19"
        b"\xff\xff"
        b"\xff\xff\xff\xff"
        b"\x00\x01"
    )
    + b"D\x00\x00\x00\x12"
    b"\x00\x02"
    b"\x00\x00\x00\x04"
    b"\x00\x00\x00\x2a" + NULL + b"C\x00\x00\x00\x0d"
    b"SELECT 1\x00" + PARSE_COMPLETE + BIND_COMPLETE + b"D\x00\x00\x00\x0b"
    b"\x00\x01"
    b"\x00\x00\x00\x01"
    b"1" + b"C\x00\x00\x00\x0d"
    b"SELECT 1\x00" + READY_IDLE
)
BATCH_ANSWER_MESSAGES = [
    ParseComplete(),
    BindComplete(),
    RowDescription(
        (
            FieldDescription("int4", 0, 0, 23, 4, -1, 1),
            FieldDescription("text", 0, 0, 25, -1, -1, 1),
        )
    ),
    DataRow((b"\x00\x00\x00\x2a", None)),
    CommandComplete("SELECT 1"),
    ParseComplete(),
    BindComplete(),
    DataRow((b"1",)),
    CommandComplete("SELECT 1"),
    ReadyForQuery("I"),
]


def _every_split(parser_type: type[Any], data: bytes, expected: list[Any]) -> None:
    for cut in range(len(data) + 1):
        parser = parser_type()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected, cut


def test_pipelined_batch_frontend() -> None:
    assert FrontendParser().feed(BATCH) == BATCH_MESSAGES
    out: list[Any] = []
    parser = FrontendParser()
    for i in range(len(BATCH)):
        out.extend(parser.feed(BATCH[i : i + 1]))
    assert out == BATCH_MESSAGES
    _every_split(FrontendParser, BATCH, BATCH_MESSAGES)
    assert b"".join(m.encode() for m in BATCH_MESSAGES) == BATCH


def test_pipelined_batch_is_framed_in_one_block_without_copy() -> None:
    block, frames = Framer().split(BATCH)
    assert block is BATCH
    assert bytes(block[t[1] - 5] for t in frames) == b"PBDEPBES"
    assert [t[0] for t in frames] == list(b"PBDEPBES")
    assert frames[-1][2] == len(BATCH)


def test_pipelined_batch_backend_answer() -> None:
    assert BackendParser().feed(BATCH_ANSWER) == BATCH_ANSWER_MESSAGES
    _every_split(BackendParser, BATCH_ANSWER, BATCH_ANSWER_MESSAGES)
    assert b"".join(m.encode() for m in BATCH_ANSWER_MESSAGES) == BATCH_ANSWER


COPY_FROM_QUERY = b"Q\x00\x00\x00\x16COPY t FROM STDIN\x00"
COPY_TO_QUERY = b"Q\x00\x00\x00\x15COPY t TO STDOUT\x00"
COPY_2 = b"C\x00\x00\x00\x0bCOPY 2\x00"


def test_copy_in_conversation() -> None:
    client, server = FrontendParser(), BackendParser()
    assert client.feed(COPY_FROM_QUERY) == [Query("COPY t FROM STDIN")]
    assert server.feed(COPY_IN_RESPONSE) == [CopyInResponse(0, (0, 0))]
    upload = COPY_DATA + b"d\x00\x00\x00\x0a2\tbob\n" + COPY_DONE
    expected = [CopyData(b"1\talice\n"), CopyData(b"2\tbob\n"), CopyDone()]
    assert client.feed(upload) == expected
    _every_split(FrontendParser, upload, expected)
    (done, ready) = server.feed(COPY_2 + READY_IDLE)
    assert done == CommandComplete("COPY 2")
    assert done.rows == 2
    assert ready == ReadyForQuery("I")


def test_copy_in_aborted_by_client() -> None:
    client = FrontendParser()
    assert client.feed(COPY_DATA + COPY_FAIL) == [CopyData(b"1\talice\n"), CopyFail("aborted")]


def test_copy_out_conversation() -> None:
    assert FrontendParser().feed(COPY_TO_QUERY) == [Query("COPY t TO STDOUT")]
    download = (
        b"H\x00\x00\x00\x0b"
        b"\x00"
        b"\x00\x02"
        b"\x00\x00"
        b"\x00\x00" + b"d\x00\x00\x00\x0c"
        b"1\talice\n" + BACKEND_COPY_DATA + BACKEND_COPY_DONE + COPY_2 + READY_IDLE
    )
    expected = [
        CopyOutResponse(0, (0, 0)),
        CopyData(b"1\talice\n"),
        CopyData(b"2\tbob\n"),
        CopyDone(),
        CommandComplete("COPY 2"),
        ReadyForQuery("I"),
    ]
    assert BackendParser().feed(download) == expected
    _every_split(BackendParser, download, expected)
    assert b"".join(m.encode() for m in expected) == download
