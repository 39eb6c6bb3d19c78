"""dbward in front of MariaDB/MySQL, side by side with a direct connection and a bare relay.

One invocation does everything: it makes a fresh database and user on the
local MariaDB, fills it with ``sysbench oltp_point_select prepare``, starts
the bare relay (``bench/relay.py``) and dbward (a mysql listener with TLS
required and one without), each as its own process on a free port, runs
``sysbench oltp_point_select`` (ten primary-key SELECTs per transaction)
against every target for both protocols (``--db-ps-mode=disable``: text
COM_QUERY; ``auto``: server-side prepared statements, binary rows) and each
thread count, rounds interleaved, and prints queries per second and the
ratios. It drops what it made and stops what it started.

Run: .venv/bin/python bench/mysql.py [--seconds 10] [--threads 1,8] [--rounds 2]
         [--modes text,prepared] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pymysql
import yaml
from pgbench import (
    RELAY,
    ROOT,
    BenchError,
    Service,
    cpu_busy,
    free_port,
    start_service,
)
from rich.console import Console
from rich.table import Table

out = Console(width=160)
MODES = {"text": "disable", "prepared": "auto"}
TARGETS = ("direct", "relay", "dbward-tls", "dbward-plain")
PASSWORD_ENV = "DBWARD_BENCH_MYSQL_PASSWORD"
_QPS = re.compile(r"queries:\s+\d+\s+\(([\d.]+) per sec\.\)")
_TPS = re.compile(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec\.\)")
_LATENCY = re.compile(r"avg:\s+([\d.]+)")
_ERRORS = re.compile(r"ignored errors:\s+(\d+)")


@dataclass(frozen=True)
class Mysql:
    host: str
    port: int
    user: str
    password: str

    def admin(self) -> pymysql.connections.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, autocommit=True
        )


@dataclass
class Target:
    name: str
    port: int
    user: str
    password: str
    database: str
    tls: bool
    service: Service | None = None
    files: Path | None = None  # sysbench's TLS files (cacert.pem, client-*.pem) are here


@dataclass
class Run:
    target: str
    mode: str
    threads: int
    round: int
    qps: float
    tps: float
    latency_ms: float
    errors: int
    proxy_cpu_us: float | None  # proxy CPU time per query


def sysbench(target: Target, *, mode: str, threads: int, seconds: int, action: str) -> str:
    argv = [
        "sysbench",
        "oltp_point_select",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={target.port}",
        f"--mysql-user={target.user}",
        f"--mysql-password={target.password}",
        f"--mysql-db={target.database}",
        f"--mysql-ssl={'on' if target.tls else 'off'}",
        "--tables=1",
        "--table-size=10000",
        f"--threads={threads}",
        f"--time={seconds}",
        f"--db-ps-mode={MODES[mode]}",
        "--report-interval=0",
        action,
    ]
    # libmariadb loads mysql_clear_password (what dbward asks for) when a connection first
    # needs it, and threads that need it at once race ("already loaded"): load it up front.
    env = {**os.environ, "LIBMYSQL_PLUGINS": "mysql_clear_password"}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 120, cwd=target.files, env=env
    )
    if result.returncode != 0:
        log = ""
        if target.service is not None:
            log = "\n" + target.service.log_path.read_text(errors="replace")[-2000:]
        raise BenchError(
            f"sysbench {action} against {target.name} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}{log}"
        )
    return result.stdout


def measure(target: Target, mode: str, threads: int, seconds: int, round_: int) -> Run:
    sysbench(target, mode=mode, threads=threads, seconds=2, action="run")  # warm-up
    before = target.service.cpu_seconds() if target.service is not None else None
    text = sysbench(target, mode=mode, threads=threads, seconds=seconds, action="run")
    after = target.service.cpu_seconds() if target.service is not None else None
    qps = _QPS.search(text)
    tps = _TPS.search(text)
    latency = _LATENCY.search(text)
    errors = _ERRORS.search(text)
    if qps is None or tps is None or latency is None:
        raise BenchError(f"cannot read sysbench's output:\n{text}")
    queries = float(qps.group(1)) * seconds
    cpu = None
    if before is not None and after is not None and queries:
        cpu = round((after - before) / queries * 1e6, 1)
    return Run(
        target.name,
        mode,
        threads,
        round_,
        float(qps.group(1)),
        float(tps.group(2)),
        float(latency.group(1)),
        int(errors.group(1)) if errors else 0,
        cpu,
    )


def start_dbward(
    work: Path, server: Mysql, database: str, user: str, password: str
) -> tuple[Service, str, int, int]:
    state = work / "dbward-state"
    tls_port, plain_port = free_port(), free_port()
    while plain_port == tls_port:
        plain_port = free_port()
    config = {
        "state_dir": str(state),
        "listeners": [
            {"host": "127.0.0.1", "port": tls_port, "protocol": "mysql"},
            {"host": "127.0.0.1", "port": plain_port, "protocol": "mysql", "require_tls": False},
        ],
        "connections": {
            "bench": {
                "engine": "mysql",
                "environment": "production",  # the guardrails decide every statement
                "host": server.host,
                "port": server.port,
                "database": database,
                "credentials": {"user": user, "password_env": PASSWORD_ENV},
                "tls": {"mode": "disable"},
            }
        },
    }
    config_path = work / "dbward.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, PASSWORD_ENV: password}
    created = subprocess.run(
        [sys.executable, "-m", "dbward", "token", "create", "--config", str(config_path),
         "--name", "bench", "--group", "bench", "--ttl", "1d"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    lines = created.stdout.strip().splitlines()
    if created.returncode != 0 or not lines:
        raise BenchError(f"dbward token create failed:\n{created.stdout}{created.stderr}")
    service = start_service(
        "dbward",
        [sys.executable, "-m", "dbward", "serve", "--config", str(config_path)],
        tls_port,
        work / "dbward.log",
        env=env,
        cwd=ROOT,
    )
    return service, lines[-1].strip(), tls_port, plain_port


def sysbench_tls_files(work: Path, ca_file: Path) -> Path:
    """sysbench's MySQL driver loads cacert.pem, client-cert.pem and client-key.pem from
    its working directory when --mysql-ssl=on: dbward's CA, and a throwaway client
    certificate (dbward does not ask for one)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    files = work / "sysbench-tls"
    files.mkdir()
    shutil.copy(ca_file, files / "cacert.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbward bench client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (files / "client-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (files / "client-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return files


def report(runs: list[Run], args: argparse.Namespace) -> dict[str, object]:
    cells: dict[tuple[str, str, int], list[Run]] = {}
    for run in runs:
        cells.setdefault((run.target, run.mode, run.threads), []).append(run)

    def median(target: str, mode: str, threads: int) -> float:
        return statistics.median(r.qps for r in cells[(target, mode, threads)])

    table = Table(title="sysbench oltp_point_select: queries per second (median of rounds)")
    for column in ("mode", "threads", *TARGETS, "dbward-tls/direct", "dbward-tls/relay",
                   "dbward-plain/relay", "dbward CPU µs/query"):  # fmt: skip
        table.add_column(column, justify="right")
    ratios: dict[str, float] = {}
    for mode in args.modes:
        for threads in args.threads:
            values = {t: median(t, mode, threads) for t in TARGETS}
            cpu = [r.proxy_cpu_us for r in cells[("dbward-tls", mode, threads)] if r.proxy_cpu_us]
            key = f"{mode}/{threads}"
            ratios[f"{key} dbward-tls/direct"] = values["dbward-tls"] / values["direct"]
            ratios[f"{key} dbward-tls/relay"] = values["dbward-tls"] / values["relay"]
            ratios[f"{key} dbward-plain/relay"] = values["dbward-plain"] / values["relay"]
            table.add_row(
                mode,
                str(threads),
                *(f"{values[t]:,.0f}" for t in TARGETS),
                f"{ratios[f'{key} dbward-tls/direct']:.2f}",
                f"{ratios[f'{key} dbward-tls/relay']:.2f}",
                f"{ratios[f'{key} dbward-plain/relay']:.2f}",
                f"{statistics.median(cpu):.0f}" if cpu else "-",
            )
    out.print(table)
    return {"runs": [asdict(r) for r in runs], "ratios": ratios}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="text,prepared")
    parser.add_argument("--mysql", default="127.0.0.1:3306", help="host:port of MariaDB/MySQL")
    parser.add_argument("--admin-user", default="root")
    parser.add_argument("--admin-password-env", default="DBWARD_BENCH_MYSQL_ADMIN_PASSWORD")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {list(MODES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sysbench") is None:
        out.print("[red]sysbench is missing: apt-get install sysbench[/]")
        return 1
    host, _, port = args.mysql.rpartition(":")
    server = Mysql(host, int(port), args.admin_user, os.environ.get(args.admin_password_env, ""))
    suffix = secrets.token_hex(4)
    database, user, password = f"dbw_bench_{suffix}", f"dbw_bench_{suffix}", secrets.token_hex(12)
    work = Path(tempfile.mkdtemp(prefix="dbward-bench-mysql-"))
    services: list[Service] = []
    admin = server.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        direct = Target("direct", server.port, user, password, database, False)
        sysbench(direct, mode="text", threads=1, seconds=1, action="prepare")
        relay_port = free_port()
        relay = start_service(
            "relay",
            [sys.executable, str(RELAY), str(relay_port), server.host, str(server.port)],
            relay_port,
            work / "relay.log",
            cwd=ROOT,
        )
        services.append(relay)
        dbward, token, tls_port, plain_port = start_dbward(work, server, database, user, password)
        services.append(dbward)
        targets = [
            direct,
            Target("relay", relay_port, user, password, database, False, relay),
            Target(
                "dbward-tls",
                tls_port,
                "bench",
                token,
                "bench",
                True,
                dbward,
                sysbench_tls_files(work, work / "dbward-state" / "tls" / "ca.crt"),
            ),
            Target("dbward-plain", plain_port, "bench", token, "bench", False, dbward),
        ]
        busy = cpu_busy()
        out.print(
            f"MariaDB/MySQL {server.host}:{server.port}; {os.cpu_count()} CPUs, "
            f"{busy:.0%} busy before the runs"
            if busy is not None
            else ""
        )
        runs: list[Run] = []
        started = time.monotonic()
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes:
                for threads in args.threads:
                    for target in targets:
                        run = measure(target, mode, threads, args.seconds, round_)
                        runs.append(run)
                        out.print(
                            f"round {round_} {mode:8} {threads:2} threads {target.name:13} "
                            f"{run.qps:10,.0f} q/s  {run.latency_ms:.3f} ms/txn"
                            + (f"  errors {run.errors}" if run.errors else "")
                        )
        result = report(runs, args)
        peak = dbward.peak_rss_kib()
        result["dbward_peak_rss_mib"] = round(peak / 1024, 1) if peak else None
        result["seconds"] = round(time.monotonic() - started)
        out.print(f"dbward peak RSS: {result['dbward_peak_rss_mib']} MiB")
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    except BenchError as exc:
        out.print(f"[bold red]benchmark aborted:[/] {exc}")
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
