"""Prometheus metrics of the API: requests by route and status, latency by route.

The route label is the route's template (``/v1/tasks/{task_id}``), never the
raw path, so task ids cannot blow up the label space; unmatched paths count
as ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strategyq.observability import TENANT_LABELS, top_tenants
from strategyq.queue.tenants import LaneState, TenantState

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "strategyq_api_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "strategyq_api_request_duration_seconds",
            "Time to answer an HTTP request (long-polls and event streams included).",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "strategyq_api_tasks_submitted_total",
            "Tasks queued through the API, by task type.",
            ["task_type"],
            registry=self.registry,
        )

    def watch_tenancy(self, read: Callable[[], tuple[list[LaneState], list[TenantState]]]) -> None:
        """Export the lanes and tenants ``read`` returns, read again at each scrape."""
        self.registry.register(TenancyCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TenancyCollector(Collector):
    """Queue-wide gauges by lane and by tenant, read from Redis at scrape time: the
    :data:`~strategyq.observability.TENANT_LABELS` busiest tenants by name, the rest
    summed as ``other`` (tenants come off the wire: their number is unbounded)."""

    def __init__(self, read: Callable[[], tuple[list[LaneState], list[TenantState]]]) -> None:
        self.read = read

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # read at scrape time only (registration must not touch Redis)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lanes, tenants = self.read()
        depth = GaugeMetricFamily(
            "strategyq_lane_depth", "Tasks waiting in each lane.", labels=["lane"]
        )
        for lane in lanes:
            depth.add_metric([lane.name], lane.depth)
        yield depth
        busy = {t.name: float(t.queued + t.in_flight) for t in tenants}
        named = top_tenants(busy, TENANT_LABELS)
        queued: dict[str, float] = {}
        running: dict[str, float] = {}
        for t in tenants:
            label = t.name if t.name in named else "other"
            queued[label] = queued.get(label, 0) + t.queued
            running[label] = running.get(label, 0) + t.in_flight
        for name, help_, values in (
            ("strategyq_tenant_queued", "Tasks of each tenant waiting.", queued),
            ("strategyq_tenant_in_flight", "Tasks of each tenant running.", running),
        ):
            family = GaugeMetricFamily(name, help_ + " The busiest tenants by name, the rest "
                                       "as 'other'.", labels=["tenant"])  # fmt: skip
            for label, value in sorted(values.items()):
                family.add_metric([label], value)
            yield family


def route_of(scope: Scope) -> str:
    """The template of the route that answered (the router records it in the scope)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    """Pure ASGI (no per-request task or body copy, unlike ``BaseHTTPMiddleware``)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
