"""Following the answer to one command, packet by packet.

A :class:`Response` is made for each command that gets an answer; fed each
packet the server sends, it says what the packet is (:class:`Event`) and
keeps what the proxy needs: the result's column definitions, the row count,
the final status, and an error if there was one. A COM_QUERY with several
statements, or a CALL, gives several results in a row (the status flag
MORE_RESULTS_EXISTS links them); the response is done after the last.
"""

from __future__ import annotations

import functools
from enum import IntEnum

from dbward.codec.mysql.constants import Command, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.packets import (
    EOF_HEADER,
    ERR,
    LOCAL_INFILE,
    OK,
    Err,
    PrepareOk,
    eof_status,
    is_eof,
    ok_affected,
    ok_status,
)
from dbward.codec.mysql.results import ColumnDefinition
from dbward.codec.mysql.wire import read_lenenc


class Event(IntEnum):
    OK = 1  # a statement finished without rows (more may follow: see ``done``)
    ERROR = 2  # the command failed; the response is done
    RESULT = 3  # a result set starts: its column count
    COLUMN = 4  # a column definition
    COLUMNS_END = 5  # the definitions are complete (an EOF, or implied)
    ROW = 6
    RESULT_END = 7  # the rows are complete (more results may follow)
    LOCAL_INFILE = 8  # the server asks the client for a file
    PREPARED = 9  # COM_STMT_PREPARE's first answer
    PARAMETER = 10  # a prepared statement's parameter definition
    OTHER = 11  # an answer without structure (COM_STATISTICS)


class Shape(IntEnum):
    RESULTS = 1  # OK, ERR, LOCAL INFILE or result sets (COM_QUERY, COM_STMT_EXECUTE)
    PREPARE = 2
    FIELDS = 3  # column definitions until EOF (COM_FIELD_LIST)
    SIMPLE = 4  # one OK, EOF or ERR
    STRING = 5  # one packet of text (COM_STATISTICS)
    ROWS = 6  # binary rows until EOF (COM_STMT_FETCH)


_SHAPES = {
    Command.QUERY: Shape.RESULTS,
    Command.STMT_EXECUTE: Shape.RESULTS,
    Command.STMT_PREPARE: Shape.PREPARE,
    Command.FIELD_LIST: Shape.FIELDS,
    Command.STATISTICS: Shape.STRING,
    Command.STMT_FETCH: Shape.ROWS,
}
# Commands the server does not answer
NO_ANSWER = frozenset({Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA, Command.QUIT})

_MORE_RESULTS = int(Status.MORE_RESULTS_EXISTS)
_CURSOR_EXISTS = int(Status.CURSOR_EXISTS)


@functools.lru_cache(maxsize=4096)
def _definition(raw: bytes) -> ColumnDefinition:
    """A column definition, decoded once per distinct one (results repeat their columns)."""
    return ColumnDefinition.decode(raw)


_FIRST, _COLUMNS, _COLUMNS_EOF, _ROWS, _PARAMS, _PARAMS_EOF, _DONE = range(7)


class Response:
    """The answer to one command, as it arrives."""

    __slots__ = (
        "_deprecate_eof",
        "_left",
        "_pending_columns",
        "_state",
        "affected",
        "columns",
        "command",
        "done",
        "error",
        "prepared",
        "results",
        "rows",
        "shape",
        "status",
    )

    def __init__(
        self, command: int, *, deprecate_eof: bool, columns: list[ColumnDefinition] | None = None
    ) -> None:
        self.command = command
        self.shape = _SHAPES.get(command, Shape.SIMPLE)  # type: ignore[call-overload]
        self._deprecate_eof = deprecate_eof
        self._state = _ROWS if self.shape is Shape.ROWS else _FIRST
        if self.shape is Shape.FIELDS:
            self._state = _COLUMNS
            self._left = -1
        else:
            self._left = 0
        self._pending_columns = 0  # a prepared statement's result columns, after its params
        self.columns: list[ColumnDefinition] = list(columns or [])
        self.rows = 0  # rows of every result so far
        self.affected = 0
        self.results = 0
        self.status = 0
        self.error: Err | None = None
        self.prepared: PrepareOk | None = None
        self.done = False

    def feed(self, payload: bytes, start: int, end: int) -> Event:
        """What the packet at ``payload[start:end]`` is; raises on one that cannot be here."""
        state = self._state
        if state == _ROWS:
            if start < end and payload[start] == ERR:
                return self._error(payload, start, end)
            if is_eof(payload, start, end, self._deprecate_eof):
                self.status = eof_status(payload, start, end, self._deprecate_eof)
                self._next_result()
                return Event.RESULT_END
            self.rows += 1
            return Event.ROW
        if state == _DONE:
            raise MysqlProtocolError("a packet after the answer was complete")
        if start >= end:
            raise MysqlProtocolError("an empty packet in an answer")
        first = payload[start]
        if state == _FIRST:
            return self._first(payload, start, end, first)
        if state in (_COLUMNS, _PARAMS):
            if first == ERR:
                return self._error(payload, start, end)
            if self._left == -1 and first == EOF_HEADER and end - start < 9:  # COM_FIELD_LIST
                self.status = eof_status(payload, start, end, False)
                self._finish()
                return Event.COLUMNS_END
            definition = _definition(payload[start:end])
            if state == _PARAMS:
                self._left -= 1
                if self._left == 0:
                    self._state = _PARAMS_EOF if not self._deprecate_eof else _COLUMNS
                    self._after_params()
                return Event.PARAMETER
            self.columns.append(definition)
            if self._left > 0:
                self._left -= 1
                if self._left == 0:
                    if self._deprecate_eof:
                        self._columns_done()
                        return Event.COLUMN
                    self._state = _COLUMNS_EOF
            return Event.COLUMN
        if state in (_COLUMNS_EOF, _PARAMS_EOF):
            if first != EOF_HEADER:
                raise MysqlProtocolError("expected EOF after the column definitions")
            if state == _PARAMS_EOF:
                self._state = _COLUMNS
                self._after_params()
                return Event.COLUMNS_END
            self.status = eof_status(payload, start, end, False)
            self._columns_done()
            return Event.COLUMNS_END
        raise MysqlProtocolError("unexpected packet")  # pragma: no cover

    def _first(self, payload: bytes, start: int, end: int, first: int) -> Event:
        shape = self.shape
        if first == ERR:
            return self._error(payload, start, end)
        if shape is Shape.STRING:
            self._finish()
            return Event.OTHER
        if shape is Shape.PREPARE:
            if first != OK:
                raise MysqlProtocolError("expected the answer to COM_STMT_PREPARE")
            prepared = self.prepared = PrepareOk.decode(payload[start:end])
            self._pending_columns = prepared.columns
            if prepared.params:
                self._state = _PARAMS
                self._left = prepared.params
            else:
                self._after_params()
            return Event.PREPARED
        if first == OK or (first == EOF_HEADER and end - start < 9):
            if shape is Shape.RESULTS or first == OK:
                self.status = (
                    ok_status(payload, start, end)
                    if first == OK
                    else eof_status(payload, start, end, self._deprecate_eof)
                )
                if first == OK:
                    self.affected += ok_affected(payload, start, end)
            else:
                self.status = eof_status(payload, start, end, False)
            self.results += 1
            self._next_result()
            return Event.OK
        if shape is not Shape.RESULTS:
            raise MysqlProtocolError(f"unexpected answer 0x{first:02x} to a simple command")
        if first == LOCAL_INFILE:
            return Event.LOCAL_INFILE
        count, _ = read_lenenc(payload, start, end)
        if count == 0:
            raise MysqlProtocolError("a result set with no columns")
        self.columns = []
        self._left = count
        self._state = _COLUMNS
        self.results += 1
        return Event.RESULT

    def _after_params(self) -> None:
        if self._state == _PARAMS_EOF:
            return
        count = self._pending_columns
        self._pending_columns = 0
        self.columns = []
        if count:
            self._state = _COLUMNS
            self._left = count
        else:
            self._finish()

    def _columns_done(self) -> None:
        if self.shape is Shape.PREPARE:
            self._finish()
        elif self.status & _CURSOR_EXISTS and self.command == Command.STMT_EXECUTE:
            self._finish()  # rows come with COM_STMT_FETCH
        else:
            self._state = _ROWS

    def _next_result(self) -> None:
        if self.shape is Shape.RESULTS and self.status & _MORE_RESULTS:
            self._state = _FIRST
        else:
            self._finish()

    def _error(self, payload: bytes, start: int, end: int) -> Event:
        self.error = Err.decode(payload[start:end])
        self._finish()
        return Event.ERROR

    def _finish(self) -> None:
        self._state = _DONE
        self.done = True

    def local_infile_refused(self) -> None:
        """The client was told no: the server answers the empty file with OK or ERR."""
        self._state = _FIRST

    @property
    def in_rows(self) -> bool:
        return self._state == _ROWS
