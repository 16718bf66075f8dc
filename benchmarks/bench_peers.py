"""strategyq beside its peers and its floors: every target, re-measured in one run.

``make bench-peers`` installs the peers (RQ, Celery, vectorbt, backtesting.py) into
``.venv-peers`` and runs this; it ends with one summary table: each figure, its
yardstick from the same run, the ratio, the target, whether it is met, the load
average. The parts (each also runnable alone, each printing its own tables first):

- trivial tasks per second at concurrency 1 and 2: strategyq's worker (each task in
  a fresh sandbox child), RQ's forking worker (a fork per job, no sandbox) and
  Celery's prefork pool (long-lived children, no isolation: the ceiling for a queue
  without a sandbox), rounds interleaved (``STRATEGYQ_BENCH_PEERS_TASKS``,
  ``STRATEGYQ_BENCH_PEERS_ROUNDS``); Celery is left out when it is not installed;
- CPU per trivial task against a pandas-loaded ``fork()`` + ``_exit`` loop, and
  screening 500 symbols end to end against the same strategy in-process
  (``benchmarks task_cpu``; ``STRATEGYQ_BENCH_TASKS``, ``STRATEGYQ_BENCH_ROUNDS``);
- the 10 x 10 SMA sweep on AAPL (vectorbt, backtesting.py), 1,000 combinations on
  100 symbols, and the large backtest, 5,000 symbols x 20 years by default, with
  its memory per million rows for 1 y and the whole store (``benchmarks vectorbt``;
  ``STRATEGYQ_BENCH_SCALE_SYMBOLS``, ``STRATEGYQ_BENCH_SCALE_YEARS`` shrink it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks import bench_task_cpu, bench_vectorbt
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
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, STRATEGYQ_BENCH_CELERY_URL=url, PYTHONPATH=path)
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


def _celery_installed() -> bool:
    try:
        import celery  # noqa: F401
    except ImportError:
        return False
    return True


def throughput(console: Console) -> dict[str, Any]:
    """Trivial tasks per second of strategyq, RQ and (when installed) Celery at c=1 and 2."""
    out: dict[str, Any] = {"throughput": {}, "load": []}
    peers = ["strategyq", "RQ"] + (["Celery prefork"] if _celery_installed() else [])
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
        runs: dict[str, Callable[[int], float]] = {
            "strategyq": lambda n: throughput_ours(client, n),
            "RQ": lambda n: throughput_rq(url, home, n),
            "Celery prefork": lambda n: throughput_celery(celery_url, home, n),
        }
        try:
            for concurrency in (1, 2):
                samples: dict[str, list[float]] = {name: [] for name in peers}
                with ExitStack() as stack:
                    proc = stack.enter_context(worker(env, concurrency))
                    stack.enter_context(rq_workers(url, home, concurrency))
                    if "Celery prefork" in peers:
                        stack.enter_context(celery_worker(celery_url, concurrency))
                    wait_ready(client, proc)
                    console.print(f"concurrency {concurrency}: warming up {', '.join(peers)}")
                    for name in peers:
                        runs[name](20)
                    console.print(
                        f"concurrency {concurrency}: {ROUNDS} rounds of {TASKS} tasks each"
                    )
                    for _ in range(ROUNDS):  # interleaved: each sees the same machine
                        for name in peers:
                            samples[name].append(runs[name](TASKS))
                        out["load"].append(os.getloadavg()[0])
                out["throughput"][concurrency] = {
                    k: statistics.median(v) for k, v in samples.items()
                }
        finally:
            server.stop()
    return out


def main() -> dict[str, Any]:
    console = Console(width=160)
    out: dict[str, Any] = {"peers": throughput(console)}
    out["task_cpu"] = bench_task_cpu.main()
    out["vectorbt"] = bench_vectorbt.main()
    out["rows"] = summary(out)
    _print(console, out["rows"], out["vectorbt"]["scale"])
    return out


Row = dict[str, Any]


def _row(what: str, ours: str, yardstick: str, ratio: float | None, fmt: str,
         target: str, met: bool | None, load: float) -> Row:  # fmt: skip
    return {
        "what": what, "strategyq": ours, "yardstick": yardstick,
        "ratio": None if ratio is None else round(ratio, 3),
        "ratio_text": "—" if ratio is None else fmt.format(ratio),
        "target": target, "met": met, "load": round(load, 2),
    }  # fmt: skip


def summary(out: dict[str, Any]) -> list[Row]:
    """One row per figure the targets name, each beside its yardstick from this run."""
    rows: list[Row] = []
    cpu = out["task_cpu"]
    cpu_load = max(cpu["load"])
    ours, floor = cpu["per_task"][1]["all"][0], cpu["floor_ms"]
    rows.append(_row(
        "CPU per trivial task, all processes, c=1", f"{ours:.2f} ms",
        f"pandas-loaded fork()+_exit: {floor:.2f} ms", ours / floor, "{:.2f}x", "<= 1.5x",
        ours / floor <= 1.5, cpu_load,
    ))  # fmt: skip
    peers = out["peers"]
    load = statistics.median(peers["load"])
    tp = peers["throughput"]
    for concurrency in (1, 2):
        mine = tp[concurrency]["strategyq"]
        for name in ("RQ", "Celery prefork"):
            theirs = tp[concurrency].get(name)
            if theirs is None:
                rows.append(_row(f"trivial tasks/s, c={concurrency}", f"{mine:.1f}/s",
                                 f"{name}: not installed", None, "", "—", None, load))  # fmt: skip
                continue
            rows.append(_row(
                f"trivial tasks/s, c={concurrency}", f"{mine:.1f}/s", f"{name}: {theirs:.1f}/s",
                mine / theirs, "{:.2f}x", "—", None, load,
            ))  # fmt: skip
    one, two = tp[1]["strategyq"], tp[2]["strategyq"]
    rows.append(_row(
        "trivial tasks/s, c=2 against c=1", f"{two:.1f}/s", f"c=1: {one:.1f}/s", two / one,
        "{:.2f}x", ">= 1.8x", two / one >= 1.8, load,
    ))  # fmt: skip
    e2e, alone = cpu["screen_e2e_ms"], cpu["screen_alone_ms"]
    rows.append(_row(
        f"screening {bench_task_cpu.SCREEN_SYMBOLS} symbols, end to end", f"{e2e:.1f} ms",
        f"same strategy in-process: {alone:.1f} ms", e2e / alone, "{:.2f}x", "<= 1.3x",
        e2e / alone <= 1.3, cpu_load,
    ))  # fmt: skip
    vbt = out["vectorbt"]
    a = vbt["aapl"]
    rows.append(_row(
        "10 x 10 SMA sweep, AAPL 2000-2013, warm, submit to result",
        f"{a['strategyq_s'] * 1000:.0f} ms", f"vectorbt warm: {a['vectorbt_s'] * 1000:.0f} ms",
        a["strategyq_s"] / a["vectorbt_s"], "{:.2f}x the time", "<= 0.5x (2x faster)",
        a["strategyq_s"] / a["vectorbt_s"] <= 0.5, a["load"],
    ))  # fmt: skip
    rows.append(_row(
        "  same", f"{a['strategyq_s'] * 1000:.0f} ms",
        f"backtesting.py optimize: {a['backtesting_py_s'] * 1000:.0f} ms",
        a["strategyq_s"] / a["backtesting_py_s"], "{:.2f}x the time", "<= 0.2x (5x faster)",
        a["strategyq_s"] / a["backtesting_py_s"] <= 0.2, a["backtesting_py_load"],
    ))  # fmt: skip
    b = vbt["big"]
    rows.append(_row(
        "1,000 combinations, 100 symbols x 2 y, time", f"{b['strategyq_s']:.2f} s",
        f"vectorbt: {b['vectorbt_s']:.2f} s", b["strategyq_s"] / b["vectorbt_s"],
        "{:.2f}x the time", "<= 0.33x (3x faster)", b["strategyq_s"] / b["vectorbt_s"] <= 1 / 3,
        b["load"],
    ))  # fmt: skip
    rows.append(_row(
        "  same, peak memory", f"{b['strategyq_peak_mib']:,.0f} MiB",
        f"vectorbt: {b['vectorbt_peak_mib']:,.0f} MiB",
        b["strategyq_peak_mib"] / b["vectorbt_peak_mib"], "{:.2f}x", "<= 1.0x",
        b["strategyq_peak_mib"] <= b["vectorbt_peak_mib"], b["load"],
    ))  # fmt: skip
    s = vbt["scale"]
    whole, theirs = s["slices"][s["whole"]], s["vectorbt"]
    size = f"{s['symbols']:,} symbols x {s['whole']} ({whole['rows']:,} rows)"
    rows.append(_row(
        f"SMA 10/50 backtest, {size}, warm", f"{whole['warm_s']:.2f} s",
        f"vectorbt warm: {theirs['s']:.2f} s", whole["warm_s"] / theirs["s"], "{:.2f}x the time",
        "<= 0.5x", whole["warm_s"] / theirs["s"] <= 0.5, s["load"],
    ))  # fmt: skip
    rows.append(_row(
        "  same, peak memory, warm", f"{whole['warm_peak_mib']:,.0f} MiB",
        f"vectorbt: {theirs['peak_mib']:,.0f} MiB", whole["warm_peak_mib"] / theirs["peak_mib"],
        "{:.2f}x", "<= 1.0x", whole["warm_peak_mib"] <= theirs["peak_mib"], s["load"],
    ))  # fmt: skip
    per_vbt = theirs["peak_mib"] / (whole["rows"] / 1e6)
    for name, r in s["slices"].items():
        for phase in ("cold", "warm"):
            mine = r[f"{phase}_peak_mib"] / (r["rows"] / 1e6)
            rows.append(_row(
                f"  peak MiB per million rows, {name} slice, {phase}", f"{mine:,.0f}",
                f"vectorbt, {s['whole']}: {per_vbt:,.0f}", mine / per_vbt, "{:.2f}x",
                "— (reported)", None, s["load"],
            ))  # fmt: skip
    return rows


def _print(console: Console, rows: list[Row], scale: dict[str, Any]) -> None:
    table = Table(
        title="strategyq against every target, one run; each ratio is strategyq / yardstick"
    )
    for column in ("what", "strategyq", "yardstick, same run", "ratio", "target", "met",
                   "load avg"):  # fmt: skip
        table.add_column(column, justify="left" if column == "what" else "right")
    for r in rows:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "[red]NO[/]")
        table.add_row(r["what"], r["strategyq"], r["yardstick"], r["ratio_text"], r["target"],
                      met, f"{r['load']:.2f}")  # fmt: skip
    console.print(table)
    limits = "default limits"
    if scale.get("memory_mb") or scale.get("answer_max_bytes"):
        limits = (
            f"the strategy's memory limit {scale['memory_mb']:,} MiB and answer cap "
            f"{scale['answer_max_bytes'] // 2**20} MiB (defaults 2,048 MiB and 32 MiB are too "
            "small for this strategy on this many rows)"
        )
    console.print(
        f"large backtest: {scale['symbols']:,} symbols x {scale['whole']}, default settings "
        f"but a 1,200 s time limit and {limits}; "
        "STRATEGYQ_BENCH_SCALE_SYMBOLS / _YEARS shrink it"
    )
