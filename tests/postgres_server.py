"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

The server listens only on a Unix socket inside that directory (no TCP port, nothing shared
with the machine). It refuses to run as root, so as root it runs as the `postgres` system
user. Each test gets its own database (`CREATE DATABASE` takes a few milliseconds).
"""
from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
SERVER_USER = "postgres"
DB_USER = "whysim"
PORT = 5432  # only names the socket file; there is no TCP listener
# Durability of the throwaway server's own files does not matter (the tests kill clients,
# never the server): skipping fsync makes CREATE DATABASE and commits cheap.
SERVER_SETTINGS = ("-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=400 -c shared_buffers=32MB")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed, or the server would not start."""


def find_pg_bin() -> Path | None:
    for candidate in PG_BIN_DIRS:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path  # owned by the server user: data/ and the socket live here
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{DB_USER}@/{database}?host={self.socket_dir}&port={PORT}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run([str(self.bin_dir / "psql"), "-h", str(self.socket_dir), "-p", str(PORT),
                               "-U", DB_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, prefix: str = "test", template: str | None = None) -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def copy_database(self, source: str) -> str:
        """A new database with `source`'s content. Other sessions on `source` are ended first
        (CREATE DATABASE ... TEMPLATE needs it to be idle); pools with pre-ping reconnect."""
        self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{source}' AND pid <> pg_backend_pid()")
        return self.create_database("copy", template=source)

    @staticmethod
    def database_of(url: str) -> str:
        return url.split("@/", 1)[1].split("?", 1)[0]

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(_as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                                        "-m", "immediate", "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="whysim-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise PostgresUnavailable(f"running as root and there is no {SERVER_USER!r} user to run the server") from exc
        os.chown(root, user.pw_uid, user.pw_gid)
    data = root / "data"
    steps = [
        [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", DB_USER, "--no-sync", "-E", "UTF8"],
        [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
         "-o", f"-k {root} -p {PORT} {SERVER_SETTINGS}", "start"],
    ]
    for argv in steps:
        done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed: {done.stderr.strip()} {log[-2000:]}")
    return PostgresServer(bin_dir, root)


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
