"""The HTTP API and the dashboard: ``python -m benchmarks api``.

A real ``strategyq serve`` subprocess on a private Valkey, driven over one
keep-alive HTTP connection. Each figure sits beside a yardstick measured in
the same run, interleaved request by request so both see the same machine:

- ``POST /v1/tasks`` (validate + queue one backtest) against ``GET /ping``, a
  bare endpoint of the same app that does one Redis PING: target p50 ≤ 1.5×;
- the overview page with 10,000 tasks in the recent-task index and 20
  registered workers (each with a task in flight): target p50 ≤ 50 ms, shown
  beside the same ``/ping``.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from rich.console import Console
from rich.table import Table

from strategyq.embedded_valkey import EmbeddedServer
from strategyq.examples import source
from strategyq.queue import TaskQueue, keys, records

ROUNDS = 1500
OVERVIEW_ROUNDS = 300
RECENT = 10_000
WORKERS = 20


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategyq", "serve", "--port", str(port), "--log-level", "WARNING"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("strategyq serve did not start")


def _fill(client: redis.Redis) -> None:
    """10,000 finished tasks through the real transitions, and 20 live workers."""
    tasks = TaskQueue(client, name="bench-filled")
    raw = orjson.dumps({"task_id": "x", "task_type": "backtest", "args": {}})
    for start in range(0, RECENT, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 500):
            task_id = f"filled-{i}"
            status = "error" if i % 10 == 0 else "completed"
            record = records.error("boom", "strategy_error") if status == "error" else (
                records.completed(b'{"success": true}', {"worker_id": "w"})
            )  # fmt: skip
            pipe.set(keys.token(task_id), "1")
            tasks.scripts.finish(
                keys=[keys.result(task_id), keys.token(task_id), keys.processing("w"),
                      keys.done(task_id), keys.attempts(task_id), keys.cancel(task_id),
                      keys.RECENT],
                args=["1", record, 86400, raw, 300, task_id, int(time.time() * 1000) - i * 300,
                      keys.RECENT_MAX, status, "backtest"],
                client=pipe,
            )  # fmt: skip
        pipe.execute()
    for w in range(WORKERS):
        worker_id = f"bench-worker-{w:02d}"
        beat = orjson.dumps({"worker_id": worker_id, "beat_at": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "layers": ["landlock", "seccomp"],
            "concurrency": 1})  # fmt: skip
        tasks.beat(worker_id, beat, 600_000)
        task_id = f"inflight-{w}"
        message = orjson.dumps({"task_id": task_id, "task_type": "backtest", "args": {}})
        tasks.push(task_id, message)
        tasks.take(worker_id, None)
        tasks.claim(worker_id, task_id, "backtest", time.strftime("%Y-%m-%dT%H:%M:%SZ"))


def main() -> dict[str, Any]:
    console = Console()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-api-") as tmp:
        home = Path(tmp)
        server = None if os.environ.get("REDIS_URL") else EmbeddedServer(home / "valkey")
        url = os.environ.get("REDIS_URL") or server.ensure_running()  # type: ignore[union-attr]
        client = redis.Redis.from_url(url)
        client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_QUEUE="bench-api")
        port = _port()
        api = _serve(env, port)
        try:
            body = orjson.dumps(
                {"task_type": "backtest", "args": {
                    "strategy_code": source("gap_up"), "symbols": ["AAPL", "MSFT", "GOOG"],
                    "start_date": "2010-01-01T00:00:00Z", "end_date": "2012-12-31T23:59:59Z"}}
            )  # fmt: skip
            headers = {"content-type": "application/json"}
            ping: list[float] = []
            submit: list[float] = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for _ in range(50):  # warm both paths
                    http.get("/ping")
                    http.post("/v1/tasks", content=body, headers=headers)
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    assert http.get("/ping").status_code == 200
                    t1 = time.perf_counter()
                    assert http.post("/v1/tasks", content=body, headers=headers).status_code == 202
                    t2 = time.perf_counter()
                    ping.append((t1 - t0) * 1000)
                    submit.append((t2 - t1) * 1000)
                client.delete("bench-api")
                _fill(client)
                assert client.zcard(keys.RECENT) == RECENT
                page_ping: list[float] = []
                overview: list[float] = []
                for _ in range(20):
                    http.get("/?refresh=0")
                for _ in range(OVERVIEW_ROUNDS):
                    t0 = time.perf_counter()
                    http.get("/ping")
                    t1 = time.perf_counter()
                    reply = http.get("/?refresh=0")
                    t2 = time.perf_counter()
                    assert (
                        reply.status_code == 200 and reply.text.count('class="worker ') == WORKERS
                    )
                    page_ping.append((t1 - t0) * 1000)
                    overview.append((t2 - t1) * 1000)
        finally:
            api.terminate()
            api.wait(30)
            if server is not None:
                server.stop()
    submit_ratio = statistics.median(submit) / statistics.median(ping)
    overview_p50 = statistics.median(overview)
    rows = [
        {"row": "GET /ping (yardstick: one Redis PING)", "p50": statistics.median(ping),
         "p95": _pct(ping, 0.95), "n": len(ping), "ratio": 1.0, "target": "—", "met": True},
        {"row": "POST /v1/tasks (validate + queue)", "p50": statistics.median(submit),
         "p95": _pct(submit, 0.95), "n": len(submit), "ratio": submit_ratio,
         "target": "≤ 1.5× ping", "met": submit_ratio <= 1.5},
        {"row": "GET /ping (beside the overview)", "p50": statistics.median(page_ping),
         "p95": _pct(page_ping, 0.95), "n": len(page_ping), "ratio": 1.0, "target": "—",
         "met": True},
        {"row": f"overview page ({RECENT:,} recent, {WORKERS} workers)", "p50": overview_p50,
         "p95": _pct(overview, 0.95), "n": len(overview),
         "ratio": overview_p50 / statistics.median(page_ping), "target": "≤ 50 ms p50",
         "met": overview_p50 <= 50.0},
    ]  # fmt: skip
    table = Table(title=f"strategyq serve — {os.cpu_count()} cores, one keep-alive connection")
    for c in ("row (ms)", "p50", "p95", "n", "× ping", "target", "met"):
        table.add_column(c)
    for r in rows:
        met = "yes" if r["met"] else "[red]no[/]"
        table.add_row(r["row"], f"{r['p50']:.3f}", f"{r['p95']:.3f}", str(r["n"]),
                      f"{r['ratio']:.2f}", r["target"], met)  # fmt: skip
    console.print(table)
    return {"cores": os.cpu_count(), "rows": rows}
