"""The archiver's Prometheus metrics (served with ``/healthz`` and ``/readyz``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

MISSED_REASONS = ("evicted", "expired")


class ArchiveMetrics:
    """Lag, rows written, runs missed or skipped, and whether the database answers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lag = Gauge(
            "strategyq_archive_lag_seconds",
            "Age of the oldest ended run not yet archived (0: caught up).",
            registry=r,
        )
        self._rows = Counter(
            "strategyq_archive_rows_written", "Runs copied into the archive.", registry=r
        )
        self._missed = Counter(
            "strategyq_archive_missed_runs",
            "Runs gone from Redis before they were copied (evicted: before their TTL).",
            ["reason"],
            registry=r,
        )
        self._skipped = Counter(
            "strategyq_archive_skipped_records",
            "Corrupt or foreign records stepped over.",
            registry=r,
        )
        self._pruned = Counter(
            "strategyq_archive_runs_pruned", "Runs deleted by the retention setting.", registry=r
        )
        self._db_up = Gauge(
            "strategyq_archive_db_up",
            "1 when the last archive write succeeded, else 0.",
            registry=r,
        )
        self._redis_up = Gauge(
            "strategyq_redis_up", "1 when the last Redis check succeeded, else 0.", registry=r
        )
        for reason in MISSED_REASONS:
            self._missed.labels(reason)

    def set_lag(self, seconds: float) -> None:
        self._lag.set(max(seconds, 0.0))

    def rows_written(self, n: int) -> None:
        self._rows.inc(n)

    def missed(self, reason: str, n: int = 1) -> None:
        self._missed.labels(reason if reason in MISSED_REASONS else "expired").inc(n)

    def skipped(self, n: int = 1) -> None:
        self._skipped.inc(n)

    def pruned(self, n: int) -> None:
        self._pruned.inc(n)

    def set_db_up(self, up: bool) -> None:
        self._db_up.set(1 if up else 0)

    def set_redis_up(self, up: bool) -> None:
        self._redis_up.set(1 if up else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
