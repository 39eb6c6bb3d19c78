"""Delivering a batch of spooled records: syslog over TCP or TLS, an HTTP webhook, stdout.

``send`` returns once the batch is delivered and raises otherwise (OSError,
or :class:`DeliveryError` naming what the receiver answered); the dispatcher
then keeps the batch and tries again.
"""

from __future__ import annotations

import contextlib
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
from collections import deque
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
    and the batch goes to the next connection rather than into a dead socket; and
    the last ``window`` frames sent are sent again on every new connection, so
    frames the old receiver took but never read are not lost (a receiver drops
    repeats by chain and seq).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        timeout: float = 5.0,
        window: int = 1000,
    ) -> None:
        from dbward.audit.sinks.formats import syslog_frame

        self._window: deque[bytes] = deque(maxlen=window)
        self._fresh = False  # the connection was just made: resend the window first

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
            self._fresh = True
        return sock

    @staticmethod
    def _closed_by_peer(sock: socket.socket) -> bool:
        """A syslog receiver sends nothing: anything readable is either its close, or TLS
        housekeeping (session tickets), which a non-blocking read consumes."""
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    return True  # an orderly close
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False  # nothing (more) to read: still open
        except (OSError, ValueError):
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)

    def send(self, lines: list[bytes]) -> None:
        frames = [self._frame(json.loads(line), self._hostname) for line in lines]
        try:
            sock = self._connection()
            again = b"".join(self._window) if self._fresh else b""
            sock.sendall(again + b"".join(frames))
        except (OSError, ValueError):
            self.close()
            raise
        self._fresh = False
        self._window.extend(frames)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a delivery: urllib would follow a POST's 30x with a GET."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post_signed(url: str, secret: bytes, body: bytes, timeout: float, agent: str) -> None:
    """POST a JSON ``body`` signed with HMAC-SHA256 (``X-Dbward-Signature: v1=<hex of
    "<timestamp>.<body>">``); raises DeliveryError unless the answer is 2xx."""
    timestamp = str(int(time.time()))
    signature = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    request = urllib.request.Request(  # noqa: S310 - the config allows http(s) only
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": agent,
            "X-Dbward-Timestamp": timestamp,
            "X-Dbward-Signature": "v1=" + signature.hexdigest(),
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"the webhook answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the webhook: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # a timeout while reading, a reset connection
        raise DeliveryError(f"the webhook failed: {type(exc).__name__}: {exc}") from None


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
        post_signed(self._url, self._secret, body, self._timeout, "dbward-audit")

    def close(self) -> None:
        pass
