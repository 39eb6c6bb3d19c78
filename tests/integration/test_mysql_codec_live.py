"""The MySQL codec against the real MariaDB, with a raw socket and nothing else.

No driver is involved in the conversation: the greeting is decoded with
:class:`HandshakeV10`, the login is a :class:`HandshakeResponse41` carrying a
``mysql_native_password`` scramble computed by :mod:`dbward.codec.mysql.auth`,
commands are built by hand, and every answer is followed with
:class:`Response` and its rows decoded with the span functions. PyMySQL (as the
administrator) only creates and drops this module's user.

The server is the one ``tests/mysql_upstream.py`` names (``DBWARD_TEST_MYSQL``,
127.0.0.1:3306 by default); a missing server is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dbward.codec.mysql import auth
from dbward.codec.mysql.constants import Capability, ColumnType, Command, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import Framer, logical, packet
from dbward.codec.mysql.handshake import AuthSwitchRequest, HandshakeResponse41, HandshakeV10
from dbward.codec.mysql.packets import Err, Ok, PrepareOk, encode_query, local_infile_name
from dbward.codec.mysql.responses import Event, Response
from dbward.codec.mysql.results import (
    ColumnDefinition,
    binary_date_text,
    binary_int,
    binary_row_spans,
    decode_execute,
    text_row_spans,
)
from tests.mysql_upstream import MYSQL_HOST, MYSQL_PORT, admin_connection

C = Capability
T = ColumnType

CLIENT_CAPS = (
    C.LONG_PASSWORD
    | C.LONG_FLAG
    | C.PROTOCOL_41
    | C.TRANSACTIONS
    | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS
    | C.MULTI_RESULTS
    | C.PS_MULTI_RESULTS
    | C.PLUGIN_AUTH
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | C.CONNECT_ATTRS
    | C.CONNECT_WITH_DB
    | C.LOCAL_FILES
)


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    database: str


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """A user and a database of this module's own; the user has a random password (for
    mysql_native_password) and the database a small table."""
    suffix = secrets.token_hex(4)
    user, database = f"dbw_codec_{suffix}", f"dbw_codec_{suffix}"
    password = f"pw-{secrets.token_hex(12)}"
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'")
            cur.execute(
                f"CREATE TABLE `{database}`.people "
                "(id INT PRIMARY KEY, name VARCHAR(20), born DATE, seen DATETIME(6))"
            )
            cur.execute(
                f"INSERT INTO `{database}`.people VALUES "
                "(1, 'ada', '1815-12-10', '2024-01-02 03:04:05.123456'), "
                "(2, NULL, NULL, '2024-01-02 00:00:00'), "
                "(3, 'grace', '1906-12-09', NULL), "
                "(4, 'linus', '1969-12-28', '1991-08-25 20:57:08'), "
                "(5, '', '2000-01-01', '2000-01-01 00:00:00.5')"
            )
        yield Account(user, password, database)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()


class Wire:
    """A socket read through :class:`Framer` and :func:`logical`, one payload at a time."""

    def __init__(self) -> None:
        self.sock = socket.create_connection((MYSQL_HOST, MYSQL_PORT), timeout=10)
        self.framer = Framer()
        self.queue: deque[tuple[int, bytes]] = deque()

    def close(self) -> None:
        self.sock.close()

    def read(self) -> tuple[int, bytes]:
        """The next logical packet: (sequence number of its first frame, payload)."""
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            block, frames = self.framer.split(data)
            index = 0
            while index < len(frames):
                seq = frames[index][0]
                payload, index = logical(block, frames, index)
                self.queue.append((seq, payload))
        return self.queue.popleft()

    def send(self, seq: int, payload: bytes) -> None:
        self.sock.sendall(packet(seq, payload))

    def command(
        self,
        payload: bytes,
        *,
        deprecate_eof: bool,
        columns: list[ColumnDefinition] | None = None,
    ) -> Answer:
        """Send a command (sequence 0) and follow its whole answer."""
        self.send(0, payload)
        response = Response(payload[0], deprecate_eof=deprecate_eof, columns=columns)
        answer = Answer(response)
        while not response.done:
            seq, body = self.read()
            answer.seqs.append(seq)
            event = response.feed(body, 0, len(body))
            answer.events.append(event)
            if event is Event.ROW:
                answer.rows.append((list(response.columns), body))
            if event is Event.PARAMETER:
                answer.params.append(ColumnDefinition.decode(body))
        return answer


class Answer:
    """A command's answer: the response, its events, rows (with their result's columns),
    parameter definitions and the packets' sequence numbers."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.events: list[Event] = []
        self.rows: list[tuple[list[ColumnDefinition], bytes]] = []
        self.params: list[ColumnDefinition] = []
        self.seqs: list[int] = []

    def text_rows(self) -> list[list[bytes | None]]:
        out = []
        for columns, body in self.rows:
            spans = text_row_spans(body, 0, len(body), len(columns))
            out.append([None if s[1] < 0 else body[s[1] : s[2]] for s in spans])
        return out


def login(
    wire: Wire, account: Account, *, deprecate_eof: bool, password: str | None = None
) -> HandshakeV10:
    """Log in with mysql_native_password, following an auth switch if the server asks."""
    seq, greeting_bytes = wire.read()
    assert seq == 0
    greeting = HandshakeV10.decode(greeting_bytes)
    assert len(greeting.nonce) == 20
    password = account.password if password is None else password
    caps = CLIENT_CAPS | (C.DEPRECATE_EOF if deprecate_eof else 0)
    caps &= greeting.capabilities | C.LONG_PASSWORD
    hello = HandshakeResponse41(
        caps,
        1 << 24,
        45,
        account.user,
        auth.native_scramble(password.encode(), greeting.nonce),
        database=account.database,
        plugin=auth.NATIVE,
        attributes={"_client_name": "dbward-codec-test"},
    )
    assert hello.capabilities & C.CONNECT_WITH_DB
    wire.send(1, hello.encode())
    seq, answer = wire.read()
    if answer[:1] == b"\xfe":  # the account uses another plugin than the server's default
        switch = AuthSwitchRequest.decode(answer)
        assert switch.plugin == auth.NATIVE
        wire.send(seq + 1, auth.native_scramble(password.encode(), switch.data))
        seq, answer = wire.read()
    if answer[:1] == b"\xff":
        raise MysqlProtocolError(f"login refused: {Err.decode(answer)}")
    ok = Ok.decode(answer, caps)
    assert ok.status & Status.AUTOCOMMIT
    return greeting


@pytest.fixture(params=[False, True], ids=["eof", "deprecate_eof"])
def session(request: pytest.FixtureRequest, account: Account) -> Iterator[tuple[Wire, bool]]:
    deprecate_eof = bool(request.param)
    wire = Wire()
    try:
        login(wire, account, deprecate_eof=deprecate_eof)
        yield wire, deprecate_eof
    finally:
        with contextlib.suppress(OSError):
            wire.send(0, bytes((Command.QUIT,)))
        wire.close()


# -- login -------------------------------------------------------------------------------


def test_greeting_decodes_and_reencodes_byte_for_byte() -> None:
    wire = Wire()
    try:
        seq, payload = wire.read()
    finally:
        wire.close()
    assert seq == 0
    greeting = HandshakeV10.decode(payload)
    assert greeting.capabilities & C.PROTOCOL_41
    assert greeting.capabilities & C.SECURE_CONNECTION
    assert greeting.capabilities & C.PLUGIN_AUTH
    assert len(greeting.nonce) == 20
    assert greeting.encode() == payload


def test_native_password_login_with_the_codec_alone(account: Account) -> None:
    wire = Wire()
    try:
        login(wire, account, deprecate_eof=False)
        answer = wire.command(encode_query("SELECT CURRENT_USER()"), deprecate_eof=False)
        assert answer.response.error is None
        [[who]] = answer.text_rows()
        assert who == f"{account.user}@%".encode()
    finally:
        wire.close()


def test_a_wrong_scramble_is_refused(account: Account) -> None:
    wire = Wire()
    try:
        with pytest.raises(MysqlProtocolError, match="1045"):
            login(wire, account, deprecate_eof=False, password=account.password + "x")
    finally:
        wire.close()


def test_native_verify_against_the_servers_password_hash(account: Account) -> None:
    """The server's stored hash is '*' + hex(SHA1(SHA1(password))): what native_verify
    checks a scramble against."""
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT PASSWORD(%s)", (account.password,))
            [(stored,)] = cur.fetchall()
    finally:
        admin.close()
    assert stored.startswith("*")
    stage2 = bytes.fromhex(stored[1:])
    nonce = secrets.token_bytes(20)
    assert auth.native_verify(auth.native_scramble(account.password.encode(), nonce), nonce, stage2)
    assert not auth.native_verify(auth.native_scramble(b"other", nonce), nonce, stage2)


# -- COM_QUERY ---------------------------------------------------------------------------


def test_select_literals(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(encode_query("SELECT 1, 'a', NULL"), deprecate_eof=deprecate_eof)
    response = answer.response
    assert response.done
    assert response.error is None
    assert response.results == 1
    assert response.rows == 1
    assert [c.name for c in response.columns] == ["1", "a", "NULL"]
    assert response.columns[0].type in (T.LONG, T.LONGLONG)
    assert response.columns[1].type == T.VAR_STRING
    assert response.columns[2].type == T.NULL
    assert answer.text_rows() == [[b"1", b"a", None]]
    middle = [Event.COLUMN] * 3 + ([] if deprecate_eof else [Event.COLUMNS_END])
    assert answer.events == [Event.RESULT, *middle, Event.ROW, Event.RESULT_END]
    assert answer.seqs == list(range(1, len(answer.seqs) + 1))
    assert response.status & Status.AUTOCOMMIT
    assert not response.status & Status.MORE_RESULTS_EXISTS


def test_multi_statement(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(encode_query("SELECT 1; SELECT 2"), deprecate_eof=deprecate_eof)
    response = answer.response
    assert response.done
    assert response.error is None
    assert response.results == 2
    assert response.rows == 2
    assert answer.events.count(Event.RESULT) == 2
    assert answer.events.count(Event.RESULT_END) == 2
    assert answer.text_rows() == [[b"1"], [b"2"]]
    assert [c.name for c in response.columns] == ["2"]  # the last result's


def test_statement_error(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(encode_query("SELECT no_such_column"), deprecate_eof=deprecate_eof)
    assert answer.events == [Event.ERROR]
    assert answer.response.done
    error = answer.response.error
    assert error is not None
    assert (error.code, error.sqlstate) == (1054, "42S22")
    assert "'no_such_column'" in error.message


def test_ok_with_affected_rows(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(
        encode_query("CREATE TEMPORARY TABLE t (a INT); INSERT INTO t VALUES (1), (2), (3)"),
        deprecate_eof=deprecate_eof,
    )
    assert answer.events == [Event.OK, Event.OK]
    assert answer.response.affected == 3
    assert answer.response.done


def test_ping_and_statistics(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    ping = wire.command(bytes((Command.PING,)), deprecate_eof=deprecate_eof)
    assert ping.events == [Event.OK]
    stats = wire.command(bytes((Command.STATISTICS,)), deprecate_eof=deprecate_eof)
    assert stats.events == [Event.OTHER]
    assert stats.response.done


# -- prepared statements ------------------------------------------------------------------


def _prepare(wire: Wire, sql: str, deprecate_eof: bool) -> tuple[PrepareOk, Answer]:
    answer = wire.command(
        bytes((Command.STMT_PREPARE,)) + sql.encode(), deprecate_eof=deprecate_eof
    )
    assert answer.response.error is None, answer.response.error
    prepared = answer.response.prepared
    assert prepared is not None
    return prepared, answer


def _execute_payload(statement: int, flags: int = 0) -> bytes:
    """COM_STMT_EXECUTE for 3 parameters: 41 (LONGLONG), 'xyz' (VAR_STRING), NULL."""
    return (
        bytes((Command.STMT_EXECUTE,))
        + struct.pack("<IBI", statement, flags, 1)
        + b"\x04"  # NULL bitmap: the third parameter (bit 2)
        + b"\x01"  # new parameters bound: the types follow
        + bytes((T.LONGLONG, 0, T.VAR_STRING, 0, T.NULL, 0))
        + struct.pack("<q", 41)
        + b"\x03xyz"
    )


def test_prepare_and_execute(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    prepared, answer = _prepare(
        wire, "SELECT ? + 1 AS n, CONCAT(?, '!') AS s, ? AS z", deprecate_eof
    )
    assert prepared.params == 3
    assert prepared.columns == 3
    assert len(answer.params) == 3
    assert [c.name for c in answer.response.columns] == ["n", "s", "z"]
    eof = [Event.COLUMNS_END] if not deprecate_eof else []
    assert answer.events == [
        Event.PREPARED,
        *[Event.PARAMETER] * 3,
        *eof,
        *[Event.COLUMN] * 3,
        *eof,
    ]

    payload = _execute_payload(prepared.statement_id)
    params = decode_execute(payload, prepared.params)
    assert params.shown == ("41", "xyz", "NULL")

    result = wire.command(payload, deprecate_eof=deprecate_eof)
    response = result.response
    assert response.error is None, response.error
    assert response.done
    assert response.rows == 1
    [(columns, row)] = result.rows
    types = [c.type for c in columns]
    spans = binary_row_spans(row, 0, len(row), types)
    n, s, z = spans
    assert types[0] in (T.LONGLONG, T.NEWDECIMAL, T.DOUBLE)
    if types[0] == T.LONGLONG:
        assert binary_int(row[n[1] : n[2]], columns[0].unsigned) == 42
    else:
        assert row[n[1] : n[2]] in (b"42", struct.pack("<d", 42.0))
    assert row[s[1] : s[2]] == b"xyz!"
    assert z[1] == -1  # NULL

    close = bytes((Command.STMT_CLOSE,)) + struct.pack("<I", prepared.statement_id)
    wire.send(0, close)  # no answer
    assert wire.command(bytes((Command.PING,)), deprecate_eof=deprecate_eof).events == [Event.OK]


def test_execute_with_a_cursor_and_fetch(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    prepared, _ = _prepare(wire, "SELECT id FROM people ORDER BY id", deprecate_eof)
    assert prepared.params == 0
    # flags 1: CURSOR_TYPE_READ_ONLY; iteration count 1; no parameters
    execute = bytes((Command.STMT_EXECUTE,)) + struct.pack("<IBI", prepared.statement_id, 1, 1)
    opened = wire.command(execute, deprecate_eof=deprecate_eof)
    assert opened.response.error is None, opened.response.error
    assert opened.response.done
    assert opened.response.status & Status.CURSOR_EXISTS
    assert opened.response.rows == 0
    if deprecate_eof:
        # MariaDB ends the definitions with an OK (header 0xFE) carrying CURSOR_EXISTS
        assert opened.events == [Event.RESULT, Event.COLUMN, Event.RESULT_END]
    else:
        assert opened.events == [Event.RESULT, Event.COLUMN, Event.COLUMNS_END]
    columns = opened.response.columns
    assert [c.name for c in columns] == ["id"]

    values = []
    for _ in range(10):
        fetch = bytes((Command.STMT_FETCH,)) + struct.pack("<II", prepared.statement_id, 2)
        batch = wire.command(fetch, deprecate_eof=deprecate_eof, columns=columns)
        assert batch.response.error is None
        assert batch.response.done
        for _, row in batch.rows:
            [(_, value, end)] = binary_row_spans(row, 0, len(row), [columns[0].type])
            values.append(binary_int(row[value:end], columns[0].unsigned))
        if batch.response.status & Status.LAST_ROW_SENT:
            break
        assert len(batch.rows) == 2
    assert values == [1, 2, 3, 4, 5]


def test_text_rows_of_a_table(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(
        encode_query("SELECT id, name, born, seen FROM people ORDER BY id"),
        deprecate_eof=deprecate_eof,
    )
    response = answer.response
    assert response.error is None
    assert response.rows == 5
    assert [c.org_name for c in response.columns] == ["id", "name", "born", "seen"]
    assert {c.org_table for c in response.columns} == {"people"}
    assert [c.type for c in response.columns] == [T.LONG, T.VAR_STRING, T.DATE, T.DATETIME]
    assert response.columns[3].decimals == 6
    assert answer.text_rows() == [
        [b"1", b"ada", b"1815-12-10", b"2024-01-02 03:04:05.123456"],
        [b"2", None, None, b"2024-01-02 00:00:00.000000"],
        [b"3", b"grace", b"1906-12-09", None],
        [b"4", b"linus", b"1969-12-28", b"1991-08-25 20:57:08.000000"],
        [b"5", b"", b"2000-01-01", b"2000-01-01 00:00:00.500000"],
    ]


def test_binary_rows_of_a_table(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    prepared, _ = _prepare(
        wire, "SELECT id, name, born, seen FROM people WHERE id >= ? ORDER BY id", deprecate_eof
    )
    payload = (
        bytes((Command.STMT_EXECUTE,))
        + struct.pack("<IBI", prepared.statement_id, 0, 1)
        + b"\x00\x01"
        + bytes((T.LONG, 0))
        + struct.pack("<i", 1)
    )
    assert decode_execute(payload, 1).shown == ("1",)
    answer = wire.command(payload, deprecate_eof=deprecate_eof)
    assert answer.response.error is None
    decoded = []
    for columns, row in answer.rows:
        types = [c.type for c in columns]
        values: list[object] = []
        spans = binary_row_spans(row, 0, len(row), types)
        for type_, (_, start, end) in zip(types, spans, strict=True):
            value = row[start:end] if start >= 0 else None
            if value is None:
                values.append(None)
            elif type_ == T.LONG:
                values.append(binary_int(value, False))
            elif type_ in (T.DATE, T.DATETIME):
                values.append(binary_date_text(value))
            else:
                values.append(value)
        decoded.append(values)
    assert decoded == [
        [1, b"ada", "1815-12-10", "2024-01-02 03:04:05.123456"],
        [2, None, None, "2024-01-02"],  # a DATETIME at midnight is sent in 4 bytes
        [3, b"grace", "1906-12-09", None],
        [4, b"linus", "1969-12-28", "1991-08-25 20:57:08"],
        [5, b"", "2000-01-01", "2000-01-01 00:00:00.500000"],
    ]


def test_field_list(session: tuple[Wire, bool]) -> None:
    wire, deprecate_eof = session
    answer = wire.command(bytes((Command.FIELD_LIST,)) + b"people\x00", deprecate_eof=deprecate_eof)
    assert answer.response.error is None
    assert answer.events == [*[Event.COLUMN] * 4, Event.COLUMNS_END]
    assert [c.name for c in answer.response.columns] == ["id", "name", "born", "seen"]
    assert answer.response.done


def test_local_infile(session: tuple[Wire, bool]) -> None:
    """The server asks for the file; the client sends none (an empty packet); OK follows."""
    wire, deprecate_eof = session
    wire.send(0, encode_query("LOAD DATA LOCAL INFILE 'nothing.csv' INTO TABLE people"))
    response = Response(Command.QUERY, deprecate_eof=deprecate_eof)
    seq, body = wire.read()
    assert response.feed(body, 0, len(body)) is Event.LOCAL_INFILE
    assert local_infile_name(body) == "nothing.csv"
    assert not response.done
    wire.send(seq + 1, b"")
    response.local_infile_refused()
    seq, body = wire.read()
    assert response.feed(body, 0, len(body)) is Event.OK
    assert response.done
    assert response.affected == 0
