"""The fork server and shared-memory frames against the code before them, in one run.

``python -m benchmarks isolation`` (base commit: ``STRATEGYQ_BENCH_ISOLATION_BASE``,
default ``fbe4c18``, the last commit whose sandbox host forked the children itself).
As ``python -m benchmarks queue_cpu`` does, the base's files are exported and its
worker runs from there; both workers serve the same embedded Valkey and the same
synthetic store, in alternating rounds, so machine load hits both alike.

Two figures, each as new / base:

- CPU per trivial one-symbol backtest, all processes (worker, executor, sandbox
  host, fork server, children; the producer is this process);
- latency of a large backtest (100 symbols × 2 years, one at a time).

And what a frame handed to a child costs: the sealed memfd is written once per
frame (then cached by the sandbox host), and a child maps it; the bytes a child
copies are measured as the growth of its private dirty memory while it builds its
DataFrame over the mapping.
"""

from __future__ import annotations

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

from benchmarks import bench_queue_cpu as cpu
from benchmarks.bench_e2e import TRIVIAL, cpu_s, descendants, span, syms
from strategyq import add_backtest_task, wait_for_result
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

BASE = os.environ.get("STRATEGYQ_BENCH_ISOLATION_BASE", "fbe4c18")
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_ROUNDS", "3"))
TRIVIAL_TASKS = 150
LARGE_TASKS = 6
LARGE = (
    "def large(df):\n"
    "    close = df.pivot(index='date', columns='ticker', values='close')\n"
    "    fast, slow = close.rolling(10).mean(), close.rolling(50).mean()\n"
    "    cross = (fast > slow) & (fast.shift(1) <= slow.shift(1))\n"
    "    hits = cross.stack()\n"
    "    hits = hits[hits]\n"
    "    return [{'ticker': t, 'date': str(d)} for d, t in hits.index[:2000]]\n"
)


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _run(client: redis.Redis, code: str, symbols: list[str], years: float, n: int) -> float:
    """Wall seconds per task, one task at a time."""
    start, end = span(years)
    total = 0.0
    for _ in range(n):
        task_id = uuid.uuid4().hex
        began = time.perf_counter()
        add_backtest_task(client, task_id, code, symbols, start, end)
        result = wait_for_result(client, task_id, 300)
        total += time.perf_counter() - began
        if result is None or result["status"] != "completed":
            raise RuntimeError(f"benchmark task failed: {result}")
    return total / n


def _measure(client: redis.Redis, env: dict[str, str], src: Path | None) -> dict[str, float]:
    with cpu.worker(env, src) as proc:
        cpu.wait_ready(client, proc)
        _run(client, TRIVIAL, ["SYN0001"], 0.5, 20)
        _run(client, LARGE, syms(100), 2, 1)
        t0 = os.times()
        before = cpu_s(descendants(proc.pid))
        _run(client, TRIVIAL, ["SYN0001"], 0.5, TRIVIAL_TASKS)
        after = cpu_s(descendants(proc.pid))
        t1 = os.times()
        latency = _run(client, LARGE, syms(100), 2, LARGE_TASKS)
    producer = (t1.user + t1.system) - (t0.user + t0.system)
    return {
        "cpu_ms": 1000 * (after - before + producer) / TRIVIAL_TASKS,
        "large_ms": 1000 * latency,
    }


def _private_dirty_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    return 0


def frame_copy_bytes(home: Path) -> dict[str, int]:
    """The 100-symbol × 2-year frame: memfd size, and what a child copies to use it."""
    from strategyq.data import MarketData
    from strategyq.sandbox.shared_frame import attach, share

    start, end = span(2)
    market = MarketData(home / "data", cache_mb=0)
    frame = market.load(syms(100), start, end, adjusted=True, warmup_sessions=250,
                        lookback_sessions=None).frame  # fmt: skip
    shared = share(frame)
    tiny = share(frame.head(1).reset_index(drop=True))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - measured in the child, reported through the pipe
        # A one-row frame first: what the code path itself touches is not the frame's.
        attach(tiny.fd)
        before = _private_dirty_kib()
        df = attach(shared.fd)
        grew = _private_dirty_kib() - before
        os.write(write_fd, f"{grew} {len(df)}".encode())
        os._exit(0)
    os.close(write_fd)
    grew_kib, rows = (int(x) for x in os.read(read_fd, 100).split())
    os.close(read_fd)
    os.waitpid(pid, 0)
    return {
        "rows": rows,
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
        "memfd_bytes": shared.size,
        "child_copied_bytes": grew_kib * 1024,
    }


def main() -> dict[str, Any]:
    console = Console()
    samples: dict[tuple[str, str], list[float]] = {}
    loads: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-iso-") as tmp,
        cpu.base_tree_of(BASE) as tree,
    ):
        home = Path(tmp)
        write_synthetic(home / "data", 100, 2.5, seed=1)
        copies = frame_copy_bytes(home)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        try:
            client = redis.Redis.from_url(url)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "STRATEGYQ_"))}  # fmt: skip
            env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")
            for _ in range(ROUNDS):
                for label, src in (("base", tree / "src"), ("new", None)):
                    loads.append(_load())
                    for key, value in _measure(client, env, src).items():
                        samples.setdefault((key, label), []).append(value)
        finally:
            server.stop()
    table = Table(
        title=f"fork server + shared frames vs base {BASE}: median of {ROUNDS} alternating "
        f"rounds (load average at each round: {', '.join(loads)})"
    )
    for column in ("figure", "base", "new", "new / base", "target", "met"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    rows = []
    names = {"cpu_ms": "CPU per trivial task, all processes (ms)",
             "large_ms": "large backtest latency, 100 symbols × 2 years (ms)"}  # fmt: skip
    for key, name in names.items():
        base = statistics.median(samples[(key, "base")])
        new = statistics.median(samples[(key, "new")])
        ratio = new / base
        rows.append({"figure": key, "base": base, "new": new, "ratio": ratio,
                     "base_samples": samples[(key, "base")],
                     "new_samples": samples[(key, "new")]})  # fmt: skip
        table.add_row(name, f"{base:.1f}", f"{new:.1f}", f"{ratio:.2f}×", "≤ 1.10×",
                      "yes" if ratio <= 1.10 else "[red]no[/]")  # fmt: skip
    console.print(table)
    frames = Table(title="a 100-symbol × 2-year frame handed to a child")
    frames.add_column("what")
    frames.add_column("bytes", justify="right")
    frames.add_row("rows", f"{copies['rows']:,}")
    frames.add_row("the frame in the sandbox host (pandas, deep)", f"{copies['frame_bytes']:,}")
    frames.add_row("its sealed memfd (written once, cached)", f"{copies['memfd_bytes']:,}")
    frames.add_row("copied by each child to use it", f"{copies['child_copied_bytes']:,}")
    console.print(frames)
    return {"base": BASE, "rows": rows, "frame": copies, "load_averages": loads}
