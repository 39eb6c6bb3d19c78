"""Which statement each server answer belongs to: the session's request/response state.

Pure bookkeeping, fed the type byte and payload of each message in both
directions. The server answers requests in order, so a FIFO of the requests
still waiting for an answer is enough: simple Query runs until ReadyForQuery;
in the extended protocol each Parse/Bind/Describe/Execute/Close/Sync has its
own answer, and after an error the server skips everything up to the next
Sync. When a statement is finished the tracker hands back a
:class:`FinishedStatement` for the audit trail.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from dbward.masking.plan import Field
from dbward.masking.rows import MaskStats
from dbward.policy.decide import Decision
from dbward.proxy.results import (
    bind_result_formats,
    parse_parameter_types,
    row_description,
    with_formats,
)
from dbward.sql.facts import Analysis, StatementFacts

_NUL = 0
_SEEN_LIMIT = 512
DENIED_SQLSTATE = "42501"


@dataclass(frozen=True, slots=True)
class FinishedStatement:
    text: str
    protocol: str  # "simple", "extended" or "function-call"
    started_at: float
    duration_ms: float
    rows: int | None
    tags: tuple[str, ...]
    sqlstate: str | None
    error: str | None
    prepared_name: str | None = None
    analysis: Analysis | None = None
    decision: Decision | None = None
    withheld: int = 0  # rows not released: over the decision's row limit
    masked: MaskStats | None = None  # what masking did to its results: no values


class Gatekeeper(Protocol):
    """What the tracker asks about each statement and tells about each outcome."""

    def check(self, text: str) -> tuple[Analysis, Decision]: ...

    def succeeded(self, facts: StatementFacts) -> None: ...

    def failed(self) -> None: ...

    def ready(self, status: str, last_tag: str | None) -> None: ...


class _Op:
    """A request waiting for its answer (a plain slotted class: one is made per message)."""

    __slots__ = (
        "analysis",
        "announced",
        "datarows",
        "decision",
        "error",
        "fields",
        "kind",
        "masked",
        "portal",
        "prepared_name",
        "result",
        "rows",
        "shape",
        "sqlstate",
        "started",
        "tags",
        "text",
        "withheld",
    )

    def __init__(
        self,
        kind: int,
        text: str = "",
        started: float = 0.0,
        prepared_name: str | None = None,
        checked: _Checked | None = None,
    ) -> None:
        self.kind = kind  # the frontend message type byte
        self.text = text
        self.started = started  # perf_counter() when the request passed
        self.prepared_name = prepared_name
        self.analysis: Analysis | None = checked[0] if checked is not None else None
        self.decision: Decision | None = checked[1] if checked is not None else None
        self.withheld = 0
        self.tags: list[str] | None = None
        self.rows: int | None = None
        self.datarows = 0
        self.announced = False  # a "started" record was written before partial results
        self.sqlstate: str | None = None
        self.error: str | None = None
        self.fields: list[Field] | None = None  # a Query's current result columns
        self.shape: _Shape | None = None  # an Execute's portal, or what a Describe describes
        self.result: object = None  # the session's per-result state (its masking)
        self.masked: MaskStats | None = None
        self.portal: str | None = None  # a Bind's portal


class _Shape:
    """What a portal (or, for Describe, a statement) returns: filled in as answers arrive."""

    __slots__ = ("fields", "formats", "is_portal", "statement")

    def __init__(
        self, statement: str, formats: tuple[int, ...] = (), *, is_portal: bool = True
    ) -> None:
        self.statement = statement  # the prepared statement (a portal's: it was bound from)
        self.formats = formats
        self.is_portal = is_portal
        self.fields: list[Field] | None = None


_Checked = tuple[Analysis, Decision]
_UNKNOWN: tuple[str, _Checked | None] = ("", None)
_Q, _P, _B, _D, _E, _C, _S, _F = (ord(c) for c in "QPBDECSF")


def _cstring(buf: bytes, start: int, limit: int) -> tuple[str, int]:
    """The NUL-terminated string at ``start`` (before ``limit``) and the offset after it.

    Raises ValueError when the message holds no terminator.
    """
    end = buf.index(b"\x00", start, limit)
    return buf[start:end].decode("utf-8", "replace"), end + 1


def _error_fields(payload: bytes) -> tuple[str | None, str | None]:
    sqlstate = message = None
    for part in payload.split(b"\x00"):
        if not part:
            continue
        code, value = part[:1], part[1:].decode("utf-8", "replace")
        if code == b"C":
            sqlstate = value
        elif code == b"M":
            message = value
    return sqlstate, message


def _function_call(buf: bytes, start: int, end: int) -> str:
    """How a fast-path FunctionCall is named in the audit: its function's OID and arity.

    The argument values are not kept (they can be data, e.g. large-object contents).
    """
    if end - start < 6:
        return "<function call>"
    oid = int.from_bytes(buf[start : start + 4], "big")
    formats = int.from_bytes(buf[start + 4 : start + 6], "big", signed=True)
    pos = start + 6 + 2 * max(formats, 0)
    args = int.from_bytes(buf[pos : pos + 2], "big", signed=True) if pos + 2 <= end else -1
    return f"<function call: oid {oid}, {args} argument(s)>"


def _protocol(kind: int) -> str:
    return "simple" if kind == _Q else "function-call" if kind == _F else "extended"


def _tag_rows(tag: str) -> int | None:
    head, _, last = tag.rpartition(" ")
    return int(last) if head and last.isdigit() else None


class StatementTracker:
    """Pairs server answers with client requests; reports finished statements."""

    def __init__(self, gate: Gatekeeper | None = None) -> None:
        self.gate = gate
        self._ops: deque[_Op] = deque()
        # statement name -> (text, its check); portal -> (statement name, text, check)
        self._prepared: dict[str, tuple[str, _Checked | None]] = {}
        self._portals: dict[str, tuple[str, str, _Checked | None]] = {}
        self._descriptions: dict[str, list[Field]] = {}  # statement name -> its columns
        self._parameter_types: dict[str, tuple[int, ...]] = {}  # statement -> Parse's types
        self._shapes: dict[str, _Shape] = {}  # portal name -> what it returns
        self._seen: dict[bytes, list[Field]] = {}  # RowDescription payload -> its columns
        self._formatted: dict[tuple[int, tuple[int, ...]], tuple[list[Field], list[Field]]] = {}
        self._last_tag: str | None = None  # of the last COMMIT / ROLLBACK
        self.transaction_status = "I"
        # After an error in the extended protocol the server ignores everything up to the
        # next Sync; requests the client sends meanwhile get no answer and are not queued.
        self._discarding = False
        self.appended: _Op | None = None  # the request the last checked message made

    @property
    def idle(self) -> bool:
        """No request waits for an answer and no transaction is open."""
        return not self._ops and self.transaction_status == "I"

    @property
    def waiting(self) -> int:
        return len(self._ops)

    # client -> server -------------------------------------------------------------------

    def on_frontend(self, kind: int, buf: bytes, start: int, end: int) -> Decision | None:
        """Account for the client message at ``buf[start:end]``.

        For a Query, Parse, Bind or FunctionCall, the gatekeeper's decision on
        it (None without a gatekeeper, or while the server discards messages).
        """
        self.appended = None
        if self._discarding:
            if kind != _S:
                return self._check_discarded(kind, buf, start, end)
            self._discarding = False
        if kind == _Q:
            text = _cstring(buf, start, end)[0]
            checked = self._check(text)
            self._ops.append(op := self._op(kind, text, None, checked))
            self.appended = op
            return checked[1] if checked else None
        if kind == _P:
            name, pos = _cstring(buf, start, end)
            text = _cstring(buf, pos, end)[0]
            checked = self._check(text)
            self._prepared[name] = (text, checked)
            self._parameter_types[name] = parse_parameter_types(buf, pos, end)
            self._descriptions.pop(name, None)
            self._ops.append(op := self._op(kind, text, name, checked))
            self.appended = op
            return checked[1] if checked else None
        if kind == _B:
            portal, pos = _cstring(buf, start, end)
            statement = _cstring(buf, pos, end)[0]
            text, checked = self._prepared.get(statement, _UNKNOWN)
            checked = self._recheck(statement, text, checked)
            self._portals[portal] = (statement, text, checked)
            self._shapes[portal] = _Shape(statement, bind_result_formats(buf, start, end))
            self._ops.append(op := self._op(kind, text, statement, checked))
            op.portal = portal
            self.appended = op
            return checked[1] if checked else None
        if kind == _E:
            portal = _cstring(buf, start, end)[0]
            statement, text, checked = self._portals.get(portal, ("", "", None))
            op = self._op(kind, text, statement, checked)
            op.shape = self._shapes.get(portal)
            self._ops.append(op)
        elif kind == _C:
            target, name = buf[start], _cstring(buf, start + 1, end)[0]
            if target == ord("S"):
                self._prepared.pop(name, None)
                self._parameter_types.pop(name, None)
                self._descriptions.pop(name, None)
            else:
                self._portals.pop(name, None)
                self._shapes.pop(name, None)
            self._ops.append(_Op(kind))
        elif kind == _D:
            op = _Op(kind)
            target, name = buf[start], _cstring(buf, start + 1, end)[0]
            # A statement's description is kept by name; a portal's on its shape.
            op.shape = (
                self._shapes.get(name) if target == ord("P") else _Shape(name, is_portal=False)
            )
            self._ops.append(op)
        elif kind == _S:
            self._ops.append(_Op(kind))
        elif kind == _F:
            text = _function_call(buf, start, end)
            checked = self._check_function_call()
            self._ops.append(op := self._op(kind, text, None, checked))
            self.appended = op
            return checked[1] if checked else None
        return None

    def parameter_types(self, statement: str) -> tuple[int, ...]:
        """The parameter type OIDs a statement's Parse gave (0: left to the server)."""
        return self._parameter_types.get(statement, ())

    def resolve(self, op: _Op, decision: Decision | None) -> None:
        """A held request was decided (approved, rejected, timed out): ``decision`` now
        stands for it, and for the Execute of a held Bind's portal. None: a Parse of a
        statement that needs approval passes; its execution is held instead."""
        op.decision = decision
        if op.kind == _B and op.portal is not None and op.portal in self._portals:
            statement, text, _ = self._portals[op.portal]
            checked = (op.analysis, decision) if op.analysis is not None and decision else None
            self._portals[op.portal] = (statement, text, checked)

    def _recheck(self, statement: str, text: str, checked: _Checked | None) -> _Checked | None:
        """Decide a prepared statement again as it is bound: the policy or what its names
        resolve to (a temporary table dropped since) may have changed since its Parse.

        A name that no Parse created was made by SQL-level PREPARE: decided as EXECUTE.
        """
        if self.gate is None:
            return None
        if checked is None:
            return self.gate.check(f'EXECUTE "{statement.replace(chr(34), chr(34) * 2)}"')
        return self.gate.check(text)

    def _check(self, text: str) -> _Checked | None:
        return self.gate.check(text) if self.gate is not None else None

    def _check_function_call(self) -> _Checked | None:
        # A fast-path call names its function by OID only: decided as the unknown it is.
        return self.gate.check("EXECUTE dbward_fastpath_function_call") if self.gate else None

    def _check_discarded(self, kind: int, buf: bytes, start: int, end: int) -> Decision | None:
        """The server will ignore this message; it is still checked, never trusted unseen."""
        if self.gate is None:
            return None
        if kind == _P:
            pos = buf.index(b"\x00", start, end) + 1
            return self.gate.check(_cstring(buf, pos, end)[0])[1]
        if kind == _Q:
            return self.gate.check(_cstring(buf, start, end)[0])[1]
        return None

    def on_rows(self, count: int) -> None:
        """``count`` rows (DataRow or CopyData) arrived for the request being answered."""
        if self._ops:
            self._ops[0].datarows += count

    def abandon(self) -> list[FinishedStatement]:
        """The connection ended: the statements that were still running, as they stood."""
        running = [op for op in self._ops if op.kind in (_Q, _E, _F)]
        self._ops.clear()
        return [self._finish(op) for op in running]

    def streaming(self) -> tuple[str, str] | None:
        """The statement whose results are partly out, if not announced yet: (text, protocol).

        A result that spans several reads leaves dbward before the statement
        finishes; the session records that the statement started before the
        first part of it is released. Marks the statement as announced.
        """
        if not self._ops:
            return None
        head = self._ops[0]
        if head.announced or head.kind not in (_Q, _E, _F):
            return None
        if not head.datarows and not head.tags:
            return None
        head.announced = True
        return head.text, _protocol(head.kind)

    @staticmethod
    def _op(
        kind: int, text: str, prepared_name: str | None = None, checked: _Checked | None = None
    ) -> _Op:
        return _Op(kind, text, time.perf_counter(), prepared_name, checked)

    # server -> client -------------------------------------------------------------------

    def on_backend(self, kind: int, buf: bytes, start: int, end: int) -> FinishedStatement | None:
        """Account for the server message at ``buf[start:end]``; return what it finished."""
        ops = self._ops
        if not ops:
            return None
        head = ops[0]
        if kind == 0x43:  # C CommandComplete
            tag = _cstring(buf, start, end)[0]
            if head.tags is None:
                head.tags = [tag]
            else:
                head.tags.append(tag)
            if tag.startswith(("COMMIT", "ROLLBACK")):
                self._last_tag = tag
            self._succeeded(head)
            rows = _tag_rows(tag)
            if rows is not None:
                head.rows = (head.rows or 0) + rows
            if head.kind == _E:
                ops.popleft()
                return self._finish(head)
        elif kind == 0x5A:  # Z ReadyForQuery
            self.transaction_status = chr(buf[start])
            if self.gate is not None:
                self.gate.ready(self.transaction_status, self._last_tag)
            self._last_tag = None
            ops.popleft()
            if head.kind in (_Q, _F):
                return self._finish(head)
        elif kind == 0x45:  # E ErrorResponse
            decision = head.decision
            if decision is not None and not decision.allowed:
                head.sqlstate, head.error = decision.sqlstate, decision.message
            else:
                head.sqlstate, head.error = _error_fields(buf[start:end])
            if self.gate is not None:
                self.gate.failed()
            if head.kind in (_Q, _F):
                return None
            ops.popleft()
            while ops and ops[0].kind != _S:
                ops.popleft()
            if not ops:
                self._discarding = True
            if head.kind in (_E, _P, _B):
                return self._finish(head)
        elif kind == 0x49 or kind == 0x73:  # I EmptyQueryResponse, s PortalSuspended
            if head.kind == _E:
                ops.popleft()
                return self._finish(head)
        elif kind in (0x31, 0x32, 0x33, 0x6E):  # 1, 2, 3 ParseComplete.. , n NoData
            if head.kind != _Q:
                ops.popleft()
        elif kind == 0x54:  # T RowDescription
            if head.kind == _D:  # answering Describe
                ops.popleft()
                shape = head.shape
                if shape is not None:
                    fields = self._description(buf, start, end)
                    if shape.is_portal:
                        shape.fields = self._with_formats(fields, shape.formats)
                    else:
                        self._descriptions[shape.statement] = fields
            elif head.kind == _Q:  # the next result of a simple Query
                head.fields = self._description(buf, start, end)
                head.result = None
        return None

    def result_fields(self) -> list[Field] | None:
        """The columns of the rows now arriving (for the request being answered)."""
        if not self._ops:
            return None
        head = self._ops[0]
        if head.kind == _Q:
            return head.fields
        shape = head.shape
        if head.kind != _E or shape is None:
            return None
        if shape.fields is not None:
            return shape.fields
        described = self._descriptions.get(shape.statement)
        return self._with_formats(described, shape.formats) if described is not None else None

    def _description(self, buf: bytes, start: int, end: int) -> list[Field]:
        """The columns of a RowDescription; the same description again gives the same
        list, so what depends on it (the masking plan) is worked out once."""
        raw = buf[start:end]
        found = self._seen.get(raw)
        if found is None:
            if len(self._seen) >= _SEEN_LIMIT:
                self._seen.clear()
                self._formatted.clear()
            found = self._seen[raw] = row_description(buf, start, end)
        return found

    def _with_formats(self, fields: list[Field], formats: tuple[int, ...]) -> list[Field]:
        key = (id(fields), formats)
        entry = self._formatted.get(key)
        if entry is not None and entry[0] is fields:
            return entry[1]
        result = with_formats(fields, formats)
        self._formatted[key] = (fields, result)
        return result

    @property
    def head(self) -> _Op | None:
        """The request being answered."""
        return self._ops[0] if self._ops else None

    def _succeeded(self, op: _Op) -> None:
        """A statement of ``op`` completed: its effects on the session's SQL state count."""
        if self.gate is None or op.analysis is None or op.kind not in (_Q, _E):
            return
        statements = op.analysis.statements
        done = len(op.tags or ()) - 1
        if op.kind == _Q and done < len(statements):
            self.gate.succeeded(statements[done])
        elif op.kind == _E and statements:
            self.gate.succeeded(statements[0])

    @property
    def limiting(self) -> bool:
        """Whether a request waiting for its answer has a row limit."""
        for op in self._ops:
            decision = op.decision
            if decision is not None and decision.max_rows is not None:
                return True
        return False

    def over_limit(self) -> bool:
        """The next row of the statement being answered is over its row limit: withhold it."""
        if not self._ops:
            return False
        head = self._ops[0]
        limit = head.decision.max_rows if head.decision is not None else None
        if limit is None or head.datarows - head.withheld < limit:
            return False
        head.withheld += 1
        head.datarows += 1
        return True

    def withheld(self) -> tuple[int, Decision] | None:
        """Rows withheld from the statement being answered, and the decision that capped it."""
        if not self._ops:
            return None
        head = self._ops[0]
        if not head.withheld or head.decision is None:
            return None
        return head.withheld, head.decision

    def denial(self) -> Decision | None:
        """The refusal the next ErrorResponse stands for (a statement dbward replaced)."""
        if not self._ops:
            return None
        decision = self._ops[0].decision
        return decision if decision is not None and not decision.allowed else None

    @staticmethod
    def _finish(op: _Op) -> FinishedStatement:
        elapsed = time.perf_counter() - op.started
        return FinishedStatement(
            text=op.text,
            protocol=_protocol(op.kind),
            started_at=time.time() - elapsed,
            duration_ms=int(elapsed * 1_000_000) / 1000,
            rows=op.rows if op.rows is not None else (op.datarows if op.datarows else None),
            tags=tuple(op.tags) if op.tags else (),
            sqlstate=op.sqlstate,
            error=op.error,
            prepared_name=op.prepared_name or None,
            analysis=op.analysis,
            decision=op.decision,
            withheld=op.withheld,
            masked=op.masked,
        )
