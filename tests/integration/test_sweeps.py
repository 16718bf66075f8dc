"""Sweeps through the queue: exact per-combination metrics, ties, constraints, walk-forward,
progress, cancel and error cascades, the grid cap, duplicates never counted twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis

from strategyq import (
    add_backtest_task,
    add_sweep_task,
    cancel_task,
    get_task_result,
    wait_for_result,
)
from strategyq.check import StrategyRejected
from strategyq.errors import TaskValidationError
from strategyq.examples import source
from strategyq.executor.main import SandboxHost
from strategyq.protocol.chunks import chunk_id
from strategyq.queue import TaskQueue, keys
from strategyq.queue.sweeps import ChunkVerdict, SweepQueue
from strategyq.settings import Settings
from strategyq.sweep.rank import best
from strategyq.worker import Hooks, Worker, fetch
from tests import warm_cli
from tests.integration.conftest import SpawnWorker, in_process

CODE = source("sma_params")
SYMBOLS = ["AAPL", "MSFT"]
START, END = "2006-01-01", "2010-12-31"
GRID = {"fast": [5, 10, 20], "slow": [10, 50, 100]}

Burst = Callable[..., Worker]


@pytest.fixture
def burst(settings: Settings, sandbox_host: SandboxHost) -> Burst:
    """Run a worker in burst mode; its executors run in this process (the worker's logic is
    under test here; test_e2e.py and test_sweep_chaos.py run the executor processes)."""

    def run(conf: Settings, hooks: Hooks | None = None, **changes: Any) -> Worker:
        worker = Worker(
            replace(conf, **changes),
            burst=True,
            handle_signals=False,
            hooks=hooks,
            executor_factory=in_process(sandbox_host),
        )
        assert worker.run() == 0
        return worker

    return run


def test_every_combination_equals_a_single_backtest_with_its_params(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_sweep_task(redis_client, "sw-eq", CODE, SYMBOLS, START, END, GRID,
                   maximize="total_return", constraint="fast < slow", top_n=3)  # fmt: skip
    burst(settings, sweep_chunk_size=2)
    result = get_task_result(redis_client, "sw-eq")
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    allowed = [(f, s) for f in GRID["fast"] for s in GRID["slow"] if f < s]
    # The constraint filtered: (10, 10) and (20, 10) are not there.
    assert sorted((r["params"]["fast"], r["params"]["slow"]) for r in data["results"]) == sorted(
        allowed
    )
    assert data["total_combinations"] == len(allowed) and data["expanded_combinations"] == 9
    assert data["chunks"] == 4 and data["progress"] == {"done": 7, "total": 7}
    for fast, slow in allowed:
        add_backtest_task(redis_client, f"bt-{fast}-{slow}", CODE, SYMBOLS, START, END,
                          params={"fast": fast, "slow": slow})  # fmt: skip
    burst(settings)
    for row in data["results"]:
        single = get_task_result(
            redis_client, f"bt-{row['params']['fast']}-{row['params']['slow']}"
        )
        assert single is not None and single["status"] == "completed"
        assert row["metrics"] == single["data"]["performance_metrics"]  # exactly
    # The best is the argmax under the tie rule, and its full backtest is the single one's.
    winner = best(data["results"], "total_return")
    assert data["best"]["params"] == winner["params"] == data["top"][0]["params"]
    assert [r["rank"] for r in data["top"]] == [1, 2, 3]
    p = data["best"]["params"]
    single = get_task_result(redis_client, f"bt-{p['fast']}-{p['slow']}")
    assert single is not None
    for key in ("performance_metrics", "trades", "equity_curve", "instances"):
        assert data["best_result"][key] == single["data"][key]
    # The heatmap: rows are slow, columns fast; excluded cells are null.
    heat = data["heatmap"]
    assert (heat["x"], heat["y"], heat["x_values"], heat["y_values"]) == (
        "fast", "slow", GRID["fast"], GRID["slow"])  # fmt: skip
    by_params = {(r["params"]["fast"], r["params"]["slow"]): r for r in data["results"]}
    for i, slow in enumerate(GRID["slow"]):
        for j, fast in enumerate(GRID["fast"]):
            row = by_params.get((fast, slow))
            # fast=10 and fast=20 with slow=10 were excluded: null cells.
            assert heat["values"][i][j] == (row["metrics"]["total_return"] if row else None)
    assert heat["values"][0][1:] == [None, None]


def test_a_whole_grid_entry_through_the_queue_equals_one_call_per_combination(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    # f(df, grid) is one sandbox call per chunk; every combination's row must equal the
    # sweep of the same strategy written as f(df, params).
    grid_code = source("sma_grid")
    for task_id, code in (("sw-grid", grid_code), ("sw-params", CODE)):
        add_sweep_task(redis_client, task_id, code, SYMBOLS, START, END, GRID,
                       maximize="total_return", constraint="fast < slow")  # fmt: skip
    burst(settings, sweep_chunk_size=4)
    by_grid = get_task_result(redis_client, "sw-grid")
    by_params = get_task_result(redis_client, "sw-params")
    assert by_grid is not None and by_grid["status"] == "completed", by_grid
    assert by_params is not None and by_params["status"] == "completed", by_params
    rows = {
        (r["params"]["fast"], r["params"]["slow"]): r["metrics"] for r in by_grid["data"]["results"]
    }
    assert rows == {
        (r["params"]["fast"], r["params"]["slow"]): r["metrics"]
        for r in by_params["data"]["results"]
    }
    assert len(rows) == 7  # the 9 of the grid less (10, 10) and (20, 10)
    assert by_grid["data"]["best"]["params"] == by_params["data"]["best"]["params"]


def test_an_idle_executor_takes_the_chunks_its_workers_sweep_fans_out_without_the_long_wait(
    redis_client: redis.Redis,
    settings: Settings,
    sandbox_host: SandboxHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks go straight to their lanes, which a take's blocking wait on the queue's list
    does not see: while the worker's sweep plans, its idle executor looks again every
    ``FANOUT_BLOCK_S`` instead of sleeping out the long wait (made an hour here)."""
    monkeypatch.setattr(fetch, "BLOCK_S", 3600.0)
    worker = Worker(
        replace(settings, concurrency=2),
        handle_signals=False,
        executor_factory=in_process(sandbox_host),
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        add_sweep_task(redis_client, "sw-idle", CODE, SYMBOLS, START, END, GRID,
                       constraint="fast < slow")  # fmt: skip
        result = wait_for_result(redis_client, "sw-idle", timeout_s=30)
    finally:
        worker.stop()
        # A message in the list ends the fetch loop's hour-long wait (it runs, then stops).
        add_backtest_task(redis_client, "bt-wake", "def s(df):\n    return []\n", SYMBOLS,
                          START, END)  # fmt: skip
        thread.join()
    assert result is not None and result["status"] == "completed", result
    assert result["data"]["progress"] == {"done": 7, "total": 7}


def test_results_past_the_caps_are_cut_best_first_with_counts_kept(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    flat = "def same(df, params):\n    return []\n"
    # Three months: small backtests, so the rows are what weighs.
    add_sweep_task(redis_client, "sw-cap", flat, SYMBOLS, "2010-01-01", "2010-03-31",
                   {"a": list(range(60))}, maximize="total_return", top_n=3)  # fmt: skip
    burst(settings, sweep_chunk_size=10, sweep_max_results=40, max_result_bytes=24_000)
    result = get_task_result(redis_client, "sw-cap")
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    assert data["total_combinations"] == 60 and data["results_truncated"] is True
    # The count cap (40), then the byte cap (24 kB) halved the list.
    assert 0 < data["results_returned"] == len(data["results"]) < 40
    assert [r["index"] for r in data["results"]] == list(range(data["results_returned"]))
    assert len(data["top"]) == 3


def test_ties_go_to_the_first_combination_in_grid_order(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    flat = "def same(df, params):\n    return []\n"
    add_sweep_task(redis_client, "sw-tie", flat, SYMBOLS, START, END, {"a": [3, 1, 2]},
                   maximize="total_return")  # fmt: skip
    burst(settings, sweep_chunk_size=1)
    data = get_task_result(redis_client, "sw-tie")["data"]  # type: ignore[index]
    assert data["best"]["params"] == {"a": 3} and data["best"]["index"] == 0
    assert [r["params"]["a"] for r in data["results"]] == [3, 1, 2]
    assert "heatmap" not in data  # one parameter: no heatmap


def test_walk_forward_through_the_queue(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_sweep_task(redis_client, "sw-wf", CODE, SYMBOLS, "2004-01-01", "2012-12-31",
                   {"fast": [5, 20], "slow": [50, 100]}, maximize="sharpe_ratio",
                   walk_forward={"train_sessions": 504, "test_sessions": 252})  # fmt: skip
    burst(settings, sweep_chunk_size=10)
    result = get_task_result(redis_client, "sw-wf")
    assert result is not None and result["status"] == "completed", result
    wf = result["data"]["walk_forward"]
    assert wf["train_sessions"] == 504 and len(wf["folds"]) == (wf["sessions"] - 504) // 252
    curve = wf["oos_equity_curve"]
    growth = 1.0
    for k, fold in enumerate(wf["folds"]):
        # The winner is the argmax of the training metrics, under the tie rule.
        assert fold["params"] == fold["top_in_sample"][0]["params"]
        assert fold["in_sample"] == fold["top_in_sample"][0]["metrics"]
        assert fold["train_end"] < fold["test_start"]
        if k:
            assert wf["folds"][k - 1]["test_end"] < fold["test_start"]
        growth *= 1 + fold["out_of_sample"]["total_return"]
    # The stitched curve covers the test windows only, in order, and compounds their returns.
    assert curve["dates"][0][:10] == wf["folds"][0]["test_start"]
    assert curve["dates"][-1][:10] == wf["folds"][-1]["test_end"]
    assert curve["dates"] == sorted(curve["dates"])
    assert wf["oos_metrics"]["total_return"] == pytest.approx(growth - 1, rel=1e-6)


class _Watch(Hooks):
    """Records the sweep's record each time one of its chunks is claimed."""

    def __init__(self, client: redis.Redis, sweep_id: str, cancel_at: str | None = None) -> None:
        self.client = client
        self.sweep_id = sweep_id
        self.cancel_at = cancel_at
        self.seen: list[dict[str, Any]] = []

    def at_stage(self, task_id: str, stage: str) -> None:
        if task_id.startswith(self.sweep_id + "/chunk/") and stage == "claimed":
            self.seen.append(json.loads(self.client.get(keys.result(self.sweep_id)) or "{}"))
            if task_id == self.cancel_at:
                cancel_task(self.client, self.sweep_id)


def test_progress_is_on_the_running_record(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_sweep_task(redis_client, "sw-prog", CODE, SYMBOLS, START, END, GRID)
    watch = _Watch(redis_client, "sw-prog")
    burst(settings, hooks=watch, sweep_chunk_size=3)
    progress = [(r["status"], r["data"]["progress"]) for r in watch.seen]
    assert progress == [
        ("running", {"done": 0, "total": 9}),
        ("running", {"done": 3, "total": 9}),
        ("running", {"done": 6, "total": 9}),
    ]
    assert get_task_result(redis_client, "sw-prog")["status"] == "completed"  # type: ignore[index]


def test_cancelling_a_sweep_cancels_its_chunks(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_sweep_task(redis_client, "sw-cancel", CODE, SYMBOLS, START, END, GRID)
    watch = _Watch(redis_client, "sw-cancel", cancel_at="sw-cancel/chunk/0001")
    burst(settings, hooks=watch, sweep_chunk_size=2)
    result = get_task_result(redis_client, "sw-cancel")
    assert result is not None and result["status"] == "cancelled"
    # Chunk 0 ran before the cancel; chunk 1 was running; the rest never started.
    assert len(watch.seen) == 2
    for n in range(2, 5):
        chunk = get_task_result(redis_client, chunk_id("sw-cancel", n))
        assert chunk is not None and chunk["status"] == "cancelled"
    assert redis_client.llen("strategy_queue") == 0
    assert not redis_client.exists(keys.processing(settings.worker_id))


def test_a_chunks_strategy_error_fails_the_sweep_with_that_error(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    code = (
        "def s(df, params):\n"
        "    if params['fast'] == 10:\n"
        "        raise ValueError('no ten')\n"
        "    return []\n"
    )
    add_sweep_task(redis_client, "sw-err", code, SYMBOLS, START, END, GRID)
    burst(settings, sweep_chunk_size=3)
    result = get_task_result(redis_client, "sw-err")
    assert result is not None and result["status"] == "error"
    assert result["data"]["error_type"] == "strategy_error"
    assert "with params {'fast': 10, 'slow': 10}" in result["data"]["error"]
    assert "ValueError: no ten" in result["data"]["error"]
    # Its bookkeeping is gone; chunks after the failing one were skipped.
    assert not redis_client.exists(keys.sweep("sw-err"), keys.sweep_chunks("sw-err"))
    assert get_task_result(redis_client, "sw-err/chunk/0002")["status"] == "cancelled"  # type: ignore[index]


def test_the_grid_cap_is_a_setting_with_a_clear_error(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    with pytest.raises(TaskValidationError, match="10000"):
        add_sweep_task(redis_client, "too-big", CODE, SYMBOLS, START, END,
                       {"a": list(range(101)), "b": list(range(100))})  # fmt: skip
    message = {"task_id": "capped", "task_type": "sweep", "args": {
        "strategy_code": CODE, "symbols": SYMBOLS, "start_date": START, "end_date": END,
        "param_grid": GRID}}  # fmt: skip
    redis_client.lpush("strategy_queue", json.dumps(message))
    burst(settings, sweep_max_combinations=8)
    result = get_task_result(redis_client, "capped")
    assert result is not None and result["status"] == "error"
    assert "9 combinations; the limit is 8" in result["data"]["error"]
    assert "STRATEGYQ_SWEEP_MAX_COMBINATIONS" in result["data"]["error"]


def test_a_late_duplicate_run_of_a_chunk_never_counts_twice(
    redis_client: redis.Redis, settings: Settings
) -> None:
    tasks = TaskQueue(redis_client)
    sweeps = SweepQueue(tasks)
    running = orjson.dumps({"status": "running", "data": {"fanned_out": True}, "updated_at": "x"})
    claim = tasks.claim("w", "dup", "sweep", "now")
    chunks = [orjson.dumps({"task_id": f"dup/chunk/000{i}", "task_type": "sweep_chunk"})
              for i in range(2)]  # fmt: skip
    plan = orjson.dumps({"total": 4})
    assert sweeps.fan_out("w", "dup", claim.token, b"raw", running, plan, 4, chunks) == "fanned_out"
    # The chunks wait in the sweep's lane, never in the list producers push onto.
    assert redis_client.llen("strategy_queue") == 0 and tasks.depth() == 2

    def run_chunk(n: int) -> str:
        return sweeps.claim_chunk("w", f"dup/chunk/000{n}", "dup", b"{}", b"{}", chunks[n], n).token

    first = run_chunk(0)
    # Its worker was lost: the reaper revoked the token, another run started.
    redis_client.set(keys.token("dup/chunk/0000"), "revoked")
    second = run_chunk(0)
    done = {"rows": []}
    count = 2

    def finish(n: int, token: str) -> ChunkVerdict:
        return sweeps.chunk_done("w", f"dup/chunk/000{n}", "dup", n, count, token, b"m",
                                 b'{"status":"completed"}', orjson.dumps(done))  # fmt: skip

    assert finish(0, second) is ChunkVerdict.COUNTED
    assert finish(0, first) is ChunkVerdict.STALE  # the late run of the first attempt
    assert redis_client.hget(keys.sweep("dup"), "done") == "2"
    # The last chunk: its run is told to assemble (and keeps its token until it writes).
    last = run_chunk(1)
    assert finish(1, last) is ChunkVerdict.ASSEMBLE
    # That worker died before writing the sweep: the re-run counts nothing more, and assembles.
    redis_client.set(keys.token("dup/chunk/0001"), "revoked")
    again = run_chunk(1)
    assert finish(1, again) is ChunkVerdict.ASSEMBLE
    assert redis_client.hget(keys.sweep("dup"), "done") == "4"
    assert redis_client.hlen(keys.sweep_chunks("dup")) == 2


def test_cli_submit_sweep_waits_and_shows_top_n_and_the_heatmap(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: SpawnWorker, tmp_path: Any
) -> None:

    strategy = tmp_path / "sma.py"
    strategy.write_text(CODE)
    spawn_worker("cli-sweep", env={"STRATEGYQ_SWEEP_CHUNK_SIZE": "2"})
    done = warm_cli.run(
        ["submit", "sweep", str(strategy),
         "--symbols", "AAPL,MSFT", "--start", START, "--end", END,
         "--grid", "fast=5,10,20", "--grid", "slow=50,100", "--constraint", "fast < slow",
         "--maximize", "total_return", "--top-n", "3", "--wait", "--task-id", "cli-sw"],
        env={**worker_env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "6 combinations of fast, slow" in out and "ranked by Total return" in out
    assert "best 3 combinations" in out
    assert "Total return: slow (rows) × fast (columns)" in out
    data = get_task_result(redis_client, "cli-sw")["data"]  # type: ignore[index]
    best_return = data["top"][0]["metrics"]["total_return"]
    assert f"{best_return * 100:,.2f} %" in out  # the top table
    assert f"{best_return * 100:,.2f}%" in out  # its heatmap cell
    bad = warm_cli.run(
        ["submit", "sweep", str(strategy),
         "--symbols", "AAPL", "--start", START, "--end", END, "--grid", "fast"],
        env=worker_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "must look like NAME=V1,V2" in bad.stderr


def test_a_sweep_fails_before_fanning_out_on_a_policy_error_or_a_strategy_without_params(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    refused = "import os\ndef s(df, params):\n    return []\n"
    with pytest.raises(StrategyRejected, match="module 'os' is refused"):
        add_sweep_task(redis_client, "sw-policy", refused, SYMBOLS, START, END, GRID)
    # A producer of another language (a raw LPUSH) still gets the worker's answer.
    raw = {"task_id": "sw-policy", "task_type": "sweep",
           "args": {"strategy_code": refused, "symbols": SYMBOLS, "start_date": START,
                    "end_date": END, "param_grid": GRID}}  # fmt: skip
    redis_client.lpush("strategy_queue", json.dumps(raw))
    add_sweep_task(redis_client, "sw-noparams", "def s(df):\n    return []\n", SYMBOLS, START,
                   END, GRID)  # fmt: skip
    burst(settings)
    policy = get_task_result(redis_client, "sw-policy")
    assert policy is not None and policy["status"] == "error"
    assert policy["data"]["error_type"] == "policy"
    assert policy["data"]["error"].startswith("Security validation failed: line 1: module 'os'")
    no_params = get_task_result(redis_client, "sw-noparams")
    assert no_params is not None and no_params["status"] == "error"
    assert "def s(df, params)" in no_params["data"]["error"]
    # No chunk was queued for either.
    assert not list(redis_client.scan_iter("task_result:sw-*/chunk/*"))


def test_the_readme_sweep_example_runs(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    from strategyq import wait_for_result

    root = Path(__file__).resolve().parents[2]
    section = (root / "README.md").read_text().split("### From Python", 1)[1].split("### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    example = next(b for b in blocks if "add_sweep_task" in b)
    code = (
        f"import redis\nredis_client = redis.Redis.from_url({worker_env['REDIS_URL']!r}, "
        f"decode_responses=True)\n{example}"
    )
    spawn_worker("readme-sweep")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=worker_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = wait_for_result(redis_client, "sweep-1", timeout_s=240)
    assert result is not None and result["status"] == "completed", result
    assert result["data"]["total_combinations"] == 9
    assert result["data"]["top"][0]["rank"] == 1 and len(result["data"]["top"]) == 5
