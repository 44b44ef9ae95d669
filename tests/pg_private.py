"""A private PostgreSQL server for tests that stop and start their database (tests/test_db_faults.py).

The system PostgreSQL on :5432 is shared with other jobs and must never be stopped, so these tests make
their own cluster with Debian's binaries (``initdb`` + ``pg_ctl``) in a temporary folder, listening on a
free 127.0.0.1 port only. PostgreSQL refuses to run as root: when the tests run as root the binaries run
as the ``postgres`` user through ``runuser``.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from ports import free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


class PrivatePostgres:
    """``initdb`` a cluster in a temporary folder and run it on 127.0.0.1:``port`` (trust auth).

    ``start()``, ``stop(mode)`` (``fast`` ends sessions and checkpoints, ``immediate`` is a crash) and
    ``close()`` (stop and delete the folder). ``url(dbname)`` is a SQLAlchemy URL for the server."""

    def __init__(self):
        self.bin = _bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ce-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = "postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, str(self.bin / tool), *args], check=check, capture_output=True,
                              text=True, timeout=120)

    def start(self) -> "PrivatePostgres":
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
                   " -c fsync=off -c max_connections=60")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                                connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"private PostgreSQL did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def create_database(self, name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
