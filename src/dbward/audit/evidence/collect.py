"""Gathering the evidence for a period in one pass over its records."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dbward.audit.store import AuditStore
from dbward.audit.verify import Verification, verify_store

SAMPLES = 25  # rows shown per list (the counts cover everything)


@dataclass
class IdentityAccess:
    identity: str
    kind: str
    groups: set[str] = field(default_factory=set)
    providers: set[str] = field(default_factory=set)
    connections: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    statements: int = 0
    denied: int = 0
    writes: int = 0
    first: float = 0.0
    last: float = 0.0


@dataclass
class Blocked:
    ts: float
    identity: str
    connection: str
    rule: str
    decision: str
    statement: str


@dataclass
class Evidence:
    since: float
    until: float
    verification: Verification
    key_id: str
    records: int = 0
    statements: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    identities: dict[str, IdentityAccess] = field(default_factory=dict)
    blocked_by_rule: Counter[str] = field(default_factory=Counter)
    blocked: list[Blocked] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0  # statements decided 'review'
    masked_statements: int = 0
    masked_values: int = 0
    masked_entities: Counter[str] = field(default_factory=Counter)
    masked_columns: Counter[str] = field(default_factory=Counter)
    failed_logins: Counter[str] = field(default_factory=Counter)
    failed_login_samples: list[dict[str, Any]] = field(default_factory=list)
    policy_reloads: list[dict[str, Any]] = field(default_factory=list)
    admin_actions: list[dict[str, Any]] = field(default_factory=list)
    agents: Counter[str] = field(default_factory=Counter)
    activity: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    bucket_seconds: int = 86400


def _data(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        loaded = json.loads(value or "{}")
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def collect(
    store: AuditStore, public_key: Ed25519PublicKey, key_id: str, since: float, until: float
) -> Evidence:
    """Everything the report shows for [since, until), and the whole store's verification."""
    evidence = Evidence(since, until, verify_store(store, public_key), key_id)
    evidence.bucket_seconds = 3600 if until - since <= 3 * 86400 else 86400
    rows = store.query(
        "SELECT kind, identity, identity_kind, target, session_id, ts, data, source FROM records"
        " WHERE ts >= ? AND ts < ? ORDER BY ts",
        (since, until),
    )
    for kind, identity, identity_kind, target, session, ts, raw, source in rows:
        evidence.records += 1
        data = _data(raw)
        who = identity or "-"
        if kind == "connection.start":
            access = _access(evidence, who, identity_kind, ts)
            access.groups.update(data.get("groups") or [])
            if data.get("identity_provider"):
                access.providers.add(str(data["identity_provider"]))
            access.sessions.add(session)
            if target:
                access.connections.add(target)
        elif kind == "statement":
            _statement(evidence, who, identity_kind, target, ts, data)
        elif kind == "login.failed":
            reason = str(data.get("reason") or "unknown")
            evidence.failed_logins[login_cause(reason)] += 1
            if len(evidence.failed_login_samples) < SAMPLES:
                evidence.failed_login_samples.append(
                    {"ts": ts, "user": data.get("user"), "source": source, "reason": reason}
                )
        elif kind == "policy.reload":
            evidence.policy_reloads.append({**data, "ts": ts})
        elif kind.startswith("approval."):
            evidence.approvals.append({**data, "ts": ts, "kind": kind, "identity": who})
        elif kind in ("token.created", "token.revoked", "audit.exported"):
            evidence.admin_actions.append({**data, "ts": ts, "kind": kind, "identity": who})
    return evidence


_DETAIL = re.compile(r":| on \d| \(|,")


def login_cause(reason: str) -> str:
    """What kind of failure a sign-in's reason names, without its particulars (times, ids,
    names): 'token revoked on 2026-11-02 ... (tok_1, x)' -> 'token revoked'."""
    match = _DETAIL.search(reason)
    return (reason[: match.start()] if match else reason).strip()[:80] or "unknown"


def _access(evidence: Evidence, who: str, kind: str | None, ts: float) -> IdentityAccess:
    access = evidence.identities.get(who)
    if access is None:
        access = evidence.identities[who] = IdentityAccess(who, kind or "-", first=ts, last=ts)
    access.first = min(access.first, ts)
    access.last = max(access.last, ts)
    return access


def _statement(
    evidence: Evidence,
    who: str,
    identity_kind: str | None,
    target: str | None,
    ts: float,
    data: dict[str, Any],
) -> None:
    evidence.statements += 1
    decision = str(data.get("decision") or "allow")
    evidence.decisions[decision] += 1
    evidence.activity[int(ts // evidence.bucket_seconds)][decision] += 1
    access = _access(evidence, who, identity_kind, ts)
    access.statements += 1
    if target:
        access.connections.add(target)
    if decision != "allow":
        access.denied += 1
        evidence.held += decision == "review"
        rule = str(data.get("rule") or "-")
        evidence.blocked_by_rule[rule] += 1
        if len(evidence.blocked) < SAMPLES:
            evidence.blocked.append(
                Blocked(ts, who, target or "-", rule, decision, str(data.get("statement", "")))
            )
    if (data.get("lineage") or {}).get("write"):
        access.writes += 1
    masked = data.get("masked")
    if isinstance(masked, dict):
        evidence.masked_statements += 1
        evidence.masked_values += int(masked.get("values") or 0)
        evidence.masked_entities.update(
            {str(k): int(v) for k, v in (masked.get("entities") or {}).items()}
        )
        for column, counts in (masked.get("columns") or {}).items():
            total = sum(int(v) for v in counts.values()) if isinstance(counts, dict) else 0
            evidence.masked_columns[str(column)] += total
    agent = data.get("agent")
    if isinstance(agent, dict):
        label = agent.get("agent") or agent.get("model") or agent.get("pipeline")
        if label:
            evidence.agents[str(label)] += 1
