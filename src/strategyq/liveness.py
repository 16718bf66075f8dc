"""Heartbeats, the worker registry and the reaper.

A worker proves it is alive by refreshing ``strategyq:heartbeat:{id}`` (TTL
``heartbeat_timeout_s``) from a thread of its own, every
``heartbeat_interval_s`` (at most a third of the timeout), so a long task never
makes a healthy worker look dead. Every worker also reaps, under a short
lock, every ``reaper_interval_s``: the processing list of a registered worker
whose heartbeat has expired goes back to the queue (or, past
``max_attempts``, to the dead-letter list) in one Lua script. A crashed
worker's tasks are therefore back in the queue within ``heartbeat_timeout_s +
reaper_interval_s`` (10 + 3 s by default).

A worker restarted in the same pod (same host name, same kernel boot, its
previous process gone) recognises its previous incarnation's heartbeat and
requeues what that one left at once, instead of waiting for the heartbeat to
expire.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from strategyq import keys
from strategyq.connection import follow_primary
from strategyq.protocol import dumps, utc_now_iso
from strategyq.retry import describe, needs_new_connection, reset_connections
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
        members = [
            m.decode() if isinstance(m, bytes) else str(m) for m in client.smembers(keys.WORKERS)
        ]
        others = [m for m in members if m != me]
        # One round trip tells the live from the dead; only the dead get a script call, so
        # a reap costs O(1) round trips however many workers there are.
        pipe = client.pipeline(transaction=False)
        for worker_id in others:
            pipe.exists(keys.heartbeat(worker_id))
        alive = pipe.execute() if others else []
        for worker_id, beating in zip(others, alive, strict=True):
            if beating:
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
                follow_primary(self.client)
                self.beat()
                self.on_redis(True)
                if time.monotonic() >= self._next_reap:
                    self._next_reap = time.monotonic() + self.settings.reaper_interval_s
                    reap_dead_workers(self.client, self.scripts, self.settings, me=self.worker_id)
            except redis.RedisError as exc:
                self.on_redis(False)
                if needs_new_connection(exc):
                    reset_connections(self.client)
                log.warning("heartbeat failed (%s); retrying", describe(exc))


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None when there is no such pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat.rpartition(")")[2].split()[19]


def incarnation() -> dict[str, Any]:
    """What identifies this process among the incarnations of one worker id (heartbeat fields)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid,
            "pid_start": _process_start(pid)}  # fmt: skip


def is_previous_incarnation(record: dict[str, Any]) -> bool:
    """True when a heartbeat was written by an earlier process of this host that is gone.

    Same host name and same kernel boot (a container restarted in its pod), and its pid
    is not running that process any more: it is ours, or free, or another process
    started since.
    """
    me = incarnation()
    if (
        not me["boot_id"]
        or record.get("host") != me["host"]
        or record.get("boot_id") != me["boot_id"]
    ):
        return False
    pid = record.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == me["pid"]:
        return True
    start = _process_start(pid)
    return start is None or start != record.get("pid_start")


def unique_worker_id(client: redis.Redis, wanted: str) -> str:
    """``wanted``, unless a live worker already uses it (then ``wanted-<pid>``).

    A heartbeat left by this worker's previous incarnation (same pod, process gone) is
    dropped, so the caller's start-up reap requeues what it left at once.
    """
    raw = client.get(keys.heartbeat(wanted))
    if raw is None:
        return wanted
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = {}
    if isinstance(record, dict) and is_previous_incarnation(record):
        log.warning(
            "worker id %s: its previous process on this host (pid %s) is gone; "
            "requeueing what it left",
            wanted,
            record.get("pid"),
        )
        client.delete(keys.heartbeat(wanted))
        return wanted
    fallback = f"{wanted}-{os.getpid()}"
    log.warning("worker id %s is in use by a live worker; using %s", wanted, fallback)
    return fallback
