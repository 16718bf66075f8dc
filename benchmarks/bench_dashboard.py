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
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_QUEUE="bench-dashboard")
        port = _port()
        api = _serve(env, port)
        overview: list[float] = []
        sweep: list[float] = []
        cold: list[float] = []
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
