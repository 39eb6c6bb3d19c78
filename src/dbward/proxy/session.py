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
import time
from collections.abc import Callable
from typing import Any

from dbward.audit.events import EventKind
from dbward.codec.pg.errors import ProtocolError
from dbward.codec.pg.framing import Framer
from dbward.codec.pg.frontend import FRONTEND_NAMES, Bind, Terminate
from dbward.config import Listener
from dbward.errors import DbwardError
from dbward.policy.decide import Subject
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
from dbward.proxy.recorder import SessionRecorder
from dbward.proxy.tracking import FinishedStatement, StatementTracker

log = logging.getLogger(__name__)

_TRACKED_FRONTEND = frozenset(b"QPBECDSF")
_TRACKED_BACKEND = frozenset(b"CZEIs123nT")
_VALID_FRONTEND = frozenset(FRONTEND_NAMES)
_TERMINATE = ord("X")
_DATA_ROW = ord("D")
_COPY_DATA = ord("d")
_ERROR = ord("E")
_COMMAND_COMPLETE = ord("C")
_PARSE = ord("P")
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
        if self.established.client_key is not None:
            self.ctx.cancels.forget(self.established.client_key)
        self.client.close()
        self.established.upstream.conn.close()
        for unfinished in self.tracker.abandon():
            self._record_statement(unfinished, incomplete=True)
        self.recorder.record(
            EventKind.CONNECTION_END,
            {
                "reason": reason,
                "duration_s": round(time.monotonic() - self.started, 3),
                "statements": self.statements,
                "bytes_from_client": self.client.bytes_in,
                "bytes_to_client": self.client.bytes_out,
            },
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
        self.guard = StatementGuard(
            self.ctx.policy, subject, startup_search_path(established.parameters)
        )
        self.tracker = StatementTracker(self.guard)
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
        try:
            block, frames = self._client_framer.split(data)
        except ProtocolError as exc:
            self._protocol_violation(exc)
            return
        tracker = self.tracker
        terminate = False
        refused: list[tuple[int, int, bytes]] | None = None
        for kind, start, end in frames:
            if kind in _TRACKED_FRONTEND:
                try:
                    decision = tracker.on_frontend(kind, block, start, end)
                except (ValueError, IndexError):
                    self._protocol_violation(
                        ProtocolError(f"malformed {FRONTEND_NAMES[kind]} message")
                    )
                    return
                if decision is not None and not decision.allowed:
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
        if refused:
            block = _splice(block, refused)
        if block:
            self._upstream.write(block)
        if terminate:
            self._end("client terminated")

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
        try:
            block, frames = self._upstream_framer.split(data)
        except ProtocolError as exc:
            log.warning("session %s: upstream protocol violation: %s", self.id, exc.message)
            self.client.write(fatal("08P01", "upstream sent an invalid message"))
            self._end("upstream protocol violation")
            return
        tracker = self.tracker
        recorded = True
        rows = 0
        replaced: list[tuple[int, int, bytes]] = []
        limiting = tracker.limiting
        for kind, start, end in frames:
            if kind in (_DATA_ROW, _COPY_DATA):
                if limiting and tracker.over_limit():
                    replaced.append((start - 5, end, b""))
                    continue
                rows += 1
                if limiting:
                    tracker.on_rows(rows)
                    rows = 0
            elif kind in _TRACKED_BACKEND:
                if rows:
                    tracker.on_rows(rows)
                    rows = 0
                if kind == _ERROR:
                    denial = tracker.denial()
                    if denial is not None:
                        replaced.append((start - 5, end, refusal_error(denial)))
                elif limiting and kind == _COMMAND_COMPLETE:
                    cut = tracker.withheld()
                    if cut is not None:
                        tag = block[start : end - 1].decode("utf-8", "replace")
                        replaced.append((start - 5, end, capped_completion(tag, *cut)))
                done = tracker.on_backend(kind, block, start, end)
                if done is not None:
                    recorded = self._record_statement(done) and recorded
        if rows:
            tracker.on_rows(rows)
            streaming = tracker.streaming()
            if streaming is not None:
                # Part of a result leaves before its statement ends: record the start first.
                text, protocol = streaming
                recorded = (
                    self.recorder.record(
                        EventKind.STATEMENT_STARTED, {"statement": text, "protocol": protocol}
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
        if replaced:
            block = _splice(block, replaced)
        if block:
            self.client.write(block)
            if self.ctx.draining and tracker.idle:
                self.drain_now()

    def _record_statement(self, done: FinishedStatement, *, incomplete: bool = False) -> bool:
        """Commit the statement's audit record; False if the audit trail failed.

        ``incomplete``: the connection ended before the statement did.
        """
        self.statements += 1
        data: dict[str, Any] = {
            "statement": done.text,
            "protocol": done.protocol,
            "duration_ms": done.duration_ms,
            "rows": done.rows,
            "tags": list(done.tags),
        }
        if done.prepared_name:
            data["prepared"] = done.prepared_name
        decision = done.decision
        if decision is not None:
            data["decision"] = decision.action.value
            data["rule"] = decision.rule
            if not decision.allowed:
                data["reason"] = decision.message
        if done.withheld:
            data["withheld_rows"] = done.withheld
        if done.sqlstate:
            data["sqlstate"] = done.sqlstate
            data["error"] = done.error
        if incomplete:
            data["incomplete"] = True
        return self.recorder.record(EventKind.STATEMENT, data)

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
