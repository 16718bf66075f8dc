"""connect() and redis_url_for() against real servers started by these tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.retry import Retry

from strategyq.connection import connect, redis_url_for
from strategyq.embedded_valkey import EmbeddedServer, valkey_executable
from strategyq.errors import ConnectionFailed
from strategyq.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tcp_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private valkey-server on a free TCP port (no password)."""
    port = _free_port()
    directory = tmp_path_factory.mktemp("valkey-tcp")
    proc = subprocess.Popen(
        [str(valkey_executable()), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the test valkey-server did not start"
            time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(10)


def _settings(home: Path, **env: str) -> Settings:
    return Settings.from_env({"STRATEGYQ_HOME": str(home), **env})


def test_redis_url_wins_over_host(home: Path, tcp_port: int) -> None:
    url = f"redis://127.0.0.1:{tcp_port}/3"
    settings = _settings(home, REDIS_URL=url, REDIS_HOST="203.0.113.1")
    assert redis_url_for(settings) == url
    client = connect(settings, decode_responses=True)
    client.set("connection-test", "db3")
    client.close()
    direct = redis.Redis(port=tcp_port, db=3, decode_responses=True)
    assert direct.get("connection-test") == "db3"
    direct.delete("connection-test")
    direct.close()
    assert not (home / "valkey").exists()


def test_host_port_db(home: Path, tcp_port: int) -> None:
    settings = _settings(home, REDIS_HOST="127.0.0.1", REDIS_PORT=str(tcp_port), REDIS_DB="5")
    assert redis_url_for(settings) == f"redis://127.0.0.1:{tcp_port}/5"
    client = connect(settings)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.connection_pool.connection_kwargs["db"] == 5
    client.delete("k")
    client.close()


def test_client_options(home: Path, tcp_port: int) -> None:
    settings = _settings(
        home, REDIS_HOST="127.0.0.1", REDIS_PORT=str(tcp_port), REDIS_SOCKET_TIMEOUT="2.5"
    )
    client = connect(settings, decode_responses=True, client_name="strategyq-test")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["socket_connect_timeout"] == 5.0
    assert kwargs["health_check_interval"] == 30
    assert isinstance(kwargs["retry"], Retry)
    assert client.client_getname() == "strategyq-test"
    assert client.echo("x") == "x"
    client.close()


def test_embedded_is_started_and_shared(home: Path) -> None:
    settings = _settings(home)
    server = EmbeddedServer(settings.server_dir)
    try:
        with pytest.raises(
            ConnectionFailed, match=r"embedded Valkey at unix://.*`strategyq server start`"
        ):
            connect(settings, start_embedded=False)
        assert redis_url_for(settings, start_embedded=False) == server.url
        assert not server.is_running()

        client = connect(settings)
        assert server.is_running()
        client.lpush("strategy_queue", "t")
        client.close()
        other = connect(settings, decode_responses=True, start_embedded=False)
        assert other.lrange("strategy_queue", 0, -1) == ["t"]
        other.close()
    finally:
        server.stop()


def test_unreachable_host_is_one_clear_line(home: Path) -> None:
    port = _free_port()
    settings = _settings(home, REDIS_HOST="127.0.0.1", REDIS_PORT=str(port))
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach redis://127.0.0.1:{port}/0")
    assert "is the server running? check REDIS_URL/REDIS_HOST/REDIS_PORT" in message


def test_unreachable_url_hides_the_password(home: Path) -> None:
    port = _free_port()
    settings = _settings(home, REDIS_URL=f"redis://bob:pa55word@127.0.0.1:{port}/0")
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    message = str(info.value)
    assert f"redis://127.0.0.1:{port}/0" in message
    assert "pa55word" not in message


def test_invalid_url_scheme(home: Path) -> None:
    settings = _settings(home, REDIS_URL="http://127.0.0.1:6379")
    with pytest.raises(ConnectionFailed, match=r"invalid Redis address .*fix REDIS_URL"):
        connect(settings)
