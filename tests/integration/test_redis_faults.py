"""Redis answering with errors: BUSY, OOM and READONLY mid-run, readiness, odd server settings.

Each test runs its own valkey-server (it changes the server's settings) and a
real worker process. The worker must keep a finished result in memory through
the error replies, write it exactly once when the server takes writes again,
and report not-ready meanwhile.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from strategyq import add_backtest_task, get_task_result
from strategyq.queue import keys
from tests.integration.conftest import SpawnWorker, wait_until
from tests.integration.topology import Server


def spin(seconds: float) -> str:
    """A strategy that keeps the CPU busy for ``seconds`` and then returns one instance."""
    return (
        "import datetime\n"
        "def spin(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"
    )


def submit(client: redis.Redis, task_id: str, code: str) -> None:
    add_backtest_task(client, task_id, code, ["AAPL"], "2011-01-01", "2011-06-30")


def status(client: redis.Redis, task_id: str) -> str | None:
    return (get_task_result(client, task_id) or {}).get("status")


def stage(client: redis.Redis, task_id: str) -> str | None:
    return ((get_task_result(client, task_id) or {}).get("data") or {}).get("stage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def redis_up(base: str) -> float:
    for line in http_get(base + "/metrics")[1].splitlines():
        if line.startswith("strategyq_redis_up"):
            return float(line.split()[-1])
    raise AssertionError("strategyq_redis_up not in /metrics")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "valkey", "--appendonly", "yes", "--busy-reply-threshold", "100")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_busy_reply_during_the_terminal_write_is_retried_and_the_result_kept(
    server: Server, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    client = server.client(decode_responses=True)
    worker = spawn_worker("busy-w1", env={**worker_env, "REDIS_URL": server.url})
    worker.wait_for_log("started")
    submit(client, "busy-1", spin(1.5))
    wait_until(lambda: stage(client, "busy-1") == "running_strategy", timeout_s=60)
    # Another client's long script: every other command is answered BUSY meanwhile.
    blocker = server.client()
    script = threading.Thread(
        target=blocker.eval,
        args=(
            "local t = tonumber(redis.call('TIME')[1]) "
            "while tonumber(redis.call('TIME')[1]) < t + 8 do end return 1",
            0,
        ),
    )
    script.start()
    script.join(30)
    wait_until(lambda: status(client, "busy-1") == "completed", timeout_s=60)
    assert client.llen(keys.done("busy-1")) == 1
    assert client.llen(keys.processing("busy-w1")) == 0
    output = "".join(worker.output)
    assert "BUSY" in output
    assert "unexpected failure" not in output


@pytest.mark.slow
def test_oom_mid_run_keeps_the_result_and_fails_readiness_until_memory_is_freed(
    server: Server, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    client = server.client(decode_responses=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = spawn_worker(
        "oom-w1", "--metrics-port", str(port), env={**worker_env, "REDIS_URL": server.url}
    )
    worker.wait_for_log("started")
    wait_until(lambda: http_get(base + "/readyz")[0] == 200, timeout_s=30)
    submit(client, "oom-1", spin(2.0))
    wait_until(lambda: stage(client, "oom-1") == "running_strategy", timeout_s=60)
    client.set("ballast", "x" * (4 << 20))
    client.config_set("maxmemory", "1mb")
    try:
        worker.wait_for_log("OOM", timeout_s=60)
        assert http_get(base + "/readyz")[0] == 503
        # A PING still works on a server that refuses writes: /healthz must not mark
        # Redis as up while the worker cannot write.
        http_get(base + "/healthz")
        assert redis_up(base) == 0
        assert status(client, "oom-1") == "running"
    finally:
        client.config_set("maxmemory", "0")
    wait_until(lambda: status(client, "oom-1") == "completed", timeout_s=60)
    assert client.llen(keys.done("oom-1")) == 1
    wait_until(lambda: http_get(base + "/readyz")[0] == 200, timeout_s=30)
    assert redis_up(base) == 1
    assert "unexpected failure" not in "".join(worker.output)


@pytest.mark.slow
def test_readonly_after_the_primary_is_demoted_keeps_the_result_until_it_is_primary_again(
    tmp_path: Path, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    primary = Server(tmp_path / "p", "--appendonly", "yes").start()
    other = Server(tmp_path / "r", "--appendonly", "yes").start()
    try:
        client = primary.client(decode_responses=True)
        other.client().replicaof("127.0.0.1", str(primary.port))
        wait_until(lambda: other.client().info("replication")["master_link_status"] == "up", 30)
        worker = spawn_worker("ro-w1", env={**worker_env, "REDIS_URL": primary.url})
        worker.wait_for_log("started")
        submit(client, "ro-1", spin(2.0))
        wait_until(lambda: stage(client, "ro-1") == "running_strategy", timeout_s=60)
        # A failover without Sentinel: the other server is promoted, ours follows it.
        other.client().replicaof("NO", "ONE")
        client.replicaof("127.0.0.1", str(other.port))
        wait_until(lambda: client.info("replication")["master_link_status"] == "up", 30)
        worker.wait_for_log("READONLY", timeout_s=60)
        assert status(client, "ro-1") == "running"
        client.replicaof("NO", "ONE")
        wait_until(lambda: status(client, "ro-1") == "completed", timeout_s=60)
        assert client.llen(keys.done("ro-1")) == 1
        assert "unexpected failure" not in "".join(worker.output)
    finally:
        other.stop()
        primary.stop()


@pytest.mark.slow
def test_a_message_left_in_a_live_workers_processing_list_is_put_back(
    server: Server, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    """What a lost BLMOVE reply leaves behind: the heartbeat lives, so the reaper never
    takes it; the worker's own sweep must."""
    client = server.client(decode_responses=True)
    worker = spawn_worker("orphan-w1", env={**worker_env, "REDIS_URL": server.url})
    worker.wait_for_log("started")
    message = json.dumps(
        {
            "task_id": "orphan-1",
            "task_type": "backtest",
            "args": {
                "strategy_code": spin(0.1),
                "symbols": ["AAPL"],
                "start_date": "2011-01-01",
                "end_date": "2011-06-30",
            },
        }
    )
    client.lpush(keys.processing("orphan-w1"), message)
    wait_until(lambda: status(client, "orphan-1") == "completed", timeout_s=60)
    assert client.llen(keys.processing("orphan-w1")) == 0
    assert client.llen(keys.done("orphan-1")) == 1
    worker.wait_for_log("without a run; back in the queue")


@pytest.mark.slow
def test_allkeys_eviction_is_refused_unless_accepted(
    tmp_path: Path, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    srv = Server(
        tmp_path / "lru", "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"
    ).start()
    try:
        env = {**worker_env, "REDIS_URL": srv.url}
        refused = spawn_worker("lru-w1", env=env)
        assert refused.wait(60) == 2
        text = "".join(refused.output)
        assert "maxmemory-policy is allkeys-lru" in text
        assert "STRATEGYQ_ALLOW_EVICTION=true" in text
        assert "no persistence" in text
        accepted = spawn_worker("lru-w2", env={**env, "STRATEGYQ_ALLOW_EVICTION": "true"})
        accepted.wait_for_log("accepted by STRATEGYQ_ALLOW_EVICTION")
        accepted.wait_for_log("started")
    finally:
        srv.stop()


@pytest.mark.slow
def test_volatile_eviction_is_refused_unless_allowed_and_fencing_tokens_have_no_ttl(
    tmp_path: Path, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    srv = Server(
        tmp_path / "vol",
        "--appendonly", "yes", "--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru",
    ).start()  # fmt: skip
    try:
        client = srv.client(decode_responses=True)
        refused = spawn_worker("vol-w0", env={**worker_env, "REDIS_URL": srv.url})
        assert refused.wait(60) == 2
        assert "refusing to take tasks: the server's maxmemory-policy is volatile-lru" in "".join(
            refused.output
        )
        allowed = {**worker_env, "REDIS_URL": srv.url, "STRATEGYQ_ALLOW_EVICTION": "true"}
        worker = spawn_worker("vol-w1", env=allowed)
        worker.wait_for_log("accepted by STRATEGYQ_ALLOW_EVICTION")
        worker.wait_for_log("started")
        submit(client, "vol-1", spin(1.5))
        wait_until(lambda: stage(client, "vol-1") == "running_strategy", timeout_s=60)
        # volatile-* only ever evicts keys with a TTL: the token has none.
        assert client.ttl(keys.token("vol-1")) == -1
        wait_until(lambda: status(client, "vol-1") == "completed", timeout_s=60)
        assert not client.exists(keys.token("vol-1"))
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_fencing_token_dropped_mid_run_is_detected_and_the_result_written(
    server: Server, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    client = server.client(decode_responses=True)
    worker = spawn_worker("evict-w1", env={**worker_env, "REDIS_URL": server.url})
    worker.wait_for_log("started")
    submit(client, "evict-1", spin(1.5))
    wait_until(lambda: stage(client, "evict-1") == "running_strategy", timeout_s=60)
    client.delete(keys.token("evict-1"))  # what an allkeys-* eviction does
    wait_until(lambda: status(client, "evict-1") == "completed", timeout_s=60)
    worker.wait_for_log("fencing token was gone")
    assert "lost its lease" not in "".join(worker.output)
    assert client.llen(keys.done("evict-1")) == 1


def test_wait_for_result_returns_the_result_when_the_server_refuses_the_token_put_back(
    server: Server,
) -> None:
    from strategyq import wait_for_result

    client = server.client(decode_responses=True)
    client.set(keys.result("w-1"), json.dumps({"status": "running", "data": {}}))
    client.set("ballast", "x" * (4 << 20))
    found: list[object] = []
    waiter = threading.Thread(target=lambda: found.append(wait_for_result(client, "w-1", 30)))
    waiter.start()
    wait_until(lambda: int(client.info("clients")["blocked_clients"]) == 1, timeout_s=10)
    done = {"status": "completed", "data": {"x": 1}, "updated_at": "2026-01-01T00:00:00Z"}
    # Result, wake-up and the memory limit in one transaction: the waiter's put-back of
    # the wake-up token is the first write the server sees over its limit.
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.result("w-1"), json.dumps(done))
    pipe.rpush(keys.done("w-1"), "done")
    pipe.config_set("maxmemory", "1mb")
    pipe.execute()
    try:
        waiter.join(30)
        assert found == [done]
    finally:
        client.config_set("maxmemory", "0")
