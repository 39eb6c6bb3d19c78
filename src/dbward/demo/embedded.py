"""A real PostgreSQL for ``dbward demo``, started in a directory of its own.

The binaries come from the ``pgserver`` wheel (``pip install 'dbward[demo]'``) or, failing
that, from a PostgreSQL installed on the machine. ``pgserver``'s own server handle only
listens on a unix socket, so its bundled ``initdb``/``pg_ctl``/``psql`` are driven here
directly; the package is located, never imported (importing it is slow and has side effects).

Layout of ``data_dir``::

    data_dir/
      .lock                   serialises concurrent starts
      dbward_demo.password    0600, the password of the demo role (dbward's upstream secret)
      pgdata/                 the cluster; server.log and dbward_demo.conf live in it

Access: TCP on 127.0.0.1 only, SCRAM-SHA-256 for every role. The bootstrap superuser
``postgres`` has no password and is reachable only through a unix socket in a 0700 directory
owned by the server account; it creates the demo role and database. The demo role owns the
demo database and loads the seed itself, so dbward, holding its password, owns the data.

PostgreSQL refuses to run as root. As root, the server runs as an unprivileged account
(``pgserver`` or ``postgres`` if one exists, else a ``pgserver`` system account is created,
as the pgserver package does); the data directory and its parents are made traversable
(o+x) for that account.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import importlib.resources
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dbward.errors import DbwardError

DEMO_ROLE = "dbward_demo"
LOOPBACK = "127.0.0.1"
INSTALL_HINT = "pip install 'dbward[demo]'"

_SUPERUSER = "postgres"
_PGDATA = "pgdata"
_PASSWORD_FILE = "dbward_demo.password"  # noqa: S105 (a file name)
_LOCK_FILE = ".lock"
_CONF_FILE = "dbward_demo.conf"
_LOG_FILE = "server.log"
_SERVER_ACCOUNTS = ("pgserver", "postgres")
_SEEDED_CHECK = "SELECT (to_regclass('public.customer_summary') IS NOT NULL)::int"
_START_TIMEOUT = 60
_SQL_TIMEOUT = 300
# sun_path holds 107 bytes; "/.s.PGSQL.65535" takes 15 of them.
_MAX_SOCKET_DIR = 90
_PASSWORD_RE = re.compile(r"[A-Za-z0-9_.~-]{12,200}")
_SYSTEM_BIN_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running demo server and the credentials dbward uses to reach it."""

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    database: str
    data_dir: Path
    bin_dir: Path | None = field(default=None, repr=False, compare=False, kw_only=True)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / _PGDATA

    @property
    def password_file(self) -> Path:
        """The 0600 file holding ``password``, for ``credentials.password_file``."""
        return self.data_dir / _PASSWORD_FILE

    @property
    def log_file(self) -> Path:
        return self.pgdata / _LOG_FILE

    def conninfo(self) -> str:
        """A libpq connection string, password included: keep it out of logs."""
        return _conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            database=self.database,
            password=self.password,
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended). Data is kept."""
        if _running_server(self.pgdata) is None:
            return
        bin_dir = self.bin_dir or _pick_binaries(self.pgdata, same_version=False).bin_dir
        account = _existing_account(self.pgdata)
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w"]
        _run(
            [*pg_ctl, "-t", str(_START_TIMEOUT), "stop"],
            account=account,
            what="stopping the demo PostgreSQL",
        )


@dataclass(frozen=True)
class PostgresBinaries:
    """A directory holding ``initdb``, ``pg_ctl``, ``postgres`` and usually ``psql``."""

    bin_dir: Path
    source: Literal["pgserver", "system"]

    @property
    def psql(self) -> Path | None:
        path = self.bin_dir / "psql"
        return path if _is_executable(path) else None

    def major_version(self) -> str:
        out = _run([str(self.bin_dir / "postgres"), "--version"], what="asking for its version")
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match is None:
            raise DbwardError(f"could not read the version of {self.bin_dir / 'postgres'}: {out}")
        return match.group(1)


@dataclass(frozen=True)
class _Account:
    """The unprivileged OS account the server runs as when dbward runs as root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _ServerInfo:
    pid: int
    port: int
    socket_dir: Path | None
    status: str


# ------------------------------------------------------------------------------------------
# Public entry points
# ------------------------------------------------------------------------------------------


def start_embedded_postgres(data_dir: Path, *, database: str = "demo") -> EmbeddedPostgres:
    """Start (or reuse) a demo PostgreSQL in ``data_dir`` with a seeded ``database``.

    Idempotent: a server already running there is reused, a stopped one is restarted, and
    the seed is loaded only into a database that does not have it yet.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / _PGDATA
    with _locked(data_dir / _LOCK_FILE):
        info = _running_server(pgdata)
        binaries = _pick_binaries(pgdata, same_version=info is None)
        account = _server_account(pgdata)
        if account is not None:
            _grant_traversal(data_dir, account)
        if info is None:
            if account is not None and binaries.source == "pgserver":
                _grant_read(binaries.bin_dir.parent)
            if not (pgdata / "PG_VERSION").exists():
                _init_cluster(binaries, pgdata, account)
            info = _start_server(binaries, pgdata, account)
        password, password_is_new = _load_or_create_password(data_dir / _PASSWORD_FILE)
        psql = binaries.psql or find_psql()
        admin = _Target(
            host=str(info.socket_dir or LOOPBACK),
            port=info.port,
            user=_SUPERUSER,
            database="postgres",
            password=None,
        )
        demo = _Target(
            host=LOOPBACK, port=info.port, user=DEMO_ROLE, database=database, password=password
        )
        _ensure_role_and_database(psql, admin, database, password, reset=password_is_new)
        try:
            seeded = _query(psql, demo, _SEEDED_CHECK) == "1"
        except DbwardError:
            # The role's password no longer matches the file (edited by hand?): the file wins.
            _ensure_role_and_database(psql, admin, database, password, reset=True)
            seeded = _query(psql, demo, _SEEDED_CHECK) == "1"
        if not seeded:
            load_seed(
                host=demo.host,
                port=demo.port,
                user=demo.user,
                password=password,
                database=database,
                psql=psql,
            )
    return EmbeddedPostgres(
        host=LOOPBACK,
        port=info.port,
        user=DEMO_ROLE,
        password=password,
        database=database,
        data_dir=data_dir,
        bin_dir=binaries.bin_dir,
    )


def seed_sql() -> str:
    """The demo schema and its fictional data, as shipped in the package."""
    return importlib.resources.files("dbward.demo").joinpath("seed.sql").read_text("utf-8")


def load_seed(
    *,
    host: str,
    port: int,
    user: str,
    password: str | None,
    database: str,
    psql: Path | None = None,
    via: Literal["auto", "psql", "psycopg"] = "auto",
) -> None:
    """Run ``seed.sql`` in one transaction against the given database.

    ``via="auto"`` uses ``psql`` (the given one, else one found with the server binaries or
    on PATH) and falls back to psycopg when there is no ``psql``.
    """
    target = _Target(host=host, port=port, user=user, database=database, password=password)
    if via == "psycopg":
        _execute_psycopg(target, [seed_sql()], single_transaction=True)
        return
    psql = psql or find_psql()
    if psql is None and via == "psql":
        raise DbwardError(f"psql was not found; install PostgreSQL's client or {INSTALL_HINT}")
    _execute(psql, target, [seed_sql()], single_transaction=True)


def find_postgres_binaries() -> list[PostgresBinaries]:
    """Every usable PostgreSQL installation, best first: pgserver's, PATH's, then the system's.

    Raises ``DbwardError`` saying how to install one when there is none.
    """
    found: list[PostgresBinaries] = []
    bundled = _pgserver_bin_dir()
    if bundled is not None:
        found.append(PostgresBinaries(bundled, "pgserver"))
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for pattern in _SYSTEM_BIN_GLOBS:
        parent, _, _ = pattern.rpartition("/")
        matches = Path("/").glob(pattern.lstrip("/")) if "*" in parent else [Path(pattern)]
        candidates.extend(sorted(matches, key=_version_key, reverse=True))
    seen = {b.bin_dir for b in found}
    for bin_dir in candidates:
        if bin_dir not in seen and _has_server_tools(bin_dir):
            seen.add(bin_dir)
            found.append(PostgresBinaries(bin_dir, "system"))
    if not found:
        raise DbwardError(
            "dbward demo needs PostgreSQL's server programs (initdb, pg_ctl, postgres) and "
            f"found none. Install the bundled build with: {INSTALL_HINT} "
            "(or install PostgreSQL from your package manager)."
        )
    return found


def find_psql() -> Path | None:
    """A ``psql`` to load SQL with: from the server binaries, else from PATH."""
    with contextlib.suppress(DbwardError):
        for binaries in find_postgres_binaries():
            if binaries.psql is not None:
                return binaries.psql
    on_path = shutil.which("psql")
    return Path(on_path) if on_path else None


# ------------------------------------------------------------------------------------------
# Binaries
# ------------------------------------------------------------------------------------------


def _pgserver_bin_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return bin_dir if _has_server_tools(bin_dir) else None


def _has_server_tools(bin_dir: Path) -> bool:
    return all(_is_executable(bin_dir / name) for name in ("initdb", "pg_ctl", "postgres"))


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path)))


def _pick_binaries(pgdata: Path, *, same_version: bool) -> PostgresBinaries:
    """The first installation, or with ``same_version`` the first that can run the cluster.

    A running server only needs a client (any psql) and pg_ctl's signal to stop it, so the
    version is checked only when the server is to be started.
    """
    candidates = find_postgres_binaries()
    version_file = pgdata / "PG_VERSION"
    if not same_version or not version_file.exists():
        return candidates[0]
    wanted = version_file.read_text().strip()
    for binaries in candidates:
        if binaries.major_version() == wanted:
            return binaries
    found = ", ".join(f"{b.bin_dir} ({b.major_version()})" for b in candidates)
    raise DbwardError(
        f"the demo data in {pgdata} was made by PostgreSQL {wanted}, but only other versions "
        f"were found: {found}. Delete {pgdata.parent} to start the demo afresh."
    )


# ------------------------------------------------------------------------------------------
# Running as root: an unprivileged account for the server
# ------------------------------------------------------------------------------------------


def _server_account(pgdata: Path) -> _Account | None:
    if os.geteuid() != 0:
        return None
    existing = _existing_account(pgdata)
    if existing is not None:
        return existing
    for name in _SERVER_ACCOUNTS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    name = _SERVER_ACCOUNTS[0]
    useradd = shutil.which("useradd")
    if useradd is None:
        raise DbwardError(
            "PostgreSQL refuses to run as root and there is no unprivileged account for it; "
            f"create a system user named {name!r} or run dbward demo as a normal user"
        )
    _run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
        what=f"creating the system user {name!r} to run PostgreSQL as",
    )
    entry = pwd.getpwnam(name)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _existing_account(pgdata: Path) -> _Account | None:
    """The account owning an existing cluster, when we are root and it is not."""
    if os.geteuid() != 0 or not pgdata.exists():
        return None
    st = pgdata.stat()
    if st.st_uid == 0:
        return None
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return _Account(name, st.st_uid, st.st_gid)


def _grant_traversal(path: Path, account: _Account) -> None:
    """Let ``account`` reach ``path``: add o+x to it and its parents where missing."""
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid != account.uid and not st.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _grant_read(tree: Path) -> None:
    """Make an installation tree readable by everyone (pip under umask 077 leaves it 0700)."""
    for directory in (tree, *tree.parents):
        st = directory.stat()
        if not st.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
    for root, dirs, files in os.walk(tree):
        for name in dirs:
            _add_mode(Path(root) / name, stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root) / name
            exec_bit = stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0
            _add_mode(path, stat.S_IROTH | exec_bit)


def _add_mode(path: Path, bits: int) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return
    if st.st_mode & bits != bits:
        path.chmod(stat.S_IMODE(st.st_mode) | bits)


# ------------------------------------------------------------------------------------------
# Cluster lifecycle
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _init_cluster(binaries: PostgresBinaries, pgdata: Path, account: _Account | None) -> None:
    if pgdata.exists() and any(pgdata.iterdir()):
        raise DbwardError(
            f"{pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
            f"move it away or delete {pgdata.parent} to start the demo afresh"
        )
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        os.chown(pgdata, account.uid, account.gid)
    _run(
        [
            str(binaries.bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            _SUPERUSER,
            "--encoding=UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-instructions",
        ],
        account=account,
        what="creating the demo PostgreSQL cluster (initdb)",
    )
    _write_server_file(
        pgdata / "pg_hba.conf",
        "# Written by dbward demo.\n"
        "# Unix socket, in a directory only the server account can enter: administration.\n"
        "local   all   all                  trust\n"
        "# TCP, loopback only: a SCRAM password for every role.\n"
        "host    all   all   127.0.0.1/32   scram-sha-256\n"
        "host    all   all   ::1/128        scram-sha-256\n",
        account,
    )
    with (pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Added by dbward demo: listen address, port and socket.\n")
        conf.write(f"include_if_exists = '{_CONF_FILE}'\n")


def _start_server(
    binaries: PostgresBinaries, pgdata: Path, account: _Account | None
) -> _ServerInfo:
    socket_dir = _socket_dir(pgdata, account)
    port = _choose_port(pgdata / _CONF_FILE)
    for attempt in range(2):
        _write_server_file(
            pgdata / _CONF_FILE,
            f"listen_addresses = '{LOOPBACK}'\n"
            f"port = {port}\n"
            f"unix_socket_directories = {_conf_literal(str(socket_dir))}\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n",
            account,
        )
        log = pgdata / _LOG_FILE
        log_size = log.stat().st_size if log.exists() else 0
        pg_ctl = [str(binaries.bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(log)]
        try:
            _run(
                [*pg_ctl, "-w", "-t", str(_START_TIMEOUT), "-s", "start"],
                account=account,
                what="starting the demo PostgreSQL",
            )
        except DbwardError as exc:
            tail = _read_from(log, log_size)
            if attempt == 0 and "could not bind" in tail:
                port = _free_port()  # taken between our check and the server's bind
                continue
            raise DbwardError(f"{exc.message}\nserver log ({log}):\n{tail[-3000:]}") from None
        info = _running_server(pgdata)
        if info is not None:
            return info
        raise DbwardError(f"the demo PostgreSQL did not come up; see {log}")
    raise AssertionError("unreachable")


def _running_server(pgdata: Path, *, wait: float = _START_TIMEOUT) -> _ServerInfo | None:
    """The live postmaster of ``pgdata``, waiting while it is still starting up."""
    deadline = time.monotonic() + wait
    while True:
        info = _read_postmaster_pid(pgdata)
        if info is None or not _pid_alive(info.pid):
            return None
        if info.status == "ready":
            return info
        if time.monotonic() > deadline:
            raise DbwardError(
                f"the PostgreSQL in {pgdata} stays in state {info.status!r}; "
                f"see {pgdata / _LOG_FILE}"
            )
        time.sleep(0.05)


def _read_postmaster_pid(pgdata: Path) -> _ServerInfo | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
        return None
    socket_dir = lines[4].strip()
    return _ServerInfo(
        pid=int(lines[0]),
        port=int(lines[3]),
        socket_dir=Path(socket_dir) if socket_dir else None,
        status=lines[7].strip(),
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _socket_dir(pgdata: Path, account: _Account | None) -> Path:
    """The cluster directory itself, or a private short one when its path is too long."""
    if len(str(pgdata)) <= _MAX_SOCKET_DIR:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"dbward-pg-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    uid = account.uid if account is not None else os.geteuid()
    st = short.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (uid, os.geteuid()):
        raise DbwardError(f"{short} exists and is not ours; remove it and run dbward demo again")
    if account is not None:
        os.chown(short, account.uid, account.gid)
    short.chmod(0o700)
    return short


def _choose_port(conf: Path) -> int:
    """The port used last time if it is free (clients keep working), else a free one."""
    with contextlib.suppress(OSError, ValueError):
        match = re.search(r"^port = (\d+)$", conf.read_text(), re.MULTILINE)
        if match is not None and _port_is_free(int(match.group(1))):
            return int(match.group(1))
    return _free_port()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL binds: connections in TIME_WAIT from a previous run do not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def _write_server_file(path: Path, text: str, account: _Account | None) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    if account is not None:
        os.chown(path, account.uid, account.gid)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _conf_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------
# Role, database, password
# ------------------------------------------------------------------------------------------


def _load_or_create_password(path: Path) -> tuple[str, bool]:
    """The demo role's password from its 0600 file, made on first use. True when new."""
    if path.exists():
        password = path.read_text(encoding="utf-8").strip()
        if not _PASSWORD_RE.fullmatch(password):
            raise DbwardError(
                f"{path} does not hold a usable password (12-200 of A-Z a-z 0-9 _ . ~ -); "
                "delete it and dbward demo makes a new one"
            )
        return password, False
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password)
    return password, True


def _scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it, so the password never travels."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _ensure_role_and_database(
    psql: Path | None, admin: _Target, database: str, password: str, *, reset: bool
) -> None:
    role_exists, db_exists = _query(
        psql,
        admin,
        f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = {_literal(DEMO_ROLE)}) || '|' ||"
        f" (SELECT count(*) FROM pg_database WHERE datname = {_literal(database)})",
    ).split("|")
    statements: list[str] = []
    verifier = _literal(_scram_verifier(password))
    if role_exists == "0":
        statements.append(f"CREATE ROLE {_ident(DEMO_ROLE)} LOGIN PASSWORD {verifier}")
    elif reset:
        statements.append(f"ALTER ROLE {_ident(DEMO_ROLE)} LOGIN PASSWORD {verifier}")
    if db_exists == "0":
        statements.append(f"CREATE DATABASE {_ident(database)} OWNER {_ident(DEMO_ROLE)}")
    if statements:
        _execute(psql, admin, statements)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------
# Running SQL: psql when there is one, psycopg otherwise
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    user: str
    database: str
    password: str | None = field(repr=False)


def _conninfo(*, host: str, port: int, user: str, database: str, password: str | None) -> str:
    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = [f"host={quote(host)}", f"port={port}", f"user={quote(user)}"]
    parts.append(f"dbname={quote(database)}")
    if password is not None:
        parts.append(f"password={quote(password)}")
    return " ".join(parts)


def _query(psql: Path | None, target: _Target, sql: str) -> str:
    """The single value a one-row, one-column query returns, as text."""
    return _execute(psql, target, [sql]).strip()


def _execute(
    psql: Path | None,
    target: _Target,
    statements: Sequence[str],
    *,
    single_transaction: bool = False,
) -> str:
    if psql is None:
        return _execute_psycopg(target, statements, single_transaction=single_transaction)
    conninfo = _conninfo(
        host=target.host,
        port=target.port,
        user=target.user,
        database=target.database,
        password=None,
    )
    args = [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    if single_transaction:
        args.append("--single-transaction")
    env = _client_env()
    if target.password is not None:
        env["PGPASSWORD"] = target.password
    script = "".join(s.rstrip().rstrip(";") + ";\n" for s in statements)
    return _run(
        [*args, "-f", "-"],
        stdin=script,
        env=env,
        timeout=_SQL_TIMEOUT,
        what=f"running SQL as {target.user} on database {target.database!r}",
    )


def _execute_psycopg(
    target: _Target, statements: Sequence[str], *, single_transaction: bool
) -> str:
    try:
        import psycopg
    except ImportError:
        raise DbwardError(
            f"neither psql nor psycopg is available to load the demo data; {INSTALL_HINT}"
        ) from None
    out: list[str] = []
    try:
        with psycopg.connect(
            _conninfo(
                host=target.host,
                port=target.port,
                user=target.user,
                database=target.database,
                password=target.password,
            ),
            autocommit=not single_transaction,
            connect_timeout=10,
        ) as conn:
            for statement in statements:
                cursor = conn.execute(statement.encode())
                while True:
                    if cursor.description is not None:
                        for row in cursor.fetchall():
                            out.append("|".join("" if v is None else str(v) for v in row))
                    if not cursor.nextset():
                        break
    except psycopg.Error as exc:
        raise DbwardError(
            f"running SQL as {target.user} on database {target.database!r} failed: {exc}"
        ) from None
    return "\n".join(out)


def _client_env() -> dict[str, str]:
    """This process's environment without PG* settings that would redirect the tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    env["PGSSLMODE"] = "disable"
    return env


def _run(
    args: Sequence[str],
    *,
    what: str,
    account: _Account | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = _START_TIMEOUT + 30,
) -> str:
    """Run a program (as ``account`` if given) and return its stdout; errors name the cause."""
    try:
        result = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=env if env is not None else _client_env(),
            timeout=timeout,
            check=False,
            user=account.uid if account is not None else None,
            group=account.gid if account is not None else None,
            extra_groups=[] if account is not None else None,
            cwd="/" if account is not None else None,
        )
    except subprocess.TimeoutExpired:
        raise DbwardError(
            f"{what}: {Path(args[0]).name} did not finish in {timeout:.0f}s"
        ) from None
    except OSError as exc:
        raise DbwardError(f"{what}: could not run {args[0]}: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-3000:]
        raise DbwardError(
            f"{what} failed ({Path(args[0]).name} exit {result.returncode}): {detail}"
        )
    return result.stdout
