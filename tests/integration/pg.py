"""PostgreSQL for the tests: uniquely named databases on the machine's server, and a
private password-protected server for the credential tests.

The machine's server is ``STRATEGYQ_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust authentication).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.system_packages import require

SERVER = os.environ.get("STRATEGYQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def execute(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    """Run ``statements`` (autocommit); the rows each returned."""
    import adbc_driver_postgresql.dbapi as adbc

    out: list[list[tuple[object, ...]]] = []
    with adbc.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
            try:
                out.append([tuple(r) for r in cur.fetchall()])
            except Exception:  # a statement with no result set
                out.append([])
    return out


def server_problem() -> str | None:
    """Why the machine's server cannot be used, or None."""
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError as exc:
        return f"adbc-driver-postgresql is not installed ({exc}); run make install"
    try:
        execute(SERVER, "SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL answers at {SERVER} ({str(exc).splitlines()[0]})"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the machine's server, dropped afterwards."""
    problem = server_problem()
    if problem:
        pytest.fail(f"PostgreSQL is needed on {SERVER}: {problem}")
    name = f"strategyq_test_{uuid.uuid4().hex[:10]}"
    execute(SERVER, f"CREATE DATABASE {name}")
    try:
        yield with_db(SERVER, name)
    finally:
        execute(SERVER, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True):
        return str(candidate)
    return None


class PasswordServer:
    """A private PostgreSQL cluster that asks for a password (scram-sha-256)."""

    password = "right-horse-battery"

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="strategyq-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *cmd: str) -> list[str]:
        # initdb and postgres refuse to run as root: run them as the postgres user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return list(cmd)

    def start(self) -> None:
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        if not initdb or not postgres:
            require(lambda: None not in (_pg_bin("initdb"), _pg_bin("postgres")),
                    ["postgresql"], "PostgreSQL's initdb and postgres")  # fmt: skip
            initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
            assert initdb and postgres
        data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
        subprocess.run(
            self._as_owner(
                initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "--no-sync",
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            self._as_owner(
                postgres, "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            ),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        url = f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"
        while True:
            try:
                execute(url, "SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)
