"""Which evidence answers which control, per framework.

Control titles are short paraphrases for orientation; the framework's own
text governs. Each control names the report sections that hold its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS = {
    "integrity": "Trail integrity (hash chain and signatures)",
    "identities": "Identities and their access",
    "blocked": "Blocked and held operations",
    "approvals": "Approvals",
    "masking": "Masking of personal data and secrets",
    "logins": "Failed sign-ins",
    "changes": "Policy changes and administrative actions",
    "activity": "Activity over time",
}


@dataclass(frozen=True, slots=True)
class Control:
    id: str
    title: str
    sections: tuple[str, ...]
    how: str  # what dbward does that the evidence shows


FRAMEWORKS: dict[str, tuple[str, tuple[Control, ...]]] = {
    "soc2": (
        "SOC 2 (Trust Services Criteria, 2017, revised points of focus 2022)",
        (
            Control(
                "CC6.1",
                "Logical access security over protected information assets",
                ("identities", "integrity"),
                "every connection is tied to a verified identity (OIDC or a dbward token); "
                "no shared database password reaches a client",
            ),
            Control(
                "CC6.2",
                "Registration and authorization of users before credentials are issued",
                ("changes", "identities"),
                "service and agent tokens are created and revoked by operators, each action "
                "recorded in the trail",
            ),
            Control(
                "CC6.3",
                "Access authorized, changed or removed by role and need",
                ("blocked", "approvals", "changes"),
                "policy decides every statement by identity, group and environment; risky "
                "statements are refused or held for approval",
            ),
            Control(
                "CC7.2",
                "Monitoring of system components for anomalies and security events",
                ("blocked", "logins", "activity", "integrity"),
                "refused statements, failed sign-ins and activity are recorded in a "
                "tamper-evident trail",
            ),
            Control(
                "CC8.1",
                "Changes authorized, documented and tracked",
                ("changes",),
                "every policy reload is recorded with its outcome",
            ),
        ),
    ),
    "iso27001": (
        "ISO/IEC 27001:2022 Annex A",
        (
            Control(
                "A.5.15",
                "Access control",
                ("identities", "blocked"),
                "rules per identity, group, connection and environment decide each statement",
            ),
            Control(
                "A.8.2",
                "Privileged access rights",
                ("blocked", "approvals"),
                "privilege changes and destructive statements are refused or held by policy",
            ),
            Control(
                "A.8.5",
                "Secure authentication",
                ("identities", "logins"),
                "OIDC tokens and dbward tokens are verified at every sign-in; failures recorded",
            ),
            Control(
                "A.8.11",
                "Data masking",
                ("masking",),
                "personal data and secrets in results are masked on the wire unless policy "
                "unmasks them for an identity",
            ),
            Control(
                "A.8.15",
                "Logging",
                ("integrity", "activity"),
                "every connection, statement and decision is recorded, hash-chained and signed",
            ),
            Control(
                "A.8.16",
                "Monitoring activities",
                ("blocked", "logins", "activity"),
                "refused statements and failed sign-ins are searchable and exported to SIEMs",
            ),
        ),
    ),
    "nist-800-53": (
        "NIST SP 800-53 Rev. 5",
        (
            Control(
                "AC-2",
                "Account management",
                ("identities", "changes"),
                "identities come from the organization's identity provider or operator-issued "
                "tokens, with their kind and groups",
            ),
            Control(
                "AC-6",
                "Least privilege",
                ("blocked", "approvals", "masking"),
                "statements are allowed only as policy permits; data is masked unless unmasked",
            ),
            Control(
                "AU-2",
                "Event logging",
                ("activity", "logins", "changes"),
                "connections, sign-in failures, statements, decisions and admin actions",
            ),
            Control(
                "AU-3",
                "Content of audit records",
                ("identities", "blocked"),
                "who, when, where from, which connection, what statement, decision, rows, "
                "tables and columns touched",
            ),
            Control(
                "AU-9",
                "Protection of audit information",
                ("integrity",),
                "records are hash-chained; signed checkpoints expose changes, deletions and "
                "truncation",
            ),
            Control(
                "AU-10",
                "Non-repudiation",
                ("integrity", "identities"),
                "each record binds a verified identity to its action under an Ed25519-signed chain",
            ),
        ),
    ),
}
