"""The worker: takes tasks from the queue, hands them to executors, stores results.

It knows nothing of trading. Each message is moved atomically from
``strategy_queue`` into this worker's processing list (``BLMOVE … RIGHT
LEFT``: FIFO, like the seed's ``BRPOP``, but never only in memory), claimed
with a fencing token (``claim.lua``), run by one of ``concurrency`` executor
processes, and finished with one atomic terminal write (``finish.lua``).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import orjson
import redis

from strategyq import __version__, keys
from strategyq.connection import connect
from strategyq.errors import ConnectionFailed, RedisMisconfigured, SandboxUnavailable
from strategyq.executor import (
    Executor,
    ExecutorDied,
    ExecutorHung,
    ExecutorStopped,
    Outcome,
)
from strategyq.faults import Faults
from strategyq.liveness import Heartbeat, incarnation, reap_worker, unique_worker_id
from strategyq.logs import strategy_fingerprint
from strategyq.observability import HealthServer, WorkerMetrics
from strategyq.preflight import check_server
from strategyq.protocol import (
    MalformedTask,
    Status,
    Task,
    dumps,
    envelope,
    error_data,
    parse_task,
    utc_now_iso,
)
from strategyq.retry import (
    describe,
    needs_new_connection,
    reset_connections,
    retry_transient,
)
from strategyq.scripts import Scripts
from strategyq.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
REQUIRED_LAYERS = ("landlock", "seccomp")
BLOCK_S = 1.0
CANCEL_POLL_S = 0.2


@dataclass
class Running:
    """A task this worker is running now."""

    task: Task
    token: str
    attempt: int
    executor: Executor
    started: float
    started_at: str
    stop_reason: str | None = None  # "cancelled" or "shutdown" once asked to stop
    stage: str = "starting"
    stage_written: str = "starting"


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    requeued: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    stale: int = 0
    duplicates: int = 0
    rerun: int = 0
    orphans: int = 0
    started: float = field(default_factory=time.monotonic)


class Worker:
    """One worker process: ``run()`` serves until SIGTERM/SIGINT (burst mode: an empty queue)."""

    def __init__(
        self,
        settings: Settings,
        *,
        burst: bool = False,
        metrics_port: int | None = None,
        insecure_no_sandbox: bool = False,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.burst = burst
        self.metrics_port = metrics_port
        self.insecure_no_sandbox = insecure_no_sandbox or settings.insecure_no_sandbox
        self.faults = Faults()
        self.metrics = WorkerMetrics(settings.worker_id)
        self.tally = Tally()
        self.worker_id = settings.worker_id
        self.handle_signals = handle_signals
        self.layers: dict[str, bool] = {}
        self._stopping = threading.Event()
        self._signals = 0
        self._running: dict[str, Running] = {}
        self._running_lock = threading.Lock()
        self._idle: queue.Queue[Executor] = queue.Queue()
        self._executors: list[Executor] = []
        self._redis_ok = True
        self._redis_failing_since: float | None = None
        self._ready = False
        # Messages this process has taken and not yet finished (BLMOVE returned, handler
        # running): the rest of its processing list is orphaned (see _sweep_orphans).
        self._held: Counter[bytes] = Counter()
        self._suspects: Counter[bytes] = Counter()
        self._next_sweep = 0.0
        self._incarnation = incarnation()
        self.client: redis.Redis
        self.scripts: Scripts

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Stop taking tasks; in-flight ones finish within the grace period."""
        self._stopping.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "received %s: finishing in-flight tasks, taking no more",
                signal.Signals(signum).name,
            )
            self._stopping.set()
        else:
            log.warning(
                "received %s again: stopping in-flight tasks now", signal.Signals(signum).name
            )
            self._interrupt_all("shutdown")

    def run(self) -> int:
        """Serve; returns the process exit code."""
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.client = self._connect()
        try:
            check_server(self.client, allow_eviction=self.settings.allow_eviction)
        except RedisMisconfigured as exc:
            log.error("%s", exc)
            return 2
        self.scripts = Scripts(self.client)
        self.worker_id = unique_worker_id(self.client, self.settings.worker_id)
        # Tasks left in our processing list by an earlier process with our id
        # (a container restarted in the same pod) go back to the queue first.
        reap_worker(self.client, self.scripts, self.settings, self.worker_id)
        if self.insecure_no_sandbox:
            log.warning(
                "RUNNING WITHOUT THE SANDBOX (--insecure-no-sandbox): strategies run without "
                "Landlock and seccomp; never do this with untrusted code"
            )
        if not self._start_executors():
            return 2
        self.metrics.set_info(__version__, self.layers)
        heartbeat = Heartbeat(
            self.client,
            self.scripts,
            self.settings,
            self.worker_id,
            self._info,
            self._set_redis,
            self._set_stats,
        )
        heartbeat.start()
        health = None
        if self.metrics_port is not None and not self.burst:
            health = HealthServer(
                self.metrics,
                self.metrics_port,
                redis_ping=self._ping,
                ready=self._is_ready,
                # The worker's own Redis calls set strategyq_redis_up: a PING that a
                # READONLY or out-of-memory server still answers must not reset it.
                track_redis_up=False,
            )
            health.start()
        monitor = threading.Thread(target=self._watch_running, name="watcher", daemon=True)
        monitor.start()
        log.info(
            "worker %s started: queue %s, concurrency %d, sandbox layers %s",
            self.worker_id,
            self.settings.queue_name,
            self.settings.concurrency,
            ",".join(k for k, v in sorted(self.layers.items()) if v) or "none",
        )
        self._ready = True
        pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="task")
        futures: set[Future[None]] = set()
        try:
            self._serve(pool, futures)
        finally:
            self._ready = False
            self._drain(futures)
            pool.shutdown(wait=True)
            for ex in self._executors:
                ex.close()
            clean = self._processing_empty()
            heartbeat.stop(unregister=clean)
            if health is not None:
                health.stop()
        t = self.tally
        log.info(
            "worker %s stopped after %.1fs: %d completed, %d failed, %d cancelled, "
            "%d requeued, %d skipped, %d dead-lettered",
            self.worker_id,
            time.monotonic() - t.started,
            t.completed,
            t.failed,
            t.cancelled,
            t.requeued,
            t.skipped,
            t.dead_lettered,
        )
        return 0

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

    def _start_executors(self) -> bool:
        executors = [
            Executor(self.settings, insecure_no_sandbox=self.insecure_no_sandbox)
            for _ in range(self.settings.concurrency)
        ]
        # Spawned from this (long-lived) thread, warmed up in parallel.
        for ex in executors:
            ex.spawn()
        layer_sets = [ex.wait_ready() for ex in executors]
        self.layers = layer_sets[0]
        self._executors = executors
        missing = [name for name in REQUIRED_LAYERS if not self.layers.get(name)]
        if missing and not self.insecure_no_sandbox:
            log.error(
                "refusing to run tasks: sandbox layer(s) %s unavailable on this kernel "
                "(Landlock needs Linux >= 5.13, seccomp needs libseccomp); run on a supported "
                "kernel, or start with --insecure-no-sandbox to accept the risk",
                ", ".join(missing),
            )
            for ex in executors:
                ex.close()
            return False
        for ex in executors:
            self._idle.put(ex)
        return True

    def _info(self) -> dict[str, Any]:
        with self._running_lock:
            running = [
                {"task_id": r.task.task_id, "attempt": r.attempt, "started_at": r.started_at}
                for r in self._running.values()
            ]
        return {
            "version": __version__,
            "queue": self.settings.queue_name,
            "concurrency": self.settings.concurrency,
            "running": running,
            **self._incarnation,
        }

    def _set_redis(self, ok: bool) -> None:
        self._redis_ok = ok
        self._redis_failing_since = None if ok else (self._redis_failing_since or time.monotonic())
        self.metrics.set_redis_up(ok)
        if not ok:
            self.metrics.redis_error()

    def _is_ready(self) -> bool:
        """Ready while it takes tasks and can write their results (not while Redis refuses)."""
        return self._ready and not self._stopping.is_set() and self._redis_ok

    def _set_stats(self, depth: int, dead_letters: int) -> None:
        self.metrics.set_queue_depth(depth)
        self.metrics.set_dead_letters(dead_letters)

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    # ------------------------------------------------------------------ the loop

    def _serve(self, pool: ThreadPoolExecutor, futures: set[Future[None]]) -> None:
        backoff = 0.1
        processing = keys.processing(self.worker_id)
        while not self._stopping.is_set():
            try:
                executor = self._idle.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if self.burst:
                    raw = self.client.lmove(self.settings.queue_name, processing, "RIGHT", "LEFT")
                else:
                    raw = self.client.blmove(
                        self.settings.queue_name,
                        processing,
                        BLOCK_S,  # type: ignore[arg-type]  # the server takes fractional seconds
                        "RIGHT",
                        "LEFT",
                    )
                backoff = 0.1
                if not self._redis_ok:
                    self._set_redis(True)
                    log.info("Redis is reachable again")
            except redis.RedisError as exc:
                self._idle.put(executor)
                self._set_redis(False)
                if needs_new_connection(exc):
                    reset_connections(self.client)
                log.warning("cannot take tasks (%s); retrying in %.1fs", describe(exc), backoff)
                self._stopping.wait(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
                continue
            if raw is None:
                self._idle.put(executor)
                if self.burst:
                    futures -= {f for f in futures if f.done()}
                    if not futures:
                        return
                    # Tasks still running might be requeued; wait for them first.
                    _wait_any(futures)
                continue
            message = raw if isinstance(raw, bytes) else raw.encode()
            with self._running_lock:
                self._held[message] += 1
            future = pool.submit(self._handle, message, executor)
            futures.add(future)
            futures -= {f for f in futures if f.done()}

    def _drain(self, futures: set[Future[None]]) -> None:
        """Let in-flight tasks finish within the grace period, then requeue them."""
        deadline = time.monotonic() + self.settings.grace_period_s
        pending = {f for f in futures if not f.done()}
        if pending:
            log.info(
                "waiting up to %.0fs for %d task(s)", self.settings.grace_period_s, len(pending)
            )
        while pending and time.monotonic() < deadline:
            _wait_any(pending, timeout=min(0.2, max(deadline - time.monotonic(), 0.01)))
            pending = {f for f in pending if not f.done()}
        if pending:
            self._interrupt_all("shutdown")
        for f in futures:
            f.result()

    def _interrupt_all(self, reason: str) -> None:
        with self._running_lock:
            running = list(self._running.values())
        for r in running:
            r.stop_reason = r.stop_reason or reason
            r.executor.cancel()

    def _processing_empty(self) -> bool:
        try:
            return int(self.client.llen(keys.processing(self.worker_id))) == 0
        except redis.RedisError:
            return False

    # ------------------------------------------------------------------ one task

    def _handle(self, raw: bytes, executor: Executor) -> None:
        slot = [executor]
        try:
            self._handle_one(raw, slot)
        except Exception:
            # Never lose the worker to one task: the message stays in our processing
            # list, and the orphan sweep puts it back in the queue.
            log.exception("unexpected failure handling a task; it goes back to the queue")
        finally:
            with self._running_lock:
                self._held[raw] -= 1
                if self._held[raw] <= 0:
                    del self._held[raw]
            executor = slot[0]
            if not executor.alive():
                executor = self._replace(executor)
            self._idle.put(executor)

    def _replace(self, dead: Executor) -> Executor:
        """A fresh executor in place of ``dead`` (killed or stopped: it goes first)."""
        dead.kill()
        dead.close()
        for attempt in range(1, 4):
            fresh = Executor(self.settings, insecure_no_sandbox=self.insecure_no_sandbox)
            try:
                fresh.start()
            except (SandboxUnavailable, OSError) as exc:
                # Killed while warming up (the OOM killer again?): try again, then give up.
                fresh.close()
                log.warning("a fresh executor failed to start (%s), attempt %d", exc, attempt)
                if attempt == 3:
                    raise
                time.sleep(0.5 * attempt)
                continue
            self._executors = [fresh if e is dead else e for e in self._executors]
            return fresh
        raise AssertionError("unreachable")

    def _handle_one(self, raw: bytes, slot: list[Executor]) -> None:
        executor = slot[0]
        s = self.settings
        try:
            task = parse_task(
                raw,
                max_task_bytes=s.max_task_bytes,
                max_symbols=s.max_symbols,
                max_limit=s.max_screening_limit,
            )
        except MalformedTask as exc:
            self._reject(raw, exc)
            return
        task_id = task.task_id
        claim = self._retry(lambda: self._claim(task_id, task.raw, task.task_type.value))
        verdict = _text(claim[0])
        if verdict == "duplicate":
            self.tally.duplicates += 1
            log.warning(
                "task %s: another task with this id is %s; this message was not run and is in "
                "the dead-letter list (give every task its own id)",
                task_id,
                _text(claim[1]),
                extra={"task_id": task_id, "outcome": "duplicate"},
            )
            return
        if verdict == "skip":
            self.tally.skipped += 1
            log.info(
                "task %s is already %s; skipped",
                task_id,
                _text(claim[1]),
                extra={"task_id": task_id},
            )
            return
        if verdict == "cancelled":
            self.tally.cancelled += 1
            log.info("task %s was cancelled before it started", task_id, extra={"task_id": task_id})
            return
        token, attempt = _text(claim[1]), int(claim[2])
        started = time.monotonic()
        running = Running(task, token, attempt, executor, started, utc_now_iso())
        with self._running_lock:
            self._running[task_id] = running
        self.metrics.task_started(task.task_type.value)
        self.metrics.set_in_flight(len(self._running))
        log.info(
            "task %s started: %s, attempt %d",
            task_id,
            task.task_type.value,
            attempt,
            extra={
                "task_id": task_id,
                "task_type": task.task_type.value,
                "attempt": attempt,
                # Enough to tell strategies apart, never the source itself.
                "strategy": strategy_fingerprint(task.strategy_code),
            },
        )
        self.faults.at_stage(task_id, "claimed")
        clock = _StageClock(self.metrics, task.task_type.value)

        def on_stage(stage: str) -> None:
            clock.enter(stage)
            self.faults.at_stage(task_id, stage)
            # Written by the watcher thread: progress is off the task's critical path.
            running.stage = stage

        try:
            try:
                outcome = self._run_guarded(running, on_stage, slot)
            except Exception:
                # A bug must not leave the task parked in our processing list.
                log.exception("task %s: unexpected failure", task_id, extra={"task_id": task_id})
                outcome = Outcome(
                    ok=False,
                    error="internal error while running the task; the worker log has details",
                    error_type="internal",
                )
            clock.enter(None)
            self.faults.at_stage(task_id, "finishing")
            self._finish(running, outcome)
        finally:
            with self._running_lock:
                self._running.pop(task_id, None)
            self.metrics.set_in_flight(len(self._running))

    def _deadline_s(self, task: Task) -> float:
        """The worker's own limit on one run: the sandbox's time limit plus a margin for
        loading data and computing the result (a hung volume or process ends here)."""
        limit = self.settings.sandbox.time_limit_s
        if task.options.timeout_s:
            limit = min(limit, task.options.timeout_s)
        return limit + self.settings.executor_margin_s

    def _run_guarded(
        self, running: Running, on_stage: Callable[[str], None], slot: list[Executor]
    ) -> Outcome:
        """Run the task in its executor under the worker's deadline; a run whose executor
        died or hung is run once more in a fresh executor, then fails with the reason."""
        task_id = running.task.task_id
        deadline_s = self._deadline_s(running.task)
        failures: list[str] = []
        while True:
            executor = slot[0]
            try:
                return executor.run(running.task.raw, on_stage, deadline_s=deadline_s)
            except ExecutorStopped as exc:
                log.warning("task %s: %s", task_id, exc, extra={"task_id": task_id})
                slot[0] = running.executor = self._replace(executor)
                return Outcome(ok=False, error=str(exc), error_type="cancelled")
            except (ExecutorDied, ExecutorHung) as exc:
                hung = isinstance(exc, ExecutorHung)
                reason = (
                    f"the run did not finish within the worker's deadline ({deadline_s:.0f}s: "
                    "the time limit plus STRATEGYQ_EXECUTOR_MARGIN), so its executor was killed"
                    if hung
                    else str(exc)
                )
                failures.append(reason)
                slot[0] = running.executor = self._replace(executor)
                if running.stop_reason is not None:
                    return Outcome(ok=False, error=reason, error_type="cancelled")
                if len(failures) == 1:
                    self.tally.rerun += 1
                    log.warning(
                        "task %s: %s; running it once more in a fresh executor",
                        task_id,
                        reason,
                        extra={"task_id": task_id},
                    )
                    continue
                log.error("task %s: %s, twice", task_id, reason, extra={"task_id": task_id})
                return self._lost_executor_outcome(failures, hung=hung)

    @staticmethod
    def _lost_executor_outcome(failures: list[str], *, hung: bool) -> Outcome:
        if hung:
            return Outcome(
                ok=False,
                error=(
                    f"{failures[-1]}, twice; the strategy or its data never answered (a hung "
                    "market-data volume?). Check the worker's data volume, or give the task "
                    "a smaller universe or date range, and retry"
                ),
                error_type="timeout",
            )
        killed_by_kill = "SIGKILL" in failures[-1]
        hint = (
            " (SIGKILL is what the out-of-memory killer sends: lower memory_mb or the "
            "number of symbols, or give the worker more memory)"
            if killed_by_kill
            else ""
        )
        return Outcome(
            ok=False,
            error=(
                f"the task's executor process died twice: {'; '.join(failures)}{hint}; "
                "retry the task once the cause is fixed"
            ),
            error_type="internal",
        )

    def _claim(self, task_id: str, raw: bytes, task_type: str | None) -> Any:
        """Start a run (claim.lua): count the attempt, take a fencing token, write ``running``."""
        now = utc_now_iso()
        running = dumps(
            envelope(
                Status.RUNNING,
                {
                    "task_id": task_id,
                    "task_type": task_type,
                    "worker_id": self.worker_id,
                    "started_at": now,
                    "stage": "starting",
                },
            )
        )
        cancelled = dumps(envelope(Status.CANCELLED, {"cancelled_at": now, "completed_at": now}))
        return self.scripts.claim(
            keys=[
                keys.result(task_id),
                keys.attempts(task_id),
                keys.token(task_id),
                keys.FENCE_COUNTER,
                keys.processing(self.worker_id),
                keys.cancel(task_id),
                keys.done(task_id),
                keys.DEAD_LETTER,
            ],
            args=[
                raw,
                self.settings.result_ttl_s,
                running,
                cancelled,
                self.settings.done_ttl_s,
                self.worker_id,
                keys.PREFIX,
                task_id,
                now,
            ],
        )

    def _stage_record(self, running: Running, stage: str) -> bytes:
        task = running.task
        return dumps(
            envelope(
                Status.RUNNING,
                {
                    "task_id": task.task_id,
                    "task_type": task.task_type.value,
                    "worker_id": self.worker_id,
                    "started_at": running.started_at,
                    "stage": stage,
                    "attempt": running.attempt,
                },
            )
        )

    def _finish(self, running: Running, outcome: Outcome) -> None:
        task = running.task
        task_id = task.task_id
        elapsed = time.monotonic() - running.started
        if running.stop_reason == "shutdown" and not outcome.ok:
            self._requeue(running)
            return
        timing = {
            "execution_time_ms": round(elapsed * 1000, 3),
            "execution_time_seconds": round(elapsed, 6),
            "worker_id": self.worker_id,
            "completed_at": utc_now_iso(),
        }
        if outcome.ok:
            status = Status.COMPLETED
            record = _completed_record(outcome.data, timing)
        elif outcome.error_type == "cancelled":
            status = Status.CANCELLED
            self.metrics.sandbox_kill("cancelled")
            record = dumps(envelope(status, {"cancelled_at": timing["completed_at"], **timing}))
        else:
            status = Status.ERROR
            if outcome.error_type in {"timeout", "memory", "prohibited_operation"}:
                self.metrics.sandbox_kill(outcome.error_type)
            record = dumps(
                envelope(
                    status,
                    {
                        **error_data(outcome.error, outcome.error_type),
                        **timing,
                        "attempt": running.attempt,
                    },
                )
            )
        verdict = self._terminal_write(task_id, running.token, record, task.raw)
        outcome_name = status.value if verdict == "written" else f"discarded ({verdict})"
        if verdict == "written":
            if status is Status.COMPLETED:
                self.tally.completed += 1
            elif status is Status.CANCELLED:
                self.tally.cancelled += 1
            else:
                self.tally.failed += 1
        else:
            self.tally.stale += 1
        self.metrics.task_finished(task.task_type.value, status.value, elapsed)
        log.info(
            "task %s finished: %s in %.1f ms",
            task_id,
            outcome_name,
            elapsed * 1000,
            extra={
                "task_id": task_id,
                "task_type": task.task_type.value,
                "duration_ms": round(elapsed * 1000, 3),
                "outcome": outcome_name,
                "error_type": outcome.error_type or None,
            },
        )

    def _terminal_write(self, task_id: str, token: str, record: bytes, raw: bytes) -> str:
        """Write a terminal record, retrying through Redis outages until it lands."""

        def write() -> str:
            verdict = _text(
                self.scripts.finish(
                    keys=[
                        keys.result(task_id),
                        keys.token(task_id),
                        keys.processing(self.worker_id),
                        keys.done(task_id),
                        keys.attempts(task_id),
                        keys.cancel(task_id),
                        self.settings.queue_name,
                    ],
                    args=[token, record, self.settings.result_ttl_s, raw, self.settings.done_ttl_s],
                )
            )
            self.faults.after_finish()
            return verdict

        verdict = self._retry(write, what=f"terminal write of task {task_id}")
        if verdict == "missing":
            log.warning(
                "task %s: its fencing token was gone from Redis although this run held it: "
                "the server dropped it (an allkeys-* maxmemory-policy evicts any key: set "
                "noeviction), or a failover lost the claim. The result was written, as no "
                "other result existed",
                task_id,
                extra={"task_id": task_id},
            )
            return "written"
        if verdict in {"stale", "already"}:
            # After a lost reply our own earlier write may be the one that landed.
            current = self._retry(
                lambda: self.client.get(keys.result(task_id)), what=f"reading task {task_id}"
            )
            if current == record:
                return "written"
            log.warning(
                "task %s: this run lost its lease (another run took over); result discarded",
                task_id,
                extra={"task_id": task_id},
            )
        return verdict

    def _requeue(self, running: Running) -> None:
        task = running.task
        queued = dumps(
            envelope(Status.QUEUED, {"task_id": task.task_id, "requeued_at": utc_now_iso()})
        )
        self._retry(
            lambda: self.scripts.requeue(
                keys=[
                    keys.processing(self.worker_id),
                    self.settings.queue_name,
                    keys.token(task.task_id),
                    keys.attempts(task.task_id),
                    keys.result(task.task_id),
                ],
                args=[
                    task.raw,
                    running.token,
                    queued,
                    self.settings.result_ttl_s,
                    self.worker_id,
                ],
            ),
            what=f"requeue of task {task.task_id}",
        )
        self.tally.requeued += 1
        self.metrics.task_finished(
            task.task_type.value, "requeued", time.monotonic() - running.started
        )
        log.info(
            "task %s requeued: shutdown before it finished",
            task.task_id,
            extra={"task_id": task.task_id, "outcome": "requeued"},
        )

    def _reject(self, raw: bytes, exc: MalformedTask) -> None:
        """A malformed message: an error result when it names a task, else a dead letter."""
        if exc.task_id is not None:
            task_id = exc.task_id
            claim = self._retry(lambda: self._claim(task_id, raw, None))
            if _text(claim[0]) != "run":
                return
            record = dumps(
                envelope(
                    Status.ERROR, error_data(str(exc), exc.error_type, worker_id=self.worker_id)
                )
            )
            self._terminal_write(task_id, _text(claim[1]), record, raw)
            self.tally.failed += 1
            log.warning(
                "task %s rejected: %s", task_id, exc, extra={"task_id": task_id, "outcome": "error"}
            )
            return
        entry = dumps(
            {
                "raw": raw.decode("utf-8", "replace")[:65536],
                "reason": "malformed",
                "error": str(exc),
                "worker_id": self.worker_id,
                "at": utc_now_iso(),
            }
        )

        def dead_letter() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(keys.DEAD_LETTER, entry)
            pipe.lrem(keys.processing(self.worker_id), 1, raw)  # type: ignore[arg-type]
            pipe.execute()

        self._retry(dead_letter, what="dead-lettering a malformed message")
        self.tally.dead_lettered += 1
        log.warning("malformed message dead-lettered: %s", exc)

    # ------------------------------------------------------------------ helpers

    def _retry(self, fn: Callable[[], T], *, what: str = "Redis call") -> T:
        """Call ``fn`` until it succeeds, backing off with jitter through lost connections,
        timeouts and transient error replies (OOM, BUSY, READONLY, LOADING, MASTERDOWN);
        what the caller has to write stays in its memory meanwhile."""
        value = retry_transient(fn, what=what, client=self.client, on_state=self._set_redis)
        if not self._redis_ok:
            self._set_redis(True)
        return value

    def _sweep_orphans(self) -> None:
        """Put back messages in this worker's processing list that it is not running.

        A message gets there without a handler when BLMOVE's reply was lost, or when
        handling it failed unexpectedly; the heartbeat stays alive, so the reaper never
        takes it. One seen in two sweeps in a row is requeued (the first sighting may be a
        BLMOVE whose reply is still on its way).
        """
        processing = keys.processing(self.worker_id)
        listed = Counter(
            m if isinstance(m, bytes) else str(m).encode()
            for m in self.client.lrange(processing, 0, -1)
        )
        with self._running_lock:
            orphans = listed - self._held
        confirmed = orphans & self._suspects
        self._suspects = orphans - confirmed
        for raw, count in confirmed.items():
            for _ in range(count):
                self._requeue_orphan(raw)

    def _requeue_orphan(self, raw: bytes) -> None:
        try:
            task_id = str(orjson.loads(raw)["task_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            task_id = ""
        queued = dumps(envelope(Status.QUEUED, {"task_id": task_id, "requeued_at": utc_now_iso()}))
        moved = self.scripts.requeue(
            keys=[
                keys.processing(self.worker_id),
                self.settings.queue_name,
                keys.token(task_id),
                keys.attempts(task_id),
                keys.result(task_id),
            ],
            args=[raw, "", queued, self.settings.result_ttl_s, self.worker_id],
        )
        if int(moved):
            self.tally.orphans += 1
            log.warning(
                "task %s: found in this worker's processing list without a run; back in the queue",
                task_id or "<malformed>",
                extra={"task_id": task_id or None},
            )

    def _watch_running(self) -> None:
        """Every CANCEL_POLL_S, in one round trip: publish stage changes of running
        tasks, and kill the sandbox of any a client asked to cancel. Every
        reaper_interval_s, sweep the processing list for orphans."""
        while True:
            time.sleep(CANCEL_POLL_S)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.settings.reaper_interval_s
                try:
                    self._sweep_orphans()
                except redis.RedisError as exc:
                    log.warning("sweeping the processing list failed (%s)", describe(exc))
            with self._running_lock:
                running = list(self._running.values())
            if not running:
                continue
            pipe = self.client.pipeline(transaction=False)
            pipe.mget([keys.cancel(r.task.task_id) for r in running])
            staged = [(r, r.stage) for r in running if r.stage != r.stage_written]
            for r, stage in staged:
                self.scripts.stage(
                    keys=[keys.result(r.task.task_id), keys.token(r.task.task_id)],
                    args=[r.token, self._stage_record(r, stage), self.settings.result_ttl_s],
                    client=pipe,
                )
            try:
                flags = pipe.execute()[0]
            except redis.RedisError as exc:
                if needs_new_connection(exc):
                    reset_connections(self.client)
                continue
            for r, stage in staged:
                r.stage_written = stage
            for r, flag in zip(running, flags, strict=True):
                if flag is not None and r.stop_reason is None:
                    r.stop_reason = "cancelled"
                    log.info(
                        "task %s: cancel requested",
                        r.task.task_id,
                        extra={"task_id": r.task.task_id},
                    )
                    r.executor.cancel()


class _StageClock:
    """Times each stage of a task for the stage-duration histogram."""

    def __init__(self, metrics: WorkerMetrics, task_type: str) -> None:
        self.metrics = metrics
        self.task_type = task_type
        self.stage: str | None = None
        self.since = time.monotonic()

    def enter(self, stage: str | None) -> None:
        now = time.monotonic()
        if self.stage is not None:
            self.metrics.stage_duration(self.task_type, self.stage, now - self.since)
        self.stage, self.since = stage, now


def _completed_record(data: bytes, timing: dict[str, Any]) -> bytes:
    """Splice the timing fields into the payload without decoding it again."""
    extra = orjson.dumps(timing)[1:-1]
    body = data[:-1] + (b"," if data != b"{}" else b"") + extra + b"}"
    return (
        b'{"status":"completed","data":'
        + body
        + b',"updated_at":'
        + orjson.dumps(utc_now_iso())
        + b"}"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_any(futures: set[Future[None]], timeout: float | None = None) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
