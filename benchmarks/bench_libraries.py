"""What the sandbox's libraries cost: per library, and the whole queue against a base commit.

``python -m benchmarks libraries``. Two parts, each with its yardstick from the
same run:

1. **Per library** (TA-Lib, SciPy, statsmodels, scikit-learn, each alone, then
   all): a fresh process warms the sandbox as a worker's sandbox host does
   (``warm_up(libraries)``), then reports its resident memory (what a worker's
   host holds; children share it copy-on-write) and the median wall time of a
   trivial strategy run in a forked, locked-down child (a child's start: fork,
   lock-down, run, answer, reap). Yardstick: the same with no optional library.
2. **The queue** (this tree with the default libraries, this tree with
   ``STRATEGYQ_SANDBOX_LIBRARIES=none``, the base commit
   ``STRATEGYQ_BENCH_LIBS_BASE``, default ``fbe4c18``, the code before the
   libraries were added, and ``STRATEGYQ_BENCH_LIBS_ONE_SERVER``, default
   ``e860113``, the default libraries in a single fork server), in alternating
   rounds against one embedded Valkey and one synthetic store: CPU per trivial
   task (all processes) and the latency of a large backtest (every stored
   symbol, several years; one unmeasured run first, which loads the store's
   files and forks each server's first child, then the median of
   ``LARGE_RUNS``), with that backtest's CPU (all the worker's processes),
   which a loaded machine disturbs far less than the latency. Target: default
   / base ≤ 1.15 for both. Each round's ratio to base (the two measured
   minutes apart) is printed too: their median and spread say how much of a
   difference is the machine's load. With the
   default libraries it also measures the CPU per task of a trivial strategy
   that imports TA-Lib (forked by the full fork server, where a plain
   strategy's child comes from the lean one) and the memory (PSS) of the
   worker's processes and of its fork servers.

``STRATEGYQ_BENCH_LIBS_PARTS`` (``per-library,queue`` by default) picks the parts.
"""

from __future__ import annotations

import json
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

from benchmarks.bench_e2e import cpu_s, descendants, pss_mib, span
from benchmarks.bench_queue_cpu import cpu_per_task_ms, wait_ready, worker
from strategyq import add_backtest_task, wait_for_result
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
BASE = os.environ.get("STRATEGYQ_BENCH_LIBS_BASE", "fbe4c18")
# The code with the default libraries in its one fork server, before the lean server.
ONE = os.environ.get("STRATEGYQ_BENCH_LIBS_ONE_SERVER", "e860113")
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_ROUNDS", "3"))
TASKS = int(os.environ.get("STRATEGYQ_BENCH_TASKS", "120"))
LARGE_SYMBOLS, LARGE_YEARS = 200, 4.0
LARGE_RUNS = int(os.environ.get("STRATEGYQ_BENCH_LARGE_RUNS", "5"))
CHILD_RUNS = 60
TARGET = 1.15
PARTS = os.environ.get("STRATEGYQ_BENCH_LIBS_PARTS", "per-library,queue").split(",")

LIBRARY_TASK = (
    "import talib\n"
    "def trivial(df):\n"
    "    sma = talib.SMA(df['close'].to_numpy(dtype=float), 3)\n"
    "    return [{'ticker': df['ticker'].iloc[0], 'date': str(df['date'].iloc[-1]),"
    " 'sma': float(sma[-1])}]\n"
)

LARGE = (
    "def cross(df):\n"
    "    hits = df[(df['close'] > df['sma_20']) & (df['rsi'] < 45)]\n"
    "    return [{'ticker': r.ticker, 'date': r.date, 'signal': True} for r in hits.itertuples()]\n"
)

_PROBE = """
import json, os, resource, statistics, sys, time
from strategyq.sandbox import run, warm_up
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits
libraries = tuple(n for n in sys.argv[1].split(',') if n)
t0 = time.perf_counter()
warm_up(libraries)
warm_s = time.perf_counter() - t0
with open('/proc/self/status') as f:
    rss_kb = next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))
frame = warm_frame()
limits = SandboxLimits(time_limit_s=20, memory_mb=512, answer_max_bytes=1 << 16)
code = "def s(df):\\n    return [{'ticker': 'X', 'n': len(df)}]\\n"
run(code, frame, limits)
def cpu():
    mine = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime
times = []
c0 = cpu()
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    run(code, frame, limits)
    times.append(time.perf_counter() - t)
cpu_ms = 1000 * (cpu() - c0) / int(sys.argv[2])
print(json.dumps({'rss_mb': rss_kb / 1024, 'warm_s': warm_s,
                  'child_ms': 1000 * statistics.median(times), 'child_cpu_ms': cpu_ms}))
"""


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def probe(libraries: tuple[str, ...]) -> dict[str, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(libraries), str(CHILD_RUNS)],
        check=True, capture_output=True, text=True, env=env, cwd=ROOT,
    ).stdout  # fmt: skip
    values: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return values


@contextmanager
def base_tree(commit: str = BASE) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-libs-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def large_latency_s(
    client: redis.Redis, symbols: list[str], worker_pid: int
) -> tuple[float, float]:
    """The median latency of the large backtest (after one unmeasured run: the first
    reads the store's files from disk and forks each server's first child), and the CPU
    seconds the worker's processes spent per measured run."""
    start, end = span(LARGE_YEARS - 0.5)
    took = []
    cpu = 0.0
    for attempt in range(LARGE_RUNS + 1):
        processes = descendants(worker_pid)
        c0 = cpu_s(processes)
        task_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        add_backtest_task(client, task_id, LARGE, symbols, start, end)
        result = wait_for_result(client, task_id, 300)
        if result is None or result["status"] != "completed":
            raise RuntimeError(f"benchmark task failed: {result}")
        if attempt:
            took.append(time.perf_counter() - t0)
            cpu += cpu_s(processes) - c0
    return statistics.median(took), cpu / LARGE_RUNS


def per_library(console: Console) -> list[dict[str, Any]]:
    from strategyq.sandbox.policy import LIBRARIES

    configs: list[tuple[str, tuple[str, ...]]] = [("none", ())]
    configs += [(name, (name,)) for name in LIBRARIES]
    configs.append(("all (default)", tuple(LIBRARIES)))
    found: dict[str, list[dict[str, float]]] = {}
    loads: dict[str, list[str]] = {}
    for _ in range(ROUNDS):  # alternating rounds, so the machine's load hits all alike
        for label, libraries in configs:
            found.setdefault(label, []).append(probe(libraries))
            loads.setdefault(label, []).append(load())
    rows: list[dict[str, Any]] = []
    for label, _libraries in configs:
        runs = found[label]
        rows.append({
            "libraries": label, "load": "/".join(loads[label]),
            **{key: statistics.median(r[key] for r in runs) for key in runs[0]},
            "child_ms_rounds": [r["child_ms"] for r in runs],
        })  # fmt: skip
    none = rows[0]
    table = Table(title=f"Per library: sandbox host memory and a child's run (median of "
                        f"{ROUNDS} alternating rounds of {CHILD_RUNS} runs)")  # fmt: skip
    for column in ("libraries", "host RSS MB", "+ MB vs none", "warm-up s", "child run ms",
                   "× none", "CPU per child ms", "× none ", "load"):  # fmt: skip
        table.add_column(column, justify="left" if column == "libraries" else "right")
    for row in rows:
        row["rss_ratio"] = row["rss_mb"] / none["rss_mb"]
        row["child_ratio"] = row["child_ms"] / none["child_ms"]
        row["cpu_ratio"] = row["child_cpu_ms"] / none["child_cpu_ms"]
        added = row["rss_mb"] - none["rss_mb"]
        table.add_row(row["libraries"], f"{row['rss_mb']:.0f}", f"{added:+.0f}",
                      f"{row['warm_s']:.1f}", f"{row['child_ms']:.1f}",
                      f"{row['child_ratio']:.2f}×", f"{row['child_cpu_ms']:.1f}",
                      f"{row['cpu_ratio']:.2f}×", row["load"])  # fmt: skip
    console.print(table)
    return rows


def memory_mib(worker_pid: int) -> tuple[float, float]:
    """PSS of the worker and all its processes, and of its fork servers alone (MiB)."""
    servers = [
        p for p in descendants(worker_pid)
        if b"strategyq.sandbox.zygote" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]  # fmt: skip
    return pss_mib(worker_pid), sum(pss_mib(p) for p in servers)


def queue(console: Console) -> list[dict[str, Any]]:
    samples: dict[tuple[str, str], list[float]] = {}
    loads: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-libs-") as tmp,
        base_tree() as tree,
        base_tree(ONE) as one_tree,
    ):
        home = Path(tmp)
        write_synthetic(home / "data", LARGE_SYMBOLS, LARGE_YEARS, seed=1)
        symbols = [f"SYN{i:04d}" for i in range(1, LARGE_SYMBOLS + 1)]
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        try:
            client = redis.Redis.from_url(url)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "STRATEGYQ_"))}  # fmt: skip
            env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")
            configs = (
                ("base", tree / "src", env),
                ("one server", one_tree / "src", env),
                ("default libraries", None, env),
                ("no extra libraries", None, {**env, "STRATEGYQ_SANDBOX_LIBRARIES": "none"}),
            )
            for _ in range(ROUNDS):
                for label, src, run_env in configs:
                    cpu = cpu_per_task_ms(client, run_env, src, ["SYN0001"], TASKS)["all"]
                    samples.setdefault(("cpu", label), []).append(cpu)
                    if label == "default libraries":
                        lib = cpu_per_task_ms(client, run_env, src, ["SYN0001"], TASKS,
                                              LIBRARY_TASK)["all"]  # fmt: skip
                        samples.setdefault(("cpu_lib", label), []).append(lib)
                    with worker(run_env, src) as proc:
                        wait_ready(client, proc)
                        latency, large_cpu = large_latency_s(client, symbols, proc.pid)
                        if label == "default libraries":
                            # After a library task too, so both fork servers have forked.
                            cpu_per_task_one(client, LIBRARY_TASK)
                        total, servers = memory_mib(proc.pid)
                    samples.setdefault(("large", label), []).append(latency)
                    samples.setdefault(("large_cpu", label), []).append(large_cpu)
                    samples.setdefault(("pss", label), []).append(total)
                    samples.setdefault(("pss_servers", label), []).append(servers)
                    loads.append(load())
        finally:
            server.stop()
    table = Table(title=f"The queue, median of {ROUNDS} alternating rounds; base = {BASE}; "
                        f"one server = {ONE} (default libraries, one fork server); "
                        f"load averages {', '.join(loads)}")  # fmt: skip
    for column in ("measure", "base", "one server", "one / base", "default libraries",
                   "default / base", "default / one", "no extra libraries", "none / base",
                   "target", "met"):  # fmt: skip
        table.add_column(column, justify="left" if column == "measure" else "right")
    rows = []
    for key, title, unit in (("cpu", f"CPU per trivial task ({TASKS} tasks)", "ms"),
                             ("large", f"large backtest latency ({LARGE_SYMBOLS} symbols, "
                                       f"{LARGE_YEARS - 0.5:g} years)", "s"),
                             ("large_cpu", "large backtest CPU, all processes", "s")):  # fmt: skip
        base = statistics.median(samples[(key, "base")])
        new = statistics.median(samples[(key, "default libraries")])
        none = statistics.median(samples[(key, "no extra libraries")])
        one = statistics.median(samples[(key, "one server")])
        rows.append({"measure": key, "base": base, "default": new, "none": none, "one": one,
                     "ratio": new / base, "none_ratio": none / base, "one_ratio": one / base,
                     "samples": {label: samples[(key, label)] for label in
                                 ("base", "one server", "default libraries",
                                  "no extra libraries")}})  # fmt: skip
        table.add_row(title, f"{base:.2f} {unit}", f"{one:.2f} {unit}", f"{one / base:.2f}×",
                      f"{new:.2f} {unit}", f"{new / base:.2f}×", f"{new / one:.2f}×",
                      f"{none:.2f} {unit}", f"{none / base:.2f}×", f"≤ {TARGET}×",
                      "yes" if new / base <= TARGET else "[red]no[/]")  # fmt: skip
    console.print(table)
    paired = Table(title="Each round's ratio to base (default libraries / base, measured "
                         "minutes apart): median and spread")  # fmt: skip
    for column in ("measure", "rounds", "median", "min", "max"):
        paired.add_column(column, justify="left" if column == "measure" else "right")
    for key in ("cpu", "large", "large_cpu"):
        ratios = [
            new / base
            for new, base in zip(
                samples[(key, "default libraries")], samples[(key, "base")], strict=True
            )
        ]
        paired.add_row(key, " ".join(f"{r:.2f}" for r in ratios),
                       f"{statistics.median(ratios):.2f}×", f"{min(ratios):.2f}×",
                       f"{max(ratios):.2f}×")  # fmt: skip
        rows.append({"measure": f"{key}_round_ratios", "ratios": ratios})
    console.print(paired)
    base_cpu = statistics.median(samples[("cpu", "base")])
    lib_cpu = statistics.median(samples[("cpu_lib", "default libraries")])
    plain_cpu = statistics.median(samples[("cpu", "default libraries")])
    extra = Table(title="With the default libraries: a TA-Lib strategy's task, and memory "
                        f"(PSS, idle worker after the large backtests); load averages "
                        f"{', '.join(loads)}")  # fmt: skip
    for column in ("measure", "base", "one server", "default libraries", "no extra libraries",
                   "ratio"):  # fmt: skip
        extra.add_column(column, justify="left" if column == "measure" else "right")
    extra.add_row(f"CPU per TA-Lib task ({TASKS} tasks)", f"{base_cpu:.2f} ms (trivial)", "",
                  f"{lib_cpu:.2f} ms", "", f"{lib_cpu / base_cpu:.2f}× base trivial, "
                  f"{lib_cpu / plain_cpu:.2f}× default trivial")  # fmt: skip
    for key, title in (("pss", "worker, all processes"), ("pss_servers", "its fork servers")):
        values = {label: statistics.median(samples[(key, label)])
                  for label in ("base", "one server", "default libraries",
                                "no extra libraries")}  # fmt: skip
        extra.add_row(
            f"{title} MiB",
            f"{values['base']:.0f}",
            f"{values['one server']:.0f}",
            f"{values['default libraries']:.0f}",
            f"{values['no extra libraries']:.0f}",
            f"{values['default libraries'] / values['one server']:.2f}× one server",
        )
        rows.append({"measure": key, **values, "samples": {
            label: samples[(key, label)] for label in values}})  # fmt: skip
    rows.append({"measure": "cpu_lib", "default": lib_cpu, "base_trivial": base_cpu,
                 "samples": samples[("cpu_lib", "default libraries")]})  # fmt: skip
    console.print(extra)
    return rows


def cpu_per_task_one(client: redis.Redis, code: str) -> None:
    """Run one small task of ``code`` (so its fork server has forked a child)."""
    start, end = span(0.5)
    task_id = uuid.uuid4().hex
    add_backtest_task(client, task_id, code, ["SYN0001"], start, end)
    result = wait_for_result(client, task_id, 120)
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"benchmark task failed: {result}")


def main() -> dict[str, Any]:
    # Wide enough that the tables are not cut when the output is a file or a pipe.
    console = Console(width=max(Console().width, 160))
    found: dict[str, Any] = {"base": BASE}
    if "per-library" in PARTS:
        found["libraries"] = per_library(console)
    if "queue" in PARTS:
        found["queue"] = queue(console)
    return found
