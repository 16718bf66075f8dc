"""Fair share with real worker processes: no starvation behind a big tenant, and kill -9
of workers with several tenants (every task done once, the tenants' counts recovered)."""

from __future__ import annotations

import itertools
import json
import signal
from datetime import datetime

import pytest
import redis

from strategyq import add_screening_task, add_sweep_task, get_task_result, wait_for_result
from strategyq.examples import source
from strategyq.queue import keys
from strategyq.queue.tenants import Tenancy
from tests.integration.conftest import SpawnWorker, wait_until

TRIVIAL = "def trivial(df):\n    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"
SCREEN = "def screen(df):\n    return [{'ticker': 'AAPL', 'score': 1.0}]\n"


def spin(seconds: float) -> str:
    return (
        "import datetime\n"
        "def spin(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return []\n"
    )


def backtest(task_id: str, tenant: str, code: str = TRIVIAL) -> str:
    return json.dumps(
        {
            "task_id": task_id,
            "task_type": "backtest",
            "tenant": tenant,
            "args": {
                "strategy_code": code,
                "symbols": ["AAPL"],
                "start_date": "2011-01-01",
                "end_date": "2011-06-30",
            },
        }
    )


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_a_tenant_behind_a_2000_task_backlog_and_a_sweep_is_not_starved(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    # A's sweep first (it fans out into 100 chunks at the back of A's list), then its
    # 2,000 tasks; all in A's one list, served in order.
    grid = {"fast": list(range(2, 12)), "slow": list(range(30, 130, 10))}  # 100 combinations
    add_sweep_task(
        redis_client, "a-sweep", source("sma_params"), ["AAPL"], "2011-01-01", "2011-12-31",
        grid, tenant="A",
    )  # fmt: skip
    pipe = redis_client.pipeline()
    for i in range(2000):
        pipe.lpush("strategy_queue", backtest(f"a-{i}", "A"))
    pipe.execute()
    spawn_worker(
        "fair-1", env={"STRATEGYQ_CONCURRENCY": "2", "STRATEGYQ_SWEEP_CHUNK_SIZE": "1"}
    ).wait_for_log("started")
    # A's backlog is being served (its sweep fanned out into 100 chunks) when B arrives.
    wait_until(
        lambda: (get_task_result(redis_client, "a-sweep") or {}).get("data", {}).get("chunks"),
        timeout_s=120,
    )
    # Counted in A's tasks, not in seconds: how many of them left A's list from each B
    # screen's submission to its result. With a fair share B's screen takes the next free
    # slot while the other slot goes on with A's tasks (0-5 of them seen, also with three
    # CPU-bound processes beside the test); starved, it would wait for A's 2,000.
    # (started_at has whole seconds, too coarse to time a wait of a few hundredths.)
    overtaken = []
    for i in range(10):
        before = Tenancy(redis_client).tenant("A").queued
        add_screening_task(redis_client, f"b-{i}", SCREEN, ["AAPL"], limit=5, tenant="B")
        result = wait_for_result(redis_client, f"b-{i}", timeout_s=60)
        assert result is not None and result["status"] == "completed", result
        overtaken.append(before - Tenancy(redis_client).tenant("A").queued)
    a = Tenancy(redis_client).tenant("A")
    # Every screen of B completed before A's backlog (2,000 tasks and 100 chunks) was half done.
    assert a.queued > 1050, a
    assert max(overtaken) <= 10, overtaken


@pytest.mark.slow
def test_kill_9_of_workers_with_several_tenants_runs_every_task_once(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    Tenancy(redis_client).set_quotas("t2", max_in_flight=1)
    ids = []
    for i in range(6):
        for tenant in ("t1", "t2", "t3"):
            task_id = f"{tenant}-{i}"
            ids.append(task_id)
            redis_client.lpush("strategy_queue", backtest(task_id, tenant, spin(0.3)))
    doomed = [spawn_worker(f"doomed-{n}", env={"STRATEGYQ_CONCURRENCY": "2"}) for n in (1, 2)]
    # Both doomed workers are mid-run (each holds tasks in its processing list).
    wait_until(
        lambda: all(redis_client.llen(keys.processing(w.worker_id)) > 0 for w in doomed),
        timeout_s=60,
    )
    for w in doomed:
        w.signal(signal.SIGKILL)
        w.wait(30)
    held = Tenancy(redis_client).tenants()
    assert sum(t.in_flight for t in held) > 0  # the dead workers' runs, not yet reaped
    spawn_worker("survivor", env={"STRATEGYQ_CONCURRENCY": "2"})
    for task_id in ids:
        result = wait_for_result(redis_client, task_id, timeout_s=120)
        assert result is not None and result["status"] == "completed", (task_id, result)
    # Exactly one terminal write per task: one token on its completion list each.
    assert {t: redis_client.llen(keys.done(t)) for t in ids} == {t: 1 for t in ids}
    assert redis_client.llen(keys.DEAD_LETTER) == 0
    # The fairness counts recovered: nothing queued, nothing in flight, no lane depth.
    wait_until(
        lambda: all(t.queued == 0 and t.in_flight == 0 for t in Tenancy(redis_client).tenants()),
        timeout_s=30,
    )
    assert all(lane.depth == 0 for lane in Tenancy(redis_client).lanes())
    # t2's max_in_flight of 1 held on the survivor (two slots): its runs there never overlap.
    spans = sorted(
        (epoch(r["data"]["started_at"]), epoch(r["data"]["completed_at"]))
        for r in (get_task_result(redis_client, f"t2-{i}") for i in range(6))
        if r is not None and r["data"]["worker_id"] == "survivor"
    )
    assert spans
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
