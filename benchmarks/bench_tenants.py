"""Trivial-task throughput with tenants and lanes against today's single queue, in one run.

``python -m benchmarks tenants`` (base commit: ``STRATEGYQ_BENCH_TENANTS_BASE``, default
``eae5003``, the last commit before tenants and lanes: one FIFO list, ``BLMOVE``). The
base's files are exported (``git archive``) and its worker runs from there; both workers
serve the same embedded Valkey and synthetic store, in alternating rounds, so machine
load hits both alike. The yardstick is the base's own throughput on the same messages.

Two workloads of trivial one-symbol backtests, LPUSHed raw as the seed's Go backend does:
one tenant (no ``tenant`` field: tenant ``default``), and 100 tenants (``tenant`` set,
round-robin; the base ignores the field). Redis commands per task (``INFO
commandstats``, the commands run inside Lua scripts included; the producer's own LPUSH
and polling left out) are printed beside the base's.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import TRIVIAL, span
from benchmarks.bench_queue_cpu import base_tree_of, wait_ready, worker
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

BASE = os.environ.get("STRATEGYQ_BENCH_TENANTS_BASE", "eae5003")
TASKS = int(os.environ.get("STRATEGYQ_BENCH_TASKS", "300"))
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_ROUNDS", "3"))
CONCURRENCY = "2"
# The producer's commands (and this benchmark's reads), not the queue's.
PRODUCER_COMMANDS = {"lpush", "zcard", "info", "config|resetstat", "config", "flushdb", "exists"}
WORKLOADS = {"1 tenant": 1, "100 tenants": 100}
TARGETS = {"1 tenant": 0.95, "100 tenants": 0.90}


def messages(n: int, tenants: int) -> list[str]:
    start, end = span(0.5)
    out = []
    for i in range(n):
        message: dict[str, Any] = {
            "task_id": uuid.uuid4().hex,
            "task_type": "backtest",
            "args": {
                "strategy_code": TRIVIAL,
                "symbols": ["SYN0001"],
                "start_date": start,
                "end_date": end,
            },
        }
        if tenants > 1:
            message["tenant"] = f"tenant-{i % tenants:03d}"
        out.append(json.dumps(message))
    return out


def queue_commands(client: redis.Redis) -> tuple[int, int]:
    """(all commands, script calls) so far, the producer's own left out."""
    stats = client.info("commandstats")
    total = scripts = 0
    for name, entry in stats.items():
        command = str(name).removeprefix("cmdstat_")
        if command in PRODUCER_COMMANDS:
            continue
        total += int(entry["calls"])
        if command in ("evalsha", "eval", "evalsha_ro", "eval_ro"):
            scripts += int(entry["calls"])
    return total, scripts


def one_run(
    client: redis.Redis, env: dict[str, str], src: Path | None, tenants: int
) -> tuple[float, float, float]:
    """Tasks per second, commands per task, script calls per task."""
    with worker(env, src) as proc:
        wait_ready(client, proc)
        warm = messages(20, tenants)
        client.lpush("strategy_queue", *warm)
        while client.zcard("strategyq:recent") < len(warm):
            time.sleep(0.02)
        batch = messages(TASKS, tenants)
        done_before = client.zcard("strategyq:recent")
        c0, s0 = queue_commands(client)
        t0 = time.perf_counter()
        client.lpush("strategy_queue", *batch)
        while client.zcard("strategyq:recent") < done_before + TASKS:
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        c1, s1 = queue_commands(client)
    return TASKS / elapsed, (c1 - c0) / TASKS, (s1 - s0) / TASKS


def main() -> dict[str, Any]:
    console = Console()
    samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-tenants-") as tmp,
        base_tree_of(BASE) as tree,
    ):
        home = Path(tmp)
        write_synthetic(home / "data", 2, 1, seed=1)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        try:
            client = redis.Redis.from_url(url)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "STRATEGYQ_"))}  # fmt: skip
            env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench",
                       STRATEGYQ_CONCURRENCY=CONCURRENCY)  # fmt: skip
            for _ in range(ROUNDS):
                for name, tenants in WORKLOADS.items():
                    for label, src in (("today", tree / "src"), ("lanes", None)):
                        client.flushdb()
                        samples.setdefault((name, label), []).append(
                            one_run(client, env, src, tenants)
                        )
        finally:
            server.stop()
    table = Table(
        title=f"Trivial-task throughput, concurrency {CONCURRENCY}, {TASKS} tasks, median of "
        f"{ROUNDS} alternating rounds; today = {BASE} (one list)"
    )
    for column in ("workload", "today (tasks/s)", "lanes (tasks/s)", "lanes / today",
                   "target", "met", "commands/task today", "commands/task lanes",
                   "script calls/task today", "script calls/task lanes"):  # fmt: skip
        table.add_column(column, justify="left" if column == "workload" else "right")
    rows = []
    for name in WORKLOADS:
        today = list(samples[(name, "today")])
        lanes = list(samples[(name, "lanes")])
        tput_today = statistics.median(s[0] for s in today)
        tput_lanes = statistics.median(s[0] for s in lanes)
        ratio = tput_lanes / tput_today
        cmd_today = statistics.median(s[1] for s in today)
        cmd_lanes = statistics.median(s[1] for s in lanes)
        eval_today = statistics.median(s[2] for s in today)
        eval_lanes = statistics.median(s[2] for s in lanes)
        met = ratio >= TARGETS[name]
        table.add_row(name, f"{tput_today:.1f}", f"{tput_lanes:.1f}", f"{ratio:.2f}×",
                      f"≥ {TARGETS[name]:.2f}×", "yes" if met else "[red]no[/]",
                      f"{cmd_today:.1f}", f"{cmd_lanes:.1f}", f"{eval_today:.1f}",
                      f"{eval_lanes:.1f}")  # fmt: skip
        rows.append({"workload": name, "today_tps": tput_today, "lanes_tps": tput_lanes,
                     "ratio": ratio, "target": TARGETS[name], "met": met,
                     "commands_per_task_today": cmd_today, "commands_per_task_lanes": cmd_lanes,
                     "script_calls_per_task_today": eval_today,
                     "script_calls_per_task_lanes": eval_lanes,
                     "samples_today": today, "samples_lanes": lanes})  # fmt: skip
    console.print(table)
    return {"base": BASE, "rows": rows}
