"""Whether Redis answers, as the worker last saw it, and retrying calls through outages."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from strategyq.observability import WorkerMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisHealth:
    """Tracks Redis reachability for the metrics and the health endpoint."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.ok = True

    def set(self, ok: bool) -> None:
        was = self.ok
        self.ok = ok
        self.metrics.set_redis_up(ok)
        if not ok:
            self.metrics.redis_error()
        elif not was:
            log.info("Redis is reachable again")

    def retry(self, fn: Callable[[], T], *, what: str) -> T:
        """Call ``fn`` until it succeeds, backing off with jitter on connection errors."""
        backoff = 0.05
        while True:
            try:
                value = fn()
                if not self.ok:
                    self.set(True)
                return value
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.set(False)
                log.warning("%s failed (%s); retrying in %.2fs", what, exc, backoff)
                time.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
