"""The queue core's own promises: answers for every named task, the recent index, settings."""

from __future__ import annotations

import json

import redis

from strategyq import add_backtest_task, cancel_task, get_task_result, recent_tasks
from strategyq.queue import keys
from strategyq.settings import Settings
from tests.integration.conftest import Burst

TRIVIAL = "def trivial(df):\n    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"


def go_style(task: dict[str, object]) -> str:
    """What Go's json.Marshal of a map writes: sorted keys, so ``args`` before ``task_id``."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"))


def backtest(task_id: str, code: str = TRIVIAL, **args: object) -> dict[str, object]:
    return {
        "task_id": task_id,
        "task_type": "backtest",
        "args": {
            "strategy_code": code,
            "symbols": ["AAPL"],
            "start_date": "2011-01-01T00:00:00Z",
            "end_date": "2011-06-30T00:00:00Z",
            **args,
        },
    }


def test_oversized_message_from_go_gets_an_answer(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    padding = "x" * (8 * 1024 * 1024)  # an 8 MiB arg sorted before task_id
    message = go_style(backtest("go-huge", aaa_padding=padding))
    assert (
        message.index('"args"') < message.index('"task_id"')
        and message.index('"task_id"') > 8 * 1024 * 1024
    )
    redis_client.lpush("strategy_queue", message)
    burst(settings)
    result = get_task_result(redis_client, "go-huge")
    assert result is not None and result["status"] == "error", result
    assert result["data"]["error_type"] == "validation"
    assert "STRATEGYQ_MAX_TASK_BYTES" in result["data"]["error"]
    assert redis_client.llen(keys.DEAD_LETTER) == 0


def test_message_above_the_hard_cap_is_dead_lettered_with_the_reason(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    message = go_style(backtest("too-huge", aaa_padding="x" * (3 * 1024 * 1024)))
    redis_client.lpush("strategy_queue", message)
    worker = burst(settings, max_message_bytes=2 * 1024 * 1024)
    assert worker.tally.dead_lettered == 1
    (entry,) = [json.loads(e) for e in redis_client.lrange(keys.DEAD_LETTER, 0, -1)]
    assert entry["reason"] == "malformed"
    assert "hard cap" in entry["error"] and "STRATEGYQ_MAX_MESSAGE_BYTES" in entry["error"]
    assert redis_client.llen(keys.processing(worker.worker_id)) == 0


def test_recent_tasks_lists_every_terminal_result_newest_first(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    for task_id in ("r-1", "r-2", "r-3"):
        add_backtest_task(redis_client, task_id, TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    assert cancel_task(redis_client, "r-3") == "queued"  # terminal at once: indexed at once
    assert [e.task_id for e in recent_tasks(redis_client)] == ["r-3"]
    redis_client.lpush("strategy_queue", go_style(backtest("r-bad", code="")))
    burst(settings)
    entries = recent_tasks(redis_client, with_results=True)
    assert {e.task_id for e in entries} == {"r-1", "r-2", "r-3", "r-bad"}
    assert [e.finished_at_ms for e in entries] == sorted(
        (e.finished_at_ms for e in entries), reverse=True
    )
    statuses = {e.task_id: (e.result or {}).get("status") for e in entries}
    assert statuses == {"r-1": "completed", "r-2": "completed", "r-3": "cancelled",
                        "r-bad": "error"}  # fmt: skip
    # Paging: everything that ended before the newest entry.
    older = recent_tasks(redis_client, before_ms=entries[0].finished_at_ms)
    assert entries[0].task_id not in {e.task_id for e in older}
    assert recent_tasks(redis_client, limit=2)[0].task_id == entries[0].task_id
    assert redis_client.ttl(keys.RECENT) > 0


def test_recent_task_index_is_trimmed_to_its_cap(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    for i in range(5):
        add_backtest_task(redis_client, f"cap-{i}", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    burst(settings, recent_max=3)
    assert redis_client.zcard(keys.RECENT) == 3
    assert len(recent_tasks(redis_client, limit=10)) == 3


def test_executor_validates_with_the_workers_limits(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_backtest_task(redis_client, "two-symbols", TRIVIAL, ["AAPL", "MSFT"], "2011-01-01",
                      "2011-06-30")  # fmt: skip
    burst(settings, max_symbols=1)
    result = get_task_result(redis_client, "two-symbols")
    assert result is not None and result["status"] == "error", result
    assert "the limit is 1" in result["data"]["error"]


def test_executor_runs_with_the_workers_sandbox_limits(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    from dataclasses import replace

    spin = "def spin(df):\n    while True:\n        pass\n"
    add_backtest_task(redis_client, "spin", spin, ["AAPL"], "2011-01-01", "2011-06-30")
    burst(settings, sandbox=replace(settings.sandbox, time_limit_s=1.0))
    result = get_task_result(redis_client, "spin")
    assert result is not None and result["data"]["error_type"] == "timeout", result


def test_executor_caps_instances_with_the_workers_setting(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    many = (
        "def many(df):\n"
        "    return [{'ticker': 'AAPL', 'date': str(d)} for d in df['date'].head(30)]\n"
    )
    add_backtest_task(redis_client, "many", many, ["AAPL"], "2011-01-01", "2011-06-30")
    burst(settings, max_instances=5)
    result = get_task_result(redis_client, "many")
    assert result is not None and result["status"] == "completed", result
    assert len(result["data"]["instances"]) <= 5


def test_executor_caps_the_stored_result_with_the_workers_setting(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    wide = (
        "def wide(df):\n"
        "    return [{'ticker': 'AAPL', 'date': str(d), 'note': 'x' * 500}\n"
        "            for d in df['date']]\n"
    )
    add_backtest_task(redis_client, "wide", wide, ["AAPL"], "2011-01-01", "2011-12-31")
    burst(settings, max_result_bytes=64 * 1024)
    raw = redis_client.get("task_result:wide")
    assert raw is not None and len(raw) < 80 * 1024
    result = json.loads(raw)
    assert result["status"] == "completed", result
    assert result["data"]["truncated"]["instances"]["original"] > len(result["data"]["instances"])
