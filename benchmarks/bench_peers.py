"""strategyq beside its peers, every figure beside its yardstick from the same run.

``make bench-peers`` installs the peers (RQ, Celery, vectorbt, backtesting.py) into
``.venv-peers`` and runs this. Rows:

- trivial tasks per second at concurrency 1 and 2: strategyq's worker (each task in
  a fresh sandbox child), RQ's forking worker (a fork per job, no sandbox) and
  Celery's prefork pool (long-lived children, no isolation: the ceiling for a queue
  without a sandbox), rounds interleaved;
- the 10 x 10 SMA sweep's executor work on AAPL beside vectorbt warm
  (``benchmarks grid``);
- memory per million rows, 1 y and 20 y of one 20-year store (``benchmarks memory``);
- sweeps and a large backtest through the queue beside vectorbt (``benchmarks vectorbt``,
  its own table).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks import bench_grid, bench_memory, bench_vectorbt
from benchmarks.bench_e2e import (
    HERE,
    RQ_WORKER,
    TRIVIAL,
    span,
    throughput_ours,
    wait_ready,
    worker,
)
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

TASKS = int(os.environ.get("STRATEGYQ_BENCH_PEERS_TASKS", "200"))
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_PEERS_ROUNDS", "3"))


@contextmanager
def rq_workers(url: str, home: Path, count: int) -> Iterator[None]:
    start, end = span(0.5)
    connection = redis.Redis.from_url(url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RQ_WORKER, str(home), url, str(HERE), start, end],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(connection.keys("rq:worker:*")) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the RQ workers did not start")
            time.sleep(0.05)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        connection.delete(*connection.keys("rq:*") or ["-"])


def throughput_rq(url: str, home: Path, n: int) -> float:
    from rq import Queue

    import benchmarks.rq_job as job

    connection = redis.Redis.from_url(url)
    queue = Queue("bench", connection=connection)
    start, end = span(0.5)
    registry = queue.finished_job_registry
    before = registry.count
    t = time.perf_counter()
    for _ in range(n):
        queue.enqueue(job.run_strategy, str(home), TRIVIAL, ["SYN0001"], start, end)
    while registry.count - before < n:
        if queue.failed_job_registry.count:
            raise RuntimeError("an RQ job failed")
        time.sleep(0.005)
    return n / (time.perf_counter() - t)


@contextmanager
def celery_worker(url: str, concurrency: int) -> Iterator[None]:
    env = dict(os.environ, STRATEGYQ_BENCH_CELERY_URL=url, PYTHONPATH=str(HERE.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchmarks.celery_job", "worker",
         "--pool=prefork", f"--concurrency={concurrency}", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(60)


def throughput_celery(url: str, home: Path, n: int) -> float:
    os.environ["STRATEGYQ_BENCH_CELERY_URL"] = url
    from benchmarks import celery_job

    celery_job.app.conf.broker_url = url
    celery_job.app.conf.result_backend = url
    start, end = span(0.5)
    t = time.perf_counter()
    results = [
        celery_job.run_strategy.delay(str(home), TRIVIAL, ["SYN0001"], start, end) for _ in range(n)
    ]
    for r in results:
        r.get(timeout=120)
    return n / (time.perf_counter() - t)


def main() -> dict[str, Any]:
    console = Console()
    out: dict[str, Any] = {"throughput": {}, "load": []}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-peers-") as tmp:
        home = Path(tmp)
        write_synthetic(home / "data", 10, 1, seed=1)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        client = redis.Redis.from_url(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")
        # Celery names a Unix socket redis+socket:// (its keys do not meet ours or RQ's).
        celery_url = (
            url.replace("unix://", "redis+socket://", 1) if url.startswith("unix://") else url
        )
        for concurrency in (1, 2):
            samples: dict[str, list[float]] = {"strategyq": [], "RQ": [], "Celery prefork": []}
            with (
                worker(env, concurrency) as proc,
                rq_workers(url, home, concurrency),
                celery_worker(celery_url, concurrency),
            ):
                wait_ready(client, proc)
                console.print(f"concurrency {concurrency}: warming up the three workers")
                throughput_ours(client, 20)
                throughput_rq(url, home, 20)
                throughput_celery(celery_url, home, 20)
                console.print(f"concurrency {concurrency}: {ROUNDS} rounds of {TASKS} tasks each")
                for _ in range(ROUNDS):  # interleaved: each sees the same machine
                    samples["strategyq"].append(throughput_ours(client, TASKS))
                    samples["RQ"].append(throughput_rq(url, home, TASKS))
                    samples["Celery prefork"].append(throughput_celery(celery_url, home, TASKS))
                    out["load"].append(os.getloadavg()[0])
            out["throughput"][concurrency] = {k: statistics.median(v) for k, v in samples.items()}
        server.stop()
    out["grid"] = bench_grid.main()
    out["memory"] = bench_memory.main()
    out["vectorbt"] = bench_vectorbt.main()
    _print(out)
    return out


def _print(out: dict[str, Any]) -> None:
    table = Table(title="strategyq beside its peers; each ratio is strategyq / yardstick")
    for column in ("what", "strategyq", "yardstick, same run", "ratio", "load avg"):
        table.add_column(column, justify="left" if column == "what" else "right")
    load = f"{statistics.median(out['load']):.2f}"
    for concurrency, tp in out["throughput"].items():
        ours = tp["strategyq"]
        for name in ("RQ", "Celery prefork"):
            table.add_row(
                f"trivial tasks/s, concurrency {concurrency}", f"{ours:.1f}",
                f"{name}: {tp[name]:.1f}", f"{ours / tp[name]:.2f}x", load,
            )  # fmt: skip
    grid = out["grid"]["median_s"]
    table.add_row(
        "10 x 10 SMA sweep, AAPL, executor work (ms)", f"{grid['whole grid'] * 1000:.0f}",
        f"vectorbt warm: {grid['vectorbt'] * 1000:.0f}",
        f"{grid['whole grid'] / grid['vectorbt']:.2f}x the time", f"{out['grid']['load']:.2f}",
    )  # fmt: skip
    rows = {(r["slice"], r["mode"]): r for r in out["memory"]["rows"]}
    for slice_ in ("1 y", "20 y"):
        new, old = rows[(slice_, "windowed")], rows[(slice_, "whole")]
        for phase in ("cold", "warm"):
            table.add_row(
                f"peak MiB per million rows, {slice_} of a 20 y store, {phase}",
                f"{new[f'{phase}_mib_per_mrow']:.0f}",
                f"whole-history read: {old[f'{phase}_mib_per_mrow']:.0f}",
                f"{new[f'{phase}_mib_per_mrow'] / old[f'{phase}_mib_per_mrow']:.2f}x",
                f"{new['load']:.2f}",
            )
    Console(width=140).print(table)
