"""The seed, end to end: raw LPUSHed tasks, the producer API, malformed input, results."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from strategyq import (
    add_backtest_task,
    add_screening_task,
    cancel_task,
    get_task_result,
    wait_for_result,
)
from strategyq.check import StrategyRejected
from strategyq.errors import TaskValidationError
from strategyq.examples import source
from strategyq.settings import Settings
from tests.integration.conftest import KeptExecutor, run_burst, wait_until

GAP_UP = source("gap_up")
SCREEN = source("momentum_screen")


@pytest.fixture(scope="module")
def kept(module_worker_env: dict[str, str]) -> Iterator[KeptExecutor]:
    """The real executor chain, one for the module's burst workers that use the default
    settings (a worker keeps its executors across tasks the same way)."""
    executor = KeptExecutor(Settings.from_env(module_worker_env))
    yield executor
    executor.close()


def strict_json(raw: str) -> Any:
    """Parse JSON refusing NaN/Infinity, as Go's encoding/json does."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(raw, parse_constant=refuse)


def go_style(task: dict[str, Any]) -> str:
    """What Go's json.Marshal of a map writes: sorted keys, no spaces."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"))


def test_seed_json_pushed_raw_like_the_go_backend(
    redis_client: redis.Redis, settings: Settings, kept: KeptExecutor
) -> None:
    backtest = {
        "task_id": "go-bt-1",
        "task_type": "backtest",
        "args": {
            "strategy_code": GAP_UP,
            "symbols": ["AAPL", "MSFT", "GOOG"],
            "start_date": "2010-01-01T00:00:00Z",
            "end_date": "2012-12-31T23:59:59Z",
        },
    }
    screening = {
        "task_id": "go-sc-1",
        "task_type": "screening",
        "args": {"strategy_code": SCREEN, "universe": ["AAPL", "MSFT", "GOOG", "IBM"], "limit": 10},
        "extra_field_from_a_newer_producer": {"ignored": True},
    }
    redis_client.lpush("strategy_queue", go_style(backtest))
    redis_client.lpush("strategy_queue", go_style(screening))
    run_burst(settings, executor_factory=kept)

    raw = redis_client.get("task_result:go-bt-1")
    assert raw is not None
    result = strict_json(raw)
    assert set(result) == {"status", "data", "updated_at"}
    assert result["status"] == "completed", result
    assert result["updated_at"].endswith("Z")
    data = result["data"]
    assert data["success"] is True
    assert data["execution_mode"] == "backtest"
    assert isinstance(data["instances"], list) and data["instances"]
    first = data["instances"][0]
    assert set(first) >= {"ticker", "date", "signal", "gap_percent", "message"}
    assert len(first["date"]) == 10 and first["date"][4] == "-"
    summary = data["summary"]
    for name, kind in {
        "total_instances": int,
        "positive_signals": int,
        "date_range": list,
        "symbols_processed": int,
        "data_shape": list,
    }.items():
        assert isinstance(summary[name], kind), name
    assert summary["date_range"] == ["2010-01-01T00:00:00", "2012-12-31T23:59:59"]
    assert summary["symbols_processed"] == 3
    metrics = data["performance_metrics"]
    for name in ("total_return", "win_rate", "avg_return"):
        assert isinstance(metrics[name], int | float), name
    assert isinstance(data["execution_time_ms"], int | float)
    assert isinstance(data["execution_time_seconds"], int | float)
    assert data["worker_id"] == settings.worker_id
    assert data["completed_at"].endswith("Z")
    assert redis_client.ttl("task_result:go-bt-1") > settings.result_ttl_s - 60

    result = strict_json(redis_client.get("task_result:go-sc-1") or "")
    assert result["status"] == "completed", result
    data = result["data"]
    assert data["execution_mode"] == "screening"
    assert data["success"] is True
    assert data["universe_size"] == 4
    assert data["results_returned"] == len(data["ranked_results"])
    for row in data["ranked_results"]:
        assert {"ticker", "score", "signal", "message"} <= set(row)
    assert isinstance(data["execution_time_seconds"], int | float)
    assert isinstance(data["worker_id"], str)


@pytest.mark.parametrize("decode", [True, False], ids=["decode_responses", "bytes"])
def test_python_api_round_trip(
    redis_url: str, settings: Settings, kept: KeptExecutor, decode: bool
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=decode)
    client.flushdb()
    add_backtest_task(
        redis_client=client,
        task_id="py-bt",
        strategy_code=GAP_UP,
        symbols=["AAPL"],
        start_date="2011-01-01",
        end_date="2011-12-31T23:59:59+00:00",
    )
    add_screening_task(
        redis_client=client, task_id="py-sc", strategy_code=SCREEN, universe=["AAPL"], limit=3
    )
    queued = get_task_result(client, "py-bt")
    assert queued is not None and queued["status"] == "queued"
    run_burst(settings, executor_factory=kept)
    for task_id in ("py-bt", "py-sc"):
        result = wait_for_result(client, task_id, timeout_s=5)
        assert result is not None and result["status"] == "completed", result
    assert get_task_result(client, "no-such-task") is None


def test_producer_refuses_invalid_tasks(redis_client: redis.Redis) -> None:
    cases: list[dict[str, Any]] = [
        {"symbols": [], "start_date": "2020-01-01", "end_date": "2020-02-01"},
        {"symbols": ["AAPL"], "start_date": "2020-02-01", "end_date": "2020-01-01"},
        {"symbols": ["AAPL"], "start_date": "yesterday", "end_date": "2020-01-01"},
    ]
    for args in cases:
        with pytest.raises(TaskValidationError, match="task not queued"):
            add_backtest_task(redis_client, "bad", GAP_UP, **args)
    dates = {"start_date": "2020-01-01", "end_date": "2020-02-01"}
    for extra, needle in (
        ({"hold_days": -5}, "hold_days=-5 is out of range; use 1 to 10000"),
        ({"entry": "bogus"}, "entry='bogus' is not allowed; use one of next_open, close"),
    ):
        with pytest.raises(TaskValidationError, match="task not queued") as info:
            add_backtest_task(redis_client, "bad", GAP_UP, ["AAPL"], **dates, **extra)
        assert needle in str(info.value)
    with pytest.raises(TaskValidationError, match="limit"):
        add_screening_task(redis_client, "bad", GAP_UP, ["AAPL"], limit=0)
    assert redis_client.llen("strategy_queue") == 0
    assert redis_client.get("task_result:bad") is None


MALFORMED: list[tuple[str, str, str | None, str]] = [
    # (id, raw message, task_id whose result says error | None for dead letter, expected text)
    ("not-json", "this is not json", None, "not valid JSON"),
    ("json-array", "[1, 2, 3]", None, "JSON object"),
    ("no-task-id", '{"task_type": "backtest", "args": {}}', None, "task_id"),
    ("empty-task-id", '{"task_id": "", "task_type": "backtest", "args": {}}', None, "task_id"),
    ("unknown-type", '{"task_id": "m1", "task_type": "optimise", "args": {}}', "m1", "task_type"),
    ("args-not-object", '{"task_id": "m2", "task_type": "backtest", "args": [1]}', "m2", "args"),
    (
        "missing-code",
        '{"task_id": "m3", "task_type": "backtest", "args": {"symbols": ["AAPL"], '
        '"start_date": "2010-01-01", "end_date": "2011-01-01"}}',
        "m3",
        "strategy_code",
    ),
    (
        "symbols-not-list",
        '{"task_id": "m4", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": 5, "start_date": "2010-01-01", "end_date": "2011-01-01"}}',
        "m4",
        "symbols",
    ),
    (
        "bad-date",
        '{"task_id": "m5", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": ["AAPL"], "start_date": "01/02/2010", "end_date": "2011-01-01"}}',
        "m5",
        "start_date",
    ),
    (
        "start-after-end",
        '{"task_id": "m6", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": ["AAPL"], "start_date": "2012-01-01", "end_date": "2011-01-01"}}',
        "m6",
        "after",
    ),
    (
        "empty-symbols",
        '{"task_id": "m7", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": [], "start_date": "2010-01-01", "end_date": "2011-01-01"}}',
        "m7",
        "non-empty list",
    ),
    (
        "limit-zero",
        '{"task_id": "m8", "task_type": "screening", "args": {"strategy_code": "def s(df): '
        'return []", "universe": ["AAPL"], "limit": 0}}',
        "m8",
        "limit",
    ),
    (
        "limit-huge",
        '{"task_id": "m9", "task_type": "screening", "args": {"strategy_code": "def s(df): '
        'return []", "universe": ["AAPL"], "limit": 100000000}}',
        "m9",
        "limit",
    ),
    (
        "limit-string",
        '{"task_id": "m10", "task_type": "screening", "args": {"strategy_code": "def s(df): '
        'return []", "universe": ["AAPL"], "limit": "10"}}',
        "m10",
        "limit",
    ),
    (
        "hold-days-negative",
        '{"task_id": "m11", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": ["AAPL"], "start_date": "2010-01-01", "end_date": "2011-01-01", '
        '"hold_days": -5}}',
        "m11",
        "args.hold_days=-5 is out of range; use 1 to 10000",
    ),
    (
        "entry-bogus",
        '{"task_id": "m12", "task_type": "backtest", "args": {"strategy_code": "def s(df): '
        'return []", "symbols": ["AAPL"], "start_date": "2010-01-01", "end_date": "2011-01-01", '
        '"entry": "bogus"}}',
        "m12",
        "args.entry='bogus' is not allowed; use one of next_open, close",
    ),
]


def test_malformed_messages_get_an_error_result_or_a_dead_letter(
    redis_client: redis.Redis, settings: Settings, kept: KeptExecutor
) -> None:
    for _, raw, _, _ in MALFORMED:
        redis_client.lpush("strategy_queue", raw)
    oversized = json.dumps(
        {"task_id": "m-big", "task_type": "backtest", "args": {"strategy_code": "#" * 2_000_000}}
    )
    redis_client.lpush("strategy_queue", oversized)
    add_backtest_task(redis_client, "good-after", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    run_burst(settings, executor_factory=kept)

    dead = [json.loads(e) for e in redis_client.lrange("strategyq:dead_letter", 0, -1)]
    for name, raw, task_id, text in MALFORMED:
        if task_id is None:
            entries = [e for e in dead if e["raw"] == raw]
            assert len(entries) == 1, name
            assert text in entries[0]["error"], (name, entries[0])
        else:
            result = get_task_result(redis_client, task_id)
            assert result is not None, name
            assert result["status"] == "error", name
            assert result["data"]["error_type"] == "validation", name
            assert text in result["data"]["error"], (name, result)
    big = get_task_result(redis_client, "m-big")
    assert big is not None and big["status"] == "error" and "bytes" in big["data"]["error"]
    good = get_task_result(redis_client, "good-after")
    assert good is not None and good["status"] == "completed"
    # Nothing was left behind in the worker's processing list.
    assert redis_client.keys("strategyq:processing:*") == []


def test_strategy_errors_are_results_not_crashes(
    redis_client: redis.Redis, settings: Settings, kept: KeptExecutor
) -> None:
    refused = "import os\ndef s(df):\n    return []\n"
    # The producer API refuses it before queueing; a producer of another language (a raw
    # LPUSH, as the seed's clients do) still gets the worker's answer.
    with pytest.raises(StrategyRejected, match="module 'os' is refused"):
        add_backtest_task(redis_client, "policy", refused, ["AAPL"], "2011-01-01", "2011-02-01")
    raw = {"task_id": "policy", "task_type": "backtest",
           "args": {"strategy_code": refused, "symbols": ["AAPL"],
                    "start_date": "2011-01-01T00:00:00",
                    "end_date": "2011-02-01T00:00:00"}}  # fmt: skip
    redis_client.lpush("strategy_queue", json.dumps(raw))
    add_backtest_task(
        redis_client,
        "raises",
        "def s(df):\n    return 1 / 0\n",
        ["AAPL"],
        "2011-01-01",
        "2011-02-01",
    )
    add_backtest_task(redis_client, "nodata", GAP_UP, ["ZZZZ"], "2011-01-01", "2011-02-01")
    run_burst(settings, executor_factory=kept)
    policy = get_task_result(redis_client, "policy")
    assert policy is not None and policy["status"] == "error"
    assert policy["data"]["error"].startswith("Security validation failed: ")
    assert policy["data"]["error_type"] == "policy"
    raises = get_task_result(redis_client, "raises")
    assert raises is not None and raises["data"]["error_type"] == "strategy_error"
    assert "ZeroDivisionError" in raises["data"]["error"]
    nodata = get_task_result(redis_client, "nodata")
    assert nodata is not None and nodata["data"]["error_type"] == "data"
    assert "ZZZZ" in nodata["data"]["error"]


def test_cancel_before_start_and_while_running(
    redis_client: redis.Redis, settings: Settings
) -> None:
    add_backtest_task(redis_client, "early", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    assert cancel_task(redis_client, "early") == "queued"
    assert get_task_result(redis_client, "early")["status"] == "cancelled"  # type: ignore[index]

    slow = (
        "def slow(df):\n    total = 0\n    for i in range(10**10):\n"
        "        total += i\n    return []\n"
    )
    add_backtest_task(redis_client, "slow", slow, ["AAPL"], "2011-01-01", "2011-12-31")
    worker = threading.Thread(target=run_burst, args=(settings,))
    worker.start()
    wait_until(
        lambda: (
            (get_task_result(redis_client, "slow") or {}).get("data", {}).get("stage")
            == "running_strategy"
        )
    )
    t0 = time.monotonic()
    assert cancel_task(redis_client, "slow") == "running"
    result = wait_for_result(redis_client, "slow", timeout_s=10)
    assert result is not None and result["status"] == "cancelled"
    assert time.monotonic() - t0 < 5
    worker.join(30)
    assert not worker.is_alive()
    assert cancel_task(redis_client, "slow") == "cancelled"


def test_wait_for_result_times_out_with_none(redis_client: redis.Redis) -> None:
    add_backtest_task(redis_client, "never-run", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    t0 = time.monotonic()
    assert wait_for_result(redis_client, "never-run", timeout_s=0.3) is None
    assert time.monotonic() - t0 < 3


def test_large_results_are_truncated_to_the_byte_cap(
    redis_client: redis.Redis, settings: Settings
) -> None:
    code = (
        "def many(df):\n"
        "    return [{'ticker': t, 'date': str(d), 'signal': False, 'note': 'x' * 200}\n"
        "            for t, d in zip(df['ticker'], df['date'])]\n"
    )
    add_backtest_task(redis_client, "big", code, ["AAPL", "MSFT"], "2005-01-01", "2012-12-31")
    run_burst(settings, max_result_bytes=256 * 1024)
    raw = redis_client.get("task_result:big")
    assert raw is not None and len(raw) <= 256 * 1024 + 1024
    data = json.loads(raw)["data"]
    assert data["summary"]["total_instances"] > len(data["instances"])
    assert data["summary"]["instances_truncated"] is True


def test_producer_survives_an_emptied_script_cache(redis_client: redis.Redis) -> None:
    add_backtest_task(redis_client, "before", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    redis_client.script_flush()  # as after a server restart
    add_backtest_task(redis_client, "after", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    assert redis_client.llen("strategy_queue") == 2
    for task_id in ("before", "after"):
        assert (get_task_result(redis_client, task_id) or {}).get("status") == "queued"
    assert redis_client.ttl("task_result:after") > 86000


def test_several_waiters_on_one_task_all_wake(
    redis_url: str, redis_client: redis.Redis, settings: Settings, kept: KeptExecutor
) -> None:
    add_backtest_task(redis_client, "shared", GAP_UP, ["AAPL"], "2011-01-01", "2011-12-31")
    results: list[dict[str, Any] | None] = []

    def wait() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        results.append(wait_for_result(client, "shared", timeout_s=30))
        client.close()

    waiters = [threading.Thread(target=wait) for _ in range(3)]
    for w in waiters:
        w.start()
    run_burst(settings, executor_factory=kept)
    for w in waiters:
        w.join(30)
    assert [r["status"] if r else None for r in results] == ["completed"] * 3
