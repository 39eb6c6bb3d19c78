"""Evidence reports (dbward.audit.evidence): what collect() counts for a period, how build()
marks each framework's controls, and the report rendered as HTML (with its SVG chart) and
as a PDF whose pages are rendered and read back with pypdfium2.

One trail, written through AuditWriter, holds two days of a realistic mix: a person, a
service and an agent connecting with their groups and identity providers; allowed,
written, refused and held statements; masked results; failed sign-ins; policy reloads;
operator actions; and records just outside the period [SINCE, UNTIL).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pypdfium2
import pytest

from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.evidence.charts import bars, svg
from dbward.audit.evidence.collect import Evidence, collect
from dbward.audit.evidence.controls import FRAMEWORKS, SECTIONS
from dbward.audit.evidence.render import html, pdf
from dbward.audit.evidence.report import Report, Section, build
from dbward.audit.signing import Signer
from dbward.audit.store import SqliteAuditStore
from dbward.audit.writer import AuditWriter

SIGNER = Signer(b"evidence-test audit seed")
CHAIN = "evidence-0"
HOUR, DAY = 3600, 86400
DAY1 = datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC).timestamp()
SINCE, UNTIL = DAY1, DAY1 + 2 * DAY  # two whole days: hourly buckets

ADA, SVC, BOT = "ada@example.com", "svc-billing", "bot-reporter"
OPERATOR = "os:operator"
GUARDRAIL = "guardrail:unbounded-write"
LEDGER_RULE = "ledger-append-only"
REVIEW_RULE = "ddl-needs-approval"
# refused, so it is listed in the report: markup to escape, and Japanese that the PDF's
# core fonts (Latin-1) cannot show
HOSTILE = "INSERT INTO ledger (memo) VALUES ('<script>alert(1)</script><b>Zoë 日本語</b>')"
HOSTILE_USER = "<i>mallory</i>"  # a client chooses the user name of a failed sign-in
UNKNOWN = "unknown token: it was never issued by this dbward"
NOT_A_TOKEN = "unknown token: this is not a dbward token"
PASSWORD = (
    "password authentication is not accepted: give an OIDC token or a dbward token as the password"
)
CONTROL_IDS = {
    "soc2": ["CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC8.1"],
    "iso27001": ["A.5.15", "A.8.2", "A.8.5", "A.8.11", "A.8.15", "A.8.16"],
    "nist-800-53": ["AC-2", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10"],
}
EVIDENCE = "evidence in this period"
PARTIAL = "partial: some sections have no events in this period"
NONE = "no events in this period"
FAILED = "trail verification FAILED"


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    """A time on day 1 or 2 of the period (day 0 is the day before it)."""
    return DAY1 + (day - 1) * DAY + hour * HOUR + minute * 60 + second


def start(
    who: str, kind: str, session: str, target: str, ts: float, groups: list[str], provider: str
) -> AuditEvent:
    return AuditEvent(
        EventKind.CONNECTION_START,
        session,
        identity=who,
        identity_kind=kind,
        target=target,
        source="10.1.2.3:50000",
        data={"identity_provider": provider, "groups": groups, "user": who, "tls": "TLSv1.3"},
        ts=ts,
    )


def statement(
    who: str,
    kind: str,
    session: str,
    target: str,
    ts: float,
    text: str,
    decision: str = "allow",
    rule: str | None = None,
    **extra: object,
) -> AuditEvent:
    data: dict[str, object] = {
        "statement": text,
        "protocol": "simple",
        "duration_ms": 0.4,
        "rows": 1,
        "tags": [],
        "decision": decision,
        "rule": rule,
    }
    if decision != "allow":
        data |= {"rows": 0, "reason": f"refused by {rule}", "sqlstate": "42501"}
    return AuditEvent(
        EventKind.STATEMENT,
        session,
        identity=who,
        identity_kind=kind,
        target=target,
        source="10.1.2.3:50000",
        data=data | extra,
        ts=ts,
    )


def failed_login(user: str, reason: str, ts: float) -> AuditEvent:
    return AuditEvent(
        EventKind.LOGIN_FAILED,
        f"failed-{ts}",
        source="203.0.113.7:40000",
        data={"user": user, "reason": reason, "sqlstate": "28000"},
        ts=ts,
    )


def operator(action: EventKind, ts: float, **data: object) -> AuditEvent:
    return AuditEvent(action, "cli", identity=OPERATOR, source="cli", data=data, ts=ts)


def masked(entities: dict[str, int], columns: dict[str, dict[str, int]]) -> dict[str, object]:
    return {"values": sum(entities.values()), "entities": entities, "columns": columns}


def ada(
    session: str, target: str, ts: float, text: str, *decided: str, **extra: object
) -> AuditEvent:
    return statement(ADA, "human", session, target, ts, text, *decided, **extra)


def svc(ts: float, text: str, *decided: str, **extra: object) -> AuditEvent:
    return statement(SVC, "service", "s1", "billing", ts, text, *decided, **extra)


def bot(ts: float, text: str, *decided: str, **extra: object) -> AuditEvent:
    extra.setdefault("agent", {"agent": "reporter", "model": "gpt-4o"})
    return statement(BOT, "agent", "a1", "app", ts, text, *decided, **extra)


EMAIL_COLUMN, NOTES_COLUMN = "public.people.email", "public.people.notes"
UPDATE_LINEAGE = {"read": {"public.people": ["id"]}, "write": {"public.people": ["name"]}}
INSERT_LINEAGE = {"write": {"public.ledger": ["amount"]}}

BEFORE = [  # just before SINCE: not in the period
    ada("h0", "app", SINCE - 1, "SELECT 'too early'", "deny", "too-early-rule"),
    failed_login("early-bird", UNKNOWN, SINCE - 0.001),
]
DAY_ONE = [
    start(ADA, "human", "h1", "app", at(1, 9), ["eng", "dba"], "https://login.example.com"),
    ada("h1", "app", at(1, 9, 0, 10), "SELECT id, name FROM people"),
    ada("h1", "app", at(1, 9, 5), "UPDATE people SET name = 'A' WHERE id = 1",
        lineage=UPDATE_LINEAGE),
    ada("h1", "app", at(1, 9, 10), "DELETE FROM people", "deny", GUARDRAIL),
    ada("h1", "app", at(1, 9, 20), "SELECT email FROM people",
        masked=masked({"email": 3}, {EMAIL_COLUMN: {"email": 3}})),
    AuditEvent(EventKind.CONNECTION_END, "h1", identity=ADA, identity_kind="human",
               target="app", ts=at(1, 9, 30)),
    start(SVC, "service", "s1", "billing", at(1, 10), ["billing"], "token"),
    svc(at(1, 10, 1), "INSERT INTO ledger (amount) VALUES (10)", lineage=INSERT_LINEAGE),
    svc(at(1, 10, 2), "INSERT INTO ledger (amount) VALUES (20)", lineage=INSERT_LINEAGE),
    svc(at(1, 10, 3), HOSTILE, "deny", LEDGER_RULE),
    failed_login(SVC, UNKNOWN, at(1, 10, 30)),
    AuditEvent(EventKind.POLICY_RELOAD, "-", ts=at(1, 11),
               data={"file": "policy.yaml", "reason": "file changed", "accepted": True,
                     "sha256": "ab" * 32, "rules": 3}),
    AuditEvent(EventKind.POLICY_RELOAD, "-", ts=at(1, 11, 30),
               data={"file": "policy.yaml", "reason": "file changed", "accepted": False,
                     "error": "rules[0]: unknown action 'permit'"}),
    operator(EventKind.TOKEN_CREATED, at(1, 11, 45), token="tok_bot", name=BOT, kind="agent",
             groups=["agents"]),
]  # fmt: skip
DAY_TWO = [
    start(BOT, "agent", "a1", "app", at(2, 8), ["agents"], "token"),
    bot(at(2, 8, 1), "SELECT count(*) FROM orders"),
    bot(at(2, 8, 2), "SELECT count(*) FROM orders WHERE paid"),
    bot(at(2, 8, 3), "SELECT sum(total) FROM orders"),
    bot(at(2, 8, 4), "DROP TABLE orders", "review", REVIEW_RULE),
    bot(at(2, 8, 5), "SELECT email, notes FROM people", agent={"pipeline": "nightly-etl"},
        masked=masked({"email": 1, "phone": 1},
                      {EMAIL_COLUMN: {"email": 1}, NOTES_COLUMN: {"phone": 1}})),
    start(ADA, "human", "h2", "reports", at(2, 9), ["eng", "dba"], "https://login.example.com"),
    ada("h2", "reports", at(2, 9, 1), "SELECT * FROM monthly_totals"),
    failed_login(ADA, PASSWORD, at(2, 9, 10)),
    failed_login(HOSTILE_USER, NOT_A_TOKEN, at(2, 9, 11)),
    operator(EventKind.TOKEN_REVOKED, at(2, 12), token="tok_bot", name=BOT),
    operator(EventKind.AUDIT_EXPORTED, at(2, 13), format="bundle"),
    svc(UNTIL - 0.001, "SELECT 1"),  # the last moment of the period
]  # fmt: skip
AFTER = [  # at UNTIL: not in the period
    start("late-user", "service", "l1", "app", UNTIL, ["late"], "token"),
    statement("late-user", "service", "l1", "app", UNTIL, "SELECT email FROM people",
              masked=masked({"email": 7}, {EMAIL_COLUMN: {"email": 7}})),
    operator(EventKind.TOKEN_CREATED, UNTIL + 1, token="tok_late", name="late-user"),
]  # fmt: skip
IN_PERIOD = DAY_ONE + DAY_TWO


def write_trail(path: Path, events: list[AuditEvent]) -> None:
    """Chain, store and sign ``events`` into the SQLite store at ``path``."""

    async def write() -> None:
        writer = AuditWriter(
            SqliteAuditStore(path),
            path.parent / "journal",
            chain=CHAIN,
            signer=SIGNER,
            store_interval=3600,  # only this function stores
            checkpoint_interval=0,  # every store is signed
        )
        for event in events:
            writer.record(event)
        writer.store_pending()
        await writer.close()

    asyncio.run(write())


def gather(path: Path, since: float = SINCE, until: float = UNTIL) -> Evidence:
    store = SqliteAuditStore(path)
    try:
        return collect(store, SIGNER.public, SIGNER.key_id, since, until)
    finally:
        store.close()


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evidence") / "audit.db"
    write_trail(path, BEFORE + DAY_ONE + DAY_TWO + AFTER)
    return path


@pytest.fixture(scope="module")
def evidence(trail: Path) -> Evidence:
    return gather(trail)


@pytest.fixture(scope="module")
def reports(evidence: Evidence) -> dict[str, Report]:
    return {framework: build(evidence, framework) for framework in FRAMEWORKS}


@pytest.fixture
def tampered(trail: Path, tmp_path: Path) -> Path:
    """A copy of the trail whose refused DELETE was rewritten (its hash left as it was)."""
    path = tmp_path / "audit.db"
    shutil.copy(trail, path)
    with closing(sqlite3.connect(path)) as db:
        changed = db.execute(
            "UPDATE records SET line = replace(line, 'DELETE FROM people', "
            "'DELETE FROM people WHERE false') WHERE line LIKE '%DELETE FROM people%'"
        ).rowcount
        db.commit()
    assert changed == 1
    return path


def section(report: Report, key: str) -> Section:
    (found,) = [s for s in report.sections if s.key == key]
    return found


def statuses(report: Report) -> dict[str, str]:
    return {row[0]: row[4] for row in report.controls.rows}


def hour_label(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%m-%d %H:00")


# --------------------------------------------------------------------------- collect()


def test_the_period_counts_records_statements_and_decisions(evidence: Evidence) -> None:
    assert (evidence.since, evidence.until) == (SINCE, UNTIL)
    assert evidence.records == len(IN_PERIOD) == 27
    assert evidence.statements == 14
    assert evidence.decisions == Counter({"allow": 11, "deny": 2, "review": 1})
    assert evidence.held == 1
    assert evidence.verification.ok
    assert evidence.key_id == SIGNER.key_id


def test_each_identity_with_its_groups_providers_connections_and_sessions(
    evidence: Evidence,
) -> None:
    found = {
        name: (
            a.kind,
            a.groups,
            a.providers,
            a.connections,
            a.sessions,
            a.statements,
            a.denied,
            a.writes,
        )
        for name, a in evidence.identities.items()
    }
    assert found == {
        ADA: (
            "human",
            {"eng", "dba"},
            {"https://login.example.com"},
            {"app", "reports"},
            {"h1", "h2"},
            5,
            1,
            1,
        ),
        SVC: ("service", {"billing"}, {"token"}, {"billing"}, {"s1"}, 4, 1, 2),
        # the statement needing review did not run: it counts as refused (and in .held)
        BOT: ("agent", {"agents"}, {"token"}, {"app"}, {"a1"}, 5, 1, 0),
    }
    assert (evidence.identities[ADA].first, evidence.identities[ADA].last) == (
        at(1, 9),
        at(2, 9, 1),
    )
    assert evidence.identities[SVC].last == UNTIL - 0.001
    assert OPERATOR not in evidence.identities  # operators act at the command line


def test_refusals_by_rule_with_samples(evidence: Evidence) -> None:
    assert evidence.blocked_by_rule == Counter({GUARDRAIL: 1, LEDGER_RULE: 1, REVIEW_RULE: 1})
    samples = [
        (b.identity, b.connection, b.decision, b.rule, b.statement) for b in evidence.blocked
    ]
    assert samples == [
        (ADA, "app", "deny", GUARDRAIL, "DELETE FROM people"),
        (SVC, "billing", "deny", LEDGER_RULE, HOSTILE),
        (BOT, "app", "review", REVIEW_RULE, "DROP TABLE orders"),
    ]
    assert evidence.approvals == []  # no approval.* events: nothing was approved


def test_masking_totals_by_entity_and_column(evidence: Evidence) -> None:
    assert evidence.masked_statements == 2
    assert evidence.masked_values == 5
    assert evidence.masked_entities == Counter({"email": 4, "phone": 1})
    assert evidence.masked_columns == Counter({EMAIL_COLUMN: 4, NOTES_COLUMN: 1})


def test_failed_logins_by_cause(evidence: Evidence) -> None:
    assert evidence.failed_logins == Counter(
        {"unknown token": 2, "password authentication is not accepted": 1}
    )
    assert [(s["user"], s["reason"], s["source"]) for s in evidence.failed_login_samples] == [
        (SVC, UNKNOWN, "203.0.113.7:40000"),
        (ADA, PASSWORD, "203.0.113.7:40000"),
        (HOSTILE_USER, NOT_A_TOKEN, "203.0.113.7:40000"),
    ]


def test_policy_reloads_admin_actions_and_agents(evidence: Evidence) -> None:
    assert [(r["accepted"], r["ts"]) for r in evidence.policy_reloads] == [
        (True, at(1, 11)),
        (False, at(1, 11, 30)),
    ]
    assert [(a["kind"], a["identity"], a.get("name")) for a in evidence.admin_actions] == [
        ("token.created", OPERATOR, BOT),
        ("token.revoked", OPERATOR, BOT),
        ("audit.exported", OPERATOR, None),
    ]
    # labelled by agent, else model, else pipeline
    assert evidence.agents == Counter({"reporter": 4, "nightly-etl": 1})


def test_activity_is_bucketed_by_hour_for_two_days(evidence: Evidence) -> None:
    assert evidence.bucket_seconds == HOUR
    activity = {hour_label(k * HOUR): dict(v) for k, v in evidence.activity.items()}
    assert activity == {
        "03-02 09:00": {"allow": 3, "deny": 1},
        "03-02 10:00": {"allow": 2, "deny": 1},
        "03-03 08:00": {"allow": 4, "review": 1},
        "03-03 09:00": {"allow": 1},
        "03-03 23:00": {"allow": 1},
    }


def test_activity_is_bucketed_by_hour_up_to_three_days_and_by_day_beyond(trail: Path) -> None:
    assert gather(trail, SINCE, SINCE + 3 * DAY).bucket_seconds == HOUR
    longer = gather(trail, SINCE - 2 * DAY, SINCE + 2 * DAY)  # takes in the day before
    assert longer.bucket_seconds == DAY
    by_day = {
        datetime.datetime.fromtimestamp(k * DAY, datetime.UTC).date().isoformat(): dict(v)
        for k, v in longer.activity.items()
    }
    assert by_day == {
        "2026-03-01": {"deny": 1},
        "2026-03-02": {"allow": 5, "deny": 2},
        "2026-03-03": {"allow": 6, "review": 1},
    }
    assert longer.blocked_by_rule["too-early-rule"] == 1


def test_records_outside_the_period_are_left_out(trail: Path, evidence: Evidence) -> None:
    everything = gather(trail, SINCE - DAY, UNTIL + DAY)
    assert everything.records == len(BEFORE + IN_PERIOD + AFTER)
    assert {"late-user", ADA} <= set(everything.identities)

    assert "late-user" not in evidence.identities  # starts exactly at UNTIL
    assert "too-early-rule" not in evidence.blocked_by_rule  # one second before SINCE
    assert "early-bird" not in [s["user"] for s in evidence.failed_login_samples]
    assert "tok_late" not in [a.get("token") for a in evidence.admin_actions]
    assert evidence.masked_values == 5  # not the 7 masked at UNTIL

    only_day_two = gather(trail, at(2, 0), UNTIL)
    assert only_day_two.statements == 7
    assert set(only_day_two.identities) == {ADA, BOT, SVC}


# --------------------------------------------------------------------------- build()


def test_each_framework_lists_its_controls_with_their_sections(
    reports: dict[str, Report],
) -> None:
    for framework, report in reports.items():
        assert [row[0] for row in report.controls.rows] == CONTROL_IDS[framework]
        assert report.framework == framework
        for control in FRAMEWORKS[framework][1]:
            assert set(control.sections) <= set(SECTIONS)
            (row,) = [r for r in report.controls.rows if r[0] == control.id]
            assert row[3] == "; ".join(SECTIONS[key] for key in control.sections)
    assert reports["soc2"].framework_name.startswith("SOC 2")
    assert reports["iso27001"].framework_name.startswith("ISO/IEC 27001:2022")
    assert reports["nist-800-53"].framework_name.startswith("NIST SP 800-53")


def test_with_the_whole_mix_every_control_has_evidence(reports: dict[str, Report]) -> None:
    for framework, report in reports.items():
        assert report.verified
        assert statuses(report) == dict.fromkeys(CONTROL_IDS[framework], EVIDENCE)


def test_a_period_without_held_statements_gives_partial_evidence(trail: Path) -> None:
    day_one = gather(trail, SINCE, at(2, 0))  # refusals, but nothing held for approval
    assert day_one.held == 0
    soc2 = statuses(build(day_one, "soc2"))
    assert soc2["CC6.3"] == PARTIAL  # blocked yes, approvals no, changes yes
    assert soc2["CC6.1"] == soc2["CC8.1"] == EVIDENCE
    assert statuses(build(day_one, "iso27001"))["A.8.2"] == PARTIAL
    assert statuses(build(day_one, "nist-800-53"))["AC-6"] == PARTIAL


def test_an_empty_period_has_no_events_but_a_verified_trail(trail: Path) -> None:
    quiet = gather(trail, UNTIL + DAY, UNTIL + 2 * DAY)
    assert (quiet.records, quiet.statements, quiet.identities) == (0, 0, {})
    assert statuses(build(quiet, "soc2")) == {
        "CC6.1": PARTIAL,  # the trail's verification is evidence; no identity is
        "CC6.2": NONE,
        "CC6.3": NONE,
        "CC7.2": PARTIAL,  # failed sign-ins: none failing counts
        "CC8.1": NONE,
    }
    iso = statuses(build(quiet, "iso27001"))
    assert (iso["A.8.11"], iso["A.8.15"], iso["A.8.5"]) == (NONE, PARTIAL, PARTIAL)
    nist = statuses(build(quiet, "nist-800-53"))
    assert (nist["AU-9"], nist["AC-6"], nist["AC-2"]) == (EVIDENCE, NONE, NONE)


def test_the_facts_and_section_summaries(reports: dict[str, Report]) -> None:
    report = reports["soc2"]
    facts = dict(report.facts)
    assert facts == {
        "Period": "2026-03-02 00:00:00 UTC to 2026-03-04 00:00:00 UTC",
        "Records in the period": "27",
        "Statements": "14",
        "Identities": "3",
        "Refused statements": "2 by a rule or guardrail, 1 needing approval (review)",
        "Values masked": "5 in 2 results",
        "Trail verification": "verified",
        "Signing key": SIGNER.key_id,
    }
    assert [s.key for s in report.sections] == list(SECTIONS)
    assert [s.title for s in report.sections] == list(SECTIONS.values())
    (identities,) = section(report, "identities").tables
    assert [row[:9] for row in identities.rows] == [
        (ADA, "human", "dba, eng", "https://login.example.com", "app, reports", "2", "5", "1", "1"),
        (BOT, "agent", "agents", "token", "app", "1", "5", "0", "1"),
        (SVC, "service", "billing", "token", "billing", "1", "4", "2", "1"),
    ]  # fmt: skip
    by_rule, samples = section(report, "blocked").tables
    assert set(by_rule.rows) == {(GUARDRAIL, "1"), (LEDGER_RULE, "1"), (REVIEW_RULE, "1")}
    assert [row[4] for row in samples.rows] == [GUARDRAIL, LEDGER_RULE, REVIEW_RULE]
    entities, columns = section(report, "masking").tables
    assert entities.rows == (("email", "4"), ("phone", "1"))
    assert columns.rows == ((EMAIL_COLUMN, "4"), (NOTES_COLUMN, "1"))
    (integrity,) = section(report, "integrity").tables
    assert integrity.rows == ((CHAIN, "32", "1..32", "32", "1", "ok"),)
    assert section(report, "integrity").summary.startswith("All 32 records of the trail")


def test_a_tampered_trail_fails_verification_in_the_report(tampered: Path) -> None:
    evidence = gather(tampered)
    assert not evidence.verification.ok
    for framework in FRAMEWORKS:
        report = build(evidence, framework)
        assert not report.verified
        for control in FRAMEWORKS[framework][1]:
            status = statuses(report)[control.id]
            if "integrity" in control.sections:
                assert status == FAILED, (framework, control.id)
            else:
                assert status == EVIDENCE, (framework, control.id)
        verdict = dict(report.facts)["Trail verification"]
        assert verdict.startswith("FAILED: record evidence-0#"), verdict
        assert "modified" in verdict
        assert "Verification FAILED: record" in section(report, "integrity").summary
        assert "Trail verification FAILED" in html(report)
    text = pdf_text(pdf(build(evidence, "nist-800-53")))
    assert "Trail verification FAILED" in text
    assert "Trail verified" not in text


def test_a_tampered_trail_does_not_claim_all_records_were_checked(tampered: Path) -> None:
    summary = section(build(gather(tampered), "soc2"), "integrity").summary
    claimed = re.match(r"All ([\d,]+) records", summary)
    assert claimed is None or int(claimed[1].replace(",", "")) == 32, summary


def test_policy_reloads_say_whether_they_were_accepted(reports: dict[str, Report]) -> None:
    reloads, _ = section(reports["soc2"], "changes").tables
    (_, outcome_a, detail_a), (_, outcome_r, detail_r) = reloads.rows
    assert outcome_a != "-"
    assert outcome_r != "-"
    assert outcome_a != outcome_r
    assert "unknown action 'permit'" in detail_r
    assert "'ts':" not in detail_a + detail_r


def test_failed_logins_for_revoked_tokens_share_one_cause(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    write_trail(
        path,
        [
            failed_login(BOT, "token revoked on 2026-03-02 12:00:00 UTC (tok_a, a)", at(1, 13)),
            failed_login(SVC, "token revoked on 2026-03-03 08:30:00 UTC (tok_b, b)", at(2, 9)),
        ],
    )
    causes = gather(path).failed_logins
    assert len(causes) == 1, causes
    (cause,) = causes
    assert causes[cause] == 2
    assert not re.search(r"\d", cause), cause


# --------------------------------------------------------------------------- the chart


def test_the_svg_has_one_stacked_bar_per_busy_hour(reports: dict[str, Report]) -> None:
    series = section(reports["soc2"], "activity").chart
    assert series is not None
    picture = svg(series)
    assert picture.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert picture.endswith("</svg>")
    drawn = re.findall(
        r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#\w+">'
        r"<title>(\d\d-\d\d \d\d:00): (\d+) (\w+)</title></rect>",
        picture,
    )
    assert Counter((label, decision) for _, label, _, decision in drawn) == Counter(
        (label, decision)
        for label, counts in {
            "03-02 09:00": ("allow", "deny"),
            "03-02 10:00": ("allow", "deny"),
            "03-03 08:00": ("allow", "review"),
            "03-03 09:00": ("allow",),
            "03-03 23:00": ("allow",),
        }.items()
        for decision in counts
    )
    counts = {(label, decision): int(n) for _, label, n, decision in drawn}
    assert counts[("03-03 08:00", "allow")] == 4
    assert counts[("03-02 10:00", "deny")] == 1
    # the busiest hour (5 statements) fills the plot's height: 220 - 36 - 16
    peak = sum(float(h) for h, label, _, _ in drawn if label == "03-03 08:00")
    assert peak == pytest.approx(168, abs=0.2)
    assert ">5</text>" in picture  # the y axis's top
    for decision in ("allow", "review", "deny"):
        assert f">{decision}</text>" in picture  # the legend


def test_the_bars_cover_the_period_one_per_bucket() -> None:
    activity: dict[int, Counter[str]] = {int(at(1, 5) // HOUR): Counter(allow=2)}
    series = bars(activity, SINCE + 1800, SINCE + 5 * HOUR + 1800, HOUR)  # 00:30 to 05:30
    assert [b.label for b in series] == [f"03-02 0{h}:00" for h in range(6)]
    assert [b.total for b in series] == [0, 0, 0, 0, 0, 2]
    assert series[-1].counts == (("allow", 2), ("review", 0), ("deny", 0))


def test_a_period_ending_on_a_boundary_has_no_bar_after_it(reports: dict[str, Report]) -> None:
    series = section(reports["soc2"], "activity").chart
    assert series is not None
    assert len(series) == 48
    assert len(bars({}, SINCE, SINCE + 7 * DAY, DAY)) == 7
    assert "03-04 00:00" not in svg(series)


# --------------------------------------------------------------------------- HTML


def test_html_has_every_section_control_and_identity(reports: dict[str, Report]) -> None:
    for framework, report in reports.items():
        page = html(report)
        assert page.startswith("<!doctype html>")
        assert f"<title>dbward evidence: {report.framework_name}," in page
        assert '<span class="verdict ok">Trail verified</span>' in page
        for key, title in SECTIONS.items():
            assert f'<h2 id="{key}">{title}</h2>' in page
        for control in CONTROL_IDS[framework]:
            assert f"<td>{control}</td>" in page
        for name in (ADA, SVC, BOT):
            assert f"<td>{name}</td>" in page
        assert f"<td>{GUARDRAIL}</td>" in page
        assert "<td>DELETE FROM people</td>" in page
        assert page.count("<svg ") == 1


def test_html_escapes_statements_and_user_names(reports: dict[str, Report]) -> None:
    page = html(reports["soc2"])
    assert "<script>" not in page
    assert "<b>Zoë" not in page
    assert HOSTILE_USER not in page
    assert (
        "VALUES (&#39;&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Zoë 日本語&lt;/b&gt;&#39;)"
        in page
    )
    assert "<td>&lt;i&gt;mallory&lt;/i&gt;</td>" in page


# --------------------------------------------------------------------------- PDF


def pdf_pages(document: bytes) -> Iterator[tuple[str, int]]:
    """Each page's text, and how many of its pixels (rendered at 72 dpi, in grey) are not
    near white, footer excluded."""
    doc = pypdfium2.PdfDocument(document)
    try:
        for page in doc:
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            image = page.render(scale=1).to_pil().convert("L")
            body = image.crop((0, 0, image.width, int(image.height * 0.9)))
            inked = sum(body.histogram()[:200])
            textpage.close()
            page.close()
            yield text, inked
    finally:
        doc.close()


def pdf_text(document: bytes) -> str:
    return "\n".join(" ".join(text.split()) for text, _ in pdf_pages(document))


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_the_pdf_renders_page_by_page_with_the_facts(
    reports: dict[str, Report], framework: str
) -> None:
    document = pdf(reports[framework])
    assert document.startswith(b"%PDF-")
    pages = list(pdf_pages(document))
    assert len(pages) >= 3
    for number, (text, inked) in enumerate(pages, 1):
        assert inked > 3000, (number, inked)  # content, not only a footer
        assert " ".join(text.split()).endswith(f"page {number}"), text[-200:]
    text = pdf_text(document)
    assert "Trail verified" in text
    assert f"Compliance evidence: {reports[framework].framework_name}" in text
    for control in CONTROL_IDS[framework]:
        assert re.search(rf"(^|\s){re.escape(control)}\s", text), control
    for title in SECTIONS.values():
        assert title in text
    for needle in (ADA, SVC, BOT, GUARDRAIL, LEDGER_RULE, "DELETE FROM people", EMAIL_COLUMN):
        assert needle in text, needle
    # Latin-1 kept, the rest replaced (not dropped, not a crash)
    assert "<b>Zoë ???</b>" in text
    assert "日本語" not in text


def test_the_activity_chart_is_on_the_page_of_its_heading(reports: dict[str, Report]) -> None:
    pages = [" ".join(text.split()) for text, _ in pdf_pages(pdf(reports["iso27001"]))]
    page = next(p for p in pages if SECTIONS["activity"] in p)
    assert "03-02 00:00" in page  # the chart's first tick
