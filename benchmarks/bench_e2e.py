"""End to end through the real path: producer API → Redis → worker process → sandbox → result.

``make bench-e2e`` (or ``python -m benchmarks e2e``). Uses a private embedded
Valkey unless ``REDIS_URL`` is set, and a synthetic universe of 1,000
symbols × 10 years in a temporary ``STRATEGYQ_HOME``. Prints the table and
writes ``benchmarks/results/e2e.json``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.timing import timed
from strategyq import add_backtest_task, add_screening_task, get_task_result, wait_for_result
from strategyq.data import write_synthetic
from strategyq.data.synth import SYNTH_END
from strategyq.embedded_valkey import EmbeddedServer
from strategyq.examples import source
from strategyq.protocol.results import Status, dumps, envelope

GAP_UP = source("gap_up")
TRIVIAL = (
    "def trivial(df):\n"
    "    return [{'ticker': df['ticker'].iloc[0], 'date': str(df['date'].iloc[-1])}]\n"
)
HERE = Path(__file__).parent
TP_TASKS, TP_ROUNDS = 500, 3  # trivial tasks per throughput run, runs per configuration


def syms(n: int) -> list[str]:
    return [f"SYN{i:04d}" for i in range(1, n + 1)]


def span(years: float) -> tuple[str, str]:
    start = SYNTH_END - timedelta(days=int(365.25 * years) - 1)
    return start.isoformat(), SYNTH_END.isoformat()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return found


def pss_mib(pid: int) -> float:
    """Memory of a worker now: the PSS of the process and all its descendants, in MiB.

    PSS splits each page shared between processes (fork's copy-on-write, the
    frame the executor and its sandbox host both cache) among them, so the sum
    is the real footprint rather than a multiple count.
    """
    total = 0.0
    for p in descendants(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
    return total


class PeakMemory:
    """Samples :func:`pss_mib` every 20 ms in a thread; ``peak`` is the largest sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, pss_mib(self.pid))

    def __enter__(self) -> PeakMemory:
        self.peak = pss_mib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def worker(env: dict[str, str], concurrency: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategyq", "worker", "--metrics-port", "0",
         "--concurrency", str(concurrency), "--log-level", "WARNING"],
        env=env,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def wait_ready(client: redis.Redis, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.exists("strategyq:heartbeat:bench"):
            return
        if proc.poll() is not None:
            raise RuntimeError("the worker exited during start-up")
        time.sleep(0.01)
    raise RuntimeError("the worker did not start")


def run_backtest_task(
    client: redis.Redis, symbols: list[str], years: float, code: str = GAP_UP
) -> float:
    task_id = uuid.uuid4().hex
    start, end = span(years)
    t = time.perf_counter()
    add_backtest_task(client, task_id, code, symbols, start, end)
    result = wait_for_result(client, task_id, 120)
    elapsed = (time.perf_counter() - t) * 1000
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"benchmark task failed: {result}")
    return elapsed


def run_screen_task(client: redis.Redis, symbols: list[str]) -> float:
    task_id = uuid.uuid4().hex
    t = time.perf_counter()
    add_screening_task(client, task_id, GAP_UP, symbols, 50)
    result = wait_for_result(client, task_id, 120)
    elapsed = (time.perf_counter() - t) * 1000
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"benchmark task failed: {result}")
    return elapsed


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """CPU seconds used by ``pids`` and their reaped children (sandbox children included)."""
    total = 0
    for p in pids:
        with suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


class CpuMeter:
    """CPU of a worker (all its processes), the Redis server (when local) and this producer.

    Tells how many of the machine's cores one configuration keeps busy, which
    is what decides whether a second slot has anything left to use.
    """

    def __init__(self, worker_pid: int, redis_pid: int | None) -> None:
        self.pids = descendants(worker_pid) + ([redis_pid] if redis_pid else [])
        self.cpu = 0.0
        self.wall = 0.0

    def __enter__(self) -> CpuMeter:
        times = os.times()
        self._start = (cpu_s(self.pids) + times.user + times.system, time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        times = os.times()
        self.cpu = cpu_s(self.pids) + times.user + times.system - self._start[0]
        self.wall = time.perf_counter() - self._start[1]


def throughput_ours(client: redis.Redis, n: int) -> float:
    ids = [uuid.uuid4().hex for _ in range(n)]
    start, end = span(0.5)
    t = time.perf_counter()
    for task_id in ids:
        add_backtest_task(client, task_id, TRIVIAL, ["SYN0001"], start, end)
    for task_id in ids:
        result = wait_for_result(client, task_id, 120)
        if result is None or result["status"] != "completed":
            raise RuntimeError(f"benchmark task failed: {result}")
    return n / (time.perf_counter() - t)


RQ_WORKER = """
import sys
from pathlib import Path
import redis
from rq import Queue, Worker
sys.path.insert(0, sys.argv[3])
import rq_job
from strategyq.data import MarketData
home, url = sys.argv[1], sys.argv[2]
# Warm like our executor: imports done and the data cached before the fork.
rq_job._MARKETS[home] = MarketData(Path(home) / "data")
rq_job._MARKETS[home].load(["SYN0001"], sys.argv[4], sys.argv[5])
connection = redis.Redis.from_url(url)
Worker([Queue("bench", connection=connection)], connection=connection).work(logging_level="WARNING")
"""


def throughput_rq(url: str, home: Path, n: int) -> float:
    from rq import Queue

    import benchmarks.rq_job as job

    connection = redis.Redis.from_url(url)
    queue = Queue("bench", connection=connection)
    start, end = span(0.5)
    proc = subprocess.Popen(
        [sys.executable, "-c", RQ_WORKER, str(home), url, str(HERE), start, end],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not connection.keys("rq:worker:*"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the RQ worker did not start")
            time.sleep(0.05)
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
    finally:
        proc.terminate()
        proc.wait(30)


def row(table: list[dict[str, Any]], name: str, values: list[float], target: str, ok: bool) -> None:
    table.append(
        {
            "row": name,
            "p50": statistics.median(values),
            "p95": pct(values, 0.95),
            "n": len(values),
            "target": target,
            "met": ok,
        }
    )


def main() -> dict[str, Any]:
    console = Console()
    rows: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-e2e-") as tmp:
        home = Path(tmp)
        console.print("writing 1,000 synthetic symbols × 10 years …")
        write_synthetic(home / "data", 1000, 10, seed=1)
        server = None if os.environ.get("REDIS_URL") else EmbeddedServer(home / "valkey")
        url = os.environ.get("REDIS_URL") or server.ensure_running()  # type: ignore[union-attr]
        client = redis.Redis.from_url(url)
        client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")

        start, end = span(1)
        instances = [
            {"ticker": "SYN0001", "date": "2024-01-02", "signal": True, "score": i / 100,
             "message": f"instance {i}"} for i in range(100)
        ]  # fmt: skip
        client.set(
            "task_result:bench-read", dumps(envelope(Status.COMPLETED, {"instances": instances}))
        )
        # Interleaved, so the yardstick and what it measures see the same machine.
        ping: list[float] = []
        enqueue: list[float] = []
        read: list[float] = []
        for _ in range(3000):
            ping += timed(client.ping, 1)
            enqueue += timed(
                lambda: add_backtest_task(
                    client, uuid.uuid4().hex, GAP_UP, ["SYN0001"], start, end
                ),
                1,
            )
            read += timed(lambda: get_task_result(client, "bench-read"), 1)
        client.delete("strategy_queue")
        p_ping = statistics.median(ping)
        row(rows, "Redis PING round trip", ping, "—", True)
        for name, values in (
            ("enqueue (add_backtest_task)", enqueue),
            ("result read (get_task_result, 100 instances)", read),
        ):
            ratio = statistics.median(values) / p_ping
            row(rows, f"{name} = {ratio:.2f}× PING", values, "≤ 2× PING", ratio <= 2)

        with worker(env) as proc:
            wait_ready(client, proc)
            cold = [run_backtest_task(client, syms(100), 2)]
            row(rows, "large backtest, cold worker (100 × 2 y)", cold, "≤ 1500 ms", cold[0] <= 1500)
            screen = [run_screen_task(client, syms(500)) for _ in range(21)][1:]
            row(rows, "screening, 500 symbols, gap-up", screen, "≤ 40 ms",
                statistics.median(screen) <= 40)  # fmt: skip
            small = [run_backtest_task(client, syms(10), 1) for _ in range(31)][1:]
            row(rows, "small backtest (10 × 1 y)", small, "≤ 30 ms", statistics.median(small) <= 30)
            large = [run_backtest_task(client, syms(100), 2) for _ in range(21)][1:]
            row(rows, "large backtest (100 × 2 y)", large, "≤ 100 ms",
                statistics.median(large) <= 100)  # fmt: skip
            with PeakMemory(proc.pid) as memory:
                huge = [run_backtest_task(client, syms(1000), 10) for _ in range(4)][1:]
            row(rows, f"huge backtest (1000 × 10 y), peak memory {memory.peak:.0f} MiB", huge,
                "≤ 4000 ms, memory ≤ 3072 MiB",
                statistics.median(huge) <= 4000 and memory.peak <= 3072)  # fmt: skip
        redis_pid = None if server is None else int(server.pidfile.read_text())
        meters: dict[int, CpuMeter] = {}
        tps: dict[int, list[float]] = {}
        for concurrency in (1, 2):
            with worker(env, concurrency=concurrency) as proc:
                wait_ready(client, proc)
                throughput_ours(client, 50)
                with CpuMeter(proc.pid, redis_pid) as meters[concurrency]:
                    tps[concurrency] = [throughput_ours(client, TP_TASKS) for _ in range(TP_ROUNDS)]
        tp1, tp2 = tps[1], tps[2]
        row(rows, "throughput, trivial, concurrency 1 (tasks/s)", tp1, "≥ 100/s",
            statistics.median(tp1) >= 100)  # fmt: skip
        ratio2 = statistics.median(tp2) / statistics.median(tp1)
        row(rows, f"throughput, concurrency 2 (tasks/s) = {ratio2:.2f}× c1", tp2, "≥ 1.7× c1",
            ratio2 >= 1.7)  # fmt: skip
        cores = os.cpu_count() or 1
        for concurrency, meter in meters.items():
            busy = meter.cpu / meter.wall
            per_task_ms = 1000 * meter.cpu / (TP_TASKS * TP_ROUNDS)
            name = f"… CPU per task at concurrency {concurrency} (ms, all processes); "
            row(rows, name + f"cores busy {busy:.2f} of {cores}", [per_task_ms], "—", True)

        ours_rq: list[float] = []
        theirs: list[float] = []
        with worker(env) as proc:
            wait_ready(client, proc)
            throughput_ours(client, 50)
            for _ in range(2):
                ours_rq.append(throughput_ours(client, 300))
                theirs.append(throughput_rq(url, home, 300))
        rq_ratio = statistics.median(ours_rq) / statistics.median(theirs)
        row(rows, f"RQ forking Worker, same job, no sandbox (tasks/s); ours/RQ = {rq_ratio:.2f}×",
            theirs, "ours ≥ 2× RQ", rq_ratio >= 2)  # fmt: skip

        for n_sym in (10, 100, 1000):
            for years in (1, 2, 10):
                with worker(env) as proc:
                    wait_ready(client, proc)
                    with PeakMemory(proc.pid) as memory:
                        first = run_backtest_task(client, syms(n_sym), years)
                        warm = [run_backtest_task(client, syms(n_sym), years) for _ in range(3)]
                    scale.append(
                        {
                            "symbols": n_sym,
                            "years": years,
                            "rows": int(n_sym * years * 252),
                            "cold_ms": first,
                            "warm_ms": statistics.median(warm),
                            "peak_memory_mib": memory.peak,
                        }
                    )
        if server is not None:
            server.stop()

    where = "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded Valkey"
    table = Table(title=f"strategyq end to end — {os.cpu_count()} cores, Redis at {where}")
    for c in ("row (ms unless noted)", "p50", "p95", "n", "target", "met"):
        table.add_column(c)
    for r in rows:
        unit = 1.0
        table.add_row(r["row"], f"{r['p50'] * unit:.3f}", f"{r['p95'] * unit:.3f}", str(r["n"]),
                      r["target"], "yes" if r["met"] else "[red]no[/]")  # fmt: skip
    console.print(table)
    scale_table = Table(title="scale: backtest time and worker peak memory (PSS)")
    for c in ("symbols", "years", "rows", "cold ms", "warm ms", "warm µs/row", "peak MiB"):
        scale_table.add_column(c, justify="right")
    for s in scale:
        scale_table.add_row(str(s["symbols"]), str(s["years"]), f"{s['rows']:,}",
                            f"{s['cold_ms']:.1f}", f"{s['warm_ms']:.1f}",
                            f"{1000 * s['warm_ms'] / s['rows']:.2f}",
                            f"{s['peak_memory_mib']:.0f}")  # fmt: skip
    console.print(scale_table)
    return {"cores": os.cpu_count(), "rows": rows, "scale": scale}
