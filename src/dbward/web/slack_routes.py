"""``/api/v1/slack/interactions``: Approve and Reject buttons pressed in Slack.

No bearer token here: the request is believed only if Slack's signature over
its body verifies under the app's signing secret and its timestamp is recent.
The Slack user is mapped by email to the dbward identity that last signed in
with that address, whose groups then decide whether the vote counts.
"""

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from dbward.approvals.requests import ApprovalError, Approver
from dbward.approvals.service import ApprovalService
from dbward.approvals.slack import APPROVE, REJECT, SlackError, check_signature, parse_interaction

log = logging.getLogger(__name__)


def slack_router(service: ApprovalService) -> APIRouter:
    router = APIRouter(tags=["slack"])

    @router.post(
        "/slack/interactions",
        summary="Slack interactivity request URL (signed by Slack, not by a bearer token)",
    )
    async def interactions(request: Request) -> dict[str, Any]:
        notifiers = service.notifiers
        if notifiers is None or notifiers.slack is None or notifiers.slack_signing_secret is None:
            raise HTTPException(404, "Slack is not configured (approvals.slack)")
        body = await request.body()
        try:
            check_signature(
                notifiers.slack_signing_secret,
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
            )
        except SlackError as exc:
            log.warning("Slack interaction refused: %s", exc.message)
            raise HTTPException(401, exc.message) from None
        try:
            pressed = parse_interaction(body)
            if pressed.action not in (APPROVE, REJECT):
                raise SlackError(f"unknown action {pressed.action!r}")
        except SlackError as exc:
            raise HTTPException(400, exc.message) from None
        try:
            email = await asyncio.to_thread(notifiers.slack.email_of, pressed.user_id)
        except (SlackError, OSError) as exc:
            return _ephemeral(f"dbward cannot tell who you are: {exc}")
        entry = await asyncio.to_thread(service.store.by_email, email)
        if entry is None:
            return _ephemeral(
                f"dbward knows no identity with the email {email}: sign in once through "
                "dbward (dbward login) so your groups are known"
            )
        approver = Approver(entry.name, entry.groups)
        try:
            done = await service.vote(
                pressed.request_id,
                approver,
                approve=pressed.action == APPROVE,
                approver_kind=entry.kind,
                via="slack",
            )
        except ApprovalError as exc:
            return _ephemeral(f"Not counted: {exc.message}")
        verb = "approved" if pressed.action == APPROVE else "rejected"
        return _ephemeral(f"You {verb} {done.id} as {entry.name}; it is now {done.status.value}.")

    return router


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}
