"""Where a small sweep's time goes, submit to result, beside vectorbt in the same run.

``python -m benchmarks sweep_path``. The 10 × 10 SMA-crossover grid on AAPL
2000–2013 with the whole-grid strategy of ``python -m benchmarks vectorbt``,
through a real worker (1 worker × 2 executors, a private embedded Valkey), warm,
rounds interleaved with vectorbt warm in this process. Per round:

- wall time, split by the worker's own clocks (its ``/metrics``): the wait in the
  lane and the run of each task (the plan, ``sweep``; its chunks,
  ``sweep_chunk``), each run's executor stages (loading data, the strategy's
  sandbox child, the metrics and the result's way back to the worker); the rest
  is the queue's transitions (submit, claim, fan-out, counting the chunk in,
  assembling and writing the sweep's result) and the client's wake-up;
- CPU time of each process of the worker, read from ``/proc`` before and after:
  the worker, its executors, their sandbox hosts, fork servers and the sandbox
  children (what the fork servers reaped), and the Valkey server.

vectorbt's wall and CPU time (``time.process_time``: this process) are taken in
the same rounds. ``STRATEGYQ_BENCH_PATH_ROUNDS`` rounds (default 15), medians.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import descendants
from benchmarks.bench_sweep import FAST, SLOW, vectorbt_time, wait_workers
from benchmarks.bench_vectorbt import GRID, _role, aapl_bars
from strategyq import add_sweep_task, wait_for_result
from strategyq.data import load_sample
from strategyq.embedded_valkey import EmbeddedServer

ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_PATH_ROUNDS", "15"))
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    """The ``_sum`` and ``_count`` series of the worker's histograms, by name and labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not (("_sum{" in line) or ("_count{" in line)):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def _series(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        v for k, v in metrics.items() if k.startswith(name + "{") and all(w in k for w in want)
    )


def _cpu(pid: int, server_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each role below ``pid`` (own time; children reaped: theirs)."""
    out: dict[str, float] = {}
    pids = [(p, _role(p, pid)) for p in descendants(pid)]
    if server_pid is not None:
        pids.append((server_pid, "valkey"))
    for p, role in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / TICK
        reaped = (int(fields[13]) + int(fields[14])) / TICK
        out[role] = out.get(role, 0.0) + own
        if role == "fork server":
            out["sandbox child"] = out.get("sandbox child", 0.0) + reaped
    return out


def main() -> dict[str, Any]:
    from benchmarks.bench_sweep import workers

    console = Console(width=140)
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-path-") as tmp:
        home = Path(tmp)
        data = home / "data"
        load_sample(data)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        client = redis.Redis.from_url(url, decode_responses=True)
        server_pid = server._read_pid()
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_SCHEDULE_INTERVAL="0")
        aapl = aapl_bars(data)
        rounds: list[dict[str, float]] = []
        with workers(env, 1, 2, metrics_port=port) as pids:
            wait_workers(client, 1)
            for _ in range(2):  # warm: both executors' frames, the fork servers
                _one(client)
            for _ in range(ROUNDS):
                m0, c0 = _scrape(port), _cpu(pids[0], server_pid)
                wall = _one(client)
                time.sleep(0.05)  # the worker's last metrics after the result's write
                m1, c1 = _scrape(port), _cpu(pids[0], server_pid)
                row: dict[str, float] = {"total": wall}
                for kind in ("sweep", "sweep_chunk"):
                    row[f"run {kind}"] = _series(m1, "strategyq_task_duration_seconds_sum",
                                                 task_type=kind) - _series(
                        m0, "strategyq_task_duration_seconds_sum", task_type=kind)  # fmt: skip
                    for stage in ("loading_data", "running_strategy", "computing_metrics"):
                        name = "strategyq_task_stage_duration_seconds_sum"
                        row[f"stage {kind} {stage}"] = _series(
                            m1, name, task_type=kind, stage=stage
                        ) - _series(m0, name, task_type=kind, stage=stage)
                waits = _series(m1, "strategyq_task_wait_seconds_sum") - _series(
                    m0, "strategyq_task_wait_seconds_sum"
                )
                row["waits"] = waits
                for role in set(c0) | set(c1):
                    row[f"cpu {role}"] = c1.get(role, 0.0) - c0.get(role, 0.0)
                t, cpu = time.perf_counter(), time.process_time()
                row["vectorbt"] = vectorbt_time(aapl)
                row["vectorbt cpu"] = time.process_time() - cpu
                row["vectorbt wall with compile"] = time.perf_counter() - t
                row["load"] = os.getloadavg()[0]
                rounds.append(row)
        server.stop()
    # Walls: medians; CPU (10 ms clock ticks): means.
    med = {
        k: (statistics.fmean if k.startswith("cpu ") else statistics.median)(
            [r.get(k, 0.0) for r in rounds]
        )
        for k in {k for r in rounds for k in r}
    }
    _print(console, med, len(rounds))
    return {"median": med, "rounds": rounds}


def _one(client: redis.Redis) -> float:
    task_id = f"path-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    add_sweep_task(client, task_id, GRID, ["AAPL"], "2000-01-01", "2013-12-31",
                   {"fast": FAST, "slow": SLOW}, maximize="sharpe_ratio", hold_days=None,
                   max_positions=1)  # fmt: skip
    result = wait_for_result(client, task_id, timeout_s=600)
    elapsed = time.perf_counter() - t
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"sweep {task_id} did not complete: {result}")
    return elapsed


def _print(console: Console, med: dict[str, float], n: int) -> None:
    vbt = med["vectorbt"]
    table = Table(
        title=f"10 x 10 SMA sweep, AAPL 2000-2013, submit to result, 1 worker x 2 executors, "
        f"warm: medians of {n} rounds (load {med['load']:.2f}); vectorbt warm {vbt * 1000:.0f} ms "
        f"wall, {med['vectorbt cpu'] * 1000:.0f} ms CPU, same rounds"
    )
    for column in ("wall", "ms", "share of the total"):
        table.add_column(column, justify="left" if column == "wall" else "right")
    total = med["total"]
    parts = {
        "waits in lanes (plan + chunk)": med["waits"],
        "plan: run (claim to the executor's answer)": med["run sweep"],
        "  of which loading data (plan)": med["stage sweep loading_data"],
        "chunk: run (claim to the executor's answer)": med["run sweep_chunk"],
        "  of which loading data (chunk)": med["stage sweep_chunk loading_data"],
        "  of which the sandbox child (fork, strategy, answer)": med[
            "stage sweep_chunk running_strategy"
        ],
        "  of which metrics, best's result, answer to the worker": med[
            "stage sweep_chunk computing_metrics"
        ],
    }
    rest = total - med["waits"] - med["run sweep"] - med["run sweep_chunk"]
    for name, value in parts.items():
        table.add_row(name, f"{value * 1000:.1f}", f"{value / total:.0%}")
    table.add_row("the rest: submit, claims, fan-out, count-in, assembly, write, wake-up",
                  f"{rest * 1000:.1f}", f"{rest / total:.0%}")  # fmt: skip
    table.add_row("total, submit to result", f"{total * 1000:.1f}", "100%")
    table.add_row("vectorbt, same rounds", f"{vbt * 1000:.1f}", f"ratio {total / vbt:.2f}x")
    console.print(table)
    cpu = Table(title="CPU time per sweep, by process (means, ms; 10 ms clock ticks)")
    cpu.add_column("process")
    cpu.add_column("CPU ms", justify="right")
    roles = sorted(k for k in med if k.startswith("cpu "))
    for key in roles:
        cpu.add_row(key.removeprefix("cpu "), f"{med[key] * 1000:.1f}")
    cpu.add_row("sum", f"{sum(med[k] for k in roles) * 1000:.1f}")
    cpu.add_row("vectorbt (this process)", f"{med['vectorbt cpu'] * 1000:.1f}")
    console.print(cpu)
