"""Deciding each command a MySQL client sends: forward it, answer it, or hold it.

Statements (COM_QUERY, COM_STMT_PREPARE/EXECUTE, COM_INIT_DB, COM_FIELD_LIST)
are decided by policy on their analysis. Commands that change who the
session is (COM_CHANGE_USER), administer the server (COM_SHUTDOWN, ...) or
replicate are refused with an error that says why. ``KILL [QUERY] n`` for a
connection id dbward gave stops that session's statement (a held one too),
for the same identity only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbward.codec.mysql.constants import Command, Status
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import packet
from dbward.codec.mysql.packets import Err, Ok, command_name, query_text, statement_id
from dbward.codec.mysql.responses import Response
from dbward.codec.mysql.results import decode_execute
from dbward.codec.mysql.wire import u32
from dbward.policy.decide import Decision
from dbward.policy.model import Action
from dbward.proxy.mysql import errors as e
from dbward.proxy.mysql.tracking import Pending, Prepared
from dbward.sql.facts import Analysis, StatementKind

if TYPE_CHECKING:
    from dbward.proxy.mysql.session import MysqlSession

C = Command
LOCAL = "local"  # dbward answered the command itself
QUIT = "quit"
_KILL = re.compile(r"\s*KILL\s+(?:(QUERY|CONNECTION)\s+)?(\d+)\s*;?\s*", re.I)
_FORWARDED_SIMPLE = frozenset({C.PING, C.STATISTICS, C.SET_OPTION, C.RESET_CONNECTION})
_REFUSED = {
    C.SHUTDOWN: "shuts the server down",
    C.DEBUG: "writes server debug output",
    C.PROCESS_INFO: "lists every session on the server",
    C.REFRESH: "flushes server state",
    C.CREATE_DB: "is the pre-4.1 way to create a database (send CREATE DATABASE)",
    C.DROP_DB: "is the pre-4.1 way to drop a database (send DROP DATABASE)",
    C.BINLOG_DUMP: "streams the binary log (replication)",
    C.BINLOG_DUMP_GTID: "streams the binary log (replication)",
    C.REGISTER_SLAVE: "registers a replica",
    C.TABLE_DUMP: "is a replication command",
    C.CONNECT_OUT: "is a replication command",
    C.DAEMON: "is internal to the server",
    C.TIME: "is internal to the server",
    C.DELAYED_INSERT: "is internal to the server",
    C.SLEEP: "is internal to the server",
    C.CONNECT: "is internal to the server",
}


@dataclass(frozen=True, slots=True)
class Hold:
    """A statement policy holds for approval: what approvers see and what makes a re-run
    identical (the bound parameter values)."""

    pending: Pending
    kind: StatementKind | None
    parameters: bytes = b""
    shown: tuple[str, ...] = ()


def deciding_kind(analysis: Analysis | None, decision: Decision) -> StatementKind | None:
    if analysis is None or not analysis.statements:
        return None
    index = decision.statement or 0
    facts = analysis.statements[min(index, len(analysis.statements) - 1)]
    return facts.kind


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class CommandDesk:
    def __init__(self, session: MysqlSession) -> None:
        self.session = session
        self.guard = session.guard
        self.capabilities = session.capabilities
        self.deprecate_eof = session.deprecate_eof

    def _response(self, command: int) -> Response:
        return Response(command, deprecate_eof=self.deprecate_eof)

    def command(self, payload: bytes, raw: bytes) -> str | Hold | bytes | None:
        """What to do with one command: None to forward it (the session sends ``raw``),
        bytes to forward instead, LOCAL when dbward answered, QUIT, or a :class:`Hold`."""
        if not payload:
            raise MysqlProtocolError("an empty command packet")
        code = payload[0]
        session = self.session
        if code == C.QUERY:
            return self._query(query_text(payload, self.capabilities))
        if code == C.STMT_EXECUTE:
            return self._execute(payload)
        if code == C.STMT_PREPARE:
            return self._prepare(payload[1:].decode("utf-8", "surrogateescape"))
        if code == C.STMT_CLOSE:
            session.prepared.pop(statement_id(payload), None)
            return None
        if code == C.STMT_SEND_LONG_DATA:
            return None
        if code in (C.STMT_RESET, C.STMT_FETCH):
            prepared = session.prepared.get(statement_id(payload))
            response = self._response(code)
            if code == C.STMT_FETCH and prepared is not None:
                response = Response(
                    code, deprecate_eof=self.deprecate_eof, columns=prepared.cursor_columns
                )
            session.pending.append(Pending(code, response, protocol="fetch"))
            return None
        if code in _FORWARDED_SIMPLE:
            session.pending.append(Pending(code, self._response(code), protocol="command"))
            return None
        if code == C.INIT_DB:
            return self._init_db(payload[1:].decode("utf-8", "replace"))
        if code == C.FIELD_LIST:
            table = payload[1:].split(b"\x00", 1)[0].decode("utf-8", "replace")
            return self._statement(
                C.FIELD_LIST, f"SHOW COLUMNS FROM {_quoted(table)}", "command", audited=False
            )
        if code == C.QUIT:
            return QUIT
        if code == C.PROCESS_KILL:
            if len(payload) < 5:
                raise MysqlProtocolError("COM_PROCESS_KILL without a connection id")
            return self._kill("CONNECTION", u32(payload, 1), f"KILL {u32(payload, 1)}")
        if code == C.CHANGE_USER:
            return self._refuse_command(
                code,
                "dbward does not let a session change its user (COM_CHANGE_USER): each "
                "identity connects with its own token; open a new connection as the other user",
            )
        why = _REFUSED.get(code)  # type: ignore[call-overload]
        if why is not None:
            return self._refuse_command(
                code, f"dbward does not relay {command_name(code)}: it {why}"
            )
        self._answer(
            Pending(code, None, text=command_name(code)),
            e.err(e.UNKNOWN_COMMAND, "08S01", f"Unknown command 0x{code:02x}"),
        )
        return LOCAL

    # statements --------------------------------------------------------------------------

    def _query(self, text: str) -> str | Hold | None:
        kill = _KILL.fullmatch(text)
        if kill is not None:
            target = int(kill.group(2))
            if target in self.session.ctx.mysql_sessions:
                return self._kill((kill.group(1) or "CONNECTION").upper(), target, text)
        return self._statement(C.QUERY, text, "text")

    def _init_db(self, name: str) -> str | Hold | bytes | None:
        """COM_INIT_DB (select_db, the client's reconnect): the dbward connection's own name
        stands for its upstream database, as it did at login."""
        established = self.session.established
        assert established is not None
        if name == established.target:
            name = self.session.ctx.config.connections[name].database
            verdict = self._statement(C.INIT_DB, f"USE {_quoted(name)}", "command")
            if verdict is None:
                return packet(0, bytes((C.INIT_DB,)) + name.encode())
            return verdict
        return self._statement(C.INIT_DB, f"USE {_quoted(name)}", "command")

    def _statement(
        self, code: int, text: str, protocol: str, *, audited: bool = True
    ) -> str | Hold | None:
        analysis, decision = self.guard.check(text)
        decision = _local_infile(analysis) or decision
        pending = Pending(
            code, self._response(code), text, analysis, decision, protocol, audited=audited
        )
        return self._decided(pending, analysis, decision)

    def _decided(
        self, pending: Pending, analysis: Analysis | None, decision: Decision, *,
        parameters: bytes = b"", shown: tuple[str, ...] = (),
    ) -> str | Hold | None:  # fmt: skip
        if decision.allowed:
            self.session.pending.append(pending)
            return None
        kind = deciding_kind(analysis, decision)
        if decision.action is Action.REVIEW and self.session.ctx.approvals is not None:
            return Hold(pending, kind, parameters, shown)
        pending.audited = True
        self._answer(pending, e.refusal(decision, kind))
        return LOCAL

    def _prepare(self, text: str) -> str | Hold | None:
        analysis, decision = self.guard.check(text)
        if decision.allowed:
            decision = _local_infile(analysis) or decision
        pending = Pending(
            C.STMT_PREPARE, self._response(C.STMT_PREPARE), text, analysis, decision, "prepare"
        )
        if decision.allowed or decision.action is Action.REVIEW:
            # Preparing runs nothing: a statement under review is held at execution.
            self.session.pending.append(pending)
            return None
        pending.audited = True
        self._answer(pending, e.refusal(decision, deciding_kind(analysis, decision)))
        return LOCAL

    def _execute(self, payload: bytes) -> str | Hold | None:
        session = self.session
        stmt = statement_id(payload)
        prepared = session.prepared.get(stmt)
        if prepared is None:  # the server answers for a statement it does not know
            session.pending.append(
                Pending(C.STMT_EXECUTE, self._response(C.STMT_EXECUTE), protocol="binary")
            )
            return None
        params = decode_execute(payload, prepared.params, prepared.types)
        prepared.types = params.types
        analysis, decision = self.guard.decided(prepared.analysis)
        decision = _local_infile(analysis) or decision
        pending = Pending(
            C.STMT_EXECUTE,
            self._response(C.STMT_EXECUTE),
            prepared.text,
            analysis,
            decision,
            "binary",
            audited=True,
            statement_id=stmt,
        )
        return self._decided(pending, analysis, decision, parameters=params.raw, shown=params.shown)

    # KILL ---------------------------------------------------------------------------------

    def _kill(self, what: str, target_id: int, text: str) -> str:
        session = self.session
        target = session.ctx.mysql_sessions.get(target_id)
        me = session.established
        assert me is not None
        pending = Pending(
            C.QUERY, None, text, None, Decision(Action.ALLOW, "session:kill-own"), audited=True
        )
        if target is None or target.established is None:
            self._answer(pending, e.err(1094, "HY000", f"Unknown thread id: {target_id}"))
            return LOCAL
        if target.established.identity.name != me.identity.name:
            pending.decision = Decision(
                Action.DENY, "session:kill-own", "only the identity that owns a session may stop it"
            )
            self._answer(pending, e.err(1095, "HY000", f"You are not owner of thread {target_id}"))
            return LOCAL
        if what == "QUERY":
            target.cancel_statement()
        elif target is not session:
            target.close_with(1927, "70100", "Connection was killed", "killed by the same identity")
        self._answer(pending, Ok(status=Status.AUTOCOMMIT).encode())
        if what != "QUERY" and target is session:
            session.close_with(1927, "70100", "Connection was killed", "killed itself")
        return LOCAL

    # answers ------------------------------------------------------------------------------

    def _refuse_command(self, code: int, message: str) -> str:
        decision = Decision(Action.DENY, "protocol:command", message)
        pending = Pending(code, None, command_name(code), None, decision, "command", audited=True)
        self._answer(pending, e.err(e.SPECIFIC_ACCESS_DENIED, "42000", e.prefixed(message)))
        return LOCAL

    def _answer(self, pending: Pending, payload: bytes) -> None:
        if payload[:1] == b"\xff":  # the trail keeps the error the client saw
            error = Err.decode(payload)
            pending.error = (error.code, error.sqlstate, error.message)
        pending.response = None
        pending.local = packet(1, payload)
        self.session.answer_locally(pending)

    def _learn_views(self, pending: Pending) -> None:
        """A view created or replaced here: what it renames counts for masking at once."""
        analysis = pending.analysis
        views = self.session.ctx.mysql_views
        if analysis is None or views is None or len(analysis.statements) != 1:
            return
        facts = analysis.statements[0]
        if facts.command in _VIEW_COMMANDS and facts.writes:
            view = facts.writes[0]
            established = self.session.established
            if view.schema and established is not None:
                views.learn(established.target, view.schema, view.name, pending.text)

    def answered(self, pending: Pending) -> None:
        """The server's answer to ``pending`` is complete: keep what it changed."""
        response = pending.response
        if response is None:
            return
        if response.error is not None:
            if pending.error is None:
                error = response.error
                pending.error = (error.code, error.sqlstate, error.message)
            return
        session = self.session
        code = pending.command
        if code == C.STMT_PREPARE and response.prepared is not None:
            assert pending.analysis is not None
            session.prepared[response.prepared.statement_id] = Prepared(
                pending.text, pending.analysis, response.prepared.params
            )
        elif code == C.STMT_EXECUTE and response.status & Status.CURSOR_EXISTS:
            prepared = session.prepared.get(pending.statement_id or -1)
            if prepared is not None:
                prepared.cursor_columns = list(response.columns)
        elif code in (C.QUERY, C.INIT_DB):
            self.guard.succeeded(pending.analysis)
            self._learn_views(pending)
        elif code == C.RESET_CONNECTION:
            session.prepared.clear()
            self.guard.reset()


_VIEW_COMMANDS = frozenset({"CREATE VIEW", "ALTER VIEW", "CREATE OR REPLACE VIEW"})


def _local_infile(analysis: Analysis) -> Decision | None:
    """LOAD DATA LOCAL reads a file on the client's machine: never relayed."""
    for index, facts in enumerate(analysis.statements):
        if facts.command.startswith("LOAD DATA LOCAL") or facts.command.startswith(
            "LOAD XML LOCAL"
        ):
            return Decision(
                Action.DENY,
                e.LOCAL_INFILE_RULE,
                "LOAD DATA LOCAL INFILE is refused: dbward does not relay files from the "
                "client's machine",
                "load the file on the server side, or insert the rows with INSERT",
                statement=index,
                command=facts.command,
            )
    return None
