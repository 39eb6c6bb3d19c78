"""What every session of one dbward process shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbward.approvals.service import ApprovalService
from dbward.audit.writer import AuditWriter
from dbward.config import Config
from dbward.identity.authenticator import Authenticator
from dbward.keyring import Keyring
from dbward.proxy.approval_watch import ApprovalWatcher
from dbward.proxy.cancel import CancelRegistry
from dbward.proxy.catalog import Catalogs
from dbward.proxy.policy_source import PolicySource


@dataclass(slots=True)
class ProxyContext:
    config: Config
    authenticator: Authenticator
    audit: AuditWriter
    policy: PolicySource
    keyring: Keyring
    catalogs: Catalogs
    cancels: CancelRegistry = field(default_factory=CancelRegistry)
    cancel_sockets: list[Path] = field(default_factory=list)  # per worker, when several
    draining: bool = False
    approvals: ApprovalService | None = None
    # session id -> what cancels the statement it holds for approval (a CancelRequest)
    held: dict[str, Callable[[], None]] = field(default_factory=dict)
    watcher: ApprovalWatcher | None = None
    # MySQL: the connection id a client was greeted with -> its session (for KILL)
    mysql_sessions: dict[int, Any] = field(default_factory=dict)
    mysql_version: str | None = None  # the first MySQL upstream's, for greetings
    mysql_views: Any = None  # ViewRenames: what MySQL views rename, per connection
