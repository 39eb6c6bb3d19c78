"""A local Slack for the approvals tests: Slack's Web API and its interactivity requests.

``SlackApi`` is a real HTTP server on 127.0.0.1 that answers the Web API
methods dbward calls (``chat.postMessage``, ``chat.update``, ``users.info``)
in Slack's wire format: ``POST /api/<method>`` with a JSON or form body (or
query parameters), the bot token in ``Authorization: Bearer`` (or a form
``token`` field), and HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}``. It checks posted blocks against Block Kit's documented
limits (``invalid_blocks`` otherwise) and keeps every message and each of
its versions for the tests.

``press`` builds what Slack sends an app's interactivity URL when a user
presses a button in one of those messages: a form body ``payload=<json>`` of
a ``block_actions`` payload, signed with the app's signing secret (``v0=`` and
the hex HMAC-SHA256 of ``v0:<timestamp>:<body>``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.integration.helpers import wait_for

TEAM = "T0DBWARD1"
APP = "A0DBWARD1"
BOT = "B0DBWARD1"

# Block Kit's limits (the block and element reference pages).
MAX_BLOCKS = 50
HEADER_TEXT = 150
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ID_LENGTH = 255
TEXT_OBJECT = 3000


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str | None  # None: the profile shows no email (scope missing, or hidden)


@dataclass
class Message:
    """A message as Slack keeps it: where, when, and every version (the first is the post)."""

    channel: str
    ts: str
    versions: list[dict[str, Any]] = field(default_factory=list)  # {"text", "blocks"}

    @property
    def text(self) -> str:
        return str(self.versions[-1]["text"])

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return list(self.versions[-1]["blocks"])

    @property
    def updated(self) -> bool:
        return len(self.versions) > 1

    def block(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b.get("type") == kind]

    def button(self, action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the actions block, the button) with ``action_id`` in the current version."""
        for block in self.block("actions"):
            for element in block.get("elements", []):
                if element.get("action_id") == action_id:
                    return block, element
        raise AssertionError(f"no button {action_id!r} in message {self.ts}: {self.blocks}")

    def payload(self) -> dict[str, Any]:
        """The message as Slack shows it in an interaction payload."""
        return {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": BOT,
            "app_id": APP,
            "team": TEAM,
            "ts": self.ts,
            "text": self.text,
            "blocks": self.blocks,
        }


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    content_type: str
    authorized: bool
    error: str | None


def _text_problems(obj: Any, where: str, kinds: tuple[str, ...], limit: int) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"must be a text object of type {'/'.join(kinds)} [json-pointer:{where}]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    if len(text) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    return []


def _button_problems(element: Any, where: str) -> list[str]:
    problems = _text_problems(element.get("text"), f"{where}/text", ("plain_text",), BUTTON_TEXT)
    if len(str(element.get("action_id", ""))) > ID_LENGTH:
        problems.append(f"action_id too long [json-pointer:{where}/action_id]")
    if len(str(element.get("value", ""))) > BUTTON_VALUE:
        problems.append(
            f"must be less than {BUTTON_VALUE + 1} characters [json-pointer:{where}/value]"
        )
    if "style" in element and element["style"] not in ("primary", "danger"):
        problems.append(f"must be primary or danger [json-pointer:{where}/style]")
    return problems


def block_problems(blocks: Any) -> list[str]:
    """What Slack would say is wrong with ``blocks`` (empty: nothing)."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        if not isinstance(block, dict):
            problems.append(f"must be an object [json-pointer:{at}]")
            continue
        if len(str(block.get("block_id", ""))) > ID_LENGTH:
            problems.append(f"block_id too long [json-pointer:{at}/block_id]")
        kind = block.get("type")
        if kind == "header":
            problems += _text_problems(
                block.get("text"), f"{at}/text", ("plain_text",), HEADER_TEXT
            )
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"must provide text or fields [json-pointer:{at}]")
            if "text" in block:
                problems += _text_problems(
                    block["text"], f"{at}/text", ("plain_text", "mrkdwn"), SECTION_TEXT
                )
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 0 < len(fields) <= SECTION_FIELDS:
                    problems.append(f"1 to {SECTION_FIELDS} fields [json-pointer:{at}/fields]")
                else:
                    for j, item in enumerate(fields):
                        problems += _text_problems(
                            item, f"{at}/fields/{j}", ("plain_text", "mrkdwn"), FIELD_TEXT
                        )
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= CONTEXT_ELEMENTS:
                problems.append(f"1 to {CONTEXT_ELEMENTS} elements [json-pointer:{at}/elements]")
            else:
                for j, item in enumerate(elements):
                    problems += _text_problems(
                        item, f"{at}/elements/{j}", ("plain_text", "mrkdwn"), TEXT_OBJECT
                    )
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= ACTIONS_ELEMENTS:
                problems.append(f"1 to {ACTIONS_ELEMENTS} elements [json-pointer:{at}/elements]")
                continue
            seen: set[str] = set()
            for j, element in enumerate(elements):
                where = f"{at}/elements/{j}"
                if not isinstance(element, dict) or element.get("type") != "button":
                    problems.append(f"unsupported element [json-pointer:{where}]")
                    continue
                problems += _button_problems(element, where)
                action = str(element.get("action_id", ""))
                if action and action in seen:
                    problems.append(f"action_id already exists [json-pointer:{where}/action_id]")
                seen.add(action)
        elif kind != "divider":
            problems.append(f"unsupported block type {kind!r} [json-pointer:{at}/type]")
    return problems


class SlackApi:
    """Slack's Web API for one workspace: a bot token, channels, users and messages."""

    def __init__(
        self,
        token: str,
        *,
        users: Iterable[User] = (),
        channels: dict[str, str] | None = None,  # id -> name
    ) -> None:
        self.token = token
        self.users = {u.id: u for u in users}
        self.channels = dict(channels or {"C0APPROVALS": "dbward-approvals"})
        self.messages: list[Message] = []
        self.calls: list[Call] = []
        self.post_delay = 0.0  # seconds chat.postMessage takes to answer (the message is there)
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self._serve(self.rfile.read(length))

            def do_GET(self) -> None:
                self._serve(b"")

            def _serve(self, body: bytes) -> None:
                answer = api._call(self.path, dict(self.headers.items()), body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> SlackApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # the wire ----------------------------------------------------------------------------

    def _call(self, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        parts = urlsplit(path)
        if not parts.path.startswith("/api/"):
            return {"ok": False, "error": "unknown_method"}
        method = parts.path[len("/api/") :]
        args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        lowered = {k.lower(): v for k, v in headers.items()}
        content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
        if body:
            if content_type == "application/json":
                try:
                    parsed = json.loads(body)
                except ValueError:
                    return self._log(method, args, content_type, False, "invalid_json")
                if not isinstance(parsed, dict):
                    return self._log(method, args, content_type, False, "invalid_json")
                args.update(parsed)
            elif content_type == "application/x-www-form-urlencoded":
                args.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
            else:
                return self._log(method, args, content_type, False, "invalid_form_data")
        token = ""
        authorization = lowered.get("authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization[len("Bearer ") :]
        elif content_type != "application/json":  # JSON bodies cannot carry the token
            token = str(args.pop("token", ""))
        if not token:
            return self._log(method, args, content_type, False, "not_authed")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return self._log(method, args, content_type, False, "invalid_auth")
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "users.info": self._user,
        }.get(method)
        if handler is None:
            return self._log(method, args, content_type, True, "unknown_method")
        answer = handler(args)
        return self._log(method, args, content_type, True, answer.get("error"), answer)

    def _log(
        self,
        method: str,
        args: dict[str, Any],
        content_type: str,
        authorized: bool,
        error: str | None,
        answer: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self.calls.append(Call(method, args, content_type, authorized, error))
        if answer is None:
            answer = {"ok": False, "error": error}
        return answer

    def _channel(self, given: Any) -> str | None:
        name = str(given or "")
        if name in self.channels:
            return name
        wanted = name.removeprefix("#")
        return next((cid for cid, cname in self.channels.items() if cname == wanted), None)

    @staticmethod
    def _blocks(args: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        blocks = args.get("blocks")
        if blocks is None:
            return None, None
        if isinstance(blocks, str):  # a form body carries them as a JSON string
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return None, {"ok": False, "error": "invalid_blocks_format"}
        problems = block_problems(blocks)
        if problems:
            return None, {
                "ok": False,
                "error": "invalid_blocks",
                "errors": problems,
                "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]},
            }
        return blocks, None

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        blocks, refusal = self._blocks(args)
        if refusal is not None:
            return refusal
        text = str(args.get("text") or "")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = Message(channel, ts, [{"text": text, "blocks": blocks or []}])
        with self._lock:
            self.messages.append(message)
        if self.post_delay:
            time.sleep(self.post_delay)
        return {"ok": True, "channel": channel, "ts": ts, "message": message.payload()}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            message = next(
                (m for m in self.messages if m.channel == channel and m.ts == args.get("ts")),
                None,
            )
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        blocks, refusal = self._blocks(args)
        if refusal is not None:
            return refusal
        with self._lock:
            message.versions.append(
                {
                    "text": str(args.get("text") or message.text),
                    "blocks": blocks if blocks is not None else message.blocks,
                }
            )
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.payload(),
        }

    def _user(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        profile: dict[str, Any] = {"real_name": user.name.title(), "display_name": user.name}
        if user.email is not None:
            profile["email"] = user.email
        return {
            "ok": True,
            "user": {
                "id": user.id,
                "team_id": TEAM,
                "name": user.name,
                "real_name": user.name.title(),
                "deleted": False,
                "is_bot": False,
                "profile": profile,
            },
        }

    # for the tests -----------------------------------------------------------------------

    def message_for(self, request_id: str, *, timeout: float = 10.0) -> Message:
        """The message whose buttons (or context) name ``request_id``, once posted."""

        def find() -> Message | None:
            with self._lock:
                messages = list(self.messages)
            return next((m for m in messages if request_id in json.dumps(m.versions[0])), None)

        found: Message = wait_for(find, timeout=timeout, what=f"a Slack message for {request_id}")
        return found

    def messages_since(self, count: int) -> list[Message]:
        with self._lock:
            return list(self.messages[count:])

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]


# ------------------------------------------------------------------------------------------
# What Slack sends the app when a button is pressed
# ------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Slack-Signature``: ``v0=`` and the hex HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def block_actions(message: Message, user: User, action_id: str, channel_name: str) -> bytes:
    """The form body Slack posts when ``user`` presses button ``action_id`` in ``message``."""
    block, button = message.button(action_id)
    now = time.time()
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM},
        "api_app_id": APP,
        "token": "verification-token-not-used",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(now)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        "team": {"id": TEAM, "domain": "dbward-tests"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": message.channel, "name": channel_name},
        "message": message.payload(),
        "state": {"values": {}},
        "response_url": f"https://hooks.slack.invalid/actions/{TEAM}/{secrets.token_hex(6)}",
        "actions": [
            {
                "action_id": button["action_id"],
                "block_id": block.get("block_id", ""),
                "text": button["text"],
                "value": button.get("value", ""),
                "style": button.get("style"),
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def signed_headers(secret: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``: its timestamp and signature."""
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(secret, timestamp, body),
    }
