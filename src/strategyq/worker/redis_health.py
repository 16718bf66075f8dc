"""Whether the worker can use Redis, as it last saw it, and retrying calls through trouble.

"Can use" means its own calls succeed: a server that answers PING but refuses
writes (``OOM``, ``READONLY`` after a failover, ``BUSY``) counts as down, for
``strategyq_redis_up`` and for ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import redis

from strategyq.observability import WorkerMetrics
from strategyq.retry import retry_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisHealth:
    """Tracks whether the worker's Redis calls succeed, for the metrics and ``/readyz``."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.ok = True
        # Set once connected: READONLY and MASTERDOWN replies reset its connections.
        self.client: redis.Redis | None = None

    def set(self, ok: bool) -> None:
        was = self.ok
        self.ok = ok
        self.metrics.set_redis_up(ok)
        if not ok:
            self.metrics.redis_error()
        elif not was:
            log.info("Redis is reachable again")

    def retry(self, fn: Callable[[], T], *, what: str, stop: threading.Event | None = None) -> T:
        """Call ``fn`` until it succeeds, backing off with jitter through lost connections,
        timeouts and transient error replies (OOM, BUSY, READONLY, LOADING, MASTERDOWN).
        What the caller has to write stays in its memory meanwhile; any other error
        propagates."""
        value = retry_transient(fn, what=what, client=self.client, on_state=self.set, stop=stop)
        if not self.ok:
            self.set(True)
        return value
