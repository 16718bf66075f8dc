"""Recovery with the default liveness settings, and a worker restarted in its own pod."""

from __future__ import annotations

import json
import time

import pytest
import redis

from strategyq import get_task_result
from strategyq.queue import keys
from tests.integration.conftest import SpawnWorker, wait_until


def spin(seconds: float) -> str:
    return (
        "import datetime\n"
        "def spin(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return []\n"
    )


def message(task_id: str, code: str) -> str:
    return json.dumps(
        {
            "task_id": task_id,
            "task_type": "backtest",
            "args": {
                "strategy_code": code,
                "symbols": ["AAPL"],
                "start_date": "2011-01-01",
                "end_date": "2011-06-30",
            },
        }
    )


DEFAULT_LIVENESS = {
    # The suite's workers run with a 3 s heartbeat timeout; an empty value means the
    # shipped default (heartbeat every 2 s, timeout 10 s, reaper every 3 s).
    "STRATEGYQ_HEARTBEAT_TIMEOUT": "",
    "STRATEGYQ_HEARTBEAT_INTERVAL": "",
    "STRATEGYQ_REAPER_INTERVAL": "",
}


@pytest.mark.slow
def test_a_kill_9_worker_task_completes_elsewhere_within_15_s_with_the_defaults(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    # The survivor is up first, so its start-up is outside the measured time; the
    # crashing worker serves a queue of its own, so it is the one that takes the task
    # (the reaper puts a dead worker's tasks on the reaper's queue).
    survivor = spawn_worker("dflt-2", env=DEFAULT_LIVENESS)
    survivor.wait_for_log("started")
    crashing = spawn_worker(
        "dflt-1",
        env={
            **DEFAULT_LIVENESS,
            "STRATEGYQ_QUEUE": "crash_queue",
            "STRATEGYQ_FAULT_CRASH_AT": "rec-1:running_strategy",
        },
    )
    crashing.wait_for_log("started")
    redis_client.lpush("crash_queue", message("rec-1", spin(0.2)))
    assert crashing.wait(60) != 0
    killed_at = time.monotonic()
    wait_until(
        lambda: (get_task_result(redis_client, "rec-1") or {}).get("status") == "completed",
        timeout_s=60,
    )
    # Heartbeat timeout 10 s + reaper interval 3 s (+ the 0.2 s task).
    assert time.monotonic() - killed_at < 15
    survivor.wait_for_log("worker dflt-1 is gone")


@pytest.mark.slow
def test_a_worker_restarted_in_its_pod_requeues_what_it_left_at_once(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    """Heartbeat TTL 30 s here: recovery before it expires can only be the restart's."""
    slow_env = {"STRATEGYQ_HEARTBEAT_TIMEOUT": "30", "STRATEGYQ_HEARTBEAT_INTERVAL": "1"}
    crashing = spawn_worker(
        "pod-1", env={**slow_env, "STRATEGYQ_FAULT_CRASH_AT": "inc-1:running_strategy"}
    )
    crashing.wait_for_log("started")
    redis_client.lpush("strategy_queue", message("inc-1", spin(0.5)))
    assert crashing.wait(60) != 0
    killed_at = time.monotonic()
    assert redis_client.exists(keys.heartbeat("pod-1"))  # still "alive" for up to 30 s
    restarted = spawn_worker("pod-1", env=slow_env)
    restarted.wait_for_log("its previous process on this host")
    wait_until(
        lambda: (get_task_result(redis_client, "inc-1") or {}).get("status") == "completed",
        timeout_s=60,
    )
    assert time.monotonic() - killed_at < 30
    assert "using pod-1-" not in "".join(restarted.output)  # it kept its id
