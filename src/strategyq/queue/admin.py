"""Queue inspection and dead-letter handling (``strategyq queue``, ``strategyq dlq``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from strategyq.protocol import decode_result
from strategyq.queue import keys, records
from strategyq.queue.types import text


def queue_stats(client: redis.Redis, queue: str) -> dict[str, Any]:
    """Depth, dead letters, and per worker: alive or not, and its in-flight tasks with attempts."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.llen(keys.DEAD_LETTER)
    pipe.smembers(keys.WORKERS)
    depth, dead, members = pipe.execute()
    workers = []
    for member in sorted(text(m) for m in members):
        pipe = client.pipeline(transaction=False)
        pipe.get(keys.heartbeat(member))
        pipe.lrange(keys.processing(member), 0, -1)
        beat, taken = pipe.execute()
        tasks = []
        for raw in taken:
            try:
                task_id = str(orjson.loads(raw).get("task_id"))
            except (orjson.JSONDecodeError, AttributeError):
                task_id = "<malformed>"
            attempts = client.get(keys.attempts(task_id))
            result = decode_result(client.get(keys.result(task_id))) or {}
            tasks.append(
                {
                    "task_id": task_id,
                    "attempts": int(attempts) if attempts else 0,
                    "status": result.get("status"),
                    "stage": (result.get("data") or {}).get("stage"),
                }
            )
        info = orjson.loads(beat) if beat else {}
        workers.append({"worker_id": member, "alive": beat is not None, "in_flight": tasks, **info})
    return {
        "queue": queue,
        "depth": int(depth),
        "in_flight": sum(len(w["in_flight"]) for w in workers),
        "workers_alive": sum(1 for w in workers if w["alive"]),
        "dead_letters": int(dead),
        "workers": workers,
    }


_ENTRY_TEXTS = ("task_id", "reason", "at", "error", "raw")


def dead_letter_entry(raw: Any) -> dict[str, Any]:
    """One dead-letter entry as a dict whose known fields have their documented types.

    Anyone who can push to the list (a producer's bug, another tool) may leave
    something else there: a non-JSON line or a JSON value that is not an object
    is kept whole under ``raw``; a known field of the wrong type is shown as text.
    """
    try:
        entry = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return {"raw": text(raw), "reason": "unreadable entry"}
    if not isinstance(entry, dict):
        return {"raw": text(raw), "reason": "not a JSON object"}
    for name in _ENTRY_TEXTS:
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            entry[name] = orjson.dumps(value).decode()
    attempts = entry.get("attempts")
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
        entry["attempts"] = None
    return entry


def dead_letters(client: redis.Redis, count: int = 50) -> list[dict[str, Any]]:
    """The newest ``count`` dead-letter entries (newest first)."""
    return [dead_letter_entry(raw) for raw in client.lrange(keys.DEAD_LETTER, 0, count - 1)]


@dataclass
class RetryReport:
    """What ``dlq retry`` did: how many went back, and why each other entry stayed."""

    moved: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def retry_dead_letters(
    client: redis.Redis, queue: str, task_id: str | None = None, *, result_ttl_s: int = 86400
) -> RetryReport:
    """Push dead-lettered tasks back onto the queue (all, or one task id).

    Each retried task gets a fresh attempt count and its error result is
    replaced by ``queued``, so the next run is a clean start. Entries that
    were not valid tasks (malformed messages) stay in the list, and the report
    says why.
    """
    report = RetryReport()
    for raw in client.lrange(keys.DEAD_LETTER, 0, -1):
        try:
            entry = orjson.loads(raw)
            message = entry["raw"]
            tid = entry.get("task_id")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            report.skipped.append(("an unreadable entry", "it is not a dead-letter record"))
            continue
        if not isinstance(message, str) or not isinstance(tid, str | None):
            report.skipped.append(("an entry of another shape", "it is not a dead-letter record"))
            continue
        if task_id is not None and tid != task_id:
            continue
        if not tid:
            reason = str(entry.get("error") or entry.get("reason") or "malformed")
            report.skipped.append(
                (
                    f"a message dead-lettered at {entry.get('at', '?')}",
                    f"it names no task_id ({reason}); fix and re-send it from its producer",
                )
            )
            continue
        if len(message) >= 65536:
            report.skipped.append(
                (tid, "only its first 64 KiB were kept; re-send it from its producer")
            )
            continue
        queued = records.queued(tid, retried_from="dead_letter")
        pipe = client.pipeline(transaction=True)
        pipe.lrem(keys.DEAD_LETTER, 1, raw)  # type: ignore[arg-type]
        pipe.delete(keys.attempts(tid), keys.token(tid), keys.cancel(tid))
        pipe.set(keys.result(tid), queued, ex=result_ttl_s)
        pipe.lpush(queue, message)
        if pipe.execute()[0]:
            report.moved += 1
        else:
            report.skipped.append((tid, "another client retried or purged it meanwhile"))
    if task_id is not None and report.moved == 0 and not report.skipped:
        report.skipped.append((task_id, "no dead-letter entry has this task_id"))
    return report


def purge_dead_letters(client: redis.Redis) -> int:
    """Delete every dead-letter entry; returns how many there were."""
    pipe = client.pipeline(transaction=True)
    pipe.llen(keys.DEAD_LETTER)
    pipe.delete(keys.DEAD_LETTER)
    return int(pipe.execute()[0])
