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
- :meth:`QueueView.board`: queued, running and finished tasks in one listing, each
  with its type, symbols, times, duration, headline metric or error type and worker;
- :meth:`QueueView.task` and :meth:`QueueView.message`: one task's record and
  its wire message while it is still held;
- :meth:`QueueView.dead_letters`, :meth:`QueueView.schedules`;
- :meth:`QueueView.wait` and :meth:`QueueView.events`: following one task;
  :meth:`QueueView.queue_events`: following every task (the live overview).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import redis

from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import decode_result
from strategyq.queue import keys
from strategyq.queue.tenants import Tenancy
from strategyq.queue.transitions import TaskQueue
from strategyq.queue.types import text
from strategyq.settings import QUEUE_NAME

if TYPE_CHECKING:
    # The schedule methods import it when called: it brings the cron parser and the task
    # validation that `strategyq queue` or `result` never use.
    from strategyq.queue.schedules import ScheduleState

BUCKETS = 12
"""Throughput buckets shown: an hour, in 5-minute buckets."""
BUCKET_S = 300
SEARCH_WINDOW = 2_000
"""How many of the newest finished tasks an id search looks through."""
HELD_DEAD_LETTERS = 200
"""How many of the newest dead letters :meth:`QueueView.message` looks through."""
FINISHED_STATUSES = ("completed", "error", "cancelled")
BOARD_QUEUED_SCAN = 5_000
"""How many of the next queued messages :meth:`QueueView.board` reads (the queue's
full length is still counted)."""
BOARD_STATUSES = ("queued", "running", *FINISHED_STATUSES)
INTERNAL_TYPES = ("sweep_chunk",)
"""Task types that are a worker's own work, not something a person submitted."""
SHOWN_SYMBOLS = 5
ROW_CACHE = 4_096
"""How many finished tasks' rows :meth:`QueueView.board` keeps between views."""


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


@dataclass(frozen=True)
class BoardRow:
    """One task of :meth:`QueueView.board`, from its message and/or its record.

    ``headline`` is the one figure of its result: ``total_return`` for a backtest,
    the maximised metric of a sweep's best combination, the ranked count of a screen.
    """

    task_id: str
    status: str
    task_type: str | None = None
    symbol_count: int | None = None
    symbols: list[str] = field(default_factory=list)
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    finished_ms: int | None = None
    duration_s: float | None = None
    headline: tuple[str, Any] | None = None
    error_type: str | None = None
    worker_id: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    wait_s: float | None = None
    """Time in the queue: from ``submitted_at`` to ``started_at`` (None: one is unknown)."""
    symbols_all: list[str] = field(default_factory=list, repr=False)
    """Every symbol (``symbols`` holds the first few shown), for the symbol filter."""


@dataclass(frozen=True)
class Board:
    """The operator's listing: the next queued tasks, every running one, a page of the
    finished ones; ``*_total`` count every match (queued: of the scanned part)."""

    queued_total: int
    queued: list[BoardRow]
    running: list[BoardRow]
    finished_total: int
    finished: list[BoardRow]
    queue_length: int


@dataclass(frozen=True)
class BoardFilter:
    """What :meth:`QueueView.board` lists: ``text`` is part of an id, ``symbol`` one ticker
    (case-insensitive), ``name`` the task's ``name`` arg, ``tag`` one of its ``tags``, the
    times bound when the task was finished (or submitted, for queued and running ones), in
    epoch milliseconds."""

    status: str | None = None
    task_type: str | None = None
    text: str | None = None
    symbol: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    name: str | None = None
    tag: str | None = None

    def wants(self, status: str) -> bool:
        return self.status is None or self.status == status

    @property
    def by_args(self) -> bool:
        """Whether a finished task's record must be read to tell if it matches."""
        return bool(self.symbol or self.name or self.tag)

    def args_match(self, args: dict[str, Any]) -> bool:
        """Whether task args (a message's, or those a record keeps) pass the symbol, name
        and tag filters."""
        if self.symbol and self.symbol.upper() not in _upper(_arg_symbols(args)):
            return False
        if self.name and _arg_name(args) != self.name:
            return False
        return not self.tag or self.tag in _arg_tags(args)


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


class QueueEvents:
    """Every task's record changes as they happen (all the tasks' event channels at once,
    by pattern): what a live overview follows instead of polling."""

    def __init__(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._prefix = len(keys.events(""))

    def subscribe(self) -> None:
        self._pubsub.psubscribe(keys.EVENTS_PATTERN)

    def records(self, timeout_s: float, most: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """``(task_id, record)`` of the changes published since the last call (at most
        ``most``): waits up to ``timeout_s`` for the first. Unreadable ones are skipped."""
        out: list[tuple[str, dict[str, Any]]] = []
        message = self._pubsub.get_message(timeout=timeout_s)
        while message is not None:
            record = decode_result(message.get("data"))
            if record is not None:
                out.append((text(message.get("channel"))[self._prefix :], record))
            if len(out) >= most:
                break
            message = self._pubsub.get_message(timeout=0.0)
        return out

    def close(self) -> None:
        self._pubsub.close()


class QueueView:
    """Reads of one queue's state (``client`` with or without ``decode_responses``)."""

    def __init__(self, client: redis.Redis, queue: str = QUEUE_NAME) -> None:
        self.client = client
        self.queue = queue
        self._rows: OrderedDict[tuple[str, int], BoardRow] = OrderedDict()
        self._rows_lock = threading.Lock()

    @property
    def tenancy(self) -> Tenancy:
        """Tenants' quotas and use, and lanes (:mod:`strategyq.queue.tenants`)."""
        return Tenancy(self.client, self.queue)

    # ------------------------------------------------------------------ the queue

    def stats(self, *, newest_dead_letters: int = 5) -> QueueStats:
        """Depth, workers, the last hour's throughput, and the newest dead letters."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.queue)
        pipe.llen(keys.DEAD_LETTER)
        pipe.zcard(keys.RECENT)
        pipe.hvals(keys.lane_depth(self.queue))
        if newest_dead_letters > 0:
            pipe.lrange(keys.DEAD_LETTER, 0, newest_dead_letters - 1)
        ingress, dead, recent, lanes, *rest = pipe.execute()
        depth = int(ingress) + sum(int(n) for n in lanes)
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

    # ------------------------------------------------------------------ the operator's listing

    def board(self, where: BoardFilter | None = None, *, offset: int = 0, count: int = 50) -> Board:
        """Queued (next to run first), running, and one page of finished tasks, newest first.

        Reads the next :data:`BOARD_QUEUED_SCAN` messages of the queue, every
        processing list, and the records of the rows it returns (one round trip
        each); a symbol search reads the records of the newest :data:`SEARCH_WINDOW`
        finished tasks. Internal task types (``sweep_chunk``) are left out.
        """
        where = where or BoardFilter()
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.queue)
        pipe.lrange(self.queue, -BOARD_QUEUED_SCAN, -1)
        pipe.smembers(keys.WORKERS)
        length, raws, members = pipe.execute()
        # What waits in the lanes runs before what the workers have not routed yet.
        lane_raws = self.tenancy.lane_messages(BOARD_QUEUED_SCAN)
        raws = list(raws) + lane_raws[::-1]
        length = int(length) + len(lane_raws)
        timed = where.since_ms is not None or where.until_ms is not None
        # A time filter needs each match's record (its submission time): all are read.
        queued_total, shown_queued = (
            self._queued(raws, where, BOARD_QUEUED_SCAN if timed else count)
            if where.wants("queued")
            else (0, [])
        )
        running: list[tuple[dict[str, Any], str]] = []
        if where.wants("running") and members:
            workers = sorted(text(m) for m in members)
            pipe = self.client.pipeline(transaction=False)
            for worker_id in workers:
                pipe.lrange(keys.processing(worker_id), 0, -1)
            for worker_id, held in zip(workers, pipe.execute(), strict=True):
                for raw in held:
                    message = _json(raw)
                    if self._message_matches(message, where):
                        running.append((message, worker_id))
        records = self._records(
            [m.get("task_id") for m in shown_queued] + [m.get("task_id") for m, _ in running]
        )
        queued_rows = [_message_row(m, "queued", records, None) for m in shown_queued]
        running_rows = [_message_row(m, "running", records, w) for m, w in running]
        running_rows = [r for r in running_rows if _in_window(r.started_at, where)]
        if timed:
            queued_rows = [r for r in queued_rows if _in_window(r.submitted_at, where)]
            queued_total = len(queued_rows)
            queued_rows = queued_rows[:count]
        finished_total, finished = self._finished(where, offset, count)
        # The queue, the processing lists and the finished index are read one after the
        # other, not as one snapshot: a task that moved on between two reads (picked up,
        # or finished) is listed once, where the later read found it.
        later = {r.task_id for r in finished}
        running_rows = [r for r in running_rows if r.task_id not in later]
        later.update(r.task_id for r in running_rows)
        moved_on = sum(r.task_id in later for r in queued_rows)
        queued_rows = [r for r in queued_rows if r.task_id not in later]
        queued_total = max(0, queued_total - moved_on)
        return Board(
            queued_total=queued_total,
            queued=queued_rows,
            running=running_rows,
            finished_total=finished_total,
            finished=finished,
            queue_length=int(length),
        )

    def _queued(
        self, raws: list[Any], where: BoardFilter, count: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """How many queued messages match, and the first ``count`` to run of them.

        Without a type or symbol filter, a message past the shown ones is counted
        without decoding it, unless it could be an internal one (it names
        ``sweep_chunk``) or the id filter's text is in it: then it is decoded to tell.
        """
        needle = where.text.encode() if where.text else None
        plain = not (where.task_type or where.by_args)
        total, shown = 0, list[dict[str, Any]]()
        # LPUSH in, taken from the right: the right end runs next.
        for raw in reversed(raws):
            data = raw if isinstance(raw, bytes) else str(raw).encode()
            if needle is not None and needle not in data:
                continue
            if plain and needle is None and len(shown) >= count and b"sweep_chunk" not in data:
                total += 1
                continue
            message = _json(data)
            if self._message_matches(message, where):
                total += 1
                if len(shown) < count:
                    shown.append(message)
        return total, shown

    def _message_matches(self, message: dict[str, Any], where: BoardFilter) -> bool:
        task_id, kind = message.get("task_id"), message.get("task_type")
        if not isinstance(task_id, str) or kind in INTERNAL_TYPES:
            return False
        if where.task_type and kind != where.task_type:
            return False
        if where.text and where.text not in task_id:
            return False
        if where.by_args:
            args = message.get("args")
            return where.args_match(args if isinstance(args, dict) else {})
        return True

    def _records(self, task_ids: list[Any]) -> dict[str, dict[str, Any]]:
        ids = [t for t in task_ids if isinstance(t, str)]
        if not ids:
            return {}
        raws = self.client.mget([keys.result(t) for t in ids])
        return {t: decode_result(raw) or {} for t, raw in zip(ids, raws, strict=True)}

    def _finished(self, where: BoardFilter, offset: int, count: int) -> tuple[int, list[BoardRow]]:
        statuses = [s for s in FINISHED_STATUSES if where.wants(s)]
        if not statuses:
            return 0, []
        status = where.status if where.status in FINISHED_STATUSES else None
        key = keys.recent_by(status, where.task_type)
        high = "+inf" if where.until_ms is None else str(where.until_ms)
        low = "-inf" if where.since_ms is None else str(where.since_ms)
        if not where.text and not where.by_args:
            pipe = self.client.pipeline(transaction=False)
            pipe.zcount(key, low, high)
            pipe.zrevrangebyscore(key, high, low, start=offset, num=count, withscores=True)
            total, members = pipe.execute()
            return int(total), self._finished_rows(members)
        window: list[tuple[Any, float]] = list(
            self.client.zrevrangebyscore(  # type: ignore[arg-type]
                key, high, low, start=0, num=SEARCH_WINDOW, withscores=True
            )
        )
        members = [(m, s) for m, s in window if not where.text or where.text in text(m)]
        if not where.by_args:
            return len(members), self._finished_rows(members[offset : offset + count])
        rows: list[BoardRow] = []
        for start in range(0, len(members), 200):
            part = self._finished_rows(members[start : start + 200])
            rows.extend(r for r in part if _row_matches(r, where))
        return len(rows), rows[offset : offset + count]

    def oldest_finished_ms(self) -> int | None:
        """When the oldest task the recent-task index still lists finished (epoch ms): runs
        that ended before it are gone from Redis (None: the index is empty)."""
        rows: Any = self.client.zrange(keys.RECENT, 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None

    def _finished_rows(self, members: list[Any]) -> list[BoardRow]:
        """Rows of finished tasks; a task's row is read once per run (its finish time
        names the run: a new run writes a new one) and kept for the next views."""
        if not members:
            return []
        pairs = [(text(m), int(score)) for m, score in members]
        with self._rows_lock:
            known = {pair: self._rows[pair] for pair in pairs if pair in self._rows}
        missing = [(m, score) for (m, score), pair in zip(members, pairs, strict=True)
                   if pair not in known]  # fmt: skip
        if missing:
            summaries = self._summaries(missing)
            records = self._records([t.task_id for t in summaries])
            fresh = {
                (t.task_id, t.finished_ms): _finished_row(t, records.get(t.task_id) or {})
                for t in summaries
            }
            known.update(fresh)
            with self._rows_lock:
                self._rows.update(fresh)
                while len(self._rows) > ROW_CACHE:
                    self._rows.popitem(last=False)
        return [known[pair] for pair in pairs]

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

    def queue_events(self) -> QueueEvents:
        """Every task's changes (see :class:`QueueEvents`); ``subscribe()`` it first."""
        return QueueEvents(self.client)

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
        from strategyq.queue.schedules import list_schedules

        return list_schedules(self.client)

    def schedule(self, name: str) -> ScheduleState:
        """One schedule (raises ScheduleError, with what to do, when there is none)."""
        from strategyq.queue.schedules import schedule_state

        return schedule_state(self.client, name)


def _upper(symbols: list[str]) -> set[str]:
    return {s.upper() for s in symbols}


def _arg_symbols(args: dict[str, Any]) -> list[str]:
    """The tickers a task's args name (a backtest's or sweep's ``symbols``, a screen's
    ``universe``); a named symbol list (one string) is itself."""
    for name in ("symbols", "universe"):
        value = args.get(name)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
    return []


def _arg_name(args: dict[str, Any]) -> str | None:
    name = args.get("name")
    return name if isinstance(name, str) and name else None


def _arg_tags(args: dict[str, Any]) -> list[str]:
    tags = args.get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    return sorted({t for t in tags if isinstance(t, str) and t}) if isinstance(tags, list) else []


def _row_matches(row: BoardRow, where: BoardFilter) -> bool:
    if where.symbol and where.symbol.upper() not in _upper(row.symbols_all):
        return False
    if where.name and row.name != where.name:
        return False
    return not where.tag or where.tag in row.tags


def _seconds_between(start: Any, end: Any) -> float | None:
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return round(max((b - a).total_seconds(), 0.0), 3)
    except TypeError:  # one aware, one naive
        return None


def _iso_ms(iso: Any) -> int | None:
    if not isinstance(iso, str):
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _in_window(iso: str | None, where: BoardFilter) -> bool:
    if where.since_ms is None and where.until_ms is None:
        return True
    ms = _iso_ms(iso)
    if ms is None:
        return False
    return (where.since_ms is None or ms >= where.since_ms) and (
        where.until_ms is None or ms <= where.until_ms
    )


def _message_row(
    message: dict[str, Any], status: str, records: dict[str, dict[str, Any]], worker: str | None
) -> BoardRow:
    task_id = str(message.get("task_id"))
    args = message.get("args")
    symbols = _arg_symbols(args if isinstance(args, dict) else {})
    record = records.get(task_id) or {}
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    assert isinstance(data, dict)
    kind = message.get("task_type")
    started = data.get("started_at") if status == "running" else None
    submitted = _text_or_none(data.get("submitted_at")) or _text_or_none(data.get("queued_at"))
    plain_args = args if isinstance(args, dict) else {}
    return BoardRow(
        task_id=task_id,
        status=status if record.get("status") in (None, status) else str(record.get("status")),
        task_type=kind if isinstance(kind, str) else None,
        symbol_count=len(symbols),
        symbols=symbols[:SHOWN_SYMBOLS],
        submitted_at=submitted,
        started_at=_text_or_none(started),
        duration_s=_seconds_between(started, datetime.now(UTC).isoformat()) if started else None,
        worker_id=worker,
        name=_arg_name(plain_args),
        tags=_arg_tags(plain_args),
        wait_s=_seconds_between(submitted, started) if started else None,
        symbols_all=symbols,
    )


def _finished_row(summary: TaskSummary, record: dict[str, Any]) -> BoardRow:
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    assert isinstance(data, dict)
    kept = data.get("task_args")
    args: dict[str, Any] = kept if isinstance(kept, dict) else {}
    symbols = _arg_symbols(args) or _arg_symbols(data)
    submitted = _text_or_none(data.get("submitted_at"))
    started = _text_or_none(data.get("started_at"))
    summary_block = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    assert isinstance(summary_block, dict)
    count = len(symbols) if symbols else summary_block.get("symbols_processed")
    seconds = data.get("execution_time_seconds")
    status = summary.status or _text_or_none(record.get("status")) or "?"
    return BoardRow(
        task_id=summary.task_id,
        status=status,
        task_type=summary.task_type,
        symbol_count=count if isinstance(count, int) else None,
        symbols=symbols[:SHOWN_SYMBOLS],
        submitted_at=submitted,
        started_at=started,
        finished_at=_text_or_none(data.get("completed_at")),
        finished_ms=summary.finished_ms,
        duration_s=float(seconds) if isinstance(seconds, int | float) else None,
        headline=_headline(data) if status == "completed" else None,
        error_type=_text_or_none(data.get("error_type")) if status != "completed" else None,
        worker_id=_text_or_none(data.get("worker_id")),
        name=_arg_name(args),
        tags=_arg_tags(args),
        wait_s=_seconds_between(submitted, started),
        symbols_all=symbols,
    )


def _headline(data: dict[str, Any]) -> tuple[str, Any] | None:
    mode = data.get("execution_mode")
    if mode == "sweep":
        best, metric = data.get("best"), data.get("maximize")
        metrics = best.get("metrics") if isinstance(best, dict) else None
        if isinstance(metric, str) and isinstance(metrics, dict) and metric in metrics:
            return metric, metrics[metric]
        return None
    if mode == "screening":
        ranked = data.get("ranked_results")
        return ("ranked", len(ranked)) if isinstance(ranked, list) else None
    metrics = data.get("performance_metrics")
    if isinstance(metrics, dict) and "total_return" in metrics:
        return "total_return", metrics["total_return"]
    return None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
