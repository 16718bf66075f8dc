"""A task's submission time travels from its queued record through every run to its result
(``data.submitted_at``), so the wait in the queue is known: real server, real worker."""

from __future__ import annotations

from datetime import datetime

import orjson
import redis

from strategyq import add_backtest_task, add_sweep_task
from strategyq.examples import source
from strategyq.queue import TaskQueue, keys
from strategyq.settings import Settings
from tests.integration.conftest import Burst

SMA = source("sma_cross")


def _data(client: redis.Redis, task_id: str) -> dict[str, object]:
    record = orjson.loads(client.get(keys.result(task_id)))
    data = record["data"]
    assert isinstance(data, dict)
    return data


def _moment(text: object) -> datetime:
    assert isinstance(text, str)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_finished_run_keeps_when_it_was_submitted(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_backtest_task(redis_client, "waited", SMA, ["AAPL"], "2010-01-01", "2010-12-31")
    grid = {"fast": [5, 10], "slow": [50]}
    add_sweep_task(redis_client, "swept", source("sma_params"), ["AAPL"], "2008-01-01",
                   "2010-12-31", grid)  # fmt: skip
    queued = {t: _data(redis_client, t)["queued_at"] for t in ("waited", "swept")}
    burst(settings)
    for task_id, queued_at in queued.items():
        data = _data(redis_client, task_id)
        assert data["submitted_at"] == queued_at, task_id
        assert _moment(data["submitted_at"]) <= _moment(data["started_at"])
        assert data["task_args"]  # the other fields a finished record keeps are still there


def test_the_submission_time_survives_requeues_and_lost_runs(
    redis_client: redis.Redis,
) -> None:
    tasks = TaskQueue(redis_client)
    add_backtest_task(redis_client, "moved", SMA, ["AAPL"], "2010-01-01", "2010-12-31")
    submitted = _data(redis_client, "moved")["queued_at"]
    taken = tasks.take("w1", None)
    assert taken is not None
    claim = tasks.claim("w1", "moved", "backtest", "2030-01-01T00:00:00Z")
    assert claim.submitted_at == submitted
    running = _data(redis_client, "moved")
    assert running["submitted_at"] == submitted and running["stage"] == "starting"
    # A shutdown hands the run back: the queued record keeps the time.
    assert tasks.requeue("w1", "moved", claim.token, taken.raw, submitted_at=claim.submitted_at)
    queued = _data(redis_client, "moved")
    assert queued["submitted_at"] == submitted and "requeued_at" in queued
    assert tasks.take("w2", None) is not None
    again = tasks.claim("w2", "moved", "backtest", "2030-01-01T00:01:00Z")
    assert again.submitted_at == submitted
    # A lost run (its worker died) goes back to the queue with its running record left as it
    # was: the next claim reads the time from that record.
    redis_client.lmove(keys.processing("w2"), "strategy_queue", "LEFT", "RIGHT")
    redis_client.delete(keys.token("moved"))
    assert tasks.take("w3", None) is not None
    third = tasks.claim("w3", "moved", "backtest", "2030-01-01T00:02:00Z")
    assert third.submitted_at == submitted
    assert _data(redis_client, "moved")["submitted_at"] == submitted


def test_a_bare_lpush_has_no_submission_time_and_odd_records_are_ignored(
    redis_client: redis.Redis,
) -> None:
    tasks = TaskQueue(redis_client)
    message = {"task_id": "bare", "task_type": "backtest", "args": {}}
    redis_client.lpush("strategy_queue", orjson.dumps(message))  # a Go producer's push
    assert tasks.take("w1", None) is not None
    claim = tasks.claim("w1", "bare", "backtest", "2030-01-01T00:00:00Z")
    assert claim.submitted_at is None
    assert "submitted_at" not in _data(redis_client, "bare")
    # A record another program wrote, with a time that is not text or is far too long.
    for task_id, at in (("odd-1", 12345), ("odd-2", "x" * 500), ("odd-3", 'a/"b\\c')):
        record = {"status": "queued", "data": {"task_id": task_id, "queued_at": at}}
        redis_client.set(keys.result(task_id), orjson.dumps(record))
        got = tasks.claim("w1", task_id, "backtest", "2030-01-01T00:00:00Z")
        expected = at if isinstance(at, str) and len(at) <= 64 else None
        assert got.submitted_at == expected
        assert _data(redis_client, task_id).get("submitted_at") == expected
