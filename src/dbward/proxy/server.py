"""The dbward server: listeners, the sessions they accept, and a graceful stop.

On SIGTERM (or SIGINT) dbward stops accepting, lets every session finish
what it is doing (statements in flight, open transactions), ends each one
when it becomes idle, and after ``limits.drain_timeout`` ends the rest.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from contextlib import suppress
from pathlib import Path
from typing import Any

from dbward.approvals.notify import Notifiers
from dbward.approvals.service import ApprovalService
from dbward.audit.signing import SIGNING_KEY, Signer
from dbward.audit.writer import AuditWriter, DisabledAuditWriter
from dbward.config import Config, Listener
from dbward.errors import DbwardError
from dbward.identity.authenticator import Authenticator
from dbward.identity.tokens import TokenStore
from dbward.keyring import load_keyring
from dbward.metrics import AUDIT_PENDING
from dbward.proxy.approval_watch import ApprovalWatcher
from dbward.proxy.cancel import CancelRegistry, serve_cancel_socket
from dbward.proxy.catalog import Catalogs
from dbward.proxy.connection import Conn
from dbward.proxy.context import ProxyContext
from dbward.proxy.mysql.session import MysqlSession
from dbward.proxy.mysql.views import ViewRenames
from dbward.proxy.policy_source import PolicySource
from dbward.proxy.session import Session
from dbward.proxy.tls import server_context
from dbward.stores import build_sinks, open_access_store, open_audit_store

log = logging.getLogger(__name__)


def cancel_socket(config: Config, worker: int) -> Path:
    return config.state_dir / "run" / f"cancel-{worker}.sock"


class Server:
    """One process's listeners and sessions; ``worker`` of ``config.workers``."""

    def __init__(self, config: Config, *, worker: int = 0) -> None:
        self.config = config
        self.worker = worker
        workers = config.workers
        config.state_dir.mkdir(parents=True, exist_ok=True)
        tokens = TokenStore(config.tokens_path) if config.identity.tokens else None
        journal = config.audit_journal_dir
        if workers > 1:
            journal = journal / f"worker-{worker}"
            (config.state_dir / "run").mkdir(mode=0o700, exist_ok=True)
            cancel_socket(config, worker).unlink(missing_ok=True)
        keyring = load_keyring(config.state_dir)
        writer = AuditWriter if config.audit.enabled else DisabledAuditWriter
        if not config.audit.enabled:
            log.warning("audit.enabled is false: NOTHING is recorded (benchmarks only)")
        audit = writer(
            open_audit_store(config),
            journal,
            chain=f"{config.audit.instance}-{worker}",
            signer=Signer(keyring.key(SIGNING_KEY)),
            fsync=config.audit.synchronous == "full",
            checkpoint_interval=config.audit.checkpoint_interval,
            sinks=build_sinks(config, worker),
        )
        access = open_access_store(config)
        approvals = ApprovalService(
            access,
            config.approvals,
            audit.record,
            instance=f"{config.audit.instance}-{worker}",
            notifiers=Notifiers(config.approvals),
        )
        self.ctx = ProxyContext(
            config=config,
            policy=PolicySource(config.policy.file, audit if worker == 0 else None),
            authenticator=Authenticator(config.identity, tokens, redeem=access.redeem_credential),
            audit=audit,
            keyring=keyring,
            catalogs=Catalogs(config.connections),
            cancels=CancelRegistry(worker, workers),
            cancel_sockets=[cancel_socket(config, i) for i in range(workers)]
            if workers > 1
            else [],
            approvals=approvals,
            watcher=ApprovalWatcher(access, config.approvals.poll_interval),
            mysql_views=ViewRenames(),
        )
        self._tls = [
            server_context(listener.tls, config.state_dir) for listener in config.listeners
        ]
        self.sessions: set[Session | MysqlSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tasks_background: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._mysql_sockets: list[socket.socket] = []  # MySQL listeners (raw accept)
        self._accepting: set[asyncio.Task[None]] = set()
        self._cancel_server: asyncio.Server | None = None  # kept open while draining
        self._stopping = asyncio.Event()
        self._api: Any = None  # uvicorn's server, when api.enabled (worker 0)
        self._api_error: str | None = None
        self._tokens = tokens
        self._api_task: asyncio.Task[None] | None = None
        self.addresses: list[tuple[str, int]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.api.enabled and self.worker == 0:
            await self._start_api()  # first: no SQL is accepted by a dbward that cannot start
        for listener, tls in zip(self.config.listeners, self._tls, strict=True):
            try:
                if listener.protocol == "mysql":
                    sockets = [self._listen_mysql(listener, tls)]
                else:
                    server = await loop.create_server(
                        lambda listener=listener, tls=tls: self._accept(listener, tls),  # type: ignore[misc]
                        listener.host,
                        listener.port,
                        reuse_address=True,
                        reuse_port=self.config.workers > 1,
                        backlog=1024,
                    )
                    self._servers.append(server)
                    sockets = list(server.sockets)
            except OSError as exc:
                self._close_listeners()
                raise DbwardError(
                    f"cannot listen on {listener.host}:{listener.port}: "
                    f"{exc.strerror or exc} (is another dbward or server using the port?)"
                ) from None
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                self.addresses.append((host, port))
                log.info(
                    "worker %d listening on %s:%d (%s)", self.worker, host, port, listener.protocol
                )
        if self.ctx.cancel_sockets:
            path = self.ctx.cancel_sockets[self.worker]
            self._cancel_server = await serve_cancel_socket(self.ctx, path)
        if self.config.policy.file is not None:
            watcher = loop.create_task(self.ctx.policy.watch(self.config.policy.reload_interval))
            self._tasks_background.add(watcher)
        if self.worker == 0 and self.ctx.approvals is not None:
            self._tasks_background.add(loop.create_task(self.ctx.approvals.watch(2.0)))
        self._tasks_background.add(loop.create_task(self._report_audit_lag()))

    async def _report_audit_lag(self) -> None:
        while True:
            AUDIT_PENDING.set(self.ctx.audit.pending)
            await asyncio.sleep(1.0)

    async def _start_api(self) -> None:
        from dbward.web.app import api_server

        api = self.config.api
        # API actions join this process's chain; record is called on the event loop.
        assert self.ctx.approvals is not None
        self._api = api_server(
            self.config,
            self.ctx.keyring,
            self._tokens,
            self.ctx.audit.record,
            self.ctx.approvals,
            self.ctx.authenticator,
        )
        task = asyncio.get_running_loop().create_task(self._serve_api())
        for _ in range(200):  # until it listens, or fails to
            if self._api.started or task.done():
                break
            await asyncio.sleep(0.025)
        if not self._api.started:
            task.cancel()
            why = self._api_error or "it did not start"
            raise DbwardError(
                f"cannot serve the API on {api.host}:{api.port}: {why} "
                "(is another dbward or server using the port?)"
            )
        self._api_task = task
        log.info("API listening on %s:%d", api.host, api.port)

    async def _serve_api(self) -> None:
        try:
            await self._api.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind; dbward reports it
            self._api_error = f"uvicorn stopped with status {exc.code}"
        except Exception as exc:
            self._api_error = str(exc)
            log.exception("the API stopped")

    def _listen_mysql(self, listener: Listener, tls: ssl.SSLContext) -> socket.socket:
        """A MySQL listener accepts raw sockets: the first packet is read before the event
        loop's transport (and TLS) takes the socket over (see proxy/mysql/accept.py)."""
        sock = socket.create_server(
            (listener.host, listener.port),
            backlog=1024,
            reuse_port=self.config.workers > 1,
        )
        sock.setblocking(False)
        self._mysql_sockets.append(sock)
        task = asyncio.get_running_loop().create_task(self._accept_mysql(sock, listener, tls))
        self._accepting.add(task)
        return sock

    async def _accept_mysql(
        self, listening: socket.socket, listener: Listener, tls: ssl.SSLContext
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:
                if listening.fileno() < 0:
                    return
                log.warning("accepting a MySQL client failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            admit = len(self.sessions) < self.config.limits.max_connections
            try:
                session = MysqlSession(
                    self.ctx, sock, listener, tls, admit=admit, worker=self.worker
                )
            except Exception:
                log.exception("cannot start a MySQL session")
                sock.close()
                continue
            task = loop.create_task(self._run(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, session: Session | MysqlSession) -> None:
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("session %s failed", session.id)
            if isinstance(session, MysqlSession):
                session.sock.close()
            else:
                session.client.abort()
        finally:
            self.sessions.discard(session)

    def _close_listeners(self) -> None:
        for started in self._servers:
            started.close()
        for task in self._accepting:
            task.cancel()
        for sock in self._mysql_sockets:
            sock.close()

    def _accept(self, listener: Listener, tls: ssl.SSLContext) -> Conn:
        conn = Conn()
        task = asyncio.get_running_loop().create_task(self._run_session(conn, listener, tls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _run_session(self, conn: Conn, listener: Listener, tls: ssl.SSLContext) -> None:
        await asyncio.sleep(0)  # let connection_made run before the session reads
        admit = len(self.sessions) < self.config.limits.max_connections
        await self._run(Session(self.ctx, conn, listener, tls, admit=admit))

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.ctx.policy.reload, "SIGHUP")

    async def serve_until_stopped(self) -> None:
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Stop accepting, drain the sessions, then close the audit store."""
        log.info("stopping: draining %d session(s)", len(self.sessions))
        for task in self._tasks_background:
            task.cancel()
        self._close_listeners()
        self.ctx.draining = True
        for session in list(self.sessions):
            session.drain()
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self.config.limits.drain_timeout
            )
            for session in list(self.sessions):
                session.drain_now()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
            for task in pending:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if self._cancel_server is not None:
            self._cancel_server.close()
            self._servers.append(self._cancel_server)
        for server in self._servers:
            with suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        if self._api is not None:
            self._api.should_exit = True
            if self._api_task is not None:
                with suppress(Exception):
                    await asyncio.wait_for(self._api_task, 5.0)
        self.ctx.catalogs.close()
        if self.ctx.approvals is not None:
            self.ctx.approvals.store.close()
        audit = self.ctx.audit
        await audit.close()
        log.info(
            "stopped; audit: %d event(s) in %d stored batch(es), %d stored inline under load",
            audit.events,
            audit.batches,
            audit.inline_stores,
        )


async def serve(config: Config, *, worker: int = 0) -> None:
    server = Server(config, worker=worker)
    await server.start()
    server.install_signal_handlers()
    await server.serve_until_stopped()
