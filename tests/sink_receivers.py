"""Receivers for the audit sinks' tests, written independently of dbward's code.

``parse_syslog`` reads one RFC 5424 message (header, structured data, message) by
the RFC's grammar; ``read_frames`` splits a byte stream into RFC 6587
octet-counted frames. ``SyslogReceiver`` is a threaded TCP (or TLS) syslog
server that parses every frame it gets; ``WebhookReceiver`` an HTTP server that
checks each POST's HMAC signature and answers what the test tells it to.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.helpers import wait_for

BOM = b"\xef\xbb\xbf"

# RFC 5424 section 6: HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID
# SP MSGID; every field but PRI and VERSION is PRINTUSASCII (or "-") of a bounded length.
_HEADER = re.compile(
    rb"<(?P<pri>0|[1-9]\d{0,2})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) "
    rb"(?P<hostname>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) "
)
# RFC 5424 section 6.2.3, with the restrictions of RFC 3339 it names.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_SD_NAME = re.compile(rb"[!-~]{1,32}")  # PRINTUSASCII except '=', SP, ']', '"' (checked below)


@dataclass
class SyslogMessage:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: bytes

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8

    @property
    def time(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))

    def body(self) -> Any:
        """The message's JSON (it must start with the UTF-8 BOM, RFC 5424 6.4)."""
        assert self.msg.startswith(BOM), f"no BOM before the message: {self.msg[:20]!r}"
        return json.loads(self.msg[len(BOM) :].decode("utf-8"))


def read_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete octet-counted frames at the start of ``data`` (RFC 6587 3.4.1:
    ``MSG-LEN SP SYSLOG-MSG``) and what is left after them."""
    frames = []
    while True:
        space = data.find(b" ", 0, 12)
        if space < 0:
            assert len(data) < 12, f"no octet count at {data[:20]!r}"
            return frames, data
        count = data[:space]
        assert re.fullmatch(rb"[1-9]\d*", count), f"bad octet count {count!r}"
        end = space + 1 + int(count)
        if len(data) < end:
            return frames, data
        frames.append(data[space + 1 : end])
        data = data[end:]


def _sd_name(message: bytes, pos: int, stops: bytes) -> tuple[str, int]:
    end = pos
    while end < len(message) and message[end] not in stops:
        end += 1
    name = message[pos:end]
    assert _SD_NAME.fullmatch(name), f"bad SD name {name!r}"
    assert not set(name) & set(b'= ]"'), f"bad SD name {name!r}"
    return name.decode("ascii"), end


def _structured_data(message: bytes, pos: int) -> tuple[dict[str, dict[str, str]], int]:
    """RFC 5424 6.3: ``-`` or SD-ELEMENTs ``[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]``, where
    '"', '\\' and ']' in a value are escaped with a backslash."""
    if message[pos : pos + 1] == b"-":
        return {}, pos + 1
    elements: dict[str, dict[str, str]] = {}
    assert message[pos : pos + 1] == b"[", f"no structured data at {message[pos : pos + 20]!r}"
    while message[pos : pos + 1] == b"[":
        sd_id, pos = _sd_name(message, pos + 1, b" ]")
        params: dict[str, str] = {}
        while message[pos : pos + 1] == b" ":
            name, pos = _sd_name(message, pos + 1, b"=")
            assert message[pos : pos + 2] == b'="', f"bad SD-PARAM at {message[pos : pos + 20]!r}"
            pos += 2
            value = bytearray()
            while True:
                char = message[pos : pos + 1]
                assert char, "unterminated PARAM-VALUE"
                if char == b"\\" and message[pos + 1 : pos + 2] in (b'"', b"\\", b"]"):
                    value += message[pos + 1 : pos + 2]
                    pos += 2
                elif char == b'"':
                    pos += 1
                    break
                else:
                    assert char != b"]", "an unescaped ']' in a PARAM-VALUE"
                    value += char
                    pos += 1
            params[name] = value.decode("utf-8")
        assert message[pos : pos + 1] == b"]", f"SD-ELEMENT not closed: {message[pos:]!r}"
        pos += 1
        assert sd_id not in elements, f"SD-ID {sd_id} twice"
        elements[sd_id] = params
    return elements, pos


def parse_syslog(message: bytes) -> SyslogMessage:
    """One RFC 5424 SYSLOG-MSG (the frame's content); AssertionError when it is not one."""
    header = _HEADER.match(message)
    assert header, f"not an RFC 5424 header: {message[:80]!r}"
    pri = int(header["pri"])
    assert pri <= 191, f"PRI {pri} out of range"
    timestamp = header["timestamp"].decode("ascii")
    assert timestamp == "-" or _TIMESTAMP.fullmatch(timestamp), f"bad TIMESTAMP {timestamp}"
    sd, pos = _structured_data(message, header.end())
    rest = message[pos:]
    assert rest == b"" or rest.startswith(b" "), f"no SP before MSG: {rest[:20]!r}"
    return SyslogMessage(
        pri=pri,
        version=int(header["version"]),
        timestamp=timestamp,
        hostname=header["hostname"].decode("ascii"),
        app=header["app"].decode("ascii"),
        procid=header["procid"].decode("ascii"),
        msgid=header["msgid"].decode("ascii"),
        sd=sd,
        msg=rest[1:],
    )


def wait_until(probe: Callable[[], Any], *, timeout: float = 10.0, what: str = "it") -> Any:
    """:func:`tests.integration.helpers.wait_for`, with the longer wait a receiver needs."""
    return wait_for(probe, timeout=timeout, what=what)


# ------------------------------------------------------------------------------------------
# Syslog over TCP or TLS
# ------------------------------------------------------------------------------------------


@dataclass
class Received:
    """One frame a receiver got: the parsed message and the connection it came on."""

    message: SyslogMessage
    connection: int

    @property
    def record(self) -> dict[str, Any]:
        return self.message.body()  # type: ignore[no-any-return]

    @property
    def key(self) -> tuple[str, int]:
        params = self.message.sd["dbward@32473"]
        return params["chain"], int(params["seq"])


@dataclass
class SyslogReceiver:
    """A syslog server on 127.0.0.1 (TLS when given a server context) parsing every
    octet-counted frame; ``stop`` closes the listening and every accepted socket."""

    port: int = 0
    tls: ssl.SSLContext | None = None
    frames: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    _reading: threading.Event = field(default_factory=threading.Event)
    _parked: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None
    _accepted: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SyslogReceiver:
        self._reading.set()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self.connections += 1
                number = self.connections
                self._accepted.append(sock)
            threading.Thread(target=self._read, args=(sock, number), daemon=True).start()

    def _read(self, sock: socket.socket, number: int) -> None:
        conn: socket.socket = sock
        buffer = b""
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._accepted.append(conn)
            conn.settimeout(0.05)  # to see a pause between reads
            while True:
                if not self._reading.is_set():
                    self._parked.set()
                    self._reading.wait()
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                frames, buffer = read_frames(buffer + chunk)
                for frame in frames:
                    received = Received(parse_syslog(frame), number)
                    received.key  # noqa: B018 - the SD element must be there
                    with self._lock:
                        self.frames.append(received)
        except OSError:
            pass  # stopped (or the sender went away)
        except (AssertionError, ValueError, KeyError) as exc:
            with self._lock:
                self.errors.append(f"connection {number}: {exc!r}")

    def arrivals(self) -> list[tuple[str, int]]:
        """(chain, seq) of every frame, in the order they came (repeats included)."""
        with self._lock:
            return [f.key for f in self.frames]

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.record for f in self.frames]

    def pause(self) -> None:
        """Read nothing more (what comes waits unread in the socket) until ``stop``."""
        self._reading.clear()
        assert self._parked.wait(2), "the reader did not pause"

    def stop(self) -> None:
        """Close the listening and accepted sockets (frames not read yet are lost)."""
        with self._lock:
            sockets = [self._listener, *self._accepted]
            self._accepted.clear()
        for sock in sockets:
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._reading.set()  # a paused reader finds its socket closed


# ------------------------------------------------------------------------------------------
# HTTP webhook
# ------------------------------------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signed: bool  # the signature verified with the receiver's secret

    def records(self) -> list[dict[str, Any]]:
        payload = json.loads(self.body)
        assert payload["source"] == "dbward"
        return payload["records"]  # type: ignore[no-any-return]


def signature_valid(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """X-Dbward-Signature is ``v1=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    timestamp = headers.get("X-Dbward-Timestamp", "")
    signature = headers.get("X-Dbward-Signature", "")
    if not timestamp.isdigit() or not signature.startswith("v1="):
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature[3:])


class WebhookReceiver:
    """An HTTP server on 127.0.0.1; ``answer(post_number)`` gives each POST's status (the
    first is 1). A 3xx answer redirects to ``/redirected``, which answers GET with 200."""

    def __init__(
        self, secret: bytes, *, port: int = 0, answer: Callable[[int], int] = lambda _: 204
    ) -> None:
        self.secret = secret
        self.answer = answer
        self.posts: list[Post] = []
        self.gets: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                with receiver._lock:
                    status = receiver.answer(len(receiver.posts) + 1)
                    receiver.posts.append(
                        Post(
                            self.path,
                            headers,
                            body,
                            status,
                            signature_valid(receiver.secret, headers, body),
                        )
                    )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/redirected")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with receiver._lock:
                    receiver.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/audit"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[dict[str, Any]]:
        """The records of every POST answered with a 2xx, in the order they came."""
        with self._lock:
            posts = list(self.posts)
        return [r for p in posts if 200 <= p.status < 300 for r in p.records()]

    def records(self) -> list[dict[str, Any]]:
        return self.delivered()

    def arrivals(self) -> list[tuple[str, int]]:
        """(chain, seq) of every delivered record, in the order they came."""
        return [(r["chain"], r["seq"]) for r in self.delivered()]
