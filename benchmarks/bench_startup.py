"""Start-up: the CPU and wall time a process of ours costs before it does its work.

``python -m benchmarks startup`` (``STRATEGYQ_BENCH_STARTUP_ROUNDS``, default 7;
``STRATEGYQ_BENCH_STARTUP_WORKERS``, default 3 worker starts).

1. CLI commands, each a fresh ``python -m strategyq …`` against a private Valkey:
   ``--version``, ``queue``, ``result <missing id>``, ``dlq list``. CPU is the child's
   user + system time (``wait4``), wall the time until it exits; the median of the rounds.
2. A worker chain (``strategyq worker`` → executor → sandbox host → fork server, with
   ``STRATEGYQ_SANDBOX_LIBRARIES=none``): each process's CPU (``/proc/PID/stat``) when
   the worker's heartbeat appears, which it writes once every process below it is warm.
   Wall is the time from the worker's start to its heartbeat, for the chain as a whole.
3. ``strategyq serve`` (the API and the dashboard), once a round beside the commands: its
   CPU (``/proc/PID/stat``) when its first answer, a 200 from ``/readyz``, arrives, and
   the wall time to it. It serves on a socket this process binds and hands over (``--fd``,
   as ``strategyq demo`` does), so the port cannot be taken between the two.

Each row stands beside yardsticks measured in the same rounds, interleaved with the
commands so that all see the same machine: ``python -c pass`` (the interpreter),
``python -c "import redis"`` (the Redis client every command that talks to the server
loads) and ``python -c "import pandas"``, as ratios of their CPU.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import descendants
from benchmarks.bench_task_cpu import chain_role
from strategyq.embedded_valkey import EmbeddedServer
from strategyq.queue import keys

ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_STARTUP_ROUNDS", "7"))
WORKER_STARTS = int(os.environ.get("STRATEGYQ_BENCH_STARTUP_WORKERS", "3"))
WORKER_ID = "bench-startup"
_TICKS = os.sysconf("SC_CLK_TCK")

YARDSTICKS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import redis'": ["-c", "import redis"],
    "python -c 'import pandas'": ["-c", "import pandas"],
}
COMMANDS = {
    "strategyq --version": ["-m", "strategyq", "--version"],
    "strategyq queue": ["-m", "strategyq", "queue"],
    "strategyq result <missing id>": ["-m", "strategyq", "result", "no-such-task"],
    "strategyq dlq list": ["-m", "strategyq", "dlq", "list"],
}
SERVE = "strategyq serve, at its first answer"
CHAIN = ("worker", "executor", "sandbox host", "fork server")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU s, wall s) of one ``python argv`` to its exit."""
    # posix_spawn and wait4 rather than subprocess: wait4 gives this child's own rusage.
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
    started = time.perf_counter()
    pid = os.posix_spawn(sys.executable, [sys.executable, *argv], env, file_actions=quiet)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # `result <missing id>` exits 1
        raise RuntimeError(f"python {' '.join(argv)} failed ({status})")
    return usage.ru_utime + usage.ru_stime, wall


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def serve_start(env: dict[str, str]) -> tuple[float, float]:
    """(CPU s, wall s) of ``strategyq serve`` from its start to its first 200 from /readyz."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port, fd = listener.getsockname()[1], listener.fileno()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "strategyq", "serve", "--port", str(port), "--fd", str(fd),
             "--log-level", "WARNING"],
            env=env, pass_fds=[fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        # The socket listens already: this request waits in its backlog until the server
        # takes it over and answers.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=120) as answer:
            if answer.status != 200:
                raise RuntimeError(f"strategyq serve answered {answer.status}")
        return _cpu_s(proc.pid), time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(60)


def worker_start(env: dict[str, str], client: redis.Redis) -> tuple[dict[str, float], float]:
    """Each chain process's CPU s when the worker's heartbeat appears, and the wall s to it."""
    client.delete(keys.heartbeat(WORKER_ID))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategyq", "worker", "--metrics-port", "0",
         "--log-level", "WARNING"],
        env={**env, "STRATEGYQ_WORKER_ID": WORKER_ID},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not client.exists(keys.heartbeat(WORKER_ID)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.005)
        wall = time.perf_counter() - started
        cpu = dict.fromkeys(CHAIN, 0.0)
        for pid in descendants(proc.pid):
            role = chain_role(pid)
            if role is not None:
                cpu[role] += _cpu_s(pid)
        return cpu, wall
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> dict[str, Any]:
    console = Console()
    console.print(
        f"\n[bold]start-up[/] — {ROUNDS} rounds of each command, {WORKER_STARTS} worker "
        f"starts; load average {load_average()}"
    )
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-startup-") as tmp:
        home = Path(tmp)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        try:
            client = redis.Redis.from_url(url)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "STRATEGYQ_"))}  # fmt: skip
            env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_SANDBOX_LIBRARIES="none")
            processes = {**YARDSTICKS, **COMMANDS}
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
            samples[SERVE] = []
            for argv in processes.values():  # once each unmeasured: caches warm
                run_once(argv, env)
            serve_start(env)
            for _ in range(ROUNDS):
                for name, argv in processes.items():
                    samples[name].append(run_once(argv, env))
                samples[SERVE].append(serve_start(env))
            chain: dict[str, list[float]] = {role: [] for role in CHAIN}
            chain_walls = []
            for _ in range(WORKER_STARTS):
                cpu, wall = worker_start(env, client)
                chain_walls.append(wall)
                for role in CHAIN:
                    chain[role].append(cpu[role])
                for name, argv in YARDSTICKS.items():  # yardsticks beside the workers too
                    samples[name].append(run_once(argv, env))
        finally:
            server.stop()
    after = load_average()

    rows: dict[str, dict[str, float]] = {}
    for name, got in samples.items():
        rows[name] = {
            "cpu_ms": statistics.median(c for c, _ in got) * 1000,
            "wall_ms": statistics.median(w for _, w in got) * 1000,
        }
    wall_ready = statistics.median(chain_walls) * 1000
    for role in CHAIN:
        rows[f"worker: {role}"] = {
            "cpu_ms": statistics.median(chain[role]) * 1000,
            "wall_ms": wall_ready,
        }
    rows["worker: all four"] = {
        "cpu_ms": sum(rows[f"worker: {role}"]["cpu_ms"] for role in CHAIN),
        "wall_ms": wall_ready,
    }
    sticks = list(YARDSTICKS)
    table = Table(
        title="start-up: median CPU (user+sys) and wall",
        caption="÷: the row's CPU over the yardstick's (python -c pass, -c 'import redis', "
        "-c 'import pandas'), measured in the same rounds",
    )
    table.add_column("process")
    table.add_column("CPU ms", justify="right")
    table.add_column("wall ms", justify="right")
    for stick in ("pass", "redis", "pandas"):
        table.add_column(f"÷ {stick}", justify="right")
    for name, row in rows.items():
        ratios = [row["cpu_ms"] / max(rows[s]["cpu_ms"], 1e-3) for s in sticks]
        row.update({f"ratio_{s}": r for s, r in zip(sticks, ratios, strict=True)})
        table.add_row(name, f"{row['cpu_ms']:.0f}", f"{row['wall_ms']:.0f}",
                      *(f"{r:.2f}" for r in ratios))  # fmt: skip
    console.print(table)
    console.print(
        "worker chain wall: from `strategyq worker` to its heartbeat (every process warm); "
        f"load average after {after}"
    )
    return {"rounds": ROUNDS, "worker_starts": WORKER_STARTS, "load_after": after, "rows": rows}
