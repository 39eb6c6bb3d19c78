"""Audit records as text lines for ``dbward audit tail``."""

from __future__ import annotations

import datetime
import json

from dbward.audit.events import EventKind, StoredEvent


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _statement(data: dict[str, object]) -> str:
    text = " ".join(str(data.get("statement", "")).split())
    if len(text) > 200:
        text = text[:197] + "..."
    outcome = f"ERROR {data['sqlstate']}" if data.get("sqlstate") else f"rows={data.get('rows')}"
    line = f"[{data.get('protocol')}] {text}  ({outcome}, {data.get('duration_ms')} ms)"
    agent = data.get("agent")
    if isinstance(agent, dict) and agent:
        line += "  agent: " + " ".join(f"{k}={v}" for k, v in agent.items())
    return line


def render_event(stored: StoredEvent) -> str:
    e = stored.event
    who = e.identity or "-"
    if e.identity_kind:
        who += f" ({e.identity_kind})"
    head = f"{stored.id:>7} {_when(e.ts)} {e.kind.value:<16} {e.session_id} {who} -> {e.target}"
    data = e.data
    if e.kind == EventKind.STATEMENT:
        return f"{head}: {_statement(data)}"
    if e.kind == EventKind.STATEMENT_STARTED:
        text = " ".join(str(data.get("statement", "")).split())[:200]
        return f"{head}: [{data.get('protocol')}] {text}  (results streaming)"
    if e.kind == EventKind.LOGIN_FAILED:
        return f"{head}: user={data.get('user')!r} from {e.source}: {data.get('reason')}"
    if e.kind == EventKind.CONNECTION_START:
        return (
            f"{head}: from {e.source} app={data.get('client_application')!r} "
            f"tls={data.get('tls')} via {data.get('identity_provider')}"
        )
    if e.kind == EventKind.CONNECTION_END:
        return (
            f"{head}: {data.get('reason')} after {data.get('duration_s')} s, "
            f"{data.get('statements')} statement(s)"
        )
    return f"{head}: from {e.source}"


def render_json(stored: StoredEvent) -> str:
    e = stored.event
    return json.dumps(
        {
            "id": stored.id,
            "chain": stored.chain,
            "seq": stored.seq,
            "ts": e.ts,
            "kind": e.kind.value,
            "session_id": e.session_id,
            "identity": e.identity,
            "identity_kind": e.identity_kind,
            "target": e.target,
            "source": e.source,
            "data": e.data,
        },
        separators=(",", ":"),
    )
