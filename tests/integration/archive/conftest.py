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


def empty_archive(backend: str, directory: Path, pg_module_db: str | None) -> str:
    """An empty archive: a SQLite file in ``directory``, or the module's PostgreSQL
    database emptied."""
    if backend == "sqlite":
        return f"sqlite:///{directory / 'archive.db'}"
    if pg_module_db is None:
        pytest.fail(f"PostgreSQL is needed for the archive tests: {server_problem()}")
    execute(pg_module_db, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return pg_module_db


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path, pg_module_db: str | None) -> str:
    """An empty archive for the test, on each backend."""
    return empty_archive(request.param, tmp_path, pg_module_db)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_archive_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_module_db: str | None,
) -> str:
    """An empty archive on each backend for a module-scoped fixture, shared by the tests
    of the module that only read it."""
    return empty_archive(request.param, tmp_path_factory.mktemp("archive"), pg_module_db)
