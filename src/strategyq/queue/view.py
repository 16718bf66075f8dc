"""Every read of the queue's state, as typed values: the one read surface.

The HTTP API, the dashboard and the CLI read through :class:`QueueView` (and
write through :class:`~strategyq.queue.transitions.TaskQueue`, the producer
API and the dead-letter and schedule functions), so none of them names a key
or calls the Redis client for task state. Each method reads in as few round
trips as it can (pipelines, no ``SCAN``) and never writes.

- :meth:`QueueView.stats`: depth, workers, throughput, newest dead letters;
- :meth:`QueueView.workers`: every registered worker and its in-flight tasks;
- :meth:`QueueView.recent` and :meth:`QueueView.search`: finished tasks, with
  their status and type, from the recent-task indexes;
- :meth:`QueueView.task` and :meth:`QueueView.message`: one task's record and
  its wire message while it is still held;
- :meth:`QueueView.dead_letters`, :meth:`QueueView.schedules`;
- :meth:`QueueView.wait` and :meth:`QueueView.events`: following one task.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
import redis

from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import decode_result
from strategyq.queue import keys
from strategyq.queue.schedules import ScheduleState, list_schedules, schedule_state
from strategyq.queue.transitions import TaskQueue
from strategyq.queue.types import text
from strategyq.settings import QUEUE_NAME

BUCKETS = 12
"""Throughput buckets shown: an hour, in 5-minute buckets."""
BUCKET_S = 300
SEARCH_WINDOW = 2_000
"""How many of the newest finished tasks an id search looks through."""
HELD_DEAD_LETTERS = 200
"""How many of the newest dead letters :meth:`QueueView.message` looks through."""
FINISHED_STATUSES = ("completed", "error", "cancelled")


@dataclass(frozen=True)
class InFlightTask:
    """A task a worker has taken and not finished, with what its record says of the run."""

    task_id: str
    attempts: int = 0
    status: str | None = None
    stage: str | None = None
    task_type: str | None = None
    started_at: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker: alive while its heartbeat exists; what its heartbeat says."""

    worker_id: str
    alive: bool
    heartbeat_age_s: float | None
    beat_at: str | None
    version: str | None
    queue: str | None
    concurrency: int | None
    layers: list[str]
    in_flight: list[InFlightTask]


@dataclass(frozen=True)
class ThroughputBucket:
    """Tasks that finished (any terminal status) and failed (``error``) in one bucket."""

    end_ms: int
    finished: int
    failed: int


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter entry: the message (capped at 64 KiB), why, and when.

    ``fields`` is the stored entry as it is (``raw``, ``reason``, ``error``,
    ``task_id``, ``attempts``, ``at`` and whatever its writer added); an entry
    that is not JSON reads as ``{"raw": <text>, "reason": "unreadable entry"}``.
    """

    fields: dict[str, Any]

    @property
    def task_id(self) -> str | None:
        value = self.fields.get("task_id")
        return value if isinstance(value, str) else None

    @property
    def raw(self) -> str | None:
        value = self.fields.get("raw")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> dict[str, Any]:
        """The dead-lettered wire message, decoded ({} when it is not JSON)."""
        return _json(self.raw)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.fields)


@dataclass(frozen=True)
class QueueStats:
    """What the overview shows: depth, in-flight, workers, throughput, dead letters."""

    queue: str
    depth: int
    in_flight: int
    workers_alive: int
    dead_letters: int
    recent_tasks: int
    finished_last_hour: int
    failed_last_hour: int
    throughput: list[ThroughputBucket]
    workers: list[WorkerInfo]
    newest_dead_letters: list[DeadLetter] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["newest_dead_letters"] = [d.as_dict() for d in self.newest_dead_letters]
        return out


@dataclass(frozen=True)
class TaskSummary:
    """A finished task as the recent-task indexes know it (its record is not read)."""

    task_id: str
    finished_ms: int
    status: str | None
    task_type: str | None


@dataclass(frozen=True)
class RecentPage:
    """One page of finished tasks, and how many match in all."""

    total: int
    tasks: list[TaskSummary]


class TaskEvents:
    """One task's record changes as they happen: every script that writes the record
    publishes it on the task's channel. Subscribe, then read the current record, so a
    change between the two is never missed."""

    def __init__(self, client: redis.Redis, task_id: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._channel = keys.events(task_id)

    def subscribe(self) -> None:
        self._pubsub.subscribe(self._channel)

    def records(self, timeout_s: float) -> list[dict[str, Any]]:
        """The records published since the last call: waits up to ``timeout_s`` for the
        first, then takes whatever else has arrived. Unreadable messages are skipped."""
        out: list[dict[str, Any]] = []
        message = self._pubsub.get_message(timeout=timeout_s)
        while message is not None:
            record = decode_result(message.get("data"))
            if record is not None:
                out.append(record)
            message = self._pubsub.get_message(timeout=0.0)
        return out

    def close(self) -> None:
        self._pubsub.close()


class QueueView:
    """Reads of one queue's state (``client`` with or without ``decode_responses``)."""

    def __init__(self, client: redis.Redis, queue: str = QUEUE_NAME) -> None:
        self.client = client
        self.queue = queue

    # ------------------------------------------------------------------ the queue

    def stats(self, *, newest_dead_letters: int = 5) -> QueueStats:
        """Depth, workers, the last hour's throughput, and the newest dead letters."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.queue)
        pipe.llen(keys.DEAD_LETTER)
        pipe.zcard(keys.RECENT)
        if newest_dead_letters > 0:
            pipe.lrange(keys.DEAD_LETTER, 0, newest_dead_letters - 1)
        depth, dead, recent, *rest = pipe.execute()
        newest = rest[0] if rest else []
        registered = self.workers()
        buckets = self.throughput()
        return QueueStats(
            queue=self.queue,
            depth=int(depth),
            in_flight=sum(len(w.in_flight) for w in registered),
            workers_alive=sum(1 for w in registered if w.alive),
            dead_letters=int(dead),
            recent_tasks=int(recent),
            finished_last_hour=sum(b.finished for b in buckets),
            failed_last_hour=sum(b.failed for b in buckets),
            throughput=buckets,
            workers=registered,
            newest_dead_letters=[_dead_letter(raw) for raw in newest],
        )

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker, by id: alive, heartbeat age, its in-flight tasks."""
        members = sorted(text(m) for m in self.client.smembers(keys.WORKERS))
        if not members:
            return []
        pipe = self.client.pipeline(transaction=False)
        for member in members:
            pipe.get(keys.heartbeat(member))
            pipe.lrange(keys.processing(member), 0, -1)
        replies = pipe.execute()
        taken = [[_task_id_of(raw) for raw in replies[2 * i + 1]] for i in range(len(members))]
        runs = self._runs([task_id for ids in taken for task_id in ids])
        now = time.time()
        out = []
        for i, member in enumerate(members):
            beat = replies[2 * i]
            info = _json(beat)
            concurrency = info.get("concurrency")
            out.append(
                WorkerInfo(
                    worker_id=member,
                    alive=beat is not None,
                    heartbeat_age_s=_age_s(info.get("beat_at"), now),
                    beat_at=info.get("beat_at"),
                    version=info.get("version"),
                    queue=info.get("queue"),
                    concurrency=concurrency if isinstance(concurrency, int) else None,
                    layers=list(info.get("layers") or []),
                    in_flight=[runs[task_id] for task_id in taken[i]],
                )
            )
        return out

    def _runs(self, task_ids: list[str]) -> dict[str, InFlightTask]:
        """Attempts and the running record of each task (one round trip)."""
        if not task_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.get(keys.attempts(task_id))
            pipe.get(keys.result(task_id))
        replies = pipe.execute()
        out = {}
        for j, task_id in enumerate(task_ids):
            attempts, record = replies[2 * j], decode_result(replies[2 * j + 1]) or {}
            data = record.get("data") or {}
            out[task_id] = InFlightTask(
                task_id=task_id,
                attempts=int(attempts) if attempts else 0,
                status=record.get("status"),
                stage=data.get("stage"),
                task_type=data.get("task_type"),
                started_at=data.get("started_at"),
            )
        return out

    def throughput(self, now_ms: int | None = None) -> list[ThroughputBucket]:
        """Finished and failed tasks per 5-minute bucket over the last hour (oldest first)."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        edges = [now_ms - (BUCKETS - i) * BUCKET_S * 1000 for i in range(BUCKETS + 1)]
        pipe = self.client.pipeline(transaction=False)
        for lo, hi in itertools.pairwise(edges):
            pipe.zcount(keys.RECENT, f"({lo}", hi)
            pipe.zcount(keys.recent_by("error"), f"({lo}", hi)
        replies = pipe.execute()
        return [
            ThroughputBucket(edges[i + 1], int(replies[2 * i]), int(replies[2 * i + 1]))
            for i in range(BUCKETS)
        ]

    def workers_alive(self) -> int:
        """How many registered workers have a live heartbeat."""
        return TaskQueue(self.client, name=self.queue).workers_alive()

    # ------------------------------------------------------------------ finished tasks

    def recent(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        offset: int = 0,
        count: int = 50,
    ) -> RecentPage:
        """One page of finished tasks, newest first, of one status and/or type."""
        key = keys.recent_by(status, task_type)
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrevrange(key, offset, offset + count - 1, withscores=True)
        total, members = pipe.execute()
        return RecentPage(total=int(total), tasks=self._summaries(members))

    def search(self, text_: str, count: int = 50) -> list[TaskSummary]:
        """Finished tasks whose id contains ``text_``: the exact id first, then the newest."""
        needle = text_.strip()
        if not needle:
            return []
        found: list[tuple[Any, float]] = []
        exact = self.client.zscore(keys.RECENT, needle)
        if exact is not None:
            found.append((needle, float(exact)))
        newest: list[tuple[Any, float]] = list(
            self.client.zrevrange(keys.RECENT, 0, SEARCH_WINDOW - 1, withscores=True)  # type: ignore[arg-type]
        )
        for member, score in newest:
            name = text(member)
            if needle in name and name != needle:
                found.append((name, score))
            if len(found) >= count:
                break
        return self._summaries(found)

    def _summaries(self, members: list[tuple[Any, float]]) -> list[TaskSummary]:
        """Status and type of index members, from the filtered indexes (no record read)."""
        if not members:
            return []
        ids = [text(m) for m, _ in members]
        types = [t.value for t in TaskType]
        pipe = self.client.pipeline(transaction=False)
        for status in FINISHED_STATUSES:
            pipe.zmscore(keys.recent_by(status=status), ids)
        for task_type in types:
            pipe.zmscore(keys.recent_by(task_type=task_type), ids)
        replies = pipe.execute()
        by_status, by_type = replies[: len(FINISHED_STATUSES)], replies[len(FINISHED_STATUSES) :]
        out = []
        for i, (task_id, (_, score)) in enumerate(zip(ids, members, strict=True)):
            found = next(
                (s for s, r in zip(FINISHED_STATUSES, by_status, strict=True) if r[i] is not None),
                None,
            )
            kind = next((t for t, r in zip(types, by_type, strict=True) if r[i] is not None), None)
            out.append(TaskSummary(task_id, int(score), found, kind))
        return out

    # ------------------------------------------------------------------ one task

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The task's result record (``status``, ``data``, ``updated_at``), or None."""
        return decode_result(self.task_json(task_id))

    def finished_ms(self, task_id: str) -> int | None:
        """When the task's terminal result was written (epoch ms, from the recent-task index).

        A new run of the task writes a new time, so it tells whether a terminal
        record read before is still the stored one without reading it again.
        """
        score = self.client.zscore(keys.RECENT, task_id)
        return None if score is None else int(score)

    def task_json(self, task_id: str) -> bytes | str | None:
        """The task's result record as stored (JSON), for passing on without decoding."""
        raw: bytes | str | None = self.client.get(keys.result(task_id))  # type: ignore[assignment]
        return raw

    def message(self, task_id: str, worker_ids: list[str] | None = None) -> dict[str, Any] | None:
        """The task's wire message while it is still held: in a worker's processing list
        (of ``worker_ids``, default every registered one) or among the newest dead letters."""
        if worker_ids is None:
            worker_ids = sorted(text(m) for m in self.client.smembers(keys.WORKERS))
        pipe = self.client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.lrange(keys.processing(worker_id), 0, -1)
        pipe.lrange(keys.DEAD_LETTER, 0, HELD_DEAD_LETTERS - 1)
        replies = pipe.execute()
        for raws in replies[:-1]:
            for raw in raws:
                message = _json(raw)
                if message.get("task_id") == task_id:
                    return message
        for raw in replies[-1]:
            entry = _dead_letter(raw)
            if entry.task_id == task_id and entry.message:
                return entry.message
        return None

    def wait(self, task_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Block until the task's record is terminal; None when ``timeout_s`` passed first."""
        return TaskQueue(self.client, name=self.queue).wait(task_id, timeout_s)

    def events(self, task_id: str) -> TaskEvents:
        """A subscription to the task's record changes (call ``subscribe`` first)."""
        return TaskEvents(self.client, task_id)

    # ------------------------------------------------------------------ dead letters, schedules

    def dead_letters(self, count: int = 50) -> list[DeadLetter]:
        """The newest ``count`` dead-letter entries, newest first."""
        if count <= 0:
            return []
        return [_dead_letter(raw) for raw in self.client.lrange(keys.DEAD_LETTER, 0, count - 1)]

    def dead_letter_count(self) -> int:
        return int(self.client.llen(keys.DEAD_LETTER))  # type: ignore[arg-type]

    def schedules(self) -> list[ScheduleState]:
        """Every schedule, by name, with its last and next slot."""
        return list_schedules(self.client)

    def schedule(self, name: str) -> ScheduleState:
        """One schedule (raises ScheduleError, with what to do, when there is none)."""
        return schedule_state(self.client, name)


def _json(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _task_id_of(raw: Any) -> str:
    task_id = _json(raw).get("task_id")
    return task_id if isinstance(task_id, str) else "<malformed>"


_ENTRY_TEXTS = ("task_id", "reason", "at", "error", "raw")


def _dead_letter(raw: Any) -> DeadLetter:
    """One entry with its known fields of their documented types.

    Anyone who can push to the list (a producer's bug, another tool) may leave
    something else there: a non-JSON line or a JSON value that is not an object
    is kept whole under ``raw``; a known field of the wrong type is shown as text.
    """
    try:
        entry = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return DeadLetter({"raw": text(raw), "reason": "unreadable entry"})
    if not isinstance(entry, dict):
        return DeadLetter({"raw": text(raw), "reason": "not a JSON object"})
    for name in _ENTRY_TEXTS:
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            entry[name] = orjson.dumps(value).decode()
    attempts = entry.get("attempts")
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
        entry["attempts"] = None
    return DeadLetter(entry)


def _age_s(iso: Any, now: float) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return round(max(now - then, 0.0), 1)
