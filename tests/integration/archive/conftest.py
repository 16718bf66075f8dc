"""Archive fixtures: one archive per test, on SQLite and on the machine's PostgreSQL
(a database created for the module with a unique name, dropped after it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pg import SERVER, execute, server_problem, with_db


@pytest.fixture(scope="module")
def pg_module_db() -> Iterator[str | None]:
    """A database for this module on the machine's PostgreSQL (None: no server here)."""
    if server_problem():
        yield None
        return
    name = f"strategyq_i25_archive_{uuid.uuid4().hex[:10]}"
    execute(SERVER, f"CREATE DATABASE {name}")
    try:
        yield with_db(SERVER, name)
    finally:
        execute(SERVER, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path, pg_module_db: str | None) -> str:
    """An empty archive: a SQLite file, or the module's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.db'}"
    if pg_module_db is None:
        pytest.fail(f"PostgreSQL is needed for the archive tests: {server_problem()}")
    execute(pg_module_db, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return pg_module_db.replace("postgresql://", "postgresql://", 1)
