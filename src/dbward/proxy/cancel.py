"""Cancel keys: dbward hands each client its own key and maps it to the upstream's.

A client's CancelRequest arrives on a new connection with the key dbward
gave it; the registry finds the upstream backend behind it, and dbward sends
the upstream's own key there. Upstream keys never reach clients.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbward.audit.events import AuditEvent, EventKind
from dbward.codec.pg.backend import BackendKeyData
from dbward.codec.pg.framing import StartupParser
from dbward.codec.pg.startup import CancelRequest
from dbward.config import Connection
from dbward.errors import DbwardError
from dbward.proxy.upstream import negotiate_tls, open_connection

if TYPE_CHECKING:
    from dbward.proxy.context import ProxyContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CancelTarget:
    connection_name: str
    connection: Connection
    upstream_key: BackendKeyData
    session_id: str
    identity: str
    identity_kind: str


class CancelRegistry:
    """The keys one worker handed out. With several workers, a key's process id tells
    which worker issued it (``process_id % workers``), so a CancelRequest that lands
    on another worker can be passed to the right one."""

    def __init__(self, worker: int = 0, workers: int = 1) -> None:
        self._targets: dict[tuple[int, int], CancelTarget] = {}
        self.worker = worker
        self.workers = workers

    def issue(self, target: CancelTarget) -> BackendKeyData:
        """A fresh client-facing key for ``target``."""
        while True:
            slot = secrets.randbelow((2**31 - 1) // self.workers - 1) + 1
            key = (slot * self.workers + self.worker, secrets.randbits(32))
            if key not in self._targets:
                self._targets[key] = target
                return BackendKeyData(*key)

    def owner(self, process_id: int) -> int:
        """The worker that issued a key with this process id."""
        return process_id % self.workers

    def find(self, process_id: int, secret_key: int) -> CancelTarget | None:
        return self._targets.get((process_id, secret_key))

    def forget(self, key: BackendKeyData) -> None:
        self._targets.pop((key.process_id, key.secret_key), None)

    def __len__(self) -> int:
        return len(self._targets)


async def cancel_backend(ctx: ProxyContext, request: CancelRequest, source: str) -> None:
    """Act on a client's CancelRequest: cancel the upstream backend behind its key.

    A key another worker issued is passed to that worker over its cancel
    socket. Unknown keys get no answer, as PostgreSQL does.
    """
    registry = ctx.cancels
    target = registry.find(request.process_id, request.secret_key)
    if target is None:
        owner = registry.owner(request.process_id)
        if owner != registry.worker and ctx.cancel_sockets:
            log.debug("passing a cancel request to worker %d", owner)
            await _pass_to_worker(ctx.cancel_sockets[owner], request)
        return
    held = ctx.held.get(target.session_id)
    if held is not None:
        held()  # a statement waits for approval: stop waiting; nothing runs upstream
    await cancel_upstream(target.connection, target.upstream_key)
    ctx.audit.record(
        AuditEvent(
            kind=EventKind.CANCEL,
            session_id=target.session_id,
            identity=target.identity,
            identity_kind=target.identity_kind,
            target=target.connection_name,
            source=source,
        )
    )


async def cancel_upstream(connection: Connection, key: BackendKeyData) -> None:
    """Ask the upstream server to cancel what the backend behind ``key`` is running."""
    conn = await open_connection(connection)
    try:
        await negotiate_tls(conn, connection)
        conn.write(CancelRequest(key.process_id, key.secret_key).encode())
        await asyncio.wait_for(conn.closed_future, 5.0)
    finally:
        conn.close()


async def _pass_to_worker(path: Path, request: CancelRequest) -> None:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5.0)
    except (OSError, TimeoutError) as exc:
        log.warning("cannot pass a cancel request to the worker at %s: %s", path.name, exc)
        return
    writer.write(request.encode())
    await writer.drain()
    writer.close()


async def serve_cancel_socket(ctx: ProxyContext, path: Path) -> asyncio.Server:
    """Listen for CancelRequests other workers pass to this one (``path`` must be free)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            packet = await asyncio.wait_for(reader.readexactly(16), 5.0)
            (request,) = StartupParser().feed(packet)
            if isinstance(request, CancelRequest):
                await cancel_backend(ctx, request, "another dbward worker")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, DbwardError, ValueError) as exc:
            log.warning("bad request on the cancel socket: %s", exc)
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, str(path))
