"""Approvers told in Slack and by a signed webhook, and answering with Slack's buttons.

A real dbward (``approvals.slack`` and ``approvals.webhook``) holds psql's
statements under a ``review`` rule. Slack is ``tests.slack_server.SlackApi``:
a local HTTP server speaking the Web API that keeps every message dbward posts
and updates; a button press is sent to dbward's interactivity endpoint exactly
as Slack sends it (a signed, form-encoded ``block_actions`` payload). The
webhook goes to ``tests.sink_receivers.WebhookReceiver``, and each delivery's
signature is checked here with the shared secret.

Slack users are mapped to dbward identities by email, and only identities an
identity provider verified are found by email, so people sign in with ID
tokens from a local OpenID Connect provider: alice (dev) asks, bob and carol
(dba) approve, dave (sales) may not; each is made known to dbward's directory
by one API call.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, free_port, stop_dbward
from tests.integration.approvals_helpers import api, start_approvals_dbward
from tests.integration.helpers import log_tail, unique, wait_for
from tests.integration.test_oidc_login import IdentityProvider
from tests.sink_receivers import Post, WebhookReceiver
from tests.slack_server import Message, SlackApi, User, block_actions, signed_headers

TOKEN_ENV = "DBWARD_TEST_SLACK_TOKEN"
SIGNING_ENV = "DBWARD_TEST_SLACK_SIGNING"
WEBHOOK_ENV = "DBWARD_TEST_WEBHOOK_SECRET"
BOT_TOKEN = f"xoxb-1234-5678-{secrets.token_hex(12)}"
SIGNING_SECRET = secrets.token_hex(16)
WEBHOOK_SECRET = secrets.token_hex(16)
CHANNEL = "#dbward-approvals"
CHANNEL_ID = "C0APPROVALS"
CONSOLE = "https://dbward.example.test"

ALICE = User("U0ALICE", "alice", "alice@example.com")
BOB = User("U0BOB", "bob", "bob@example.com")
CAROL = User("U0CAROL", "carol", "Carol@Example.COM")  # emails match whatever their case
DAVE = User("U0DAVE", "dave", "dave@example.com")
ERIN = User("U0ERIN", "erin", "erin@example.com")  # never signed in to dbward
FRANK = User("U0FRANK", "frank", "frank@example.com")  # signs in with a dbward token only
NOMAIL = User("U0NOMAIL", "nomail", None)  # the profile shows no email
GROUPS = {
    "alice@example.com": ("dev",),
    "bob@example.com": ("dba",),
    "carol@example.com": ("dba",),
    "dave@example.com": ("sales",),
}
PSQL_TIMEOUT = 60


@dataclass
class Ward:
    """A dbward with approvals notifiers, its API, and the provider its people sign in at."""

    server: Dbward
    api: str
    idp: IdentityProvider

    def token(self, email: str) -> str:
        """A fresh ID token for ``email`` (with its groups)."""
        return self.idp.token(
            sub=f"00u-{email.split('@')[0]}", email=email, groups=list(GROUPS[email])
        )

    def psql_env(self, email: str) -> dict[str, str]:
        """psql as ``email``, with an ID token for password."""
        env = {**self.server.env(), "PGUSER": email, "PGPASSWORD": self.token(email)}
        env.pop("PGAPPNAME", None)
        return env


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackApi]:
    server = SlackApi(
        BOT_TOKEN,
        users=[ALICE, BOB, CAROL, DAVE, ERIN, FRANK, NOMAIL],
        channels={CHANNEL_ID: CHANNEL.removeprefix("#")},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(WEBHOOK_SECRET.encode()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def secrets_env() -> Iterator[None]:
    """The secrets dbward reads (start_dbward hands the child this process's environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_ENV, BOT_TOKEN)
        patch.setenv(SIGNING_ENV, SIGNING_SECRET)
        patch.setenv(WEBHOOK_ENV, WEBHOOK_SECRET)
        yield


def _approvals(slack: SlackApi | None, webhook_url: str | None, **settings: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"wait": 30, "poll_interval": 0.1, "console_url": CONSOLE}
    config.update(settings)
    if slack is not None:
        config["slack"] = {
            "channel": CHANNEL,
            "bot_token": {"env": TOKEN_ENV},
            "signing_secret": {"env": SIGNING_ENV},
            "api_url": slack.url,
            "timeout": 5,
        }
    if webhook_url is not None:
        config["webhook"] = {"url": webhook_url, "secret": {"env": WEBHOOK_ENV}, "timeout": 1}
    return config


def _directory(server: Dbward) -> dict[str, tuple[str, ...]]:
    """email -> groups, as dbward's identity directory holds them."""
    path = server.state_dir / "access.db"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT email, groups FROM approval_directory").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {row[0]: tuple(json.loads(row[1])) for row in rows if row[0]}


def _known(server: Dbward, name: str) -> bool:
    path = server.state_dir / "access.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        found = db.execute("SELECT 1 FROM approval_directory WHERE name = ?", (name,))
        return bool(found.fetchall())
    finally:
        db.close()


def _start(
    tmp: Path, upstream: UpstreamDb, idp: IdentityProvider, approvals: dict[str, Any]
) -> Ward:
    identity = {"oidc": [{"issuer": idp.issuer, "audience": "dbward", "groups_claim": "groups"}]}
    server, base = start_approvals_dbward(
        tmp, upstream, extra={"approvals": approvals, "identity": identity}
    )
    ward = Ward(server, base, idp)
    for email in GROUPS:  # one authenticated call each: dbward now knows them
        status, body = api(base, ward.token(email), "GET", "/api/v1/me")
        assert status == 200, body
        assert body["provider"] == f"oidc:{idp.issuer}"
    wait_for(
        lambda: all(_directory(server).get(name) == g for name, g in GROUPS.items()),
        timeout=10,
        what="the identity directory to hold alice, bob, carol and dave",
    )
    return ward


@pytest.fixture(scope="module")
def ward(
    secrets_env: None,
    idp: IdentityProvider,
    slack: SlackApi,
    receiver: WebhookReceiver,
    upstream_db: UpstreamDb,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ward]:
    """Slack and a webhook receiver that is up."""
    started = _start(
        tmp_path_factory.mktemp("slack"), upstream_db, idp, _approvals(slack, receiver.url)
    )
    yield started
    stop_dbward(started.server)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _table(upstream: UpstreamDb) -> str:
    """A new table of three rows (made upstream, not through dbward)."""
    name = unique("orders")
    with psycopg.connect(upstream.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)")
        conn.execute(f"INSERT INTO {name} VALUES (1, 'ada'), (2, 'bea'), (3, 'cyd')")
    return name


def _rows(upstream: UpstreamDb, table: str) -> list[int]:
    with psycopg.connect(upstream.dsn(), autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


@dataclass
class Held:
    """A psql session whose statement dbward holds, and the request it made."""

    proc: subprocess.Popen[str]
    sql: str
    request: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.request["id"])

    def result(self) -> tuple[int, str, str]:
        stdout, stderr = self.proc.communicate(timeout=PSQL_TIMEOUT)
        return self.proc.returncode, stdout, stderr

    def running(self) -> bool:
        return self.proc.poll() is None


def _hold(ward: Ward, sql: str, user: str = "alice@example.com") -> Held:
    """Run ``sql`` in psql as ``user`` and wait until dbward holds it for approval."""
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-A", "-F", "|", "-c", sql],
        env=ward.psql_env(user),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def held() -> dict[str, Any] | None:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"psql ended ({proc.returncode}) instead of waiting:\n{out}\n{err}\n"
                f"{log_tail(ward.server)}"
            )
        status, body = api(ward.api, ward.token("bob@example.com"), "GET", "/api/v1/approvals")
        assert status == 200, body
        return next(
            (r for r in body["requests"] if r["statement"] == sql and r["status"] == "pending"),
            None,
        )

    return Held(proc, sql, wait_for(held, timeout=15, what=f"dbward to hold {sql!r}"))


@contextlib.contextmanager
def _holding(ward: Ward, sql: str) -> Iterator[Held]:
    """A held statement; psql is ended afterwards whatever the test did."""
    held = _hold(ward, sql)
    try:
        yield held
    finally:
        if held.running():
            held.proc.kill()
            held.proc.communicate()


def _post(base: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    """POST ``body`` to dbward's Slack interactivity endpoint, as Slack would."""
    request = urllib.request.Request(  # noqa: S310 - a local test server
        base + "/api/v1/slack/interactions", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _press(
    ward: Ward, message: Message, user: User, action: str, *, at: float | None = None
) -> tuple[int, dict[str, Any] | None]:
    """``user`` presses the button ``action`` of ``message`` in Slack."""
    body = block_actions(message, user, action, CHANNEL.removeprefix("#"))
    return _post(ward.api, body, signed_headers(SIGNING_SECRET, body, at=at))


def _ephemeral(answer: tuple[int, dict[str, Any] | None]) -> str:
    status, body = answer
    assert status == 200, body
    assert body is not None
    assert body["response_type"] == "ephemeral"
    assert body["replace_original"] is False
    return str(body["text"])


def _request(ward: Ward, request_id: str) -> dict[str, Any]:
    status, body = api(
        ward.api, ward.token("bob@example.com"), "GET", f"/api/v1/approvals/{request_id}"
    )
    assert status == 200, body
    return dict(body)


def _events(server: Dbward, kind: str, request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in server.audit()
        if e["kind"] == kind and (e.get("data") or {}).get("request") == request_id
    ]


def _event(server: Dbward, kind: str, request_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = wait_for(
        lambda: _events(server, kind, request_id), timeout=10, what=f"{kind} for {request_id}"
    )
    assert len(found) == 1, found
    return found[0]


def _message(ward: Ward, slack: SlackApi, held: Held) -> Message:
    """The Slack message for ``held``, once dbward keeps it with the request (an approver
    needs a moment to press a button; a decision before that is another test's concern)."""
    message = slack.message_for(held.id)
    wait_for(
        lambda: _request(ward, held.id)["slack"] == f"{message.channel}:{message.ts}",
        what=f"the Slack message kept with {held.id}",
    )
    return message


def _updated(message: Message, timeout: float = 10) -> Message:
    wait_for(lambda: message.updated, timeout=timeout, what=f"chat.update of message {message.ts}")
    return message


def _outcome(message: Message) -> str:
    """The last section of the message's current version (where the outcome is said)."""
    return str(message.block("section")[-1]["text"]["text"])


def _deliveries(receiver: WebhookReceiver, request_id: str) -> list[Post]:
    with receiver._lock:
        posts = list(receiver.posts)
    return [p for p in posts if json.loads(p.body)["request"]["id"] == request_id]


def _verified(post: Post) -> dict[str, Any]:
    """The body of a webhook delivery whose signature verifies with the shared secret."""
    timestamp = post.headers["X-Dbward-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 120, timestamp
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256)
    assert post.headers["X-Dbward-Signature"] == "v1=" + mac.hexdigest()
    assert post.headers["Content-Type"] == "application/json"
    assert post.signed  # the receiver's own check agrees
    payload: dict[str, Any] = json.loads(post.body)
    assert payload["source"] == "dbward"
    return payload


def _webhook_events(receiver: WebhookReceiver, request_id: str, count: int) -> list[str]:
    posts = wait_for(
        lambda: (found := _deliveries(receiver, request_id)) and len(found) >= count and found,
        timeout=10,
        what=f"{count} webhook deliveries for {request_id}",
    )
    return [_verified(p)["event"] for p in posts]


# ------------------------------------------------------------------------------------------
# 1. The message approvers see
# ------------------------------------------------------------------------------------------


def test_a_held_statement_is_posted_to_the_channel(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    sql = f"DELETE FROM {table} WHERE id <= 2 RETURNING id, name"
    with _holding(ward, sql) as held:
        message = _message(ward, slack, held)
        assert message.channel == CHANNEL_ID
        assert held.id in message.text  # the notification's fallback text
        assert [b["type"] for b in message.blocks] == [
            "header",
            "section",
            "section",
            "context",
            "actions",
        ]
        header = message.block("header")[0]
        assert header["text"] == {
            "type": "plain_text",
            "text": "Statement held for approval on app",
        }
        statement, facts = message.block("section")
        shown = sql.replace("<", "&lt;")  # escaped for mrkdwn: Slack shows it as typed
        assert statement["text"] == {"type": "mrkdwn", "text": f"```{shown}```"}
        fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in facts["fields"]}
        assert fields == {
            "*Identity*": "alice@example.com (human)",
            "*Connection*": "app (staging)",
            "*Risk*": "DELETE",
            "*Needs*": "1 of dba",
        }
        context = message.block("context")[0]["elements"][0]["text"]
        assert f"Request `{held.id}`" in context
        assert "rule deletes-need-approval" in context
        assert f"<{CONSOLE}/approvals/{held.id}|open in dbward>" in context
        (actions,) = message.block("actions")
        approve, reject = actions["elements"]
        assert approve["type"] == reject["type"] == "button"
        assert approve["action_id"] == "dbward_approve"
        assert approve["text"]["text"] == "Approve"
        assert approve["style"] == "primary"
        assert reject["action_id"] == "dbward_reject"
        assert reject["text"]["text"] == "Reject"
        assert reject["style"] == "danger"
        assert approve["value"] == reject["value"] == held.id

        posted = [c for c in slack.calls_of("chat.postMessage") if held.id in json.dumps(c.args)]
        assert len(posted) == 1
        assert posted[0].authorized
        assert posted[0].args["channel"] == CHANNEL

        notified = _event(ward.server, "approval.notified", held.id)
        assert notified["data"]["channels"] == ["webhook", "slack"]
        assert notified["data"]["failures"] == []
        assert notified["source"] == "notifier"
        # The message is kept with the request, so the outcome can be shown in it.
        assert _request(ward, held.id)["slack"] == f"{CHANNEL_ID}:{message.ts}"
        assert held.running()  # still waiting for an approver

        # Rejected from the API: the message is updated all the same.
        status, body = api(
            ward.api,
            ward.token("carol@example.com"),
            "POST",
            f"/api/v1/approvals/{held.id}/reject",
            {"reason": "not during the freeze"},
        )
        assert status == 200, body
        code, _, stderr = held.result()
        assert code != 0
        assert "rejected by carol@example.com: not during the freeze" in stderr
        _updated(message)
        assert not message.block("actions")
        assert _outcome(message) == (
            ":no_entry: Rejected by carol@example.com: not during the freeze"
        )
    assert _rows(upstream_db, table) == [1, 2, 3]


def test_a_statement_with_long_bound_values_is_still_posted(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    values = [secrets.token_hex(300) for _ in range(8)]  # 600 characters each
    sql = f"DELETE FROM {table} WHERE name IN ({', '.join('%s' for _ in values)})"
    dsn = (
        f"host=127.0.0.1 port={ward.server.port} dbname=app user=alice@example.com "
        f"password={ward.token('alice@example.com')} sslmode=require"
    )
    outcome: list[Any] = []

    def run() -> None:  # psycopg binds the values (extended protocol)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                outcome.append(conn.execute(sql, values).rowcount)
        except psycopg.Error as exc:
            outcome.append(exc)

    def held() -> dict[str, Any] | None:
        status, body = api(ward.api, ward.token("bob@example.com"), "GET", "/api/v1/approvals")
        assert status == 200, body
        return next(
            (r for r in body["requests"] if table in r["statement"] and r["status"] == "pending"),
            None,
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    request: dict[str, Any] | None = None
    try:
        request = wait_for(held, timeout=15, what="dbward to hold the DELETE")
        assert len(request["parameters"]) == len(values)
        notified = _event(ward.server, "approval.notified", request["id"])
        assert notified["data"]["failures"] == []
        assert notified["data"]["channels"] == ["webhook", "slack"]
        message = slack.message_for(request["id"], timeout=1)
        assert message.block("actions")
    finally:
        if request is not None:
            api(
                ward.api,
                ward.token("bob@example.com"),
                "POST",
                f"/api/v1/approvals/{request['id']}/reject",
                {},
            )
        thread.join(30)


# ------------------------------------------------------------------------------------------
# 2. and 3. Approve and Reject buttons
# ------------------------------------------------------------------------------------------


def test_the_approve_button_releases_the_statement(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    sql = f"DELETE FROM {table} WHERE id <= 2 RETURNING id, name"
    with _holding(ward, sql) as held:
        message = _message(ward, slack, held)
        lookups = len(slack.calls_of("users.info"))
        text = _ephemeral(_press(ward, message, BOB, "dbward_approve"))
        assert text == f"You approved {held.id} as bob@example.com; it is now approved."
        code, stdout, stderr = held.result()
        assert code == 0, stderr
        assert stdout.splitlines()[:3] == ["id|name", "1|ada", "2|bea"]
        assert f"held for approval (request {held.id})" in stderr  # psql showed the NOTICE
    assert _rows(upstream_db, table) == [3]

    (lookup,) = slack.calls_of("users.info")[lookups:]
    assert lookup.args == {"user": BOB.id}
    assert lookup.authorized

    _updated(message)
    assert not message.block("actions")
    assert _outcome(message) == ":white_check_mark: Approved by bob@example.com"
    assert message.block("header") == [message.versions[0]["blocks"][0]]  # the rest stays
    (update,) = [c for c in slack.calls_of("chat.update") if c.args.get("ts") == message.ts]
    assert update.args["channel"] == CHANNEL_ID
    assert update.authorized

    approved = _event(ward.server, "approval.approved", held.id)
    assert approved["source"] == "slack"
    assert approved["identity"] == "bob@example.com"
    assert approved["data"]["channel"] == "slack"
    assert approved["data"]["vote"] == "approve"
    _event(ward.server, "approval.executed", held.id)
    (vote,) = _request(ward, held.id)["votes"]
    assert (vote["approver"], vote["approve"], vote["via"]) == ("bob@example.com", True, "slack")

    # A press on the old message (Slack may still show the buttons) changes nothing.
    text = _ephemeral(
        _press(
            ward,
            Message(message.channel, message.ts, message.versions[:1]),
            CAROL,
            "dbward_approve",
        )
    )
    assert text.startswith("Not counted: ")
    assert "not pending" in text
    assert [v["approver"] for v in _request(ward, held.id)["votes"]] == ["bob@example.com"]


def test_the_reject_button_refuses_the_statement_naming_the_rejecter(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    sql = f"DELETE FROM {table} WHERE id = 3"
    with _holding(ward, sql) as held:
        message = _message(ward, slack, held)
        text = _ephemeral(_press(ward, message, CAROL, "dbward_reject"))
        assert text == f"You rejected {held.id} as carol@example.com; it is now rejected."
        code, _, stderr = held.result()
        assert code != 0
        assert f"approval request {held.id} was rejected by carol@example.com" in stderr
    assert _rows(upstream_db, table) == [1, 2, 3]
    _updated(message)
    assert not message.block("actions")
    assert _outcome(message) == ":no_entry: Rejected by carol@example.com"
    rejected = _event(ward.server, "approval.rejected", held.id)
    assert rejected["source"] == "slack"
    assert rejected["identity"] == "carol@example.com"
    assert rejected["data"]["vote"] == "reject"


def test_a_decision_made_while_slack_is_slow_still_reaches_the_message(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    slack.post_delay = 2.0  # the message is in the channel; Slack's answer is on its way
    try:
        with _holding(ward, f"DELETE FROM {table} WHERE id = 1") as held:
            status, body = api(
                ward.api,
                ward.token("bob@example.com"),
                "POST",
                f"/api/v1/approvals/{held.id}/approve",
                {},
            )
            assert status == 200, body
            assert held.result()[0] == 0
        message = slack.message_for(held.id)
        _updated(message, timeout=5)  # Slack has answered the post by now
        assert not message.block("actions")
    finally:
        slack.post_delay = 0.0


# ------------------------------------------------------------------------------------------
# 4. Presses that do not count
# ------------------------------------------------------------------------------------------


def _still_pending(ward: Ward, held: Held) -> None:
    request = _request(ward, held.id)
    assert request["status"] == "pending", request
    assert request["votes"] == []
    assert held.running()


def test_presses_slack_did_not_sign_are_refused(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    sql = f"DELETE FROM {table} WHERE id = 1"
    with _holding(ward, sql) as held:
        message = _message(ward, slack, held)
        lookups = len(slack.calls_of("users.info"))
        approve = block_actions(message, BOB, "dbward_approve", "dbward-approvals")
        reject = block_actions(message, BOB, "dbward_reject", "dbward-approvals")
        good = signed_headers(SIGNING_SECRET, approve)
        now = time.time()

        def without(*names: str) -> dict[str, str]:
            return {k: v for k, v in good.items() if k not in names}

        cases: list[tuple[str, bytes, dict[str, str], str]] = [
            ("another secret", approve, signed_headers("not-the-secret", approve), "verify"),
            (
                "body changed after signing",
                approve,
                signed_headers(SIGNING_SECRET, reject),
                "verify",
            ),
            (
                "timestamp changed",
                approve,
                {**good, "X-Slack-Request-Timestamp": str(int(now) - 1)},
                "verify",
            ),
            (
                "signed 301 s ago",
                approve,
                signed_headers(SIGNING_SECRET, approve, at=now - 301),
                "replay",
            ),
            (
                "signed an hour ago",
                approve,
                signed_headers(SIGNING_SECRET, approve, at=now - 3600),
                "replay",
            ),
            (
                "signed 310 s ahead",
                approve,
                signed_headers(SIGNING_SECRET, approve, at=now + 310),
                "replay",
            ),
            ("no timestamp", approve, without("X-Slack-Request-Timestamp"), "missing"),
            ("no signature", approve, without("X-Slack-Signature"), "missing"),
            (
                "neither",
                approve,
                without("X-Slack-Request-Timestamp", "X-Slack-Signature"),
                "missing",
            ),
            (
                "timestamp not a number",
                approve,
                {**good, "X-Slack-Request-Timestamp": "now"},
                "not a number",
            ),
        ]
        for what, body, headers, why in cases:
            status, answer = _post(ward.api, body, headers)
            assert status == 401, (what, status, answer)
            assert answer is not None
            assert why in answer["detail"], (what, answer)
        assert len(slack.calls_of("users.info")) == lookups  # refused before any lookup
        _still_pending(ward, held)
        assert not _events(ward.server, "approval.approved", held.id)

        # The same press, signed by Slack just now, counts.
        assert _post(ward.api, approve, good)[0] == 200
        code, _, stderr = held.result()
        assert code == 0, stderr
    assert _rows(upstream_db, table) == [2, 3]


@pytest.mark.parametrize(
    ("user", "action", "expected"),
    [
        (ERIN, "dbward_approve", "dbward knows no identity with the email erin@example.com"),
        (
            DAVE,
            "dbward_approve",
            "Not counted: dave@example.com is not in an approver group of this request (dba)",
        ),
        (
            DAVE,
            "dbward_reject",
            "Not counted: dave@example.com is not in an approver group of this request (dba)",
        ),
        (ALICE, "dbward_approve", "Not counted: no one may approve their own request"),
        (ALICE, "dbward_reject", "Not counted: no one may approve their own request"),
    ],
    ids=["unknown-email", "non-approver", "non-approver-rejects", "requester", "requester-rejects"],
)
def test_a_press_by_someone_who_may_not_decide_is_answered_and_not_counted(
    ward: Ward,
    slack: SlackApi,
    upstream_db: UpstreamDb,
    user: User,
    action: str,
    expected: str,
) -> None:
    table = _table(upstream_db)
    with _holding(ward, f"DELETE FROM {table} WHERE id = 2") as held:
        message = _message(ward, slack, held)
        text = _ephemeral(_press(ward, message, user, action))
        assert text.startswith(expected), text
        _still_pending(ward, held)
        assert not message.updated
        time.sleep(0.3)  # nothing is recorded later either
        assert not _events(ward.server, "approval.approved", held.id)
        assert not _events(ward.server, "approval.rejected", held.id)

        # It was still open: an approver's press decides it.
        _ephemeral(_press(ward, message, BOB, "dbward_reject"))
        code, _, stderr = held.result()
        assert code != 0
        assert "rejected by bob@example.com" in stderr
    assert _rows(upstream_db, table) == [1, 2, 3]


def test_a_token_named_like_an_email_does_not_stand_for_that_person(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    """Only identities an identity provider verified are found by email: anyone who may
    make a dbward token could name it after an approver."""
    token = ward.server.token("frank@example.com", IdentityKind.SERVICE, ("dba",))
    status, body = api(ward.api, token, "GET", "/api/v1/me")
    assert status == 200, body
    wait_for(
        lambda: _known(ward.server, "frank@example.com"),
        what="dbward to have seen the token frank@example.com",
    )
    table = _table(upstream_db)
    with _holding(ward, f"DELETE FROM {table} WHERE id = 2") as held:
        message = _message(ward, slack, held)
        text = _ephemeral(_press(ward, message, FRANK, "dbward_approve"))
        assert text.startswith("dbward knows no identity with the email frank@example.com"), text
        _still_pending(ward, held)
        _ephemeral(_press(ward, message, BOB, "dbward_reject"))
        assert held.result()[0] != 0


def test_a_slack_user_without_a_visible_email_is_refused(
    ward: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    with _holding(ward, f"DELETE FROM {table} WHERE id = 2") as held:
        message = _message(ward, slack, held)
        text = _ephemeral(_press(ward, message, NOMAIL, "dbward_approve"))
        assert "cannot tell who you are" in text
        assert "users:read.email" in text
        _still_pending(ward, held)
        _ephemeral(_press(ward, message, BOB, "dbward_reject"))
        assert held.result()[0] != 0


@pytest.mark.parametrize(
    ("body", "signature"),
    [(b"payload=\xff\xfe", "v0=" + "0" * 64), (b"payload=%7B%7D", "v0=\u00e9" + "0" * 63)],
    ids=["body-not-utf8", "signature-not-ascii"],
)
def test_garbage_that_slack_did_not_sign_is_refused_as_unsigned(
    ward: Ward, body: bytes, signature: str
) -> None:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": signature,
    }
    status, answer = _post(ward.api, body, headers)
    assert status == 401, answer


def test_without_slack_configured_the_endpoint_is_not_there(
    upstream_db: UpstreamDb, tmp_path: Path
) -> None:
    server, base = start_approvals_dbward(tmp_path, upstream_db)
    try:
        body = b"payload=%7B%7D"
        status, answer = _post(base, body, signed_headers(SIGNING_SECRET, body))
        assert status == 404
        assert answer is not None
        assert "approvals.slack" in answer["detail"]
    finally:
        stop_dbward(server)


# ------------------------------------------------------------------------------------------
# 5. The webhook
# ------------------------------------------------------------------------------------------


def test_the_webhook_hears_each_request_and_its_outcome_signed(
    ward: Ward, receiver: WebhookReceiver, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    table = _table(upstream_db)
    approved_sql = f"DELETE FROM {table} WHERE id = 1"
    with _holding(ward, approved_sql) as held:
        assert _webhook_events(receiver, held.id, 1) == ["approval.requested"]
        (post,) = _deliveries(receiver, held.id)
        payload = _verified(post)
        assert payload["url"] == f"{CONSOLE}/approvals/{held.id}"
        request = payload["request"]
        assert request["status"] == "pending"
        assert request["statement"] == approved_sql
        assert request["requester"] == "alice@example.com"
        assert request["connection"] == "app"
        assert request["approver_groups"] == ["dba"]
        assert request["quorum"] == 1
        assert request["rule"] == "deletes-need-approval"
        assert held.running()

        status, body = api(
            ward.api,
            ward.token("bob@example.com"),
            "POST",
            f"/api/v1/approvals/{held.id}/approve",
            {},
        )
        assert status == 200, body
        assert held.result()[0] == 0
        assert _webhook_events(receiver, held.id, 2) == [
            "approval.requested",
            "approval.approved",
        ]
        decided = _verified(_deliveries(receiver, held.id)[1])
        assert decided["request"]["status"] == "approved"
        assert [v["approver"] for v in decided["request"]["votes"]] == ["bob@example.com"]
        assert decided["url"] == payload["url"]

    rejected_sql = f"DELETE FROM {table} WHERE id = 2"
    with _holding(ward, rejected_sql) as held:
        _ephemeral(_press(ward, _message(ward, slack, held), CAROL, "dbward_reject"))
        assert held.result()[0] != 0
        assert _webhook_events(receiver, held.id, 2) == [
            "approval.requested",
            "approval.rejected",
        ]
        decided = _verified(_deliveries(receiver, held.id)[1])
        assert decided["request"]["status"] == "rejected"
        assert decided["request"]["votes"][0]["via"] == "slack"
    assert _rows(upstream_db, table) == [2, 3]


@pytest.fixture(scope="module")
def ward_webhook_down(
    secrets_env: None,
    idp: IdentityProvider,
    slack: SlackApi,
    upstream_db: UpstreamDb,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ward]:
    """Slack, and a webhook URL where nothing listens."""
    down = f"http://127.0.0.1:{free_port()}/approvals"
    started = _start(tmp_path_factory.mktemp("down"), upstream_db, idp, _approvals(slack, down))
    yield started
    stop_dbward(started.server)


def test_a_webhook_that_is_down_does_not_hold_anything_up(
    ward_webhook_down: Ward, slack: SlackApi, upstream_db: UpstreamDb
) -> None:
    ward = ward_webhook_down
    table = _table(upstream_db)
    with _holding(ward, f"DELETE FROM {table} WHERE id = 3 RETURNING name") as held:
        notified = _event(ward.server, "approval.notified", held.id)
        assert notified["data"]["channels"] == ["slack"]
        (failure,) = notified["data"]["failures"]
        assert failure.startswith("webhook: cannot reach the webhook"), failure
        message = _message(ward, slack, held)
        assert held.running()  # still waiting, and approvable

        status, body = api(
            ward.api,
            ward.token("carol@example.com"),
            "POST",
            f"/api/v1/approvals/{held.id}/approve",
            {},
        )
        assert status == 200, body
        code, stdout, stderr = held.result()
        assert code == 0, stderr
        assert "cyd" in stdout
    assert _rows(upstream_db, table) == [1, 2]
    _updated(message)  # the outcome still reaches Slack
    assert _outcome(message) == ":white_check_mark: Approved by carol@example.com"


@pytest.fixture
def silent_webhook() -> Iterator[str]:
    """A webhook URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            accepted.append(sock)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/approvals"
    listener.close()
    for sock in accepted:
        sock.close()


def test_a_webhook_that_does_not_answer_in_time_does_not_keep_slack_uninformed(
    secrets_env: None,
    idp: IdentityProvider,
    slack: SlackApi,
    upstream_db: UpstreamDb,
    tmp_path: Path,
    silent_webhook: str,
) -> None:
    ward = _start(tmp_path, upstream_db, idp, _approvals(slack, silent_webhook))
    try:
        table = _table(upstream_db)
        with _holding(ward, f"DELETE FROM {table} WHERE id = 1") as held:
            notified: list[dict[str, Any]] = wait_for(
                lambda: _events(ward.server, "approval.notified", held.id),
                timeout=5,  # the webhook's timeout is 1 s
                what="approval.notified",
            )
            assert notified[0]["data"]["channels"] == ["slack"]
            assert notified[0]["data"]["failures"][0].startswith("webhook: ")
            slack.message_for(held.id, timeout=1)
    finally:
        stop_dbward(ward.server)


# ------------------------------------------------------------------------------------------
# Expiry: the request's deadline passes with no decision
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ward_expiring(
    secrets_env: None,
    idp: IdentityProvider,
    slack: SlackApi,
    receiver: WebhookReceiver,
    upstream_db: UpstreamDb,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ward]:
    """Requests stay open for two seconds only."""
    started = _start(
        tmp_path_factory.mktemp("expiring"),
        upstream_db,
        idp,
        _approvals(slack, receiver.url, request_ttl=2, wait=20),
    )
    yield started
    stop_dbward(started.server)


def test_an_expired_request_is_announced_and_its_buttons_go(
    ward_expiring: Ward, slack: SlackApi, receiver: WebhookReceiver, upstream_db: UpstreamDb
) -> None:
    ward = ward_expiring
    table = _table(upstream_db)
    with _holding(ward, f"DELETE FROM {table}") as held:
        message = _message(ward, slack, held)
        code, _, stderr = held.result()
        assert code != 0
        assert f"approval request {held.id} expired before enough approvers answered" in stderr
    assert _rows(upstream_db, table) == [1, 2, 3]
    _updated(message)
    assert not message.block("actions")
    assert _outcome(message) == "Request is expired"
    assert _webhook_events(receiver, held.id, 2) == ["approval.requested", "approval.expired"]
    _event(ward.server, "approval.expired", held.id)

    text = _ephemeral(
        _press(
            ward, Message(message.channel, message.ts, message.versions[:1]), BOB, "dbward_approve"
        )
    )
    assert text == f"Not counted: request {held.id} is expired, not pending"
