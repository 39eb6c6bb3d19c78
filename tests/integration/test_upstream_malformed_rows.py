"""An upstream that sends a malformed DataRow in a masked result ends that one session only.

The upstream is a tiny fake PostgreSQL server of the test's own (trust login, canned
answers): for a query that says ``bad`` it answers one ``email`` column (which dbward
masks by its name) with a DataRow whose value claims 100 bytes but holds 6. dbward
must tell that client FATAL 08P01 "upstream sent an invalid message", log a warning,
release none of the row, and keep serving every other session. Rows are masked by the
C kernel or, with ``DBWARD_NATIVE=0``, in Python: both cases run.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from dbward.masking import native
from tests.conftest import Dbward, UpstreamDb, start_dbward, stop_dbward
from tests.integration.helpers import log_tail, psql, wait_for
from tests.integration.policy_helpers import connect

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
EMAIL = b"a@b.io"
MASKED = "****@b.io"  # the default partial mask of an email keeps its domain
INVALID = "upstream sent an invalid message"
BAD_QUERY = "SELECT 'bad' AS email"
GOOD_QUERY = "SELECT 'good' AS email"


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _ready(status: bytes = b"I") -> bytes:
    return _message(b"Z", status)


def _email_description() -> bytes:
    # one column "email": table oid 0, attnum 0, type text (25), size -1, typmod -1, text
    return _message(
        b"T", struct.pack("!h", 1) + b"email\x00" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
    )


def _email_row(*, malformed: bool) -> bytes:
    claimed = 100 if malformed else len(EMAIL)  # 100: the value runs past the message
    return _message(b"D", struct.pack("!hi", 1, claimed) + EMAIL)


def _rows(text: str) -> bytes:
    """What an Execute (or the rows part of a Query) answers for ``text``."""
    return _email_row(malformed="bad" in text.lower()) + _message(b"C", b"SELECT 1\x00")


def _command(text: str) -> tuple[bytes, bytes] | None:
    """(CommandComplete, transaction status) for a transaction command, else None."""
    word = text.strip().rstrip(";").split(None, 1)[0].upper() if text.strip() else ""
    if word in ("BEGIN", "START"):
        return _message(b"C", b"BEGIN\x00"), b"T"
    if word in ("COMMIT", "END", "ROLLBACK", "ABORT"):
        tag = b"ROLLBACK" if word in ("ROLLBACK", "ABORT") else b"COMMIT"
        return _message(b"C", tag + b"\x00"), b"I"
    return None


@dataclass
class FakeConnection:
    """One connection dbward opened to the fake server."""

    parameters: dict[str, str] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)


class FakePostgres:
    """A minimal PostgreSQL wire server on 127.0.0.1: trust login, simple and extended
    queries answered with one ``email`` column (malformed when the query says ``bad``)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[FakeConnection] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fake-pg", daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def serving(self, query: str) -> list[FakeConnection]:
        """The connections that were sent ``query``."""
        return [c for c in self.connections if any(query in q for q in c.queries)]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            self._sockets.append(sock)
            record = FakeConnection()
            self.connections.append(record)
            thread = threading.Thread(target=self._serve, args=(sock, record), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, record: FakeConnection) -> None:
        try:
            with sock:
                if self._startup(sock, record):
                    self._session(sock, record)
        except (OSError, EOFError):
            pass  # dbward closed (or aborted) the connection
        finally:
            record.ended.set()

    @staticmethod
    def _exactly(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _startup(self, sock: socket.socket, record: FakeConnection) -> bool:
        while True:
            (length,) = struct.unpack("!i", self._exactly(sock, 4))
            body = self._exactly(sock, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                sock.sendall(b"N")
                continue
            if code == CANCEL_REQUEST_CODE:
                return False
            items = body[4:].split(b"\x00")
            record.parameters = {
                items[i].decode(): items[i + 1].decode()
                for i in range(0, len(items) - 1, 2)
                if items[i]
            }
            break
        greeting = [_message(b"R", struct.pack("!i", 0))]  # AuthenticationOk: trust
        for name, value in (
            ("server_version", "15.0"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
        ):
            greeting.append(_message(b"S", name.encode() + b"\x00" + value.encode() + b"\x00"))
        greeting.append(_message(b"K", struct.pack("!ii", 4242, 0x5EED)))
        greeting.append(_ready())
        sock.sendall(b"".join(greeting))
        return True

    def _session(self, sock: socket.socket, record: FakeConnection) -> None:
        status = b"I"
        statement = ""  # the unnamed statement of the extended protocol
        while True:
            head = self._exactly(sock, 5)
            kind = head[:1]
            (length,) = struct.unpack("!i", head[1:])
            payload = self._exactly(sock, length - 4)
            if kind == b"X":
                return
            if kind == b"Q":
                text = payload.rstrip(b"\x00").decode("utf-8", "replace")
                record.queries.append(text)
                command = _command(text)
                if not text.strip():
                    out = _message(b"I")
                elif command is not None:
                    out, status = command
                else:
                    out = _email_description() + _rows(text)
                sock.sendall(out + _ready(status))
            elif kind == b"P":
                name_end = payload.index(b"\x00")
                text_end = payload.index(b"\x00", name_end + 1)
                statement = payload[name_end + 1 : text_end].decode("utf-8", "replace")
                record.queries.append(statement)
                sock.sendall(_message(b"1"))
            elif kind == b"B":
                sock.sendall(_message(b"2"))
            elif kind == b"D":
                described = _email_description()
                if payload[:1] == b"S":
                    described = _message(b"t", struct.pack("!h", 0)) + described
                sock.sendall(described)
            elif kind == b"E":
                sock.sendall(_rows(statement))
            elif kind == b"C":
                sock.sendall(_message(b"3"))
            elif kind == b"S":
                sock.sendall(_ready(status))
            # Flush (H) and anything else: nothing to answer


@dataclass
class Setup:
    dbward: Dbward
    fake: FakePostgres


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("1", id="native"),
        pytest.param("0", id="python"),
    ],
)
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """dbward in front of a fake server of its own, masking rows in C ("1") or in Python
    ("0")."""
    setting: str = request.param
    if setting == "1" and not native.AVAILABLE:
        pytest.skip("the C masking kernel is not built")
    fake_pg = FakePostgres()
    upstream = UpstreamDb("fakedb", "dbward", "not-asked-for", "127.0.0.1", fake_pg.port)
    connections = {
        "app": {
            "environment": "staging",
            "host": "127.0.0.1",
            "port": fake_pg.port,
            "database": upstream.name,
            "credentials": {"user": upstream.role},
            "tls": {"mode": "disable"},
        }
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DBWARD_NATIVE", setting)  # start_dbward passes os.environ on
            dbward = start_dbward(
                Path(tmp_path_factory.mktemp(f"malformed-{setting}")),
                upstream,
                connections=connections,
            )
        try:
            environ = Path(f"/proc/{dbward.proc.pid}/environ")
            if environ.exists():
                assert f"DBWARD_NATIVE={setting}".encode() in environ.read_bytes().split(b"\x00")
            yield Setup(dbward, fake_pg)
        finally:
            stop_dbward(dbward)
    finally:
        fake_pg.close()


def _connection_ends(server: Dbward, reason: str) -> list[dict[str, object]]:
    return [
        e
        for e in server.audit()
        if e["kind"] == "connection.end" and e["data"].get("reason") == reason
    ]


def test_psycopg_session_ends_others_keep_working(proxied: Setup) -> None:
    server, fake_pg = proxied.dbward, proxied.fake
    before = len(_connection_ends(server, "upstream protocol violation"))
    with connect(server, autocommit=True) as healthy, connect(server, autocommit=True) as victim:
        assert healthy.execute(GOOD_QUERY).fetchall() == [(MASKED,)]
        assert victim.execute(GOOD_QUERY).fetchall() == [(MASKED,)]

        with pytest.raises(psycopg.Error) as caught:
            victim.execute(BAD_QUERY)
        error = caught.value
        assert error.sqlstate == "08P01", (repr(error), log_tail(server))
        assert isinstance(error, psycopg.errors.ProtocolViolation), repr(error)
        assert error.diag.severity_nonlocalized == "FATAL", repr(error)
        assert error.diag.message_primary == INVALID, repr(error)
        assert EMAIL.decode() not in str(error)
        assert victim.closed or victim.broken
        with pytest.raises(psycopg.OperationalError):
            victim.execute(GOOD_QUERY)

        # The session opened before is still served, masked as before.
        assert healthy.execute(GOOD_QUERY + " -- after").fetchall() == [(MASKED,)]
        assert not healthy.closed

        # Upstream: only the victim's connection was let go.
        (victim_upstream,) = fake_pg.serving(BAD_QUERY)
        assert victim_upstream.ended.wait(10), "dbward kept the victim's upstream connection"
        (healthy_upstream,) = fake_pg.serving(GOOD_QUERY + " -- after")
        assert healthy_upstream is not victim_upstream
        assert not healthy_upstream.ended.is_set()

    # A new session is served too: the proxy itself is fine.
    with connect(server, autocommit=True) as fresh:
        assert fresh.execute(GOOD_QUERY).fetchall() == [(MASKED,)]
    assert server.proc.poll() is None

    wait_for(
        lambda: "malformed DataRow" in server.log(), what="the malformed DataRow warning in the log"
    )
    warnings = [
        line for line in server.log().splitlines() if "upstream sent a malformed DataRow" in line
    ]
    assert warnings, log_tail(server)
    assert all(" WARNING " in line for line in warnings), warnings
    assert all(EMAIL.decode() not in line for line in warnings), warnings
    wait_for(
        lambda: len(_connection_ends(server, "upstream protocol violation")) > before,
        what="the victim's connection.end record",
    )
    assert len(_connection_ends(server, "upstream protocol violation")) == before + 1


def test_psql_gets_the_fatal_error(proxied: Setup) -> None:
    server = proxied.dbward
    with connect(server, autocommit=True) as healthy:
        assert healthy.execute(GOOD_QUERY).fetchall() == [(MASKED,)]
        result = psql(server, "-At", "-v", "VERBOSITY=verbose", "-c", BAD_QUERY, check=False)
        assert result.returncode != 0, result
        assert f"FATAL:  08P01: {INVALID}" in result.stderr, (result.stderr, log_tail(server))
        assert EMAIL.decode() not in result.stdout + result.stderr
        assert healthy.execute(GOOD_QUERY).fetchall() == [(MASKED,)]
    # psql can still connect and see masked rows
    good = psql(server, "-At", "-c", GOOD_QUERY)
    assert good.stdout.strip() == MASKED
