"""Soak: 10,000 trivial backtests through two worker processes, then check nothing leaked.

``python -m benchmarks soak`` (not part of the default run). Uses a private
embedded Valkey unless ``REDIS_URL`` is set — that database is FLUSHED first —
and a temporary ``STRATEGYQ_HOME`` with 20 synthetic symbols × 1 year. Tasks are
LPUSHed as raw wire-format JSON in pipelined batches (no ``queued`` record),
exactly as a non-Python producer would. Workers run with
``STRATEGYQ_RESULT_TTL=30`` so every result expires during the run's tail.

Criteria, one verdict row each:

- every task ends ``completed``;
- each worker's RSS (its process plus direct children, sampled every second)
  at the end is within +10 % of its sample at 1,000 tasks;
- after the workers stop (SIGTERM, exit status 0) and the TTL passes, Redis
  ``used_memory`` is within +1 MiB of the baseline taken before submitting, and
  ``DBSIZE`` is at most 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from strategyq.data import write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

TASKS = 10_000
WORKERS = 2
RESULT_TTL_S = 30
TTL_SLACK_S = 8.0
PUSH_BATCH = 500
POLL_INTERVAL_S = 0.2
POLL_WINDOW = 2000
SAMPLE_INTERVAL_S = 1.0
RUN_DEADLINE_S = 210.0
RSS_GROWTH_LIMIT = 0.10
MEMORY_SLACK_BYTES = 1024 * 1024
FINAL_DBSIZE_MAX = 2
QUEUE = "strategy_queue"
TRIVIAL = (
    "def trivial(df):\n"
    "    return [{'ticker': df['ticker'].iloc[0], 'date': str(df['date'].iloc[-1])}]\n"
)
MIB = 1024 * 1024


def rss_kib(pid: int) -> int:
    """Current RSS (VmRSS) of a process plus its direct children, in KiB (0 if gone)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


@dataclass
class RssTrack:
    """RSS samples of one worker, keyed by how many tasks had completed."""

    name: str
    samples: list[tuple[int, int]] = field(default_factory=list)

    def add(self, done: int, kib: int) -> None:
        if kib:
            self.samples.append((done, kib))

    def at(self, done: int) -> int | None:
        """The first sample taken once at least ``done`` tasks had completed."""
        return next((kib for n, kib in self.samples if n >= done), None)

    def summary(self) -> dict[str, Any]:
        at_500, at_1000 = self.at(500), self.at(1000)
        peak = max((kib for _, kib in self.samples), default=None)
        last = self.samples[-1][1] if self.samples else None
        growth = (last / at_1000 - 1) if last and at_1000 else None
        return {
            "worker": self.name,
            "samples": len(self.samples),
            "first_after_500_mib": at_500 / 1024 if at_500 else None,
            "at_1000_mib": at_1000 / 1024 if at_1000 else None,
            "max_mib": peak / 1024 if peak else None,
            "last_mib": last / 1024 if last else None,
            "growth_since_1000": growth,
            "constant": growth is not None and growth <= RSS_GROWTH_LIMIT,
        }


def memory(client: redis.Redis) -> tuple[int, int]:
    """(``used_memory``, ``DBSIZE``) in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.info("memory")
    pipe.dbsize()
    info, size = pipe.execute()
    return int(info["used_memory"]), int(size)


def start_worker(env: dict[str, str], worker_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "strategyq", "worker", "--metrics-port", "0",
         "--concurrency", "1", "--log-level", "WARNING"],
        env={**env, "STRATEGYQ_WORKER_ID": worker_id},
    )  # fmt: skip


def wait_ready(client: redis.Redis, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(client.exists(f"strategyq:heartbeat:{wid}") for wid in procs):
            return
        for wid, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"worker {wid} exited during start-up ({proc.returncode})")
        time.sleep(0.02)
    raise RuntimeError("the workers did not register a heartbeat within 60 s")


def stop_workers(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, int | None]:
    """SIGTERM every worker and wait for it; returns exit statuses (None: had to be killed)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes: dict[str, int | None] = {}
    for wid, proc in procs.items():
        try:
            codes[wid] = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            codes[wid] = None
    return codes


def submit(client: redis.Redis, ids: list[str]) -> None:
    """LPUSH the raw wire-format tasks, ``PUSH_BATCH`` per pipelined round trip."""
    for i in range(0, len(ids), PUSH_BATCH):
        pipe = client.pipeline(transaction=False)
        messages = [
            json.dumps(
                {
                    "task_id": task_id,
                    "task_type": "backtest",
                    "args": {
                        "strategy_code": TRIVIAL,
                        "symbols": ["SYN0001"],
                        "start_date": "2024-06-01",
                        "end_date": "2024-12-31",
                    },
                }
            )
            for task_id in ids[i : i + PUSH_BATCH]
        ]
        pipe.lpush(QUEUE, *messages)
        pipe.execute()


def poll(client: redis.Redis, pending: list[str], outcome: Counter[str]) -> list[str]:
    """Read the results of the oldest pending tasks; return those still not terminal.

    Workers take tasks in FIFO order, so the oldest ``POLL_WINDOW`` pending ids
    hold every newly finished one at this throughput.
    """
    window = pending[:POLL_WINDOW]
    raws = client.mget([f"task_result:{t}" for t in window]) if window else []
    still: list[str] = []
    for task_id, raw in zip(window, raws, strict=True):
        status = json.loads(raw)["status"] if raw else None
        if status in ("completed", "error", "cancelled"):
            outcome[status] += 1
        else:
            still.append(task_id)
    return still + pending[POLL_WINDOW:]


def soak(client: redis.Redis, env: dict[str, str], console: Console) -> dict[str, Any]:
    ids = [uuid.uuid4().hex for _ in range(TASKS)]
    names = [f"soak-{i}" for i in range(1, WORKERS + 1)]
    procs = {wid: start_worker(env, wid) for wid in names}
    tracks = {wid: RssTrack(wid) for wid in names}
    outcome: Counter[str] = Counter()
    try:
        wait_ready(client, procs)
        base_mem, base_size = memory(client)
        peak_mem, peak_size = base_mem, base_size
        console.print(f"submitting {TASKS:,} tasks to {WORKERS} workers …")
        t0 = time.perf_counter()
        submit(client, ids)
        submitted_s = time.perf_counter() - t0
        pending = ids
        finished_at = t0
        next_sample = 0.0
        while pending and time.perf_counter() - t0 < RUN_DEADLINE_S:
            before = len(pending)
            pending = poll(client, pending, outcome)
            now = time.perf_counter()
            if len(pending) < before:
                finished_at = now
            if now >= next_sample:
                next_sample = now + SAMPLE_INTERVAL_S
                done = TASKS - len(pending)
                for wid, proc in procs.items():
                    tracks[wid].add(done, rss_kib(proc.pid))
                used, size = memory(client)
                peak_mem, peak_size = max(peak_mem, used), max(peak_size, size)
                dead = [w for w, p in procs.items() if p.poll() is not None]
                if dead:
                    console.print(f"[red]worker(s) {', '.join(dead)} exited mid-run[/]")
                    break
            time.sleep(POLL_INTERVAL_S)
        total_s = finished_at - t0
        for wid, proc in procs.items():
            tracks[wid].add(TASKS - len(pending), rss_kib(proc.pid))
    finally:
        codes = stop_workers(procs)
    # Anything left pending: look once more (it may have ended after the last
    # poll); what is still not terminal, or already expired, counts as a failure.
    pending = poll(client, pending, outcome) if pending else pending
    outcome["not finished (or result expired unseen)"] += len(pending)

    console.print(f"waiting {RESULT_TTL_S} s + slack for results to expire …")
    expire_by = time.monotonic() + max(
        0.0, RESULT_TTL_S + TTL_SLACK_S - (time.perf_counter() - finished_at)
    )
    final_mem, final_size = memory(client)
    while time.monotonic() < expire_by:
        time.sleep(1.0)
        final_mem, final_size = memory(client)
    return {
        "tasks": TASKS,
        "workers": WORKERS,
        "submit_s": submitted_s,
        "total_s": total_s,
        "tasks_per_s": TASKS / total_s if total_s > 0 else 0.0,
        "outcome": dict(outcome),
        "completed": outcome["completed"],
        "failed": TASKS - outcome["completed"],
        "rss": [t.summary() for t in tracks.values()],
        "worker_exit_codes": codes,
        "redis": {
            "baseline_used_memory": base_mem,
            "peak_used_memory": peak_mem,
            "final_used_memory": final_mem,
            "baseline_dbsize": base_size,
            "peak_dbsize": peak_size,
            "final_dbsize": final_size,
            "final_keys": sorted(
                k.decode() if isinstance(k, bytes) else k for k in client.keys("*")
            ),
        },
    }


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    red = r["redis"]
    mem_delta = red["final_used_memory"] - red["baseline_used_memory"]
    out = [
        {
            "criterion": "every task ended completed",
            "measured": f"{r['completed']:,} / {r['tasks']:,} completed; others: "
            + (", ".join(f"{k} {v}" for k, v in r["outcome"].items() if k != "completed" and v)
               or "none"),
            "met": r["failed"] == 0,
        },
    ]  # fmt: skip
    for s in r["rss"]:
        growth = s["growth_since_1000"]
        out.append(
            {
                "criterion": f"{s['worker']} RSS constant (last ≤ +10 % of @1,000 tasks)",
                "measured": f"{s['at_1000_mib']:.1f} → {s['last_mib']:.1f} MiB ({growth:+.1%})"
                if growth is not None
                else "not enough samples",
                "met": s["constant"],
            }
        )
    out += [
        {
            "criterion": "workers exit 0 on SIGTERM",
            "measured": ", ".join(f"{w}: {c}" for w, c in r["worker_exit_codes"].items()),
            "met": all(c == 0 for c in r["worker_exit_codes"].values()),
        },
        {
            "criterion": "Redis used_memory back within +1 MiB of baseline",
            "measured": f"{mem_delta / MIB:+.3f} MiB",
            "met": mem_delta <= MEMORY_SLACK_BYTES,
        },
        {
            "criterion": f"DBSIZE ≤ {FINAL_DBSIZE_MAX} after TTL",
            "measured": f"{red['final_dbsize']} ({', '.join(red['final_keys'][:5]) or 'empty'})",
            "met": red["final_dbsize"] <= FINAL_DBSIZE_MAX,
        },
    ]
    return out


def main() -> dict[str, Any]:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-soak-") as tmp:
        home = Path(tmp)
        write_synthetic(home / "data", 20, 1, seed=1)
        url = os.environ.get("REDIS_URL") or EmbeddedServer(home / "valkey").ensure_running()
        client = redis.Redis.from_url(url)
        client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_RESULT_TTL=str(RESULT_TTL_S))
        try:
            result = soak(client, env, console)
        finally:
            if not os.environ.get("REDIS_URL"):
                EmbeddedServer(home / "valkey").stop()
    result["cores"] = os.cpu_count()
    result["verdicts"] = verdicts(result)

    red = result["redis"]
    where = "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded Valkey"
    table = Table(
        title=f"strategyq soak — {TASKS:,} tasks, {WORKERS} workers × concurrency 1, "
        f"{os.cpu_count()} cores, {where}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("total (first push → last done)", f"{result['total_s']:.1f} s")
    table.add_row("throughput", f"{result['tasks_per_s']:.1f} tasks/s")
    table.add_row("submit (pipelined LPUSH)", f"{result['submit_s'] * 1000:.0f} ms")
    table.add_row("completed / failed", f"{result['completed']:,} / {result['failed']:,}")
    for s in result["rss"]:
        fmt = [f"{s[k]:.1f}" if s[k] is not None else "—" for k in
               ("first_after_500_mib", "at_1000_mib", "max_mib", "last_mib")]  # fmt: skip
        table.add_row(f"{s['worker']} RSS MiB @500/@1k/max/last", " / ".join(fmt))
    for label, key in (("used_memory MiB", "used_memory"), ("DBSIZE", "dbsize")):
        vals = [red[f"{p}_{key}"] for p in ("baseline", "peak", "final")]
        shown = [f"{v / MIB:.3f}" if key == "used_memory" else str(v) for v in vals]
        table.add_row(f"Redis {label} base/peak/final", " / ".join(shown))
    console.print(table)
    verdict_table = Table(title="soak verdicts")
    for c in ("criterion", "measured", "met"):
        verdict_table.add_column(c)
    for v in result["verdicts"]:
        verdict_table.add_row(v["criterion"], v["measured"], "yes" if v["met"] else "[red]no[/]")
    console.print(verdict_table)
    return result
