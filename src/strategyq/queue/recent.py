"""The recent-task index: which tasks ended lately, newest first."""

from __future__ import annotations

import redis

from strategyq.protocol.results import decode_result
from strategyq.queue import keys
from strategyq.queue.types import RecentTask, text


def recent_tasks(
    client: redis.Redis,
    limit: int = 50,
    *,
    before_ms: int | None = None,
    with_results: bool = False,
) -> list[RecentTask]:
    """The newest ``limit`` tasks with a terminal result, newest first.

    Every terminal write (completed, error, cancelled, dead-lettered) indexes its
    task in the same atomic step, so a task is listed exactly when its terminal
    result exists (entries whose result has expired since are left out when
    ``with_results`` is set).

    Args:
        client: any redis-py client.
        limit: at most this many entries.
        before_ms: only tasks that ended before this epoch-milliseconds time (for paging:
            pass the last entry's ``finished_at_ms``).
        with_results: also read each task's result record (one more round trip).
    """
    if limit <= 0:
        return []
    high = "+inf" if before_ms is None else f"({before_ms}"
    members = client.zrevrangebyscore(
        keys.RECENT, high, "-inf", start=0, num=limit, withscores=True
    )
    entries = [RecentTask(text(pair[0]), int(pair[1])) for pair in members]
    if not with_results or not entries:
        return entries
    raws = client.mget([keys.result(e.task_id) for e in entries])
    return [
        RecentTask(e.task_id, e.finished_at_ms, result)
        for e, raw in zip(entries, raws, strict=True)
        if (result := decode_result(raw)) is not None
    ]
