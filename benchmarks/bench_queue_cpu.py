"""Per-task CPU at concurrency 1: this tree against a base commit, in one run.

``python -m benchmarks queue_cpu`` (base commit: ``STRATEGYQ_BENCH_BASE``,
default ``4b09078``, the last commit before the queue core was split into
``strategyq.queue``/``worker``/``executor``). The base's files are exported
(``git archive``) into a temporary directory and its worker runs from there
(``PYTHONPATH``, which its executor and sandbox host inherit); both
workers serve the same embedded Valkey and the same synthetic store, in
alternating rounds, so machine load hits both alike. The yardstick is the
base's own figure: the ratio new/base is what the table reports.

The producer (this process) runs this tree's code in both columns: its
figure shows the noise floor. Two workloads: trivial one-symbol backtests (the queue's own overhead
dominates) and backtests naming 2,000 symbols of which one is stored (the
task's parse and validation dominate: what "parse once" saves).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import TRIVIAL, cpu_s, descendants, span
from strategyq import add_backtest_task, wait_for_result
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
BASE = os.environ.get("STRATEGYQ_BENCH_BASE", "4b09078")
TASKS = 400
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_ROUNDS", "5"))
WIDE_SYMBOLS = 2000


@contextmanager
def base_tree() -> Iterator[Path]:
    """The base commit's files, exported into a temporary directory (removed afterwards)."""
    with base_tree_of(BASE) as tree:
        yield tree


@contextmanager
def base_tree_of(commit: str) -> Iterator[Path]:
    """``commit``'s files, exported into a temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-base-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@contextmanager
def worker(env: dict[str, str], src: Path | None) -> Iterator[subprocess.Popen[bytes]]:
    run_env = dict(env)
    if src is not None:
        run_env["PYTHONPATH"] = str(src)
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategyq", "worker", "--metrics-port", "0", "--log-level",
         "WARNING"],
        env=run_env,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def wait_ready(client: redis.Redis, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.exists("strategyq:heartbeat:bench"):
            return
        if proc.poll() is not None:
            raise RuntimeError("the worker exited during start-up")
        time.sleep(0.01)
    raise RuntimeError("the worker did not start")


def run_tasks(client: redis.Redis, n: int, symbols: list[str], code: str = TRIVIAL) -> None:
    start, end = span(0.5)
    ids = [uuid.uuid4().hex for _ in range(n)]
    for task_id in ids:
        add_backtest_task(client, task_id, code, symbols, start, end)
    for task_id in ids:
        result = wait_for_result(client, task_id, 120)
        if result is None or result["status"] != "completed":
            raise RuntimeError(f"benchmark task failed: {result}")


ROLES = ("worker", "executor + sandbox", "producer", "all")


def cpu_per_task_ms(
    client: redis.Redis,
    env: dict[str, str],
    src: Path | None,
    symbols: list[str],
    n: int,
    code: str = TRIVIAL,
) -> dict[str, float]:
    """CPU milliseconds per task of each process role (the producer is this process)."""
    with worker(env, src) as proc:
        wait_ready(client, proc)
        run_tasks(client, 30, symbols, code)
        below = descendants(proc.pid)[1:]  # executor, its sandbox host (children reaped there)
        t0 = os.times()
        w0, e0 = cpu_s([proc.pid]), cpu_s(below)
        run_tasks(client, n, symbols, code)
        w1, e1 = cpu_s([proc.pid]), cpu_s(below)
        t1 = os.times()
    producer = (t1.user + t1.system) - (t0.user + t0.system)
    spent = {"worker": w1 - w0, "executor + sandbox": e1 - e0, "producer": producer}
    spent["all"] = sum(spent.values())
    return {role: 1000 * seconds / n for role, seconds in spent.items()}


def main() -> dict[str, Any]:
    console = Console()
    wide = ["SYN0001"] + [f"MISSING{i:04d}" for i in range(WIDE_SYMBOLS - 1)]
    workloads = {"trivial, 1 symbol": (["SYN0001"], TASKS),
                 f"trivial, {WIDE_SYMBOLS} symbols named": (wide, TASKS // 3)}  # fmt: skip
    samples: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-cpu-") as tmp, base_tree() as tree:
        home = Path(tmp)
        write_synthetic(home / "data", 2, 1, seed=1)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        try:
            client = redis.Redis.from_url(url)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "STRATEGYQ_"))}  # fmt: skip
            env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")
            for _ in range(ROUNDS):
                for name, (symbols, n) in workloads.items():
                    for label, src in (("base", tree / "src"), ("new", None)):
                        for role, ms in cpu_per_task_ms(client, env, src, symbols, n).items():
                            samples.setdefault((name, role, label), []).append(ms)
        finally:
            server.stop()
    title = (
        "CPU per task at concurrency 1 (ms), by process, "
        f"median of {ROUNDS} alternating rounds; base = {BASE}"
    )
    table = Table(title=title)
    for column in ("workload", "process", "base", "new", "new / base", "target", "met"):
        table.add_column(column, justify="left" if column in ("workload", "process") else "right")
    rows = []
    for name in workloads:
        for role in ROLES:
            base = statistics.median(samples[(name, role, "base")])
            new = statistics.median(samples[(name, role, "new")])
            ratio = new / base if base else float("nan")
            # The target is on the whole; the parts show where it moved.
            met = ratio <= 1.05 if role == "all" else None
            rows.append({"workload": name, "process": role, "base_ms": base, "new_ms": new,
                         "ratio": ratio, "base_samples": samples[(name, role, "base")],
                         "new_samples": samples[(name, role, "new")]})  # fmt: skip
            table.add_row(name if role == ROLES[0] else "", role, f"{base:.2f}", f"{new:.2f}",
                          f"{ratio:.2f}×", "≤ 1.00× (±5 %)" if met is not None else "—",
                          "" if met is None else ("yes" if met else "[red]no[/]"))  # fmt: skip
    console.print(table)
    return {"base": BASE, "rows": rows}
