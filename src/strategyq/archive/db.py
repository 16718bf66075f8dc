"""The archive's database: SQLite (the standard library's driver) or PostgreSQL (psycopg 3).

One small class hides the two drivers' differences (placeholders, the blob
type, how a connection fails), so the schema, the archiver and the queries
are written once. SQL here uses ``?`` placeholders; on PostgreSQL they become
``%s``.

Why two plain drivers and not an ORM or SQLAlchemy: the archive is a handful of
tables, one upsert, one filtered SELECT and one bulk load; the drivers give
each of those directly (``INSERT … ON CONFLICT DO NOTHING`` in both, ``COPY``
in psycopg), and there is no second code path to keep in step.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from strategyq.errors import ArchiveUnavailable, ConfigError

Row = tuple[Any, ...]
_PLACEHOLDER = re.compile(r"\?")


def describe(url: str) -> str:
    """The URL without its password (safe for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***@" if parts.username else "***@"
    return url.replace(parts.netloc, user + netloc[2])


class Database:
    """A connection to the archive (one per thread that uses it).

    Args:
        url: ``sqlite:///path/to/archive.db`` or ``postgresql://user@host/db``.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
        elif scheme == "sqlite":
            self.dialect = "sqlite"
        else:
            raise ConfigError(
                f"STRATEGYQ_ARCHIVE_URL={describe(url)!r}: use sqlite:///path/archive.db or "
                "postgresql://user:password@host:5432/dbname"
            )
        self._timeout = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: Any = None

    # ------------------------------------------------------------------ connection

    @property
    def blob(self) -> str:
        return "BYTEA" if self.dialect == "postgresql" else "BLOB"

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's errors that mean the database cannot be reached or written now."""
        if self.dialect == "postgresql":
            import psycopg

            return (psycopg.OperationalError, psycopg.InterfaceError)
        return (sqlite3.OperationalError,)

    def _connect(self) -> Any:
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(
                self.url, connect_timeout=max(1, int(self._timeout)), autocommit=False
            )
        path = Path(urlsplit(self.url).path)
        if not str(path) or str(path) == "/":
            raise ConfigError("a sqlite archive URL needs a file: sqlite:///path/to/archive.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except self.errors as exc:
                raise ArchiveUnavailable(
                    f"the run archive at {describe(self.url)} cannot be reached: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                ) from exc
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing a broken connection may itself fail.
            with contextlib.suppress(Exception):
                conn.close()

    def sql(self, text: str) -> str:
        if self.dialect == "postgresql":
            return _PLACEHOLDER.sub("%s", text.replace("%", "%%"))
        return text

    # ------------------------------------------------------------------ statements

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed on success, rolled back on error.

        Raises:
            ArchiveUnavailable: the database cannot be reached (the connection is
                dropped and made again on the next call).
        """
        with self._lock:
            conn = self.connection()
            try:
                if self.dialect == "sqlite":
                    conn.execute("BEGIN IMMEDIATE")
                cur = conn.cursor()
                yield cur
                conn.commit() if self.dialect == "postgresql" else conn.execute("COMMIT")
            except self.errors as exc:
                self._rollback(conn)
                self.close()
                raise ArchiveUnavailable(
                    f"the run archive at {describe(self.url)} failed: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                ) from exc
            except BaseException:
                self._rollback(conn)
                raise

    def _rollback(self, conn: Any) -> None:
        # The connection may be gone: then there is nothing to roll back.
        with contextlib.suppress(Exception):
            conn.rollback() if self.dialect == "postgresql" else conn.execute("ROLLBACK")

    def query(self, text: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one SELECT in its own transaction; its rows."""
        with self.transaction() as cur:
            cur.execute(self.sql(text), tuple(params))
            return [tuple(r) for r in cur.fetchall()]

    def execute(self, cur: Any, text: str, params: Sequence[Any] = ()) -> None:
        cur.execute(self.sql(text), tuple(params))

    def executemany(self, cur: Any, text: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``text`` once per row; how many rows it changed in all (both drivers sum
        ``rowcount`` over the rows, so an ``ON CONFLICT DO NOTHING`` skip counts 0)."""
        if not rows:
            return 0
        cur.executemany(self.sql(text), [tuple(r) for r in rows])
        return max(int(cur.rowcount), 0)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
