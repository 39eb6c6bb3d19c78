"""StatementTracker as conversations: client messages in, server answers in, statements out."""

from __future__ import annotations

from dbward.codec.pg.backend import (
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyInResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FieldDescription,
    NoData,
    NoticeResponse,
    ParameterDescription,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
)
from dbward.codec.pg.framing import Framer
from dbward.codec.pg.frontend import (
    Bind,
    Close,
    CopyData,
    CopyDone,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    Parse,
    Query,
    Sync,
)
from dbward.proxy.tracking import FinishedStatement, StatementTracker

ROWS = RowDescription((FieldDescription("x", 0, 0, 23, 4, -1, 0),))


class Conversation:
    def __init__(self) -> None:
        self.tracker = StatementTracker()
        self.finished: list[FinishedStatement] = []

    def client(self, *messages: object) -> None:
        block = b"".join(m.encode() for m in messages)  # type: ignore[attr-defined]
        _, frames = Framer().split(block)
        for kind, start, end in frames:
            self.tracker.on_frontend(kind, block, start, end)

    def server(self, *messages: object) -> None:
        block = b"".join(m.encode() for m in messages)  # type: ignore[attr-defined]
        _, frames = Framer().split(block)
        for kind, start, end in frames:
            done = self.tracker.on_backend(kind, block, start, end)
            if done is not None:
                self.finished.append(done)


def test_simple_query_finishes_at_ready_for_query_with_rows() -> None:
    c = Conversation()
    c.client(Query("SELECT 1"))
    c.server(ROWS, DataRow((b"1",)), CommandComplete("SELECT 1"))
    assert c.finished == []
    c.server(ReadyForQuery("I"))
    (done,) = c.finished
    assert (done.text, done.protocol, done.rows, done.tags) == (
        "SELECT 1",
        "simple",
        1,
        ("SELECT 1",),
    )
    assert done.sqlstate is None
    assert c.tracker.idle


def test_multi_statement_query_sums_rows_and_keeps_every_tag() -> None:
    c = Conversation()
    c.client(Query("INSERT INTO t VALUES (1),(2); UPDATE t SET a = 3"))
    c.server(CommandComplete("INSERT 0 2"), CommandComplete("UPDATE 2"), ReadyForQuery("I"))
    (done,) = c.finished
    assert done.rows == 4
    assert done.tags == ("INSERT 0 2", "UPDATE 2")


def test_simple_query_error_is_reported_with_sqlstate_at_ready() -> None:
    c = Conversation()
    c.client(Query("BEGIN; SELECT 1/0"))
    c.server(CommandComplete("BEGIN"), ErrorResponse.build("ERROR", "22012", "division by zero"))
    c.server(ReadyForQuery("E"))
    (done,) = c.finished
    assert done.sqlstate == "22012"
    assert done.error == "division by zero"
    assert c.tracker.transaction_status == "E"
    assert not c.tracker.idle


def test_empty_query() -> None:
    c = Conversation()
    c.client(Query(""))
    c.server(EmptyQueryResponse(), ReadyForQuery("I"))
    assert c.finished[0].rows is None


def test_pipelined_extended_protocol_one_statement_per_execute() -> None:
    c = Conversation()
    c.client(
        Parse("s1", "SELECT $1::int", (23,)),
        Bind("", "s1", (), (b"7",), ()),
        Describe("P", ""),
        Execute("", 0),
        Parse("", "UPDATE t SET a = 1 WHERE a = 2"),
        Bind("p2", "", (), (), ()),
        Execute("p2", 0),
        Sync(),
    )
    c.server(ParseComplete(), BindComplete(), ROWS, DataRow((b"7",)), CommandComplete("SELECT 1"))
    c.server(ParseComplete(), BindComplete(), CommandComplete("UPDATE 3"))
    assert [d.text for d in c.finished] == ["SELECT $1::int", "UPDATE t SET a = 1 WHERE a = 2"]
    assert [d.rows for d in c.finished] == [1, 3]
    assert {d.protocol for d in c.finished} == {"extended"}
    assert c.finished[0].prepared_name == "s1"
    c.server(ReadyForQuery("I"))
    assert c.tracker.idle


def test_prepared_statement_reused_across_syncs_keeps_its_text() -> None:
    c = Conversation()
    c.client(Parse("q", "SELECT 42"), Describe("S", "q"), Sync())
    c.server(ParseComplete(), ParameterDescription(()), ROWS, ReadyForQuery("I"))
    assert c.finished == []
    for _ in range(3):
        c.client(Bind("", "q", (), (), ()), Execute("", 0), Sync())
        c.server(BindComplete(), DataRow((b"42",)), CommandComplete("SELECT 1"), ReadyForQuery("I"))
    assert [d.text for d in c.finished] == ["SELECT 42"] * 3


def test_error_in_extended_batch_skips_to_sync() -> None:
    c = Conversation()
    c.client(
        Parse("", "SELECT 1/0"),
        Bind("", "", (), (), ()),
        Execute("", 0),
        Parse("", "SELECT 2"),
        Bind("", "", (), (), ()),
        Execute("", 0),
        Sync(),
    )
    c.server(ParseComplete(), BindComplete(), ErrorResponse.build("ERROR", "22012", "division"))
    c.server(ReadyForQuery("I"))
    assert [(d.text, d.sqlstate) for d in c.finished] == [("SELECT 1/0", "22012")]
    assert c.tracker.idle


def test_parse_error_is_recorded_as_the_statement() -> None:
    c = Conversation()
    c.client(Parse("", "SELEC 1"), Bind("", "", (), (), ()), Execute("", 0), Sync())
    c.server(ErrorResponse.build("ERROR", "42601", "syntax error"), ReadyForQuery("I"))
    assert [(d.text, d.sqlstate) for d in c.finished] == [("SELEC 1", "42601")]


def test_portal_suspended_finishes_the_execute() -> None:
    c = Conversation()
    c.client(Parse("", "SELECT * FROM t"), Bind("c", "", (), (), ()), Execute("c", 1), Flush())
    c.server(ParseComplete(), BindComplete(), DataRow((b"1",)), PortalSuspended())
    assert len(c.finished) == 1
    c.client(Close("P", "c"), Sync())
    c.server(CloseComplete(), ReadyForQuery("I"))
    assert c.tracker.idle


def test_copy_from_stdin_in_simple_protocol() -> None:
    c = Conversation()
    c.client(Query("COPY t FROM STDIN"))
    c.server(CopyInResponse(0, (0,)))
    c.client(CopyData(b"1\n"), CopyData(b"2\n"), CopyDone())
    c.server(CommandComplete("COPY 2"), ReadyForQuery("I"))
    (done,) = c.finished
    assert done.rows == 2


def test_describe_answered_by_no_data_and_notices_in_between() -> None:
    c = Conversation()
    c.client(Parse("", "CREATE TABLE x (a int)"), Describe("S", ""), Sync())
    c.server(ParseComplete(), NoticeResponse({"S": "NOTICE", "M": "hi"}))
    c.server(ParameterDescription(()), NoData(), ReadyForQuery("I"))
    assert c.finished == []
    assert c.tracker.idle


def test_closing_a_statement_forgets_its_text() -> None:
    c = Conversation()
    c.client(Parse("q", "SELECT 1"), Close("S", "q"), Bind("", "q", (), (), ()), Execute("", 0))
    c.client(Sync())
    c.server(ParseComplete(), CloseComplete())
    c.server(ErrorResponse.build("ERROR", "26000", 'prepared statement "q" does not exist'))
    c.server(ReadyForQuery("I"))
    assert [(d.text, d.prepared_name, d.sqlstate) for d in c.finished] == [("", "q", "26000")]


def test_an_error_answering_bind_records_the_statement() -> None:
    c = Conversation()
    c.client(Parse("", "SELECT $1::int"), Bind("", "", (), (b"x",), ()), Execute("", 0), Sync())
    c.server(ParseComplete(), ErrorResponse.build("ERROR", "22P02", "invalid input syntax"))
    c.server(ReadyForQuery("I"))
    assert [(d.text, d.sqlstate) for d in c.finished] == [("SELECT $1::int", "22P02")]
    assert c.tracker.idle


def test_requests_sent_after_an_error_arrived_are_skipped_until_sync() -> None:
    c = Conversation()
    c.client(Parse("", "SELECT 1/0"), Bind("", "", (), (), ()), Execute("", 0))
    c.server(ParseComplete(), BindComplete(), ErrorResponse.build("ERROR", "22012", "division"))
    # The client had not sent Sync yet: what it sends now, the server discards.
    c.client(Parse("", "INSERT INTO t VALUES (2)"), Bind("", "", (), (), ()), Execute("", 0))
    c.client(Sync())
    c.server(ReadyForQuery("I"))
    assert c.tracker.idle
    c.client(Query("SELECT 'after'"))
    c.server(DataRow((b"after",)), CommandComplete("SELECT 1"), ReadyForQuery("I"))
    assert [(d.text, d.sqlstate) for d in c.finished] == [
        ("SELECT 1/0", "22012"),
        ("SELECT 'after'", None),
    ]


def test_rows_of_a_suspended_portal_are_counted_from_data_rows() -> None:
    c = Conversation()
    c.client(Parse("", "SELECT * FROM t"), Bind("c", "", (), (), ()), Execute("c", 4), Flush())
    c.server(ParseComplete(), BindComplete())
    c.tracker.on_rows(4)
    c.server(PortalSuspended())
    c.client(Execute("c", 4), Sync())
    c.tracker.on_rows(2)
    c.server(CommandComplete("SELECT 2"), ReadyForQuery("T"))
    assert [d.rows for d in c.finished] == [4, 2]


def test_function_calls_are_named_by_oid_without_their_arguments() -> None:
    c = Conversation()
    payload = (764).to_bytes(4, "big") + b"\x00\x01\x00\x01" + b"\x00\x02" + b"\x00\x00\x00\x02hi"
    payload += b"\x00\x00\x00\x01z" + b"\x00\x00"
    c.client(FunctionCall(payload))
    c.server(ReadyForQuery("I"))
    (done,) = c.finished
    assert done.text == "<function call: oid 764, 2 argument(s)>"
    assert done.protocol == "function-call"


def test_a_statement_with_results_already_out_is_announced_once() -> None:
    c = Conversation()
    c.client(Query("SELECT * FROM big"))
    c.server(ROWS)
    assert c.tracker.streaming() is None  # no rows yet
    c.tracker.on_rows(100)
    assert c.tracker.streaming() == ("SELECT * FROM big", "simple")
    c.tracker.on_rows(100)
    assert c.tracker.streaming() is None  # announced already
    c.server(CommandComplete("SELECT 200"), ReadyForQuery("I"))
    assert c.finished[0].rows == 200
    assert c.tracker.streaming() is None


def test_statements_running_when_the_connection_ends_are_handed_back() -> None:
    c = Conversation()
    c.client(Query("SELECT pg_sleep(10)"))
    c.server(ErrorResponse.build("FATAL", "57P01", "terminating connection"))
    (done,) = c.tracker.abandon()
    assert (done.text, done.sqlstate) == ("SELECT pg_sleep(10)", "57P01")
    assert c.tracker.abandon() == []
    assert c.tracker.idle
