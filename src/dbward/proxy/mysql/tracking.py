"""What a MySQL session keeps about each command in flight and each prepared statement."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dbward.codec.mysql.responses import Response
from dbward.codec.mysql.results import ColumnDefinition
from dbward.masking.mysql_rows import MysqlRowMasker
from dbward.masking.rows import MaskStats
from dbward.policy.decide import Decision
from dbward.sql.facts import Analysis


@dataclass(slots=True)
class Prepared:
    """A statement the server prepared for this client (COM_STMT_PREPARE)."""

    text: str
    analysis: Analysis
    params: int
    types: tuple[tuple[int, bool], ...] = ()  # the parameter types last bound
    cursor_columns: list[ColumnDefinition] | None = None  # an open cursor's (COM_STMT_FETCH)


@dataclass(slots=True)
class Pending:
    """A command sent upstream (or answered by dbward) whose answer the client awaits.

    ``audited``: the command is a statement, recorded in the trail when it ends.
    ``local``: dbward's own answer, written when every earlier answer has been.
    """

    command: int
    response: Response | None
    text: str = ""
    analysis: Analysis | None = None
    decision: Decision | None = None
    protocol: str = "text"
    audited: bool = False
    local: bytes | None = None
    statement_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    masker: MysqlRowMasker | None = None
    planned: bool = False  # the current result's masker was decided
    masked: MaskStats | None = None
    streamed: bool = False  # rows left before the statement ended (a start was recorded)
    withheld: int = 0  # rows over the policy's max_rows, not sent
    shift: int = 0  # packets dropped (or saved by re-splitting) so far in this answer
    error: tuple[int, str, str] | None = None  # code, sqlstate, message (as the client saw it)

    def stats(self) -> MaskStats:
        if self.masked is None:
            self.masked = MaskStats()
        return self.masked

    @property
    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)
