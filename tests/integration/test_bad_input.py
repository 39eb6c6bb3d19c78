"""Bad input ends only the connection that sent it, with a clear error.

Each case runs while a few healthy psycopg clients keep querying through the
same dbward (see :func:`others_keep_working`): they must all succeed, the
dbward process must stay up, and dbward must not log a traceback for input it
is meant to handle. Byte-level cases use raw sockets; the error dbward sends
back is decoded with :class:`BackendParser` and its SQLSTATE and message
checked.
"""

from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import yaml

from dbward.codec.pg.backend import (
    AuthenticationCleartextPassword,
    BackendMessage,
    ErrorResponse,
    ReadyForQuery,
)
from dbward.codec.pg.framing import BackendParser
from dbward.codec.pg.frontend import PasswordMessage
from dbward.codec.pg.startup import SSLRequest, StartupMessage
from dbward.identity.models import IdentityKind
from dbward.identity.tokens import TokenStore
from tests.conftest import Dbward, UpstreamDb, free_port, start_dbward, stop_dbward

STARTUP_TIMEOUT = 3.0  # limits.startup_timeout as the conftest fixture sets it


# -- raw protocol helpers -------------------------------------------------------------------


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the peer sends until it closes; fails if it does not close in time."""
    sock.settimeout(timeout)
    started = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"dbward kept the connection open for {timeout:g} s; got {data!r}")
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def decode(data: bytes) -> list[BackendMessage]:
    parser = BackendParser()
    messages = parser.feed(data)
    assert parser.pending == 0, f"dbward sent a truncated message: {data!r}"
    return messages


def fatal_error(messages: list[BackendMessage]) -> ErrorResponse:
    """The FATAL ErrorResponse that must be the last thing dbward sent."""
    assert messages, "dbward closed the connection without an error message"
    error = messages[-1]
    assert isinstance(error, ErrorResponse), f"expected an ErrorResponse last, got {messages}"
    assert error.severity == "FATAL", error
    assert error.message, error
    return error


def send_raw(port: int, data: bytes, timeout: float = 10.0) -> ErrorResponse:
    """Send ``data`` on a fresh plain connection; return the FATAL error dbward answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if data:
            sock.sendall(data)
        received, _ = read_until_closed(sock, timeout)
    return fatal_error(decode(received))


def tls_socket(port: int) -> ssl.SSLSocket:
    """A connection to dbward that has asked for and started TLS."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(SSLRequest().encode())
    assert sock.recv(1) == b"S"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock)


def login(
    port: int,
    user: str,
    password: str,
    database: str = "app",
    *,
    parameters: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[ssl.SSLSocket, list[BackendMessage]]:
    """Log in over TLS; return the socket and all messages up to ReadyForQuery or the close."""
    sock = tls_socket(port)
    sock.settimeout(timeout)
    startup = {"user": user, "database": database, **(parameters or {})}
    sock.sendall(StartupMessage(startup).encode())
    parser = BackendParser()
    messages: list[BackendMessage] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            sock.close()
            return sock, messages
        for message in parser.feed(chunk):
            messages.append(message)
            if isinstance(message, AuthenticationCleartextPassword):
                sock.sendall(PasswordMessage.cleartext(password).encode())
            elif isinstance(message, ReadyForQuery):
                return sock, messages


def refused_login(port: int, user: str, password: str, database: str = "app") -> ErrorResponse:
    """Log in expecting to be refused: the FATAL error, after which dbward closed."""
    sock, messages = login(port, user, password, database)
    assert not any(isinstance(m, ReadyForQuery) for m in messages), messages
    sock.close()
    return fatal_error(messages)


def wait_for_event(
    server: Dbward, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The first audit event ``match`` accepts; audit writes are batched, so poll."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in server.audit() if match(event)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"no matching audit event within {timeout:g} s: {server.audit()[-5:]}")
        time.sleep(0.05)


# -- healthy neighbours ---------------------------------------------------------------------


class HealthyClient(threading.Thread):
    """Queries through dbward in a loop, reconnecting every few queries, until stopped."""

    def __init__(self, dsn: str, number: int) -> None:
        super().__init__(name=f"healthy-{number}", daemon=True)
        self.dsn = dsn
        self.number = number
        self.queries = 0
        self.connections = 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with psycopg.connect(self.dsn, connect_timeout=10, autocommit=True) as conn:
                    self.connections += 1
                    for _ in range(5):
                        value = self.queries * 10 + self.number
                        row = conn.execute("SELECT %s::bigint + 1", (value,)).fetchone()
                        assert row == (value + 1,), row
                        self.queries += 1
                        if self.stop.wait(0.02):
                            return
        except BaseException as exc:  # reported by the main thread
            self.errors.append(exc)


def _wait_for_queries(clients: list[HealthyClient], at_least: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.errors for c in clients):
            return
        if all(c.queries >= n for c, n in zip(clients, at_least, strict=True)):
            return
        time.sleep(0.02)


@contextmanager
def others_keep_working(
    server: Dbward, database: str = "app", *, clients: int = 3
) -> Iterator[None]:
    """Run healthy clients during the block; afterwards check them, the process and the log."""
    log_before = len(server.log())
    dsn = server.dsn(database=database)
    threads = [HealthyClient(dsn, number) for number in range(clients)]
    after_case = [1] * clients
    for thread in threads:
        thread.start()
    try:
        _wait_for_queries(threads, [1] * clients, timeout=10)
        assert not [e for t in threads for e in t.errors], "healthy clients failed before the case"
        yield
        # Each client must get more queries through after the bad input, too.
        after_case = [t.queries + 3 for t in threads]
        _wait_for_queries(threads, after_case, timeout=10)
    finally:
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(15)
    errors = [f"{t.name}: {e!r}" for t in threads for e in t.errors]
    assert not errors, f"healthy clients failed during the case: {errors}"
    done = [t.queries for t in threads]
    assert all(n >= want for n, want in zip(done, after_case, strict=True)), (done, after_case)
    assert server.proc.poll() is None, f"dbward exited:\n{server.log()[-3000:]}"
    new_log = server.log()[log_before:]
    assert "Traceback" not in new_log, f"dbward logged an unexpected exception:\n{new_log}"


# -- startup-phase garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (3, "invalid length of startup packet: 3"),
        (-1, "invalid length of startup packet: -1"),
        (0x7FFFFFFF, "startup packet of 2147483647 bytes is over the 10000-byte limit"),
    ],
    ids=["three", "negative", "int32-max"],
)
def test_startup_packet_with_invalid_length(dbward: Dbward, length: int, expected: str) -> None:
    with others_keep_working(dbward):
        error = send_raw(dbward.port, struct.pack("!i", length) + b"\x00\x03\x00\x00")
    assert error.sqlstate == "08P01"
    assert error.message == expected


def test_oversized_startup_packet(dbward: Dbward) -> None:
    params = b"user\x00app-svc\x00options\x00" + b"x" * 12_000 + b"\x00\x00"
    packet = struct.pack("!ii", 8 + len(params), 3 << 16) + params
    assert len(packet) > 10_000
    with others_keep_working(dbward):
        error = send_raw(dbward.port, packet)
    assert error.sqlstate == "08P01"
    assert error.message == f"startup packet of {len(packet)} bytes is over the 10000-byte limit"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_bytes(dbward: Dbward, seed: int) -> None:
    # Longer than the startup limit, so whatever length the first four bytes claim,
    # the packet is either complete or over the limit: dbward never waits for more.
    blob = random.Random(seed).randbytes(10_050)
    with others_keep_working(dbward, clients=2):
        error = send_raw(dbward.port, blob)
    assert error.sqlstate == "08P01"
    assert any(
        phrase in error.message
        for phrase in ("startup packet", "frontend protocol", "startup message")
    ), error.message


def test_http_request(dbward: Dbward) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"
    with others_keep_working(dbward):
        error = send_raw(dbward.port, request)
    assert error.sqlstate == "08P01"
    # "GET " read as a length: 0x47455420
    assert error.message == "startup packet of 1195725856 bytes is over the 10000-byte limit"


def test_protocol_version_2(dbward: Dbward) -> None:
    params = b"user\x00app-svc\x00database\x00app\x00\x00"
    packet = struct.pack("!ii", 8 + len(params), 2 << 16) + params
    with others_keep_working(dbward):
        error = send_raw(dbward.port, packet)
    assert error.sqlstate == "08P01"
    assert error.message == "unsupported frontend protocol 2.0: dbward speaks protocol 3"


@pytest.mark.parametrize(
    "parameters", [{"database": "app"}, {"user": "", "database": "app"}], ids=["absent", "empty"]
)
def test_startup_without_user(dbward: Dbward, parameters: dict[str, str]) -> None:
    with others_keep_working(dbward):
        error = send_raw(dbward.port, StartupMessage(parameters).encode())
    # PostgreSQL answers this with 28000 and the same message; 08P01 is also fair.
    assert error.sqlstate in ("28000", "08P01"), error
    assert error.message == "no PostgreSQL user name specified in startup packet"


def test_stalled_clients_are_closed_after_the_startup_timeout(dbward: Dbward) -> None:
    """Silent, half a packet, TLS then silence, no password: each is ended after 3 s."""
    startup = StartupMessage({"user": "app-svc", "database": "app"}).encode()
    results: dict[str, tuple[ErrorResponse | None, float]] = {}

    def silent() -> socket.socket:
        return socket.create_connection(("127.0.0.1", dbward.port), timeout=5)

    def half_packet() -> socket.socket:
        sock = silent()
        sock.sendall(startup[: len(startup) // 2])
        return sock

    def tls_then_silent() -> socket.socket:
        return tls_socket(dbward.port)

    def no_password() -> socket.socket:
        sock = tls_socket(dbward.port)
        sock.sendall(startup)
        return sock

    def half_password() -> socket.socket:
        sock = tls_socket(dbward.port)
        sock.sendall(startup)
        sock.sendall(PasswordMessage.cleartext("dbw_" + "a" * 43).encode()[:9])
        return sock

    def run(name: str, opener: Callable[[], socket.socket]) -> None:
        started = time.monotonic()
        sock = opener()
        with sock:
            data, _ = read_until_closed(sock, timeout=STARTUP_TIMEOUT + 7)
        messages = decode(data)
        errors = [m for m in messages if isinstance(m, ErrorResponse)]
        results[name] = (errors[-1] if errors else None, time.monotonic() - started)

    cases = {
        "silent": silent,
        "half packet": half_packet,
        "TLS, then silent": tls_then_silent,
        "no password": no_password,
        "half a password": half_password,
    }
    with others_keep_working(dbward):
        threads = [threading.Thread(target=run, args=item) for item in cases.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(STARTUP_TIMEOUT + 10)
    assert set(results) == set(cases), results
    for name, (error, elapsed) in results.items():
        assert error is not None, f"{name}: closed without an error"
        assert error.severity == "FATAL", (name, error)
        assert error.sqlstate == "08006", (name, error)
        assert error.message == "startup did not finish within 3 s", (name, error)
        assert STARTUP_TIMEOUT - 0.5 <= elapsed <= STARTUP_TIMEOUT + 3, (name, elapsed)


def test_ssl_request_followed_by_plaintext_in_the_same_packet(dbward: Dbward) -> None:
    startup = StartupMessage({"user": "app-svc", "database": "app"}).encode()
    with others_keep_working(dbward):
        error = send_raw(dbward.port, SSLRequest().encode() + startup)
    assert error.sqlstate == "08P01"
    assert error.message == "client sent unencrypted data after requesting TLS"


def test_plaintext_after_tls_was_accepted(dbward: Dbward) -> None:
    """dbward said 'S', the client sends a plaintext StartupMessage instead of a handshake.

    No TLS session exists, so (as PostgreSQL does) dbward may just close; it must do so
    at once, and treat it as the client's error: one log line, not a crash report.
    """
    startup = StartupMessage({"user": "app-svc", "database": "app"}).encode()
    with others_keep_working(dbward):
        with socket.create_connection(("127.0.0.1", dbward.port), timeout=5) as sock:
            sock.sendall(SSLRequest().encode())
            assert sock.recv(1) == b"S"
            sock.sendall(startup)
            data, elapsed = read_until_closed(sock, timeout=STARTUP_TIMEOUT + 5)
        assert elapsed < STARTUP_TIMEOUT, "dbward waited for the startup timeout"
        if data:  # a plaintext error is a bonus; if sent, it must be a clear 08P01
            error = fatal_error(decode(data))
            assert error.sqlstate == "08P01", error


# -- malformed messages after login ---------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (b"Q" + struct.pack("!i", -5), "frontend message of type 'Q' has invalid length -5"),
        (b"Q" + struct.pack("!i", 2), "frontend message of type 'Q' has invalid length 2"),
        (b"z" + struct.pack("!i", 4), "invalid frontend message type 122 ('z')"),
        (b"Q" + struct.pack("!i", 12) + b"SELECT 1", "malformed Query message"),
    ],
    ids=["negative-length", "short-length", "unknown-type", "unterminated-query"],
)
def test_malformed_message_after_login(
    dbward: Dbward, pg_admin: psycopg.Connection[Any], message: bytes, cause: str
) -> None:
    marker = f"bad-input-{time.monotonic_ns()}"
    with others_keep_working(dbward):
        sock, messages = login(
            dbward.port, "app-svc", dbward.token(), parameters={"application_name": marker}
        )
        assert isinstance(messages[-1], ReadyForQuery), messages
        with sock:
            sock.sendall(message)
            data, _ = read_until_closed(sock)
        error = fatal_error(decode(data))
    assert error.sqlstate == "08P01"
    assert error.message == f"protocol violation: {cause}"
    start = wait_for_event(
        dbward,
        lambda e: e["kind"] == "connection.start" and e["data"]["client_application"] == marker,
    )
    end = wait_for_event(
        dbward,
        lambda e: e["kind"] == "connection.end" and e["session_id"] == start["session_id"],
    )
    assert end["identity"] == "app-svc"
    assert end["data"]["reason"] == f"protocol violation: {cause}"
    # The upstream session went with it.
    deadline = time.monotonic() + 5
    while pg_admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"%({marker})",),
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, "the upstream session outlived the client"
        time.sleep(0.05)


# -- upstream failures ----------------------------------------------------------------------

NO_SUCH_ROLE = "dbw_no_such_role"


@pytest.fixture(scope="module")
def broken_upstreams(
    upstream_db: UpstreamDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dbward]:
    """A second dbward: ``app`` points at a closed port, ``badrole`` at a role that does
    not exist, ``good`` at the real upstream (for the healthy clients)."""
    good = {
        "environment": "production",
        "host": upstream_db.host,
        "port": upstream_db.port,
        "database": upstream_db.name,
        "credentials": {"user": upstream_db.role, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
    }
    closed_port = free_port()  # bound once, then released: nothing listens there
    connections = {
        "app": {**good, "port": closed_port},
        "badrole": {
            **good,
            "credentials": {"user": NO_SUCH_ROLE, "password_env": "DBWARD_TEST_UPSTREAM_PW"},
        },
        "good": good,
    }
    server = start_dbward(
        tmp_path_factory.mktemp("dbward-broken"), upstream_db, connections=connections
    )
    yield server
    stop_dbward(server)


def test_upstream_down(broken_upstreams: Dbward) -> None:
    server = broken_upstreams
    app_port = yaml.safe_load(server.config_path.read_text())["connections"]["app"]["port"]
    with others_keep_working(server, "good"):
        error = refused_login(server.port, "app-svc", server.token())
    assert error.sqlstate == "08006"
    assert error.message.startswith("dbward cannot open connection app: ")
    assert f"upstream 127.0.0.1:{app_port}" in error.message, error.message
    assert "refused" in error.message.lower(), error.message
    event = wait_for_event(server, lambda e: e["kind"] == "login.failed" and e["target"] == "app")
    assert event["identity"] == "app-svc"
    assert event["identity_kind"] == "service"
    assert event["data"]["stage"] == "upstream"
    assert event["data"]["user"] == "app-svc"
    assert f"127.0.0.1:{app_port}" in event["data"]["reason"]


def test_upstream_refuses_dbward_credentials(broken_upstreams: Dbward) -> None:
    server = broken_upstreams
    with others_keep_working(server, "good"):
        error = refused_login(server.port, "app-svc", server.token(), "badrole")
    assert error.message.startswith("dbward cannot open connection badrole: "), error.message
    assert f'role "{NO_SUCH_ROLE}" does not exist' in error.message
    assert server.upstream.password not in error.message
    event = wait_for_event(
        server, lambda e: e["kind"] == "login.failed" and e["target"] == "badrole"
    )
    assert event["identity"] == "app-svc"
    assert event["data"]["stage"] == "upstream"
    assert f'role "{NO_SUCH_ROLE}" does not exist' in event["data"]["reason"]
    assert f'role "{NO_SUCH_ROLE}" does not exist' in server.log()


def test_upstream_refusal_is_not_reported_as_the_clients_login_failure(
    broken_upstreams: Dbward,
) -> None:
    """The client's token was fine; dbward's own upstream credentials were not.

    Class 28 (invalid authorization) tells a client its own login was wrong, so
    tools ask the user for a new password/token; the fault is dbward's setup,
    a connection failure from the client's point of view (08006, as for a down
    upstream).
    """
    error = refused_login(broken_upstreams.port, "app-svc", broken_upstreams.token(), "badrole")
    assert not error.sqlstate.startswith("28"), error
    assert error.sqlstate == "08006", error


# -- refused identities ---------------------------------------------------------------------


def _unknown_token(server: Dbward) -> tuple[str, str]:
    return "app-svc", "dbw_" + "A" * 43


def _not_a_token(server: Dbward) -> tuple[str, str]:
    return "app-svc", "hunter2-not-a-token"


def _expired_token(server: Dbward) -> tuple[str, str]:
    token = server.token("expiring-svc", ttl=1)
    time.sleep(1.2)
    return "expiring-svc", token


def _revoked_token(server: Dbward) -> tuple[str, str]:
    token = server.token("revoked-svc")
    with TokenStore(server.state_dir / "tokens.db") as store:
        store.revoke("revoked-svc")
    return "revoked-svc", token


def _other_users_token(server: Dbward) -> tuple[str, str]:
    return "someone-else", server.token("app-svc")


@pytest.mark.parametrize(
    ("credentials", "sqlstate", "cause"),
    [
        (_unknown_token, "28P01", "unknown token: it was never issued by this dbward"),
        (_not_a_token, "28P01", "password authentication is not accepted"),
        (_expired_token, "28P01", "token expired on "),
        (_revoked_token, "28P01", "token revoked on "),
        (_other_users_token, "28000", "token was issued to 'app-svc', not 'someone-else'"),
    ],
    ids=["unknown", "not-a-token", "expired", "revoked", "other-user"],
)
def test_refused_identity(
    dbward: Dbward,
    credentials: Callable[[Dbward], tuple[str, str]],
    sqlstate: str,
    cause: str,
) -> None:
    user, secret = credentials(dbward)
    with others_keep_working(dbward):
        error = refused_login(dbward.port, user, secret)
    assert error.sqlstate == sqlstate, error
    assert cause in error.message, error.message
    assert secret not in error.message
    event = wait_for_event(
        dbward,
        lambda e: (
            e["kind"] == "login.failed"
            and e["data"]["user"] == user
            and cause in e["data"]["reason"]
        ),
    )
    assert event["data"]["sqlstate"] == sqlstate
    assert event["identity"] is None  # nobody was verified
    assert secret not in str(event)
    assert secret not in dbward.log()


def test_unknown_database(dbward: Dbward) -> None:
    token = dbward.token()
    with others_keep_working(dbward):
        error = refused_login(dbward.port, "app-svc", token, "no_such_db")
    assert error.sqlstate == "3D000"
    assert error.message == 'no connection named "no_such_db" is configured in dbward'
    assert token not in error.message
    event = wait_for_event(
        dbward, lambda e: e["kind"] == "login.failed" and e["target"] == "no_such_db"
    )
    assert event["data"]["sqlstate"] == "3D000"
    assert event["data"]["user"] == "app-svc"
    assert token not in str(event)
    assert token not in dbward.log()


def test_token_store_still_works_for_new_tokens(dbward: Dbward) -> None:
    """After all the refusals above, a freshly issued token still logs in."""
    with TokenStore(dbward.state_dir / "tokens.db") as store:
        token, _ = store.create("late-svc", IdentityKind.AGENT, ("eng",), 60)
    sock, messages = login(dbward.port, "late-svc", token)
    sock.close()
    assert isinstance(messages[-1], ReadyForQuery), messages
