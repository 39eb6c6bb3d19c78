"""What dbward's result masking costs, next to a direct connection and a bare relay.

dbward masks result values by default, with no configuration. One invocation
creates a fresh database with a ``people`` table (two PII columns, one
free-text column that holds an email address or a phone number in every third
row), starts the bare relay (``bench/relay.py``) and dbward, and measures
against PostgreSQL directly, the relay and dbward, side by side:

(a) a 100-row, 6-column result under pgbench (a custom script, ``-M simple``
    and ``-M extended``, 1 and 8 clients): time per query, tps, dbward's CPU
    time per query;
(b) the whole table read through psql, as a plain ``SELECT *`` and as
    ``COPY people TO STDOUT``: seconds, and dbward's peak resident memory.

Before measuring it fetches one row directly and through dbward to see
whether masking is active. See ``bench/README.md`` ("Result masking").

Run: .venv/bin/python bench/masking.py [--rows 1000000] [--seconds 10] [--clients 1,8]
         [--modes simple,extended] [--reads 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pgbench import (
    MODES,
    BenchError,
    DbwardSetup,
    Postgres,
    Run,
    Service,
    Started,
    Target,
    cpu_busy,
    err,
    out,
    parse_list,
    run_benchmark,
    start_dbward,
    start_relay,
)
from pgbench import pgbench as run_pgbench
from rich.markup import escape
from rich.table import Table

TARGETS = ("direct", "relay", "dbward")
DEFAULT_MODES = ("simple", "extended")
LOCAL = "127.0.0.1"  # where the relay and dbward listen
QUERY_GOAL = 1.5  # dbward ÷ relay, time per 100-row query
READ_GOAL = 2.0  # dbward ÷ relay, time to read the whole table
RSS_GOAL_MB = 300.0  # dbward's peak resident memory, whatever the row count
BATCH = 1_000_000  # rows per INSERT: each psql call stays well within its timeout
SAMPLE_ID = 6  # a row whose notes hold an email address (every 6th row does)
COLUMNS = ("id", "full_name", "email", "phone", "notes", "created_at")

GIVEN: tuple[str, ...] = (
    "Ana",
    "Ben",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lucia",
    "Marco",
    "Nadia",
    "Omar",
    "Priya",
)
FAMILY: tuple[str, ...] = (
    "Lopez",
    "Smith",
    "Nguyen",
    "Garcia",
    "Kowalski",
    "Okafor",
    "Rossi",
    "Tanaka",
    "Muller",
    "Haddad",
    "Silva",
    "Johansson",
)
PLAIN_NOTES = (
    "Renewal discussed; no change to the plan this year.",
    "Sent the quarterly report and the updated price list.",
    "Meeting moved to next Tuesday at the Lisbon office.",
    "Happy with the onboarding, follow up in a month.",
)


# the data --------------------------------------------------------------------------------


def sql_array(values: Iterable[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def fill_sql(first: int, last: int) -> str:
    """INSERT rows ``first``..``last``: 'Ana Lopez 123', 'ana.lopez123@example.com', ..."""
    return f"""
INSERT INTO people (id, full_name, email, phone, notes, created_at)
SELECT g,
       n.given || ' ' || n.family || ' ' || g,
       n.handle || '@example.com',
       n.phone,
       CASE g % 6
           WHEN 0 THEN format('Asked for the invoice again; send it to %s@example.com.', n.handle)
           WHEN 3 THEN format('Prefers a call after 5 pm on %s.', n.phone)
           ELSE ({sql_array(PLAIN_NOTES)})[1 + g % {len(PLAIN_NOTES)}]
       END,
       timestamptz '2021-01-01 00:00:00+00' + g * interval '47 seconds'
FROM generate_series({first}, {last}) AS g
CROSS JOIN LATERAL (
    SELECT given, family, lower(given || '.' || family) || g AS handle,
           format('+1 %s 555 %s', 201 + g % 798, lpad((g % 10000)::text, 4, '0')) AS phone
    FROM (SELECT ({sql_array(GIVEN)})[1 + g % {len(GIVEN)}] AS given,
                 ({sql_array(FAMILY)})[1 + g / {len(GIVEN)} % {len(FAMILY)}] AS family) AS pick
) AS n
"""


def create_people(pg: Postgres, database: str, rows: int) -> None:
    pg.psql(
        "CREATE TABLE people (id int PRIMARY KEY, full_name text, email text, phone text, "
        "notes text, created_at timestamptz)",
        database,
    )
    for first in range(1, rows + 1, BATCH):
        last = min(first + BATCH - 1, rows)
        err.print(f"  inserting rows {first:,}..{last:,}")
        pg.psql(fill_sql(first, last), database)
    pg.psql("VACUUM ANALYZE people", database)


def write_script(work: Path, rows: int) -> Path:
    """The pgbench script: 100 consecutive rows from a random place."""
    script = work / "people.sql"
    script.write_text(
        f"\\set a random(1, {rows - 100})\nSELECT * FROM people WHERE id BETWEEN :a AND :a + 99;\n"
    )
    return script


# the targets -----------------------------------------------------------------------------


def make_targets(
    pg: Postgres, database: str, version: str, relay: Service, dbward: DbwardSetup
) -> dict[str, Target]:
    """Every target plaintext (``sslmode=disable``): the figures compare masking, not TLS."""
    return {
        "direct": Target(
            "direct", pg.port, pg.user, database, "disable", description=f"PostgreSQL {version}"
        ),
        "relay": Target(
            "relay",
            relay.port,
            pg.user,
            database,
            "disable",
            description="bench/relay.py: bytes passed to PG unread",
            service=relay,
        ),
        "dbward": Target(
            "dbward",
            dbward.plain_port,
            "bench",
            database,
            "disable",
            password=dbward.token,
            description="token login, audit on, masking as by default (no configuration); "
            "require_tls: false listener",
            service=dbward.service,
        ),
    }


def host_of(target: Target, pg: Postgres) -> str:
    return pg.host if target.service is None else LOCAL


def psql_through(target: Target, host: str, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True,
        text=True,
        env=target.env(host),
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"psql through {target.name} (port {target.port}) failed: "
            f"{result.stderr.strip()}{target.log_tail()}"
        )
    return result.stdout


def probe(target: Target, host: str, rows: int) -> None:
    """Check the table answers through ``target``, with every row."""
    count = psql_through(target, host, "-At", "-c", "SELECT count(*) FROM people").strip()
    if count != str(rows):
        raise BenchError(f"people has {count} rows through {target.name}, expected {rows:,}")


# the masking check -----------------------------------------------------------------------


@dataclass
class MaskCheck:
    """One row fetched directly and through dbward."""

    direct: dict[str, str]
    dbward: dict[str, str]

    @property
    def active(self) -> bool:
        return self.direct["email"] != self.dbward["email"]

    @property
    def masked_columns(self) -> list[str]:
        return [c for c in COLUMNS if self.direct[c] != self.dbward[c]]


def fetch_row(target: Target, host: str, row_id: int) -> dict[str, str]:
    text = psql_through(
        target, host, "--csv", "-t", "-c", f"SELECT * FROM people WHERE id = {row_id}"
    )
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) != 1 or len(rows[0]) != len(COLUMNS):
        raise BenchError(f"row {row_id} through {target.name} is not one row of 6 columns: {text}")
    return dict(zip(COLUMNS, rows[0], strict=True))


def check_masking(targets: dict[str, Target], pg: Postgres) -> MaskCheck:
    direct, dbward = targets["direct"], targets["dbward"]
    return MaskCheck(
        fetch_row(direct, host_of(direct, pg), SAMPLE_ID),
        fetch_row(dbward, host_of(dbward, pg), SAMPLE_ID),
    )


# (a) the 100-row query -------------------------------------------------------------------


def measure_query(
    target: Target, host: str, mode: str, clients: int, args: argparse.Namespace, script: Path
) -> Run:
    """A warm-up, then the measured pgbench run, with the proxy's CPU time per query."""
    if target.service is not None:
        target.service.check_alive()
    if args.warmup > 0:
        run_pgbench(target, host, mode, clients, args.warmup, 0, "warm-up", script=script)
    service = target.service
    cpu_before = service.cpu_seconds() if service else None
    run = run_pgbench(target, host, mode, clients, args.seconds, 0, "measured", script=script)
    cpu_after = service.cpu_seconds() if service else None
    if cpu_before is not None and cpu_after is not None:
        run.proxy_cpu_us = (cpu_after - cpu_before) * 1e6 / run.transactions
    return run


def measure_queries(
    targets: dict[str, Target], pg: Postgres, args: argparse.Namespace, script: Path
) -> list[Run]:
    """Every target once per mode and client count; the order rotates from one to the next."""
    cells = [(mode, clients) for mode in args.modes for clients in args.clients]
    total = len(cells) * len(TARGETS)
    runs: list[Run] = []
    for index, (mode, clients) in enumerate(cells):
        shift = index % len(TARGETS)
        for name in TARGETS[shift:] + TARGETS[:shift]:
            target = targets[name]
            run = measure_query(target, host_of(target, pg), mode, clients, args, script)
            runs.append(run)
            cpu = "" if run.proxy_cpu_us is None else f"  proxy CPU {run.proxy_cpu_us:,.0f} µs/q"
            err.print(
                f"[{len(runs)}/{total}] {mode:<8} c={clients:<3} {name:<7} "
                f"{run.tps:>9,.0f} tps  {run.latency_ms:>7.3f} ms{cpu}",
                markup=False,
                soft_wrap=True,
            )
    return runs


# (b) reading the whole table -------------------------------------------------------------


@dataclass(frozen=True)
class ReadKind:
    name: str
    label: str
    sql: str
    args: tuple[str, ...]
    count_lines: bool  # rows = lines psql wrote (COPY); else psql's \echo :ROW_COUNT


READ_KINDS = (
    ReadKind(
        "select",
        "SELECT *",
        "SELECT * FROM people",
        ("-A", "-t", "-o", "/dev/null", "-c", "SELECT * FROM people", "-c", "\\echo :ROW_COUNT"),
        count_lines=False,
    ),
    ReadKind(
        "copy", "COPY", "COPY people TO STDOUT", ("-c", "COPY people TO STDOUT"), count_lines=True
    ),
)


@dataclass
class Read:
    target: str
    kind: str
    repeat: int
    seconds: float
    rows: int
    proxy_cpu_s: float | None = None
    proxy_peak_rss_kib: int | None = None  # VmHWM during this read (or since start)
    rss_window: str | None = None  # "read" if VmHWM was reset before it, else "lifetime"


def stream_psql(
    target: Target, host: str, args: tuple[str, ...], timeout: float
) -> tuple[int, str]:
    """Run psql, reading what it writes as it comes: (lines written, the last line)."""
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=target.env(host),
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines, last = 0, b""
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            last = (last + chunk[-256:])[-256:]
        errors = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        raise BenchError(
            f"psql {' '.join(args)} through {target.name} exited with code {code} "
            f"(killed after {timeout:g} s if negative): {errors}{target.log_tail()}"
        )
    return lines, last.decode(errors="replace").strip().rsplit("\n", 1)[-1]


def reset_peak_rss(service: Service) -> bool:
    """Start a new VmHWM window for the service's processes (clear_refs, Linux 4.0+)."""
    try:
        for pid in service._pids():
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def timed_read(
    target: Target, host: str, kind: ReadKind, repeat: int, rows: int, measured: bool = True
) -> Read:
    service = target.service if measured else None
    window = None if service is None else "read" if reset_peak_rss(service) else "lifetime"
    cpu_before = service.cpu_seconds() if service else None
    started = time.perf_counter()
    lines, last = stream_psql(target, host, kind.args, timeout=120 + rows / 5_000)
    seconds = time.perf_counter() - started
    cpu_after = service.cpu_seconds() if service else None
    got = lines if kind.count_lines else int(last) if last.isdigit() else -1
    if got != rows:
        raise BenchError(f"{kind.sql} through {target.name} returned {got:,} rows, not {rows:,}")
    read = Read(target.name, kind.name, repeat, seconds, got, rss_window=window)
    if service is not None:
        read.proxy_peak_rss_kib = service.peak_rss_kib()
        if cpu_before is not None and cpu_after is not None:
            read.proxy_cpu_s = cpu_after - cpu_before
    return read


def measure_reads(targets: dict[str, Target], pg: Postgres, args: argparse.Namespace) -> list[Read]:
    direct = targets["direct"]
    if args.warmup > 0:  # bring the table into the page cache, unmeasured
        timed_read(direct, host_of(direct, pg), READ_KINDS[1], -1, args.rows, measured=False)
    total = args.reads * len(READ_KINDS) * len(TARGETS)
    reads: list[Read] = []
    for repeat in range(args.reads):
        for k, kind in enumerate(READ_KINDS):
            shift = (repeat * len(READ_KINDS) + k) % len(TARGETS)
            for name in TARGETS[shift:] + TARGETS[:shift]:
                target = targets[name]
                read = timed_read(target, host_of(target, pg), kind, repeat, args.rows)
                reads.append(read)
                err.print(
                    f"[{len(reads)}/{total}] {kind.name:<6} {name:<7} {read.seconds:7.2f} s"
                    + (f"  proxy CPU {read.proxy_cpu_s:.2f} s" if read.proxy_cpu_s else "")
                    + (
                        f"  peak RSS {mb(read.proxy_peak_rss_kib):.0f} MB"
                        if read.proxy_peak_rss_kib
                        else ""
                    ),
                    markup=False,
                    soft_wrap=True,
                )
    return reads


# results ---------------------------------------------------------------------------------


def mb(kib: int | None) -> float:
    return (kib or 0) * 1024 / 1e6


@dataclass
class Goal:
    what: str
    figure: str
    met: bool | None  # None: not measured


def query_ratio(runs: dict[tuple[str, int, str], Run], mode: str, clients: int, b: str) -> float:
    """dbward's time per query over ``b``'s (pgbench latency average)."""
    return runs[mode, clients, "dbward"].latency_ms / runs[mode, clients, b].latency_ms


def read_seconds(reads: list[Read], target: str, kind: str) -> list[float]:
    return [r.seconds for r in reads if r.target == target and r.kind == kind]


def read_ratio(reads: list[Read], kind: str, b: str) -> float:
    dbward = statistics.median(read_seconds(reads, "dbward", kind))
    return dbward / statistics.median(read_seconds(reads, b, kind))


def fmt_seconds(values: list[float]) -> str:
    median = statistics.median(values)
    text = f"{median:.2f}"
    if len(values) > 1:
        text += f" ±{(max(values) - min(values)) / 2 / median * 100:.0f}%"
    return text


def mark(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]NOT met[/]", None: "-"}[met]


def targets_table(targets: dict[str, Target]) -> Table:
    table = Table(title="Targets (all plaintext)", title_justify="left")
    for column in ("target", "port", "what it is"):
        table.add_column(column)
    for t in targets.values():
        table.add_row(t.name, str(t.port), t.description)
    return table


def masking_table(check: MaskCheck) -> Table:
    table = Table(title=f"Masking check: row {SAMPLE_ID}, fetched with psql", title_justify="left")
    for column in ("column", "direct", "through dbward", "masked"):
        table.add_column(column)
    for c in COLUMNS:
        masked = "yes" if c in check.masked_columns else "no"
        table.add_row(c, escape(check.direct[c]), escape(check.dbward[c]), masked)
    return table


def query_tables(
    runs: dict[tuple[str, int, str], Run], args: argparse.Namespace
) -> tuple[Table, Table]:
    times = Table(
        title=f"(a) 100-row query, ms per query (tps); {args.seconds} s per pgbench run",
        title_justify="left",
    )
    cost = Table(title="(a) dbward's cost per 100-row query", title_justify="left")
    times.add_column("mode")
    times.add_column("clients", justify="right")
    for name in TARGETS:
        times.add_column(name, justify="right")
    cost.add_column("mode")
    cost.add_column("clients", justify="right")
    for column in (f"dbward ÷ relay\n(goal ≤ {QUERY_GOAL})", "dbward ÷ direct"):
        cost.add_column(column, justify="right")
    for column in ("dbward CPU\nµs/query", "relay CPU\nµs/query"):
        cost.add_column(column, justify="right")
    for mode in args.modes:
        for clients in args.clients:
            cells = [runs[mode, clients, name] for name in TARGETS]
            times.add_row(
                mode, str(clients), *(f"{r.latency_ms:.3f} ({r.tps:,.0f})" for r in cells)
            )
            to_relay = query_ratio(runs, mode, clients, "relay")
            cpu = [runs[mode, clients, name].proxy_cpu_us for name in ("dbward", "relay")]
            cost.add_row(
                mode,
                str(clients),
                f"[{'green' if to_relay <= QUERY_GOAL else 'red'}]{to_relay:.2f}[/]",
                f"{query_ratio(runs, mode, clients, 'direct'):.2f}",
                *("-" if us is None else f"{us:,.0f}" for us in cpu),
            )
    return times, cost


def reads_table(reads: list[Read], rows: int) -> Table:
    median = " (median ± half the range)" if len({r.repeat for r in reads}) > 1 else ""
    table = Table(
        title=f"(b) Reading all {rows:,} rows through psql, seconds{median}; "
        + "; ".join(f"{k.label} is psql -c {k.sql!r}" for k in READ_KINDS)
        + "; the last four columns are dbward's",
        title_justify="left",
    )
    table.add_column("read")
    for name in TARGETS:
        table.add_column(name, justify="right")
    for column in (
        f"÷ relay\n(≤ {READ_GOAL:g})",
        "÷ direct",
        "CPU s",
        f"peak RSS\nMB (< {RSS_GOAL_MB:g})",
    ):
        table.add_column(column, justify="right")
    for kind in READ_KINDS:
        mine = [r for r in reads if r.target == "dbward" and r.kind == kind.name]
        cpu = [r.proxy_cpu_s for r in mine if r.proxy_cpu_s is not None]
        peak = max((r.proxy_peak_rss_kib or 0 for r in mine), default=0)
        to_relay = read_ratio(reads, kind.name, "relay")
        table.add_row(
            kind.label,
            *(fmt_seconds(read_seconds(reads, name, kind.name)) for name in TARGETS),
            f"[{'green' if to_relay <= READ_GOAL else 'red'}]{to_relay:.2f}[/]",
            f"{read_ratio(reads, kind.name, 'direct'):.2f}",
            f"{statistics.median(cpu):.2f}" if cpu else "-",
            f"{mb(peak):.0f}" if peak else "-",
        )
    return table


def goals(
    runs: dict[tuple[str, int, str], Run],
    reads: list[Read],
    args: argparse.Namespace,
    peak_kib: int | None,
) -> list[Goal]:
    cells = [(mode, clients) for mode in args.modes for clients in args.clients]
    worst_ratio, (mode, clients) = max((query_ratio(runs, *cell, "relay"), cell) for cell in cells)
    found = [
        Goal(
            f"100-row query: dbward ÷ relay ≤ {QUERY_GOAL}, time per query, every run",
            f"worst {worst_ratio:.2f} (-M {mode}, {clients} clients)",
            worst_ratio <= QUERY_GOAL,
        )
    ]
    for kind in READ_KINDS:
        ratio = read_ratio(reads, kind.name, "relay")
        found.append(
            Goal(
                f"{args.rows:,}-row {kind.label}: dbward ÷ relay ≤ {READ_GOAL:g}",
                f"{ratio:.2f}",
                ratio <= READ_GOAL,
            )
        )
    found.append(
        Goal(
            f"dbward peak RSS < {RSS_GOAL_MB:g} MB, whole run",
            "-" if peak_kib is None else f"{mb(peak_kib):.0f} MB",
            None if peak_kib is None else mb(peak_kib) < RSS_GOAL_MB,
        )
    )
    return found


def goals_table(found: list[Goal]) -> Table:
    table = Table(title="Goals", title_justify="left")
    for column in ("goal", "figure", "result"):
        table.add_column(column)
    for goal in found:
        table.add_row(goal.what, goal.figure, mark(goal.met))
    return table


def print_report(
    targets: dict[str, Target],
    check: MaskCheck,
    runs: list[Run],
    reads: list[Read],
    found: list[Goal],
    facts: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    by_cell = {(r.mode, r.clients, r.target): r for r in runs}
    out.print(
        f"people: {args.rows:,} rows, {facts['table_size']}; PostgreSQL "
        f"{facts['postgresql']}; {facts['cpus']} CPUs shared by the clients, PostgreSQL and "
        "the proxies"
    )
    out.print(targets_table(targets))
    out.print(masking_table(check))
    if not check.active:
        out.print(
            "[bold yellow]WARNING: masking NOT active: the email column came back unchanged "
            "through dbward, so the figures below measure dbward without masking[/]"
        )
    for table in (*query_tables(by_cell, args), reads_table(reads, args.rows)):
        out.print(table)
    out.print(goals_table(found))
    met = sum(1 for g in found if g.met)
    out.print(
        f"{met} of {len(found)} goals met"
        + ("" if check.active else " [yellow](masking NOT active during this run)[/]")
    )


def write_json(
    path: Path,
    args: argparse.Namespace,
    facts: dict[str, Any],
    check: MaskCheck,
    runs: list[Run],
    reads: list[Read],
    found: list[Goal],
) -> None:
    document = {
        "command": " ".join(sys.argv),
        "settings": {
            k: getattr(args, k) for k in ("rows", "seconds", "clients", "modes", "warmup", "reads")
        },
        "facts": facts,
        "masking": {"active": check.active, "masked_columns": check.masked_columns}
        | {"direct": check.direct, "dbward": check.dbward},
        "queries": [asdict(r) for r in runs],
        "reads": [asdict(r) for r in reads],
        "goals": [asdict(g) for g in found],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    err.print(f"results written to {path}")


# main ------------------------------------------------------------------------------------


def estimate_minutes(args: argparse.Namespace) -> float:
    queries = len(args.modes) * len(args.clients) * len(TARGETS)
    per_read = args.rows / 250_000  # seconds, roughly, on a small machine
    reads = (args.reads * len(READ_KINDS) * len(TARGETS) + 1) * per_read
    return float(queries * (args.seconds + args.warmup + 0.5) + reads) / 60


def benchmark(args: argparse.Namespace, state: Started) -> None:
    pg, work = state.pg, state.work
    database = f"dbward_masking_{secrets.token_hex(4)}"
    busy = cpu_busy()
    if busy is not None and busy > 0.10:
        err.print(f"[yellow]warning: the CPUs are {busy:.0%} busy before the benchmark starts[/]")
    err.print(f"creating database {database} with {args.rows:,} rows in people")
    pg.psql(f"CREATE DATABASE {database}")
    state.database = database
    create_people(pg, database, args.rows)
    version = pg.psql("SHOW server_version")
    facts: dict[str, Any] = {
        "database": database,
        "table_size": pg.psql("SELECT pg_size_pretty(pg_total_relation_size('people'))", database),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "postgresql": version,
        "cpu_busy_at_start": busy,
    }

    err.print("starting the bare relay and dbward")
    relay = start_relay(work, pg)
    state.services.append(relay)
    dbward = start_dbward(work, pg, database)
    state.services.append(dbward.service)
    targets = make_targets(pg, database, version.split()[0], relay, dbward)
    for target in targets.values():
        probe(target, host_of(target, pg), args.rows)
    check = check_masking(targets, pg)
    err.print(
        f"masking {'active' if check.active else 'NOT active'}: "
        f"columns changed through dbward: {', '.join(check.masked_columns) or 'none'}"
    )

    err.print(f"measuring, about {estimate_minutes(args):.1f} min")
    runs = measure_queries(targets, pg, args, write_script(work, args.rows))
    facts["dbward_peak_rss_kib_after_queries"] = dbward.service.peak_rss_kib()
    reads = measure_reads(targets, pg, args)
    # VmHWM was reset before each read: the largest of the windows is the run's peak
    peaks = [facts["dbward_peak_rss_kib_after_queries"]]
    peaks += [r.proxy_peak_rss_kib for r in reads if r.target == "dbward"]
    peak = max((p for p in peaks if p is not None), default=None)
    facts["dbward_peak_rss_kib"] = peak
    facts["relay_peak_rss_kib"] = relay.peak_rss_kib()

    found = goals({(r.mode, r.clients, r.target): r for r in runs}, reads, args, peak)
    print_report(targets, check, runs, reads, found, facts, args)
    if args.json is not None:
        write_json(args.json, args, facts, check, runs, reads, found)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="result masking: direct vs a bare relay vs dbward, on a table with PII"
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in people")
    parser.add_argument("--seconds", type=int, default=10, help="length of each pgbench run")
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help="pgbench -M protocols")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each run")
    parser.add_argument("--reads", type=int, default=3, help="times each whole-table read runs")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(c) for c in parse_list(args.clients, "client count")]
        args.modes = parse_list(args.modes, "mode")
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(f"--clients/--modes: {exc}")
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        parser.error(f"unknown mode(s) {bad}: choose from {', '.join(MODES)}")
    if any(c < 1 for c in args.clients):
        parser.error("client counts must be at least 1")
    if args.rows < 1000:
        parser.error("--rows must be at least 1000")
    if args.seconds < 1 or args.reads < 1 or args.warmup < 0:
        parser.error("--seconds and --reads must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    state = Started(pg, Path(tempfile.mkdtemp(prefix="dbward-masking-")))
    return run_benchmark(lambda: benchmark(args, state), state, args.keep)


if __name__ == "__main__":
    sys.exit(main())
