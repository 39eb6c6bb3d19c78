"""The report's content, once, for both the HTML and the PDF renderings."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from dbward.audit.evidence.charts import Bar, bars
from dbward.audit.evidence.collect import Evidence
from dbward.audit.evidence.controls import FRAMEWORKS, SECTIONS


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""  # e.g. "showing 25 of 310"


@dataclass
class Section:
    key: str
    title: str
    summary: str
    tables: list[Table] = field(default_factory=list)
    chart: list[Bar] | None = None
    has_evidence: bool = True


@dataclass
class Report:
    framework: str
    framework_name: str
    since: str
    until: str
    generated: str
    verified: bool
    facts: list[tuple[str, str]]
    controls: Table
    sections: list[Section]


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build(evidence: Evidence, framework: str) -> Report:
    name, controls = FRAMEWORKS[framework]
    verification = evidence.verification
    sections = [
        _integrity(evidence),
        _identities(evidence),
        _blocked(evidence),
        _approvals(evidence),
        _masking(evidence),
        _logins(evidence),
        _changes(evidence),
        _activity(evidence),
    ]
    present = {s.key: s.has_evidence for s in sections}
    rows = []
    for control in controls:
        if "integrity" in control.sections and not verification.ok:
            status = "trail verification FAILED"
        elif all(present[key] for key in control.sections):
            status = "evidence in this period"
        elif any(present[key] for key in control.sections):
            status = "partial: some sections have no events in this period"
        else:
            status = "no events in this period"
        rows.append(
            (
                control.id,
                control.title,
                control.how,
                "; ".join(SECTIONS[key] for key in control.sections),
                status,
            )
        )
    facts = [
        ("Period", f"{when(evidence.since)} to {when(evidence.until)}"),
        ("Records in the period", f"{evidence.records:,}"),
        ("Statements", f"{evidence.statements:,}"),
        ("Identities", f"{len(evidence.identities):,}"),
        (
            "Refused statements",
            f"{evidence.decisions.get('deny', 0):,} by a rule or guardrail, {evidence.held:,} "
            "needing approval (review)",
        ),
        ("Values masked", f"{evidence.masked_values:,} in {evidence.masked_statements:,} results"),
        (
            "Trail verification",
            "verified" if verification.ok else f"FAILED: {verification.first_problem}",
        ),
        ("Signing key", evidence.key_id),
    ]
    return Report(
        framework,
        name,
        when(evidence.since),
        when(evidence.until),
        when(time.time()),
        verification.ok,
        facts,
        Table(("Control", "Title", "How dbward addresses it", "Evidence", "Status"), tuple(rows)),
        sections,
    )


def _integrity(e: Evidence) -> Section:
    v = e.verification
    rows = tuple(
        (
            c.chain,
            f"{c.records:,}",
            f"{c.first_seq}..{c.last_seq}" if c.records else "-",
            str(c.signed_seq),
            str(c.checkpoints),
            "ok" if c.problem is None else f"{c.problem.kind}: {c.problem.detail}",
        )
        for c in v.chains
    )
    if v.ok:
        summary = (
            f"All {v.records:,} records of the trail were re-hashed and every checkpoint's "
            f"Ed25519 signature checked against key {e.key_id}: no record was changed, "
            "removed, added, moved or cut off."
        )
    else:
        summary = (
            f"Verification FAILED: {v.first_problem}. The chains were re-hashed up to their "
            "first problem; what follows in this report may draw on altered records."
        )
    return Section(
        "integrity",
        SECTIONS["integrity"],
        summary,
        [Table(("Chain", "Records", "Seq", "Signed up to", "Checkpoints", "Result"), rows)],
    )


def _identities(e: Evidence) -> Section:
    people = sorted(e.identities.values(), key=lambda a: (-a.statements, a.identity))
    headers = (
        "Identity", "Kind", "Groups", "Verified by", "Connections", "Sessions", "Statements",
        "Writes", "Refused", "Last seen",
    )  # fmt: skip
    rows = tuple(
        (
            a.identity,
            a.kind,
            ", ".join(sorted(a.groups)) or "-",
            ", ".join(sorted(a.providers)) or "-",
            ", ".join(sorted(a.connections)) or "-",
            f"{len(a.sessions):,}",
            f"{a.statements:,}",
            f"{a.writes:,}",
            f"{a.denied:,}",
            when(a.last),
        )
        for a in people[:100]
    )
    note = f"showing 100 of {len(people)}" if len(people) > 100 else ""
    return Section(
        "identities",
        SECTIONS["identities"],
        f"{_n(len(people), 'identity', 'identities')} connected or ran statements; each was "
        "verified by its identity provider or a dbward token at sign-in.",
        [Table(headers, rows, note)],
        has_evidence=bool(people),
    )


def _blocked(e: Evidence) -> Section:
    by_rule = tuple((rule, f"{count:,}") for rule, count in e.blocked_by_rule.most_common())
    samples = tuple(
        (when(b.ts), b.identity, b.connection, b.decision, b.rule, _short(b.statement))
        for b in e.blocked
    )
    total = sum(e.blocked_by_rule.values())
    return Section(
        "blocked",
        SECTIONS["blocked"],
        f"{total:,} statements were refused or held by policy and guardrails (decided on "
        "PostgreSQL's own parse of each statement).",
        [
            Table(("Rule", "Statements"), by_rule),
            Table(
                ("When", "Identity", "Connection", "Decision", "Rule", "Statement"),
                samples,
                f"showing {len(samples)} of {total}" if total > len(samples) else "",
            ),
        ],
        has_evidence=total > 0,
    )


def _approvals(e: Evidence) -> Section:
    rows = tuple(
        (when(a["ts"]), a["kind"], str(a.get("identity", "-")), _short(str(a.get("statement", ""))))
        for a in e.approvals[:50]
    )
    return Section(
        "approvals",
        SECTIONS["approvals"],
        f"{_n(e.held, 'statement')} needed approval (decision review); "
        f"{_n(len(e.approvals), 'approval event')} (requested, approved, rejected, expired) "
        "were recorded.",
        [Table(("When", "Event", "By", "Statement"), rows)] if rows else [],
        has_evidence=bool(e.approvals or e.held),
    )


def _masking(e: Evidence) -> Section:
    entities = tuple((k, f"{v:,}") for k, v in e.masked_entities.most_common())
    columns = tuple((k, f"{v:,}") for k, v in e.masked_columns.most_common(30))
    return Section(
        "masking",
        SECTIONS["masking"],
        f"{e.masked_values:,} values were masked in {e.masked_statements:,} results before "
        "they reached the client; no unmasked value is stored in the trail.",
        [Table(("Entity type", "Values masked"), entities), Table(("Column", "Values"), columns)],
        has_evidence=e.masked_values > 0,
    )


def _logins(e: Evidence) -> Section:
    total = sum(e.failed_logins.values())
    return Section(
        "logins",
        SECTIONS["logins"],
        f"{total:,} sign-in attempts failed.",
        [
            Table(("Cause", "Attempts"), tuple((k, f"{v:,}") for k, v in e.failed_logins.items())),
            Table(
                ("When", "User", "From", "Reason"),
                tuple(
                    (when(s["ts"]), str(s["user"]), str(s["source"]), _short(str(s["reason"])))
                    for s in e.failed_login_samples
                ),
            ),
        ],
        has_evidence=True,  # none failing is evidence too
    )


def _changes(e: Evidence) -> Section:
    reloads = tuple(
        (
            when(r["ts"]),
            "accepted" if r.get("accepted") else "rejected (the previous policy stayed)",
            _short(
                f"{r.get('reason', '')}: {r.get('rules', '?')} rule(s), sha256 "
                f"{str(r.get('sha256', ''))[:12]}"
                if r.get("accepted")
                else f"{r.get('reason', '')}: {r.get('error', '')}"
            ),
        )
        for r in e.policy_reloads[:50]
    )
    admin = tuple(
        (
            when(a["ts"]),
            a["kind"],
            a["identity"],
            _short(str(a.get("name") or a.get("format") or "")),
        )
        for a in e.admin_actions[:50]
    )
    return Section(
        "changes",
        SECTIONS["changes"],
        f"{len(e.policy_reloads)} policy reloads and {len(e.admin_actions)} administrative "
        "actions (tokens created or revoked, trail exports).",
        [
            Table(("When", "Outcome", "Detail"), reloads),
            Table(("When", "Action", "By", "Subject"), admin),
        ],
        has_evidence=bool(e.policy_reloads or e.admin_actions),
    )


def _activity(e: Evidence) -> Section:
    series = bars(e.activity, e.since, e.until, e.bucket_seconds)
    unit = "hour" if e.bucket_seconds < 86400 else "day"
    agents = tuple((k, f"{v:,}") for k, v in e.agents.most_common(20))
    return Section(
        "activity",
        SECTIONS["activity"],
        f"Statements per {unit}, by decision. {e.statements:,} in all.",
        [Table(("Agent / model / pipeline", "Statements"), agents)] if agents else [],
        chart=series,
        has_evidence=e.statements > 0,
    )
