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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgbench import (
    BenchError,
    DbwardSetup,
    Postgres,
    Run,
    Service,
    Started,
    Target,
    add_server_options,
    cpu_busy,
    err,
    out,
    parse_clients_modes,
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
    """One row fetched directly and through dbward; the same for COPY, after the reads."""

    direct: dict[str, str]
    dbward: dict[str, str]
    copy_direct: str | None = None  # COPY text-format line of the row dbward's COPY sent first
    copy_dbward: str | None = None

    @property
    def active(self) -> bool:
        return self.direct["email"] != self.dbward["email"]

    @property
    def copy_masked(self) -> bool | None:
        if self.copy_direct is None or self.copy_dbward is None:
            return None
        return self.copy_direct != self.copy_dbward

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


def check_copy_masking(check: MaskCheck, reads: list[Read], direct: Target, host: str) -> None:
    """Compare the first row dbward's COPY sent with the same row read directly."""
    line = next((r.first_line for r in reads if r.target == "dbward" and r.first_line), None)
    row_id = None if line is None else line.split("\t", 1)[0]
    if line is None or row_id is None or not row_id.isdigit():
        return
    sql = f"COPY (SELECT * FROM people WHERE id = {row_id}) TO STDOUT"
    check.copy_direct = psql_through(direct, host, "-c", sql).rstrip("\n")
    check.copy_dbward = line


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
    first_line: str | None = None  # COPY: the first row psql wrote


@dataclass(frozen=True)
class Streamed:
    lines: int
    first: str
    last: str


def stream_psql(target: Target, host: str, args: tuple[str, ...], timeout: float) -> Streamed:
    """Run psql, reading what it writes as it comes: how many lines, the first and the last."""
    proc = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=target.env(host),
    )
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines, first, last = 0, b"", b""
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            if b"\n" not in first and len(first) < 1 << 16:
                first += chunk[: 1 << 16]
            last = (last + chunk[-256:])[-256:]
        errors = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        how = f"was killed after {timeout:.0f} s" if killed.is_set() else f"exited with code {code}"
        raise BenchError(
            f"psql {' '.join(args)} through {target.name} {how}: {errors}{target.log_tail()}"
        )
    return Streamed(
        lines,
        first.split(b"\n", 1)[0].decode(errors="replace"),
        last.decode(errors="replace").strip().rsplit("\n", 1)[-1],
    )


@dataclass
class PeakRss:
    """A service's peak resident memory (VmHWM) per window, and over all windows."""

    service: Service
    overall_kib: int = 0

    def sample(self) -> int | None:
        """The peak of the current window (since the last reset, else since start)."""
        kib = self.service.peak_rss_kib()
        self.overall_kib = max(self.overall_kib, kib or 0)
        return kib

    def new_window(self) -> bool:
        """Reset VmHWM (clear_refs, Linux 4.0+), keeping the old window's peak in the overall."""
        self.sample()
        try:
            for pid in self.service._pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


def timed_read(
    target: Target, host: str, kind: ReadKind, repeat: int, rows: int, meter: PeakRss | None
) -> Read:
    """One read; with ``meter`` (the target's process), its CPU time and peak memory too."""
    service = meter.service if meter is not None else None
    window = None if meter is None else "read" if meter.new_window() else "lifetime"
    cpu_before = service.cpu_seconds() if service else None
    started = time.perf_counter()
    streamed = stream_psql(target, host, kind.args, timeout=120 + rows / 5_000)
    seconds = time.perf_counter() - started
    cpu_after = service.cpu_seconds() if service else None
    last = streamed.last
    got = streamed.lines if kind.count_lines else int(last) if last.isdigit() else -1
    if got != rows:
        raise BenchError(f"{kind.sql} through {target.name} returned {got:,} rows, not {rows:,}")
    read = Read(target.name, kind.name, repeat, seconds, got, rss_window=window)
    if kind.count_lines:
        read.first_line = streamed.first
    if meter is not None:
        read.proxy_peak_rss_kib = meter.sample()
        if cpu_before is not None and cpu_after is not None:
            read.proxy_cpu_s = cpu_after - cpu_before
    return read


def measure_reads(
    targets: dict[str, Target], meters: dict[str, PeakRss], pg: Postgres, args: argparse.Namespace
) -> tuple[list[Read], dict[str, str]]:
    """Every read through every target, ``--reads`` times; the reads that failed, and why.

    A read that fails (a statement dbward refuses, say) does not abort the run: that
    kind of read is left out of the tables and its goal is reported as not measured.
    """
    direct = targets["direct"]
    if args.warmup > 0:  # bring the table into the page cache, unmeasured
        timed_read(direct, host_of(direct, pg), READ_KINDS[1], -1, args.rows, None)
    total = args.reads * len(READ_KINDS) * len(TARGETS)
    reads: list[Read] = []
    failed: dict[str, str] = {}
    for repeat in range(args.reads):
        for k, kind in enumerate(READ_KINDS):
            shift = (repeat * len(READ_KINDS) + k) % len(TARGETS)
            for name in TARGETS[shift:] + TARGETS[:shift]:
                if kind.name in failed:
                    break
                target = targets[name]
                try:
                    host = host_of(target, pg)
                    read = timed_read(target, host, kind, repeat, args.rows, meters.get(name))
                except BenchError as exc:
                    failed[kind.name] = str(exc)
                    err.print(f"[yellow]{kind.label} not measured:[/]", escape(str(exc)))
                    break
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
    return [r for r in reads if r.kind not in failed], failed


# results ---------------------------------------------------------------------------------


def mb(kib: int | None) -> float:
    return (kib or 0) * 1024 / 1e6


@dataclass
class Goal:
    what: str
    figure: str
    met: bool | None  # None: not measured


@dataclass
class Results:
    facts: dict[str, Any]
    check: MaskCheck
    runs: list[Run]
    reads: list[Read]
    failed_reads: dict[str, str]  # read kind -> why it was not measured
    goals: list[Goal] = field(default_factory=list)


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


def reads_tables(reads: list[Read], rows: int) -> tuple[Table, Table]:
    median = " (median ± half the range)" if len({r.repeat for r in reads}) > 1 else ""
    kinds = [k for k in READ_KINDS if any(r.kind == k.name for r in reads)]
    times = Table(
        title=f"(b) Reading all {rows:,} rows through psql, seconds{median}",
        caption="; ".join(f"{k.label}: psql -c {k.sql!r}" for k in kinds),
        title_justify="left",
        caption_justify="left",
    )
    cost = Table(title="(b) dbward's cost per whole-table read", title_justify="left")
    times.add_column("read", no_wrap=True)
    cost.add_column("read", no_wrap=True)
    for name in TARGETS:
        times.add_column(name, justify="right")
    for column in (
        f"dbward ÷ relay\n(goal ≤ {READ_GOAL:g})",
        "dbward ÷ direct",
        "dbward\nCPU s",
        f"dbward peak RSS\nMB (goal < {RSS_GOAL_MB:g})",
    ):
        cost.add_column(column, justify="right")
    for kind in kinds:
        mine = [r for r in reads if r.target == "dbward" and r.kind == kind.name]
        cpu = [r.proxy_cpu_s for r in mine if r.proxy_cpu_s is not None]
        peak = max((r.proxy_peak_rss_kib or 0 for r in mine), default=0)
        to_relay = read_ratio(reads, kind.name, "relay")
        times.add_row(
            kind.label, *(fmt_seconds(read_seconds(reads, name, kind.name)) for name in TARGETS)
        )
        cost.add_row(
            kind.label,
            f"[{'green' if to_relay <= READ_GOAL else 'red'}]{to_relay:.2f}[/]",
            f"{read_ratio(reads, kind.name, 'direct'):.2f}",
            f"{statistics.median(cpu):.2f}" if cpu else "-",
            f"{mb(peak):.0f}" if peak else "-",
        )
    return times, cost


def goals(results: Results, args: argparse.Namespace) -> list[Goal]:
    runs = {(r.mode, r.clients, r.target): r for r in results.runs}
    peak_kib = results.facts.get("dbward_peak_rss_kib")
    cells = [(mode, clients) for mode in args.modes for clients in args.clients]
    worst_ratio, (mode, clients) = max((query_ratio(runs, *cell, "relay"), cell) for cell in cells)
    found = [
        Goal(
            f"100-row query: dbward ÷ relay ≤ {QUERY_GOAL}, time per query, every run",
            f"worst {worst_ratio:.2f} (-M {mode}, -c {clients})",
            worst_ratio <= QUERY_GOAL,
        )
    ]
    for kind in READ_KINDS:
        what = f"{args.rows:,}-row {kind.label}: dbward ÷ relay ≤ {READ_GOAL:g}"
        if kind.name in results.failed_reads:
            found.append(Goal(what, "not measured: the read failed", None))
            continue
        ratio = read_ratio(results.reads, kind.name, "relay")
        unmasked = kind.count_lines and results.check.copy_masked is False
        figure = f"{ratio:.2f}" + (" (COPY not masked)" if unmasked else "")
        found.append(Goal(what, figure, ratio <= READ_GOAL))
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


def print_report(targets: dict[str, Target], results: Results, args: argparse.Namespace) -> None:
    facts, check = results.facts, results.check
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
    if check.copy_masked is not None:
        row = escape(check.copy_dbward or "")
        out.print(
            f"COPY people TO STDOUT through dbward is masked; its first row: {row}"
            if check.copy_masked
            else "[bold yellow]WARNING: COPY people TO STDOUT came back unmasked through dbward "
            f"(its first row is the same as read directly: {row}), so the COPY figures "
            "measure dbward without masking[/]"
        )
    by_cell = {(r.mode, r.clients, r.target): r for r in results.runs}
    for table in query_tables(by_cell, args):
        out.print(table)
    if results.reads:
        for table in reads_tables(results.reads, args.rows):
            out.print(table)
    for kind, why in results.failed_reads.items():
        out.print(f"[red]{kind} read not measured:[/]", escape(why))
    out.print(goals_table(results.goals))
    met = sum(1 for g in results.goals if g.met)
    unmeasured = sum(1 for g in results.goals if g.met is None)
    out.print(
        f"{met} of {len(results.goals)} goals met"
        + (f", {unmeasured} not measured" if unmeasured else "")
        + ("" if check.active else " [yellow](masking NOT active during this run)[/]")
    )


def write_json(path: Path, args: argparse.Namespace, results: Results) -> None:
    check = results.check
    document = {
        "command": " ".join(sys.argv),
        "settings": {
            k: getattr(args, k) for k in ("rows", "seconds", "clients", "modes", "warmup", "reads")
        },
        "facts": results.facts,
        "masking": {
            "active": check.active,
            "masked_columns": check.masked_columns,
            "copy_masked": check.copy_masked,
            "direct": check.direct,
            "dbward": check.dbward,
        },
        "queries": [asdict(r) for r in results.runs],
        "reads": [asdict(r) for r in results.reads],
        "failed_reads": results.failed_reads,
        "goals": [asdict(g) for g in results.goals],
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
    meters = {name: PeakRss(t.service) for name, t in targets.items() if t.service is not None}
    reads, failed = measure_reads(targets, meters, pg, args)
    check_copy_masking(check, reads, targets["direct"], host_of(targets["direct"], pg))
    if check.copy_masked is not None:
        err.print(f"COPY through dbward {'is' if check.copy_masked else 'is NOT'} masked")
    for name, meter in meters.items():
        meter.sample()  # the last window
        facts[f"{name}_peak_rss_kib"] = meter.overall_kib or None

    results = Results(facts, check, runs, reads, failed)
    results.goals = goals(results, args)
    print_report(targets, results, args)
    if args.json is not None:
        write_json(args.json, args, results)


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
    add_server_options(parser)
    args = parser.parse_args(argv)
    parse_clients_modes(parser, args)
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
