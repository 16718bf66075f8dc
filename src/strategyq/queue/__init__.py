"""The queue: every Redis transition and record of a task.

- :mod:`~strategyq.queue.keys`: every key, its type and lifetime;
- :mod:`~strategyq.queue.transitions`: :class:`TaskQueue` — push, take, claim,
  stage, finish, requeue, reject (dead letter), cancel, reap, heartbeats;
- :mod:`~strategyq.queue.records`: one builder per result record;
- :mod:`~strategyq.queue.recent`: the recent-task index (:func:`recent_tasks`);
- :mod:`~strategyq.queue.view`: :class:`QueueView` — every read (stats, workers,
  finished tasks, one task, dead letters, schedules, a task's events);
- :mod:`~strategyq.queue.admin`: dead-letter retry and purge;
- ``lua/*.lua``: the scripts that make transitions atomic.

Producers, workers, the CLI and the HTTP API call this package; nothing else
touches the keys (``tests/unit/test_queue_owns_keys.py``). ``docs/queue.md`` has the
state diagram and key lifecycles.
"""

from __future__ import annotations

from strategyq.queue.recent import recent_tasks
from strategyq.queue.transitions import TaskQueue
from strategyq.queue.types import (
    Claim,
    ClaimVerdict,
    FinishVerdict,
    Reaped,
    RecentTask,
    StopReason,
    Taken,
)

__all__ = [
    "Claim",
    "ClaimVerdict",
    "FinishVerdict",
    "Reaped",
    "RecentTask",
    "StopReason",
    "Taken",
    "TaskQueue",
    "recent_tasks",
]
