"""Approval requests as an explicit state machine. Pure: no I/O, no clock of its own.

A request is made when policy says ``review`` for a statement, or when someone
asks for just-in-time access to a connection. Approvers vote; a request is

- ``pending`` until a quorum of distinct approvers from the approver groups
  approves it (``approved``), one of them rejects it (``rejected``), or it is
  not answered before it ``expires`` (``expired``);
- an approved statement runs once (``executed``), or any number of times until
  the end of the time window its approvers gave (then ``expired``);
- an approved access request is a grant until ``approved_until``; it can be
  ``revoked`` before that.

Every transition is a function from one frozen request to the next, refusing
what the rules do not allow with an :class:`ApprovalError` that says why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from dbward.errors import DbwardError


class ApprovalError(DbwardError):
    """A vote or transition the rules do not allow; the message says which rule."""

    sqlstate = "42501"


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    REVOKED = "revoked"

    @property
    def open(self) -> bool:
        return self in (Status.PENDING, Status.APPROVED)


class Kind(StrEnum):
    STATEMENT = "statement"
    ACCESS = "access"


@dataclass(frozen=True, slots=True)
class Vote:
    approver: str
    approve: bool
    at: float
    reason: str = ""
    window: float | None = None  # seconds the approval may be used again (statements)
    via: str = "api"  # api, cli, slack

    def as_dict(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "approve": self.approve,
            "at": self.at,
            "reason": self.reason,
            "window": self.window,
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class Approver:
    """Who votes: a verified identity's name and groups."""

    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    id: str
    kind: Kind
    status: Status
    requester: str
    requester_kind: str
    connection: str
    environment: str
    created: float
    expires: float  # the request's own deadline for a decision
    rule: str
    approver_groups: tuple[str, ...]
    quorum: int
    reason_required: bool = False
    statement: str = ""  # the text as typed (approvers must see what runs)
    parameters: tuple[str, ...] = ()  # bound values, as shown to approvers
    fingerprint: str = ""  # what "the identical statement" means
    risk: tuple[str, ...] = ()
    message: str = ""  # why policy asked for approval
    role: str = ""  # access requests: the role asked for
    duration: float = 0.0  # access requests: seconds asked for
    reason: str = ""  # the requester's reason
    break_glass: bool = False
    reviewed_by: str = ""  # break-glass: who reviewed it afterwards
    votes: tuple[Vote, ...] = ()
    approved_until: float | None = None  # window (statements) or grant end (access)
    executions: int = 0
    session: str = ""  # the session that holds (or held) the statement
    instance: str = ""  # the dbward process that made the request
    shape: str = ""  # the statement as the audit trail keeps it (literals as placeholders)
    slack: str = ""  # channel:ts of the Slack message, to update it once decided

    # reading -----------------------------------------------------------------------------

    @property
    def approvals(self) -> tuple[Vote, ...]:
        return tuple(v for v in self.votes if v.approve)

    @property
    def rejection(self) -> Vote | None:
        return next((v for v in self.votes if not v.approve), None)

    def usable(self, now: float) -> bool:
        """Whether an approved statement may run now (or an access grant is in force)."""
        if self.status is not Status.APPROVED:
            return False
        return self.approved_until is None or now < self.approved_until

    def may_approve(self, approver: Approver) -> str | None:
        """Why ``approver`` may not vote on this request, or None if they may."""
        if approver.name.casefold() == self.requester.casefold():
            return "no one may approve their own request"
        if not set(approver.groups) & set(self.approver_groups):
            return (
                f"{approver.name} is not in an approver group of this request "
                f"({', '.join(self.approver_groups)})"
            )
        if any(v.approver.casefold() == approver.name.casefold() for v in self.votes):
            return f"{approver.name} has already voted on this request"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "status": self.status.value,
            "requester": self.requester,
            "requester_kind": self.requester_kind,
            "connection": self.connection,
            "environment": self.environment,
            "created": self.created,
            "expires": self.expires,
            "rule": self.rule,
            "approver_groups": list(self.approver_groups),
            "quorum": self.quorum,
            "reason_required": self.reason_required,
            "statement": self.statement,
            "parameters": list(self.parameters),
            "fingerprint": self.fingerprint,
            "risk": list(self.risk),
            "message": self.message,
            "role": self.role,
            "duration": self.duration,
            "reason": self.reason,
            "break_glass": self.break_glass,
            "reviewed_by": self.reviewed_by,
            "votes": [v.as_dict() for v in self.votes],
            "approved_until": self.approved_until,
            "executions": self.executions,
            "session": self.session,
            "instance": self.instance,
            "shape": self.shape,
            "slack": self.slack,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ApprovalRequest:
        fields = dict(data)
        fields["kind"] = Kind(fields["kind"])
        fields["status"] = Status(fields["status"])
        fields["approver_groups"] = tuple(fields.get("approver_groups", ()))
        fields["parameters"] = tuple(fields.get("parameters", ()))
        fields["risk"] = tuple(fields.get("risk", ()))
        fields["votes"] = tuple(Vote(**v) for v in fields.get("votes", ()))
        return ApprovalRequest(**fields)


def fingerprint(connection: str, requester: str, text: str, parameters: bytes = b"") -> str:
    """What makes two statements identical for an approval: who, where, the exact text,
    and the bound values."""
    digest = hashlib.sha256()
    for part in (connection.encode(), requester.casefold().encode(), text.encode(), parameters):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


# transitions ------------------------------------------------------------------------------


def _checked_vote(
    request: ApprovalRequest, approver: Approver, now: float, reason: str, with_what: str
) -> str:
    """Refuse a vote the rules do not allow; the vote's reason, stripped."""
    if request.status is not Status.PENDING:
        raise ApprovalError(f"request {request.id} is {request.status.value}, not pending")
    if now >= request.expires:
        raise ApprovalError(f"request {request.id} expired; ask the requester to run it again")
    refusal = request.may_approve(approver)
    if refusal is not None:
        raise ApprovalError(refusal)
    reason = reason.strip()
    if request.reason_required and not reason:
        raise ApprovalError(f"request {request.id} needs a reason with {with_what}")
    return reason


def approve(
    request: ApprovalRequest,
    approver: Approver,
    now: float,
    *,
    reason: str = "",
    window: float | None = None,
    max_window: float,
    via: str = "api",
) -> ApprovalRequest:
    """``request`` with ``approver``'s approval; approved once the quorum is reached."""
    reason = _checked_vote(request, approver, now, reason, "each approval")
    if window is not None:
        if request.kind is Kind.ACCESS:
            raise ApprovalError("a time window applies to statements; a grant has its duration")
        if not 0 < window <= max_window:
            raise ApprovalError(f"the window must be between 0 and {max_window:g} seconds")
    vote = Vote(approver.name, True, now, reason, window, via)
    votes = (*request.votes, vote)
    if sum(1 for v in votes if v.approve) < request.quorum:
        return replace(request, votes=votes)
    until: float | None = None
    if request.kind is Kind.ACCESS:
        until = now + request.duration
    else:
        windows = [v.window for v in votes if v.approve]
        # The narrowest window any approver gave; none at all means one execution.
        if all(w is not None for w in windows):
            until = now + min(w for w in windows if w is not None)
    return replace(request, votes=votes, status=Status.APPROVED, approved_until=until)


def reject(
    request: ApprovalRequest, approver: Approver, now: float, *, reason: str = "", via: str = "api"
) -> ApprovalRequest:
    reason = _checked_vote(request, approver, now, reason, "a rejection")
    vote = Vote(approver.name, False, now, reason, None, via)
    return replace(request, votes=(*request.votes, vote), status=Status.REJECTED)


def executed(request: ApprovalRequest, now: float) -> ApprovalRequest:
    """An approved statement ran: a one-time approval is used up."""
    if not request.usable(now):
        raise ApprovalError(f"request {request.id} is not approved for use now")
    count = request.executions + 1
    if request.approved_until is None:
        return replace(request, executions=count, status=Status.EXECUTED)
    return replace(request, executions=count)


def expire(request: ApprovalRequest, now: float) -> ApprovalRequest | None:
    """``request`` expired at ``now``, or None if it is still in force."""
    if request.status is Status.PENDING and now >= request.expires:
        return replace(request, status=Status.EXPIRED)
    if (
        request.status is Status.APPROVED
        and request.approved_until is not None
        and now >= request.approved_until
    ):
        return replace(request, status=Status.EXPIRED)
    return None


def revoke(request: ApprovalRequest, by: Approver, now: float) -> ApprovalRequest:
    if request.status not in (Status.PENDING, Status.APPROVED):
        raise ApprovalError(f"request {request.id} is {request.status.value}; nothing to revoke")
    vote = Vote(by.name, False, now, "revoked", None, "api")
    return replace(request, status=Status.REVOKED, votes=(*request.votes, vote))


def review(request: ApprovalRequest, by: Approver) -> ApprovalRequest:
    """A break-glass grant was looked at afterwards by an approver."""
    if not request.break_glass:
        raise ApprovalError(f"request {request.id} is not a break-glass grant")
    if request.reviewed_by:
        raise ApprovalError(f"request {request.id} was reviewed by {request.reviewed_by}")
    if by.name.casefold() == request.requester.casefold():
        raise ApprovalError("no one may review their own break-glass access")
    if not set(by.groups) & set(request.approver_groups):
        raise ApprovalError(
            f"{by.name} is not in an approver group ({', '.join(request.approver_groups)})"
        )
    return replace(request, reviewed_by=by.name)
