"""A MariaDB server of a test module's own, with TLS from a test CA.

``mariadb-install-db`` makes a data directory in a temporary folder and
``mariadbd`` serves it on 127.0.0.1 and a free port, with the certificate the
module asks for. The local MariaDB (tests/mysql_upstream.py) has TLS off; this
one exists so dbward's TLS to a MySQL upstream is tested against the real
server, with verification.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from tests.conftest import free_port
from tests.integration.throwaway_pg import CertAuthority


@dataclass(frozen=True)
class ThrowawayMariaDB:
    port: int
    directory: Path
    ca: CertAuthority
    proc: subprocess.Popen[bytes]

    def admin(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            unix_socket=str(self.directory / "mysqld.sock"), user="root", autocommit=True
        )

    def execute(self, *statements: str) -> None:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next(
            (str(Path(d) / name) for d in ("/usr/sbin", "/usr/bin") if (Path(d) / name).exists()),
            None,
        )
        if found:
            return found
    raise AssertionError(f"none of {names} is installed (apt-get install mariadb-server)")


@contextlib.contextmanager
def throwaway_mariadb() -> Iterator[ThrowawayMariaDB]:
    """A fresh MariaDB with TLS (server certificate for 127.0.0.1 and localhost)."""
    directory = Path(tempfile.mkdtemp(prefix="dbward-mariadb-"))
    ca = CertAuthority.create(directory / "tls", "dbward test MariaDB CA")
    cert, key = ca.issue(directory / "tls", "server")
    data = directory / "data"
    user = ["--user=root"] if os.geteuid() == 0 else []
    install = subprocess.run(
        [
            _binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *user,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise AssertionError(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
    port = free_port()
    log = (directory / "mariadbd.log").open("wb")
    proc = subprocess.Popen(
        [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={directory / 'mysqld.sock'}",
            f"--pid-file={directory / 'mysqld.pid'}",
            f"--ssl-ca={ca.ca_file}",
            f"--ssl-cert={cert}",
            f"--ssl-key={key}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=8M",
            "--skip-log-bin",
            *user,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ThrowawayMariaDB(port, directory, ca, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    "mariadbd stopped:\n" + (directory / "mariadbd.log").read_text()[-3000:]
                )
            try:
                server.admin().close()
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError("mariadbd did not start within 60 s") from None
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
