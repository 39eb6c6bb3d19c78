"""Helpers the integration tests own: a PostgreSQL cluster, a test CA, a raw wire client.

``throwaway_pg`` makes a cluster of a test module's own (initdb in a temporary
directory, listening on 127.0.0.1 on a free port) with the ``pg_hba.conf`` lines and the
TLS certificate the module asks for. It reuses ``dbward.demo.embedded``'s cluster
helpers, which also handle running as root (the server then runs as an unprivileged
account). Administration goes through the unix socket as the ``postgres`` superuser.

``CertAuthority`` issues certificates with ``cryptography``.

``WireClient`` speaks just enough of the PostgreSQL protocol, by hand and independently
of dbward's codec, to see what libpq hides: the SQLSTATE and hint of a startup error,
and the one-byte answers to SSLRequest and GSSENCRequest.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbward.codec.pg.backend import ErrorResponse, decode_backend
from dbward.demo import embedded

# ------------------------------------------------------------------------------------------
# Test certificate authority
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertAuthority:
    """A CA made for one test module; ``ca_file`` is its certificate in PEM."""

    name: str
    ca_file: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str) -> CertAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / "ca.crt"
        ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(name, ca_file, key, cert)

    def issue(
        self,
        directory: Path,
        stem: str,
        *,
        dns: Iterable[str] = ("localhost",),
        ips: Iterable[str] = ("127.0.0.1",),
    ) -> tuple[Path, Path]:
        """A server certificate and its key, as ``<stem>.crt`` and ``<stem>.key``."""
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        dns, ips = list(dns), list(ips)
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else ips[0])])
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file


# ------------------------------------------------------------------------------------------
# Throwaway PostgreSQL cluster
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrowawayPg:
    """A running cluster of the test's own; ``stop`` ends it (the files stay in tmp)."""

    host: str
    port: int
    data_dir: Path
    socket_dir: Path
    bin_dir: Path

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"

    def admin_conninfo(self, database: str = "postgres") -> str:
        """The bootstrap superuser over the unix socket (trust): administration only."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={database}"

    def execute(self, *statements: str, database: str = "postgres") -> list[Any]:
        """Run statements as the superuser in one session; the last one's rows."""
        rows: list[Any] = []
        with psycopg.connect(self.admin_conninfo(database), autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement.encode())
                rows = cursor.fetchall() if cursor.description is not None else []
        return rows

    def stop(self) -> None:
        account = embedded._existing_account(self.pgdata)
        embedded._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"],
            account=account,
            what="stopping the throwaway PostgreSQL",
        )


def _has_ssl(binaries: embedded.PostgresBinaries) -> bool:
    pg_config = binaries.bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    result = subprocess.run(
        [str(pg_config), "--configure"], capture_output=True, text=True, check=False
    )
    return "--with-openssl" in result.stdout or "--with-ssl=openssl" in result.stdout


def _pick_binaries(need_ssl: bool) -> embedded.PostgresBinaries:
    candidates = embedded.find_postgres_binaries()
    if not need_ssl:
        return candidates[0]
    for binaries in candidates:
        if _has_ssl(binaries):
            return binaries
    found = ", ".join(str(b.bin_dir) for b in candidates)
    raise RuntimeError(
        f"a PostgreSQL built with OpenSSL is needed for the TLS tests; found only {found}. "
        "Install the distribution's PostgreSQL server package."
    )


@contextlib.contextmanager
def throwaway_pg(
    *, hba: Sequence[str], certificate: tuple[Path, Path] | None = None
) -> Iterator[ThrowawayPg]:
    """A cluster for the ``with`` block: initdb, configure, start; then stop and delete.

    ``hba`` lines come after a ``local all all trust`` line (the admin socket sits in a
    0700 directory). With ``certificate`` (cert, key) the server runs with ``ssl = on``.

    The cluster lives in a directory of its own under the system temp dir, not under
    pytest's ``basetemp``: as root the server runs as another account that must traverse
    the parents, and every pytest run starting meanwhile resets pytest's per-user root
    to 0700.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="dbward-test-pg-"))
    try:
        pg = _start(data_dir, hba, certificate)
        try:
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _start(
    data_dir: Path, hba: Sequence[str], certificate: tuple[Path, Path] | None
) -> ThrowawayPg:
    pgdata = data_dir / "pgdata"
    binaries = _pick_binaries(need_ssl=certificate is not None)
    account = embedded._server_account(pgdata)
    if account is not None:
        embedded._grant_traversal(data_dir, account)
    embedded._init_cluster(binaries, pgdata, account)
    embedded._write_server_file(
        pgdata / "pg_hba.conf",
        "local all all trust\n" + "".join(f"{line}\n" for line in hba),
        account,
    )
    settings = [
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "log_connections = on",
    ]
    if certificate is not None:
        cert, key = certificate
        embedded._write_server_file(pgdata / "server.crt", cert.read_text(), account)
        embedded._write_server_file(pgdata / "server.key", key.read_text(), account)
        settings += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
    else:
        settings.append("ssl = off")
    with (pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# throwaway test cluster\n" + "".join(f"{s}\n" for s in settings))
    info = embedded._start_server(binaries, pgdata, account)
    assert info.socket_dir is not None
    return ThrowawayPg(
        host=embedded.LOOPBACK,
        port=info.port,
        data_dir=data_dir,
        socket_dir=info.socket_dir,
        bin_dir=binaries.bin_dir,
    )


# ------------------------------------------------------------------------------------------
# Raw wire client
# ------------------------------------------------------------------------------------------

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)


ServerError = ErrorResponse


def parse_error(body: bytes) -> ErrorResponse:
    """An ErrorResponse payload, decoded by dbward's own codec."""
    message = decode_backend(ord("E"), body)
    assert isinstance(message, ErrorResponse)
    return message


class WireClient:
    """One raw connection: send what a test needs, read whole messages back."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (host, port), timeout=timeout
        )
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"peer closed with {len(self._buffer)} of {size} bytes read")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def request(self, packet: bytes) -> bytes:
        """Send SSLRequest/GSSENCRequest; the one-byte answer."""
        self.sock.sendall(packet)
        return self._recv_exact(1)

    def start_tls(self, cafile: Path | None = None, server_hostname: str | None = None) -> None:
        assert not self._buffer, "unencrypted bytes pending before the TLS handshake"
        if cafile is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(cafile))
        assert isinstance(self.sock, socket.socket)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def startup(self, **parameters: str) -> None:
        body = struct.pack("!i", 3 << 16)
        for name, value in parameters.items():
            body += name.encode() + b"\0" + value.encode() + b"\0"
        body += b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)

    def send(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)

    def password(self, secret: str) -> None:
        self.send(b"p", secret.encode() + b"\0")

    def query(self, sql: str) -> None:
        self.send(b"Q", sql.encode() + b"\0")

    def read(self) -> tuple[bytes, bytes]:
        header = self._recv_exact(5)
        (length,) = struct.unpack("!i", header[1:])
        return header[:1], self._recv_exact(length - 4)

    def read_until(self, kinds: bytes) -> list[tuple[bytes, bytes]]:
        """Messages up to and including the first whose type is one of ``kinds``."""
        messages = []
        while True:
            message = self.read()
            messages.append(message)
            if message[0] in kinds:
                return messages
