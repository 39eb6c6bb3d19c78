"""Approvals as one process sees them: requests made, votes taken, each step recorded.

Joins the store (shared by processes and instances), the pure transitions,
the notifiers and the audit trail. Store and notifier calls block, so they run
in threads; audit events are recorded on the event loop (the writer's chain
is not thread-safe). Every step is an event in the chain: requested,
notified, approved, rejected, expired, executed, revoked, reviewed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any

from dbward.approvals import requests as transitions
from dbward.approvals.notify import Notifiers
from dbward.approvals.requests import (
    ApprovalError,
    ApprovalRequest,
    Approver,
    Kind,
    Status,
)
from dbward.approvals.store import AccessStore, new_request_id
from dbward.audit.events import AuditEvent, EventKind
from dbward.config import AccessConfig, ApprovalsConfig
from dbward.identity.models import Identity

log = logging.getLogger(__name__)
_POST_WAIT = 30.0  # seconds a decision's notice waits for the request's own post
_REF_TRIES = 20  # half-seconds a decision's notice waits for another process's post

_EVENTS = {
    Status.APPROVED: EventKind.APPROVAL_APPROVED,
    Status.REJECTED: EventKind.APPROVAL_REJECTED,
    Status.EXPIRED: EventKind.APPROVAL_EXPIRED,
    Status.EXECUTED: EventKind.APPROVAL_EXECUTED,
    Status.REVOKED: EventKind.APPROVAL_REVOKED,
}


def event_data(request: ApprovalRequest, **extra: Any) -> dict[str, Any]:
    """What the trail keeps of a request: never the literal statement unless the policy
    keeps literals (``shape`` is then the text), never bound values."""
    data: dict[str, Any] = {
        "request": request.id,
        "request_kind": request.kind.value,
        "status": request.status.value,
        "rule": request.rule,
        "requester": request.requester,
        "approver_groups": list(request.approver_groups),
        "quorum": request.quorum,
        "approvals": [v.approver for v in request.approvals],
    }
    if request.kind is Kind.STATEMENT:
        data["statement"] = request.shape
        data["fingerprint"] = request.fingerprint
    else:
        data["role"] = request.role
        data["duration_s"] = request.duration
        if request.break_glass:
            data["break_glass"] = True
    if request.reason:
        data["reason"] = request.reason
    if request.approved_until is not None:
        data["approved_until"] = request.approved_until
    data.update(extra)
    return data


def _expire(request: ApprovalRequest, *, now: float, changed: list[bool]) -> ApprovalRequest | None:
    after = transitions.expire(request, now)
    changed.append(after is not None)
    return after


class ApprovalService:
    def __init__(
        self,
        store: AccessStore,
        config: ApprovalsConfig,
        record: Callable[[AuditEvent], None],
        *,
        instance: str,
        notifiers: Notifiers | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self._record = record
        self.instance = instance
        self.notifiers = notifiers
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}
        self._posting: dict[str, asyncio.Task[None]] = {}  # request id -> its notification

    # the identity directory --------------------------------------------------------------

    def remember(self, identity: Identity) -> None:
        """Keep the directory (email -> identity and groups) current; at most once every
        ten minutes per identity and groups, in the background."""
        key = (identity.name, identity.groups)
        now = self.clock()
        if now - self._seen.get(key, 0.0) < 600:
            return
        self._seen[key] = now
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._later(lambda: self.store.saw(identity))

    # recording ---------------------------------------------------------------------------

    def _event(
        self,
        kind: EventKind,
        request: ApprovalRequest,
        actor: str,
        actor_kind: str | None,
        via: str,
        **extra: Any,
    ) -> None:
        try:
            self._record(
                AuditEvent(
                    kind,
                    session_id=request.session or "approvals",
                    identity=actor,
                    identity_kind=actor_kind,
                    target=request.connection,
                    source=via,
                    data=event_data(request, **extra),
                )
            )
        except OSError as exc:
            log.error("approval %s: cannot write the audit journal: %s", request.id, exc)

    def _later(self, work: Callable[[], None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # requests ----------------------------------------------------------------------------

    async def request(self, request: ApprovalRequest, *, source: str) -> ApprovalRequest:
        """Store a new request, record it, and notify approvers (in the background)."""
        request = replace(request, instance=self.instance)
        await asyncio.to_thread(self.store.add, request)
        self._event(
            EventKind.APPROVAL_REQUESTED, request, request.requester, request.requester_kind, source
        )
        if request.status is Status.PENDING:
            self._notify(request)
        elif request.break_glass:
            self._event(
                EventKind.APPROVAL_APPROVED,
                request,
                request.requester,
                request.requester_kind,
                source,
                break_glass=True,
                review="pending",
            )
        return request

    def _notify(self, request: ApprovalRequest) -> None:
        notifiers = self.notifiers
        if notifiers is None or not notifiers.any:
            return
        loop = asyncio.get_running_loop()

        def send() -> None:
            sent = notifiers.requested(request)
            if sent.slack_ref:
                try:
                    self.store.update(request.id, lambda r: replace(r, slack=sent.slack_ref))
                except (ApprovalError, OSError) as exc:
                    log.warning("approval %s: cannot keep its Slack message: %s", request.id, exc)
            loop.call_soon_threadsafe(
                lambda: self._event(
                    EventKind.APPROVAL_NOTIFIED,
                    request,
                    "dbward",
                    None,
                    "notifier",
                    channels=list(sent.channels),
                    failures=list(sent.failures),
                )
            )

        task = self._later(send)
        self._posting[request.id] = task
        task.add_done_callback(lambda _: self._posting.pop(request.id, None))

    def _decided(self, request: ApprovalRequest, event: EventKind) -> None:
        """Tell the channels the outcome, once the request's own message is out (a decision
        can come while Slack is still answering the post, here or on another process)."""
        notifiers = self.notifiers
        if notifiers is None or not notifiers.any:
            return
        current = request
        posting = self._posting.get(request.id)

        def send() -> None:
            stored = self.store.get(current.id) or current
            for _ in range(_REF_TRIES):
                if stored.slack or notifiers.slack is None:
                    break
                time.sleep(0.5)  # another process may still be posting it
                stored = self.store.get(current.id) or current
            notifiers.decided(current, event.value, stored.slack)

        async def after_post() -> None:
            if posting is not None:
                with suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(posting), _POST_WAIT)
            await asyncio.to_thread(send)

        task = asyncio.get_running_loop().create_task(after_post())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def statement_request(
        self,
        *,
        identity: Identity,
        connection: str,
        environment: str,
        rule: str,
        approver_groups: tuple[str, ...],
        quorum: int,
        reason_required: bool,
        expires: float | None,
        statement: str,
        shape: str,
        parameters: tuple[str, ...],
        fingerprint: str,
        risk: tuple[str, ...],
        message: str,
        session: str,
    ) -> ApprovalRequest:
        """The pending request for this exact statement: an existing one (the statement
        was run again while its request is open) or a new one."""
        existing = await asyncio.to_thread(self.store.open_for, fingerprint)
        if existing is not None and existing.expires > self.clock():
            return existing
        now = self.clock()
        request = ApprovalRequest(
            id=new_request_id(),
            kind=Kind.STATEMENT,
            status=Status.PENDING,
            requester=identity.name,
            requester_kind=identity.kind.value,
            connection=connection,
            environment=environment,
            created=now,
            expires=now + (expires or self.config.request_ttl),
            rule=rule,
            approver_groups=approver_groups,
            quorum=quorum,
            reason_required=reason_required,
            statement=statement,
            shape=shape,
            parameters=parameters,
            fingerprint=fingerprint,
            risk=risk,
            message=message,
            session=session,
        )
        return await self.request(request, source="proxy")

    async def access_request(
        self,
        *,
        identity: Identity,
        connection: str,
        environment: str,
        access: AccessConfig,
        role: str,
        duration: float,
        reason: str,
        break_glass: bool,
        source: str,
    ) -> ApprovalRequest:
        """Ask for a time-bound grant; a break-glass group's member gets it at once."""
        spec = access.roles.get(role)
        if spec is None:
            raise ApprovalError(
                f"connection {connection!r} has no access role {role!r} "
                f"(roles: {', '.join(sorted(access.roles))})"
            )
        if duration <= 0 or duration > spec.max_duration:
            raise ApprovalError(
                f"role {role!r} is granted for at most {spec.max_duration / 3600:g} h"
            )
        if spec.reason_required and not reason.strip():
            raise ApprovalError(f"role {role!r} needs a reason (--reason)")
        now = self.clock()
        status = Status.PENDING
        until: float | None = None
        if break_glass:
            if not set(identity.groups) & set(access.break_glass):
                raise ApprovalError(
                    f"{identity.name} is not in a break-glass group of {connection!r} "
                    f"({', '.join(access.break_glass) or 'none configured'})"
                )
            if not reason.strip():
                raise ApprovalError("break-glass access needs a reason (--reason)")
            status, until = Status.APPROVED, now + duration
        request = ApprovalRequest(
            id=new_request_id(),
            kind=Kind.ACCESS,
            status=status,
            requester=identity.name,
            requester_kind=identity.kind.value,
            connection=connection,
            environment=environment,
            created=now,
            expires=now + self.config.request_ttl,
            rule=f"access:{connection}:{role}",
            approver_groups=tuple(spec.approvers.group),
            quorum=spec.approvers.quorum,
            reason_required=False,  # the requester says why; approvers need not
            role=role,
            duration=duration,
            reason=reason.strip(),
            break_glass=break_glass,
            approved_until=until,
        )
        return await self.request(request, source=source)

    # votes and outcomes ------------------------------------------------------------------

    async def vote(
        self,
        request_id: str,
        approver: Approver,
        *,
        approve: bool,
        approver_kind: str | None = None,
        reason: str = "",
        window: float | None = None,
        via: str = "api",
    ) -> ApprovalRequest:
        now = self.clock()

        def change(request: ApprovalRequest) -> ApprovalRequest:
            if approve:
                return transitions.approve(
                    request,
                    approver,
                    now,
                    reason=reason,
                    window=window,
                    max_window=self.config.max_window,
                    via=via,
                )
            return transitions.reject(request, approver, now, reason=reason, via=via)

        request = await asyncio.to_thread(self.store.update, request_id, change)
        kind = EventKind.APPROVAL_APPROVED if approve else EventKind.APPROVAL_REJECTED
        extra: dict[str, Any] = {"vote": "approve" if approve else "reject", "channel": via}
        if reason:
            extra["vote_reason"] = reason
        if window is not None:
            extra["window_s"] = window
        if approve and request.status is Status.PENDING:
            extra["remaining"] = request.quorum - len(request.approvals)
        self._event(kind, request, approver.name, approver_kind, via, **extra)
        if request.status is not Status.PENDING:
            self._decided(request, kind)
        return request

    async def usable(self, fingerprint: str) -> ApprovalRequest | None:
        return await asyncio.to_thread(self.store.usable, fingerprint, self.clock())

    async def executed(self, request: ApprovalRequest, session: str) -> ApprovalRequest | None:
        """Use an approval for one execution; None if it can no longer be used."""
        now = self.clock()
        try:
            used = await asyncio.to_thread(
                self.store.update, request.id, lambda r: transitions.executed(r, now)
            )
        except ApprovalError:
            return None
        self._event(
            EventKind.APPROVAL_EXECUTED,
            replace(used, session=session),
            used.requester,
            used.requester_kind,
            "proxy",
            executions=used.executions,
        )
        return used

    async def revoke(self, request_id: str, by: Approver, by_kind: str | None) -> ApprovalRequest:
        now = self.clock()
        request = await asyncio.to_thread(
            self.store.update, request_id, lambda r: transitions.revoke(r, by, now)
        )
        self._event(EventKind.APPROVAL_REVOKED, request, by.name, by_kind, "api")
        return request

    async def review(self, request_id: str, by: Approver, by_kind: str | None) -> ApprovalRequest:
        request = await asyncio.to_thread(
            self.store.update, request_id, lambda r: transitions.review(r, by)
        )
        self._event(EventKind.APPROVAL_REVIEWED, request, by.name, by_kind, "api")
        return request

    async def sweep(self) -> list[ApprovalRequest]:
        """Expire what is due; each expiry is recorded once (by whoever gets there first)."""
        now = self.clock()
        expired: list[ApprovalRequest] = []
        for due in await asyncio.to_thread(self.store.due, now):
            changed: list[bool] = []
            try:
                after = await asyncio.to_thread(
                    self.store.update, due.id, partial(_expire, now=now, changed=changed)
                )
            except ApprovalError:
                continue
            if changed and changed[-1]:  # this process expired it: it records the event
                self._event(EventKind.APPROVAL_EXPIRED, after, "dbward", None, "sweeper")
                self._decided(after, EventKind.APPROVAL_EXPIRED)
                expired.append(after)
        return expired

    async def watch(self, interval: float = 5.0) -> None:
        """Expire due requests every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("approvals: the expiry sweep failed; trying again")
            await asyncio.sleep(interval)
