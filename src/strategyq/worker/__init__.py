"""The worker: takes tasks from the queue, hands them to executors, stores results.

It knows nothing of trading and imports no sandbox code: see
:mod:`strategyq.worker.service` for how its parts fit.
"""

from __future__ import annotations

from strategyq.worker.hooks import Hooks
from strategyq.worker.service import Worker

__all__ = ["Hooks", "Worker"]
