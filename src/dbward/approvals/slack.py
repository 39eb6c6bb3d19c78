"""Slack: the Block Kit message approvers see, and the checks on what Slack sends back.

dbward posts each request with ``chat.postMessage`` (Approve and Reject
buttons whose value is the request id), updates it with ``chat.update`` once
decided, and takes button presses at its interaction endpoint. A press is
believed only when its ``X-Slack-Signature`` verifies under the app's signing
secret and its timestamp is recent; the Slack user is then looked up
(``users.info``) and mapped by email to a dbward identity.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from dbward.approvals.requests import ApprovalRequest, Kind, Status
from dbward.errors import DbwardError

MAX_AGE = 300  # seconds: older requests may be replays
APPROVE = "dbward_approve"
REJECT = "dbward_reject"
_SHOWN = 2500  # characters of a statement in a message (Slack's section limit is 3000)


class SlackError(DbwardError):
    """Slack's API refused a call, or an interaction could not be believed."""


def check_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None
) -> None:
    """Raise SlackError unless ``body`` was signed by Slack with ``secret`` just now:
    ``v0=`` and the hex HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    if not timestamp or not signature:
        raise SlackError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SlackError("X-Slack-Request-Timestamp is not a number of seconds") from None
    now = time.time() if now is None else now
    if abs(now - sent) > MAX_AGE:
        raise SlackError(
            f"the request was signed {abs(now - sent):.0f} s from now (more than {MAX_AGE} s): "
            "refused as a possible replay"
        )
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SlackError("X-Slack-Signature does not verify under the signing secret")


@dataclass(frozen=True, slots=True)
class Interaction:
    """A button press: who pressed which button on which request."""

    user_id: str
    action: str  # APPROVE or REJECT
    request_id: str
    channel: str
    ts: str
    response_url: str


def parse_interaction(body: bytes) -> Interaction:
    """The button press in a ``block_actions`` payload (form field ``payload``)."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        action = payload["actions"][0]
        return Interaction(
            user_id=payload["user"]["id"],
            action=action["action_id"],
            request_id=action["value"],
            channel=(payload.get("channel") or {}).get("id", ""),
            ts=(payload.get("message") or {}).get("ts", ""),
            response_url=payload.get("response_url", ""),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise SlackError("not a Slack block_actions payload with a button press") from None


def escape(text: str) -> str:
    """Text from a requester, shown as itself: no mentions, links or markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{label}*\n{value}", 1900)}


def _code(text: str, limit: int) -> str:
    inner = escape(text.replace("```", "` ` `"))
    return "```" + _cut(inner, limit - 6) + "```"


def blocks(request: ApprovalRequest, console_url: str | None = None) -> list[dict[str, Any]]:
    """The message for ``request``: what, who, where, risk; buttons while it is pending."""
    if request.kind is Kind.STATEMENT:
        title = f"Statement held for approval on {request.connection}"
        shown = ""
        if request.parameters:
            values = ", ".join("`" + escape(p.replace("`", "'")) + "`" for p in request.parameters)
            shown = "\nParameters: " + _cut(values, 700)
        body = _code(request.statement, _SHOWN - len(shown)) + shown
    else:
        title = f"Access requested to {request.connection}"
        hours = request.duration / 3600
        body = f"Role *{escape(request.role)}* for {hours:g} h"
    fields = [
        _field("Identity", escape(f"{request.requester} ({request.requester_kind})")),
        _field("Connection", escape(f"{request.connection} ({request.environment})")),
        _field("Risk", escape(", ".join(request.risk) or request.rule)),
        _field("Needs", escape(f"{request.quorum} of {', '.join(request.approver_groups)}")),
    ]
    result: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        {"type": "section", "fields": fields},
    ]
    notes = [f"Request `{request.id}`", f"rule {escape(request.rule)}"]
    if request.reason:
        notes.append(f"reason: {escape(_cut(request.reason, 300))}")
    if console_url:
        notes.append(f"<{console_url.rstrip('/')}/approvals/{request.id}|open in dbward>")
    result.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(notes)}]})
    if request.status is Status.PENDING:
        result.append(
            {
                "type": "actions",
                "block_id": "dbward_decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": request.id,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "value": request.id,
                    },
                ],
            }
        )
    else:
        result.append({"type": "section", "text": {"type": "mrkdwn", "text": outcome(request)}})
    return result


def outcome(request: ApprovalRequest) -> str:
    if request.status is Status.REJECTED and request.rejection is not None:
        vote = request.rejection
        why = f": {escape(_cut(vote.reason, 500))}" if vote.reason else ""
        return f":no_entry: Rejected by {escape(vote.approver)}{why}"
    if request.status in (Status.APPROVED, Status.EXECUTED):
        names = escape(", ".join(v.approver for v in request.approvals))
        return f":white_check_mark: Approved by {names}"
    return f"Request is {request.status.value}"


class SlackClient:
    """The three Web API methods dbward calls, through slack_sdk."""

    def __init__(self, token: str, api_url: str, timeout: float) -> None:
        self._client = WebClient(
            token=token, base_url=api_url.rstrip("/") + "/", timeout=int(max(1, timeout))
        )

    def post(self, channel: str, request: ApprovalRequest, console_url: str | None) -> str:
        """Post the request; returns ``channel:ts`` of the message."""
        try:
            answer = self._client.chat_postMessage(
                channel=channel,
                text=f"dbward approval request {request.id} from {request.requester}",
                blocks=blocks(request, console_url),
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise SlackError(f"Slack refused chat.postMessage: {error}") from None
        return f"{answer['channel']}:{answer['ts']}"

    def update(self, ref: str, request: ApprovalRequest, console_url: str | None) -> None:
        channel, _, ts = ref.partition(":")
        try:
            self._client.chat_update(
                channel=channel,
                ts=ts,
                text=f"dbward approval request {request.id}: {request.status.value}",
                blocks=blocks(request, console_url),
            )
        except SlackApiError as exc:
            raise SlackError(f"Slack refused chat.update: {exc.response.get('error')}") from None

    def email_of(self, user_id: str) -> str:
        try:
            answer = self._client.users_info(user=user_id)
        except SlackApiError as exc:
            raise SlackError(f"Slack refused users.info: {exc.response.get('error')}") from None
        email = ((answer.get("user") or {}).get("profile") or {}).get("email")
        if not isinstance(email, str) or not email:
            raise SlackError(
                f"Slack user {user_id} has no email address visible to dbward "
                "(the app needs the users:read.email scope)"
            )
        return email
