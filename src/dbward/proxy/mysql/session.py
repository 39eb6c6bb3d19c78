"""One MySQL client connection through dbward, from its first byte to its last.

The handshake (:mod:`.handshake`) brings the client in; then the session
relays in callbacks. Each command from the client is decided
(:mod:`.commands`): forwarded, answered by dbward (a refusal), or held for
approval. Each answer from upstream is followed packet by packet
(:class:`~dbward.codec.mysql.responses.Response`); rows are masked as they
pass, and a statement's audit record is committed before the packet that
ends it is released to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from dbward.approvals.requests import ApprovalRequest, Status
from dbward.audit.events import EventKind
from dbward.codec.mysql.constants import MAX_PACKET, Capability, Command
from dbward.codec.mysql.constants import Status as ServerStatus
from dbward.codec.mysql.errors import MysqlProtocolError
from dbward.codec.mysql.framing import Frame, Framer, logical, packet, packets_needed
from dbward.codec.mysql.packets import Err
from dbward.codec.mysql.responses import Event, Response
from dbward.config import Listener
from dbward.credentials import read_credentials
from dbward.errors import DbwardError
from dbward.metrics import CONNECTIONS
from dbward.policy.decide import Decision, Subject
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.context import ProxyContext
from dbward.proxy.masking import SessionMasking, statement_shape
from dbward.proxy.mysql import errors as e
from dbward.proxy.mysql.accept import open_client
from dbward.proxy.mysql.commands import CommandDesk, Hold
from dbward.proxy.mysql.guard import MysqlGuard
from dbward.proxy.mysql.handshake import LoginEnded, MysqlEstablished, MysqlHandshake
from dbward.proxy.mysql.holding import HeldCommand
from dbward.proxy.mysql.masking import MysqlMasking
from dbward.proxy.mysql.tracking import Pending, Prepared
from dbward.proxy.mysql.upstream import kill_query
from dbward.proxy.recorder import SessionRecorder, StatementOutcome, statement_data
from dbward.sql.facts import Analysis, StatementKind

log = logging.getLogger(__name__)

_COLUMN_EVENTS = (Event.COLUMN, Event.COLUMNS_END)
_NO_BACKSLASH_ESCAPES = int(ServerStatus.NO_BACKSLASH_ESCAPES)
_DROP = object()  # a packet not sent on (a row over the policy's max_rows)
_next_id = 0


def _peer(sock: socket.socket) -> str:
    try:
        address = sock.getpeername()
    except OSError:
        return "?"
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "local")


def next_connection_id(worker: int) -> int:
    """A connection id for a greeting: unique in this process, tagged with the worker."""
    global _next_id
    _next_id = (_next_id + 1) & 0xFFFFFF
    return (worker & 0x7F) << 24 | _next_id


class MysqlSession:
    def __init__(
        self,
        ctx: ProxyContext,
        sock: socket.socket,
        listener: Listener,
        tls: ssl.SSLContext,
        *,
        admit: bool = True,
        worker: int = 0,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.tls = tls
        self.id = secrets.token_hex(6)
        self.connection_id = next_connection_id(worker)
        self.recorder = SessionRecorder(ctx.audit, self.id, _peer(sock))
        self.handshake = MysqlHandshake(
            ctx, listener, self.recorder, self.connection_id, admit=admit
        )
        self.established: MysqlEstablished | None = None
        self.client: Conn  # once greeted
        self._upstream: Conn
        self.pending: deque[Pending] = deque()
        self.prepared: dict[int, Prepared] = {}
        self.statements = 0
        self.started = time.monotonic()
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._holding: HeldCommand | None = None
        self._client_backlog: list[bytes] = []
        self._unwatch: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Future[None]] = set()
        self._deciding: asyncio.Future[Decision] | None = None

    # lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        handshake = self.handshake
        limit = self.ctx.config.limits.startup_timeout
        try:
            greeting = await handshake.greeting()
            self.client = await asyncio.wait_for(
                open_client(
                    self.sock,
                    greeting,
                    self.tls,
                    max_packet=self.ctx.config.limits.max_startup_packet,
                ),
                limit,
            )
        except (TimeoutError, MysqlProtocolError, ConnectionClosed, ssl.SSLError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                why = f"login did not finish within {limit:g} s"
            else:
                why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.info(
                "session %s from %s ended before login: %s", self.id, self.recorder.source, why
            )
            if isinstance(exc, (TimeoutError, MysqlProtocolError)):
                with contextlib.suppress(OSError):  # best effort: the socket is still raw
                    told = why if isinstance(exc, TimeoutError) else f"bad handshake: {why}"
                    self.sock.send(packet(2, e.err(e.HANDSHAKE, "08S01", told)))
            self.sock.close()
            return
        try:
            self.established = await asyncio.wait_for(handshake.run(self.client), limit)
        except LoginEnded:
            return
        except TimeoutError:
            self._refuse_login(e.HANDSHAKE, "08S01", f"login did not finish within {limit:g} s")
            return
        except MysqlProtocolError as exc:
            self._refuse_login(e.HANDSHAKE, "08S01", f"bad handshake: {exc.message}")
            return
        except (ConnectionClosed, ssl.SSLError, OSError) as exc:
            log.info(
                "session %s from %s ended during login: %s", self.id, self.recorder.source, exc
            )
            self.client.abort()
            if handshake.upstream is not None:
                handshake.upstream.conn.abort()
            return
        reason = "client closed"
        self.ctx.mysql_sessions[self.connection_id] = self
        try:
            self._start_relay()
            reason = await self._ended
        finally:
            self.ctx.mysql_sessions.pop(self.connection_id, None)
            self._finish(reason)

    def _refuse_login(self, code: int, sqlstate: str, message: str) -> None:
        self.handshake.reader.send(e.err(code, sqlstate, message))
        self.client.close()
        if self.handshake.upstream is not None:
            self.handshake.upstream.conn.abort()

    def _finish(self, reason: str) -> None:
        CONNECTIONS.dec()
        for unwatch in self._unwatch:
            unwatch()
        if self._deciding is not None:
            self._deciding.cancel()
        self.client.close()
        self._upstream.close()
        while self.pending:
            left = self.pending.popleft()
            if left.audited:
                self._record_statement(left, incomplete=True)
        self.recorder.connection_end(
            reason, time.monotonic() - self.started, self.statements, self.client
        )

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)

    @property
    def idle(self) -> bool:
        return not self.pending and self._holding is None

    # relay -------------------------------------------------------------------------------

    def _start_relay(self) -> None:
        established = self.established
        assert established is not None
        identity = established.identity
        connection = self.ctx.config.connections[established.target]
        self.subject = Subject(
            identity=identity.name,
            groups=identity.groups,
            identity_kind=identity.kind,
            connection=established.target,
            environment=connection.environment,
        )
        audit = self.ctx.audit
        fail_closed = connection.environment in self.ctx.config.audit.fail_closed
        self.guard = MysqlGuard(
            self.ctx.policy,
            self.subject,
            connection.database,
            audit_ok=(lambda: audit.store_ok) if fail_closed else None,
        )
        views = self.ctx.mysql_views
        target = established.target
        self.masking = MysqlMasking(
            SessionMasking(self.ctx.policy, self.subject, self.ctx.keyring, None),
            (lambda: views.get(target)) if views is not None else (lambda: {}),
        )
        self.guard.no_backslash_escapes = bool(
            established.upstream.status & ServerStatus.NO_BACKSLASH_ESCAPES
        )
        self.capabilities = established.capabilities
        self.deprecate_eof = bool(self.capabilities & Capability.DEPRECATE_EOF)
        self.desk = CommandDesk(self)
        upstream = self._upstream = established.upstream.conn
        limit = self.ctx.config.limits.max_message_size
        self._client_framer = Framer(max_payload=limit, what="client packet")
        self._upstream_framer = Framer(max_payload=limit, what="server packet")
        self.client.on_close = lambda exc: self._end("client closed")
        upstream.on_close = lambda exc: self._upstream_closed()
        self.client.on_writable = lambda ok: (
            upstream.resume_reading() if ok else upstream.pause_reading()
        )
        upstream.on_writable = lambda ok: (
            self.client.resume_reading() if ok else self.client.pause_reading()
        )
        upstream.relay_to(self._guarded(self._from_upstream))
        self.client.relay_to(self._guarded(self._from_client))
        CONNECTIONS.inc()
        watcher = self.ctx.watcher
        if watcher is not None:
            self._unwatch = [
                watcher.watch_grant(grant, id(self), partial(self._grant_ended, grant))
                for grant in established.grants
            ]

    def _guarded(self, handler: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``handler``, but a bug in it ends this session only, with a clear error."""

        def guarded(data: bytes) -> None:
            try:
                handler(data)
            except Exception:
                log.exception("session %s: internal error; ending the session", self.id)
                self.client.write(
                    packet(
                        1, e.err(e.INTERNAL, "HY000", "dbward internal error; the session is ended")
                    )
                )
                self._upstream.write(packet(0, bytes((Command.QUIT,))))
                self._end("internal error")

        return guarded

    def _upstream_closed(self) -> None:
        if not self._ended.done():
            self._end("upstream closed")
            self.client.close()

    def _protocol_violation(self, message: str) -> None:
        log.info("session %s: protocol violation from client: %s", self.id, message)
        self.client.write(packet(1, e.err(e.HANDSHAKE, "08S01", f"protocol violation: {message}")))
        self._upstream.write(packet(0, bytes((Command.QUIT,))))
        self._end(f"protocol violation: {message}")

    # client -> upstream ------------------------------------------------------------------

    def _from_client(self, data: bytes) -> None:
        if self._holding is not None:  # a command waits for approval: keep the order
            self._client_backlog.append(data)
            self.client.pause_reading()
            return
        try:
            block, frames = self._client_framer.split(data)
        except MysqlProtocolError as exc:
            self._protocol_violation(exc.message)
            return
        self._client_frames(block, frames, 0)

    def _client_frames(self, block: bytes, frames: list[Frame], first: int) -> None:
        """Decide and forward the commands in ``frames[first:]``; stop at one held."""
        out: list[bytes] = []
        index = first
        desk = self.desk
        while index < len(frames):
            start = frames[index][1] - 4
            payload, after = logical(block, frames, index)
            end = frames[after - 1][2]
            raw = block[start:end]
            try:
                verdict = desk.command(payload, raw)
            except MysqlProtocolError as exc:
                self._flush_upstream(out)
                self._protocol_violation(exc.message)
                return
            index = after
            if verdict is None:
                out.append(raw)
            elif isinstance(verdict, bytes):  # forwarded, rewritten
                out.append(verdict)
            elif isinstance(verdict, Hold):
                self._flush_upstream(out)
                self._holding = HeldCommand(block, frames, index, raw, verdict)
                self._hold()
                return
            elif verdict == "quit":
                out.append(raw)
                self._flush_upstream(out)
                self._end("client quit")
                return
        self._flush_upstream(out)

    def _flush_upstream(self, out: list[bytes]) -> None:
        if out:
            self._upstream.write(b"".join(out))
            out.clear()

    def answer_locally(self, pending: Pending) -> None:
        """dbward answers this command itself, once every earlier answer has gone."""
        self.pending.append(pending)
        self._drain_local()

    def _drain_local(self) -> None:
        while self.pending and self.pending[0].local is not None:
            done = self.pending.popleft()
            if done.audited and not self._record_statement(done):
                self._audit_failed()
                return
            assert done.local is not None
            self.client.write(done.local)

    # holding for approval ----------------------------------------------------------------

    def _hold(self) -> None:
        self.client.pause_reading()
        task = asyncio.ensure_future(self._await_approval())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_approval(self) -> None:
        held = self._holding
        assert held is not None
        established = self.established
        assert established is not None
        deciding = asyncio.ensure_future(
            held.decide(self, established.identity, self.ctx.config.approvals.wait)
        )
        by_client = False

        def cancel() -> None:  # KILL QUERY from the same identity (the client's Ctrl-C)
            nonlocal by_client
            by_client = True
            deciding.cancel()

        self.ctx.held[self.id] = cancel
        self._deciding = deciding
        try:
            outcome = await deciding
        except asyncio.CancelledError:
            if not by_client:
                raise
            outcome = held.cancelled()
        except Exception as exc:  # the approvals store is down: fail closed
            log.warning("session %s: cannot ask for approval: %s", self.id, exc)
            outcome = held.unavailable(exc)
        finally:
            self.ctx.held.pop(self.id, None)
            self._deciding = None
        if self._ended.done():
            return
        self._guarded(lambda _: self._release_held(outcome))(b"")

    def _release_held(self, outcome: Decision) -> None:
        held = self._holding
        assert held is not None
        self._holding = None
        pending = held.verdict.pending
        pending.decision = outcome
        if outcome.allowed:
            self.pending.append(pending)
            self._upstream.write(held.raw)
        else:
            pending.response = None
            pending.local = packet(1, e.refusal(outcome, held.verdict.kind))
            self.answer_locally(pending)
        self._client_frames(held.block, held.frames, held.index)
        while self._client_backlog and self._holding is None and not self._ended.done():
            self._from_client(self._client_backlog.pop(0))
        if self._holding is None:
            self.client.resume_reading()

    def cancel_statement(self) -> bool:
        """KILL QUERY: stop the held or running statement. True if there was one."""
        cancel = self.ctx.held.get(self.id)
        if cancel is not None:
            cancel()
            return True
        if not self.pending or self.established is None:
            return False
        task = asyncio.ensure_future(self._kill_upstream_query())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _kill_upstream_query(self) -> None:
        established = self.established
        assert established is not None
        connection = self.ctx.config.connections[established.target]
        try:
            credentials = read_credentials(connection.credentials, established.target)
            await kill_query(connection, credentials, established.upstream.thread_id)
        except DbwardError as exc:
            log.warning("session %s: cannot stop the running statement: %s", self.id, exc.message)

    # upstream -> client ------------------------------------------------------------------

    def _from_upstream(self, data: bytes) -> None:
        try:
            block, frames = self._upstream_framer.split(data)
            self._relay(block, frames)
        except MysqlProtocolError as exc:
            log.warning("session %s: upstream protocol violation: %s", self.id, exc.message)
            self.client.write(
                packet(1, e.err(e.HANDSHAKE, "08S01", "upstream sent an invalid packet"))
            )
            self._end("upstream protocol violation")

    def _relay(self, block: bytes, frames: list[Frame]) -> None:
        """Follow, mask and forward the packets; commit each finished statement's record
        before the packet that finishes it leaves.

        A packet dropped (rows over a limit) or re-split shifts the sequence numbers of
        the rest of its answer, which are rewritten to stay consecutive.
        """
        out: list[bytes] = []
        base = 0  # start of the block part not yet copied to out
        index = 0
        count = len(frames)
        while index < count:
            seq, start, end = frames[index]
            pending = self._head()
            if pending is None or pending.response is None:
                raise MysqlProtocolError("a packet no command asked for")
            response = pending.response
            if end - start >= MAX_PACKET:  # a packet continued in the next ones
                payload, after = logical(block, frames, index)
                new = self._packet(pending, response, payload, 0, len(payload))
            else:
                payload, after = block, index + 1
                new = self._packet(pending, response, block, start, end)
            physical = after - index
            if new is not None or pending.shift:
                out.append(block[base : start - 4])
                if new is _DROP:
                    pending.shift += physical
                else:
                    if new is None:
                        new = block[start:end] if physical == 1 else payload
                    assert isinstance(new, bytes)
                    out.append(packet((seq - pending.shift) & 0xFF, new))
                    pending.shift += physical - packets_needed(len(new))
                base = frames[after - 1][2]
            index = after
            if response.done:
                self.pending.popleft()
                stop = frames[index - 1][2]
                out.append(block[base:stop])
                base = stop
                if not self._finished(pending):
                    return
                self._write(out)
                self._drain_local()
        out.append(block[base:])
        head = self._head()
        if (
            head is not None
            and head.audited
            and not head.streamed
            and head.response is not None
            and head.response.rows
        ):
            head.streamed = True  # rows leave before the statement ends: record its start
            if not self.recorder.record(
                EventKind.STATEMENT_STARTED,
                {"statement": self.audit_text(head), "protocol": f"mysql-{head.protocol}"},
            ):
                self._audit_failed()
                return
        self._write(out)
        if self.ctx.draining and self.idle:
            self.drain_now()

    def _write(self, out: list[bytes]) -> None:
        data = b"".join(out)
        out.clear()
        if data:
            self.client.write(data)

    def _head(self) -> Pending | None:
        return self.pending[0] if self.pending else None

    def _packet(
        self, pending: Pending, response: Response, payload: bytes, start: int, end: int
    ) -> bytes | object | None:
        """Follow one packet; its new payload, _DROP, or None to pass it as is."""
        event = response.feed(payload, start, end)
        if event == Event.ROW:
            decision = pending.decision
            limit = decision.max_rows if decision is not None else None
            if limit is not None and response.rows > limit:
                pending.withheld += 1
                return _DROP
            if not pending.planned:
                self._plan(pending, response)
            masker = pending.masker
            if masker is not None:
                return masker.rewrite(payload, start, end)
            return None
        if event in _COLUMN_EVENTS:
            if response.in_rows:
                self._plan(pending, response)
            return None
        if event in (Event.RESULT, Event.OK, Event.RESULT_END):
            pending.planned = False
            pending.masker = None
            return None
        if event == Event.ERROR:
            error = response.error
            assert error is not None
            masked = self.masking.mask_error(error.message, pending.stats())
            message = error.message if masked is None else masked
            pending.error = (error.code, error.sqlstate, message)
            if masked is not None:
                return Err(error.code, error.sqlstate, masked).encode()
            return None
        if event == Event.LOCAL_INFILE:
            raise MysqlProtocolError("the server asked for a local file, which dbward never allows")
        return None

    def _plan(self, pending: Pending, response: Response) -> None:
        pending.planned = True
        binary = pending.protocol in ("binary", "fetch")
        analysis = pending.analysis
        shape = analysis.shape if analysis is not None and analysis.error is None else ""
        pending.masker = self.masking.row_masker(
            response.columns, pending.stats, binary=binary, shape=shape
        )

    def _finished(self, pending: Pending) -> bool:
        """A command's answer is complete: its effects and record. False if the trail failed
        (the session is then ended)."""
        response = pending.response
        if response is not None and response.error is None:
            self.guard.no_backslash_escapes = bool(response.status & _NO_BACKSLASH_ESCAPES)
        self.desk.answered(pending)
        if pending.audited and not self._record_statement(pending):
            self._audit_failed()
            return False
        return True

    def _audit_failed(self) -> None:
        self.client.write(
            packet(
                1,
                e.err(
                    e.AUDIT_DOWN,
                    "HY000",
                    "dbward could not record this statement in its audit trail; the result "
                    "is withheld",
                ),
            )
        )
        self._end("audit trail unavailable")

    # audit -------------------------------------------------------------------------------

    def audit_text(self, pending: Pending) -> str:
        if self.masking.session.keep_literals:
            return pending.text
        return statement_shape(pending.text, pending.analysis)

    def _record_statement(self, pending: Pending, *, incomplete: bool = False) -> bool:
        self.statements += 1
        analysis: Analysis | None = pending.analysis
        if analysis is not None and any(f.kind is StatementKind.DDL for f in analysis.statements):
            self.masking.session.forget_schema()
        response = pending.response
        error = pending.error
        outcome = StatementOutcome(
            pending.text,
            self.audit_text(pending),
            f"mysql-{pending.protocol}",
            pending.duration_ms,
            (response.rows or response.affected) if response is not None else 0,
            analysis,
            pending.decision,
            failed=error is not None or (response is not None and response.error is not None),
            prepared=str(pending.statement_id) if pending.statement_id is not None else None,
            withheld=pending.withheld,
            masked=pending.masked,
            sqlstate=error[1] if error is not None else None,
            error=f"{error[0]}: {error[2]}" if error is not None else None,
            incomplete=incomplete,
        )
        established = self.established
        agent = established.agent if established is not None else {}
        return self.recorder.record(EventKind.STATEMENT, statement_data(outcome, agent))

    # grants, draining --------------------------------------------------------------------

    def _grant_ended(self, held: ApprovalRequest, grant: ApprovalRequest | None) -> None:
        if self._ended.done():
            return
        established = self.established
        assert established is not None
        how = "was revoked" if grant is not None and grant.status is Status.REVOKED else "expired"
        self.recorder.record(
            EventKind.ACCESS_ENDED,
            {"request": held.id, "role": held.role, "how": how, "statements": self.statements},
        )
        message = (
            f"dbward: access grant {held.id} to {established.target} (role {held.role}) {how}; "
            f"the connection is closed. Ask again: dbward access request {established.target} "
            f"--role {held.role} --duration 1h --reason '...'"
        )
        self.close_with(1927, "70100", message, f"access grant {how}")

    def close_with(self, code: int, sqlstate: str, message: str, reason: str) -> None:
        """End the session with an error; a statement still running is stopped first."""
        self.client.write(packet(1, e.err(code, sqlstate, message)))
        if self.idle:
            self._upstream.write(packet(0, bytes((Command.QUIT,))))
            self._end(reason)
            return
        self.client.pause_reading()
        task = asyncio.ensure_future(self._kill_then_end(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill_then_end(self, reason: str) -> None:
        if self._deciding is not None:
            self._deciding.cancel()
        else:
            await self._kill_upstream_query()
        self._end(reason)

    def drain(self) -> None:
        if self.established is not None and self.idle:
            self.drain_now()

    def drain_now(self) -> None:
        if self._ended.done():
            return
        self.client.write(
            packet(
                1,
                e.err(
                    e.SERVER_SHUTDOWN,
                    "08S01",
                    "dbward is shutting down; reconnect: another dbward instance will take "
                    "the connection",
                ),
            )
        )
        if self.established is not None:
            self._upstream.write(packet(0, bytes((Command.QUIT,))))
        self._end("dbward shutting down")
