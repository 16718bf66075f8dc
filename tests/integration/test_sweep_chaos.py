"""A sweep's chunks under kill -9: real worker processes, a real server."""

from __future__ import annotations

import random
import signal
import time

import pytest
import redis

from strategyq import add_sweep_task, get_task_result
from strategyq.protocol.chunks import chunk_id
from strategyq.queue import keys
from tests.integration.conftest import SpawnWorker, WorkerProcess, wait_until

# Each call keeps the CPU busy a little, so kills land while chunks run.
BUSY = (
    "import datetime\n"
    "def busy_strategy(df, params):\n"
    "    end = datetime.datetime.now() + datetime.timedelta(seconds=0.03)\n"
    "    while datetime.datetime.now() < end:\n"
    "        pass\n"
    "    n = params['n']\n"
    "    hits = df[df['close'] > df['close'].shift(1) * (1 + n / 10000)]\n"
    "    return [{'ticker': t, 'date': str(d)} for t, d in zip(hits['ticker'], hits['date'])]\n"
)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_chaos_200_combinations_3_workers_kill_9_every_combination_counted_once(
    redis_client: redis.Redis, spawn_worker: SpawnWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    add_sweep_task(redis_client, "chaos-sweep", BUSY, ["AAPL", "MSFT"], "2010-01-01",
                   "2012-12-31", {"n": list(range(200))}, maximize="total_return",
                   hold_days=3)  # fmt: skip
    env = {"STRATEGYQ_MAX_ATTEMPTS": "20", "STRATEGYQ_SWEEP_CHUNK_SIZE": "8"}
    workers: dict[str, WorkerProcess] = {f"s{i}": spawn_worker(f"s{i}", env=env) for i in range(3)}
    rng = random.Random(11)
    kills = 0
    outputs: list[str] = []

    def status() -> str | None:
        result = get_task_result(redis_client, "chaos-sweep") or {}
        return result.get("status")

    # Four kills, each once the sweep made progress since the last one (so the test
    # ends however slow the machine), then the sweep is left to finish.
    last = -1
    while kills < 4 and status() not in ("completed", "error"):
        time.sleep(rng.uniform(1.0, 2.0))
        done = (
            ((get_task_result(redis_client, "chaos-sweep") or {}).get("data") or {})
            .get("progress", {})
            .get("done", 0)
        )
        if status() in ("completed", "error") or done == last:
            continue
        last = done
        name = rng.choice(sorted(workers))
        workers[name].signal(signal.SIGKILL)
        workers[name].wait()
        outputs.extend(workers[name].output)
        kills += 1
        workers[name] = spawn_worker(name, env=env)
    wait_until(lambda: status() in ("completed", "error"), timeout_s=240)
    for w in workers.values():
        outputs.extend(w.output)
    result = get_task_result(redis_client, "chaos-sweep")
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    assert data["total_combinations"] == 200 and data["chunks"] == 25
    # Every combination counted exactly once: each index once in the results, and the
    # counter the chunks added to is exactly the total.
    assert sorted(r["index"] for r in data["results"]) == list(range(200))
    assert sorted(r["params"]["n"] for r in data["results"]) == list(range(200))
    assert data["progress"] == {"done": 200, "total": 200}
    # One terminal write of the sweep, every chunk finished, nothing left behind.
    assert redis_client.llen(keys.done("chaos-sweep")) == 1
    for n in range(25):
        chunk = get_task_result(redis_client, chunk_id("chaos-sweep", n))
        assert chunk is not None and chunk["status"] == "completed"
    assert not redis_client.exists(keys.sweep("chaos-sweep"), keys.sweep_chunks("chaos-sweep"))
    wait_until(lambda: redis_client.llen("strategy_queue") == 0, timeout_s=30)
    reruns = sum(1 for line in outputs if "chaos-sweep/chunk/" in line and "attempt 2" in line)
    with capsys.disabled():
        print(f"\nsweep chaos: {kills} kill -9s, {reruns} chunk runs repeated after a kill")
    assert kills >= 2
