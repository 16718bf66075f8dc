"""The queue's read surface (QueueView) against a real server, driven by the real transitions."""

from __future__ import annotations

import json
import threading

import redis

from strategyq.protocol.results import dumps, utc_now_iso
from strategyq.queue import TaskQueue, records
from strategyq.queue.schedules import add_schedule, make_schedule
from strategyq.queue.view import DeadLetter, QueueView, TaskSummary, WorkerInfo

CODE = "def s(df):\n    return []\n"


def message(task_id: str) -> bytes:
    args = {
        "strategy_code": CODE,
        "symbols": ["AAPL"],
        "start_date": "2011-01-01",
        "end_date": "2011-06-30",
    }
    return json.dumps({"task_id": task_id, "task_type": "backtest", "args": args}).encode()


def run_to_end(q: TaskQueue, worker_id: str, task_id: str, status: str) -> None:
    taken = q.take(worker_id, None)
    assert taken is not None and json.loads(taken.raw)["task_id"] == task_id
    raw = taken.raw
    claim = q.claim(worker_id, task_id, "backtest", utc_now_iso())
    record = records.error("boom", "StrategyError") if status == "error" else records.cancelled()
    q.finish(worker_id, task_id, claim.token, record, raw, status=status, task_type="backtest")


def test_the_view_reads_every_state_the_transitions_write(redis_client: redis.Redis) -> None:
    q = TaskQueue(redis_client)
    view = QueueView(redis_client)
    for task_id in ("done-1", "failed-2", "busy-3"):
        q.push(task_id, message(task_id))
    run_to_end(q, "w1", "done-1", "cancelled")
    run_to_end(q, "w1", "failed-2", "error")
    busy = q.take("w1", None)
    assert busy is not None
    q.claim("w1", "busy-3", "backtest", utc_now_iso())
    q.beat(
        "w1",
        dumps(
            {
                "version": "9",
                "queue": "strategy_queue",
                "concurrency": 2,
                "layers": ["seccomp"],
                "beat_at": utc_now_iso(),
            }
        ),
        10_000,
    )
    q.push("bad", b"not json")
    bad = q.take("w2", None)
    assert bad is not None and bad.refusal == "malformed"
    q.dead_letter("w2", bad.raw, "malformed", "not JSON")
    q.push("waiting-4", message("waiting-4"))

    stats = view.stats()
    assert (stats.depth, stats.in_flight, stats.workers_alive) == (1, 1, 1)
    assert (stats.dead_letters, stats.recent_tasks) == (1, 2)
    assert (stats.finished_last_hour, stats.failed_last_hour) == (2, 1)
    assert len(stats.throughput) == 12 and stats.throughput[-1].finished == 2
    assert [d.fields["reason"] for d in stats.newest_dead_letters] == ["malformed"]
    assert json.loads(json.dumps(stats.as_dict()))["workers"][0]["worker_id"] == "w1"

    (worker,) = view.workers()
    assert isinstance(worker, WorkerInfo)
    assert (worker.worker_id, worker.alive, worker.version, worker.concurrency) == (
        "w1",
        True,
        "9",
        2,
    )
    assert worker.layers == ["seccomp"] and worker.heartbeat_age_s is not None
    (run,) = worker.in_flight
    assert (run.task_id, run.attempts, run.status, run.stage) == (
        "busy-3",
        1,
        "running",
        "starting",
    )
    assert view.workers_alive() == 1

    page = view.recent(count=10)
    assert page.total == 2 and [t.task_id for t in page.tasks] == ["failed-2", "done-1"]
    assert page.tasks[0] == TaskSummary("failed-2", page.tasks[0].finished_ms, "error", "backtest")
    failed = view.recent(status="error", task_type="backtest")
    assert [t.task_id for t in failed.tasks] == ["failed-2"]
    assert view.recent(status="completed").total == 0
    assert [t.task_id for t in view.search("done")] == ["done-1"]
    assert [t.task_id for t in view.search("done-1")] == ["done-1"]
    assert view.search("   ") == []

    assert (view.task("failed-2") or {})["status"] == "error"
    assert view.task("never") is None and view.task_json("never") is None
    assert json.loads(view.task_json("done-1") or "{}")["status"] == "cancelled"
    assert (view.message("busy-3") or {})["task_id"] == "busy-3"
    assert view.message("waiting-4") is None  # in the queue, held by no worker

    (letter,) = view.dead_letters(10)
    assert isinstance(letter, DeadLetter) and letter.raw == "not json" and letter.task_id is None
    assert view.dead_letter_count() == 1 and view.dead_letters(0) == []
    redis_client.lpush("strategyq:dead_letter", "{broken")
    assert view.dead_letters(1)[0].fields == {"raw": "{broken", "reason": "unreadable entry"}


def test_wait_and_events_follow_one_task(redis_client: redis.Redis) -> None:
    q = TaskQueue(redis_client)
    view = QueueView(redis_client)
    q.push("t", message("t"))
    events = view.events("t")
    events.subscribe()
    try:
        assert events.records(0.2) == []
        taken = q.take("w1", None)
        assert taken is not None
        raw = taken.raw
        claim = q.claim("w1", "t", "backtest", utc_now_iso())
        statuses = [r["status"] for r in events.records(2.0)]
        assert statuses == ["running"]
        assert view.wait("t", 0.1) is None
        finisher = threading.Timer(
            0.2,
            lambda: q.finish(
                "w1",
                "t",
                claim.token,
                records.cancelled(),
                raw,
                status="cancelled",
                task_type="backtest",
            ),
        )
        finisher.start()
        done = view.wait("t", 10)
        finisher.join()
        assert done is not None and done["status"] == "cancelled"
        assert [r["status"] for r in events.records(2.0)] == ["cancelled"]
    finally:
        events.close()


def test_schedules_read_through_the_view(redis_client: redis.Redis) -> None:
    view = QueueView(redis_client)
    assert view.schedules() == []
    args = {"strategy_code": CODE, "universe": ["AAPL"]}
    add_schedule(redis_client, make_schedule("nightly", "0 2 * * *", "UTC", "screening", args))
    (state,) = view.schedules()
    assert state.schedule.name == "nightly" and not state.paused
    assert view.schedule("nightly").next_slot == state.next_slot


def test_the_board_lists_a_task_that_moved_on_between_its_reads_once(
    redis_client: redis.Redis,
) -> None:
    """The board reads the queue, then the processing lists, then the finished index: a
    task picked up or finished between two of those reads is found by both. The states
    such reads see are made here directly: the message still in the queue as well as in
    a worker's processing list, and a finished task's message still held by its worker."""
    q = TaskQueue(redis_client)
    view = QueueView(redis_client)
    q.push("ending-2", message("ending-2"))
    run_to_end(q, "w1", "ending-2", "cancelled")
    redis_client.lpush("strategyq:processing:w1", message("ending-2"))  # as read before finish
    q.push("moving-1", message("moving-1"))
    taken = q.take("w1", None)
    assert taken is not None
    q.claim("w1", "moving-1", "backtest", utc_now_iso())
    q.push("waiting-3", message("waiting-3"))
    redis_client.rpush("strategy_queue", taken.raw)  # as the queue read before the take
    q.beat("w1", dumps({"queue": "strategy_queue", "beat_at": utc_now_iso()}), 10_000)

    board = view.board()
    assert [r.task_id for r in board.queued] == ["waiting-3"] and board.queued_total == 1
    assert [r.task_id for r in board.running] == ["moving-1"]
    assert [r.task_id for r in board.finished] == ["ending-2"]
