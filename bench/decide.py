"""What a policy decision costs per statement, as the proxy pays it.

Three cases, each timed call by call (median and 99th percentile):

- repeated: the same text again (the session's decision cache);
- same shape: a statement shape already seen, with new literal values
  (pgbench -M simple, ORMs that inline values): a normalization, then cached;
- new shape: a statement never seen (parse, analyse, decide).

Run: ``python bench/decide.py`` (add ``--json FILE`` to keep the figures).
Targets (issue 3): at most 5 microseconds at the median for a shape already
seen, at most 150 for a new one.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from dbward.identity.models import IdentityKind
from dbward.policy.decide import Subject
from dbward.policy.loader import default_policy, parse_policy
from dbward.policy.model import Policy
from dbward.proxy.guard import StatementGuard
from dbward.sql import cache as cache_module
from dbward.sql.cache import AnalysisCache

SUBJECT = Subject("alice@example.com", ("analysts",), IdentityKind.HUMAN, "app", "production")

RULES = """\
version: 1
rules:
  - name: agents-read-only
    match: {identity_kind: agent, kind: [write, ddl, privilege, admin, unknown]}
    action: deny
  - name: salaries-need-approval
    match: {table: hr.salaries}
    action: review
    approvers: {group: [hr-leads]}
  - name: customers-bulk-read
    match: {table: public.customers, kind: read}
    unless: {group: [support-leads]}
    action: allow
    limits: {max_rows: 1000}
  - name: no-ddl-for-analysts
    match: {group: analysts, kind: ddl}
    action: deny
"""

# pgbench's TPC-B-like transaction, with literals as -M simple sends them.
PGBENCH = (
    "UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a};",
    "SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
    "UPDATE pgbench_tellers SET tbalance = tbalance + {d} WHERE tid = {t};",
    "UPDATE pgbench_branches SET bbalance = bbalance + {d} WHERE bid = {b};",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ({t}, {b}, {a}, {d}, CURRENT_TIMESTAMP);",
)
NEW_SHAPE = (
    "SELECT o.id, o.total, c.email FROM orders_{n} o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at > now() - interval '7 days' AND c.region = 'eu' ORDER BY o.total DESC "
    "LIMIT 50"
)


class Source:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy


def timed(calls: list[str], guard: StatementGuard) -> list[float]:
    """Microseconds per call."""
    out = []
    check = guard.check
    clock = time.perf_counter_ns
    for text in calls:
        start = clock()
        check(text)
        out.append((clock() - start) / 1000)
    return out


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered), 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 2),
        "calls": len(ordered),
    }


def run(policy: Policy, n: int) -> dict[str, dict[str, float]]:
    cache_module.shared_cache = AnalysisCache(capacity=8192)
    import dbward.proxy.guard as guard_module

    guard_module.shared_cache = cache_module.shared_cache
    guard = StatementGuard(Source(policy), SUBJECT, ("public",))
    results = {}
    gc.collect()
    gc.disable()
    try:
        texts = [q.format(a=7, b=1, t=3, d=-42) for q in PGBENCH]
        for text in texts:
            guard.check(text)
        results["repeated"] = figures(timed([texts[i % 5] for i in range(n)], guard))
        literal = [
            PGBENCH[i % 5].format(a=1000 + i, b=1 + i % 9, t=1 + i % 97, d=i - 5000)
            for i in range(n)
        ]
        results["same shape, new literals"] = figures(timed(literal, guard))
        fresh = [NEW_SHAPE.format(n=i) for i in range(min(n, 5000))]
        results["new shape"] = figures(timed(fresh, guard))
    finally:
        gc.enable()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = {
        "built-in guardrails": run(default_policy(), args.calls),
        "guardrails + 4 rules": run(parse_policy(RULES), args.calls),
    }
    for policy_name, cases in report.items():
        print(f"\n{policy_name}")
        for case, fig in cases.items():
            print(
                f"  {case:<26} median {fig['median_us']:>7.2f} us   "
                f"p99 {fig['p99_us']:>7.2f} us   ({fig['calls']} calls)"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
