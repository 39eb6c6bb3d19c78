"""A statement held for approval inside its live session: ask, wait, and decide.

The session stops reading from the client and sends nothing upstream while
the approvers are asked; this module works out what stands for the statement
afterwards: an allow (it runs, and its results reach the same client) or a
refusal that says who rejected it and why, or that no one answered in time
and the identical statement may be run again once approved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dbward.approvals.requests import ApprovalRequest, Status, fingerprint
from dbward.approvals.service import ApprovalService
from dbward.codec.pg.backend import NoticeResponse
from dbward.identity.models import Identity
from dbward.metrics import APPROVAL_LATENCY
from dbward.policy.decide import Decision, Subject
from dbward.policy.model import Action
from dbward.proxy.approval_watch import ApprovalWatcher
from dbward.sql.facts import Analysis


@dataclass(frozen=True, slots=True)
class HeldStatement:
    text: str
    shape: str  # as the audit keeps it
    parameters: bytes  # a Bind's values (part of what makes a re-run identical)
    shown: tuple[str, ...]  # the values as approvers see them
    analysis: Analysis | None
    decision: Decision


def _risk(held: HeldStatement) -> tuple[str, ...]:
    risks: list[str] = []
    if held.analysis is not None:
        for facts in held.analysis.statements:
            risks.extend(sorted(risk.value for risk in facts.risks))
            if facts.command and facts.command not in risks:
                risks.insert(0, facts.command)
    return tuple(dict.fromkeys(risks))


def approved(decision: Decision, request: ApprovalRequest) -> Decision:
    return replace(decision, action=Action.ALLOW, message="", hint="", approval=request.id)


def refused(
    decision: Decision, request: ApprovalRequest | None, message: str, hint: str
) -> Decision:
    """The statement did not get its approval: it stays a ``review`` decision (so the trail
    counts it as held), with what happened as its message."""
    return replace(
        decision,
        message=message,
        hint=hint,
        approval=request.id if request is not None else None,
    )


def _waiting_notice(request: ApprovalRequest, wait: float) -> bytes:
    groups = ", ".join(request.approver_groups)
    return NoticeResponse.build(
        "NOTICE",
        "00000",
        f"dbward: this statement is held for approval (request {request.id}); waiting up to "
        f"{wait:g} s for {request.quorum} approver(s) from {groups}",
        hint=f"approvers: dbward approvals approve {request.id}",
    ).encode()


def _outcome(decision: Decision, request: ApprovalRequest, wait: float) -> Decision:
    if request.status is Status.REJECTED:
        vote = request.rejection
        who = vote.approver if vote is not None else "an approver"
        why = f": {vote.reason}" if vote is not None and vote.reason else " (no reason given)"
        return refused(
            decision,
            request,
            f"approval request {request.id} was rejected by {who}{why}",
            "the statement did not run",
        )
    if request.status is Status.EXPIRED:
        return refused(
            decision,
            request,
            f"approval request {request.id} expired before enough approvers answered",
            "run the statement again to ask for approval again",
        )
    return refused(
        decision,
        request,
        f"approval request {request.id} is {request.status.value}; the statement did not run",
        "run the statement again to ask for approval again",
    )


async def decide_held(
    service: ApprovalService,
    watcher: ApprovalWatcher,
    held: HeldStatement,
    *,
    identity: Identity,
    subject: Subject,
    session: str,
    wait: float,
    tell_client: Callable[[bytes], None] | None,
) -> Decision:
    """What stands for ``held`` once approvers have answered, or ``wait`` has passed."""
    decision = held.decision
    key = fingerprint(subject.connection, identity.name, held.text, held.parameters)
    ready = await service.usable(key)
    if ready is not None:  # approved earlier (a re-run after a timeout, or a time window)
        used = await service.executed(ready, session)
        if used is not None:
            return approved(decision, used)
    request = await service.statement_request(
        identity=identity,
        connection=subject.connection,
        environment=subject.environment,
        rule=decision.rule,
        approver_groups=decision.approver_groups,
        quorum=decision.quorum,
        reason_required=decision.reason_required,
        expires=decision.expires,
        statement=held.text,
        shape=held.shape,
        parameters=held.shown,
        fingerprint=key,
        risk=_risk(held),
        message=decision.message,
        session=session,
    )
    if tell_client is not None:  # PostgreSQL: a NOTICE with the request id
        tell_client(_waiting_notice(request, wait))
    answered = await watcher.wait(request.id, wait)
    if answered is not None:
        APPROVAL_LATENCY.observe(max(0.0, time.time() - request.created))
    if answered is None:
        return refused(
            decision,
            request,
            f"statement held for approval as request {request.id}; no decision within "
            f"{wait:g} s, so it did not run",
            "once it is approved, run the identical statement again: it will run at once "
            f"(approvers: dbward approvals approve {request.id})",
        )
    if answered.status is Status.APPROVED:
        used = await service.executed(answered, session)
        if used is not None:
            return approved(decision, used)
        return refused(
            decision,
            answered,
            f"approval request {answered.id} was approved but is already used",
            "run the statement again to ask for approval again",
        )
    return _outcome(decision, answered, wait)
