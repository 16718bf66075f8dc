"""The worker's own logic through the in-process executor, against the real server.

Claims, stages, terminal writes, validation errors, strategy errors and a
sweep's fan-out and fan-in run as in production; only the executor process is
left out (one sandbox host serves the session). Crash, sandbox and end-to-end
tests keep the real process chain (test_e2e.py, test_reliability.py, ...).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import redis

from strategyq import add_backtest_task, add_screening_task, add_sweep_task, get_task_result
from strategyq.examples import source
from strategyq.executor.inprocess import InProcessExecutor
from strategyq.executor.interface import Executor
from strategyq.executor.main import SandboxHost
from strategyq.queue import keys
from strategyq.settings import Settings
from strategyq.worker import Hooks, Worker

CODE = source("sma_params")
SYMBOLS = ["AAPL", "MSFT"]
START, END = "2006-01-01", "2010-12-31"


class Stages(Hooks):
    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}

    def at_stage(self, task_id: str, stage: str) -> None:
        self.seen.setdefault(task_id, []).append(stage)


def burst(
    settings: Settings, host: SandboxHost, hooks: Hooks | None = None, **changes: Any
) -> Worker:
    made: list[Executor] = []

    def factory(conf: Settings) -> Executor:
        made.append(InProcessExecutor(conf, host))
        return made[-1]

    worker = Worker(
        replace(settings, **changes),
        burst=True,
        handle_signals=False,
        hooks=hooks,
        executor_factory=factory,
    )
    assert worker.run() == 0
    assert made and all(isinstance(e, InProcessExecutor) for e in made)
    return worker


def test_a_backtest_and_a_screen_complete_with_their_stages(
    redis_client: redis.Redis, settings: Settings, sandbox_host: SandboxHost
) -> None:
    add_backtest_task(
        redis_client, "ip-bt", CODE, SYMBOLS, START, END, params={"fast": 10, "slow": 50}
    )
    add_screening_task(redis_client, "ip-screen", source("momentum_screen"), SYMBOLS, limit=5)
    stages = Stages()
    worker = burst(settings, sandbox_host, stages)
    backtest = get_task_result(redis_client, "ip-bt")
    assert backtest is not None and backtest["status"] == "completed", backtest
    assert backtest["data"]["execution_mode"] == "backtest"
    assert backtest["data"]["summary"]["symbols_processed"] == 2
    assert backtest["data"]["worker_id"] == worker.worker_id
    screen = get_task_result(redis_client, "ip-screen")
    assert screen is not None and screen["status"] == "completed", screen
    assert screen["data"]["execution_mode"] == "screening"
    for task_id in ("ip-bt", "ip-screen"):
        assert stages.seen[task_id] == [
            "claimed",
            "loading_data",
            "running_strategy",
            "computing_metrics",
            "finishing",
        ]
    assert worker.layers == sandbox_host.layers
    assert not redis_client.exists(keys.processing(worker.worker_id))


def test_bad_args_and_a_failing_strategy_are_error_results_and_the_worker_goes_on(
    redis_client: redis.Redis, settings: Settings, sandbox_host: SandboxHost
) -> None:
    redis_client.lpush(
        "strategy_queue",
        '{"task_id": "ip-bad", "task_type": "backtest", "args": {"strategy_code": "x", '
        '"symbols": [], "start_date": "2010-01-01", "end_date": "2010-02-01"}}',
    )
    failing = "def strategy(df):\n    print('about to fail')\n    raise ValueError('boom')\n"
    add_backtest_task(redis_client, "ip-fail", failing, SYMBOLS, START, END)
    add_backtest_task(
        redis_client, "ip-after", CODE, SYMBOLS, START, END, params={"fast": 5, "slow": 20}
    )
    burst(settings, sandbox_host)
    bad = get_task_result(redis_client, "ip-bad")
    assert bad is not None and bad["status"] == "error", bad
    assert bad["data"]["error_type"] == "validation" and "symbols" in bad["data"]["error"]
    failed = get_task_result(redis_client, "ip-fail")
    assert failed is not None and failed["status"] == "error", failed
    assert "boom" in failed["data"]["error"]
    assert "about to fail" in failed["data"]["logs"]
    after = get_task_result(redis_client, "ip-after")
    assert after is not None and after["status"] == "completed", after


def test_a_sweep_fans_out_and_its_chunks_assemble(
    redis_client: redis.Redis, settings: Settings, sandbox_host: SandboxHost
) -> None:
    grid = {"fast": [5, 10, 20], "slow": [50, 100]}
    add_sweep_task(
        redis_client, "ip-sweep", CODE, SYMBOLS, START, END, grid, maximize="total_return", top_n=6
    )
    burst(settings, sandbox_host, sweep_chunk_size=2)
    result = get_task_result(redis_client, "ip-sweep")
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    assert data["chunks"] == 3 and data["progress"] == {"done": 6, "total": 6}
    assert len(data["results"]) == 6
    returns = [r["metrics"]["total_return"] for r in data["results"]]
    assert returns == sorted(returns, reverse=True)
    assert not redis_client.exists(keys.sweep("ip-sweep"), keys.sweep_chunks("ip-sweep"))
