"""The sweep page against the overview: ``python -m benchmarks dashboard``.

A real ``strategyq serve`` subprocess on a private Valkey. A completed sweep of
10,000 combinations (a 100 × 100 grid, every combination with its full
metrics, the best one's backtest with its equity curve and trades) is stored
as a worker stores it; its page (ranking, a 100 × 100 heatmap, the best
backtest) is fetched interleaved with the overview page of the same server,
over one keep-alive connection. Target: the sweep page's p50 within 2× the
overview's, in the same run; the load average is printed beside the figures.
The first view after the sweep finishes decodes and ranks the whole result;
later views reuse it (:mod:`strategyq.api.record_cache`), and both are shown.

The tasks view (``/tasks``: queued, running and a page of finished tasks) is
timed on the same server with the 10,000 finished tasks (the newest 50 with
full backtest records: 756-point equity curves and 200 trades) and 1,000 queued
backtests of 5 symbols each, beside a Redis ``PING`` loop on the same Valkey.
Target: ≤ 50 ms p50.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_api import _fill, _pct, _port, _serve
from strategyq.embedded_valkey import EmbeddedServer
from strategyq.engine import METRIC_NAMES
from strategyq.queue import TaskQueue, keys, records

ROUNDS = 40
QUEUED = 1_000
FULL_RECORDS = 50
COLD_ROUNDS = 8
SIDE = 100


def _sweep_record() -> bytes:
    results = []
    for i in range(SIDE * SIDE):
        fast, slow = i % SIDE + 1, i // SIDE + 1
        metrics = {name: ((fast * 7 + slow * 13 + k) % 97) / 100 for k, name in
                   enumerate(METRIC_NAMES)}  # fmt: skip
        results.append({"rank": 0, "index": i, "params": {"fast": fast, "slow": slow},
                        "metrics": metrics})  # fmt: skip
    results.sort(key=lambda r: -r["metrics"]["sharpe_ratio"])
    for rank, row in enumerate(results, 1):
        row["rank"] = rank
    days = [f"2010-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
    best = results[0]
    best_result = {
        "execution_mode": "backtest",
        "performance_metrics": best["metrics"],
        "equity_curve": {"dates": days, "values": [100_000 + i * 10.0 for i in range(len(days))]},
        "trades": [
            {
                "ticker": "AAPL",
                "entry_date": days[i],
                "exit_date": days[i + 2],
                "entry_price": 10.0,
                "exit_price": 10.5,
                "return": 0.05,
            }
            for i in range(0, len(days) - 3, 2)
        ],
    }
    heat = {"metric": "sharpe_ratio", "x": "fast", "y": "slow",
            "x_values": list(range(1, SIDE + 1)), "y_values": list(range(1, SIDE + 1)),
            "values": [[((x * 7 + y * 13 + 11) % 97) / 100 for x in range(1, SIDE + 1)]
                       for y in range(1, SIDE + 1)]}  # fmt: skip
    data = {
        "success": True, "execution_mode": "sweep", "maximize": "sharpe_ratio",
        "params": ["fast", "slow"], "total_combinations": SIDE * SIDE,
        "expanded_combinations": SIDE * SIDE, "chunks": 400,
        "date_range": ["2010-01-01T00:00:00", "2010-12-28T00:00:00"], "symbols": ["AAPL"],
        "best": {"index": best["index"], "params": best["params"], "metrics": best["metrics"]},
        "best_result": best_result, "top": results[:10], "results": results,
        "results_returned": len(results), "results_truncated": False, "heatmap": heat,
    }  # fmt: skip
    return records.completed(orjson.dumps(data), {"worker_id": "bench", "execution_time_ms": 6e4})


def _store(client: redis.Redis, task_id: str, record: bytes) -> None:
    """Write the finished sweep through the worker's own terminal transition."""
    tasks = TaskQueue(client, name="bench-dashboard")
    raw = orjson.dumps({"task_id": task_id, "task_type": "sweep", "args": {}})
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.token(task_id), "1")
    tasks.scripts.finish(
        keys=[keys.result(task_id), keys.token(task_id), keys.processing("bench"),
              keys.done(task_id), keys.attempts(task_id), keys.cancel(task_id), keys.RECENT],
        args=["1", record, 86400, raw, 300, task_id, int(time.time() * 1000),
              keys.RECENT_MAX, "completed", "sweep"],
        client=pipe,
    )  # fmt: skip
    pipe.execute()


def _backtest_record(i: int) -> bytes:
    days = [f"2010-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)] * 2
    data = {
        "success": True, "execution_mode": "backtest",
        "performance_metrics": {name: (i + k) / 100 for k, name in enumerate(METRIC_NAMES)},
        "summary": {"symbols_processed": 5},
        "equity_curve": {"dates": days[:756], "values": [100_000 + j * 1.5 for j in range(756)]},
        "trades": [{"ticker": "AAPL", "entry_date": days[j], "exit_date": days[j + 1],
                    "entry_price": 10.0, "exit_price": 10.5, "return": 0.05}
                   for j in range(200)],
    }  # fmt: skip
    return records.completed(
        orjson.dumps(data),
        {"worker_id": "bench", "execution_time_ms": 900.0, "execution_time_seconds": 0.9,
         "started_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:01Z"},
    )  # fmt: skip


def _finish_backtests(client: redis.Redis, prefix: str) -> None:
    """50 finished backtests with full records, newer than every other finished task."""
    tasks = TaskQueue(client, name="bench-dashboard")
    for i in range(FULL_RECORDS):
        task_id = f"{prefix}-{i}"
        raw = orjson.dumps({"task_id": task_id, "task_type": "backtest", "args": {}})
        pipe = client.pipeline(transaction=False)
        pipe.set(keys.token(task_id), "1")
        tasks.scripts.finish(
            keys=[keys.result(task_id), keys.token(task_id), keys.processing("bench"),
                  keys.done(task_id), keys.attempts(task_id), keys.cancel(task_id), keys.RECENT],
            args=["1", _backtest_record(i), 86400, raw, 300, task_id,
                  int(time.time() * 1000) + 60_000 + i, keys.RECENT_MAX, "completed", "backtest"],
            client=pipe,
        )  # fmt: skip
        pipe.execute()


def _fill_tasks_view(client: redis.Redis) -> None:
    """The newest finished backtests with full records, and a queue of 1,000 backtests."""
    tasks = TaskQueue(client, name="bench-dashboard")
    _finish_backtests(client, "full")
    code = "def gap_up(df):\n    hits = df[df['gap_pct'] > 3.0]\n    return hits\n" * 10
    for i in range(QUEUED):
        task_id = f"queued-{i}"
        args = {"strategy_code": code, "symbols": ["AAPL", "MSFT", "IBM", "GE", "KO"],
                "start_date": "2010-01-01", "end_date": "2012-12-31"}  # fmt: skip
        tasks.push(
            task_id, orjson.dumps({"task_id": task_id, "task_type": "backtest", "args": args})
        )


def main() -> dict[str, Any]:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-dashboard-") as tmp:
        home = Path(tmp)
        server = None if os.environ.get("REDIS_URL") else EmbeddedServer(home / "valkey")
        url = os.environ.get("REDIS_URL") or server.ensure_running()  # type: ignore[union-attr]
        client = redis.Redis.from_url(url)
        client.flushdb()
        _fill(client)
        record = _sweep_record()
        _store(client, "bench-sweep", record)
        _fill_tasks_view(client)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_QUEUE="bench-dashboard")
        port = _port()
        api = _serve(env, port)
        overview: list[float] = []
        sweep: list[float] = []
        cold: list[float] = []
        board: list[float] = []
        board_cold: list[float] = []
        ping: list[float] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                for _ in range(3):
                    http.get("/?refresh=0")
                    http.get("/tasks/bench-sweep")
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    assert http.get("/?refresh=0").status_code == 200
                    t1 = time.perf_counter()
                    page = http.get("/tasks/bench-sweep")
                    t2 = time.perf_counter()
                    assert page.status_code == 200 and 'id="heatmap-data"' in page.text
                    overview.append((t1 - t0) * 1000)
                    sweep.append((t2 - t1) * 1000)
                size = len(page.content)
                for _ in range(3):
                    http.get("/tasks")
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    view = http.get("/tasks")
                    t1 = time.perf_counter()
                    assert view.status_code == 200 and "queued-49<" in view.text
                    assert "full-49" in view.text
                    board.append((t1 - t0) * 1000)
                    t0 = time.perf_counter()
                    client.ping()
                    ping.append((time.perf_counter() - t0) * 1000)
                # A page of tasks none of which the view has read yet.
                for n in range(COLD_ROUNDS):
                    _finish_backtests(client, f"fresh{n}")
                    t0 = time.perf_counter()
                    view = http.get("/tasks")
                    board_cold.append((time.perf_counter() - t0) * 1000)
                    assert f"fresh{n}-49<" in view.text
                # The first view after the sweep finished: decoded and derived afresh.
                for n in range(COLD_ROUNDS):
                    # Another finished sweep of the same size: nothing cached for it yet.
                    _store(client, f"bench-sweep-{n}", record)
                    t0 = time.perf_counter()
                    assert http.get(f"/tasks/bench-sweep-{n}").status_code == 200
                    cold.append((time.perf_counter() - t0) * 1000)
        finally:
            api.terminate()
            api.wait(30)
            if server is not None:
                server.stop()
    load = os.getloadavg()
    ratio = statistics.median(sweep) / statistics.median(overview)
    rows = [
        {"row": "overview page (yardstick: 10,000 recent, 20 workers)",
         "p50": statistics.median(overview), "p95": _pct(overview, 0.95), "ratio": 1.0,
         "target": "—", "met": True},
        {"row": f"sweep page ({SIDE * SIDE:,} combinations, {SIDE}×{SIDE} heatmap, "
                f"{len(record) / 1e6:.1f} MB record, {size / 1e6:.2f} MB page)",
         "p50": statistics.median(sweep), "p95": _pct(sweep, 0.95), "ratio": ratio,
         "target": "≤ 2× overview", "met": ratio <= 2.0},
        {"row": "sweep page, first view after it finished (decoded afresh)",
         "p50": statistics.median(cold), "p95": max(cold),
         "ratio": statistics.median(cold) / statistics.median(overview),
         "target": "—", "met": True},
        {"row": f"tasks view ({QUEUED:,} queued, 10,000 finished, 20 running)",
         "p50": statistics.median(board), "p95": _pct(board, 0.95),
         "ratio": statistics.median(board) / statistics.median(overview),
         "target": "≤ 50 ms", "met": statistics.median(board) <= 50.0},
        {"row": f"tasks view, {FULL_RECORDS} finished tasks it has not read yet",
         "p50": statistics.median(board_cold), "p95": max(board_cold),
         "ratio": statistics.median(board_cold) / statistics.median(overview),
         "target": "—", "met": True},
        {"row": "Redis PING (yardstick of the tasks view, same rounds)",
         "p50": statistics.median(ping), "p95": _pct(ping, 0.95),
         "ratio": statistics.median(ping) / statistics.median(overview),
         "target": f"tasks view = {statistics.median(board) / statistics.median(ping):,.0f}× PING",
         "met": True},
    ]  # fmt: skip
    table = Table(
        title=f"dashboard pages — {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {ROUNDS} rounds interleaved"
    )
    for c in ("row (ms)", "p50", "p95", "× overview", "target", "met"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["row"], f"{r['p50']:.1f}", f"{r['p95']:.1f}", f"{r['ratio']:.2f}",
                      r["target"], "yes" if r["met"] else "[red]no[/]")  # fmt: skip
    console.print(table)
    return {"cores": os.cpu_count(), "load_average": load, "rows": rows}
