"""The embedded Valkey server: real daemons in a private STRATEGYQ_HOME."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from strategyq.embedded_valkey import EmbeddedServer, valkey_executable
from strategyq.errors import ServerError


@pytest.fixture
def server(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedServer]:
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    srv = EmbeddedServer(home / "valkey")
    yield srv
    srv.stop()


def _servers_in(directory: Path) -> list[int]:
    """Pids of valkey-server processes whose working directory is ``directory``."""
    binary = os.path.realpath(valkey_executable())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if exe == binary and Path(cwd) == directory:
            found.append(int(entry.name))
    return found


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        if stat_line.rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.02)


def test_start_reuse_stop(server: EmbeddedServer) -> None:
    assert not server.is_running()
    assert server.status()["running"] is False

    url = server.ensure_running()
    assert url == f"unix://{server.socket_path}" == server.url
    assert server.socket_path == server.directory / "valkey.sock"
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o700
    status = server.status()
    assert status["running"] is True
    assert status["aof"] is True
    assert status["keys"] == 0
    assert status["version"]
    assert status["pid"] == int(server.pidfile.read_text())
    assert _servers_in(server.directory) == [status["pid"]]
    client = redis.Redis.from_url(url, decode_responses=True)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("port") == {"port": "0"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.close()

    assert server.ensure_running() == url
    assert server.status()["pid"] == status["pid"]

    assert server.stop() is True
    _wait_gone(status["pid"])
    assert not server.is_running()
    assert not server.pidfile.exists()
    assert not server.socket_path.exists()
    assert server.stop() is False


def test_stop_without_directory_is_a_no_op(tmp_path: Path) -> None:
    assert EmbeddedServer(tmp_path / "never-made").stop() is False


def test_concurrent_starters_end_with_one_server(server: EmbeddedServer) -> None:
    start_at = time.time() + 1.0
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from strategyq.embedded_valkey import EmbeddedServer
        time.sleep(max(0.0, {start_at!r} - time.time()))
        print(EmbeddedServer(Path(sys.argv[1])).ensure_running())
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(server.directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        outputs.append(out.decode().strip())
    assert outputs == [server.url] * 4
    assert len(_servers_in(server.directory)) == 1


def test_queued_items_survive_a_restart(server: EmbeddedServer) -> None:
    client = redis.Redis.from_url(server.ensure_running())
    client.lpush("strategy_queue", b'{"task_id": "t-1"}', b'{"task_id": "t-2"}')
    client.close()
    assert server.stop() is True

    client = redis.Redis.from_url(server.ensure_running())
    assert client.lrange("strategy_queue", 0, -1) == [b'{"task_id": "t-2"}', b'{"task_id": "t-1"}']
    client.close()
    assert (server.directory / "appendonlydir").is_dir()


def test_crashed_server_leaves_files_that_the_next_start_handles(server: EmbeddedServer) -> None:
    server.ensure_running()
    pid = server.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert server.pidfile.exists() and server.socket_path.exists()
    assert not server.is_running()

    server.ensure_running()
    new_pid = server.status()["pid"]
    assert new_pid != pid
    assert _servers_in(server.directory) == [new_pid]


def test_pidfile_naming_an_unrelated_process_is_stale(server: EmbeddedServer) -> None:
    server.directory.mkdir(parents=True)
    # This test process is alive but is no valkey server: its pid must not be trusted.
    server.pidfile.write_text(f"{os.getpid()}\n")
    server.socket_path.write_text("")
    assert server.stop() is False
    assert not server.pidfile.exists()

    server.pidfile.write_text(f"{os.getpid()}\n")
    server.ensure_running()
    assert server.status()["pid"] != os.getpid()


def test_long_home_uses_a_short_private_socket(tmp_path: Path) -> None:
    directory = tmp_path / ("deep-" * 20) / "valkey"
    srv = EmbeddedServer(directory)
    assert len(os.fsencode(directory / "valkey.sock")) > 107
    assert srv.socket_path == EmbeddedServer(directory).socket_path
    assert str(srv.socket_path).startswith(f"/tmp/strategyq-{os.getuid()}-")
    assert len(os.fsencode(srv.socket_path)) < 100
    assert EmbeddedServer(tmp_path / ("other-" * 20)).socket_path != srv.socket_path
    try:
        client = redis.Redis.from_url(srv.ensure_running())
        client.set("k", "v")
        client.close()
        socket_dir = srv.socket_path.parent
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert srv.status()["keys"] == 1
    finally:
        assert srv.stop() is True
    assert not srv.socket_path.parent.exists()


def test_unusable_directory_is_a_clear_server_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ServerError, match="STRATEGYQ_HOME"):
        EmbeddedServer(blocker / "valkey").ensure_running()


def test_cli_start_status_stop(server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from strategyq.cli.server import app

    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    result = runner.invoke(app, ["start"])
    assert result.exit_code == 0, result.output
    assert server.url in result.output
    assert server.is_running()

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert any("running" in line and "yes" in line for line in result.output.splitlines())
    assert str(server.socket_path) in result.output
    assert str(server.pidfile.read_text().strip()) in result.output

    result = runner.invoke(app, ["stop"])
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output
    assert not server.is_running()

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert any("running" in line and "no" in line for line in result.output.splitlines())


def test_cli_status_with_external_redis_says_embedded_is_unused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strategyq.cli.server import app

    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@db.example:6380/2")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "not in use" in result.output
    assert "redis://db.example:6380/2" in result.output
    assert "hunter2" not in result.output
    assert not (home / "valkey").exists()
