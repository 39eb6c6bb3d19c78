"""Audit sinks end to end: a real dbward (``audit.sinks``), real clients, real receivers.

The receivers (``tests.sink_receivers``) are a syslog server that parses every
octet-counted RFC 5424 frame (over TCP or TLS) and an HTTP server that checks
every webhook POST's HMAC signature. What a receiver gets is compared with the
records the store holds for dbward's chains: every one of them, each as
exported, at least once (delivery is at least once: repeats are dropped by chain
and seq), nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from dbward.audit.chain import ChainRecord
from dbward.audit.export import record_dict
from tests.conftest import (
    Dbward,
    UpstreamDb,
    free_port,
    start_dbward,
    stop_dbward,
    wait_for_port,
)
from tests.integration.helpers import log_tail
from tests.integration.throwaway_pg import CertAuthority
from tests.sink_receivers import SyslogReceiver, WebhookReceiver, wait_until

INSTANCE = "sinks"
SECRET_ENV = "DBWARD_TEST_WEBHOOK_SECRET"
SECRET = "webhook-secret-for-tests"
FAILED = "delivery failed, records stay spooled"

# What a session runs: plain reads, text that needs escaping, an error (severity 5) and a
# statement dbward refuses (it does not parse: denied everywhere, severity 4).
STATEMENTS = ("SELECT 1", "SELECT 'ünï \"q\" \\ ]' AS odd", "SELECT 1/0", "SELEC 2")


class Receiver(Protocol):
    port: int

    def arrivals(self) -> list[tuple[str, int]]: ...

    def records(self) -> list[dict[str, Any]]: ...

    def stop(self) -> None: ...


def _sinks(*sinks: dict[str, Any]) -> dict[str, Any]:
    return {"audit": {"instance": INSTANCE, "sinks": list(sinks)}}


def _session(server: Dbward, *statements: str) -> None:
    """One client session running ``statements``; a refused or failing one is fine."""
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        for sql in statements:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql)


Key = tuple[str, int]  # (chain, seq)


def _stored(server: Dbward) -> dict[Key, dict[str, Any]]:
    """The serving processes' records in the store, as sinks send them (``record_dict``)."""
    db = sqlite3.connect(server.state_dir / "audit.db")
    try:
        rows = db.execute(
            "SELECT chain, seq, hash, line FROM records WHERE chain LIKE ?", (f"{INSTANCE}-%",)
        ).fetchall()
    finally:
        db.close()
    return {(row[0], row[1]): record_dict(ChainRecord(*row).stored(), row[2]) for row in rows}


def _settled(server: Dbward) -> dict[Key, dict[str, Any]]:
    """The stored records once every session has ended (connection.end is recorded after
    the client leaves) and the store holds all the journal does."""

    def probe() -> dict[Key, dict[str, Any]] | None:
        everything = server.audit()
        kinds = [e["kind"] for e in everything]
        stored = _stored(server)
        if kinds.count("connection.start") != kinds.count("connection.end"):
            return None
        if set(stored) != {(e["chain"], e["seq"]) for e in everything}:
            return None
        return stored

    stored: dict[Key, dict[str, Any]] = wait_until(probe, what="the sessions' records stored")
    for chain in {chain for chain, _ in stored}:
        seqs = sorted(seq for c, seq in stored if c == chain)
        assert seqs == list(range(1, len(seqs) + 1)), f"the store has a gap in {chain}"
    return stored


def _wait_delivered(
    server: Dbward, stored: dict[Key, dict[str, Any]], *receivers: Receiver, timeout: float = 10
) -> set[Key]:
    """Until the receivers together have every stored record; what they have, deduplicated."""

    def got() -> set[Key]:
        return {key for receiver in receivers for key in receiver.arrivals()}

    try:
        wait_until(lambda: set(stored) <= got(), timeout=timeout, what="every record delivered")
    except AssertionError:
        missing = sorted(set(stored) - got())
        raise AssertionError(f"never delivered: {missing}\n{log_tail(server)}") from None
    return got()


def _assert_exact_copies(stored: dict[Key, dict[str, Any]], *receivers: Receiver) -> None:
    for receiver in receivers:
        for record in receiver.records():
            assert record == stored[record["chain"], record["seq"]]


def _sink_caught_up(server: Dbward, name: str) -> bool:
    """The sink's spool cursor is at its end: it counts everything spooled as delivered."""
    directory = server.state_dir / "audit-sinks" / name
    try:
        segment, offset = (directory / "cursor").read_text().split()
    except (OSError, ValueError):
        return False
    last = max(int(p.stem.split("-")[1]) for p in directory.glob("spool-*.jsonl"))
    size = (directory / f"spool-{last}.jsonl").stat().st_size
    return (int(segment), int(offset)) == (last, size)


def _syslog_sink(port: int, **options: Any) -> dict[str, Any]:
    return {"name": "siem", "type": "syslog", "host": "127.0.0.1", "port": port, **options}


def _webhook_sink(url: str, **options: Any) -> dict[str, Any]:
    return {"name": "hook", "type": "webhook", "url": url, "secret_env": SECRET_ENV, **options}


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The webhook's key, in the environment dbward is started with."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET.encode()


@pytest.fixture(scope="module")
def syslog_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A CA file for dbward and the receiver's server context (a certificate it issued)."""
    directory = tmp_path_factory.mktemp("syslog-tls")
    ca = CertAuthority.create(directory, "dbward sink test CA")
    cert, key = ca.issue(directory, "syslog", dns=["localhost"], ips=["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return ca.ca_file, context


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Receivers and dbwards to stop at the end, whatever happened."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Dbward):
            stop_dbward(thing)
        else:
            thing.stop()


# ------------------------------------------------------------------------------------------
# Syslog
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_syslog_gets_every_record_in_order_and_catches_up_after_an_outage(
    transport: str,
    upstream_db: UpstreamDb,
    tmp_path: Path,
    syslog_tls: tuple[Path, ssl.SSLContext],
    cleanup: list[Any],
) -> None:
    ca_file, context = syslog_tls
    tls = context if transport == "tls" else None
    options = {"tls": True, "ca_file": str(ca_file)} if tls else {}
    first = SyslogReceiver(tls=tls).start()
    cleanup.append(first)
    config = _sinks(_syslog_sink(first.port, **options))
    server = start_dbward(tmp_path, upstream_db, extra_config=config)
    cleanup.append(server)

    # One session: one frame per record, in order, each exactly the stored record.
    _session(server, *STATEMENTS)
    stored = _settled(server)
    _wait_delivered(server, stored, first)
    assert first.arrivals() == sorted(stored)
    assert first.errors == []
    _assert_exact_copies(stored, first)
    kinds = [f.message.msgid for f in first.frames]
    assert kinds[0] == "connection.start"
    assert kinds[-1] == "connection.end"
    assert kinds.count("statement") == len(STATEMENTS)
    for frame in first.frames:
        assert frame.message.sd["dbward@32473"]["hash"] == stored[frame.key]["hash"]
    severity = {f.record["data"].get("statement"): f.message.severity for f in first.frames}
    assert severity["SELECT 1"] == 6
    assert severity["SELECT 1/0"] == 5
    assert severity["SELEC 2"] == 4

    # The receiver goes away; statements keep coming; another one takes its port.
    first.stop()
    _session(server, "SELECT 'during the outage'", "SELECT 2")
    wait_until(lambda: FAILED in server.log(), what="the sink to notice the outage")
    second = SyslogReceiver(port=first.port, tls=tls).start()
    cleanup.append(second)
    _session(server, "SELECT 'after the outage'")

    stored = _settled(server)
    got = _wait_delivered(server, stored, first, second)
    assert got == set(stored)
    assert second.errors == []
    _assert_exact_copies(stored, second)
    assert second.arrivals() == sorted(second.arrivals()), "out of order"
    assert "delivering again" in server.log()


def test_syslog_frames_a_receiver_never_read_are_sent_again(
    upstream_db: UpstreamDb, tmp_path: Path, cleanup: list[Any]
) -> None:
    first = SyslogReceiver().start()
    cleanup.append(first)
    server = start_dbward(tmp_path, upstream_db, extra_config=_sinks(_syslog_sink(first.port)))
    cleanup.append(server)
    _session(server, "SELECT 'read'")
    _wait_delivered(server, _settled(server), first)

    first.pause()  # the receiver hangs: frames wait in its socket, unread
    _session(server, "SELECT 'never read'")
    _settled(server)
    wait_until(lambda: _sink_caught_up(server, "siem"), what="the sink to send everything")
    first.stop()  # and dies with them
    second = SyslogReceiver(port=first.port).start()
    cleanup.append(second)
    _session(server, "SELECT 'after'")

    stored = _settled(server)
    assert _wait_delivered(server, stored, first, second, timeout=5) == set(stored)


# ------------------------------------------------------------------------------------------
# Webhook
# ------------------------------------------------------------------------------------------


def test_webhook_gets_every_record_signed_through_a_run_of_503s(
    upstream_db: UpstreamDb, tmp_path: Path, webhook_secret: bytes, cleanup: list[Any]
) -> None:
    receiver = WebhookReceiver(webhook_secret, answer=lambda n: 503 if n <= 3 else 204).start()
    cleanup.append(receiver)
    server = start_dbward(
        tmp_path, upstream_db, extra_config=_sinks(_webhook_sink(receiver.url, batch=3))
    )
    cleanup.append(server)

    _session(server, *STATEMENTS, "SELECT 5", "SELECT 6")
    stored = _settled(server)
    got = _wait_delivered(server, stored, receiver)

    assert got == set(stored)
    assert [post.status for post in receiver.posts[:3]] == [503, 503, 503]
    assert all(post.signed for post in receiver.posts), "a body whose signature fails"
    assert all(len(post.records()) <= 3 for post in receiver.posts)
    refused = {(r["chain"], r["seq"]) for p in receiver.posts[:3] for r in p.records()}
    assert refused <= got  # what a 503 refused came again
    _assert_exact_copies(stored, receiver)


def test_webhook_down_when_dbward_starts_gets_everything_once_it_is_up(
    upstream_db: UpstreamDb, tmp_path: Path, webhook_secret: bytes, cleanup: list[Any]
) -> None:
    port = free_port()
    server = start_dbward(
        tmp_path,
        upstream_db,
        extra_config=_sinks(_webhook_sink(f"http://127.0.0.1:{port}/audit")),
    )
    cleanup.append(server)
    _session(server, *STATEMENTS)
    wait_until(lambda: FAILED in server.log(), what="a failed delivery")

    receiver = WebhookReceiver(webhook_secret, port=port).start()
    cleanup.append(receiver)
    stored = _settled(server)
    got = _wait_delivered(server, stored, receiver)
    assert got == set(stored)
    assert all(post.signed for post in receiver.posts)
    _assert_exact_copies(stored, receiver)


def test_each_worker_delivers_its_own_chain(
    upstream_db: UpstreamDb, tmp_path: Path, webhook_secret: bytes, cleanup: list[Any]
) -> None:
    receiver = WebhookReceiver(webhook_secret).start()
    cleanup.append(receiver)
    config = {**_sinks(_webhook_sink(receiver.url)), "workers": 2}
    server = start_dbward(tmp_path, upstream_db, extra_config=config)
    cleanup.append(server)

    # Short sessions until the kernel has given some to each worker.
    for number in range(40):
        _session(server, f"SELECT {number}")
        if len({chain for chain, _ in _stored(server)}) == 2:
            break
    stored = _settled(server)
    assert {chain for chain, _ in stored} == {f"{INSTANCE}-0", f"{INSTANCE}-1"}
    assert _wait_delivered(server, stored, receiver) == set(stored)
    _assert_exact_copies(stored, receiver)
    spools = server.state_dir / "audit-sinks" / "hook"
    assert sorted(p.name for p in spools.iterdir()) == ["worker-0", "worker-1"]


# ------------------------------------------------------------------------------------------
# A restart in the middle
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["syslog", "webhook"])
def test_records_spooled_before_a_restart_are_delivered_after_it(
    kind: str,
    upstream_db: UpstreamDb,
    tmp_path: Path,
    webhook_secret: bytes,
    cleanup: list[Any],
) -> None:
    def receiver_on(port: int) -> Receiver:
        if kind == "syslog":
            return SyslogReceiver(port=port).start()
        return WebhookReceiver(webhook_secret, port=port).start()

    first = receiver_on(0)
    cleanup.append(first)
    sink = (
        _syslog_sink(first.port)
        if kind == "syslog"
        else _webhook_sink(f"http://127.0.0.1:{first.port}/audit")
    )
    server = start_dbward(tmp_path, upstream_db, extra_config=_sinks(sink))
    cleanup.append(server)
    _session(server, "SELECT 'before'")
    before = _settled(server)
    _wait_delivered(server, before, first)

    first.stop()
    _session(server, "SELECT 'spooled 1'", "SELECT 'spooled 2'")
    spooled = _settled(server)
    wait_until(lambda: FAILED in server.log(), what="a failed delivery")
    stop_dbward(server)
    assert server.proc.returncode == 0, log_tail(server)
    outage = set(spooled) - set(before)
    assert outage
    assert not outage & set(first.arrivals())

    second = receiver_on(first.port)
    cleanup.append(second)
    tokens = server.tokens
    server = start_dbward(tmp_path, upstream_db, extra_config=_sinks(sink))  # same state dir
    server.tokens = tokens
    cleanup.append(server)
    _session(server, "SELECT 'after the restart'")
    stored = _settled(server)
    assert set(spooled) < set(stored)

    got = _wait_delivered(server, stored, first, second)
    assert got == set(stored)
    _assert_exact_copies(stored, first, second)


# ------------------------------------------------------------------------------------------
# Stdout
# ------------------------------------------------------------------------------------------


def _json_records(text: str) -> list[dict[str, Any]]:
    """The lines of ``text`` that are sink records (JSON objects with a chain and seq)."""
    found = []
    for line in text.splitlines():
        if '"chain"' not in line:
            continue
        assert line.startswith("{"), f"a record glued to something else: {line[:120]!r}"
        record = json.loads(line)
        found.append(record)
    return found


def _serve(server: Dbward, stdout: Path, stderr: Path) -> None:
    """Run ``server``'s config again, its standard output and error kept apart."""
    env = {**os.environ, "DBWARD_TEST_UPSTREAM_PW": server.upstream.password}
    argv = [sys.executable, "-m", "dbward", "serve", "--config", str(server.config_path)]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen([*argv, "--log-level", "debug"], stdout=out, stderr=err, env=env)
    server.proc = proc
    wait_for_port(server.port, proc=proc)


def test_stdout_sink_prints_records_as_json_lines_apart_from_the_log(
    upstream_db: UpstreamDb, tmp_path: Path, cleanup: list[Any]
) -> None:
    server = start_dbward(
        tmp_path, upstream_db, extra_config=_sinks({"name": "out", "type": "stdout"})
    )
    cleanup.append(server)

    # The fixture sends dbward's stdout and stderr to one file: records and log lines mix
    # in it, each record still a line of its own.
    _session(server, *STATEMENTS)
    stored = _settled(server)
    wait_until(lambda: len(_json_records(server.log())) >= len(stored), what="records on stdout")
    assert " INFO dbward." in server.log()  # log lines in the same file

    # With the streams apart, stdout is nothing but records: logging goes to stderr.
    stop_dbward(server)
    first_run = _json_records(server.log())  # with what it delivered while stopping
    stdout, stderr = tmp_path / "stdout.jsonl", tmp_path / "stderr.log"
    _serve(server, stdout, stderr)
    _session(server, "SELECT 'second run'", "SELECT 1/0")
    stored = _settled(server)
    stop_dbward(server)

    lines = stdout.read_text().splitlines()
    assert lines, "nothing on stdout"
    second_run = [json.loads(line) for line in lines]  # every line a JSON record
    assert all(isinstance(r, dict) and (r["chain"], r["seq"]) in stored for r in second_run)
    log = stderr.read_text()
    assert "listening on" in log
    assert _json_records(log) == []

    delivered = first_run + second_run
    assert {(r["chain"], r["seq"]) for r in delivered} == set(stored)
    for record in delivered:
        assert record == stored[record["chain"], record["seq"]]
