"""Generic response packets and commands (packets.py).

Layouts from the MySQL "OK_Packet", "ERR_Packet", "EOF_Packet",
"COM_CHANGE_USER", "COM_QUERY" (with CLIENT_QUERY_ATTRIBUTES) and
"COM_STMT_PREPARE_OK" pages; the OK, ERR and EOF fixtures are the docs'
examples without their 4-byte packet headers.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import SUPPORTED, Capability, Command, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.packets import (
    ChangeUser,
    Eof,
    Err,
    Ok,
    PrepareOk,
    command_name,
    encode_lenenc_values,
    encode_query,
    eof_status,
    is_eof,
    local_infile_name,
    ok_affected,
    ok_status,
    query_text,
    statement_id,
)

C = Capability

# -- OK ---------------------------------------------------------------------------------------

DOCS_OK = b"\x00\x00\x00\x02\x00\x00\x00"  # affected 0, insert id 0, AUTOCOMMIT, 0 warnings
INSERT_OK = (
    b"\x00"
    + b"\xfc\x2c\x01"  # 300 rows affected
    + b"\xfd\x70\x11\x01"  # last insert id 70000
    + b"\x03\x00"  # IN_TRANS | AUTOCOMMIT
    + b"\x01\x00"  # 1 warning
    + b"Records: 300  Duplicates: 0  Warnings: 1"  # string<EOF> without SESSION_TRACK
)
SESSION_TRACK_OK = (
    b"\x00\x01\x00"
    + b"\x02\x40"  # AUTOCOMMIT | SESSION_STATE_CHANGED
    + b"\x00\x00"
    + b"\x0fRows matched: 1"  # info: string<lenenc>
    + b"\x0a\x00\x08\x06schema\x01d"  # session state changes (not decoded)
)


def test_docs_ok() -> None:
    assert Ok.decode(DOCS_OK) == Ok(0, 0, 2, 0, "")
    assert Ok().encode() == DOCS_OK


def test_ok_with_lenenc_counts_and_info() -> None:
    ok = Ok.decode(INSERT_OK)
    assert ok == Ok(300, 70000, 3, 1, "Records: 300  Duplicates: 0  Warnings: 1")
    assert ok.encode() == INSERT_OK


def test_ok_with_session_track() -> None:
    ok = Ok.decode(SESSION_TRACK_OK, C.SESSION_TRACK)
    assert ok == Ok(1, 0, Status.AUTOCOMMIT | Status.SESSION_STATE_CHANGED, 0, "Rows matched: 1")


def test_ok_with_session_track_and_nothing_after_the_warnings() -> None:
    assert Ok.decode(DOCS_OK, C.SESSION_TRACK) == Ok()


def test_ok_with_session_track_and_a_bad_info_length_keeps_the_counts() -> None:
    assert Ok.decode(b"\x00\x05\x00\x02\x00\x00\x00\x20abc", C.SESSION_TRACK) == Ok(5, 0, 2, 0, "")


def test_short_ok_from_old_servers() -> None:
    # pre-4.1 OKs have no status or warnings
    assert Ok.decode(b"\x00\x01\x00") == Ok(1, 0, 0, 0, "")


def test_ok_with_eof_header() -> None:
    # with CLIENT_DEPRECATE_EOF the rows end with an OK whose header is 0xFE
    encoded = Ok(status=Status.AUTOCOMMIT | Status.MORE_RESULTS_EXISTS).encode(header=0xFE)
    assert encoded == b"\xfe\x00\x00\x0a\x00\x00\x00"
    assert Ok.decode(encoded) == Ok(0, 0, 10, 0, "")


@pytest.mark.parametrize("payload", [b"", b"\xff\x00\x00", b"\x01\x00", b"\x00", b"\x00\x00"])
def test_not_an_ok(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError):
        Ok.decode(payload)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
)
def test_ok_round_trip(affected: int, insert_id: int, status: int, warns: int, info: str) -> None:
    ok = Ok(affected, insert_id, status, warns, info)
    assert Ok.decode(ok.encode()) == ok


def test_ok_with_info_round_trips_under_session_track() -> None:
    ok = Ok(1, 0, 2, 0, "Rows matched: 1  Changed: 1  Warnings: 0")
    assert Ok.decode(ok.encode(capabilities=SUPPORTED), SUPPORTED) == ok


def test_ok_helpers_at_an_offset() -> None:
    block = b"junk" + INSERT_OK + b"more"
    start, end = 4, 4 + len(INSERT_OK)
    assert ok_status(block, start, end) == 3
    assert ok_affected(block, start, end) == 300
    assert ok_status(b"\x00\x01\x00", 0, 3) == 0  # no status field
    with pytest.raises(MysqlProtocolError):
        ok_affected(b"\x00\xfc\x01", 0, 3)


# -- ERR --------------------------------------------------------------------------------------

DOCS_ERR = b"\xff\x48\x04#HY000No tables used"


def test_docs_err() -> None:
    err = Err.decode(DOCS_ERR)
    assert err == Err(1096, "HY000", "No tables used")
    assert err.encode() == DOCS_ERR


def test_err_without_sqlstate_marker() -> None:
    # ERRs sent before the client has said it speaks 4.1 have no '#' and SQLSTATE
    assert Err.decode(b"\xff\x15\x04Access denied") == Err(1045, "HY000", "Access denied")


def test_err_with_a_short_sqlstate_marker() -> None:
    assert Err.decode(b"\xff\x15\x04#28") == Err(1045, "HY000", "#28")


def test_err_encode_pads_the_sqlstate() -> None:
    assert Err(1142, "42000", "denied").encode() == b"\xff\x76\x04#42000denied"
    assert Err(1, "", "x").encode() == b"\xff\x01\x00#HY000x"
    assert Err(1, "42", "x").encode() == b"\xff\x01\x00#42HY0x"


def test_err_message_not_utf8() -> None:
    assert Err.decode(b"\xff\x01\x00#HY000\xff").message == "\ufffd"


@pytest.mark.parametrize("payload", [b"", b"\xff", b"\xff\x01", b"\x00\x01\x00"])
def test_not_an_err(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError, match="not an ERR"):
        Err.decode(payload)


@given(
    st.integers(0, 0xFFFF),
    st.text(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=5, max_size=5),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
)
def test_err_round_trip(code: int, sqlstate: str, message: str) -> None:
    err = Err(code, sqlstate, message)
    assert Err.decode(err.encode()) == err


# -- EOF --------------------------------------------------------------------------------------

DOCS_EOF = b"\xfe\x00\x00\x02\x00"


def test_docs_eof() -> None:
    assert Eof.decode(DOCS_EOF) == Eof(0, 2)
    assert Eof().encode() == DOCS_EOF
    eof = Eof(warnings=3, status=Status.AUTOCOMMIT | Status.MORE_RESULTS_EXISTS)
    assert eof.encode() == b"\xfe\x03\x00\x0a\x00"
    assert Eof.decode(eof.encode()) == eof


def test_pre_41_eof_is_one_byte() -> None:
    assert Eof.decode(b"\xfe") == Eof()


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00\x02\x00"])
def test_not_an_eof(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError, match="not an EOF"):
        Eof.decode(payload)


@pytest.mark.parametrize(
    ("payload", "deprecate_eof", "expected"),
    [
        (DOCS_EOF, False, True),
        (DOCS_EOF, True, True),
        (b"\xfe\x00\x00\x02\x00\x00\x00", True, True),  # the OK that replaces it
        (b"\xfe\x00\x00\x02\x00\x00\x00", False, True),
        (b"\xfe", False, True),
        (DOCS_OK, True, False),
        (b"", True, False),
        (b"\x03abc", False, False),  # a text row
        (b"\xfb", False, False),  # a text row with one NULL
        # a text row whose first value is 2^24+ bytes long starts with 0xFE: its first
        # packet is always 0xFFFFFF long, with or without DEPRECATE_EOF
        (b"\xfe" + (1 << 24).to_bytes(8, "little"), False, False),
        (b"\xfe" + bytes(0xFFFFFE), True, False),
        (b"\xfe" + bytes(0xFFFFFD), True, True),  # shorter: an (absurdly long) OK
    ],
    ids=lambda v: v.hex()[:16] if isinstance(v, bytes) else str(v),
)
def test_is_eof(payload: bytes, deprecate_eof: bool, expected: bool) -> None:
    assert is_eof(payload, 0, len(payload), deprecate_eof) is expected
    block = b"\x00\x00" + payload + b"\xfe\x00"
    assert is_eof(block, 2, 2 + len(payload), deprecate_eof) is expected


def test_eof_status() -> None:
    block = b"xx" + b"\xfe\x01\x00\x22\x00" + b"yy"
    assert eof_status(block, 2, 7, False) == 0x22
    ok = b"xx" + b"\xfe\x00\xfc\x00\x01\x2a\x00\x00\x00" + b"yy"  # insert id 256 (lenenc)
    assert eof_status(ok, 2, 11, True) == 0x2A
    assert eof_status(b"\xfe", 0, 1, False) == 0
    assert eof_status(b"\xfe\x00\x00", 0, 3, True) == 0
    with pytest.raises(MysqlProtocolError):
        eof_status(b"\xfe\xfc\x00", 0, 3, True)


# -- commands ---------------------------------------------------------------------------------


def test_command_name() -> None:
    assert command_name(Command.QUERY) == "COM_QUERY"
    assert command_name(0x17) == "COM_STMT_EXECUTE"
    assert command_name(0x1F) == "COM_RESET_CONNECTION"
    assert command_name(0xFE) == "command 0xfe"


CHANGE_USER = (
    b"\x11"
    + b"bob\x00"
    + b"\x14"
    + bytes(range(20))  # 20-byte native scramble
    + b"shop\x00"
    + b"\x2d\x00"  # charset 45
    + b"mysql_native_password\x00"
    + b"\x0b"  # attributes: 11 bytes
    + b"\x04_pid\x0512345"
)
CHANGE_USER_CAPS = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.CONNECT_ATTRS


def test_change_user_full() -> None:
    change = ChangeUser.decode(CHANGE_USER, CHANGE_USER_CAPS)
    assert change == ChangeUser(
        "bob", bytes(range(20)), "shop", 45, "mysql_native_password", {"_pid": "12345"}
    )


def test_change_user_without_plugin_or_attribute_capabilities() -> None:
    change = ChangeUser.decode(CHANGE_USER, C.PROTOCOL_41 | C.SECURE_CONNECTION)
    assert (change.user, change.database, change.charset) == ("bob", "shop", 45)
    assert change.plugin is None
    assert change.attributes == {}


def test_change_user_minimal() -> None:
    payload = b"\x11" + b"root\x00" + b"\x00" + b"\x00"  # no password, no database
    assert ChangeUser.decode(payload, CHANGE_USER_CAPS) == ChangeUser(
        "root", b"", None, None, None, {}
    )
    assert ChangeUser.decode(b"\x11root\x00\x00", CHANGE_USER_CAPS).database is None


def test_change_user_without_secure_connection() -> None:
    payload = b"\x11" + b"old\x00" + b"scrambl\x00" + b"db\x00" + b"\x08\x00"
    change = ChangeUser.decode(payload, C.PROTOCOL_41)
    assert (change.auth_response, change.database, change.charset) == (b"scrambl", "db", 8)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x11",  # no user
        b"\x11bob",  # user without NUL
        b"\x11bob\x00",  # no auth data
        CHANGE_USER[:30],  # database without NUL
        CHANGE_USER[:-5],  # the attribute value is cut
    ],
)
def test_malformed_change_user(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError):
        ChangeUser.decode(payload, CHANGE_USER_CAPS)


def test_change_user_with_auth_data_running_past_the_packet() -> None:
    with pytest.raises(MysqlProtocolError):
        ChangeUser.decode(b"\x11bob\x00\x14abcd", CHANGE_USER_CAPS)


def test_query_text() -> None:
    assert query_text(b"\x03select 1", 0) == "select 1"
    assert query_text(b"\x03", 0) == ""
    assert query_text("\x03SELECT 'é'".encode(), 0) == "SELECT 'é'"
    # invalid UTF-8 is kept (surrogateescape), so it can be encoded back unchanged
    text = query_text(b"\x03SELECT '\xff'", 0)
    assert text.encode("utf-8", "surrogateescape") == b"SELECT '\xff'"


def test_query_text_with_query_attributes() -> None:
    # parameter_count 0, parameter_set_count 1, then the query
    assert query_text(b"\x03\x00\x01select 1", C.QUERY_ATTRIBUTES) == "select 1"
    # the same bytes without the capability are read as text
    assert query_text(b"\x03\x00\x01select 1", 0) == "\x00\x01select 1"


def test_query_text_with_attributes_is_refused() -> None:
    payload = b"\x03\x01\x01" + b"\x00\x01" + b"\xfe\x00" + b"\x02id" + b"\x017" + b"select 1"
    with pytest.raises(MysqlProtocolError, match="not supported"):
        query_text(payload, C.QUERY_ATTRIBUTES)


def test_query_text_with_attributes_truncated() -> None:
    with pytest.raises(MysqlProtocolError):
        query_text(b"\x03", C.QUERY_ATTRIBUTES)
    with pytest.raises(MysqlProtocolError):
        query_text(b"\x03\x00", C.QUERY_ATTRIBUTES)


def test_encode_query() -> None:
    assert encode_query("SELECT 1") == b"\x03SELECT 1"
    assert query_text(encode_query("SELECT 'ü'"), 0) == "SELECT 'ü'"


def test_statement_id() -> None:
    assert statement_id(b"\x19\x07\x00\x00\x00") == 7
    assert statement_id(b"\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00") == 0xFFFFFFFF
    with pytest.raises(MysqlProtocolError):
        statement_id(b"\x19\x07\x00")


DOCS_PREPARE_OK = (
    b"\x00"
    + b"\x01\x00\x00\x00"  # statement 1
    + b"\x01\x00"  # 1 column
    + b"\x02\x00"  # 2 parameters
    + b"\x00"  # filler
    + b"\x00\x00"  # 0 warnings
)


def test_prepare_ok() -> None:
    prepared = PrepareOk.decode(DOCS_PREPARE_OK)
    assert prepared == PrepareOk(1, 1, 2, 0)
    assert prepared.encode() == DOCS_PREPARE_OK
    with_warnings = PrepareOk(0xDEADBEEF, 0, 0, 3)
    assert with_warnings.encode() == b"\x00\xef\xbe\xad\xde\x00\x00\x00\x00\x00\x03\x00"
    assert PrepareOk.decode(with_warnings.encode()) == with_warnings


def test_prepare_ok_without_warnings_field() -> None:
    assert PrepareOk.decode(DOCS_PREPARE_OK[:10]) == PrepareOk(1, 1, 2, 0)
    assert PrepareOk.decode(DOCS_PREPARE_OK[:9]) == PrepareOk(1, 1, 2, 0)


def test_prepare_ok_with_metadata_follows() -> None:
    # MySQL 8 adds metadata_follows with CLIENT_OPTIONAL_RESULTSET_METADATA
    assert PrepareOk.decode(DOCS_PREPARE_OK + b"\x01") == PrepareOk(1, 1, 2, 0)


@pytest.mark.parametrize("payload", [DOCS_PREPARE_OK[:8], b"\xff" + DOCS_PREPARE_OK[1:], b""])
def test_not_a_prepare_ok(payload: bytes) -> None:
    with pytest.raises(MysqlProtocolError, match="COM_STMT_PREPARE"):
        PrepareOk.decode(payload)


def test_local_infile_name() -> None:
    assert local_infile_name(b"\xfbexports/data.csv") == "exports/data.csv"
    assert local_infile_name(b"\xfb") == ""


def test_encode_lenenc_values() -> None:
    assert encode_lenenc_values([b"1", None, b"", b"x" * 251]) == (
        b"\x011" + b"\xfb" + b"\x00" + b"\xfc\xfb\x00" + b"x" * 251
    )
    assert encode_lenenc_values([]) == b""
