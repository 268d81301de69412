"""A real PostgreSQL cluster under the state folder, from system binaries or the pgserver wheel.

The server listens on 127.0.0.1 only (plus a unix socket inside its data folder, which the
launcher uses as the ``postgres`` superuser to bootstrap). Services and tests connect over TCP
as ``payrail``/``payrail`` to the ``payrail`` database, where each service owns one schema.

PostgreSQL refuses to run as root; when we are root (containers, CI), it runs as ``nobody``,
which then needs to own the data folder and to be able to traverse the folders above it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import signal
import stat
import threading
from pathlib import Path

import psycopg
from psycopg import sql

from payrail.devstack.paths import require_free_port
from payrail.devstack.process import (
    LineSink,
    ManagedProcess,
    ManagedServer,
    run_command,
    stop_stale,
    wait_until,
)

log = logging.getLogger(__name__)

DATABASE = "payrail"
ROLE = "payrail"
PASSWORD = "payrail"  # noqa: S105 - the documented credentials of the local dev database
SUPERUSER = "postgres"
#: the unprivileged account PostgreSQL runs as when we are root
UNPRIVILEGED_USER = "nobody"
#: sun_path of a unix socket holds 108 bytes on Linux, 104 on macOS
_MAX_SOCKET_PATH = 103


def database_url(port: int) -> str:
    """SQLAlchemy URL of the dev stack's payrail database on 127.0.0.1:``port``."""
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``.

    In order: system binaries on PATH; Debian/Ubuntu's versioned folders, which are not on PATH
    by default (the newest wins); the binaries shipped inside the ``pgserver`` wheel.
    """
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        # resolve symlinks: initdb finds postgres next to its real location
        return Path(on_path).resolve().parent
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        embedded = Path(spec.origin).parent / "pginstall" / "bin"
        if (embedded / "initdb").is_file():
            return embedded
    raise RuntimeError(
        "no PostgreSQL found: install it (e.g. apt-get install postgresql) or the pgserver package"
    )


def _major_version(bin_dir: Path) -> str:
    """The major version of the binaries, e.g. "15" from "postgres (PostgreSQL) 15.18 ..."."""
    out = run_command([str(bin_dir / "postgres"), "--version"], what="postgres --version")
    match = re.search(r"\)\s*(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the PostgreSQL version from {out!r}")
    return match.group(1)


def _make_traversable(path: Path) -> None:
    """Let other users pass through every folder above ``path`` (adds o+x where missing).

    Only the search bit is added, never read: the unprivileged server can reach its data
    folder but still cannot list what else lives beside it.
    """
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("allowing other users to traverse %s so PostgreSQL can reach its data", parent)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


class PostgresServer(ManagedServer):
    """A PostgreSQL cluster in ``state_dir/postgres``, serving ``127.0.0.1:port``."""

    def __init__(self, state_dir: Path, port: int = 55432, *, sink: LineSink | None = None) -> None:
        self.port = port
        self.data_dir = state_dir.resolve() / "postgres"
        self.log_path = state_dir.resolve() / "logs" / "postgres.log"
        self._sink = sink
        self._user = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        """SQLAlchemy URL of the payrail database (what ``PAYRAIL_DATABASE_URL`` expects)."""
        return database_url(self.port)

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            shutil.chown(path, user=self._user, group=None)

    def _prepare_data_dir(self, bin_dir: Path) -> None:
        """initdb on first start; refuse a cluster made by another major version."""
        version_file = self.data_dir / "PG_VERSION"
        if version_file.is_file():
            have, want = version_file.read_text().strip(), _major_version(bin_dir)
            if have != want:
                raise RuntimeError(
                    f"{self.data_dir} holds a PostgreSQL {have} cluster but the binaries in "
                    f"{bin_dir} are version {want}; delete that folder to start afresh"
                )
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._chown(self.data_dir)
        log.info("creating a PostgreSQL cluster in %s (first run only)", self.data_dir)
        run_command(
            [
                str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ],
            what="initdb",
            cwd=self.data_dir,
            user=self._user,
        )  # fmt: skip

    def _clear_stale_pid(self) -> None:
        """Stop a postmaster orphaned on this data folder; drop lock files left by a crash.

        PostgreSQL ignores a lock file whose pid is gone, but refuses to start while that pid
        exists at all: reused by an unrelated program, or a zombie nobody has reaped. Only a
        process whose command names our data folder is stopped; anything else merely loses its
        claim on the lock files (the data folder's and the unix socket's).
        """
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return
        if not stop_stale(pid, str(self.data_dir), "PostgreSQL", signal.SIGINT):
            log.warning("removing the stale lock files of a PostgreSQL that died (pid %d)", pid)
        pid_file.unlink(missing_ok=True)
        for socket_lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            socket_lock.unlink(missing_ok=True)

    def _connect_superuser(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.data_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        )

    def _accepts_connections(self) -> bool:
        try:
            with self._connect_superuser():
                return True
        except psycopg.OperationalError:
            return False

    def _bootstrap(self) -> None:
        """Create the payrail role and database when missing (first start, or after a crash)."""
        with self._connect_superuser() as conn:
            if (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
                is None
            ):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(PASSWORD)
                    )
                )
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(ROLE)
                    )
                )

    def start(self, timeout: float = 60.0, *, cancel: threading.Event | None = None) -> None:
        """Start the server (initdb the first time) and make sure role and database exist."""
        if self._process is not None and self._process.running():
            return
        socket_path = self.data_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            raise RuntimeError(
                f"the socket path {socket_path} is too long for the OS; use a shorter state folder"
            )
        bin_dir = find_binaries()
        if self._user is not None:
            _make_traversable(self.data_dir)
            _make_traversable(bin_dir / "postgres")  # the embedded binaries may live under ~
        self._prepare_data_dir(bin_dir)
        self._clear_stale_pid()
        require_free_port(self.port, "PostgreSQL", "PAYRAIL_POSTGRES_PORT")
        self._process = ManagedProcess(
            "postgres",
            [
                str(bin_dir / "postgres"), "-D", str(self.data_dir),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={self.port}",
                "-c", f"unix_socket_directories={self.data_dir}",
                "-c", "max_connections=200",
                "-c", "logging_collector=off",
                "-c", "log_checkpoints=off",
            ],
            log_path=self.log_path,
            cwd=self.data_dir,
            user=self._user,
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client
            stop_signal=signal.SIGINT,
            stop_timeout=30.0,
            sink=self._sink,
        )  # fmt: skip
        self._process.start()
        wait_until(
            self._accepts_connections,
            what=f"PostgreSQL on 127.0.0.1:{self.port}",
            timeout=timeout,
            processes=[self._process],
            cancel=cancel,
        )
        self._bootstrap()
