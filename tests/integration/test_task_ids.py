"""One rule for reused task ids.

The rule: a task id names one task while its record is kept. The producer API
refuses an id that has a record (queued, running, or finished within the
result TTL); a raw LPUSH of a message whose id is running elsewhere or has
finished is not run, leaves the other task's record alone, and goes to the
dead-letter list with an error that says so.
"""

from __future__ import annotations

import json

import orjson
import pytest
import redis

from strategyq import add_backtest_task, add_screening_task, get_task_result
from strategyq.queue import keys
from strategyq.settings import Settings
from tests.integration.conftest import Burst, SpawnWorker, wait_until

TRIVIAL = "def trivial(df):\n    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"


def spin(seconds: float) -> str:
    return (
        "import datetime\n"
        "def spin(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return []\n"
    )


def message(task_id: str, code: str = TRIVIAL) -> str:
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


def dead_letters(client: redis.Redis) -> list[dict[str, object]]:
    return [orjson.loads(e) for e in client.lrange(keys.DEAD_LETTER, 0, -1)]


def test_the_producer_refuses_an_id_that_is_queued(redis_client: redis.Redis) -> None:
    from strategyq.errors import TaskIdInUse

    add_backtest_task(redis_client, "same", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    with pytest.raises(TaskIdInUse, match=r"'same' is already in use \(queued\)"):
        add_screening_task(redis_client, "same", TRIVIAL, ["AAPL"], 5)
    assert redis_client.llen("strategy_queue") == 1


def test_the_producer_refuses_an_id_that_finished_and_keeps_its_result(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    from strategyq.errors import TaskIdInUse

    add_backtest_task(redis_client, "done-id", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    burst(settings)
    before = redis_client.get(keys.result("done-id"))
    assert json.loads(before)["status"] == "completed"
    with pytest.raises(TaskIdInUse, match=r"\(completed\).*new UUID"):
        add_backtest_task(redis_client, "done-id", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    assert redis_client.get(keys.result("done-id")) == before
    assert redis_client.llen("strategy_queue") == 0


def test_a_raw_duplicate_of_a_finished_task_is_dead_lettered_and_the_result_kept(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    redis_client.lpush("strategy_queue", message("raw-dup"))
    burst(settings)
    before = redis_client.get(keys.result("raw-dup"))
    redis_client.lpush("strategy_queue", message("raw-dup"))
    worker = burst(settings)
    assert redis_client.get(keys.result("raw-dup")) == before
    assert worker.tally.duplicates == 1
    (entry,) = dead_letters(redis_client)
    assert entry["reason"] == "duplicate"
    assert entry["duplicate_of"] == "raw-dup"
    assert "already in use by another task (completed)" in str(entry["error"])
    # Not retried by `strategyq dlq retry`: it would overwrite the first task's result.
    assert "task_id" not in entry
    assert redis_client.llen(keys.processing(worker.worker_id)) == 0


@pytest.mark.slow
def test_a_raw_duplicate_of_a_running_task_is_not_run(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    first = spawn_worker("dup-a")
    second = spawn_worker("dup-b")
    first.wait_for_log("started")
    second.wait_for_log("started")
    redis_client.lpush("strategy_queue", message("live-dup", spin(3.0)))
    wait_until(
        lambda: (get_task_result(redis_client, "live-dup") or {}).get("status") == "running",
        timeout_s=60,
    )
    redis_client.lpush("strategy_queue", message("live-dup", spin(3.0)))
    wait_until(lambda: dead_letters(redis_client), timeout_s=60)
    wait_until(
        lambda: (get_task_result(redis_client, "live-dup") or {}).get("status") == "completed",
        timeout_s=60,
    )
    (entry,) = dead_letters(redis_client)
    assert entry["reason"] == "duplicate" and entry["status"] == "running"
    assert redis_client.llen(keys.done("live-dup")) == 1

    def both_outputs() -> str:
        return "".join(first.output) + "".join(second.output)

    # A worker logs a task's end just after its terminal write, so a busy machine may
    # show the result before the line: wait for the line, then count the runs.
    wait_until(lambda: "task live-dup finished" in both_outputs(), timeout_s=30)
    output = both_outputs()
    assert output.count("task live-dup finished: completed") == 1
    assert "lost its lease" not in output


def test_a_task_cancelled_while_queued_is_still_skipped_once(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    from strategyq import cancel_task

    add_backtest_task(redis_client, "c-q", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    assert cancel_task(redis_client, "c-q") == "queued"
    worker = burst(settings)
    assert worker.tally.skipped == 1 and worker.tally.duplicates == 0
    assert redis_client.llen(keys.DEAD_LETTER) == 0
    assert get_task_result(redis_client, "c-q")["status"] == "cancelled"  # type: ignore[index]
