"""The worker process: connects, starts its executors and threads, serves, shuts down.

It knows nothing of trading and imports no sandbox code. Each message is
moved atomically from ``strategy_queue`` into this worker's processing list
(``BLMOVE … RIGHT LEFT``: FIFO, like the seed's ``BRPOP``, but never only in
memory), claimed with a fencing token, run by one of ``concurrency``
executor processes, and finished with one atomic terminal write. The parts:
:mod:`.fetch` (the loop), :mod:`.pool` (executors), :mod:`.lifecycle` (one
task), :mod:`.watcher` (stages, cancels), :mod:`.heartbeat` (liveness).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis

from strategyq import __version__
from strategyq.connection import connect
from strategyq.errors import ConnectionFailed, RedisMisconfigured
from strategyq.executor.client import ExecutorProcess
from strategyq.executor.interface import ExecutorFactory
from strategyq.observability import HealthServer, WorkerMetrics
from strategyq.preflight import check_server
from strategyq.queue import StopReason, TaskQueue
from strategyq.queue.schedules import ScheduleThread, Ticker
from strategyq.settings import Settings
from strategyq.worker.fetch import FetchLoop
from strategyq.worker.heartbeat import Heartbeat, incarnation, unique_worker_id
from strategyq.worker.hooks import Hooks
from strategyq.worker.inflight import InFlightTasks
from strategyq.worker.lifecycle import Tally, TaskRunner
from strategyq.worker.pool import ExecutorPool
from strategyq.worker.redis_health import RedisHealth
from strategyq.worker.watcher import Watcher

log = logging.getLogger(__name__)

# A second worker on one host takes one of the next ports (logged) instead of failing.
METRICS_PORT_SEARCH = 100


class Worker:
    """One worker process: ``run()`` serves until SIGTERM/SIGINT (burst mode: an empty queue).

    Args:
        settings: everything the worker, its executors and sandbox hosts use.
        burst: drain the queue, then return.
        metrics_port: serve ``/metrics``, ``/healthz``, ``/readyz`` here (None: off).
        insecure_no_sandbox: run strategies without Landlock and seccomp.
        handle_signals: install the SIGTERM/SIGINT handlers (main thread only).
        hooks: callbacks at fixed points of each task (tests inject faults with them).
        executor_factory: builds each slot's executor (default: an executor process;
            :class:`~strategyq.executor.inprocess.InProcessExecutor` in tests of the
            worker's own logic).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        burst: bool = False,
        metrics_port: int | None = None,
        insecure_no_sandbox: bool = False,
        handle_signals: bool = True,
        hooks: Hooks | None = None,
        executor_factory: ExecutorFactory = ExecutorProcess,
    ) -> None:
        self.settings = settings
        self.burst = burst
        self.metrics_port = metrics_port
        self.insecure_no_sandbox = insecure_no_sandbox or settings.insecure_no_sandbox
        self.handle_signals = handle_signals
        self.hooks = hooks or Hooks()
        self.executor_factory = executor_factory
        self.metrics = WorkerMetrics(settings.worker_id)
        self.health = RedisHealth(self.metrics)
        self.worker_id = settings.worker_id
        self.inflight = InFlightTasks()
        self.tally = Tally()
        self.layers: dict[str, bool] = {}
        self.health_server: HealthServer | None = None
        self._stopping = threading.Event()
        self._signals = 0
        self._ready = False
        self._incarnation = incarnation()
        self.client: redis.Redis
        self.tasks: TaskQueue

    def stop(self) -> None:
        """Stop taking tasks; in-flight ones finish within the grace period."""
        self._stopping.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("received %s: finishing in-flight tasks, taking no more", name)
            self._stopping.set()
        else:
            log.warning("received %s again: stopping in-flight tasks now", name)
            self.inflight.stop_all(StopReason.SHUTDOWN)

    def run(self) -> int:
        """Serve; returns the process exit code."""
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        s = self.settings
        self.client = self._connect()
        self.health.client = self.client
        try:
            check_server(self.client, allow_eviction=s.allow_eviction)
        except RedisMisconfigured as exc:
            log.error("%s", exc)
            return 2
        self.tasks = TaskQueue(
            self.client, name=s.queue_name, result_ttl_s=s.result_ttl_s, recent_max=s.recent_max
        )
        self.worker_id = unique_worker_id(self.tasks, s.worker_id)
        # Tasks left in our processing list by an earlier process with our id
        # (a container restarted in the same pod) go back to the queue first.
        self.tasks.reap(self.worker_id, s.max_attempts)
        if self.insecure_no_sandbox:
            log.warning(
                "RUNNING WITHOUT THE SANDBOX (--insecure-no-sandbox): strategies run without "
                "Landlock and seccomp; never do this with untrusted code"
            )
        pool = ExecutorPool(
            s, insecure_no_sandbox=self.insecure_no_sandbox, factory=self.executor_factory
        )
        if not pool.start():
            return 2
        self.layers = pool.layers
        self.metrics.set_info(__version__, self.layers)
        try:
            self._serve(pool)
        finally:
            pool.close()
        log.info(
            "worker %s stopped after %.1fs: %s",
            self.worker_id,
            time.monotonic() - self.tally.started,
            self.tally.summary(),
        )
        return 0

    def _serve(self, pool: ExecutorPool) -> None:
        runner = TaskRunner(
            self.tasks,
            self.settings,
            self.worker_id,
            inflight=self.inflight,
            metrics=self.metrics,
            health=self.health,
            hooks=self.hooks,
            replace=pool.replace,
        )
        self.tally = runner.tally
        heartbeat = Heartbeat(
            self.tasks, self.settings, self.worker_id, self._info, self.health.set, self._stats
        )
        heartbeat.start()
        self._start_health_server()
        watcher = Watcher(
            self.tasks,
            self.inflight,
            self.worker_id,
            sweep_interval_s=self.settings.reaper_interval_s,
        )
        watcher.start()
        schedules = None
        if self.settings.schedule_interval_s > 0 and not self.burst:
            # Every worker ticks the schedules; the fire script enqueues each slot once.
            ticker = Ticker(
                self.client, queue=self.settings.queue_name, result_ttl_s=self.settings.result_ttl_s
            )
            schedules = ScheduleThread(ticker, self.settings.schedule_interval_s)
            schedules.start()
        loop = FetchLoop(
            self.tasks,
            self.worker_id,
            pool,
            runner,
            self.health,
            burst=self.burst,
            stopping=self._stopping,
        )
        log.info(
            "worker %s started: queue %s, concurrency %d, sandbox layers %s",
            self.worker_id,
            self.settings.queue_name,
            self.settings.concurrency,
            ",".join(k for k, v in sorted(self.layers.items()) if v) or "none",
        )
        self._ready = True
        try:
            loop.run()
        finally:
            self._ready = False
            if schedules is not None:
                schedules.stop()
            loop.finish_in_flight(self.settings.grace_period_s, self.inflight)
            watcher.stop()
            self.tally.orphans = watcher.orphans
            heartbeat.stop(unregister=self._processing_empty())
            if self.health_server is not None:
                self.health_server.stop()

    def _start_health_server(self) -> None:
        if self.metrics_port is None or self.burst:
            return
        self.health_server = HealthServer(
            self.metrics,
            self.metrics_port,
            host=self.settings.metrics_host,
            next_free_ports=METRICS_PORT_SEARCH,
            redis_ping=self._ping,
            ready=self._is_ready,
            # The worker's own Redis calls set strategyq_redis_up: a PING that a server
            # refusing writes (OOM, READONLY) still answers must not reset it to 1.
            track_redis_up=False,
        )
        self.health_server.start()

    def _is_ready(self) -> bool:
        """Ready while it takes tasks and can write their results (not while Redis refuses)."""
        return self._ready and not self._stopping.is_set() and self.health.ok

    def _connect(self) -> redis.Redis:
        """Connect, waiting for a server that is not up yet (a burst run fails at once)."""
        backoff = 0.5
        while True:
            try:
                return connect(self.settings)
            except ConnectionFailed as exc:
                if self.burst:
                    raise
                log.warning("%s; retrying in %.1fs", exc, backoff)
                if self._stopping.wait(backoff * random.uniform(0.5, 1.5)):
                    raise
                backoff = min(backoff * 2, 10.0)

    def _info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "queue": self.settings.queue_name,
            "concurrency": self.settings.concurrency,
            "running": self.inflight.describe(),
            "layers": sorted(k for k, v in self.layers.items() if v),
            **self._incarnation,
        }

    def _stats(self, depth: int, dead_letters: int) -> None:
        self.metrics.set_queue_depth(depth)
        self.metrics.set_dead_letters(dead_letters)

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def _processing_empty(self) -> bool:
        try:
            return self.tasks.processing_len(self.worker_id) == 0
        except redis.RedisError:
            return False
