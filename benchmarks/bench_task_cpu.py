"""CPU per trivial task against the fork floor, throughput at concurrency 1 and 2, screening.

``python -m benchmarks task_cpu``. One embedded Valkey, one synthetic store, and
in the same run:

- **the floor**: a fresh interpreter that imported pandas runs a loop of ``fork()``
  + ``os._exit(0)`` + ``waitpid`` (CPU of the parent and its reaped children, per
  cycle) — what any process-per-task queue that imports pandas pays at least;
- **strategyq**: trivial one-symbol backtests through a real ``strategyq worker``
  (full sandbox), CPU and minor page faults per task of every process from
  ``/proc/<pid>/stat``: the worker, the executor, the sandbox host, the fork
  server itself, its children (reaped by the fork server, so their CPU and
  faults arrive in its ``cutime``/``cstime``/``cminflt``) and Valkey; the producer
  (this process) is shown apart and left out of the total, as it is for the floor;
- **throughput** of those tasks at ``--concurrency`` 1 and 2;
- **where a child's CPU goes**: an interpreter warmed up as the fork server is forks
  children that run the trivial strategy with ``getrusage`` probes between the phases
  (attach the frame, lock down, read, exec, call, encode; the exit is what ``wait4``
  reports beyond the last probe), and its own CPU per fork;
- **screening** 500 symbols with the gap-up strategy, end to end (submit → result)
  against the same strategy called in this process on the same frame (loaded once,
  as the worker's cache holds it), with the CPU of each process per screen.

Rounds alternate floor and workload, so machine load hits both alike; medians are
reported with the load average.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import (
    GAP_UP,
    TRIVIAL,
    descendants,
    run_screen_task,
    syms,
    throughput_ours,
    wait_ready,
    worker,
)
from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

TASKS = int(os.environ.get("STRATEGYQ_BENCH_TASKS", "400"))
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_ROUNDS", "3"))
FORKS = 400
SCREENS = 20
SCREEN_SYMBOLS = 500

FLOOR = """
import os, resource, sys, time
import pandas  # noqa: F401  (the floor is a pandas-loaded interpreter)
n = int(sys.argv[1])
def usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
    return cpu, s.ru_minflt + c.ru_minflt
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
cpu0, flt0 = usage()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
cpu1, flt1 = usage()
print((cpu1 - cpu0) / n * 1000, (flt1 - flt0) / n)
"""

PHASES = """
import gc, json, os, resource, struct, sys, time
import numpy as np
import pandas as pd
from strategyq.sandbox.warm import warm_up
from strategyq.sandbox import child, forkserver, lockdown, preload, result, shared_frame
from strategyq.sandbox.forkclient import checked_program

warm_up(())  # as the fork server does, then the frame is shared as the host shares it
rows = 130
frame = pd.DataFrame({"ticker": pd.array(["SYN0001"] * rows, dtype="str"),
                      "date": pd.date_range("2024-01-01", periods=rows, unit="us")})
for i in range(31):
    frame[f"c{i}"] = np.linspace(1.0, 2.0, rows)
shared = shared_frame.share(frame)
del frame
gc.collect()
gc.freeze()
program = checked_program(sys.argv[2])
limits = {"memory_mb": 512, "time_limit_s": 10, "max_open_files": 16}
NAMES = ("after fork", "attach frame", "lock-down", "import guard, warnings", "read program",
         "exec module", "call strategy", "encode answer", "exit (kernel teardown)")
def probe():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt
samples = {name: [] for name in NAMES + ("child, all", "parent per fork")}
for n in range(int(sys.argv[1]) + 3):
    before = probe()
    plan = forkserver.plan_for(limits, True, None, shared.size)
    source_r, source_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        marks = [probe()]
        frame_fd = os.dup(shared.fd)
        frame = shared_frame.attach(frame_fd)
        os.close(frame_fd)
        marks.append(probe())
        lockdown.lock_down(plan, result_w, source_r)
        marks.append(probe())
        preload.refuse_further_imports()
        child._show_warnings()
        marks.append(probe())
        source, code, entry, takes_params, _ = child.read_program(lockdown.SOURCE_FD)
        marks.append(probe())
        function, _ = child._execute(code, source, entry, True, takes_params)
        marks.append(probe())
        value = function(frame)
        marks.append(probe())
        result.encode_result(value)
        marks.append(probe())
        os.write(lockdown.RESULT_FD, struct.pack(f"{2 * len(marks)}d", *sum(marks, ())))
        os._exit(0)
    os.close(source_r)
    os.close(result_w)
    os.write(source_w, program)
    os.close(source_w)
    data = b""
    while chunk := os.read(result_r, 1 << 16):
        data += chunk
    os.close(result_r)
    _, _, usage = os.wait4(pid, 0)
    after = probe()
    if n < 3:
        continue
    values = struct.unpack(f"{len(data) // 8}d", data)
    marks = [values[i : i + 2] for i in range(0, len(values), 2)]
    total = (usage.ru_utime + usage.ru_stime, usage.ru_minflt)
    ends = [(0.0, 0)] + marks + [total]
    for name, (a, b) in zip(NAMES, zip(ends, ends[1:])):
        samples[name].append((1000 * (b[0] - a[0]), b[1] - a[1]))
    samples["child, all"].append((1000 * total[0], total[1]))
    samples["parent per fork"].append((1000 * (after[0] - before[0]), after[1] - before[1]))
print(json.dumps(samples))
"""


ROLES = ("worker", "executor", "sandbox host", "fork server", "sandbox children", "Valkey")
_TICKS = os.sysconf("SC_CLK_TCK")


def fork_floor(n: int = FORKS) -> tuple[float, float]:
    """(CPU ms, minor faults) per ``fork()`` + ``_exit`` cycle of a pandas-loaded interpreter."""
    out = subprocess.run([sys.executable, "-c", FLOOR, str(n)], check=True, capture_output=True)
    cpu_ms, faults = out.stdout.split()
    return float(cpu_ms), float(faults)


def child_phases(n: int = 60) -> dict[str, tuple[float, float]]:
    """Median CPU ms and minor faults of each phase of a sandbox child running the trivial
    strategy, forked from an interpreter warmed up as the fork server is (probes in the child:
    ``getrusage``; its exit: what ``wait4`` reports beyond the last probe)."""
    out = subprocess.run(
        [sys.executable, "-c", PHASES, str(n), TRIVIAL], check=True, capture_output=True
    )
    samples = json.loads(out.stdout)
    return {
        name: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        for name, values in samples.items()
    }


def chain_role(pid: int) -> str | None:
    """Which process of a worker chain ``pid`` is, from its command line (None: another)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"strategyq.sandbox.zygote" in argv:
        return "fork server"
    if b"strategyq.executor.sandbox_host" in argv:
        return "sandbox host"
    if b"strategyq.executor" in argv:
        return "executor"
    if b"worker" in argv:
        return "worker"
    return None


def _stat(pid: int) -> list[int]:
    """minflt, cminflt, utime, stime, cutime, cstime (clock ticks) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(fields[i]) for i in (7, 8, 11, 12, 13, 14)]


def snapshot(worker_pid: int, valkey_pid: int) -> dict[str, tuple[float, int]]:
    """Per role: (CPU seconds, minor page faults) so far."""
    out = dict.fromkeys(ROLES, (0.0, 0))

    def add(role: str, ticks: int, faults: int) -> None:
        cpu, flt = out[role]
        out[role] = (cpu + ticks / _TICKS, flt + faults)

    for pid in descendants(worker_pid):
        role = chain_role(pid)
        if role is None:
            continue
        with suppress(OSError, ValueError, IndexError):
            minflt, cminflt, utime, stime, cutime, cstime = _stat(pid)
            if role == "fork server":
                add("fork server", utime + stime, minflt)
                add("sandbox children", cutime + cstime, cminflt)
            else:
                add(role, utime + stime, minflt)
    minflt, _, utime, stime, _, _ = _stat(valkey_pid)
    add("Valkey", utime + stime, minflt)
    return out


def per_task(
    before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]], n: int
) -> dict[str, tuple[float, float]]:
    """Per role and in all: (CPU ms, minor faults) per task."""
    out = {}
    for role in ROLES:
        cpu = after[role][0] - before[role][0]
        out[role] = (1000 * cpu / n, (after[role][1] - before[role][1]) / n)
    out["all"] = (sum(v[0] for v in out.values()), sum(v[1] for v in out.values()))
    return out


def _median(samples: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {
        role: (
            statistics.median(s[role][0] for s in samples),
            statistics.median(s[role][1] for s in samples),
        )
        for role in samples[0]
    }


def in_process_screen(data_dir: Path, symbols: list[str], n: int) -> float:
    """Median ms of the gap-up strategy called here on the frame a 500-symbol screen gets."""
    from strategyq.data import MarketData
    from strategyq.executor.run.context import WARMUP_SESSIONS
    from strategyq.executor.run.screening import SCREENING_LOOKBACK_SESSIONS
    from strategyq.sandbox import checker

    market = MarketData(data_dir)
    as_of = market.latest_session(symbols)
    assert as_of is not None
    loaded = market.load(
        symbols, None, f"{as_of.isoformat()}T00:00:00", adjusted=True,
        warmup_sessions=WARMUP_SESSIONS, lookback_sessions=SCREENING_LOOKBACK_SESSIONS,
    )  # fmt: skip
    report = checker.check(GAP_UP)
    scope: dict[str, Any] = {}
    exec(report.code, scope)
    function = scope[report.entry]
    samples = []
    for _ in range(n + 1):
        view = loaded.frame.copy(deep=False)
        started = time.perf_counter()
        function(view)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[1:])


def main() -> dict[str, Any]:
    console = Console()
    out: dict[str, Any] = {"load": []}
    floors: list[tuple[float, float]] = []
    cpu: dict[int, list[dict[str, tuple[float, float]]]] = {1: [], 2: []}
    tps: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-task-cpu-") as tmp:
        home = Path(tmp)
        console.print(f"writing {SCREEN_SYMBOLS} synthetic symbols × 2 years …")
        write_synthetic(home / "data", SCREEN_SYMBOLS, 2, seed=1)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        valkey_pid = int(server.pidfile.read_text())
        client = redis.Redis.from_url(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_WORKER_ID="bench")
        try:
            for concurrency in (1, 2):
                with worker(env, concurrency) as proc:
                    wait_ready(client, proc)
                    throughput_ours(client, 50)
                    for _ in range(ROUNDS):
                        floors.append(fork_floor())
                        before = snapshot(proc.pid, valkey_pid)
                        tps[concurrency].append(throughput_ours(client, TASKS))
                        cpu[concurrency].append(
                            per_task(before, snapshot(proc.pid, valkey_pid), TASKS)
                        )
                        out["load"].append(os.getloadavg()[0])
            phases = [child_phases() for _ in range(ROUNDS)]
            floors.append(fork_floor())
            screen_e2e: list[float] = []
            screen_cpu: list[dict[str, tuple[float, float]]] = []
            with worker(env, 1) as proc:
                wait_ready(client, proc)
                for _ in range(3):
                    run_screen_task(client, syms(SCREEN_SYMBOLS))
                before = snapshot(proc.pid, valkey_pid)
                for _ in range(SCREENS):
                    screen_e2e.append(run_screen_task(client, syms(SCREEN_SYMBOLS)))
                screen_cpu.append(per_task(before, snapshot(proc.pid, valkey_pid), SCREENS))
            screen_alone = in_process_screen(home / "data", syms(SCREEN_SYMBOLS), SCREENS)
            out["load"].append(os.getloadavg()[0])
        finally:
            server.stop()
    floor_ms = statistics.median(f[0] for f in floors)
    floor_faults = statistics.median(f[1] for f in floors)
    out.update(
        floor_ms=floor_ms,
        floor_faults=floor_faults,
        floors=floors,
        per_task={c: _median(v) for c, v in cpu.items()},
        throughput={c: statistics.median(v) for c, v in tps.items()},
        throughput_samples=tps,
        screen_e2e_ms=statistics.median(screen_e2e),
        screen_alone_ms=screen_alone,
        screen_cpu=screen_cpu[0],
        phases={
            name: (
                statistics.median(p[name][0] for p in phases),
                statistics.median(p[name][1] for p in phases),
            )
            for name in phases[0]
        },
    )
    _print(console, out)
    return out


def _print(console: Console, out: dict[str, Any]) -> None:
    load = f"{min(out['load']):.2f}–{max(out['load']):.2f}"
    floor_ms, floor_faults = out["floor_ms"], out["floor_faults"]
    table = Table(
        title=f"CPU and minor page faults per trivial task by process (median of {ROUNDS} rounds"
        f" of {TASKS} tasks; load average {load}); floor = pandas-loaded fork() + _exit"
    )
    for column in ("process", "c=1 ms", "c=1 faults", "c=2 ms", "c=2 faults"):
        table.add_column(column, justify="left" if column == "process" else "right")
    one, two = out["per_task"][1], out["per_task"][2]
    for role in (*ROLES, "all"):
        table.add_row(
            f"[bold]{role}[/]" if role == "all" else role,
            f"{one[role][0]:.2f}", f"{one[role][1]:.0f}",
            f"{two[role][0]:.2f}", f"{two[role][1]:.0f}",
        )  # fmt: skip
    table.add_row("floor: fork() + _exit", f"{floor_ms:.2f}", f"{floor_faults:.0f}", "", "")
    console.print(table)

    phases = Table(
        title="where a sandbox child's CPU goes, trivial strategy (a warmed interpreter forking"
        " as the fork server does; median per child)"
    )
    for column in ("phase", "CPU ms", "minor faults"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    for name, (ms, faults) in out["phases"].items():
        phases.add_row(name, f"{ms:.2f}", f"{faults:.0f}")
    phases.add_row(
        "floor: fork() + _exit, parent and child", f"{floor_ms:.2f}", f"{floor_faults:.0f}"
    )
    console.print(phases)

    summary = Table(title="against the yardsticks of the same run")
    for column in ("what", "strategyq", "yardstick", "ratio", "target", "met"):
        summary.add_column(column, justify="left" if column == "what" else "right")
    ratio = one["all"][0] / floor_ms
    summary.add_row(
        "CPU per trivial task, all processes, c=1", f"{one['all'][0]:.2f} ms",
        f"fork floor {floor_ms:.2f} ms", f"{ratio:.2f}×", "≤ 1.5×", _met(ratio <= 1.5),
    )  # fmt: skip
    tp1, tp2 = out["throughput"][1], out["throughput"][2]
    summary.add_row(
        "trivial tasks/s, c=2 vs c=1", f"{tp2:.0f}/s", f"c=1: {tp1:.0f}/s", f"{tp2 / tp1:.2f}×",
        "≥ 1.8×", _met(tp2 / tp1 >= 1.8),
    )  # fmt: skip
    e2e, alone = out["screen_e2e_ms"], out["screen_alone_ms"]
    summary.add_row(
        f"screening {SCREEN_SYMBOLS} symbols, gap-up, end to end", f"{e2e:.1f} ms",
        f"in-process: {alone:.1f} ms", f"{e2e / alone:.2f}×", "≤ 1.3×", _met(e2e / alone <= 1.3),
    )  # fmt: skip
    console.print(summary)
    screen = out["screen_cpu"]
    parts = ", ".join(f"{role} {screen[role][0]:.1f} ms / {screen[role][1]:.0f} faults"
                      for role in (*ROLES, "all"))  # fmt: skip
    console.print(f"screening, CPU and minor faults per screen: {parts}")


def _met(ok: bool) -> str:
    return "yes" if ok else "[red]no[/]"


if __name__ == "__main__":
    main()
