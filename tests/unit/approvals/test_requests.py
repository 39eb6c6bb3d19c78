"""The approval request state machine (dbward.approvals.requests): pure transitions, table
driven. Every refusal is an ApprovalError whose message names the rule that refused."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from dbward.approvals.requests import (
    ApprovalError,
    ApprovalRequest,
    Approver,
    Kind,
    Status,
    Vote,
    approve,
    executed,
    expire,
    fingerprint,
    reject,
    review,
    revoke,
)

T0 = 1_000_000.0
MAX_WINDOW = 3600.0

ALICE = Approver("alice", ("dev",))
BOB = Approver("bob", ("dba",))
CAROL = Approver("carol", ("dba", "security"))
DAVE = Approver("dave", ("sales",))
SECURITY = Approver("sam", ("security",))


def statement(**changes: Any) -> ApprovalRequest:
    """A pending statement request by alice that one dba approves."""
    base = ApprovalRequest(
        id="apr_000000000001",
        kind=Kind.STATEMENT,
        status=Status.PENDING,
        requester="alice",
        requester_kind="human",
        connection="app",
        environment="production",
        created=T0,
        expires=T0 + 600,
        rule="deletes-need-approval",
        approver_groups=("dba",),
        quorum=1,
        statement="DELETE FROM t WHERE id = $1",
        parameters=("5",),
        fingerprint=fingerprint("app", "alice", "DELETE FROM t WHERE id = $1", b"5"),
        risk=("DELETE",),
        message="approval required",
        session="s1",
        shape="DELETE FROM t WHERE id = $1",
    )
    return replace(base, **changes)


def access(**changes: Any) -> ApprovalRequest:
    """A pending access request by alice for role ``write`` during one hour."""
    base = statement(
        kind=Kind.ACCESS,
        rule="access:app:write",
        statement="",
        parameters=(),
        fingerprint="",
        risk=(),
        role="write",
        duration=3600.0,
        reason="incident 42",
    )
    return replace(base, **changes)


def vote(request: ApprovalRequest, who: Approver, at: float = T0 + 1, **kw: Any) -> ApprovalRequest:
    return approve(request, who, at, max_window=MAX_WINDOW, **kw)


def refused(match: str) -> Any:
    return pytest.raises(ApprovalError, match=match)


# quorum ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quorum", "voters", "status"),
    [
        (1, [BOB], Status.APPROVED),
        (2, [BOB], Status.PENDING),
        (2, [BOB, CAROL], Status.APPROVED),
        (3, [BOB, CAROL], Status.PENDING),
        (3, [BOB, CAROL, SECURITY], Status.APPROVED),
    ],
)
def test_quorum_counts_distinct_approvals(
    quorum: int, voters: list[Approver], status: Status
) -> None:
    request = statement(quorum=quorum, approver_groups=("dba", "security"))
    for i, who in enumerate(voters):
        request = vote(request, who, T0 + 1 + i)
    assert request.status is status
    assert [v.approver for v in request.approvals] == [v.name for v in voters]
    assert request.rejection is None
    assert request.approved_until is None  # no window: one execution


def test_a_vote_records_who_when_why_and_how() -> None:
    after = vote(statement(), BOB, T0 + 7, reason="  looks fine  ", via="cli")
    assert after.votes == (Vote("bob", True, T0 + 7, "looks fine", None, "cli"),)


def test_transitions_return_new_requests() -> None:
    before = statement()
    after = vote(before, BOB)
    assert before.status is Status.PENDING
    assert before.votes == ()
    assert after is not before


# who may vote --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "voter", "match"),
    [
        (statement(), Approver("alice", ("dba",)), "no one may approve their own request"),
        (statement(), Approver("ALICE", ("dba",)), "no one may approve their own request"),
        (
            statement(requester="Alice@Example.com"),
            Approver("alice@example.COM", ("dba",)),
            "no one may approve their own request",
        ),
        (statement(), DAVE, r"dave is not in an approver group of this request \(dba\)"),
        (statement(), Approver("erin", ()), "erin is not in an approver group"),
        (
            statement(quorum=2, votes=(Vote("bob", True, T0),)),
            BOB,
            "bob has already voted on this request",
        ),
        (
            statement(quorum=2, votes=(Vote("bob", True, T0),)),
            Approver("BOB", ("dba",)),
            "BOB has already voted on this request",
        ),
    ],
    ids=[
        "self",
        "self-other-case",
        "self-email-case",
        "not-in-group",
        "no-groups",
        "duplicate",
        "duplicate-other-case",
    ],
)
def test_who_may_not_vote(request_: ApprovalRequest, voter: Approver, match: str) -> None:
    assert request_.may_approve(voter) is not None
    with refused(match):
        vote(request_, voter)
    with refused(match):
        reject(request_, voter, T0 + 1, reason="no")


def test_a_duplicate_vote_does_not_count_twice_toward_the_quorum() -> None:
    once = vote(statement(quorum=2), BOB)
    with refused("already voted"):
        vote(once, BOB, T0 + 2)
    assert once.status is Status.PENDING
    assert len(once.approvals) == 1


def test_self_approval_is_refused_even_with_quorum_from_others() -> None:
    # alice is a dba too: her vote never counts on her own request
    request = statement(quorum=2)
    request = vote(request, BOB)
    with refused("own request"):
        vote(request, Approver("alice", ("dba",)), T0 + 2)
    assert vote(request, CAROL, T0 + 3).status is Status.APPROVED


def test_any_one_of_several_approver_groups_may_vote() -> None:
    request = statement(approver_groups=("dba", "security"))
    assert vote(request, SECURITY).status is Status.APPROVED


# reasons -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_reason_required_refuses_a_vote_without_one(reason: str) -> None:
    request = statement(reason_required=True)
    with refused("needs a reason with each approval"):
        vote(request, BOB, reason=reason)
    with refused("needs a reason with a rejection"):
        reject(request, BOB, T0 + 1, reason=reason)


def test_reason_required_accepts_a_vote_with_one() -> None:
    request = statement(reason_required=True)
    assert vote(request, BOB, reason="ticket 7").votes[0].reason == "ticket 7"
    rejected = reject(request, BOB, T0 + 1, reason="not now")
    assert rejected.status is Status.REJECTED
    assert rejected.rejection == Vote("bob", False, T0 + 1, "not now", None, "api")


def test_without_reason_required_an_empty_reason_is_fine() -> None:
    assert vote(statement(), BOB).status is Status.APPROVED
    assert reject(statement(), BOB, T0 + 1).status is Status.REJECTED


# rejection -----------------------------------------------------------------------------------


def test_one_rejection_decides_even_after_approvals() -> None:
    request = vote(statement(quorum=2), BOB)
    after = reject(request, CAROL, T0 + 2, reason="no", via="slack")
    assert after.status is Status.REJECTED
    assert after.rejection is not None
    assert after.rejection.approver == "carol"
    assert after.rejection.via == "slack"
    assert [v.approver for v in after.approvals] == ["bob"]


@pytest.mark.parametrize(
    "status", [Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.EXECUTED, Status.REVOKED]
)
def test_only_a_pending_request_takes_votes(status: Status) -> None:
    request = statement(status=status)
    with refused(f"is {status.value}, not pending"):
        vote(request, BOB)
    with refused(f"is {status.value}, not pending"):
        reject(request, BOB, T0 + 1)


@pytest.mark.parametrize("at", [T0 + 600, T0 + 601])
def test_no_vote_after_the_request_deadline(at: float) -> None:
    with refused("expired; ask the requester to run it again"):
        vote(statement(), BOB, at)
    with refused("expired"):
        reject(statement(), BOB, at)


def test_a_vote_just_before_the_deadline_counts() -> None:
    assert vote(statement(), BOB, T0 + 599.999).status is Status.APPROVED


# windows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "ok"),
    [
        (None, True),
        (0.001, True),
        (60.0, True),
        (MAX_WINDOW, True),
        (MAX_WINDOW + 0.001, False),
        (0.0, False),
        (-5.0, False),
        (float("nan"), False),
        (float("inf"), False),
    ],
)
def test_window_bounds(window: float | None, ok: bool) -> None:
    if ok:
        after = vote(statement(), BOB, window=window)
        expected = None if window is None else T0 + 1 + window
        assert after.approved_until == expected
        assert after.votes[0].window == window
    else:
        with refused(f"the window must be between 0 and {MAX_WINDOW:g} seconds"):
            vote(statement(), BOB, window=window)


def test_access_requests_refuse_windows() -> None:
    with refused("a time window applies to statements; a grant has its duration"):
        vote(access(), BOB, window=60.0)


def test_an_access_grant_runs_for_its_duration_from_approval() -> None:
    after = vote(access(duration=900.0), BOB, T0 + 10)
    assert after.status is Status.APPROVED
    assert after.approved_until == T0 + 10 + 900


@pytest.mark.parametrize(
    ("windows", "until"),
    [
        ((600.0, 60.0), T0 + 2 + 60.0),  # the narrowest window, from the deciding vote
        ((60.0, 600.0), T0 + 2 + 60.0),
        ((None, 60.0), None),  # one approver gave none: one execution
        ((60.0, None), None),
        ((None, None), None),
    ],
)
def test_the_narrowest_window_wins(windows: tuple[float | None, float | None], until: Any) -> None:
    request = statement(quorum=2)
    request = vote(request, BOB, T0 + 1, window=windows[0])
    assert request.status is Status.PENDING
    assert request.approved_until is None
    request = vote(request, CAROL, T0 + 2, window=windows[1])
    assert request.status is Status.APPROVED
    assert request.approved_until == until


# executions ----------------------------------------------------------------------------------


def test_a_one_time_approval_is_used_up_by_its_execution() -> None:
    approved = vote(statement(), BOB)
    assert approved.usable(T0 + 2)
    ran = executed(approved, T0 + 2)
    assert ran.status is Status.EXECUTED
    assert ran.executions == 1
    assert not ran.usable(T0 + 3)
    with refused("is not approved for use now"):
        executed(ran, T0 + 3)


def test_a_window_approval_runs_repeatedly_until_the_window_ends() -> None:
    request = vote(statement(), BOB, T0 + 1, window=30.0)
    for n in range(1, 4):
        request = executed(request, T0 + 1 + n)
        assert request.status is Status.APPROVED
        assert request.executions == n
    assert request.usable(T0 + 30.999)
    assert not request.usable(T0 + 31)
    with refused("is not approved for use now"):
        executed(request, T0 + 31)


@pytest.mark.parametrize(
    "status", [Status.PENDING, Status.REJECTED, Status.EXPIRED, Status.EXECUTED, Status.REVOKED]
)
def test_only_an_approved_request_can_execute(status: Status) -> None:
    with refused("is not approved for use now"):
        executed(statement(status=status), T0 + 1)


# expiry --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "now", "expires"),
    [
        (statement(), T0 + 599, False),
        (statement(), T0 + 600, True),
        (statement(), T0 + 10_000, True),
        (statement(status=Status.APPROVED), T0 + 10_000, False),  # one-time: waits to run
        (statement(status=Status.APPROVED, approved_until=T0 + 50), T0 + 49, False),
        (statement(status=Status.APPROVED, approved_until=T0 + 50), T0 + 50, True),
        (access(status=Status.APPROVED, approved_until=T0 + 3600), T0 + 3600, True),
        (statement(status=Status.EXECUTED), T0 + 10_000, False),
        (statement(status=Status.REJECTED), T0 + 10_000, False),
        (statement(status=Status.REVOKED), T0 + 10_000, False),
        (statement(status=Status.EXPIRED), T0 + 10_000, False),
    ],
    ids=[
        "pending-before",
        "pending-at-deadline",
        "pending-after",
        "approved-once",
        "window-inside",
        "window-end",
        "grant-end",
        "executed",
        "rejected",
        "revoked",
        "expired",
    ],
)
def test_expire(request_: ApprovalRequest, now: float, expires: bool) -> None:
    after = expire(request_, now)
    if expires:
        assert after is not None
        assert after.status is Status.EXPIRED
        assert replace(after, status=request_.status) == request_  # nothing else changes
    else:
        assert after is None


# revocation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        statement(),
        statement(status=Status.APPROVED, approved_until=T0 + 60),
        access(status=Status.APPROVED, approved_until=T0 + 3600),
    ],
    ids=["pending", "approved-window", "grant"],
)
def test_revoke_ends_an_open_request(request_: ApprovalRequest) -> None:
    after = revoke(request_, CAROL, T0 + 5)
    assert after.status is Status.REVOKED
    assert after.votes[-1] == Vote("carol", False, T0 + 5, "revoked", None, "api")
    assert not after.usable(T0 + 6)


@pytest.mark.parametrize(
    "status", [Status.REJECTED, Status.EXPIRED, Status.EXECUTED, Status.REVOKED]
)
def test_revoke_refuses_a_closed_request(status: Status) -> None:
    with refused(f"is {status.value}; nothing to revoke"):
        revoke(statement(status=status), CAROL, T0 + 5)


def test_open_statuses() -> None:
    assert {s for s in Status if s.open} == {Status.PENDING, Status.APPROVED}


# break-glass review --------------------------------------------------------------------------


def glass(**changes: Any) -> ApprovalRequest:
    return access(status=Status.APPROVED, break_glass=True, approved_until=T0 + 3600, **changes)


@pytest.mark.parametrize(
    ("request_", "by", "match"),
    [
        (access(status=Status.APPROVED), BOB, "is not a break-glass grant"),
        (glass(reviewed_by="carol"), BOB, "was reviewed by carol"),
        (glass(), Approver("Alice", ("dba",)), "no one may review their own break-glass access"),
        (glass(), DAVE, r"dave is not in an approver group \(dba\)"),
    ],
    ids=["not-break-glass", "already-reviewed", "self", "not-in-group"],
)
def test_review_refusals(request_: ApprovalRequest, by: Approver, match: str) -> None:
    with refused(match):
        review(request_, by)


def test_review_marks_who_reviewed_and_nothing_else() -> None:
    before = glass()
    after = review(before, BOB)
    assert after.reviewed_by == "bob"
    assert after.status is Status.APPROVED
    assert replace(after, reviewed_by="") == before
    with refused("was reviewed by bob"):
        review(after, CAROL)


# fingerprints --------------------------------------------------------------------------------

BASE = ("app", "alice", "DELETE FROM t WHERE id = $1", b"\x00\x01\x00\x00\x00\x015")


@pytest.mark.parametrize(
    "other",
    [
        ("prod", *BASE[1:]),  # another connection
        ("app", "bob", *BASE[2:]),  # another identity
        ("app", "alice", "DELETE FROM t WHERE id = $2", BASE[3]),  # another text
        ("app", "alice", "DELETE FROM t WHERE id  = $1", BASE[3]),  # whitespace matters
        ("app", "alice", "delete from t where id = $1", BASE[3]),  # case matters
        (*BASE[:3], b"\x00\x01\x00\x00\x00\x016"),  # another value
        (*BASE[:3], b""),  # no parameters
    ],
    ids=["connection", "identity", "text", "whitespace", "case", "parameter", "no-parameters"],
)
def test_fingerprint_changes_with_each_part(other: tuple[str, str, str, bytes]) -> None:
    assert fingerprint(*other) != fingerprint(*BASE)


def test_fingerprint_is_stable_and_ignores_identity_case() -> None:
    assert fingerprint(*BASE) == fingerprint(*BASE)
    assert fingerprint("app", "ALICE", *BASE[2:]) == fingerprint(*BASE)
    assert len(fingerprint(*BASE)) == 64


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (("ab", "c", "x", b""), ("a", "bc", "x", b"")),
        (("a", "b", "cx", b""), ("a", "b", "c", b"x")),
        (("a", "", "b", b""), ("a", "b", "", b"")),
    ],
)
def test_fingerprint_parts_cannot_run_into_each_other(
    one: tuple[str, str, str, bytes], two: tuple[str, str, str, bytes]
) -> None:
    assert fingerprint(*one) != fingerprint(*two)


# serialisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        statement(),
        vote(statement(quorum=2), BOB, window=60.0, reason="ok", via="slack"),
        executed(vote(statement(), BOB, window=60.0), T0 + 2),
        reject(statement(), BOB, T0 + 1, reason="no"),
        glass(reviewed_by="bob", slack="C1:123.456", instance="lab-0"),
        access(reason_required=True, risk=("x",)),
    ],
    ids=["pending", "one-vote", "window-executed", "rejected", "break-glass", "access"],
)
def test_as_dict_from_dict_round_trip(request_: ApprovalRequest) -> None:
    data = request_.as_dict()
    assert ApprovalRequest.from_dict(data) == request_
    # and through JSON, as the store keeps it
    assert ApprovalRequest.from_dict(json.loads(json.dumps(data))) == request_


def test_as_dict_names_every_field() -> None:
    data = statement().as_dict()
    assert set(data) == set(ApprovalRequest.__slots__)
    assert data["kind"] == "statement"
    assert data["status"] == "pending"
    assert data["parameters"] == ["5"]
    assert set(Vote("b", True, 1.0).as_dict()) == set(Vote.__slots__)
