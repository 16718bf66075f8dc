"""Heartbeats, the worker registry and the reaper.

A worker proves it is alive by refreshing ``strategyq:heartbeat:{id}`` (TTL
``heartbeat_timeout_s``) from a thread of its own, every
``heartbeat_interval_s`` (at most a third of the timeout), so a long task never
makes a healthy worker look dead. Every worker also reaps, under a short
lock, every ``reaper_interval_s``: the processing list of a registered worker
whose heartbeat has expired goes back to the queue (or, past
``max_attempts``, to the dead-letter list) in one Lua script. A crashed
worker's tasks are therefore back in the queue within ``heartbeat_timeout_s +
reaper_interval_s``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from strategyq import keys
from strategyq.protocol import dumps, utc_now_iso
from strategyq.scripts import Scripts
from strategyq.settings import Settings

log = logging.getLogger(__name__)


def reap_worker(
    client: redis.Redis, scripts: Scripts, settings: Settings, worker_id: str
) -> tuple[int, int]:
    """Recover one worker's tasks if its heartbeat has expired.

    Returns:
        (tasks requeued, tasks dead-lettered); (-1, -1) when the worker is alive.
    """
    result = scripts.reap(
        keys=[
            keys.processing(worker_id),
            keys.heartbeat(worker_id),
            settings.queue_name,
            keys.DEAD_LETTER,
            keys.WORKERS,
        ],
        args=[
            worker_id,
            settings.max_attempts,
            settings.result_ttl_s,
            utc_now_iso(),
            keys.PREFIX,
            settings.done_ttl_s,
        ],
    )
    back, lost = int(result[0]), int(result[1])
    if back > 0 or lost > 0:
        log.warning(
            "worker %s is gone: %d task(s) back in the queue, %d dead-lettered",
            worker_id,
            back,
            lost,
        )
    return back, lost


def reap_dead_workers(
    client: redis.Redis, scripts: Scripts, settings: Settings, *, me: str
) -> tuple[int, int]:
    """Recover the tasks of every registered worker whose heartbeat expired (under a lock).

    Returns:
        (tasks requeued, tasks dead-lettered)
    """
    lock_ms = int(max(settings.reaper_interval_s, 1.0) * 2000)
    if not client.set(keys.REAPER_LOCK, me, nx=True, px=lock_ms):
        return 0, 0
    requeued = dead = 0
    try:
        for member in client.smembers(keys.WORKERS):
            worker_id = member.decode() if isinstance(member, bytes) else str(member)
            if worker_id == me:
                continue
            back, lost = reap_worker(client, scripts, settings, worker_id)
            requeued += max(back, 0)
            dead += max(lost, 0)
    finally:
        if client.get(keys.REAPER_LOCK) in (me, me.encode()):
            client.delete(keys.REAPER_LOCK)
    return requeued, dead


class Heartbeat:
    """A daemon thread that keeps this worker registered and reaps dead ones."""

    def __init__(
        self,
        client: redis.Redis,
        scripts: Scripts,
        settings: Settings,
        worker_id: str,
        info: Callable[[], dict[str, Any]],
        on_redis: Callable[[bool], None],
        on_stats: Callable[[int, int], None],
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.settings = settings
        self.worker_id = worker_id
        self.info = info
        self.on_redis = on_redis
        self.on_stats = on_stats
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._next_reap = 0.0

    def beat(self) -> None:
        """Refresh the heartbeat and registry entry; read the queue depths (one round trip)."""
        record = dumps({**self.info(), "worker_id": self.worker_id, "beat_at": utc_now_iso()})
        ttl_ms = int(self.settings.heartbeat_timeout_s * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.heartbeat(self.worker_id), record, px=ttl_ms)
        pipe.sadd(keys.WORKERS, self.worker_id)
        pipe.llen(self.settings.queue_name)
        pipe.llen(keys.DEAD_LETTER)
        depth, dead = pipe.execute()[2:]
        self.on_stats(int(depth), int(dead))

    def start(self) -> None:
        self.beat()
        # Spread the reapers of workers started together over the interval.
        self._next_reap = time.monotonic() + random.uniform(0, self.settings.reaper_interval_s)
        self._thread.start()

    def stop(self, *, unregister: bool) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if unregister:
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.delete(keys.heartbeat(self.worker_id))
                pipe.srem(keys.WORKERS, self.worker_id)
                pipe.execute()
            except redis.RedisError as exc:
                log.warning("could not unregister worker %s: %s", self.worker_id, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.beat()
                self.on_redis(True)
                if time.monotonic() >= self._next_reap:
                    self._next_reap = time.monotonic() + self.settings.reaper_interval_s
                    reap_dead_workers(self.client, self.scripts, self.settings, me=self.worker_id)
            except redis.RedisError as exc:
                self.on_redis(False)
                log.warning("heartbeat failed (%s); retrying", exc)


def unique_worker_id(client: redis.Redis, wanted: str) -> str:
    """``wanted``, unless a live worker already uses it (then ``wanted-<pid>``)."""
    if client.exists(keys.heartbeat(wanted)):
        fallback = f"{wanted}-{os.getpid()}"
        log.warning("worker id %s is in use by a live worker; using %s", wanted, fallback)
        return fallback
    return wanted
