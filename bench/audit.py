"""What the tamper-evident audit trail costs: pgbench -S with the trail on and off, and
how many records per second each store takes.

One invocation creates a pgbench database (``pgbench -i``), starts two dbward
instances in front of it, identical but for ``audit.enabled`` (the trail on:
every statement hash-chained, journalled before its result is released, stored,
checkpoints signed; off: nothing recorded), and runs ``pgbench -S`` against
each, alternating, per mode and client count. Then it measures the stores on
their own: a writer records ``--records`` statement events (each with lineage,
like the proxy's), and the SQLite store, and the PostgreSQL store in a
scratch database, take them in the batches the storing thread makes.

Run: .venv/bin/python bench/audit.py [--seconds 10] [--clients 1,8]
         [--modes simple,prepared] [--rounds 2] [--records 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pgbench import (
    Postgres,
    Run,
    Started,
    Target,
    add_server_options,
    clean_env,
    err,
    out,
    parse_clients_modes,
    run_benchmark,
    start_dbward,
)
from pgbench import pgbench as run_pgbench
from rich.table import Table

LOSS_GOAL = 5.0  # % of TPS the trail may cost
STORE_GOAL = 20_000  # records per second a store must take
BATCH = 500  # records per stored batch (what the storing thread makes at ~25k/s)


@dataclass
class StoreRate:
    store: str
    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


def measure_store(kind: str, records: int, pg: Postgres) -> StoreRate:
    """Record ``records`` events through a writer (its thread idle), then store them the
    way the storing thread does, in batches of ``BATCH``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dbward.audit.events import AuditEvent, EventKind
    from dbward.audit.signing import Signer
    from dbward.audit.store import AuditStore, SqliteAuditStore
    from dbward.audit.writer import AuditWriter

    work = Path(tempfile.mkdtemp(prefix="dbward-bench-store-"))
    database = f"dbward_bench_store_{secrets.token_hex(4)}"
    store: AuditStore
    if kind == "postgres":
        from dbward.audit.store_pg import PostgresAuditStore

        pg.psql(f"CREATE DATABASE {database}")
        store = PostgresAuditStore(
            f"host={pg.host} port={pg.port} user={pg.user} dbname={database}"
        )
    else:
        store = SqliteAuditStore(work / "audit.db")
    try:
        writer = AuditWriter(
            store, work / "journal", chain="bench-0", signer=Signer(b"b" * 32),
            store_interval=3600, max_pending=records + 1,
        )  # fmt: skip
        for _ in range(records):
            writer.record(
                AuditEvent(
                    EventKind.STATEMENT, "s1", "bench", "service", "app", "127.0.0.1:5000",
                    {
                        "statement": "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                        "protocol": "extended", "duration_ms": 0.08, "rows": 1,
                        "tags": ["SELECT 1"], "decision": "allow", "rule": "default",
                        "lineage": {"read": {"public.pgbench_accounts": ["abalance", "aid"]}},
                    },
                )
            )  # fmt: skip
        pending = list(writer._queue)
        writer._queue.clear()
        started = time.perf_counter()
        for first in range(0, len(pending), BATCH):
            store.write(pending[first : first + BATCH])
        seconds = time.perf_counter() - started
        asyncio.run(writer.close())
    finally:
        store.close()
        if kind == "postgres":
            pg.psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return StoreRate(kind, records, seconds)


def benchmark(args: argparse.Namespace, state: Started) -> dict[str, object]:
    pg, work = state.pg, state.work
    database = f"dbward_bench_audit_{secrets.token_hex(4)}"
    pg.psql(f"CREATE DATABASE {database}")
    state.database = database
    err.print(f"pgbench -i -s {args.scale} in {database}")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(args.scale), database],
        env=clean_env(PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user),
        check=True,
        capture_output=True,
    )
    common = {"environment": "staging"}
    on = start_dbward(work, pg, database, name="trail-on", audit={"fail_closed": []}, **common)
    off = start_dbward(
        work, pg, database, name="trail-off", audit={"enabled": False, "fail_closed": []}, **common
    )
    state.services += [on.service, off.service]
    on.service.wait_listening()
    off.service.wait_listening()
    targets = {
        name: Target(name, setup.plain_port, "bench", database, "disable", password=setup.token,
                     service=setup.service)
        for name, setup in (("trail-on", on), ("trail-off", off))
    }  # fmt: skip
    runs: list[Run] = []
    cells = [(m, c) for m in args.modes for c in args.clients]
    for round_ in range(args.rounds):
        for index, (mode, clients) in enumerate(cells):
            order = ["trail-on", "trail-off"]
            if (round_ + index) % 2:
                order.reverse()
            for name in order:
                target = targets[name]
                run_pgbench(target, "127.0.0.1", mode, clients, 2, round_, "warm-up")
                run = run_pgbench(target, "127.0.0.1", mode, clients, args.seconds, round_, "run")
                runs.append(run)
                err.print(f"  {name:<9} -M {mode:<8} -c {clients:<2} {run.tps:>9,.0f} tps")
    records = on.audit_path.parent / "audit.db"
    stores = [
        measure_store("sqlite", args.records, pg),
        measure_store("postgres", args.records, pg),
    ]
    return {"runs": runs, "stores": stores, "audit_db": str(records)}


def report(result: dict[str, object], args: argparse.Namespace) -> None:
    runs: list[Run] = result["runs"]  # type: ignore[assignment]
    table = Table("mode", "clients", "trail off tps", "trail on tps", "loss (goal ≤ 5%)")
    summary = []
    for mode in args.modes:
        for clients in args.clients:
            cell = [r for r in runs if r.mode == mode and r.clients == clients]
            tps = {
                name: statistics.median(r.tps for r in cell if r.target == name)
                for name in ("trail-off", "trail-on")
            }
            loss = 100 * (1 - tps["trail-on"] / tps["trail-off"])
            summary.append({"mode": mode, "clients": clients, **tps, "loss_percent": loss})
            mark = "" if loss <= LOSS_GOAL else " (over)"
            table.add_row(
                mode, str(clients), f"{tps['trail-off']:,.0f}", f"{tps['trail-on']:,.0f}",
                f"{loss:.1f}%{mark}",
            )  # fmt: skip
    out.print(table)
    stores: list[StoreRate] = result["stores"]  # type: ignore[assignment]
    for rate in stores:
        verdict = "meets" if rate.per_second >= STORE_GOAL else "below"
        out.print(
            f"{rate.store} store: {rate.per_second:,.0f} records/s ({rate.records:,} records in "
            f"batches of {BATCH}; {verdict} the goal of {STORE_GOAL:,})"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"pgbench": summary, "runs": [asdict(r) for r in runs],
                 "stores": [asdict(s) | {"per_second": s.per_second} for s in stores]},
                indent=2,
            )
        )  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_options(parser)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--modes", default="simple,prepared")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    parse_clients_modes(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    work = Path(tempfile.mkdtemp(prefix="dbward-bench-audit-"))
    work.chmod(0o711)
    state = Started(pg, work)
    result: dict[str, object] = {}

    def body() -> None:
        result.update(benchmark(args, state))
        report(result, args)

    return run_benchmark(body, state, args.keep)


if __name__ == "__main__":
    sys.exit(main())
