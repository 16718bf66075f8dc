"""Dead-letter handling: retry and purge (``strategyq dlq``, the API, the dashboard).

Reading the dead letters is :meth:`strategyq.queue.view.QueueView.dead_letters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import redis

from strategyq.queue import keys, records
from strategyq.settings import DEFAULT_RESULT_TTL_S


@dataclass
class RetryReport:
    """What ``dlq retry`` did: how many went back, and why each other entry stayed."""

    moved: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def retry_dead_letters(
    client: redis.Redis,
    queue: str,
    task_id: str | None = None,
    *,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
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
