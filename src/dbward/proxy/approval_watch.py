"""Waiting for approvers: one poller per process over the shared approvals store.

Held statements wait for their request to leave ``pending``; sessions opened
under an access grant are ended when the grant runs out or is revoked. The
decision may come from this process's API, the command line, Slack, or another
dbward instance sharing the PostgreSQL store: all of them only change the
store, so polling it (a single indexed query per interval, only while
something waits) sees every one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from dbward.approvals.requests import ApprovalRequest, Status
from dbward.approvals.store import AccessStore

log = logging.getLogger(__name__)

_GRANT_EVERY = 5  # grants are checked on every fifth poll


class ApprovalWatcher:
    def __init__(
        self, store: AccessStore, interval: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        self._waiting: dict[str, list[asyncio.Future[ApprovalRequest]]] = {}
        self._grants: dict[str, dict[int, Callable[[ApprovalRequest | None], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._tick = 0

    async def wait(self, request_id: str, seconds: float) -> ApprovalRequest | None:
        """The request once decided (approved, rejected, expired...), or None on timeout."""
        future: asyncio.Future[ApprovalRequest] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request_id, []).append(future)
        self._start()
        try:
            return await asyncio.wait_for(future, seconds)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiting.get(request_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiting[request_id]

    def watch_grant(
        self, grant: ApprovalRequest, key: int, ended: Callable[[ApprovalRequest | None], None]
    ) -> Callable[[], None]:
        """Call ``ended`` when ``grant`` expires or is revoked; returns what stops watching."""
        self._grants.setdefault(grant.id, {})[key] = ended
        loop = asyncio.get_running_loop()
        timer = None
        if grant.approved_until is not None:
            delay = max(0.0, grant.approved_until - self.clock())
            timer = loop.call_later(delay, self._grant_over, grant.id, key, grant)
        self._start()

        def stop() -> None:
            if timer is not None:
                timer.cancel()
            callbacks = self._grants.get(grant.id)
            if callbacks is not None:
                callbacks.pop(key, None)
                if not callbacks:
                    del self._grants[grant.id]

        return stop

    def _grant_over(self, grant_id: str, key: int, grant: ApprovalRequest | None) -> None:
        callbacks = self._grants.get(grant_id)
        if callbacks is None or key not in callbacks:
            return
        callback = callbacks.pop(key)
        if not callbacks:
            del self._grants[grant_id]
        callback(grant)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._waiting or self._grants:
            await asyncio.sleep(self.interval)
            self._tick += 1
            ids = list(self._waiting)
            if self._grants and self._tick % _GRANT_EVERY == 0:
                ids += list(self._grants)
            if not ids:
                continue
            try:
                found = await asyncio.to_thread(self.store.many, ids)
            except Exception as exc:  # the store is down: keep waiting, say so once a tick
                log.warning("approvals store unreachable while waiting: %s", exc)
                continue
            self._settle(ids, found)

    def _settle(self, ids: list[str], found: dict[str, ApprovalRequest]) -> None:
        now = self.clock()
        for request_id in ids:
            request = found.get(request_id)
            waiters = self._waiting.get(request_id)
            if waiters and request is not None and request.status is not Status.PENDING:
                for future in waiters:
                    if not future.done():
                        future.set_result(request)
            callbacks = self._grants.get(request_id)
            if callbacks and (request is None or not request.usable(now)):
                for key in list(callbacks):
                    self._grant_over(request_id, key, request)
