"""What the API and the dashboard read from Redis, in as few round trips as possible.

Nothing here writes: writes go through the producer API (:mod:`strategyq.client`)
and the dead-letter functions (:mod:`strategyq.admin`), the same code the CLI uses.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from strategyq.protocol import TaskType, decode_result
from strategyq.queue import admin, keys

HOUR_BUCKETS = 12
BUCKET_S = 300
SEARCH_WINDOW = 2_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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


def _age_s(iso: Any, now: float) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        from datetime import datetime

        then = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return round(max(now - then, 0.0), 1)


def workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Every registered worker: alive, heartbeat age, layers, concurrency, its in-flight tasks."""
    members = sorted(_text(m) for m in client.smembers(keys.WORKERS))
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.get(keys.heartbeat(member))
        pipe.lrange(keys.processing(member), 0, -1)
    replies = pipe.execute()
    taken: list[tuple[int, str]] = []
    out: list[dict[str, Any]] = []
    now = time.time()
    for i, member in enumerate(members):
        beat, raws = replies[2 * i], replies[2 * i + 1]
        info = _json(beat)
        tasks = []
        for raw in raws:
            task_id = _task_id_of(raw)
            tasks.append({"task_id": task_id, "attempts": 0, "status": None, "stage": None})
            taken.append((i, task_id))
        out.append(
            {
                "worker_id": member,
                "alive": beat is not None,
                "heartbeat_age_s": _age_s(info.get("beat_at"), now),
                "beat_at": info.get("beat_at"),
                "version": info.get("version"),
                "queue": info.get("queue"),
                "concurrency": info.get("concurrency"),
                "layers": info.get("layers") or [],
                "in_flight": tasks,
            }
        )
    if taken:
        pipe = client.pipeline(transaction=False)
        for _, task_id in taken:
            pipe.get(keys.attempts(task_id))
            pipe.get(keys.result(task_id))
        replies = pipe.execute()
        cursor: dict[int, int] = {}
        for j, (i, _task_id) in enumerate(taken):
            slot = cursor.get(i, 0)
            cursor[i] = slot + 1
            task = out[i]["in_flight"][slot]
            attempts, result = replies[2 * j], decode_result(replies[2 * j + 1]) or {}
            data = result.get("data") or {}
            task["attempts"] = int(attempts) if attempts else 0
            task["status"] = result.get("status")
            task["stage"] = data.get("stage")
            task["task_type"] = data.get("task_type")
            task["started_at"] = data.get("started_at")
    return out


def throughput(client: redis.Redis, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Finished and failed tasks per 5-minute bucket over the last hour (oldest first)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    edges = [now_ms - (HOUR_BUCKETS - i) * BUCKET_S * 1000 for i in range(HOUR_BUCKETS + 1)]
    for lo, hi in itertools.pairwise(edges):
        pipe.zcount(keys.RECENT, f"({lo}", hi)
        pipe.zcount(keys.recent_by("error"), f"({lo}", hi)
    replies = pipe.execute()
    return [
        {"end_ms": edges[i + 1], "finished": int(replies[2 * i]), "failed": int(replies[2 * i + 1])}
        for i in range(HOUR_BUCKETS)
    ]


def overview(client: redis.Redis, queue: str, dead_letter_count: int = 5) -> dict[str, Any]:
    """Everything the overview page shows: depth, workers, throughput, newest dead letters."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.llen(keys.DEAD_LETTER)
    pipe.lrange(keys.DEAD_LETTER, 0, dead_letter_count - 1)
    pipe.zcard(keys.RECENT)
    depth, dead, newest, recent = pipe.execute()
    registered = workers(client)
    buckets = throughput(client)
    return {
        "queue": queue,
        "depth": int(depth),
        "in_flight": sum(len(w["in_flight"]) for w in registered),
        "workers_alive": sum(1 for w in registered if w["alive"]),
        "dead_letters": int(dead),
        "recent_tasks": int(recent),
        "finished_last_hour": sum(b["finished"] for b in buckets),
        "failed_last_hour": sum(b["failed"] for b in buckets),
        "throughput": buckets,
        "workers": registered,
        "newest_dead_letters": [dead_letter_entry(raw) for raw in newest],
    }


def dead_letter_entry(raw: Any) -> dict[str, Any]:
    return admin.dead_letter_entry(raw)


@dataclass(frozen=True)
class RecentPage:
    total: int
    tasks: list[dict[str, Any]]


def recent_tasks(
    client: redis.Redis,
    *,
    status: str | None = None,
    task_type: str | None = None,
    offset: int = 0,
    count: int = 50,
) -> RecentPage:
    """One page of finished tasks, newest first, from the recent-task index (no SCAN)."""
    key = keys.recent_by(status, task_type)
    pipe = client.pipeline(transaction=False)
    pipe.zcard(key)
    pipe.zrevrange(key, offset, offset + count - 1, withscores=True)
    total, members = pipe.execute()
    return RecentPage(total=int(total), tasks=_summaries(client, members))


STATUSES = ("completed", "error", "cancelled")


def _summaries(client: redis.Redis, members: list[tuple[Any, float]]) -> list[dict[str, Any]]:
    """Rows for index members: status and type from the filtered indexes (no result read)."""
    if not members:
        return []
    ids = [_text(m) for m, _ in members]
    types = [t.value for t in TaskType]
    pipe = client.pipeline(transaction=False)
    for status in STATUSES:
        pipe.zmscore(keys.recent_by(status=status), ids)
    for task_type in types:
        pipe.zmscore(keys.recent_by(task_type=task_type), ids)
    replies = pipe.execute()
    out = []
    for i, (task_id, (_, score)) in enumerate(zip(ids, members, strict=True)):
        found = next((s for s, r in zip(STATUSES, replies, strict=False) if r[i] is not None), None)
        kind = next(
            (t for t, r in zip(types, replies[len(STATUSES) :], strict=True) if r[i] is not None),
            None,
        )
        out.append(
            {"task_id": task_id, "finished_ms": int(score), "status": found, "task_type": kind}
        )
    return out


def search_tasks(client: redis.Redis, text: str, count: int = 50) -> list[dict[str, Any]]:
    """Tasks whose id contains ``text``: the exact id first, then the newest matches."""
    text = text.strip()
    if not text:
        return []
    found: list[tuple[Any, float]] = []
    exact = client.zscore(keys.RECENT, text)
    if exact is not None:
        found.append((text, float(exact)))
    newest: list[tuple[Any, float]] = list(
        client.zrevrange(keys.RECENT, 0, SEARCH_WINDOW - 1, withscores=True)  # type: ignore[arg-type]
    )
    for member, score in newest:
        name = _text(member)
        if text in name and name != text:
            found.append((name, score))
        if len(found) >= count:
            break
    return _summaries(client, found)


def finished_ms(client: redis.Redis, task_id: str) -> int | None:
    """When the task's terminal result was written (epoch ms, from the recent-task index).

    A new run of the task writes a new time, so it tells whether a terminal
    record read before is still the stored one without reading it again.
    """
    score = client.zscore(keys.RECENT, task_id)
    return None if score is None else int(score)


def task_record(client: redis.Redis, task_id: str) -> dict[str, Any] | None:
    """The task's result record, or None."""
    return decode_result(client.get(keys.result(task_id)))


def task_message(client: redis.Redis, task_id: str, worker_ids: list[str]) -> dict[str, Any] | None:
    """The task's wire message when it is still held somewhere (in flight or dead-lettered)."""
    pipe = client.pipeline(transaction=False)
    for worker_id in worker_ids:
        pipe.lrange(keys.processing(worker_id), 0, -1)
    pipe.lrange(keys.DEAD_LETTER, 0, 199)
    replies = pipe.execute()
    for raws in replies[:-1]:
        for raw in raws:
            message = _json(raw)
            if message.get("task_id") == task_id:
                return message
    for raw in replies[-1]:
        entry = _json(raw)
        if entry.get("task_id") == task_id:
            message = _json(entry.get("raw"))
            if message:
                return message
    return None
