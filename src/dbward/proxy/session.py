"""One client connection through dbward, from its first byte to its last.

The handshake (:mod:`dbward.proxy.handshake`) brings the client in; then the
session relays in callbacks: bytes from either side are framed, the requests
and answers that matter are tracked, complete messages are forwarded in bulk,
untouched. Each finished statement's audit record is committed before the
bytes that finish it are released to the client.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import partial
from typing import Any

from dbward.approvals.requests import ApprovalRequest, Status
from dbward.audit.events import EventKind
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import Frame, Framer
from dbward.codec.pg.frontend import FRONTEND_NAMES, Bind, Terminate
from dbward.config import Listener
from dbward.errors import DbwardError
from dbward.masking.copy import CopyOptions, copy_options
from dbward.masking.plan import Field
from dbward.masking.rows import MaskStats
from dbward.metrics import CONNECTIONS
from dbward.policy.decide import Decision, Subject
from dbward.policy.model import Action
from dbward.proxy.cancel import cancel_upstream
from dbward.proxy.catalog import qualified
from dbward.proxy.connection import Conn, ConnectionClosed
from dbward.proxy.context import ProxyContext
from dbward.proxy.guard import (
    REFUSED_QUERY,
    StatementGuard,
    capped_completion,
    refusal_error,
    refused_parse,
    startup_search_path,
)
from dbward.proxy.handshake import Established, Handshake, SessionEnded, fatal
from dbward.proxy.holding import HeldStatement, decide_held
from dbward.proxy.holding import refused as refused_hold
from dbward.proxy.masking import NOTHING_TO_MASK, SessionMasking, statement_shape
from dbward.proxy.recorder import SessionRecorder, StatementOutcome, statement_data
from dbward.proxy.results import bind_parameters
from dbward.proxy.tracking import FinishedStatement, StatementTracker
from dbward.sql.facts import Analysis, StatementKind

log = logging.getLogger(__name__)

_TRACKED_FRONTEND = frozenset(b"QPBECDSF")
_TRACKED_BACKEND = frozenset(b"CZEIs123nT")
_VALID_FRONTEND = frozenset(FRONTEND_NAMES)
_TERMINATE = ord("X")
_DATA_ROW = ord("D")
_COPY_DATA = ord("d")
_ERROR = ord("E")
_COMMAND_COMPLETE = ord("C")
_NOTICE = ord("N")
_COPY_OUT = ord("H")
_PARSE = ord("P")
_HOLD = object()  # the result needs the catalog before its rows can be masked


def _message(kind: int, payload: bytes) -> bytes:
    return bytes((kind,)) + struct.pack("!i", len(payload) + 4) + payload


_BIND = ord("B")


def _splice(block: bytes, replacements: list[tuple[int, int, bytes]]) -> bytes:
    """``block`` with each ``(start, end, new)`` range (in order) replaced by ``new``."""
    parts = []
    pos = 0
    for start, end, new in replacements:
        parts.append(block[pos:start])
        parts.append(new)
        pos = end
    parts.append(block[pos:])
    return b"".join(parts)


class Session:
    def __init__(
        self,
        ctx: ProxyContext,
        client: Conn,
        listener: Listener,
        tls: ssl.SSLContext,
        *,
        admit: bool = True,
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.id = secrets.token_hex(6)
        self.recorder = SessionRecorder(ctx.audit, self.id, client.peer())
        self.handshake = Handshake(ctx, client, listener, tls, self.recorder, admit=admit)
        self.established: Established | None = None
        self._upstream: Conn  # set when the relay starts
        self.tracker = StatementTracker()
        self._missing_statement = f"dbward refused {secrets.token_hex(8)}"
        self.statements = 0
        self.started = time.monotonic()
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._held: tuple[bytes, list[Frame], int] | None = None
        self._loading: Coroutine[Any, Any, None] | None = None  # what a held result waits for
        self._queued: list[bytes] = []
        # A statement held for approval: (block, frames, index, its request, decision);
        # what the client sends meanwhile waits in the backlog.
        self._holding: tuple[bytes, list[Frame], int, Any, Decision] | None = None
        self._client_backlog: list[bytes] = []
        self._unwatch: list[Callable[[], None]] = []  # stop watching access grants
        self._deciding: asyncio.Future[Decision] | None = None  # a held statement's wait
        self._described: tuple[Any, list[Field]] | None = None  # a COPY (query)'s columns
        self._tasks: set[asyncio.Future[None]] = set()

    # lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        handshake = self.handshake
        try:
            self.established = await asyncio.wait_for(
                handshake.run(), self.ctx.config.limits.startup_timeout
            )
        except SessionEnded:
            self.client.close()
            return
        except TimeoutError:
            handshake.refuse(
                "08006",
                f"startup did not finish within {self.ctx.config.limits.startup_timeout:g} s",
            )
            return
        except ProtocolError as exc:
            handshake.refuse("08P01", exc.message)
            return
        except DbwardError as exc:  # e.g. the upstream of a CancelRequest is unreachable
            log.warning("session %s: %s", self.id, exc.message)
            self.client.abort()
            return
        except (ConnectionClosed, ssl.SSLError, OSError) as exc:
            # The client went away or failed the TLS handshake (for example, it does not
            # trust dbward's certificate): routine, nothing to tell it.
            log.info(
                "session %s from %s ended during startup: %s", self.id, self.recorder.source, exc
            )
            self.client.abort()
            if handshake.upstream is not None:
                handshake.upstream.conn.abort()
            return
        reason = "client closed"
        try:
            self._start_relay()
            reason = await self._ended
        finally:
            self._finish(reason)

    def _finish(self, reason: str) -> None:
        assert self.established is not None
        CONNECTIONS.dec()
        for unwatch in self._unwatch:
            unwatch()
        if self._deciding is not None:  # the client left while its statement was held
            self._deciding.cancel()
        if self.established.client_key is not None:
            self.ctx.cancels.forget(self.established.client_key)
        self.client.close()
        self.established.upstream.conn.close()
        for unfinished in self.tracker.abandon():
            self._record_statement(unfinished, incomplete=True)
        self.recorder.connection_end(
            reason, time.monotonic() - self.started, self.statements, self.client
        )

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)

    # relay -------------------------------------------------------------------------------

    def _start_relay(self) -> None:
        established = self.established
        assert established is not None
        identity = established.identity
        connection = self.ctx.config.connections[established.target]
        subject = Subject(
            identity=identity.name,
            groups=identity.groups,
            identity_kind=identity.kind,
            connection=established.target,
            environment=connection.environment,
        )
        audit = self.ctx.audit
        fail_closed = connection.environment in self.ctx.config.audit.fail_closed
        self.guard = StatementGuard(
            self.ctx.policy,
            subject,
            startup_search_path(established.parameters),
            audit_ok=(lambda: audit.store_ok) if fail_closed else None,
        )
        self.tracker = StatementTracker(self.guard)
        self.masking = SessionMasking(
            self.ctx.policy,
            subject,
            self.ctx.keyring,
            self.ctx.catalogs.get(established.target),
        )
        upstream = self._upstream = established.upstream.conn
        limit = self.ctx.config.limits.max_message_size
        self._client_framer = Framer(max_message=limit, what="frontend message")
        self._upstream_framer = Framer(max_message=limit, what="backend message")
        self.client.on_close = lambda exc: self._end("client closed")
        upstream.on_close = lambda exc: self._upstream_closed()
        self.client.on_writable = self._client_writable
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

    def _grant_ended(self, held: ApprovalRequest, grant: ApprovalRequest | None) -> None:
        """An access grant this session runs under expired or was revoked: end the session
        (a statement still running is cancelled first, so it does not commit)."""
        if self._ended.done():
            return
        established = self.established
        assert established is not None
        how = "was revoked" if grant is not None and grant.status is Status.REVOKED else "expired"
        self.recorder.record(
            EventKind.ACCESS_ENDED,
            {"request": held.id, "role": held.role, "how": how, "statements": self.statements},
        )
        self.client.write(
            fatal(
                "57P01",
                f"terminating connection: access grant {held.id} to {established.target} "
                f"(role {held.role}) {how}",
                hint=f"ask for access again: dbward access request {established.target} "
                f"--role {held.role} --duration 1h --reason '...'",
            )
        )
        key = established.upstream.key
        if self.tracker.idle or key is None:
            self._terminate_upstream(f"access grant {how}")
            return
        self.client.pause_reading()
        connection = self.ctx.config.connections[established.target]
        task = asyncio.ensure_future(self._cancel_then_end(connection, key, f"access grant {how}"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_then_end(self, connection: Any, key: Any, reason: str) -> None:
        try:
            await cancel_upstream(connection, key)
        except Exception as exc:  # the session ends all the same
            log.warning("session %s: cannot cancel the running statement: %s", self.id, exc)
        self._terminate_upstream(reason)

    def _terminate_upstream(self, reason: str) -> None:
        self._upstream.write(Terminate().encode())
        self._end(reason)

    def _guarded(self, handler: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``handler``, but a bug in it ends this session only, with a clear error."""

        def guarded(data: bytes) -> None:
            try:
                handler(data)
            except Exception:
                log.exception("session %s: internal error; ending the session", self.id)
                self.client.write(fatal("XX000", "dbward internal error; the session is ended"))
                self._upstream.write(Terminate().encode())
                self._end("internal error")

        return guarded

    def _client_writable(self, ok: bool) -> None:
        if ok:
            self._upstream.resume_reading()
        else:
            self._upstream.pause_reading()

    def _upstream_closed(self) -> None:
        if not self._ended.done():
            self._end("upstream closed")
            self.client.close()

    def _from_client(self, data: bytes) -> None:
        if self._holding is not None:  # a statement waits for approval: keep the order
            self._client_backlog.append(data)
            self.client.pause_reading()
            return
        try:
            block, frames = self._client_framer.split(data)
        except ProtocolError as exc:
            self._protocol_violation(exc)
            return
        self._client_frames(block, frames, 0)

    def _client_frames(self, block: bytes, frames: list[Frame], first: int) -> None:
        """Check and forward ``frames[first:]``; stop at a statement held for approval."""
        tracker = self.tracker
        terminate = False
        refused: list[tuple[int, int, bytes]] | None = None
        base = frames[first][1] - 5 if first < len(frames) else len(block)
        cut = len(block)
        for index in range(first, len(frames)):
            kind, start, end = frames[index]
            if kind in _TRACKED_FRONTEND:
                try:
                    decision = tracker.on_frontend(kind, block, start, end)
                except (ValueError, IndexError):
                    self._protocol_violation(
                        ProtocolError(f"malformed {FRONTEND_NAMES[kind]} message")
                    )
                    return
                if decision is not None and not decision.allowed:
                    op = tracker.appended
                    if decision.action is Action.REVIEW and op is not None:
                        if kind == _PARSE:  # preparing runs nothing: its execution is held
                            tracker.resolve(op, None)
                            continue
                        if self.ctx.approvals is not None:
                            self._holding = (block, frames, index, op, decision)
                            cut = start - 5
                            break
                    if refused is None:
                        refused = []
                    refused.append((start - 5, end, self._stand_in(kind, block, start, end)))
            elif kind not in _VALID_FRONTEND:
                self._protocol_violation(
                    ProtocolError(f"invalid frontend message type {kind} ({chr(kind)!r})")
                )
                return
            elif kind == _TERMINATE:
                terminate = True
        part = block[base:cut]
        if refused:
            part = _splice(part, [(s - base, e - base, new) for s, e, new in refused])
        if part:
            self._upstream.write(part)
        if self._holding is not None:
            self._hold_statement()
        elif terminate:
            self._end("client terminated")

    def _hold_statement(self) -> None:
        self.client.pause_reading()
        task = asyncio.ensure_future(self._await_approval())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_approval(self) -> None:
        held = self._holding
        assert held is not None
        block, frames, index, op, decision = held
        kind, start, end = frames[index]
        parameters, shown = b"", tuple[str, ...]()
        if kind == _BIND:
            types = self.tracker.parameter_types(op.prepared_name or "")
            parameters, shown = bind_parameters(block, start, end, types)
        established = self.established
        assert established is not None
        service, watcher = self.ctx.approvals, self.ctx.watcher
        assert service is not None
        assert watcher is not None
        statement = HeldStatement(
            op.text,
            self._audit_text(op.text, op.analysis),
            parameters,
            shown,
            op.analysis,
            decision,
        )
        deciding = asyncio.ensure_future(
            decide_held(
                service,
                watcher,
                statement,
                identity=established.identity,
                subject=self.guard.subject,
                session=self.id,
                wait=self.ctx.config.approvals.wait,
                tell_client=self.client.write,
            )
        )
        by_client = False

        def cancel() -> None:  # the client sent a CancelRequest (psql's Ctrl-C)
            nonlocal by_client
            by_client = True
            deciding.cancel()

        self.ctx.held[self.id] = cancel
        self._deciding = deciding
        try:
            outcome = await deciding
        except asyncio.CancelledError:
            if not by_client:
                raise  # the session itself is going away
            outcome = replace(
                refused_hold(
                    decision,
                    None,
                    "canceling statement due to user request: it was waiting for approval "
                    "and did not run",
                    "an approval given later lets the identical statement run at once",
                ),
                sqlstate="57014",  # query_canceled, as PostgreSQL answers a cancelled query
            )
        except Exception as exc:  # the approvals store is down: fail closed
            log.warning("session %s: cannot ask for approval: %s", self.id, exc)
            outcome = refused_hold(
                decision,
                None,
                f"dbward cannot ask for approval now ({type(exc).__name__}); the statement "
                "did not run",
                "try again in a moment",
            )
        finally:
            self.ctx.held.pop(self.id, None)
            self._deciding = None
        if self._ended.done():
            return
        self._guarded(lambda _: self._release_held(outcome))(b"")

    def _release_held(self, outcome: Decision) -> None:
        held = self._holding
        assert held is not None
        block, frames, index, op, _ = held
        self._holding = None
        kind, start, end = frames[index]
        self.tracker.resolve(op, outcome)
        if outcome.allowed:
            self._upstream.write(block[start - 5 : end])
        else:
            self._upstream.write(self._stand_in(kind, block, start, end))
        self._client_frames(block, frames, index + 1)
        while self._client_backlog and self._holding is None and not self._ended.done():
            self._from_client(self._client_backlog.pop(0))
        if self._holding is None:
            self.client.resume_reading()

    def _stand_in(self, kind: int, block: bytes, start: int, end: int) -> bytes:
        """What goes upstream instead of a refused request: one that fails."""
        if kind in (_PARSE, _BIND):
            name = block[start : block.index(b"\x00", start, end)].decode("utf-8", "replace")
            if kind == _BIND:  # a statement name that does not exist: the Bind fails
                return Bind(name, self._missing_statement).encode()
            return refused_parse(name)
        return REFUSED_QUERY  # a Query, or a FunctionCall (answered the same way on error)

    def _protocol_violation(self, exc: ProtocolError) -> None:
        log.info("session %s: protocol violation from client: %s", self.id, exc.message)
        self._upstream.write(Terminate().encode())
        self.client.write(fatal("08P01", f"protocol violation: {exc.message}"))
        self._end(f"protocol violation: {exc.message}")

    def _from_upstream(self, data: bytes) -> None:
        if self._held is not None:  # a result waits for the catalog: keep the order
            self._queued.append(data)
            return
        try:
            block, frames = self._upstream_framer.split(data)
        except ProtocolError as exc:
            log.warning("session %s: upstream protocol violation: %s", self.id, exc.message)
            self.client.write(fatal("08P01", "upstream sent an invalid message"))
            self._end("upstream protocol violation")
            return
        self._relay_checked(block, frames, 0)

    def _relay_checked(self, block: bytes, frames: list[Frame], first: int) -> None:
        """:meth:`_relay_backend`, but a malformed row from upstream ends this session."""
        try:
            self._relay_backend(block, frames, first)
        except ValueError as exc:
            if not str(exc).startswith("malformed"):
                raise
            log.warning("session %s: upstream sent a %s", self.id, exc)
            self.client.write(fatal("08P01", "upstream sent an invalid message"))
            self._end("upstream protocol violation")

    def _relay_backend(self, block: bytes, frames: list[Frame], first: int) -> None:
        """Track, mask and forward ``frames[first:]`` of ``block`` (from its offset ``base``).

        Stops early, holding the rest, when a result needs the catalog first.
        """
        tracker = self.tracker
        masking = self.masking
        masks = masking.enabled
        base = frames[first][1] - 5 if first < len(frames) else len(block)
        recorded = True
        rows = 0
        replaced: list[tuple[int, int, bytes]] = []
        limiting = tracker.limiting
        result: Any = None  # the masking of the result now streaming
        index = first - 1
        while index + 1 < len(frames):
            index += 1
            kind, start, end = frames[index]
            if kind in (_DATA_ROW, _COPY_DATA):
                if limiting and tracker.over_limit():
                    replaced.append((start - 5, end, b""))
                    continue
                if masks:
                    if result is None:
                        result = self._result_masking(kind)
                        if result is _HOLD:
                            if rows:
                                tracker.on_rows(rows)
                            self._hold(block, frames, index)
                            self._release(block, base, start - 5, replaced, recorded, rows)
                            return
                    if result is not NOTHING_TO_MASK:
                        if not limiting:
                            # The whole run of DataRows (or CopyData) in this block, at once.
                            stop, run = result.run(block, frames, index)
                            if run is not None:
                                replaced.append((start - 5, frames[stop - 1][2], run))
                            rows += stop - index
                            index = stop - 1
                            continue
                        masked = result.rewrite(block, start, end)
                        if masked is not None:
                            replaced.append((start - 5, end, _message(kind, masked)))
                rows += 1
                if limiting:
                    tracker.on_rows(rows)
                    rows = 0
            elif kind in _TRACKED_BACKEND:
                if rows:
                    tracker.on_rows(rows)
                    rows = 0
                result = None
                payload, offset, limit = block, start, end
                if kind == _ERROR:
                    denial = tracker.denial()
                    if denial is not None:
                        replaced.append((start - 5, end, refusal_error(denial)))
                    elif masks:
                        payload, offset, limit = self._mask_notice(block, start, end, replaced)
                elif limiting and kind == _COMMAND_COMPLETE:
                    cut = tracker.withheld()
                    if cut is not None:
                        tag = block[start : end - 1].decode("utf-8", "replace")
                        replaced.append((start - 5, end, capped_completion(tag, *cut)))
                done = tracker.on_backend(kind, payload, offset, limit)
                if done is not None:
                    recorded = self._record_statement(done) and recorded
            elif kind == _NOTICE and masks:
                self._mask_notice(block, start, end, replaced)
            elif kind == _COPY_OUT and masks:
                head = tracker.head
                if head is not None:
                    head.result = None  # the rows that follow are COPY's
                result = None
        self._release(block, base, len(block), replaced, recorded, rows)

    def _release(
        self,
        block: bytes,
        base: int,
        cut: int,
        replaced: list[tuple[int, int, bytes]],
        recorded: bool,
        rows: int,
    ) -> None:
        """Send ``block[base:cut]`` (with ``replaced`` ranges) once its records are committed."""
        tracker = self.tracker
        if rows:
            tracker.on_rows(rows)
            streaming = tracker.streaming()
            if streaming is not None:
                # Part of a result leaves before its statement ends: record the start first.
                text, protocol = streaming
                recorded = (
                    self.recorder.record(
                        EventKind.STATEMENT_STARTED,
                        {"statement": self._audit_text(text, None), "protocol": protocol},
                    )
                    and recorded
                )
        if not recorded:
            # Fail closed: what could not be recorded is not released.
            self.client.write(
                fatal(
                    "58030",
                    "dbward could not record this statement in its audit trail; "
                    "the result is withheld",
                )
            )
            self._end("audit trail unavailable")
            return
        part = block[base:cut]
        if replaced:
            part = _splice(part, [(s - base, e - base, new) for s, e, new in replaced])
        if part:
            self.client.write(part)
            if self.ctx.draining and tracker.idle:
                self.drain_now()

    # masking -----------------------------------------------------------------------------

    def _result_masking(self, kind: int) -> Any:
        """The row masker for the result now arriving, NOTHING_TO_MASK, or _HOLD."""
        head = self.tracker.head
        if head is None:
            return NOTHING_TO_MASK
        if head.result is not None:
            return head.result
        if kind == _COPY_DATA:
            if head.masked is None:
                head.masked = MaskStats()
            return self._copy_masking(head)
        fields = self.tracker.result_fields() or []
        masking = self.masking
        plan = masking.known_plan(fields)
        if plan is None and masking.needs_catalog(fields):
            self._loading = masking.load(fields)
            return _HOLD
        masker = masking.row_masker(fields, lambda: self._stats(head), plan)
        head.result = masker
        return masker

    @staticmethod
    def _stats(head: Any) -> MaskStats:
        if head.masked is None:
            head.masked = MaskStats()
        stats: MaskStats = head.masked
        return stats

    def _copy_masking(self, head: Any) -> Any:
        options = copy_options(head.text) or CopyOptions()
        fields: list[Field] | None = None
        catalog = self.masking.catalog
        if options.table is not None and catalog is not None:
            relation = qualified(self._copy_schema(head, options), options.table)
            fields = catalog.cached_table(relation)
            if fields is None:
                self._loading = self.masking.load_table(relation)
                return _HOLD
        elif options.query is not None and catalog is not None:
            if self._described is None or self._described[0] is not head:
                described: list[Field] = []
                self._described = (head, described)  # described once, then masked
                self._loading = self.masking.describe(options.query, described)
                return _HOLD
            fields = self._described[1] or None
            self._described = None
        masker = self.masking.copy_masker(options, fields, head.masked)
        head.result = masker
        return masker

    @staticmethod
    def _copy_schema(head: Any, options: CopyOptions) -> str | None:
        """The COPY's table's schema: as written, or as the session's search_path resolved it."""
        if options.schema is not None:
            return options.schema
        analysis = head.analysis
        if analysis is not None and analysis.statements:
            for relation in analysis.statements[0].reads:
                if relation.name == options.table:
                    schema: str | None = relation.schema
                    return schema
        return None

    def _hold(self, block: bytes, frames: list[Frame], index: int) -> None:
        self._held = (block, frames, index)
        self._upstream.pause_reading()
        task = asyncio.ensure_future(self._resume_after_catalog())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume_after_catalog(self) -> None:
        held = self._held
        assert held is not None
        block, frames, index = held
        loading, self._loading = self._loading, None
        if loading is not None:
            await loading
        if self._ended.done():
            return
        self._held = None
        guarded = self._guarded(lambda _: self._relay_checked(block, frames, index))
        guarded(b"")
        queued, self._queued = self._queued, []
        for data in queued:
            self._guarded(self._from_upstream)(data)
        self._upstream.resume_reading()

    def _mask_notice(
        self, block: bytes, start: int, end: int, replaced: list[tuple[int, int, bytes]]
    ) -> tuple[bytes, int, int]:
        """Mask an ErrorResponse/NoticeResponse; return where its (new) payload is."""
        head = self.tracker.head
        stats = None
        if head is not None:
            if head.masked is None:
                head.masked = MaskStats()
            stats = head.masked
        masked = self.masking.mask_notice(block[start:end], stats)
        if masked is None:
            return block, start, end
        kind = block[start - 5 : start - 4]
        replaced.append((start - 5, end, kind + struct.pack("!i", len(masked) + 4) + masked))
        return masked, 0, len(masked)

    def _audit_text(self, text: str, analysis: Analysis | None) -> str:
        """The statement as the audit keeps it: literals replaced by placeholders by default."""
        if self.masking.keep_literals:
            return text
        return statement_shape(text, analysis)

    def _record_statement(self, done: FinishedStatement, *, incomplete: bool = False) -> bool:
        """Commit the statement's audit record; False if the audit trail failed.

        ``incomplete``: the connection ended before the statement did.
        """
        self.statements += 1
        analysis = done.analysis
        if analysis is not None and any(f.kind is StatementKind.DDL for f in analysis.statements):
            self.masking.forget_schema()  # a renamed column is looked up again
        outcome = StatementOutcome(
            done.text,
            self._audit_text(done.text, done.analysis),
            done.protocol,
            done.duration_ms,
            done.rows,
            analysis,
            done.decision,
            failed=bool(done.sqlstate),
            tags=tuple(done.tags),
            prepared=done.prepared_name or None,
            withheld=done.withheld,
            masked=done.masked,
            sqlstate=done.sqlstate or None,
            error=done.error,
            incomplete=incomplete,
        )
        agent = self.established.agent if self.established is not None else {}
        return self.recorder.record(EventKind.STATEMENT, statement_data(outcome, agent))

    # draining ----------------------------------------------------------------------------

    def drain(self) -> None:
        """dbward is stopping: end the session as soon as it is idle."""
        if self.established is not None and self.tracker.idle:
            self.drain_now()

    def drain_now(self) -> None:
        self.client.write(
            fatal(
                "57P01",
                "terminating connection because dbward is shutting down",
                hint="reconnect: another dbward instance will take the connection",
            )
        )
        if self.established is not None:
            self._upstream.write(Terminate().encode())
        self._end("dbward shutting down")
