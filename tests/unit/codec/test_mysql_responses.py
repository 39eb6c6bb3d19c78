"""Following whole answers packet by packet (responses.py).

Each answer is written out as the payloads a server sends, in order, from the
MySQL "COM_QUERY Response" (OK, ERR, LOCAL INFILE Request, Text Resultset,
Multi-resultset), "COM_STMT_PREPARE Response", "COM_STMT_EXECUTE Response"
(with a cursor, then COM_STMT_FETCH), "COM_FIELD_LIST", "COM_STATISTICS" and
"COM_PING" pages, with and without CLIENT_DEPRECATE_EOF (where the EOF after
the column definitions is left out and the rows end with an OK packet whose
header is 0xFE). The payloads are framed into one stream and fed to
:class:`Response` at their offsets in the framer's block, as the proxy does.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbward.codec.mysql.constants import Command, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import Framer, packet
from dbward.codec.mysql.packets import Err, PrepareOk
from dbward.codec.mysql.responses import NO_ANSWER, Event, Response, Shape
from dbward.codec.mysql.results import ColumnDefinition

E = Event
FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def column(name: bytes, type_: int, charset: bytes = b"\x2d\x00", default: bytes = b"") -> bytes:
    """A ColumnDefinition41 payload, spelled out field by field."""
    return (
        b"\x03def"  # catalog
        + b"\x04shop"  # schema
        + b"\x01p"  # table alias
        + b"\x06people"  # table
        + bytes((len(name),))
        + name  # name
        + bytes((len(name),))
        + name  # original name
        + b"\x0c"  # length of the fixed fields
        + charset
        + b"\x50\x00\x00\x00"  # display length 80
        + bytes((type_,))
        + b"\x00\x00"  # flags
        + b"\x00"  # decimals
        + b"\x00\x00"  # filler
        + default  # COM_FIELD_LIST only
    )


def eof(status: int = 0x0002, warnings: int = 0) -> bytes:
    return b"\xfe" + warnings.to_bytes(2, "little") + status.to_bytes(2, "little")


def ok(affected: int = 0, status: int = 0x0002, header: bytes = b"\x00") -> bytes:
    return header + bytes((affected,)) + b"\x00" + status.to_bytes(2, "little") + b"\x00\x00"


def feed(response: Response, payloads: list[bytes]) -> list[Event]:
    """Frame the payloads into one stream and feed each at its offset in the block."""
    stream = b"".join(packet(i + 1, p) for i, p in enumerate(payloads))
    block, frames = Framer().split(stream)
    assert len(frames) == len(payloads)
    return [response.feed(block, start, end) for _, start, end in frames]


COL_ID = column(b"id", 0x03)  # LONG
COL_NAME = column(b"name", 0xFD)  # VAR_STRING
MORE = Status.AUTOCOMMIT | Status.MORE_RESULTS_EXISTS
ERR_1064 = b"\xff\x28\x04#42000You have an error in your SQL syntax"


# -- COM_QUERY --------------------------------------------------------------------------------


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_query_ok(deprecate_eof: bool) -> None:
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    assert response.shape is Shape.RESULTS
    assert not response.done
    assert feed(response, [ok(affected=3, status=0x0003)]) == [E.OK]
    assert response.done
    assert (response.affected, response.status, response.results, response.rows) == (3, 3, 1, 0)
    assert response.error is None
    assert response.columns == []


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_query_error(deprecate_eof: bool) -> None:
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    assert feed(response, [ERR_1064]) == [E.ERROR]
    assert response.done
    assert response.error == Err(1064, "42000", "You have an error in your SQL syntax")
    assert response.results == 0


def test_query_result_set_with_eof() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    events = feed(
        response,
        [
            b"\x02",  # column count
            COL_ID,
            COL_NAME,
            eof(),
            b"\x011\x03ada",
            b"\x012\xfb",  # name NULL
            b"\x013\x00",  # name ''
            eof(status=0x0022, warnings=1),  # AUTOCOMMIT | NO_INDEX_USED
        ],
    )
    assert events == [
        E.RESULT,
        E.COLUMN,
        E.COLUMN,
        E.COLUMNS_END,
        E.ROW,
        E.ROW,
        E.ROW,
        E.RESULT_END,
    ]
    assert response.done
    assert response.rows == 3
    assert response.results == 1
    assert response.status == 0x0022
    assert [c.name for c in response.columns] == ["id", "name"]
    assert response.columns[0] == ColumnDefinition("shop", "p", "people", "id", "id", 45, 80, 3)


def test_query_result_set_with_deprecate_eof() -> None:
    response = Response(Command.QUERY, deprecate_eof=True)
    events = []
    for payload, in_rows in [
        (b"\x02", False),
        (COL_ID, False),
        (COL_NAME, True),  # the last definition: rows follow, no EOF between
        (b"\x011\x03ada", True),
        (b"\x012\xfb", True),
        (ok(status=0x0022, header=b"\xfe"), False),
    ]:
        events += feed(response, [payload])
        assert response.in_rows is in_rows
    assert events == [E.RESULT, E.COLUMN, E.COLUMN, E.ROW, E.ROW, E.RESULT_END]
    assert response.done
    assert (response.rows, response.status) == (2, 0x0022)


def test_query_result_set_without_rows() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    events = feed(response, [b"\x01", COL_ID, eof(), eof()])
    assert events == [E.RESULT, E.COLUMN, E.COLUMNS_END, E.RESULT_END]
    assert response.done
    assert response.rows == 0


def test_query_result_set_with_251_columns() -> None:
    response = Response(Command.QUERY, deprecate_eof=True)
    events = feed(response, [b"\xfc\xfb\x00", *[COL_ID] * 251, b"\x011" * 251, ok(header=b"\xfe")])
    assert events == [E.RESULT, *[E.COLUMN] * 251, E.ROW, E.RESULT_END]
    assert len(response.columns) == 251


def test_query_error_in_the_middle_of_the_rows() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    err = b"\xff\x25\x05#70100Query execution was interrupted"  # 1317
    events = feed(response, [b"\x01", COL_ID, eof(), b"\x011", err])
    assert events == [E.RESULT, E.COLUMN, E.COLUMNS_END, E.ROW, E.ERROR]
    assert response.done
    assert response.rows == 1
    assert response.error is not None
    assert response.error.code == 1317
    assert response.error.sqlstate == "70100"


def test_query_error_instead_of_a_column_definition() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    assert feed(response, [b"\x02", COL_ID, ERR_1064]) == [E.RESULT, E.COLUMN, E.ERROR]
    assert response.done


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_rows_starting_with_0xfe(deprecate_eof: bool) -> None:
    """A text row whose first value is 2^24 bytes or more starts with 0xFE like an EOF."""
    value = b"x" * (1 << 24)
    row = b"\xfe" + (1 << 24).to_bytes(8, "little") + value
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    terminator = ok(header=b"\xfe") if deprecate_eof else eof()
    middle = [] if deprecate_eof else [eof()]
    for payload in [b"\x01", COL_NAME, *middle]:
        response.feed(payload, 0, len(payload))
    assert response.in_rows
    # fed whole (joined by framing.logical) ...
    assert response.feed(row, 0, len(row)) is E.ROW
    # ... or as its first 0xFFFFFF-byte packet
    assert response.feed(row, 0, 0xFFFFFF) is E.ROW
    assert response.feed(terminator, 0, len(terminator)) is E.RESULT_END
    assert response.rows == 2
    assert response.done


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_two_result_sets(deprecate_eof: bool) -> None:
    """SELECT 1; SELECT 2: MORE_RESULTS_EXISTS on the first result's last packet."""
    end_more = ok(status=MORE, header=b"\xfe") if deprecate_eof else eof(status=MORE)
    end = ok(header=b"\xfe") if deprecate_eof else eof()
    middle = [] if deprecate_eof else [eof()]
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    first = feed(response, [b"\x01", column(b"1", 8), *middle, b"\x011", end_more])
    assert first[-1] is E.RESULT_END
    assert not response.done
    assert response.status & Status.MORE_RESULTS_EXISTS
    second = feed(response, [b"\x01", column(b"2", 8), *middle, b"\x012", end])
    assert second == first
    assert response.done
    assert response.results == 2
    assert response.rows == 2
    assert [c.name for c in response.columns] == ["2"]
    assert not response.status & Status.MORE_RESULTS_EXISTS


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_call_procedure_result_then_ok(deprecate_eof: bool) -> None:
    """CALL p(): a result set, then the OK of the CALL itself."""
    end_more = ok(status=MORE, header=b"\xfe") if deprecate_eof else eof(status=MORE)
    middle = [] if deprecate_eof else [eof()]
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    events = feed(response, [b"\x01", COL_ID, *middle, b"\x011", end_more, ok(affected=0)])
    assert events[-2:] == [E.RESULT_END, E.OK]
    assert response.done
    assert response.results == 2


def test_ok_then_result_then_error() -> None:
    """INSERT ...; SELECT ...; <bad SQL>: an OK with MORE, a result with MORE, an ERR."""
    response = Response(Command.QUERY, deprecate_eof=False)
    events = feed(
        response,
        [ok(affected=2, status=MORE), b"\x01", COL_ID, eof(), b"\x011", eof(status=MORE), ERR_1064],
    )
    assert events == [E.OK, E.RESULT, E.COLUMN, E.COLUMNS_END, E.ROW, E.RESULT_END, E.ERROR]
    assert response.done
    assert response.affected == 2
    assert response.error is not None


def test_local_infile() -> None:
    response = Response(Command.QUERY, deprecate_eof=True)
    assert feed(response, [b"\xfbpeople.csv"]) == [E.LOCAL_INFILE]
    assert not response.done
    # the proxy sends the server an empty packet (no file), and says so
    response.local_infile_refused()
    assert feed(response, [ok(affected=0)]) == [E.OK]
    assert response.done


def test_local_infile_refused_with_an_error() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    assert feed(response, [b"\xfbdata.csv"]) == [E.LOCAL_INFILE]
    response.local_infile_refused()
    assert feed(response, [b"\xff\x94\x07#42000LOAD DATA LOCAL is disabled"]) == [E.ERROR]
    assert response.done


# -- COM_STMT_PREPARE -------------------------------------------------------------------------


def prepare_ok(columns: int, params: int, statement: int = 1) -> bytes:
    return (
        b"\x00"
        + statement.to_bytes(4, "little")
        + columns.to_bytes(2, "little")
        + params.to_bytes(2, "little")
        + b"\x00\x00\x00"
    )


PARAM = column(b"?", 0xFD, charset=b"\x3f\x00")


def test_prepare_with_params_and_columns_with_eof() -> None:
    response = Response(Command.STMT_PREPARE, deprecate_eof=False)
    assert response.shape is Shape.PREPARE
    events = feed(response, [prepare_ok(2, 2, 5), PARAM, PARAM, eof(), COL_ID, COL_NAME, eof()])
    assert events == [
        E.PREPARED,
        E.PARAMETER,
        E.PARAMETER,
        E.COLUMNS_END,
        E.COLUMN,
        E.COLUMN,
        E.COLUMNS_END,
    ]
    assert response.done
    assert response.prepared == PrepareOk(5, 2, 2, 0)
    assert [c.name for c in response.columns] == ["id", "name"]  # parameters are not columns


def test_prepare_with_params_and_columns_with_deprecate_eof() -> None:
    response = Response(Command.STMT_PREPARE, deprecate_eof=True)
    events = feed(response, [prepare_ok(2, 2), PARAM, PARAM, COL_ID, COL_NAME])
    assert events == [E.PREPARED, E.PARAMETER, E.PARAMETER, E.COLUMN, E.COLUMN]
    assert response.done
    assert [c.name for c in response.columns] == ["id", "name"]


@pytest.mark.parametrize(
    ("deprecate_eof", "payloads", "events"),
    [
        (False, [prepare_ok(0, 1), PARAM, eof()], [E.PREPARED, E.PARAMETER, E.COLUMNS_END]),
        (True, [prepare_ok(0, 1), PARAM], [E.PREPARED, E.PARAMETER]),
        (False, [prepare_ok(1, 0), COL_ID, eof()], [E.PREPARED, E.COLUMN, E.COLUMNS_END]),
        (True, [prepare_ok(1, 0), COL_ID], [E.PREPARED, E.COLUMN]),
        (False, [prepare_ok(0, 0)], [E.PREPARED]),
        (True, [prepare_ok(0, 0)], [E.PREPARED]),
        (False, [ERR_1064], [E.ERROR]),
    ],
    ids=[
        "params-only-eof",
        "params-only-deprecate",
        "columns-only-eof",
        "columns-only-deprecate",
        "neither-eof",
        "neither-deprecate",
        "error",
    ],
)
def test_prepare_shapes(deprecate_eof: bool, payloads: list[bytes], events: list[Event]) -> None:
    response = Response(Command.STMT_PREPARE, deprecate_eof=deprecate_eof)
    assert feed(response, payloads) == events
    assert response.done


def test_prepare_answered_with_something_else() -> None:
    response = Response(Command.STMT_PREPARE, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="COM_STMT_PREPARE"):
        feed(response, [b"\x01"])


def test_prepare_missing_eof_after_params() -> None:
    response = Response(Command.STMT_PREPARE, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="expected EOF"):
        feed(response, [prepare_ok(1, 1), PARAM, COL_ID])


# -- COM_STMT_EXECUTE and COM_STMT_FETCH ------------------------------------------------------


def test_execute_binary_result_set() -> None:
    response = Response(Command.STMT_EXECUTE, deprecate_eof=False)
    rows = [b"\x00\x00\x01\x00\x00\x00\x03ada", b"\x00\x08\x02\x00\x00\x00"]  # 2nd: name NULL
    events = feed(response, [b"\x02", COL_ID, COL_NAME, eof(), *rows, eof()])
    assert events == [E.RESULT, E.COLUMN, E.COLUMN, E.COLUMNS_END, E.ROW, E.ROW, E.RESULT_END]
    assert response.rows == 2
    assert response.done


def test_execute_ok() -> None:
    response = Response(Command.STMT_EXECUTE, deprecate_eof=True)
    assert feed(response, [ok(affected=1)]) == [E.OK]
    assert response.affected == 1


def test_execute_with_a_cursor_then_fetch() -> None:
    cursor = Status.AUTOCOMMIT | Status.CURSOR_EXISTS
    response = Response(Command.STMT_EXECUTE, deprecate_eof=False)
    events = feed(response, [b"\x01", COL_ID, eof(status=cursor)])
    assert events == [E.RESULT, E.COLUMN, E.COLUMNS_END]
    assert response.done  # the rows come with COM_STMT_FETCH
    assert not response.in_rows
    assert response.status & Status.CURSOR_EXISTS
    columns = response.columns

    fetch = Response(Command.STMT_FETCH, deprecate_eof=False, columns=columns)
    assert fetch.shape is Shape.ROWS
    assert fetch.in_rows
    assert fetch.columns == columns
    events = feed(fetch, [b"\x00\x00\x01\x00\x00\x00", b"\x00\x00\x02\x00\x00\x00", eof(cursor)])
    assert events == [E.ROW, E.ROW, E.RESULT_END]
    assert fetch.done
    assert fetch.status & Status.CURSOR_EXISTS

    last = Response(Command.STMT_FETCH, deprecate_eof=False, columns=columns)
    final = cursor | Status.LAST_ROW_SENT
    assert feed(last, [b"\x00\x00\x03\x00\x00\x00", eof(final)]) == [E.ROW, E.RESULT_END]
    assert last.status & Status.LAST_ROW_SENT
    assert last.done


def test_execute_with_a_cursor_and_deprecate_eof() -> None:
    """What MariaDB 10.11 sends (seen in tests/integration/test_mysql_codec_live.py): the
    column definitions, then at once an OK with the 0xFE header and CURSOR_EXISTS."""
    response = Response(Command.STMT_EXECUTE, deprecate_eof=True)
    events = feed(response, [b"\x01", COL_ID, bytes.fromhex("fe000062000000")])
    assert events == [E.RESULT, E.COLUMN, E.RESULT_END]
    assert response.done
    assert response.rows == 0
    assert response.status & Status.CURSOR_EXISTS


def test_a_query_never_stops_at_cursor_exists() -> None:
    # the status flag only means "rows follow with COM_STMT_FETCH" for COM_STMT_EXECUTE
    response = Response(Command.QUERY, deprecate_eof=False)
    events = feed(response, [b"\x01", COL_ID, eof(status=0x42), b"\x011", eof()])
    assert events[-2:] == [E.ROW, E.RESULT_END]


def test_fetch_error() -> None:
    fetch = Response(Command.STMT_FETCH, deprecate_eof=False, columns=[])
    assert feed(fetch, [b"\xff\xdb\x04#HY000Unknown prepared statement handler"]) == [E.ERROR]
    assert fetch.done


def test_fetch_with_deprecate_eof() -> None:
    fetch = Response(Command.STMT_FETCH, deprecate_eof=True, columns=[])
    assert feed(fetch, [b"\x00\x00\x01", ok(status=0x0082, header=b"\xfe")]) == [
        E.ROW,
        E.RESULT_END,
    ]
    assert fetch.status == 0x0082


# -- other commands ---------------------------------------------------------------------------


def test_field_list() -> None:
    response = Response(Command.FIELD_LIST, deprecate_eof=False)
    assert response.shape is Shape.FIELDS
    events = feed(
        response,
        [
            column(b"id", 0x03, default=b"\xfb"),  # no default (NULL)
            column(b"name", 0xFD, default=b"\x03bob"),
            eof(),
        ],
    )
    assert events == [E.COLUMN, E.COLUMN, E.COLUMNS_END]
    assert response.done
    assert [c.name for c in response.columns] == ["id", "name"]


def test_field_list_ending_with_an_ok_under_deprecate_eof() -> None:
    response = Response(Command.FIELD_LIST, deprecate_eof=True)
    events = feed(response, [COL_ID, ok(status=0x0002, header=b"\xfe")])
    assert events == [E.COLUMN, E.COLUMNS_END]
    assert response.done
    assert response.status == 2


def test_field_list_of_an_unknown_table() -> None:
    response = Response(Command.FIELD_LIST, deprecate_eof=False)
    assert feed(response, [b"\xff\x7a\x04#42S02Table 'shop.nope' doesn't exist"]) == [E.ERROR]
    assert response.done


def test_statistics() -> None:
    response = Response(Command.STATISTICS, deprecate_eof=False)
    assert response.shape is Shape.STRING
    text = b"Uptime: 3600  Threads: 1  Questions: 42  Slow queries: 0  Opens: 17"
    assert feed(response, [text]) == [E.OTHER]
    assert response.done


@pytest.mark.parametrize(
    "command",
    [Command.PING, Command.INIT_DB, Command.RESET_CONNECTION, Command.STMT_RESET],
)
def test_simple_commands(command: Command) -> None:
    response = Response(command, deprecate_eof=True)
    assert response.shape is Shape.SIMPLE
    assert feed(response, [ok()]) == [E.OK]
    assert response.done
    assert response.status == 2


def test_ping_refused() -> None:
    response = Response(Command.PING, deprecate_eof=False)
    assert feed(response, [ERR_1064]) == [E.ERROR]


def test_set_option_answered_with_eof() -> None:
    response = Response(Command.SET_OPTION, deprecate_eof=True)
    assert feed(response, [eof(status=0x0202)]) == [E.OK]
    assert response.status == 0x0202
    assert response.done


def test_commands_without_answers() -> None:
    assert {Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA, Command.QUIT} == NO_ANSWER


# -- what cannot be there ---------------------------------------------------------------------


def test_a_packet_after_the_answer() -> None:
    response = Response(Command.PING, deprecate_eof=False)
    feed(response, [ok()])
    with pytest.raises(MysqlProtocolError, match="after the answer"):
        response.feed(ok(), 0, 7)


def test_an_empty_packet() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="empty packet"):
        response.feed(b"", 0, 0)


def test_a_result_set_without_columns() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="no columns"):
        feed(response, [b"\xfc\x00\x00"])


def test_a_simple_command_answered_with_a_result() -> None:
    response = Response(Command.PING, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="simple command"):
        feed(response, [b"\x01"])


def test_missing_eof_after_the_columns() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError, match="expected EOF"):
        feed(response, [b"\x01", COL_ID, b"\x011"])


def test_a_malformed_column_definition() -> None:
    response = Response(Command.QUERY, deprecate_eof=False)
    with pytest.raises(MysqlProtocolError):
        feed(response, [b"\x01", COL_ID[:20]])


# -- any bytes --------------------------------------------------------------------------------

COMMANDS = [
    Command.QUERY,
    Command.STMT_EXECUTE,
    Command.STMT_PREPARE,
    Command.FIELD_LIST,
    Command.STATISTICS,
    Command.STMT_FETCH,
    Command.PING,
    Command.CHANGE_USER,
]
VALID_PIECES = [
    b"\x01",
    b"\x02",
    b"\xfc\x01\x00",
    COL_ID,
    COL_NAME,
    eof(),
    eof(MORE),
    eof(Status.CURSOR_EXISTS),
    ok(),
    ok(status=MORE),
    ok(header=b"\xfe"),
    ok(status=MORE, header=b"\xfe"),
    prepare_ok(1, 1),
    prepare_ok(0, 2),
    b"\x011\x03ada",
    b"\x00\x00\x01\x00\x00\x00",
    b"\xfbfile",
    ERR_1064,
    b"",
]


def _follow(response: Response, payloads: list[bytes]) -> None:
    for payload in payloads:
        if response.done:
            with pytest.raises(MysqlProtocolError):
                response.feed(payload, 0, len(payload))
            return
        try:
            event = response.feed(payload, 0, len(payload))
        except MysqlProtocolError:
            return
        assert isinstance(event, Event)


@FAST
@given(
    st.sampled_from(COMMANDS),
    st.booleans(),
    st.lists(st.binary(max_size=40), max_size=12),
)
def test_random_bytes_raise_only_protocol_errors(
    command: int, deprecate_eof: bool, payloads: list[bytes]
) -> None:
    _follow(Response(command, deprecate_eof=deprecate_eof), payloads)


@FAST
@given(
    st.sampled_from(COMMANDS),
    st.booleans(),
    st.lists(
        st.sampled_from(VALID_PIECES)
        | st.tuples(st.sampled_from(VALID_PIECES), st.integers(0, 60)).map(lambda t: t[0][: t[1]]),
        max_size=16,
    ),
)
def test_plausible_packets_in_any_order_raise_only_protocol_errors(
    command: int, deprecate_eof: bool, payloads: list[bytes]
) -> None:
    _follow(Response(command, deprecate_eof=deprecate_eof), payloads)


@FAST
@given(
    st.booleans(),
    st.lists(
        st.tuples(st.integers(1, 4), st.lists(st.none() | st.binary(max_size=30), max_size=5)),
        min_size=1,
        max_size=4,
    ),
)
def test_generated_result_sets_are_followed_to_the_end(
    deprecate_eof: bool, results: list[tuple[int, list[bytes | None]]]
) -> None:
    """Any number of result sets linked by MORE_RESULTS_EXISTS, each with any rows."""
    payloads: list[bytes] = []
    for index, (count, cells) in enumerate(results):
        more = index < len(results) - 1
        payloads.append(bytes((count,)))
        payloads += [COL_NAME] * count
        if not deprecate_eof:
            payloads.append(eof())
        for cell in cells:  # one row per cell: the cell, then NULLs
            first = b"\xfb" if cell is None else bytes((len(cell),)) + cell
            payloads.append(first + b"\xfb" * (count - 1))
        status = MORE if more else Status.AUTOCOMMIT
        payloads.append(ok(status=status, header=b"\xfe") if deprecate_eof else eof(status))
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    events = feed(response, payloads)
    assert response.done
    assert response.results == len(results)
    assert response.rows == sum(len(cells) for _, cells in results)
    assert events.count(E.ROW) == response.rows
    assert events.count(E.RESULT) == events.count(E.RESULT_END) == len(results)
    assert len(response.columns) == results[-1][0]
