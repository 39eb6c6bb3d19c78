"""Slack's side of approvals without a dbward process: signatures, button presses, the
Block Kit message (checked against Block Kit's limits), the Web API client against a
local Slack, and the notifiers' failure reports."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest

from dbward.approvals.notify import Notifiers
from dbward.approvals.requests import ApprovalRequest, Kind, Status, Vote
from dbward.approvals.slack import (
    APPROVE,
    MAX_AGE,
    REJECT,
    SlackClient,
    SlackError,
    blocks,
    check_signature,
    parse_interaction,
)
from dbward.config import ApprovalsConfig, Secret, SlackNotifier, WebhookNotifier
from tests.slack_server import Message, SlackApi, User, block_actions, block_problems, signature

# Slack's own example of a signed request ("Verifying requests from Slack").
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
DOC_NOW = float(DOC_TIMESTAMP)

TOKEN = "xoxb-1111-2222-unit-tests"
CONSOLE = "https://dbward.example.test/"


def _statement(**changes: Any) -> ApprovalRequest:
    request = ApprovalRequest(
        id="apr_0123456789ab",
        kind=Kind.STATEMENT,
        status=Status.PENDING,
        requester="alice@example.com",
        requester_kind="human",
        connection="orders",
        environment="production",
        created=1_700_000_000.0,
        expires=1_700_003_600.0,
        rule="deletes-need-approval",
        approver_groups=("dba", "sre"),
        quorum=2,
        statement="DELETE FROM orders WHERE created < now() - interval '1 year'",
        parameters=(),
        fingerprint="f" * 64,
        risk=("DELETE", "no_where"),
    )
    return replace(request, **changes)


def _access(**changes: Any) -> ApprovalRequest:
    request = ApprovalRequest(
        id="apr_access000001",
        kind=Kind.ACCESS,
        status=Status.PENDING,
        requester="alice@example.com",
        requester_kind="human",
        connection="orders",
        environment="production",
        created=1_700_000_000.0,
        expires=1_700_003_600.0,
        rule="access:orders:readwrite",
        approver_groups=("dba",),
        quorum=1,
        role="readwrite",
        duration=7200.0,
        reason="incident 4711: fix the stuck orders",
    )
    return replace(request, **changes)


def _texts(message: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn text in a message (sections, fields, context)."""
    found: list[str] = []
    for block in message:
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(obj, dict) and obj.get("type") == "mrkdwn":
                found.append(obj["text"])
    return found


# ------------------------------------------------------------------------------------------
# check_signature
# ------------------------------------------------------------------------------------------


def test_slacks_documented_example_verifies() -> None:
    check_signature(DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE, now=DOC_NOW)


def test_the_test_slack_signs_like_slack() -> None:
    """The local Slack's signer reproduces the documented example (so the integration
    tests sign presses the way Slack does)."""
    assert signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE


@pytest.mark.parametrize("offset", [-MAX_AGE, -1, 1, MAX_AGE])
def test_a_signature_up_to_five_minutes_old_or_ahead_verifies(offset: int) -> None:
    check_signature(DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE, now=DOC_NOW + offset)


@pytest.mark.parametrize("offset", [MAX_AGE + 1, -(MAX_AGE + 1), 86400])
def test_a_signature_more_than_five_minutes_off_is_a_possible_replay(offset: int) -> None:
    with pytest.raises(SlackError, match="possible replay"):
        check_signature(DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE, now=DOC_NOW + offset)


@pytest.mark.parametrize(
    ("secret", "body", "timestamp", "sig"),
    [
        ("another-secret", DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE),
        (DOC_SECRET, DOC_BODY.replace(b"roadrunner", b"roadrunnex"), DOC_TIMESTAMP, DOC_SIGNATURE),
        (DOC_SECRET, DOC_BODY + b"&extra=1", DOC_TIMESTAMP, DOC_SIGNATURE),
        (DOC_SECRET, DOC_BODY, "1531420619", DOC_SIGNATURE),  # the timestamp is signed too
        (DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE.replace("v0=", "v1=")),
        (DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE[3:]),
        (DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE.upper()),
        (DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE[:-1] + "4"),
        (DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, "v0="),
    ],
    ids=[
        "other-secret",
        "body-changed",
        "body-extended",
        "timestamp-changed",
        "version",
        "no-version",
        "uppercase",
        "last-digit",
        "empty",
    ],
)
def test_a_signature_that_does_not_verify_is_refused(
    secret: str, body: bytes, timestamp: str, sig: str
) -> None:
    with pytest.raises(SlackError, match="does not verify"):
        check_signature(secret, body, timestamp, sig, now=DOC_NOW)


@pytest.mark.parametrize(
    ("timestamp", "sig"),
    [(None, DOC_SIGNATURE), (DOC_TIMESTAMP, None), ("", DOC_SIGNATURE), (DOC_TIMESTAMP, "")],
)
def test_missing_headers_are_refused(timestamp: str | None, sig: str | None) -> None:
    with pytest.raises(SlackError, match="missing"):
        check_signature(DOC_SECRET, DOC_BODY, timestamp, sig, now=DOC_NOW)


@pytest.mark.parametrize("timestamp", ["soon", "1531420618.0", "0x5b47a3ca", "1e9"])
def test_a_timestamp_that_is_not_whole_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(SlackError, match="not a number of seconds"):
        check_signature(DOC_SECRET, DOC_BODY, timestamp, DOC_SIGNATURE, now=DOC_NOW)


def test_check_signature_uses_the_clock_by_default() -> None:
    now = str(int(time.time()))
    check_signature("s3cret", b"payload=%7B%7D", now, signature("s3cret", now, b"payload=%7B%7D"))
    with pytest.raises(SlackError, match="possible replay"):
        check_signature(DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, DOC_SIGNATURE)


def test_a_body_that_is_not_utf8_is_refused_as_unsigned() -> None:
    body = b"payload=\xff\xfe"
    with pytest.raises(SlackError):
        check_signature(DOC_SECRET, body, DOC_TIMESTAMP, DOC_SIGNATURE, now=DOC_NOW)


def test_a_signature_with_non_ascii_characters_is_refused() -> None:
    with pytest.raises(SlackError):
        check_signature(DOC_SECRET, DOC_BODY, DOC_TIMESTAMP, "v0=\u00e9", now=DOC_NOW)


# ------------------------------------------------------------------------------------------
# parse_interaction
# ------------------------------------------------------------------------------------------


def _posted(request: ApprovalRequest) -> Message:
    return Message("C0APPROVALS", "1700000000.000100", [{"text": "t", "blocks": blocks(request)}])


@pytest.mark.parametrize("action", [APPROVE, REJECT])
def test_a_button_press_as_slack_sends_it(action: str) -> None:
    message = _posted(_statement())
    bob = User("U0BOB", "bob", "bob@example.com")
    press = parse_interaction(block_actions(message, bob, action, "dbward-approvals"))
    assert press.user_id == "U0BOB"
    assert press.action == action
    assert press.request_id == "apr_0123456789ab"
    assert press.channel == "C0APPROVALS"
    assert press.ts == "1700000000.000100"
    assert press.response_url.startswith("https://")


def _form(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return urlencode({"payload": text}).encode()


_PRESS = {
    "type": "block_actions",
    "user": {"id": "U1"},
    "actions": [{"action_id": APPROVE, "value": "apr_1"}],
}


def test_a_minimal_press_is_enough() -> None:
    press = parse_interaction(_form(_PRESS))
    assert (press.user_id, press.action, press.request_id) == ("U1", APPROVE, "apr_1")
    assert (press.channel, press.ts, press.response_url) == ("", "", "")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"payload=",
        b"token=abc&team_id=T1",
        json.dumps(_PRESS).encode(),  # JSON, not a form
        _form("{not json"),
        _form([_PRESS]),
        _form("null"),
        _form({**_PRESS, "actions": []}),
        _form({k: v for k, v in _PRESS.items() if k != "actions"}),
        _form({k: v for k, v in _PRESS.items() if k != "user"}),
        _form({**_PRESS, "user": "U1"}),
        _form({**_PRESS, "user": {"name": "bob"}}),
        _form({**_PRESS, "actions": [{"action_id": APPROVE}]}),
        _form({**_PRESS, "actions": [{"value": "apr_1"}]}),
        _form({**_PRESS, "actions": ["dbward_approve"]}),
        b"payload=%FF%FE",
        b"\xff\xfe",
    ],
    ids=[
        "empty",
        "empty-payload",
        "slash-command",
        "json-body",
        "not-json",
        "list",
        "null",
        "no-actions",
        "actions-missing",
        "user-missing",
        "user-string",
        "user-no-id",
        "no-value",
        "no-action-id",
        "action-string",
        "payload-not-utf8",
        "body-not-utf8",
    ],
)
def test_what_is_not_a_button_press_is_refused(body: bytes) -> None:
    with pytest.raises(SlackError, match="not a Slack block_actions payload"):
        parse_interaction(body)


def test_a_payload_with_a_channel_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(SlackError):
        parse_interaction(_form({**_PRESS, "channel": "C0APPROVALS"}))


# ------------------------------------------------------------------------------------------
# blocks()
# ------------------------------------------------------------------------------------------


def test_a_held_statement_message() -> None:
    message = blocks(_statement(), CONSOLE)
    assert [b["type"] for b in message] == ["header", "section", "section", "context", "actions"]
    header, statement, facts, context, actions = message
    assert header["text"] == {"type": "plain_text", "text": "Statement held for approval on orders"}
    assert statement["text"] == {
        "type": "mrkdwn",
        "text": "```DELETE FROM orders WHERE created &lt; now() - interval '1 year'```",
    }  # escaped for mrkdwn: Slack shows it as typed
    assert facts["fields"] == [
        {"type": "mrkdwn", "text": "*Identity*\nalice@example.com (human)"},
        {"type": "mrkdwn", "text": "*Connection*\norders (production)"},
        {"type": "mrkdwn", "text": "*Risk*\nDELETE, no_where"},
        {"type": "mrkdwn", "text": "*Needs*\n2 of dba, sre"},
    ]
    (note,) = context["elements"]
    assert note["type"] == "mrkdwn"
    assert "Request `apr_0123456789ab`" in note["text"]
    assert "rule deletes-need-approval" in note["text"]
    assert (
        "<https://dbward.example.test/approvals/apr_0123456789ab|open in dbward>" in (note["text"])
    )
    assert actions["block_id"] == "dbward_decision"
    approve, reject = actions["elements"]
    assert approve == {
        "type": "button",
        "action_id": "dbward_approve",
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve"},
        "value": "apr_0123456789ab",
    }
    assert reject == {
        "type": "button",
        "action_id": "dbward_reject",
        "style": "danger",
        "text": {"type": "plain_text", "text": "Reject"},
        "value": "apr_0123456789ab",
    }
    assert block_problems(message) == []


def test_a_statement_with_parameters_shows_them() -> None:
    message = blocks(_statement(statement="DELETE FROM t WHERE id = $1", parameters=("42", "NULL")))
    assert (
        message[1]["text"]["text"] == "```DELETE FROM t WHERE id = $1```\nParameters: `42`, `NULL`"
    )


def test_without_a_console_url_there_is_no_link_and_without_risk_the_rule_shows() -> None:
    message = blocks(_statement(risk=()))
    assert "<" not in message[3]["elements"][0]["text"]
    assert message[2]["fields"][2]["text"] == "*Risk*\ndeletes-need-approval"


def test_an_access_request_message() -> None:
    message = blocks(_access(), CONSOLE)
    assert [b["type"] for b in message] == ["header", "section", "section", "context", "actions"]
    assert message[0]["text"]["text"] == "Access requested to orders"
    assert message[1]["text"]["text"] == "Role *readwrite* for 2 h"
    assert message[2]["fields"][3]["text"] == "*Needs*\n1 of dba"
    note = message[3]["elements"][0]["text"]
    assert "reason: incident 4711: fix the stuck orders" in note
    assert "Request `apr_access000001`" in note
    assert [e["value"] for e in message[4]["elements"]] == ["apr_access000001"] * 2
    assert block_problems(message) == []


def test_a_long_reason_is_cut_short() -> None:
    note = blocks(_access(reason="x" * 5000))[3]["elements"][0]["text"]
    assert "x" * 299 + "…" in note
    assert "x" * 301 not in note


def _vote(name: str, approve: bool, reason: str = "") -> Vote:
    return Vote(name, approve, 1_700_000_100.0, reason, None, "slack")


@pytest.mark.parametrize(
    ("status", "votes", "outcome"),
    [
        (
            Status.APPROVED,
            (_vote("bob@example.com", True), _vote("carol@example.com", True)),
            ":white_check_mark: Approved by bob@example.com, carol@example.com",
        ),
        (Status.EXECUTED, (_vote("bob", True),), ":white_check_mark: Approved by bob"),
        (
            Status.REJECTED,
            (_vote("bob", True), _vote("carol", False, "not during the freeze")),
            ":no_entry: Rejected by carol: not during the freeze",
        ),
        (Status.REJECTED, (_vote("carol", False),), ":no_entry: Rejected by carol"),
        (Status.EXPIRED, (), "Request is expired"),
        (
            Status.REVOKED,
            (_vote("bob", True), _vote("carol", False, "revoked")),
            "Request is revoked",
        ),
    ],
    ids=["approved", "executed", "rejected", "rejected-no-reason", "expired", "revoked"],
)
def test_a_decided_request_loses_its_buttons_and_says_how_it_ended(
    status: Status, votes: tuple[Vote, ...], outcome: str
) -> None:
    for request in (_statement(status=status, votes=votes), _access(status=status, votes=votes)):
        message = blocks(request, CONSOLE)
        assert [b["type"] for b in message] == [
            "header",
            "section",
            "section",
            "context",
            "section",
        ]
        assert message[-1]["text"] == {"type": "mrkdwn", "text": outcome}
        assert block_problems(message) == []


def test_a_long_statement_is_cut_to_fit_a_section() -> None:
    statement = "DELETE FROM t WHERE id IN (" + ", ".join(str(i) for i in range(5000)) + ")"
    text = blocks(_statement(statement=statement))[1]["text"]["text"]
    assert len(text) <= 3000
    assert text.startswith("```DELETE FROM t WHERE id IN (0, 1, 2")
    assert text.endswith("…```")


def test_a_code_fence_in_the_statement_cannot_close_the_code_block() -> None:
    text = blocks(_statement(statement="DELETE FROM t -- ```*boom*```"))[1]["text"]["text"]
    assert text.startswith("```")
    assert text.endswith("```")
    assert "```" not in text[3:-3]


def test_a_long_connection_name_is_cut_to_fit_the_header() -> None:
    message = blocks(_statement(connection="c" * 400))
    assert len(message[0]["text"]["text"]) == 150
    assert block_problems(message) == []


def test_many_long_parameters_still_fit_the_section() -> None:
    request = _statement(
        statement="DELETE FROM t WHERE a = $1 OR b = $2 OR c = $3 OR d = $4 OR e = $5 OR f = $6",
        parameters=tuple(("v" * 500) + "..." for _ in range(6)),
    )
    assert block_problems(blocks(request)) == []


def test_a_statement_full_of_code_fences_still_fits_the_section() -> None:
    request = _statement(statement="SELECT 1 -- " + "```" * 1000)
    assert block_problems(blocks(request)) == []


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_the_requesters_text_is_escaped_for_mrkdwn() -> None:
    statement = "DELETE FROM t WHERE note = '&lt;b&gt;' OR note < '<!here>'"
    reason = "<!channel> see <https://evil.example|the runbook> & approve"
    message = blocks(_access(reason=reason), CONSOLE) + blocks(
        _statement(statement=statement), CONSOLE
    )
    dbward_link = re.compile(r"<https://dbward\.example\.test/approvals/apr_\w+\|open in dbward>")
    for text in _texts(message):
        own = dbward_link.sub("", text)
        assert "<" not in own, text
        assert ">" not in own, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", own), text
    shown = _slack_unescape(blocks(_statement(statement=statement))[1]["text"]["text"])
    assert shown == f"```{statement}```"


# ------------------------------------------------------------------------------------------
# SlackClient against a local Slack
# ------------------------------------------------------------------------------------------

USERS = [
    User("U0BOB", "bob", "Bob@Example.com"),
    User("U0HIDDEN", "hidden", None),
]


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackApi]:
    server = SlackApi(TOKEN, users=USERS).start()
    yield server
    server.stop()


def test_the_client_posts_updates_and_looks_up_users(slack: SlackApi) -> None:
    client = SlackClient(TOKEN, slack.url + "/", 5)
    request = _statement()
    ref = client.post("#dbward-approvals", request, CONSOLE)
    channel, _, ts = ref.partition(":")
    assert channel == "C0APPROVALS"
    assert ts
    message = slack.message_for(request.id)
    assert (message.channel, message.ts) == (channel, ts)
    assert message.blocks == blocks(request, CONSOLE)
    assert request.id in message.text
    assert "alice@example.com" in message.text
    posted = slack.calls_of("chat.postMessage")[-1]
    assert posted.content_type == "application/json"
    assert posted.authorized

    decided = replace(request, status=Status.APPROVED, votes=(_vote("bob", True),))
    client.update(ref, decided, CONSOLE)
    assert message.updated
    assert message.blocks == blocks(decided, CONSOLE)
    assert not message.block("actions")
    assert message.text.endswith("approved")

    assert client.email_of("U0BOB") == "Bob@Example.com"


def test_the_client_reports_what_slack_refuses(slack: SlackApi) -> None:
    request = _statement(id="apr_refused00001")
    wrong = SlackClient("xoxb-not-the-token", slack.url, 5)
    with pytest.raises(SlackError, match=re.escape("chat.postMessage: invalid_auth")):
        wrong.post("#dbward-approvals", request, None)
    with pytest.raises(SlackError, match=re.escape("users.info: invalid_auth")):
        wrong.email_of("U0BOB")
    client = SlackClient(TOKEN, slack.url, 5)
    with pytest.raises(SlackError, match=re.escape("chat.postMessage: channel_not_found")):
        client.post("#nowhere", request, None)
    with pytest.raises(SlackError, match=re.escape("chat.update: message_not_found")):
        client.update("C0APPROVALS:1.000001", request, None)
    with pytest.raises(SlackError, match=re.escape("users.info: user_not_found")):
        client.email_of("U0NOBODY")
    with pytest.raises(SlackError, match=re.escape("users:read.email")):
        client.email_of("U0HIDDEN")


# ------------------------------------------------------------------------------------------
# Notifiers: a channel that fails is reported, never fatal
# ------------------------------------------------------------------------------------------


def _config(monkeypatch: pytest.MonkeyPatch, slack: SlackApi, webhook_url: str) -> ApprovalsConfig:
    monkeypatch.setenv("DBWARD_UNIT_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("DBWARD_UNIT_SLACK_SIGNING", "signing-secret")
    monkeypatch.setenv("DBWARD_UNIT_WEBHOOK", "webhook-secret")
    return ApprovalsConfig(
        webhook=WebhookNotifier(
            url=webhook_url, secret=Secret(env="DBWARD_UNIT_WEBHOOK"), timeout=0.5
        ),
        slack=SlackNotifier(
            channel="#dbward-approvals",
            bot_token=Secret(env="DBWARD_UNIT_SLACK_TOKEN"),
            signing_secret=Secret(env="DBWARD_UNIT_SLACK_SIGNING"),
            api_url=slack.url,
            timeout=5,
        ),
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_webhook_that_is_down_is_reported_and_slack_is_still_told(
    monkeypatch: pytest.MonkeyPatch, slack: SlackApi
) -> None:
    config = _config(monkeypatch, slack, f"http://127.0.0.1:{_closed_port()}/hook")
    notifiers = Notifiers(config)
    request = _statement(id="apr_webhookdown1")
    sent = notifiers.requested(request)
    assert sent.channels == ("slack",)
    assert sent.slack_ref.startswith("C0APPROVALS:")
    (failure,) = sent.failures
    assert failure.startswith("webhook: cannot reach the webhook")
    slack.message_for(request.id)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            accepted.append(sock)

    threading.Thread(target=accept, daemon=True).start()
    yield int(listener.getsockname()[1])
    done.set()
    listener.close()
    for sock in accepted:
        sock.close()


def test_a_webhook_that_does_not_answer_in_time_is_reported_and_slack_is_still_told(
    monkeypatch: pytest.MonkeyPatch, slack: SlackApi, silent_listener: int
) -> None:
    config = _config(monkeypatch, slack, f"http://127.0.0.1:{silent_listener}/hook")
    request = _statement(id="apr_webhookslow1")
    sent = Notifiers(config).requested(request)
    assert sent.channels == ("slack",)
    assert len(sent.failures) == 1
    assert sent.failures[0].startswith("webhook: ")
