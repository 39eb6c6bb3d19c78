"""dbward side by side with a direct connection, PgBouncer and a bare relay, under pgbench.

One invocation does everything: it creates a fresh benchmark database on the
local PostgreSQL (``pgbench -i``), starts PgBouncer (session pooling), the bare
relay (``bench/relay.py``) and dbward, each as its own process on a free port,
runs ``pgbench -n -S`` against every target for every protocol mode and client
count (targets interleaved, each run after a short warm-up), prints the
results and stops everything it started. See ``bench/README.md``.

Run: .venv/bin/python bench/pgbench.py [--seconds 10] [--clients 1,8]
         [--modes simple,extended,prepared] [--scale 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RELAY = Path(__file__).resolve().parent / "relay.py"
MODES = ("simple", "extended", "prepared")
TARGETS = ("direct", "pgbouncer", "relay", "dbward-tls", "dbward-plain")
PROXIES = TARGETS[1:]
PGBOUNCER_USER = "postgres"  # pgbouncer refuses to run as root
PASSWORD_ENV = "DBWARD_BENCH_PG_PASSWORD"

out = Console()
err = Console(stderr=True)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# processes -------------------------------------------------------------------------------


def cpu_busy(interval: float = 1.0) -> float | None:
    """The fraction of all CPUs busy over ``interval`` seconds (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1 - (idle1 - idle0) / total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Service:
    """A process the benchmark started, in a process group of its own."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stopped: bool = False

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with code {self.proc.returncode} before listening on "
                    f"port {self.port}; its log ({self.log_path}) ends:\n{tail(self.log_path)}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(
            f"{self.name} does not listen on port {self.port} after {timeout:g} s; "
            f"its log ends:\n{tail(self.log_path)}"
        )

    def _pids(self) -> list[int]:
        """The process and its children (dbward's workers, when it runs several)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *(int(c) for c in children)]

    def peak_rss_kib(self) -> int | None:
        """VmHWM: the most resident memory each process has ever had, summed."""
        total = None
        for pid in self._pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
            if match:
                total = (total or 0) + int(match.group(1))
        return total

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the process and its children have used so far."""
        total = None
        for pid in self._pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
            total = (total or 0.0) + (utime + stime) / os.sysconf("SC_CLK_TCK")
        return total

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} died (exit code {self.proc.returncode}); its log ends:\n"
                f"{tail(self.log_path)}"
            )

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole group, then SIGKILL if it has not gone after ``grace``."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                err.print(f"[yellow]{self.name} ignored SIGTERM for {grace:g} s; killing it[/]")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def start_service(
    name: str,
    argv: list[str],
    port: int,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> Service:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # own process group: Ctrl-C reaches us, we stop it
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    service = Service(name, proc, port, log_path)
    try:
        service.wait_listening()
    except BaseException:
        service.stop(grace=2)
        raise
    return service


# PostgreSQL and pgbench ------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
        if result.returncode != 0:
            raise BenchError(
                f"psql on {self.host}:{self.port} failed for {sql!r}: {result.stderr.strip()}"
            )
        return result.stdout.strip()


def clean_env(**pg: str) -> dict[str, str]:
    """The environment without any libpq variable of ours, plus ``pg``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGGSSENCMODE"] = "disable"  # no GSSAPI round trip for any target
    env["PGCONNECT_TIMEOUT"] = "10"
    env.update(pg)
    return env


@dataclass
class Target:
    name: str
    port: int
    user: str
    database: str
    sslmode: str
    password: str | None = None
    sslrootcert: str | None = None
    tls: str = "?"  # what the client actually negotiated, from the probe
    description: str = ""
    service: Service | None = field(default=None, repr=False)

    def log_tail(self) -> str:
        if self.service is None:
            return ""
        state = "running" if self.service.proc.poll() is None else "exited"
        return (
            f"\n{self.service.name} ({state}) log {self.service.log_path} ends:\n"
            f"{tail(self.service.log_path, 10)}"
        )

    def env(self, host: str) -> dict[str, str]:
        pg = {
            "PGHOST": host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.database,
            "PGSSLMODE": self.sslmode,
            "PGAPPNAME": "dbward-bench",
        }
        if self.password is not None:
            pg["PGPASSWORD"] = self.password
        if self.sslrootcert is not None:
            pg["PGSSLROOTCERT"] = self.sslrootcert
        return clean_env(**pg)


@dataclass
class Run:
    target: str
    mode: str
    clients: int
    threads: int
    seconds: int
    round: int
    tps: float
    latency_ms: float
    transactions: int
    failed: int | None
    audit_statements: int | None = None
    proxy_cpu_us: float | None = None  # proxy process CPU time per transaction


_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def pgbench(
    target: Target,
    host: str,
    mode: str,
    clients: int,
    seconds: int,
    round_: int,
    what: str,
    *,
    script: Path | None = None,
) -> Run:
    """One pgbench run: the built-in select-only script (``-S``), or ``script`` (``-f``)."""
    threads = min(clients, 2)
    workload = ["-f", str(script)] if script is not None else ["-S"]
    argv = ["pgbench", "-n", *workload, "-T", str(seconds), "-c", str(clients)]
    argv += ["-j", str(threads), "-M", mode]
    result = subprocess.run(
        argv, capture_output=True, text=True, env=target.env(host), timeout=seconds * 4 + 120
    )
    output = result.stdout + result.stderr
    where = f"{what} pgbench against {target.name} (-M {mode}, -c {clients}, -T {seconds})"
    excerpt = "\n".join(output.strip().splitlines()[-20:])
    if result.returncode != 0:
        raise BenchError(
            f"{where} exited with code {result.returncode}:\n{excerpt}{target.log_tail()}"
        )
    failed_match = _FAILED.search(output)
    failed = int(failed_match.group(1)) if failed_match else None
    if failed:
        raise BenchError(
            f"{where} reported {failed} failed transactions:\n{excerpt}{target.log_tail()}"
        )
    tps, latency, processed = (
        _TPS.search(output),
        _LATENCY.search(output),
        _PROCESSED.search(output),
    )
    if tps is None or latency is None or processed is None:
        raise BenchError(f"{where}: cannot read tps/latency/transactions from:\n{excerpt}")
    if int(processed.group(1)) == 0:
        raise BenchError(f"{where} processed no transaction:\n{excerpt}")
    return Run(
        target=target.name,
        mode=mode,
        clients=clients,
        threads=threads,
        seconds=seconds,
        round=round_,
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)),
        transactions=int(processed.group(1)),
        failed=failed,
    )


_CONNINFO_SSL = re.compile(r"SSL connection \(protocol: ([^,]+), cipher: ([^,)]+)")


def probe_tls(target: Target, host: str) -> str:
    """Connect as pgbench will (libpq, same settings); say what TLS it negotiated, or 'none'."""
    queries = ["-c", "SELECT count(*) FROM pgbench_branches", "-c", "\\conninfo"]
    result = subprocess.run(
        ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", *queries],
        capture_output=True,
        text=True,
        env=target.env(host),
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"cannot query the bench database through {target.name} (port {target.port}): "
            f"{result.stderr.strip()}"
        )
    match = _CONNINFO_SSL.search(result.stdout)
    return f"{match.group(1)} {match.group(2)}" if match else "none"


# setup -----------------------------------------------------------------------------------


def ensure_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found:
        return found
    err.print("pgbouncer is missing: apt-get install -y pgbouncer")
    install = ["apt-get", "install", "-y", "pgbouncer"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env).returncode != 0:
        err.print("install failed; apt-get update and try again")
        subprocess.run(["apt-get", "update"], env=env, check=False)
        if subprocess.run(install, env=env).returncode != 0:
            raise BenchError("cannot install pgbouncer with apt-get")
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(found).exists():
        raise BenchError("pgbouncer was installed but its binary is not found")
    return found


def require_tools() -> None:
    for tool in ("pgbench", "psql"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH (apt-get install postgresql-client)")


def pgbouncer_version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "PgBouncer"


def start_pgbouncer(
    binary: str, work: Path, pg: Postgres, database: str, max_clients: int
) -> Service:
    owner = pwd.getpwnam(PGBOUNCER_USER)
    home = work / "pgbouncer"
    home.mkdir(mode=0o700)
    os.chown(home, owner.pw_uid, owner.pw_gid)
    port = free_port()
    (home / "userlist.txt").write_text(f'"{pg.user}" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = host={pg.host} port={pg.port} dbname={database} user={pg.user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home}/userlist.txt
pool_mode = session
default_pool_size = {max_clients + 2}
max_client_conn = {max(100, 4 * max_clients)}
server_reset_query = DISCARD ALL
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits,options
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
"""
    )
    for path in home.iterdir():
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return start_service(
        "pgbouncer",
        [binary, str(home / "pgbouncer.ini")],
        port,
        home / "pgbouncer.log",
        env=clean_env(HOME=owner.pw_dir),
        user=PGBOUNCER_USER,
        cwd=home,
    )


def start_relay(work: Path, pg: Postgres) -> Service:
    """The bare relay (``bench/relay.py``) on a free port, forwarding to ``pg``."""
    port = free_port()
    return start_service(
        "relay",
        [sys.executable, str(RELAY), str(port), pg.host, str(pg.port)],
        port,
        work / "relay.log",
        env=clean_env(),
        cwd=ROOT,
    )


@dataclass
class DbwardSetup:
    service: Service
    config_path: Path
    state_dir: Path
    token: str
    tls_port: int
    plain_port: int

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.db"


def start_dbward(
    work: Path,
    pg: Postgres,
    database: str,
    workers: int = 1,
    *,
    name: str = "dbward",
    environment: str = "production",
    audit: dict[str, object] | None = None,
) -> DbwardSetup:
    state = work / f"{name}-state"
    tls_port, plain_port = free_port(), free_port()
    while plain_port == tls_port:
        plain_port = free_port()
    config = {
        "state_dir": str(state),
        "workers": workers,
        "listeners": [
            {"host": "127.0.0.1", "port": tls_port},  # require_tls: true by default
            {"host": "127.0.0.1", "port": plain_port, "require_tls": False},
        ],
        "connections": {
            database: {
                "environment": environment,  # production: the guardrails decide every statement
                "host": pg.host,
                "port": pg.port,
                "database": database,
                "credentials": {"user": pg.user, "password_env": PASSWORD_ENV},
                "tls": {"mode": "disable"},
            }
        },
    }
    if audit is not None:
        config["audit"] = audit
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, PASSWORD_ENV: "unused-with-trust-auth"}
    create = ["token", "create", "--config", str(config_path), "--name", "bench"]
    created = subprocess.run(
        [sys.executable, "-m", "dbward", *create, "--group", "bench", "--ttl", "1d"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    lines = created.stdout.strip().splitlines()
    if created.returncode != 0 or not lines:
        raise BenchError(
            f"dbward token create failed (exit code {created.returncode}):\n"
            f"{created.stdout}{created.stderr}"
        )
    token = lines[-1].strip()
    service = start_service(
        name,
        [sys.executable, "-m", "dbward", "serve", "--config", str(config_path)],
        tls_port,
        work / f"{name}.log",
        env=env,
        cwd=ROOT,
    )
    return DbwardSetup(service, config_path, state, token, tls_port, plain_port)


def _stored_counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall()
    finally:
        db.close()
    return {str(kind): int(n) for kind, n in rows}


def audit_counts(path: Path) -> dict[str, int]:
    """Records in dbward's audit store, by kind, once the store has caught up.

    Records are committed to dbward's journal first and reach the SQLite store
    a moment later (in batches, off the statement path): wait until the
    counts stop moving.
    """
    if not path.exists():
        return {}
    counts = _stored_counts(path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        again = _stored_counts(path)
        if again == counts:
            break
        counts = again
    return counts


# results ---------------------------------------------------------------------------------


@dataclass
class Cell:
    """The median result of one target for one mode and client count."""

    tps: float
    latency_ms: float
    runs: list[float] = field(default_factory=list)
    cpu_us: float | None = None


def summarize(runs: list[Run]) -> dict[tuple[str, int, str], Cell]:
    grouped: dict[tuple[str, int, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.mode, run.clients, run.target), []).append(run)
    return {
        key: Cell(
            tps=statistics.median(r.tps for r in rs),
            latency_ms=statistics.median(r.latency_ms for r in rs),
            runs=[r.tps for r in rs],
            cpu_us=(
                statistics.median(cpus)
                if (cpus := [r.proxy_cpu_us for r in rs if r.proxy_cpu_us is not None])
                else None
            ),
        )
        for key, rs in grouped.items()
    }


def fmt_tps(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    text = f"{cell.tps:,.0f}"
    if len(cell.runs) > 1:
        spread = (max(cell.runs) - min(cell.runs)) / cell.tps * 100
        text += f" ±{spread / 2:.0f}%"
    return text


def added_us(cells: dict[tuple[str, int, str], Cell], mode: str, clients: int, target: str) -> str:
    direct, proxy = cells.get((mode, clients, "direct")), cells.get((mode, clients, target))
    if direct is None or proxy is None:
        return "-"
    return f"{(proxy.latency_ms - direct.latency_ms) * 1000:+,.0f}"


def ratio(cells: dict[tuple[str, int, str], Cell], mode: str, clients: int, a: str, b: str) -> str:
    top, bottom = cells.get((mode, clients, a)), cells.get((mode, clients, b))
    if top is None or bottom is None or bottom.tps == 0:
        return "-"
    return f"{top.tps / bottom.tps:.2f}"


def print_report(
    runs: list[Run],
    targets: dict[str, Target],
    modes: list[str],
    clients_list: list[int],
    facts: dict[str, Any],
) -> dict[str, Any]:
    cells = summarize(runs)
    rounds = max((r.round for r in runs), default=0) + 1
    seconds = runs[0].seconds if runs else 0
    title = (
        f"pgbench -n -S (select-only), scale {facts['scale']}, {seconds} s per run"
        + (f", median of {rounds} rounds" if rounds > 1 else "")
        + f"; {facts['cpus']} CPUs shared by pgbench, PostgreSQL and the proxies"
    )

    def grid(heading: str, columns: list[str], value: Callable[[str, int, int], str]) -> Table:
        """One row per mode and client count, one column per entry of ``columns``."""
        table = Table(title=heading, title_justify="left")
        table.add_column("mode")
        table.add_column("clients", justify="right")
        for column in columns:
            table.add_column(column, justify="right")
        for mode in modes:
            for clients in clients_list:
                table.add_row(
                    mode, str(clients), *(value(mode, clients, i) for i in range(len(columns)))
                )
        return table

    def cpu_us(mode: str, clients: int, name: str) -> str:
        c = cells.get((mode, clients, name))
        return "-" if c is None or c.cpu_us is None else f"{c.cpu_us:,.1f}"

    pairs = [
        ("dbward-plain", "pgbouncer"),
        ("dbward-plain", "relay"),
        ("dbward-tls", "pgbouncer"),
        ("dbward-tls", "relay"),
    ]
    tps = grid(
        f"Transactions per second (higher is better)\n{title}",
        list(TARGETS),
        lambda m, c, i: fmt_tps(cells.get((m, c, TARGETS[i]))),
    )
    added = grid(
        "Added latency vs direct, µs per transaction (lower is better)",
        list(PROXIES),
        lambda m, c, i: added_us(cells, m, c, PROXIES[i]),
    )
    cpu = grid(
        "Proxy CPU time per transaction, µs (user+sys of the proxy process; "
        "less sensitive to other load than tps)",
        list(PROXIES),
        lambda m, c, i: cpu_us(m, c, PROXIES[i]),
    )
    ratios = grid(
        "dbward throughput relative to the other proxies (1.00 = as fast)",
        [f"dbward-{a.removeprefix('dbward-')}\n÷ {b}" for a, b in pairs],
        lambda m, c, i: ratio(cells, m, c, *pairs[i]),
    )

    tls = Table(title="Targets", title_justify="left")
    tls.add_column("target")
    tls.add_column("port", justify="right")
    tls.add_column("client TLS")
    tls.add_column("what it is")
    for target in targets.values():
        tls.add_row(target.name, str(target.port), target.tls, target.description)

    out.print(tls)
    out.print(tps)
    out.print(added)
    out.print(cpu)
    out.print(ratios)
    rss = facts.get("peak_rss_kib", {})
    audit = facts.get("audit_records", {})
    audited = sum(r.audit_statements or 0 for r in runs)
    counted = sum(r.transactions for r in runs if r.target.startswith("dbward"))
    out.print(
        "peak RSS (VmHWM): "
        + ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in rss.items() if kib)
    )
    out.print(
        f"dbward audit records written: {sum(audit.values()):,} "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(audit.items())) or 'none'}); "
        f"statements audited during measured runs {audited:,} vs pgbench transactions "
        f"{counted:,}"
    )
    return {
        "summary": [
            {
                "mode": mode,
                "clients": clients,
                "target": name,
                "tps": cell.tps,
                "latency_ms": cell.latency_ms,
                "tps_runs": cell.runs,
                "proxy_cpu_us_per_txn": cell.cpu_us,
                "added_us_vs_direct": (
                    None
                    if (direct := cells.get((mode, clients, "direct"))) is None
                    else round((cell.latency_ms - direct.latency_ms) * 1000, 1)
                ),
            }
            for (mode, clients, name), cell in cells.items()
        ],
        "ratios": [
            {
                "mode": mode,
                "clients": clients,
                **{f"{a}/{b}": ratio(cells, mode, clients, a, b) for a, b in pairs},
            }
            for mode in modes
            for clients in clients_list
        ],
    }


# main ------------------------------------------------------------------------------------


def parse_list(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"give at least one {what}")
    return items


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--pg-host/--pg-port/--pg-user (the PostgreSQL to use) and --keep."""
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")


def parse_clients_modes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn --clients and --modes into lists, or stop with a usage error."""
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="pgbench: direct vs PgBouncer vs a bare relay vs dbward (TLS and plain)"
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help="pgbench -M protocols")
    parser.add_argument("--scale", type=int, default=1, help="pgbench -i scale factor")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each run")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the sweep; report medians")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    add_server_options(parser)
    parser.add_argument(
        "--dbward-workers", type=int, default=1, help="dbward worker processes (default 1)"
    )
    args = parser.parse_args(argv)
    parse_clients_modes(parser, args)
    if args.seconds < 1 or args.scale < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--seconds, --scale and --rounds must be >= 1 and --warmup >= 0")
    return args


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Started:
    """What the benchmark has started or created, to undo at the end whatever happens."""

    pg: Postgres
    work: Path
    services: list[Service] = field(default_factory=list)
    database: str | None = None

    def close(self, keep: bool) -> None:
        # stop the proxies before dropping the database they hold connections to
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:
                err.print(f"[yellow]stopping {service.name}:[/]", escape(str(exc)))
        if self.database is not None:
            try:
                self.pg.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            except (BenchError, subprocess.TimeoutExpired) as exc:
                err.print(f"[yellow]could not drop {self.database}:[/]", escape(str(exc)))
        if keep:
            err.print(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def benchmark(args: argparse.Namespace, state: Started) -> None:
    pg, work, services = state.pg, state.work, state.services
    database = f"dbward_bench_{secrets.token_hex(4)}"
    pgbouncer_bin = ensure_pgbouncer()
    ssl_on = pg.psql("SHOW ssl") == "on"
    server_version = pg.psql("SHOW server_version")
    max_clients = max(args.clients)
    busy = cpu_busy()
    if busy is not None and busy > 0.10:
        err.print(
            f"[yellow]warning: the CPUs are {busy:.0%} busy before the benchmark starts: other "
            f"work on this machine's {os.cpu_count()} CPUs will make the results noisy[/]"
        )

    err.print(f"creating database {database} and running pgbench -i -s {args.scale}")
    pg.psql(f"CREATE DATABASE {database}")
    state.database = database
    server = ["-h", pg.host, "-p", str(pg.port), "-U", pg.user]
    init = subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(args.scale), *server, database],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    if init.returncode != 0:
        raise BenchError(f"pgbench -i failed:\n{init.stdout}{init.stderr}")
    pg.psql("VACUUM ANALYZE", database)

    err.print("starting pgbouncer, the bare relay and dbward")
    bouncer = start_pgbouncer(pgbouncer_bin, work, pg, database, max_clients)
    services.append(bouncer)
    relay = start_relay(work, pg)
    services.append(relay)
    dbward = start_dbward(work, pg, database, args.dbward_workers)
    services.append(dbward.service)

    pg_ssl = "require" if ssl_on else "disable"
    ca = dbward.state_dir / "tls" / "ca.crt"
    version = pgbouncer_version(pgbouncer_bin)
    targets = {
        "direct": Target(
            "direct",
            pg.port,
            pg.user,
            database,
            pg_ssl,
            description=f"PostgreSQL {server_version.split()[0]}",
        ),
        "pgbouncer": Target(
            "pgbouncer",
            bouncer.port,
            pg.user,
            database,
            "disable",
            description=f"{version}, session pool; to PG: no TLS",
            service=bouncer,
        ),
        "relay": Target(
            "relay",
            relay.port,
            pg.user,
            database,
            pg_ssl,
            description="bench/relay.py: bytes passed to PG unread",
            service=relay,
        ),
        "dbward-tls": Target(
            "dbward-tls",
            dbward.tls_port,
            "bench",
            database,
            "require",
            password=dbward.token,
            sslrootcert=str(ca) if ca.exists() else None,
            description="token login, audit on; to PG: no TLS",
            service=dbward.service,
        ),
        "dbward-plain": Target(
            "dbward-plain",
            dbward.plain_port,
            "bench",
            database,
            "disable",
            password=dbward.token,
            description="same process, require_tls: false listener",
            service=dbward.service,
        ),
    }
    for target in targets.values():
        target.tls = probe_tls(target, "127.0.0.1")
    if targets["dbward-tls"].tls == "none":
        raise BenchError("dbward-tls connected without TLS: the listener should require it")
    for target in targets.values():
        err.print(f"  {target.name:<13} port {target.port:<5} TLS {target.tls}")

    order = list(TARGETS)
    cells = len(args.modes) * len(args.clients)
    total = args.rounds * cells * len(order)
    estimate = total * (args.seconds + args.warmup + 0.5)
    err.print(f"{total} measured runs, about {estimate / 60:.1f} min")
    runs: list[Run] = []
    step = 0
    for round_ in range(args.rounds):
        for mode in args.modes:
            for clients in args.clients:
                # interleave: every target runs once per cell; the order rotates per cell
                shift = step // len(order) % len(order)
                for name in order[shift:] + order[:shift]:
                    step += 1
                    target = targets[name]
                    for service in services:
                        service.check_alive()
                    if args.warmup > 0:
                        pgbench(
                            target,
                            "127.0.0.1",
                            mode,
                            clients,
                            args.warmup,
                            round_,
                            "warm-up",
                        )
                    before = audit_counts(dbward.audit_path).get("statement", 0)
                    cpu_before = target.service.cpu_seconds() if target.service else None
                    run = pgbench(
                        target, "127.0.0.1", mode, clients, args.seconds, round_, "measured"
                    )
                    cpu_after = target.service.cpu_seconds() if target.service else None
                    if cpu_before is not None and cpu_after is not None:
                        run.proxy_cpu_us = (cpu_after - cpu_before) * 1e6 / run.transactions
                    if name.startswith("dbward"):
                        run.audit_statements = (
                            audit_counts(dbward.audit_path).get("statement", 0) - before
                        )
                    runs.append(run)
                    err.print(
                        f"[{step}/{total}] {mode:<8} c={clients:<3} {name:<13} "
                        f"{run.tps:>10,.0f} tps  {run.latency_ms * 1000:>8,.1f} µs"
                        + (
                            f"  proxy CPU {run.proxy_cpu_us:,.0f} µs/txn"
                            if run.proxy_cpu_us is not None
                            else ""
                        )
                        + (
                            f"  audited {run.audit_statements:,}"
                            if run.audit_statements is not None
                            else ""
                        ),
                        markup=False,
                        soft_wrap=True,
                    )

    rss = {s.name: s.peak_rss_kib() for s in services}
    dbward.service.stop()  # graceful: drains and flushes the audit store
    audit = audit_counts(dbward.audit_path)
    facts = {
        "database": database,
        "scale": args.scale,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "postgresql_ssl": ssl_on,
        "cpu_busy_at_start": busy,
        "peak_rss_kib": rss,
        "audit_records": audit,
    }
    report = print_report(runs, targets, args.modes, args.clients, facts)
    for run in runs:
        if run.audit_statements is not None and run.audit_statements < run.transactions:
            err.print(
                f"[yellow]warning: {run.target} -M {run.mode} -c {run.clients}: "
                f"{run.audit_statements} statements audited for {run.transactions} transactions[/]"
            )
    if args.json is not None:
        document = {
            "command": " ".join(sys.argv),
            "settings": {
                "seconds": args.seconds,
                "clients": args.clients,
                "modes": args.modes,
                "scale": args.scale,
                "warmup": args.warmup,
                "rounds": args.rounds,
            },
            "facts": facts,
            "targets": {
                name: {
                    "port": t.port,
                    "user": t.user,
                    "database": t.database,
                    "sslmode": t.sslmode,
                    "client_tls": t.tls,
                    "description": t.description,
                }
                for name, t in targets.items()
            },
            "runs": [asdict(r) for r in runs],
            **report,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        err.print(f"results written to {args.json}")


def run_benchmark(body: Callable[[], None], state: Started, keep: bool) -> int:
    """Run ``body``, then undo what ``state`` records whatever happened; the exit status."""
    status = 0
    with sigterm_as_interrupt():
        try:
            require_tools()
            body()
        except BenchError as exc:
            err.print("[bold red]benchmark aborted:[/]", escape(str(exc)))
            status = 1
        except KeyboardInterrupt:
            err.print("[yellow]interrupted; stopping everything[/]")
            status = 130
        finally:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
            try:
                state.close(keep)
            finally:
                signal.signal(signal.SIGINT, previous)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user)
    work = Path(tempfile.mkdtemp(prefix="dbward-bench-"))
    work.chmod(0o711)  # pgbouncer, run as postgres, must reach its own subdirectory
    state = Started(pg, work)
    return run_benchmark(lambda: benchmark(args, state), state, args.keep)


if __name__ == "__main__":
    sys.exit(main())
