"""Schedules against a real server: exactly-once slots, pause, catch-up, DST, CLI, worker."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from strategyq import get_task_result
from strategyq.errors import TaskValidationError
from strategyq.examples import source
from strategyq.queue import keys
from strategyq.queue.schedules import (
    Ticker,
    add_schedule,
    list_schedules,
    make_schedule,
    pause_schedule,
    remove_schedule,
    resume_schedule,
    run_now,
)
from tests import warm_cli
from tests.integration.conftest import SpawnWorker, wait_until

NY = ZoneInfo("America/New_York")
SCREEN = {"strategy_code": source("momentum_screen"), "universe": ["AAPL", "MSFT"], "limit": 2}


def queued_ids(r: redis.Redis) -> list[str]:
    return sorted(json.loads(m)["task_id"] for m in r.lrange("strategy_queue", 0, -1))


def _add(r: redis.Redis, name: str, cron: str, tz: str, created: datetime) -> None:
    add_schedule(r, make_schedule(name, cron, tz, "screening", SCREEN), now=created)


def test_three_workers_racing_over_ten_slots_enqueue_each_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    _add(redis_client, "every-5", "*/5 * * * *", "UTC", start - timedelta(seconds=1))
    slots = [start + timedelta(minutes=5 * i) for i in range(10)]
    racers = 3
    barrier = threading.Barrier(racers)
    queued: list[list[str]] = [[] for _ in range(racers)]

    def race(i: int) -> None:
        ticker = Ticker(redis.Redis.from_url(redis_url))
        for slot in slots:
            # Each racer ticks several times within the slot's minute, all at once.
            for second in (0, 10, 30):
                barrier.wait(10)
                queued[i].extend(ticker.tick(slot + timedelta(seconds=second)))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expected = sorted(f"every-5:{s.isoformat(timespec='minutes')}" for s in slots)
    assert sorted(t for q in queued for t in q) == expected
    assert queued_ids(redis_client) == expected
    assert expected[0] == "every-5:2026-12-01T09:00+00:00"
    # Each is a real queued task with a record the producer API reads.
    record = get_task_result(redis_client, expected[0])
    assert record is not None and record["status"] == "queued"
    assert record["data"]["schedule"] == "every-5"


def test_a_paused_schedule_skips_its_slots_and_resumes_at_the_next(
    redis_client: redis.Redis,
) -> None:
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    _add(redis_client, "hourly", "0 * * * *", "UTC", t0)
    ticker = Ticker(redis_client)
    assert ticker.tick(t0 + timedelta(hours=1)) == ["hourly:2026-12-01T13:00+00:00"]
    pause_schedule(redis_client, "hourly")
    assert ticker.tick(t0 + timedelta(hours=2)) == []
    assert ticker.tick(t0 + timedelta(hours=3, minutes=5)) == []
    resume_schedule(redis_client, "hourly", now=t0 + timedelta(hours=3, minutes=10))
    # The 14:00 and 15:00 slots were skipped while paused; they never run.
    assert ticker.tick(t0 + timedelta(hours=3, minutes=20)) == []
    assert ticker.tick(t0 + timedelta(hours=4)) == ["hourly:2026-12-01T16:00+00:00"]
    assert queued_ids(redis_client) == [
        "hourly:2026-12-01T13:00+00:00",
        "hourly:2026-12-01T16:00+00:00",
    ]


def test_catch_up_after_downtime_runs_once(redis_client: redis.Redis) -> None:
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    _add(redis_client, "close", "30 21 * * 1-5", "America/New_York", t0)
    ticker = Ticker(redis_client)
    # Nobody ticked for a week: seven missed slots, one run (the latest).
    later = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    assert ticker.tick(later) == ["close:2026-12-09T21:30-05:00"]
    assert ticker.tick(later + timedelta(minutes=1)) == []
    assert queued_ids(redis_client) == ["close:2026-12-09T21:30-05:00"]


def test_time_zone_across_a_dst_change(redis_client: redis.Redis) -> None:
    # New York leaves daylight time on Sunday 2026-11-01: 21:30 is 01:30Z before, 02:30Z after.
    created = datetime(2026, 10, 29, 12, 0, tzinfo=UTC)
    _add(redis_client, "ny-close", "30 21 * * 1-5", "America/New_York", created)
    ticker = Ticker(redis_client)
    fired: dict[str, datetime] = {}
    t = created
    while t < datetime(2026, 11, 5, 12, 0, tzinfo=UTC):
        for task_id in ticker.tick(t):
            fired[task_id] = t
        t += timedelta(minutes=10)
    assert list(fired) == [
        "ny-close:2026-10-29T21:30-04:00",
        "ny-close:2026-10-30T21:30-04:00",
        "ny-close:2026-11-02T21:30-05:00",
        "ny-close:2026-11-03T21:30-05:00",
        "ny-close:2026-11-04T21:30-05:00",
    ]
    # Each fired at the first tick at or after 21:30 New York time, in UTC.
    assert fired["ny-close:2026-10-30T21:30-04:00"] == datetime(2026, 10, 31, 1, 30, tzinfo=UTC)
    assert fired["ny-close:2026-11-02T21:30-05:00"] == datetime(2026, 11, 3, 2, 30, tzinfo=UTC)


def test_a_wall_clock_time_skipped_by_dst_runs_once_at_the_next_valid_minute(
    redis_client: redis.Redis,
) -> None:
    # 02:30 does not exist in New York on 2026-03-08 (clocks jump from 02:00 to 03:00).
    created = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    _add(redis_client, "early", "30 2 * * *", "America/New_York", created)
    ticker = Ticker(redis_client)
    fired = []
    t = created
    while t < datetime(2026, 3, 9, 12, 0, tzinfo=UTC):
        fired.extend(ticker.tick(t))
        t += timedelta(minutes=15)
    assert fired == ["early:2026-03-08T03:00-04:00", "early:2026-03-09T02:30-04:00"]


def test_bad_schedules_are_refused_with_what_to_fix(redis_client: redis.Redis) -> None:
    with pytest.raises(TaskValidationError, match="cron expression"):
        make_schedule("x", "61 * * * *", "UTC", "screening", SCREEN)
    with pytest.raises(TaskValidationError, match="unknown time zone"):
        make_schedule("x", "0 * * * *", "Mars/Olympus", "screening", SCREEN)
    with pytest.raises(TaskValidationError, match="schedule name"):
        make_schedule("a b", "0 * * * *", "UTC", "screening", SCREEN)
    with pytest.raises(TaskValidationError, match=r"args\.universe"):
        make_schedule("x", "0 * * * *", "UTC", "screening", {"strategy_code": "def f(df): ..."})
    _add(redis_client, "dup", "0 * * * *", "UTC", datetime.now(UTC))
    with pytest.raises(TaskValidationError, match="exists"):
        _add(redis_client, "dup", "0 * * * *", "UTC", datetime.now(UTC))
    with pytest.raises(TaskValidationError, match="no schedule named"):
        pause_schedule(redis_client, "nope")


def test_run_now_list_and_remove(redis_client: redis.Redis) -> None:
    now = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)
    _add(redis_client, "daily", "0 22 * * *", "Europe/Paris", now)
    assert run_now(redis_client, "daily", now=now) == "daily:now:2026-12-01T12:00:05Z"
    (state,) = list_schedules(redis_client, now=now)
    assert state.next_slot.isoformat() == "2026-12-01T22:00:00+01:00"
    assert not state.paused
    remove_schedule(redis_client, "daily")
    assert list_schedules(redis_client) == []
    for key in (keys.SCHEDULES, keys.SCHEDULES_LAST, keys.SCHEDULES_PAUSED):
        assert not redis_client.exists(key)
    # The run already queued is left alone.
    assert queued_ids(redis_client) == ["daily:now:2026-12-01T12:00:05Z"]


def test_cli_and_a_worker_run_a_due_schedule(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    strategy = tmp_path / "screen.py"
    strategy.write_text(source("momentum_screen"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return warm_cli.run(
            [*args],
            env=worker_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    added = cli("schedule", "add", "minutely", "screening", str(strategy),
                "--cron", "* * * * *", "--tz", "America/New_York",
                "--universe", "AAPL,MSFT,IBM", "--limit", "2")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "next run" in added.stdout
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(s["name"], s["paused"]) for s in listed] == [("minutely", False)]
    # Pretend the schedule was made long ago, so the current minute's slot is due now.
    redis_client.hset(keys.SCHEDULES_LAST, "minutely", 0)
    paused = cli("schedule", "pause", "minutely")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(cli("schedule", "list", "--json").stdout)[0]["paused"] is True
    assert cli("schedule", "resume", "minutely").returncode == 0
    redis_client.hset(keys.SCHEDULES_LAST, "minutely", 0)
    spawn_worker("sched-1", env={"STRATEGYQ_SCHEDULE_INTERVAL": "0.2"})

    def completed() -> str | None:
        for key in redis_client.scan_iter(match="task_result:minutely:*"):
            record = json.loads(redis_client.get(key) or "{}")
            if record.get("status") == "completed":
                return str(key)
        return None

    key = wait_until(completed, timeout_s=60)
    task_id = key.removeprefix("task_result:")
    slot = datetime.fromisoformat(task_id.removeprefix("minutely:"))
    assert slot.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
    result = get_task_result(redis_client, task_id)
    assert result is not None and result["data"]["execution_mode"] == "screening"
    now_run = cli("schedule", "run-now", "minutely")
    assert now_run.returncode == 0 and "minutely:now:" in now_run.stdout
    assert cli("schedule", "remove", "minutely").returncode == 0
    assert json.loads(cli("schedule", "list", "--json").stdout) == []


def test_three_worker_processes_racing_enqueue_each_due_slot_once(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    # Ten schedules with a slot due now (as if made long ago), and three real workers
    # ticking every 50 ms, all at once.
    names = [f"race-{i}" for i in range(10)]
    for name in names:
        _add(redis_client, name, "* * * * *", "UTC", datetime.now(UTC))
        redis_client.hset(keys.SCHEDULES_LAST, name, 0)
    racers = [
        spawn_worker(f"racer-{i}", env={"STRATEGYQ_SCHEDULE_INTERVAL": "0.05"}) for i in range(3)
    ]

    def finished() -> list[str]:
        ids = [
            str(k).removeprefix("task_result:")
            for k in redis_client.scan_iter("task_result:race-*")
        ]
        done = [
            i for i in ids if (get_task_result(redis_client, i) or {}).get("status") == "completed"
        ]
        return done if len(done) >= 10 else []

    done = wait_until(finished, timeout_s=90)
    # Let the racers tick a while longer: nothing more may be enqueued for those slots.
    time.sleep(1.5)
    queued: dict[str, int] = {}
    for racer in racers:
        for line in racer.output:
            if ": queued race-" in line:
                task_id = line.split(": queued ", 1)[1].split()[0]
                queued[task_id] = queued.get(task_id, 0) + 1
    # Every run enqueued by exactly one of the three (a slow machine may cross a minute:
    # then the next slot runs too, once).
    assert set(done) <= set(queued) and all(n == 1 for n in queued.values()), queued
    assert {t.split(":", 1)[0] for t in queued} == set(names)
    for task_id in done:
        assert redis_client.llen(keys.done(task_id)) == 1  # one terminal write per run
