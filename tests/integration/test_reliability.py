"""Reliability: real worker processes, real signals, a real server.

Workers here run with a 3 s heartbeat timeout and a 0.5 s reaper interval
(see ``worker_env``), so a crashed worker's task is back in the queue within
about 3.5 s.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import redis

from strategyq import add_backtest_task, get_task_result, wait_for_result
from strategyq.queue import ClaimVerdict, FinishVerdict, TaskQueue, keys
from strategyq.settings import Settings
from tests.conftest import ValkeyTestServer
from tests.integration.conftest import SpawnWorker, WorkerProcess, run_burst, wait_until

TRIVIAL = "def trivial(df):\n    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"


def slow(seconds: float) -> str:
    """A strategy that keeps the CPU busy for ``seconds`` and then returns nothing."""
    return (
        "import datetime\n"
        "def slow(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return []\n"
    )


def submit(client: redis.Redis, task_id: str, code: str = TRIVIAL) -> None:
    add_backtest_task(client, task_id, code, ["AAPL"], "2011-01-01", "2011-06-30")


def stage_of(client: redis.Redis, task_id: str) -> str | None:
    result = get_task_result(client, task_id) or {}
    return (result.get("data") or {}).get("stage")


def terminal_writes(client: redis.Redis, task_id: str) -> int:
    """Each terminal write pushes one token onto the task's done list (no waiters here)."""
    return int(client.llen(f"strategyq:done:{task_id}"))


@pytest.mark.slow
def test_kill_9_mid_task_runs_it_on_another_worker(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    submit(redis_client, "victim", slow(2))
    w1: WorkerProcess = spawn_worker("w1")
    wait_until(lambda: stage_of(redis_client, "victim") == "running_strategy")
    w1.signal(signal.SIGKILL)
    w1.wait()
    assert redis_client.llen("strategyq:processing:w1") == 1  # not lost: parked, not in memory
    crashed_at = time.monotonic()
    w2 = spawn_worker("w2")
    w2.wait_for_log("started")
    up_at = time.monotonic()
    result = wait_for_result(redis_client, "victim", timeout_s=30)
    assert result is not None and result["status"] == "completed", result
    assert result["data"]["worker_id"] == "w2"
    # Taken again as soon as both w1's heartbeat has expired (3 s after the crash at
    # most) and w2 is up to reap it, then one reaper pass (0.5 s) and the 2 s run, with
    # 5 s to spare for a busy machine: not after the shipped 10 s timeout nor a grace
    # period. w2's own start-up is not counted, a loaded machine stretches it most.
    recovered_s = time.monotonic() - max(crashed_at + 3, up_at)
    assert recovered_s < 0.5 + 2 + 5, recovered_s
    assert terminal_writes(redis_client, "victim") == 1
    assert redis_client.llen("strategyq:processing:w1") == 0


@pytest.mark.slow
@pytest.mark.timeout(400)  # on a loaded machine each restart's warm-up takes longer
def test_chaos_1000_tasks_3_workers_random_kill_9(
    redis_client: redis.Redis,
    spawn_worker: SpawnWorker,
    worker_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = [f"chaos-{i:04d}" for i in range(1000)]
    pipe = redis_client.pipeline()
    for task_id in ids:
        pipe.lpush(
            "strategy_queue",
            json.dumps(
                {
                    "task_id": task_id,
                    "task_type": "backtest",
                    "args": {
                        "strategy_code": TRIVIAL,
                        "symbols": ["AAPL"],
                        "start_date": "2011-01-01",
                        "end_date": "2011-03-31",
                    },
                }
            ),
        )
    pipe.execute()
    env = {"STRATEGYQ_MAX_ATTEMPTS": "20"}
    workers = {f"c{i}": spawn_worker(f"c{i}", env=env) for i in range(3)}
    rng = random.Random(7)
    kills = 0
    outputs: list[str] = []
    # At most 8 kills (one every 1.5-2.5 s, each mid-run on a busy worker) within at most
    # 110 s: a bounded count, so a slow machine gets no more kills (and no longer a test)
    # than a fast one.
    max_kills = 8
    deadline = time.monotonic() + 110

    def done() -> int:
        return sum(
            1
            for raw in redis_client.mget([f"task_result:{i}" for i in ids])
            if raw and '"completed"' in raw
        )

    while kills < max_kills and time.monotonic() < deadline and done() < len(ids):
        time.sleep(rng.uniform(1.5, 2.5))
        name = rng.choice(sorted(workers))
        workers[name].signal(signal.SIGKILL)
        workers[name].wait()
        outputs.extend(workers[name].output)
        kills += 1
        workers[name] = spawn_worker(name, env=env)
    # The kills stop at the deadline; the survivors then get a generous while to finish.
    wait_until(lambda: done() == len(ids), timeout_s=max(deadline - time.monotonic(), 0) + 180)
    for w in workers.values():
        outputs.extend(w.output)

    results = redis_client.mget([f"task_result:{i}" for i in ids])
    assert all(r is not None and json.loads(r)["status"] == "completed" for r in results)
    writes = [terminal_writes(redis_client, i) for i in ids]
    assert writes == [1] * len(ids), "every task has exactly one terminal write"
    starts: dict[str, int] = {}
    for line in outputs:
        if " started: backtest" in line:
            task_id = line.split("task ", 1)[1].split(" ", 1)[0]
            starts[task_id] = starts.get(task_id, 0) + 1
    duplicates = sum(n - 1 for n in starts.values() if n > 1)
    with capsys.disabled():  # the report belongs in the test run's output
        print(f"\nchaos: {kills} kill -9s, {duplicates} duplicate executions of {len(ids)} tasks")
    assert kills >= 2


@pytest.mark.slow
def test_poison_task_is_retried_max_attempts_then_dead_lettered(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    submit(redis_client, "poison")
    submit(redis_client, "healthy")
    env = {"STRATEGYQ_FAULT_CRASH_AT": "poison:running_strategy", "STRATEGYQ_MAX_ATTEMPTS": "3"}
    deaths = 0
    worker: WorkerProcess = spawn_worker("p0", env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = get_task_result(redis_client, "poison") or {}
        if result.get("status") == "error":
            break
        if worker.proc is not None and worker.proc.poll() is not None:
            deaths += 1  # restarted like a Deployment would, under a new pod name
            worker = spawn_worker(f"p{deaths}", env=env)
        time.sleep(0.1)
    result = get_task_result(redis_client, "poison")
    assert result is not None and result["status"] == "error", result
    assert result["data"]["error_type"] == "worker_lost"
    assert result["data"]["attempts"] == 3
    assert deaths == 3
    dead = [json.loads(e) for e in redis_client.lrange("strategyq:dead_letter", 0, -1)]
    assert [e["task_id"] for e in dead] == ["poison"]
    assert dead[0]["attempts"] == 3 and dead[0]["reason"] == "worker_lost"
    healthy = wait_for_result(redis_client, "healthy", timeout_s=30)
    assert healthy is not None and healthy["status"] == "completed"


@pytest.mark.slow
def test_sigterm_finishes_the_task_in_flight_and_exits_0(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    submit(redis_client, "graceful", slow(1.5))
    w1: WorkerProcess = spawn_worker("g1")
    wait_until(lambda: stage_of(redis_client, "graceful") == "running_strategy")
    w1.signal(signal.SIGTERM)
    assert w1.wait(30) == 0
    result = get_task_result(redis_client, "graceful")
    assert result is not None and result["status"] == "completed"
    assert any("stopped after" in line and "1 completed" in line for line in w1.output)


@pytest.mark.slow
def test_sigterm_past_the_grace_period_requeues_the_task(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    submit(redis_client, "long", slow(4))
    w1: WorkerProcess = spawn_worker("t1", env={"STRATEGYQ_GRACE_PERIOD": "0.5"})
    wait_until(lambda: stage_of(redis_client, "long") == "running_strategy")
    w1.signal(signal.SIGTERM)
    assert w1.wait(30) == 0
    assert (get_task_result(redis_client, "long") or {}).get("status") == "queued"
    assert redis_client.llen("strategy_queue") == 1
    spawn_worker("t2")
    result = wait_for_result(redis_client, "long", timeout_s=30)
    assert result is not None and result["status"] == "completed"
    assert result["data"]["worker_id"] == "t2"


@pytest.mark.slow
def test_zombie_worker_cannot_overwrite_the_terminal_result(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    submit(redis_client, "zombie", slow(2))
    w1: WorkerProcess = spawn_worker("z1")
    wait_until(lambda: stage_of(redis_client, "zombie") == "running_strategy")
    w1.signal(signal.SIGSTOP)
    try:
        spawn_worker("z2")
        result = wait_for_result(redis_client, "zombie", timeout_s=30)
        assert result is not None and result["data"]["worker_id"] == "z2"
    finally:
        w1.signal(signal.SIGCONT)
    # Give the paused run time to finish and try its (stale) write.
    w1.wait_for_log("lost its lease", timeout_s=30)
    final = get_task_result(redis_client, "zombie")
    assert final is not None and final["data"]["worker_id"] == "z2"
    assert terminal_writes(redis_client, "zombie") == 1


@pytest.mark.slow
def test_connection_kill_and_lost_terminal_write_replies(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    for i in range(20):
        submit(redis_client, f"ck-{i}", slow(0.1))
    spawn_worker("k1", env={"STRATEGYQ_FAULT_FINISH_DROPS": "3"})
    # Every other connection to this test's database: the worker's. (On a server shared by
    # parallel test workers the other databases' clients are not this test's to kill.)
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    for _ in range(5):
        time.sleep(0.3)
        me = redis_client.client_id()
        for c in redis_client.client_list():
            if int(c["id"]) != me and c["db"] == db:
                redis_client.client_kill_filter(_id=c["id"])
    for i in range(20):
        result = wait_for_result(redis_client, f"ck-{i}", timeout_s=30)
        assert result is not None and result["status"] == "completed", (i, result)
        assert terminal_writes(redis_client, f"ck-{i}") == 1


@pytest.mark.slow
def test_redis_restart_mid_run_loses_nothing(market_home: Path, worker_env: dict[str, str]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="strategyq-restart-"))
    server = ValkeyTestServer(directory)
    server.start()
    worker = None
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ids = [f"rr-{i}" for i in range(40)]
        for task_id in ids:
            submit(client, task_id, slow(0.05))
        worker = WorkerProcess({**worker_env, "REDIS_URL": server.url}, "r1").start()
        wait_until(
            lambda: (
                sum(
                    1
                    for i in ids
                    if (get_task_result(client, i) or {}).get("status") == "completed"
                )
                >= 5
            )
        )
        server.stop()
        time.sleep(2)
        server.start()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        for task_id in ids:
            result = wait_for_result(client, task_id, timeout_s=60)
            assert result is not None and result["status"] == "completed", (task_id, result)
        assert any("retrying" in line for line in worker.output)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_keys_return_to_results_only_and_expire(
    redis_client: redis.Redis, settings: Settings
) -> None:
    # Each task leaves the same keys, and each is a real run in the sandbox: 100 show any
    # leftover as surely as more would.
    for i in range(100):
        submit(redis_client, f"k-{i}")
    run_burst(settings, result_ttl_s=3)
    names = set(redis_client.keys("*"))
    # The recent-task index and its filtered views (strategyq:recent:status:…, :type:…)
    # are trimmed, and expire with their results; so do the wait-time samples (one capped
    # list per lane and tenant, and their index).
    kept = ("task_result:", "strategyq:done:", "strategyq:recent", "strategyq:waits:")
    leftovers = {n for n in names if not n.startswith(kept)} - {
        "strategyq:fence",
        "strategyq:lane_tenants",
    }
    assert leftovers == set(), leftovers
    # -1 is a key without expiry (-2: already expired, which is fine).
    assert all(redis_client.ttl(n) != -1 for n in names if n != "strategyq:fence")
    wait_until(lambda: redis_client.dbsize() <= 1, timeout_s=10)


# 10,000 sequential lifecycles are 30,000 round trips (over a minute on a loaded
# machine): make test runs 1,000, which leave the same bookkeeping per task; the soak
# at 10,000 (the recent index's default cap) runs with the slow tests.
@pytest.mark.parametrize(
    "count", [1_000, pytest.param(10_000, marks=pytest.mark.slow)], ids=["1000", "10000"]
)
def test_task_lifecycles_leave_no_bookkeeping(
    redis_client: redis.Redis, settings: Settings, count: int
) -> None:
    """The claim → finish transitions alone, ``count`` times (no strategy runs)."""
    raw_client = redis_client
    tasks = TaskQueue(raw_client, result_ttl_s=3600)
    processing = keys.processing("lifecycle")
    for i in range(count):
        tid = f"l-{i}"
        raw = json.dumps({"task_id": tid}).encode()
        raw_client.lpush(processing, raw)
        claim = tasks.claim("lifecycle", tid, "backtest", "2024-01-01T00:00:00Z")
        assert claim.verdict is ClaimVerdict.RUN
        verdict = tasks.finish("lifecycle", tid, claim.token, b'{"status":"completed"}', raw)
        assert verdict is FinishVerdict.WRITTEN
    assert raw_client.llen(processing) == 0
    counts: dict[str, int] = {}
    for name in raw_client.scan_iter(count=1000):
        prefix = (
            name.split(":", 1)[0]
            + ":"
            + (name.split(":")[1] if name.startswith("strategyq:") else "")
        )
        counts[prefix] = counts.get(prefix, 0) + 1
    assert counts == {
        "task_result:": count,
        "strategyq:done": count,
        "strategyq:fence": 1,
        "strategyq:recent": 1,
    }, counts
    assert raw_client.zcard(keys.RECENT) == count


@pytest.mark.slow
def test_a_killed_sandbox_host_is_replaced(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker: WorkerProcess = spawn_worker("h1")
    submit(redis_client, "before")
    assert (wait_for_result(redis_client, "before", timeout_s=30) or {}).get(
        "status"
    ) == "completed"
    assert worker.proc is not None
    (executor,) = children(worker.proc.pid)
    (host,) = children(executor)
    os.kill(host, signal.SIGKILL)  # as the OOM killer would
    for task_id in ("after", "and-after"):
        submit(redis_client, task_id)
        result = wait_for_result(redis_client, task_id, timeout_s=30)
        assert result is not None and result["status"] == "completed", result
    worker.wait_for_log("starting a new one")
    hosts = children(executor)
    assert len(hosts) == 1 and host not in hosts  # replaced, and the dead one reaped


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow
def test_worker_waits_for_a_server_that_is_not_up_yet(
    market_home: Path, worker_env: dict[str, str]
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="strategyq-late-"))
    server = ValkeyTestServer(directory)
    worker = WorkerProcess({**worker_env, "REDIS_URL": server.url}, "late-1").start()
    try:
        worker.wait_for_log("retrying in")
        server.start()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        submit(client, "late")
        result = wait_for_result(client, "late", timeout_s=60)
        assert result is not None and result["status"] == "completed"
    finally:
        worker.stop()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
