"""Prometheus metrics, counted by every worker and served at ``/metrics`` by the first.

Workers are separate processes, so the counts live in prometheus_client's
multiprocess files under ``<state_dir>/metrics``: ``dbward serve`` empties that
folder and names it in ``PROMETHEUS_MULTIPROC_DIR`` before this module (and
so prometheus_client) is first imported (:func:`dbward.cli.main.serve`).
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS = Gauge("dbward_connections", "Client sessions open now", multiprocess_mode="livesum")
STATEMENTS = Counter(
    "dbward_statements", "Statements finished, by the policy's decision", ["decision"]
)
MASKED_VALUES = Counter("dbward_masked_values", "Values masked in results before they left")
APPROVAL_LATENCY = Histogram(
    "dbward_approval_latency_seconds",
    "From a statement held for approval to its approvers' answer",
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600),
)
BY_DECISION = {d: STATEMENTS.labels(d) for d in ("allow", "deny", "review", "none")}
AUDIT_PENDING = Gauge(
    "dbward_audit_pending_records",
    "Records journalled but not yet in the audit store (the audit lag)",
    multiprocess_mode="livesum",
)


def exposition() -> bytes:
    """The metrics of every worker, in Prometheus' text format."""
    if _ENV not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
