"""Delivering a batch of spooled records: syslog over TCP or TLS, an HTTP webhook, stdout.

``send`` returns once the batch is delivered and raises otherwise (OSError,
or :class:`DeliveryError` naming what the receiver answered); the dispatcher
then keeps the batch and tries again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol


class DeliveryError(Exception):
    pass


class Sender(Protocol):
    def send(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


class StdoutSender:
    """JSON lines on dbward's standard output (for a log collector reading it)."""

    def send(self, lines: list[bytes]) -> None:
        out = sys.stdout.buffer
        out.write(b"".join(line + b"\n" for line in lines))
        out.flush()

    def close(self) -> None:
        pass


class SyslogSender:
    """RFC 5424 messages over one TCP (or TLS, RFC 5425) connection, octet-counted.

    Plain syslog has no acknowledgement: before each batch the connection is
    checked for a close by the receiver, so a receiver that went away is noticed
    and the batch goes to the next connection rather than into a dead socket.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        timeout: float = 5.0,
    ) -> None:
        from dbward.audit.sinks.formats import syslog_frame

        self._frame = syslog_frame
        self._address = (host, port)
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if tls:
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._host = host
        self._hostname = socket.gethostname()
        self._sock: socket.socket | None = None

    def _connection(self) -> socket.socket:
        sock = self._sock
        if sock is not None and self._closed_by_peer(sock):
            self.close()
            sock = None
        if sock is None:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self._host)
            self._sock = sock
        return sock

    @staticmethod
    def _closed_by_peer(sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ssl.SSLError):
            return True

    def send(self, lines: list[bytes]) -> None:
        frames = b"".join(self._frame(json.loads(line), self._hostname) for line in lines)
        try:
            self._connection().sendall(frames)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class WebhookSender:
    """POSTs ``{"source": "dbward", "records": [...]}``, signed with HMAC-SHA256.

    Headers: ``X-Dbward-Timestamp`` (unix seconds) and ``X-Dbward-Signature``:
    ``v1=`` and the hex HMAC of ``<timestamp>.<body>`` under the shared secret.
    A 2xx answer delivers the batch; anything else is retried.
    """

    def __init__(self, url: str, secret: bytes, *, timeout: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout

    def send(self, lines: list[bytes]) -> None:
        body = b'{"source":"dbward","records":[' + b",".join(lines) + b"]}"
        timestamp = str(int(time.time()))
        signature = hmac.new(self._secret, timestamp.encode() + b"." + body, hashlib.sha256)
        request = urllib.request.Request(  # noqa: S310 - the config allows http(s) only
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "dbward-audit",
                "X-Dbward-Timestamp": timestamp,
                "X-Dbward-Signature": "v1=" + signature.hexdigest(),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                answer.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"the webhook answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise DeliveryError(f"cannot reach the webhook: {exc.reason}") from None

    def close(self) -> None:
        pass
