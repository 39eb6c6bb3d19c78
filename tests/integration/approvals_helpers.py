"""Shared by the approvals tests: a dbward with a review rule and its API, and callers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dbward.identity.models import IdentityKind
from tests.conftest import Dbward, UpstreamDb, free_port, start_dbward

REVIEW_POLICY = """\
version: 1
rules:
  - name: deletes-need-approval
    match: {command: DELETE}
    action: review
    approvers: {group: [dba], quorum: 1}
  - name: truncate-needs-two
    match: {command: TRUNCATE}
    action: review
    approvers: {group: [dba], quorum: 2, reason_required: true}
audit:
  statement_literals: keep
"""


def start_approvals_dbward(
    tmp: Path,
    upstream: UpstreamDb,
    *,
    policy: str = REVIEW_POLICY,
    wait: float = 30.0,
    extra: dict[str, Any] | None = None,
    connections: dict[str, Any] | None = None,
) -> tuple[Dbward, str]:
    """dbward with the API on a free port; returns it and the API's base URL."""
    api_port = free_port()
    config: dict[str, Any] = {
        "api": {"enabled": True, "port": api_port},
        "approvals": {"wait": wait, "poll_interval": 0.1},
    }
    config.update(extra or {})
    server = start_dbward(
        tmp, upstream, extra_config=config, policy=policy, connections=connections
    )
    return server, f"http://127.0.0.1:{api_port}"


def people(server: Dbward) -> dict[str, str]:
    """Service tokens (people sign in with OIDC; tokens stand in for them here): alice
    (developer, asks), bob and carol (dba, approve), dave (in no approver group)."""
    return {
        "alice": server.token("alice", IdentityKind.SERVICE, ("dev",)),
        "bob": server.token("bob", IdentityKind.SERVICE, ("dba",)),
        "carol": server.token("carol", IdentityKind.SERVICE, ("dba",)),
        "dave": server.token("dave", IdentityKind.SERVICE, ("sales",)),
    }


def api(
    base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One API call; (status, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - a local test server
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def pending(base: str, token: str) -> list[dict[str, Any]]:
    status, body = api(base, token, "GET", "/api/v1/approvals?status=pending")
    assert status == 200, body
    return list(body["requests"])


def cli(base: str, token: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dbward <args>`` as the holder of ``token`` (DBWARD_TOKEN), against ``base``."""
    env = {**os.environ, "DBWARD_TOKEN": token, "DBWARD_API": base}
    env["XDG_CONFIG_HOME"] = str(cwd / "xdg")
    return subprocess.run(
        [sys.executable, "-m", "dbward", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )
