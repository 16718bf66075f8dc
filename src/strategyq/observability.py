"""Prometheus metrics and the health endpoints of a worker.

``WorkerMetrics`` owns a private ``CollectorRegistry`` so several workers (or
tests) can live in one process. ``HealthServer`` serves ``/metrics``,
``/healthz`` and ``/readyz`` from a daemon thread; Kubernetes probes and the
Docker ``HEALTHCHECK`` call the last two.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from strategyq.errors import ConfigError
from strategyq.protocol.results import EXECUTOR_STAGES

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

TASK_TYPES = ("backtest", "screening", "sweep", "sweep_chunk")
OUTCOMES = ("completed", "error", "cancelled", "requeued", "skipped")
STAGES = tuple(str(s) for s in EXECUTOR_STAGES)
KILL_REASONS = ("timeout", "memory", "prohibited_operation", "cancelled")

# Task types come off the wire; anything else is folded into one label value so a
# misbehaving producer cannot create unbounded time series.
_OTHER_TASK_TYPE = "unknown"

# From a fast screen to a task at the default 60 s limit (plus data loading).
_TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_LABEL_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


TENANT_LABELS = 20
"""Tenants with a label value of their own in a worker's metrics; the others share
``other`` (tenants come off the wire, so their number is unbounded)."""
OTHER_TENANT = "other"


class TenantLabels:
    """The ``tenant`` label value of each tenant: its own name for the first ``cap``
    tenants seen (the most active ones, on a worker that has run for a while), then
    ``other``, so a platform with many users keeps a bounded number of series."""

    def __init__(self, cap: int = TENANT_LABELS) -> None:
        self.cap = cap
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> str:
        if tenant in self._named:
            return tenant
        with self._lock:
            if len(self._named) < self.cap and tenant != OTHER_TENANT:
                self._named.add(tenant)
                return tenant
        return OTHER_TENANT


def top_tenants(values: Mapping[str, float], cap: int = TENANT_LABELS) -> dict[str, float]:
    """``values`` by tenant, the ``cap`` largest kept by name and the rest summed as ``other``."""
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:cap])
    rest = sum(v for _, v in ranked[cap:])
    if rest or len(ranked) > cap:
        kept[OTHER_TENANT] = kept.get(OTHER_TENANT, 0) + rest
    return kept


def _task_label(task_type: str) -> str:
    return task_type if task_type in TASK_TYPES else _OTHER_TASK_TYPE


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


class WorkerMetrics:
    """The metrics of one worker process, all prefixed ``strategyq_``.

    Args:
        worker_id: The worker's id (the pod name in Kubernetes); exported in
            ``strategyq_worker_info``.
        registry: Where to register; a new private registry when omitted.
    """

    def __init__(self, worker_id: str, registry: CollectorRegistry | None = None) -> None:
        self.worker_id = worker_id
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._started = Counter(
            "strategyq_tasks_started",
            "Tasks taken off the queue and started.",
            ["task_type"],
            registry=r,
        )
        self._finished = Counter(
            "strategyq_tasks_finished",
            "Tasks that ended, by outcome.",
            ["task_type", "outcome"],
            registry=r,
        )
        self._duration = Histogram(
            "strategyq_task_duration_seconds",
            "Wall-clock time from start to end of a task.",
            ["task_type", "outcome"],
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self._stage = Histogram(
            "strategyq_task_stage_duration_seconds",
            "Wall-clock time of one stage of a task.",
            ["task_type", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self._queue_depth = Gauge(
            "strategyq_queue_depth",
            "Tasks waiting: the queue's list and every lane (as last seen).",
            registry=r,
        )
        self._in_flight = Gauge(
            "strategyq_tasks_in_flight", "Tasks this worker is running now.", registry=r
        )
        self._dead_letters = Gauge(
            "strategyq_dead_letters", "Entries in the dead-letter list (as last seen).", registry=r
        )
        self._kills = Counter(
            "strategyq_sandbox_kills",
            "Sandbox children killed, by reason.",
            ["reason"],
            registry=r,
        )
        self._redis_errors = Counter(
            "strategyq_redis_errors", "Redis commands that failed.", registry=r
        )
        self._redis_up = Gauge(
            "strategyq_redis_up", "1 when the last Redis check succeeded, else 0.", registry=r
        )
        self._taken = Counter(
            "strategyq_tasks_taken",
            "Tasks taken, by lane and tenant (tenants past the label cap as 'other').",
            ["lane", "tenant"],
            registry=r,
        )
        self._wait = Histogram(
            "strategyq_task_wait_seconds",
            "Time a task waited in its lane, from routing to its take.",
            ["lane", "tenant"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.tenant_label = TenantLabels()
        self._info = Info("strategyq_worker", "Static facts about this worker.", registry=r)
        self._layer = Gauge(
            "strategyq_sandbox_layer_active",
            "1 when the sandbox layer is applied, else 0.",
            ["layer"],
            registry=r,
        )
        # Touch every known label set so each series exists from the first scrape:
        # rate() and absent() alerts need a zero before the first event.
        for task_type in TASK_TYPES:
            self._started.labels(task_type)
            for outcome in OUTCOMES:
                self._finished.labels(task_type, outcome)
                self._duration.labels(task_type, outcome)
            for stage in STAGES:
                self._stage.labels(task_type, stage)
        for reason in KILL_REASONS:
            self._kills.labels(reason)
        self._info.info({"worker_id": worker_id, "version": "", "layers": ""})

    def task_started(self, task_type: str) -> None:
        """Count a task taken off the queue."""
        self._started.labels(_task_label(task_type)).inc()

    def task_taken(self, lane: str, tenant: str, wait_s: float) -> None:
        """Count a task taken from its lane and observe how long it waited."""
        labels = (lane, self.tenant_label(tenant))
        self._taken.labels(*labels).inc()
        self._wait.labels(*labels).observe(max(0.0, wait_s))

    def task_finished(self, task_type: str, outcome: str, duration_s: float) -> None:
        """Count a task that ended and observe its duration.

        Args:
            task_type: ``backtest`` or ``screening`` (anything else is counted as ``unknown``).
            outcome: One of ``completed``, ``error``, ``cancelled``, ``requeued``, ``skipped``.
            duration_s: Wall-clock seconds from start to end.
        """
        labels = (_task_label(task_type), _check(outcome, OUTCOMES, "outcome"))
        self._finished.labels(*labels).inc()
        self._duration.labels(*labels).observe(max(0.0, duration_s))

    def stage_duration(self, task_type: str, stage: str, seconds: float) -> None:
        """Observe one stage: ``loading_data``, ``running_strategy`` or ``computing_metrics``."""
        self._stage.labels(_task_label(task_type), _check(stage, STAGES, "stage")).observe(
            max(0.0, seconds)
        )

    def set_queue_depth(self, n: int) -> None:
        """Record the queue's length as last read."""
        self._queue_depth.set(n)

    def set_in_flight(self, n: int) -> None:
        """Record how many tasks this worker is running."""
        self._in_flight.set(n)

    def set_dead_letters(self, n: int) -> None:
        """Record the dead-letter list's length as last read."""
        self._dead_letters.set(n)

    def sandbox_kill(self, reason: str) -> None:
        """Count a killed sandbox child.

        Args:
            reason: ``timeout``, ``memory``, ``prohibited_operation`` or ``cancelled``.
        """
        self._kills.labels(_check(reason, KILL_REASONS, "kill reason")).inc()

    def redis_error(self) -> None:
        """Count a failed Redis command."""
        self._redis_errors.inc()

    def set_redis_up(self, up: bool) -> None:
        """Record whether Redis answered the last check."""
        self._redis_up.set(1 if up else 0)

    def set_info(self, version: str, layers: Mapping[str, bool]) -> None:
        """Record the worker's version and which sandbox layers are active.

        Args:
            version: The strategyq version.
            layers: Layer name (e.g. ``seccomp``, ``landlock``) to whether it is applied.
        """
        active = ",".join(sorted(name for name, on in layers.items() if on))
        self._info.info({"worker_id": self.worker_id, "version": version, "layers": active})
        for name, on in layers.items():
            self._layer.labels(_LABEL_UNSAFE.sub("_", name)).set(1 if on else 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class _Pinger:
    """Runs the Redis check with a deadline, at most one at a time.

    A hung check keeps its daemon thread; later probes wait on the same attempt
    instead of starting another, so a dead server never piles up threads.
    """

    def __init__(self, ping: Callable[[], bool], timeout_s: float) -> None:
        self._ping = ping
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._done: threading.Event | None = None
        self._result: str = "unreachable"

    def check(self) -> str:
        """``ok``, ``unreachable`` (False or an exception) or ``timeout``."""
        with self._lock:
            if self._done is None:
                done = threading.Event()
                self._done = done
                threading.Thread(
                    target=self._run, args=(done,), name="strategyq-health-ping", daemon=True
                ).start()
            done = self._done
        if not done.wait(self._timeout_s):
            return "timeout"
        return self._result

    def _run(self, done: threading.Event) -> None:
        try:
            result = "ok" if self._ping() else "unreachable"
        except Exception as exc:  # the probe must answer, whatever the check raises
            logger.warning("health check: redis ping raised %s: %s", type(exc).__name__, exc)
            result = "unreachable"
        with self._lock:
            self._result = result
            self._done = None
        done.set()


class MetricsSource(Protocol):
    """What :class:`HealthServer` serves: the worker's or the archiver's metrics."""

    def render(self) -> bytes: ...

    def set_redis_up(self, up: bool) -> None: ...


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP from a daemon thread.

    ``/healthz`` answers 200 while ``redis_ping()`` returns True within
    ``ping_timeout_s``; ``/readyz`` also needs ``ready()``. Failures answer 503
    with a JSON body naming the reason, e.g. ``{"status": "unhealthy", "redis": "unreachable"}``.

    Args:
        metrics: The worker's metrics (served at ``/metrics``; ``redis_up`` follows each check).
        port: TCP port; 0 picks a free one (read it back from ``port`` after ``start``).
        host: Address to bind (loopback by default: the endpoint is for the machine's own
            scraper and probes unless an address such as ``0.0.0.0`` is given).
        next_free_ports: When ``port`` is taken, try this many following ports and
            log the one used (so a second worker on one host still starts).
        redis_ping: Returns True when Redis answers.
        ready: Returns True when the worker takes tasks.
        ping_timeout_s: How long a probe waits for ``redis_ping``.
        track_redis_up: Set ``redis_up`` from each check; when False, a check only ever
            sets it to 0 (the owner reports success from its own Redis calls).
    """

    def __init__(
        self,
        metrics: MetricsSource,
        port: int,
        *,
        host: str = "127.0.0.1",
        next_free_ports: int = 0,
        redis_ping: Callable[[], bool],
        ready: Callable[[], bool],
        ping_timeout_s: float = 2.0,
        track_redis_up: bool = True,
    ) -> None:
        self.metrics = metrics
        self._track_redis_up = track_redis_up
        self._host = host
        self._port = port
        self._next_free_ports = next_free_ports if port else 0
        self._ready = ready
        self._pinger = _Pinger(redis_ping, ping_timeout_s)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port in use (the actual one once started, also when 0 was asked for)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    def start(self) -> None:
        """Bind and serve in a daemon thread.

        Raises:
            ConfigError: When the port cannot be bound.
        """
        if self._server is not None:
            return
        server = self._bind()
        server.daemon_threads = True
        self._server = server
        # A short poll interval keeps stop() (and so worker shutdown) prompt.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="strategyq-health", daemon=True
        )
        self._thread.start()
        logger.info("serving /metrics, /healthz and /readyz on %s:%s", self._host, self.port)

    def _bind(self) -> ThreadingHTTPServer:
        handler = _make_handler(self)
        first: OSError | None = None
        for port in range(self._port, self._port + self._next_free_ports + 1):
            try:
                server = ThreadingHTTPServer((self._host, port), handler)
            except OSError as exc:
                first = first or exc
                if exc.errno != errno.EADDRINUSE:
                    break
                continue
            if port != self._port:
                logger.warning(
                    "port %s:%s is in use (another worker?); serving metrics and health "
                    "checks on port %s instead",
                    self._host,
                    self._port,
                    port,
                )
            return server
        assert first is not None
        raise ConfigError(
            f"cannot serve metrics and health checks on {self._host}:{self._port} "
            f"({first.strerror or first}); free the port or choose another with --metrics-port"
        ) from first

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def health(self) -> tuple[int, dict[str, object]]:
        """The ``/healthz`` answer: status code and JSON body."""
        redis_state = self._pinger.check()
        if self._track_redis_up or redis_state != "ok":
            self.metrics.set_redis_up(redis_state == "ok")
        if redis_state == "ok":
            return HTTPStatus.OK, {"status": "ok", "redis": redis_state}
        return HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy", "redis": redis_state}

    def readiness(self) -> tuple[int, dict[str, object]]:
        """The ``/readyz`` answer: status code and JSON body."""
        code, body = self.health()
        try:
            ready = bool(self._ready())
        except Exception as exc:  # the probe must answer, whatever the callable raises
            logger.warning("readiness check raised %s: %s", type(exc).__name__, exc)
            ready = False
        if code == HTTPStatus.OK and ready:
            return HTTPStatus.OK, {"status": "ready", "redis": body["redis"]}
        return HTTPStatus.SERVICE_UNAVAILABLE, {
            "status": "not_ready",
            "ready": ready,
            "redis": body["redis"],
        }


def _make_handler(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "strategyq"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == METRICS_PATH:
                self._send(HTTPStatus.OK, owner.metrics.render(), CONTENT_TYPE_LATEST)
            elif path == HEALTH_PATH:
                self._send_json(*owner.health())
            elif path == READY_PATH:
                self._send_json(*owner.readiness())
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"status": "not_found", "path": path})

        def _send_json(self, code: int, body: dict[str, object]) -> None:
            self._send(code, json.dumps(body).encode(), "application/json")

        def _send(self, code: int, payload: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # Probes hit these paths every few seconds; keep them out of the worker's log.
            logger.debug("health server: " + format, *args)

    return Handler
