"""Shared steps of the API and browser tests: slow strategies, real dead letters, SSE reading."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import redis

from strategyq.client import add_backtest_task
from tests.integration.api.conftest import GAP_UP
from tests.integration.conftest import WorkerProcess, wait_until

# A second and a half asleep, then the seed's strategy: long enough for a worker to
# publish the running_strategy stage (its watcher writes every 0.2 s).
SLOW = (
    "import time\n\n\n"
    "def slow_gap_up(df):\n"
    "    time.sleep(1.5)\n"
    "    hits = df[(df['gap_pct'] > 3.0) & (df['volume_ratio'] > 1.5)]\n"
    "    return [{'ticker': r.ticker, 'date': str(r.date), 'signal': True} "
    "for r in hits.itertuples()]\n"
)


def make_dead_letter(
    redis_client: redis.Redis,
    env: dict[str, str],
    task_id: str,
    queue: str,
    reaper: WorkerProcess,
) -> dict[str, Any]:
    """A real dead letter: a worker dies running the task (max 1 attempt), and ``reaper``, a
    live worker with the same one-attempt limit (the module's), reaps it: every worker
    reaps every dead one, whatever queue either serves."""
    assert reaper.proc is not None and reaper.proc.poll() is None, "the reaper is not running"
    assert reaper.env.get("STRATEGYQ_MAX_ATTEMPTS") == "1", "the reaper must dead-letter"
    add_backtest_task(
        redis_client, task_id, GAP_UP, ["AAPL"], "2010-01-01", "2011-12-31", queue=queue
    )
    crash_env = {
        **env,
        "STRATEGYQ_QUEUE": queue,
        "STRATEGYQ_MAX_ATTEMPTS": "1",
        "STRATEGYQ_FAULT_CRASH_AT": f"{task_id}:running_strategy",
    }
    crashing = WorkerProcess(crash_env, f"crash-{task_id}").start()
    try:
        assert crashing.proc is not None
        crashing.proc.wait(90)
    finally:
        crashing.stop()
    entries = wait_until(
        lambda: [
            e
            for e in (orjson.loads(r) for r in redis_client.lrange("strategyq:dead_letter", 0, -1))
            if e.get("task_id") == task_id
        ],
        timeout_s=60,
    )
    entry: dict[str, Any] = entries[0]
    return entry


def read_events(response: httpx.Response, limit_s: float = 120.0) -> list[dict[str, Any]]:
    """Parse a Server-Sent Events body into (event name, data) dicts until it ends."""
    events: list[dict[str, Any]] = []
    name = "message"
    deadline = time.monotonic() + limit_s
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError(f"event stream still open after {limit_s}s: {events}")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append({"event": name, **orjson.loads(line[6:])})
            name = "message"
    return events


def transitions(records: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(status, stage) steps with repeats removed."""
    out: list[tuple[Any, Any]] = []
    for r in records:
        step = (r.get("status"), r.get("stage"))
        if not out or out[-1] != step:
            out.append(step)
    return out
