"""Tenants, lanes and quotas on a real server, with real (in-process, burst) workers.

The scheduling tests take messages with :meth:`TaskQueue.take` (the worker's own take)
and look at the order; the quota and compatibility tests run a worker to the end.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import redis

from strategyq import add_backtest_task, add_screening_task, add_sweep_task, get_task_result
from strategyq.errors import TaskValidationError, TenantQuotaExceeded
from strategyq.examples import source
from strategyq.queue import TaskQueue, keys
from strategyq.queue.tenants import Tenancy
from strategyq.queue.view import QueueView
from strategyq.settings import Settings
from tests.integration.conftest import Burst

TRIVIAL = "def trivial(df):\n    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"
SCREEN = "def screen(df):\n    return [{'ticker': 'AAPL', 'score': 1.0}]\n"


def raw_backtest(task_id: str, **top: Any) -> str:
    """A backtest as the seed's Go backend writes it (sorted keys, RFC 3339 dates)."""
    message = {
        "task_id": task_id,
        "task_type": "backtest",
        "args": {
            "strategy_code": TRIVIAL,
            "symbols": ["AAPL"],
            "start_date": "2011-01-01T00:00:00Z",
            "end_date": "2011-06-30T00:00:00Z",
        },
        **top,
    }
    return json.dumps(message, sort_keys=True, separators=(",", ":"))


def raw_screen(task_id: str, **top: Any) -> str:
    message = {
        "task_id": task_id,
        "task_type": "screening",
        "args": {"strategy_code": SCREEN, "universe": ["AAPL"], "limit": 5},
        **top,
    }
    return json.dumps(message, sort_keys=True, separators=(",", ":"))


def drain(q: TaskQueue, n: int, worker_id: str = "w1") -> list[dict[str, Any]]:
    """Take ``n`` messages (acknowledging each at once); their messages, in take order."""
    out = []
    for _ in range(n):
        taken = q.take(worker_id, None)
        assert taken is not None and not taken.refusal, taken
        out.append({**json.loads(taken.raw), "_lane": taken.lane, "_tenant": taken.tenant})
        q.ack(worker_id, taken.raw)
    return out


def test_a_tenant_with_one_task_is_served_next_to_one_with_a_thousand(
    redis_client: redis.Redis,
) -> None:
    q = TaskQueue(redis_client)
    pipe = redis_client.pipeline()
    for i in range(1000):
        pipe.lpush("strategy_queue", raw_backtest(f"a-{i}", tenant="A"))
    pipe.execute()
    drain(q, 3)  # A's backlog is routed and being served
    redis_client.lpush("strategy_queue", raw_backtest("b-0", tenant="B"))
    redis_client.lpush("strategy_queue", raw_backtest("b-1", tenant="B"))
    order = [m["_tenant"] for m in drain(q, 6)]
    # Round-robin: B's two tasks alternate with A's, never behind the 997 left.
    assert order[:4] in (["A", "B", "A", "B"], ["B", "A", "B", "A"]), order
    assert Counter(order) == {"A": 4, "B": 2}


def test_many_tenants_are_served_in_turn(redis_client: redis.Redis) -> None:
    q = TaskQueue(redis_client)
    for i in range(5):
        for tenant in ("t1", "t2", "t3"):
            redis_client.lpush("strategy_queue", raw_backtest(f"{tenant}-{i}", tenant=tenant))
    taken = drain(q, 15)
    order = [m["_tenant"] for m in taken]
    for at in range(0, 15, 3):
        assert sorted(order[at : at + 3]) == ["t1", "t2", "t3"], order
    # FIFO within a tenant.
    t2 = [m["task_id"] for m in taken if m["_tenant"] == "t2"]
    assert t2 == [f"t2-{i}" for i in range(5)]
    assert q.take("w1", None) is None


def test_interactive_jumps_batch_and_batch_still_progresses_at_its_weight(
    redis_client: redis.Redis,
) -> None:
    q = TaskQueue(redis_client)
    pipe = redis_client.pipeline()
    for i in range(40):
        pipe.lpush("strategy_queue", raw_backtest(f"bt-{i}"))  # batch: a backtest's default
    for i in range(40):
        pipe.lpush("strategy_queue", raw_screen(f"sc-{i}"))  # interactive: a screen's default
    pipe.execute()
    lanes = [m["_lane"] for m in drain(q, 50)]
    # Weights 4 (interactive) and 1 (batch): four of every five, in every window of five.
    for at in range(0, 50, 5):
        assert Counter(lanes[at : at + 5]) == {"interactive": 4, "batch": 1}, lanes
    # When interactive is empty, batch runs alone.
    rest = [m["_lane"] for m in drain(q, 30)]
    assert rest[-20:] == ["batch"] * 20


def test_an_operator_lane_with_its_weight(redis_client: redis.Redis) -> None:
    Tenancy(redis_client).set_lane("urgent", 9)
    q = TaskQueue(redis_client)
    for i in range(10):
        redis_client.lpush("strategy_queue", raw_screen(f"sc-{i}"))
        redis_client.lpush("strategy_queue", raw_screen(f"ur-{i}", priority="urgent"))
    lanes = [m["_lane"] for m in drain(q, 13)]
    assert Counter(lanes) == {"urgent": 9, "interactive": 4}
    lanes_state = {lane.name: lane for lane in QueueView(redis_client).tenancy.lanes()}
    assert lanes_state["urgent"].weight == 9 and lanes_state["urgent"].depth == 1
    assert lanes_state["interactive"].depth == 6


def test_max_in_flight_holds_a_tenant_back_without_refusing_its_tasks(
    redis_client: redis.Redis,
) -> None:
    Tenancy(redis_client).set_quotas("A", max_in_flight=2)
    q = TaskQueue(redis_client)
    for i in range(5):
        redis_client.lpush("strategy_queue", raw_backtest(f"a-{i}", tenant="A"))
    redis_client.lpush("strategy_queue", raw_backtest("b-0", tenant="B"))
    first = [q.take("w1", None) for _ in range(4)]
    got = [t.tenant if t else None for t in first]
    assert got.count("A") == 2 and got.count("B") == 1 and got[-1] is None, got
    state = Tenancy(redis_client).tenant("A")
    assert state.in_flight == 2 and state.queued == 3
    # One of A's runs ends: A may take one more.
    a_run = next(t for t in first if t and t.tenant == "A")
    q.ack("w1", a_run.raw)
    again = q.take("w1", None)
    assert again is not None and again.tenant == "A"


def test_producer_refusals_name_the_quota_and_queue_nothing(redis_client: redis.Redis) -> None:
    Tenancy(redis_client).set_quotas("acme", max_queued=2)
    for i in range(2):
        add_backtest_task(
            redis_client, f"q-{i}", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30", tenant="acme"
        )
    with pytest.raises(TenantQuotaExceeded) as refused:
        add_screening_task(redis_client, "q-2", SCREEN, ["AAPL"], tenant="acme")
    exc = refused.value
    assert (exc.tenant, exc.quota, exc.limit, exc.used) == ("acme", "max_queued", 2, 2)
    assert exc.retry_after_s > 0 and "'acme'" in str(exc) and "max_queued" in str(exc)
    assert get_task_result(redis_client, "q-2") is None
    assert redis_client.llen("strategy_queue") == 2
    # Another tenant is not held back.
    add_screening_task(redis_client, "other-1", SCREEN, ["AAPL"], tenant="other")
    # An unknown lane is refused too.
    with pytest.raises(TaskValidationError, match="not a lane"):
        add_screening_task(redis_client, "q-3", SCREEN, ["AAPL"], priority="nope")
    with pytest.raises(TaskValidationError, match="tenant must be"):
        add_screening_task(redis_client, "q-4", SCREEN, ["AAPL"], tenant="a b")


def test_combinations_per_day_refused_at_the_producer(redis_client: redis.Redis) -> None:
    Tenancy(redis_client).set_quotas("acme", max_combinations=5)
    grid = {"fast": [5, 10, 20], "slow": [50, 100]}
    with pytest.raises(TenantQuotaExceeded) as refused:
        add_sweep_task(
            redis_client,
            "sw-1",
            source("sma_params"),
            ["AAPL"],
            "2011-01-01",
            "2011-12-31",
            grid,
            tenant="acme",
        )
    assert refused.value.quota == "max_combinations" and refused.value.limit == 5
    assert redis_client.llen("strategy_queue") == 0


def test_raw_lpush_over_quota_gets_an_error_result_naming_quota_and_tenant(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    Tenancy(redis_client).set_quotas("acme", max_queued=2)
    for i in range(4):
        redis_client.lpush("strategy_queue", raw_backtest(f"r-{i}", tenant="acme"))
    redis_client.lpush("strategy_queue", raw_backtest("bad-lane", priority="nope"))
    redis_client.lpush("strategy_queue", raw_backtest("bad-tenant", tenant="a b"))
    worker = burst(settings)
    results = {i: get_task_result(redis_client, f"r-{i}") for i in range(4)}
    statuses = Counter(r["status"] for r in results.values() if r)
    assert statuses == {"completed": 2, "error": 2}, results
    for result in results.values():
        assert result is not None
        if result["status"] == "error":
            data = result["data"]
            assert data["error_type"] == "quota_exceeded"
            assert data["quota"] == "max_queued" and data["tenant"] == "acme"
            assert "'acme'" in data["error"] and "max_queued = 2" in data["error"]
    lane = get_task_result(redis_client, "bad-lane")
    assert lane is not None and lane["status"] == "error"
    assert "'nope' is not a lane" in lane["data"]["error"]
    tenant = get_task_result(redis_client, "bad-tenant")
    assert tenant is not None and tenant["status"] == "error"
    assert "tenant must be" in tenant["data"]["error"]
    # Nothing lost, nothing left behind.
    assert redis_client.llen(keys.DEAD_LETTER) == 0
    assert redis_client.llen(keys.processing(worker.worker_id)) == 0
    assert all(
        state.queued == 0 and state.in_flight == 0 for state in Tenancy(redis_client).tenants()
    )


def test_result_bytes_quota_turns_an_oversized_result_into_an_error_and_refuses_more(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    tenancy = Tenancy(redis_client)
    tenancy.set_quotas("acme", max_result_bytes=1)
    add_backtest_task(
        redis_client, "big", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30", tenant="acme"
    )
    burst(settings)
    result = get_task_result(redis_client, "big")
    assert result is not None and result["status"] == "error"
    assert result["data"]["quota"] == "max_result_bytes" and result["data"]["tenant"] == "acme"
    # The error record itself counts: the tenant now has bytes stored, so the next is refused.
    assert tenancy.tenant("acme").result_bytes > 0
    with pytest.raises(TenantQuotaExceeded) as refused:
        add_backtest_task(
            redis_client, "next", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30", tenant="acme"
        )
    assert refused.value.quota == "max_result_bytes" and refused.value.retry_after_s > 0
    # Raised: the tenant's tasks run again.
    tenancy.set_quotas("acme", max_result_bytes=10_000_000)
    add_backtest_task(
        redis_client, "next", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30", tenant="acme"
    )
    burst(settings)
    assert (get_task_result(redis_client, "next") or {}).get("status") == "completed"


def test_raw_sweep_over_its_combinations_gets_an_error_result(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    Tenancy(redis_client).set_quotas("acme", max_combinations=4)
    message = {
        "task_id": "raw-sweep",
        "task_type": "sweep",
        "tenant": "acme",
        "args": {
            "strategy_code": source("sma_params"),
            "symbols": ["AAPL"],
            "start_date": "2011-01-01",
            "end_date": "2011-12-31",
            "param_grid": {"fast": [5, 10, 20], "slow": [50, 100]},
        },
    }
    redis_client.lpush("strategy_queue", json.dumps(message))
    burst(settings)
    result = get_task_result(redis_client, "raw-sweep")
    assert result is not None and result["status"] == "error", result
    assert result["data"]["quota"] == "max_combinations" and result["data"]["tenant"] == "acme"
    assert "this sweep has 6" in result["data"]["error"]


def test_sweep_chunks_inherit_the_sweeps_tenant_and_lane(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    Tenancy(redis_client).set_quotas("acme", max_combinations=100)  # so they are counted
    add_sweep_task(
        redis_client,
        "sw",
        source("sma_params"),
        ["AAPL"],
        "2011-01-01",
        "2011-12-31",
        {"fast": [5, 10], "slow": [50, 100]},
        tenant="acme",
        priority="interactive",
    )
    q = TaskQueue(redis_client)
    burst(settings, sweep_chunk_size=1)
    result = get_task_result(redis_client, "sw")
    assert result is not None and result["status"] == "completed", result
    # Every chunk ran as acme's, in the interactive lane.
    state = Tenancy(redis_client).tenant("acme")
    assert set(state.waits) == {"interactive"} and state.waits["interactive"].samples == 5
    assert Tenancy(redis_client).tenant("acme").combinations_today == 4
    assert q.depth() == 0 and redis_client.llen("strategy_queue") == 0


def test_the_seeds_raw_go_message_runs_unchanged(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    # Byte for byte what the seed's Go backend LPUSHes: json.Marshal of a map.
    seed = (
        '{"args":{"end_date":"2011-12-31T23:59:59Z","start_date":"2011-01-01T00:00:00Z",'
        '"strategy_code":"def my_strategy(df):\\n    return []\\n","symbols":["AAPL"]},'
        '"task_id":"seed-go-1","task_type":"backtest"}'
    )
    redis_client.lpush("strategy_queue", seed)
    add_backtest_task(redis_client, "py-1", TRIVIAL, ["AAPL"], "2011-01-01", "2011-06-30")
    assert TaskQueue(redis_client).depth() == 2
    burst(settings)
    for task_id in ("seed-go-1", "py-1"):
        result = get_task_result(redis_client, task_id)
        assert result is not None and set(result) == {"status", "data", "updated_at"}
        assert result["status"] == "completed", result
        assert "tenant" not in result["data"] and "quota" not in result["data"]
    # Both ran as tenant default, in batch (a backtest's lane), and left no count behind.
    (state,) = Tenancy(redis_client).tenants()
    assert state.name == "default" and state.queued == 0 and state.in_flight == 0
    assert set(state.waits) == {"batch"} and state.waits["batch"].samples == 2
    assert redis_client.llen("strategy_queue") == 0


def test_a_run_whose_claim_a_failover_lost_is_taken_out_of_its_lane(
    redis_client: redis.Redis,
) -> None:
    """The new primary holds the message routed into its lane, but not the claim: the
    run's terminal write ("missing" token) takes it out of the lane, so it runs once."""
    q = TaskQueue(redis_client)
    redis_client.lpush("strategy_queue", raw_backtest("lost-claim", tenant="acme"))
    taken = q.take("w1", None)
    assert taken is not None and not taken.refusal
    claim = q.claim("w1", "lost-claim", "backtest", "2030-01-01T00:00:00Z")
    # What the new primary holds: the message routed into its lane (acme's other run
    # holds its only slot, so the take routes it and delivers nothing), no token.
    assert q.requeue("w1", "lost-claim", claim.token, taken.raw)
    redis_client.delete(keys.token("lost-claim"))
    redis_client.lpush("strategy_queue", raw_backtest("other", tenant="acme"))
    Tenancy(redis_client).set_quotas("acme", max_in_flight=1)
    first = q.take("w2", None)
    assert first is not None and first.raw == taken.raw  # the requeued one goes first
    redis_client.lrem(keys.processing("w2"), 1, first.raw)
    redis_client.hincrby("strategyq:tenant_inflight", "acme", -1)
    redis_client.lpush("strategyq:lane:batch:acme", b"0 " + taken.raw)
    redis_client.hincrby("strategyq:tenant_queued", "acme", 1)
    redis_client.hincrby("strategyq:lane_depth", "batch", 1)
    lane = redis_client.lrange("strategyq:lane:batch:acme", 0, -1)
    assert len(lane) == 2 and lane[0].endswith(taken.raw.decode())
    record = json.dumps({"status": "completed", "data": {"success": True}}).encode()
    verdict = q.finish("w1", "lost-claim", claim.token, record, taken.raw, status="completed")
    assert verdict == "missing"
    assert [e for e in redis_client.lrange("strategyq:lane:batch:acme", 0, -1)
            if e.endswith(taken.raw.decode())] == []  # fmt: skip
    assert redis_client.hget("strategyq:tenant_queued", "acme") == "1"
    assert redis_client.hget("strategyq:lane_depth", "batch") == "1"
    again = q.take("w3", None)
    assert again is not None and json.loads(again.raw)["task_id"] == "other"
    assert q.take("w3", None) is None
