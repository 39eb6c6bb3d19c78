"""The policy in force for one dbward process, reloaded when its file changes or on SIGHUP.

A file that does not load (bad YAML, a rule that does not validate) is
rejected with a logged error naming the line, and the previous policy stays
in force: a typo never opens or closes the gates by accident. Each reload,
accepted or rejected, is written to the audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.writer import AuditWriter
from dbward.policy.loader import PolicyError, default_policy, load_policy
from dbward.policy.model import Policy

log = logging.getLogger(__name__)


class PolicySource:
    def __init__(self, path: Path | None, audit: AuditWriter | None = None) -> None:
        self.path = path
        self.audit = audit
        self._stamp: tuple[int, int] | None = None
        self.digest = ""
        # The first load is strict: dbward does not start with a broken policy.
        self.policy: Policy = load_policy(path) if path is not None else default_policy()
        if path is not None:
            self._stamp = self._file_stamp()
            self.digest = _digest(path)

    def _file_stamp(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def changed(self) -> bool:
        return self.path is not None and self._file_stamp() != self._stamp

    def reload(self, reason: str) -> bool:
        """Load the file again; True if the new policy is in force."""
        if self.path is None:
            return False
        self._stamp = self._file_stamp()
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            log.error("policy %s rejected, the previous policy stays in force: %s", self.path, exc)
            self._record(reason, accepted=False, error=exc.message)
            return False
        self.policy = policy
        self.digest = _digest(self.path)
        log.info("policy %s reloaded (%s): %d rule(s)", self.path, reason, len(policy.rules))
        self._record(reason, accepted=True)
        return True

    def _record(self, reason: str, *, accepted: bool, error: str | None = None) -> None:
        if self.audit is None:
            return
        data = {"file": str(self.path), "reason": reason, "accepted": accepted}
        if accepted:
            data["sha256"] = self.digest
            data["rules"] = len(self.policy.rules)
        if error:
            data["error"] = error
        try:
            self.audit.record(AuditEvent(EventKind.POLICY_RELOAD, session_id="-", data=data))
        except OSError as exc:
            log.error("cannot record the policy reload in the audit trail: %s", exc)

    async def watch(self, interval: float) -> None:
        """Reload whenever the file changes, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload("file changed")


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
