"""Telling approvers: a signed webhook and Slack. Blocking calls, run off the event loop.

The webhook receives ``{"source": "dbward", "event": ..., "request": {...}}``
with ``X-Dbward-Timestamp`` and ``X-Dbward-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>.<body>">``, the same scheme as the audit webhook sink.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from dbward.approvals.requests import ApprovalRequest
from dbward.approvals.slack import SlackClient, SlackError
from dbward.audit.sinks.senders import DeliveryError, post_signed
from dbward.config import ApprovalsConfig, Secret
from dbward.errors import ConfigError

log = logging.getLogger(__name__)


def read_secret(secret: Secret, what: str) -> str:
    if secret.env is not None:
        value = os.environ.get(secret.env)
        if not value:
            raise ConfigError(f"{what}: environment variable {secret.env} is not set")
        return value
    assert secret.file is not None
    try:
        return secret.file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {secret.file}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class Sent:
    channels: tuple[str, ...]
    slack_ref: str = ""
    failures: tuple[str, ...] = ()


class Notifiers:
    """Every configured channel; a channel that fails is reported, never fatal."""

    def __init__(self, config: ApprovalsConfig) -> None:
        self._config = config
        self._webhook_secret: bytes | None = None
        self.slack: SlackClient | None = None
        self.slack_signing_secret: str | None = None
        if config.webhook is not None:
            self._webhook_secret = read_secret(config.webhook.secret, "approvals.webhook").encode()
        if config.slack is not None:
            slack = config.slack
            self.slack = SlackClient(
                read_secret(slack.bot_token, "approvals.slack.bot_token"),
                slack.api_url,
                slack.timeout,
            )
            self.slack_signing_secret = read_secret(
                slack.signing_secret, "approvals.slack.signing_secret"
            )

    @property
    def any(self) -> bool:
        return self._webhook_secret is not None or self.slack is not None

    def _webhook(self, event: str, request: ApprovalRequest) -> None:
        webhook = self._config.webhook
        assert webhook is not None
        assert self._webhook_secret is not None
        payload = {"source": "dbward", "event": event, "request": request.as_dict()}
        if self._config.console_url:
            payload["url"] = f"{self._config.console_url.rstrip('/')}/approvals/{request.id}"
        body = json.dumps(payload, separators=(",", ":")).encode()
        post_signed(webhook.url, self._webhook_secret, body, webhook.timeout, "dbward-approvals")

    def requested(self, request: ApprovalRequest) -> Sent:
        channels: list[str] = []
        failures: list[str] = []
        ref = ""
        if self._webhook_secret is not None:
            try:
                self._webhook("approval.requested", request)
                channels.append("webhook")
            except DeliveryError as exc:
                failures.append(f"webhook: {exc}")
        if self.slack is not None and self._config.slack is not None:
            try:
                ref = self.slack.post(self._config.slack.channel, request, self._config.console_url)
                channels.append("slack")
            except (SlackError, OSError, ValueError) as exc:
                failures.append(f"slack: {exc}")
        for failure in failures:
            log.warning("approval %s: cannot notify %s", request.id, failure)
        return Sent(tuple(channels), ref, tuple(failures))

    def decided(self, request: ApprovalRequest, event: str, slack_ref: str) -> None:
        """Tell the channels the outcome (the Slack message loses its buttons)."""
        if self._webhook_secret is not None:
            try:
                self._webhook(event, request)
            except DeliveryError as exc:
                log.warning("approval %s: cannot notify webhook: %s", request.id, exc)
        if self.slack is not None and slack_ref:
            try:
                self.slack.update(slack_ref, request, self._config.console_url)
            except (SlackError, OSError, ValueError) as exc:
                log.warning("approval %s: cannot update Slack: %s", request.id, exc)
