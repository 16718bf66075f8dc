"""Heartbeats and the reaper, from a thread of their own.

A worker proves it is alive by refreshing ``strategyq:heartbeat:{id}`` (TTL
``heartbeat_timeout_s``) every ``heartbeat_interval_s`` (at most a third of
the timeout), so a long task never makes a healthy worker look dead. Every
worker also reaps, under a short lock, every ``reaper_interval_s``: the
processing list of a registered worker whose heartbeat has expired goes back
to the queue (or, past ``max_attempts``, to the dead-letter list) in one Lua
script. A crashed worker's tasks are therefore back in the queue within
``heartbeat_timeout_s + reaper_interval_s`` (10 + 3 s by default).

A worker restarted in the same pod (same host name, same kernel boot, its
previous process gone) recognises its previous incarnation's heartbeat and
requeues what that one left at once, instead of waiting for it to expire.
With Sentinel, each beat also asks where the primary is (see
:func:`~strategyq.connection.follow_primary`).
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

import redis

from strategyq.connection import follow_primary
from strategyq.protocol.results import dumps, utc_now_iso
from strategyq.queue import TaskQueue
from strategyq.retry import describe, needs_new_connection, reset_connections
from strategyq.settings import Settings

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread that keeps this worker registered and reaps dead ones."""

    def __init__(
        self,
        tasks: TaskQueue,
        settings: Settings,
        worker_id: str,
        info: Callable[[], dict[str, Any]],
        on_redis: Callable[[bool], None],
        on_stats: Callable[[int, int], None],
    ) -> None:
        self.tasks = tasks
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
        self.on_stats(*self.tasks.beat(self.worker_id, record, ttl_ms))

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
                self.tasks.unregister(self.worker_id)
            except redis.RedisError as exc:
                log.warning("could not unregister worker %s: %s", self.worker_id, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                follow_primary(self.tasks.client)
                self.beat()
                self.on_redis(True)
                if time.monotonic() >= self._next_reap:
                    self._next_reap = time.monotonic() + self.settings.reaper_interval_s
                    lock_ms = int(max(self.settings.reaper_interval_s, 1.0) * 2000)
                    self.tasks.reap_dead_workers(
                        self.worker_id, self.settings.max_attempts, lock_ms
                    )
            except redis.RedisError as exc:
                self.on_redis(False)
                if needs_new_connection(exc):
                    reset_connections(self.tasks.client)
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
    """What tells this process from other incarnations of its worker id (heartbeat fields)."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid": pid,
        "pid_start": _process_start(pid),
    }


def is_previous_incarnation(record: dict[str, Any]) -> bool:
    """True when a heartbeat was written by an earlier process on this host that is gone.

    Same host name and same kernel boot (a container restarted in its pod), and its pid
    no longer runs that process: it is ours, or free, or another process started since.
    """
    me = incarnation()
    if not me["boot_id"] or (record.get("host"), record.get("boot_id")) != (
        me["host"],
        me["boot_id"],
    ):
        return False
    pid = record.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == me["pid"]:
        return True
    start = _process_start(pid)
    return start is None or start != record.get("pid_start")


def unique_worker_id(tasks: TaskQueue, wanted: str) -> str:
    """``wanted``, unless a live worker already uses it (then ``wanted-<pid>``).

    The heartbeat of this worker's previous incarnation (same pod, process gone) is
    dropped instead, so the start-up reap requeues what it left at once.
    """
    record = tasks.heartbeat_record(wanted)
    if record is None:
        return wanted
    if is_previous_incarnation(record):
        log.warning(
            "worker id %s: its previous process on this host (pid %s) is gone; "
            "requeueing what it left",
            wanted,
            record.get("pid"),
        )
        tasks.drop_heartbeat(wanted)
        return wanted
    fallback = f"{wanted}-{os.getpid()}"
    log.warning("worker id %s is in use by a live worker; using %s", wanted, fallback)
    return fallback
