"""Metrics and health endpoints, scraped over real HTTP from a HealthServer on a free port."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from strategyq.errors import ConfigError
from strategyq.observability import HealthServer, WorkerMetrics, top_tenants

FAMILIES = {
    "strategyq_tasks_started": "counter",
    "strategyq_tasks_finished": "counter",
    "strategyq_task_duration_seconds": "histogram",
    "strategyq_task_stage_duration_seconds": "histogram",
    "strategyq_queue_depth": "gauge",
    "strategyq_tasks_in_flight": "gauge",
    "strategyq_dead_letters": "gauge",
    "strategyq_sandbox_kills": "counter",
    "strategyq_redis_errors": "counter",
    "strategyq_redis_up": "gauge",
    "strategyq_worker_info": "gauge",  # an Info metric reads back as a gauge of 1
    "strategyq_sandbox_layer_active": "gauge",
    "strategyq_tasks_taken": "counter",
    "strategyq_task_wait_seconds": "histogram",
}


class Probe:
    """Switchable answers for the server's callables."""

    def __init__(self) -> None:
        self.redis_ok = True
        self.is_ready = True
        self.release = threading.Event()
        self.hang = False
        self.raise_error = False

    def ping(self) -> bool:
        if self.raise_error:
            raise ConnectionError("connection refused")
        if self.hang:
            self.release.wait(30)
        return self.redis_ok

    def ready(self) -> bool:
        return self.is_ready


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    yield p
    p.release.set()


@pytest.fixture
def server(probe: Probe) -> Iterator[HealthServer]:
    srv = HealthServer(
        WorkerMetrics("worker-test-1"),
        0,
        host="127.0.0.1",
        redis_ping=probe.ping,
        ready=probe.ready,
        ping_timeout_s=0.3,
    )
    srv.start()
    yield srv
    srv.stop()


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read().decode()


def scrape(server: HealthServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def families(server: HealthServer) -> dict[str, str]:
    _, _, body = get(server, "/metrics")
    # prometheus_client adds a ``*_created`` timestamp beside each counter and histogram.
    return {
        f.name: f.type
        for f in text_string_to_metric_families(body)
        if not f.name.endswith("_created")
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_family_is_exported_with_its_type(server: HealthServer) -> None:
    assert families(server) == FAMILIES


def test_port_zero_reports_the_bound_port(server: HealthServer) -> None:
    assert server.port > 0


def test_series_exist_at_zero_before_any_event(server: HealthServer) -> None:
    samples = scrape(server)
    assert value(samples, "strategyq_tasks_started_total", task_type="backtest") == 0
    labels = {"task_type": "screening", "outcome": "requeued"}
    assert value(samples, "strategyq_tasks_finished_total", **labels) == 0
    assert value(samples, "strategyq_sandbox_kills_total", reason="memory") == 0
    assert value(samples, "strategyq_redis_errors_total") == 0


def test_values_follow_the_method_calls(server: HealthServer) -> None:
    m = server.metrics
    m.task_started("backtest")
    m.task_started("backtest")
    m.task_finished("backtest", "completed", 1.5)
    m.task_finished("backtest", "error", 0.2)
    m.stage_duration("backtest", "loading_data", 0.04)
    m.stage_duration("backtest", "running_strategy", 0.7)
    m.set_queue_depth(42)
    m.set_in_flight(2)
    m.set_dead_letters(3)
    m.sandbox_kill("timeout")
    m.sandbox_kill("prohibited_operation")
    m.redis_error()
    m.set_info("1.2.3", {"seccomp": True, "landlock": False, "rlimits": True})
    s = scrape(server)
    assert value(s, "strategyq_tasks_started_total", task_type="backtest") == 2
    assert value(s, "strategyq_tasks_started_total", task_type="screening") == 0
    completed = {"task_type": "backtest", "outcome": "completed"}
    assert value(s, "strategyq_tasks_finished_total", **completed) == 1
    assert value(s, "strategyq_task_duration_seconds_count", **completed) == 1
    assert value(s, "strategyq_task_duration_seconds_sum", **completed) == 1.5
    assert value(s, "strategyq_task_duration_seconds_bucket", le="1.0", **completed) == 0
    assert value(s, "strategyq_task_duration_seconds_bucket", le="2.5", **completed) == 1
    stage = {"task_type": "backtest", "stage": "running_strategy"}
    assert value(s, "strategyq_task_stage_duration_seconds_sum", **stage) == 0.7
    assert value(s, "strategyq_queue_depth") == 42
    assert value(s, "strategyq_tasks_in_flight") == 2
    assert value(s, "strategyq_dead_letters") == 3
    assert value(s, "strategyq_sandbox_kills_total", reason="timeout") == 1
    assert value(s, "strategyq_sandbox_kills_total", reason="memory") == 0
    assert value(s, "strategyq_redis_errors_total") == 1
    info = {"worker_id": "worker-test-1", "version": "1.2.3", "layers": "rlimits,seccomp"}
    assert value(s, "strategyq_worker_info", **info) == 1
    assert value(s, "strategyq_sandbox_layer_active", layer="seccomp") == 1
    assert value(s, "strategyq_sandbox_layer_active", layer="landlock") == 0


def test_gauges_go_down_as_well_as_up(server: HealthServer) -> None:
    server.metrics.set_in_flight(4)
    server.metrics.set_in_flight(1)
    server.metrics.set_redis_up(False)
    s = scrape(server)
    assert value(s, "strategyq_tasks_in_flight") == 1
    assert value(s, "strategyq_redis_up") == 0


def test_unknown_task_type_from_the_wire_is_folded_into_one_label(server: HealthServer) -> None:
    for i in range(5):
        server.metrics.task_started(f"attacker-{i}")
    s = scrape(server)
    assert value(s, "strategyq_tasks_started_total", task_type="unknown") == 5
    assert not any("attacker" in str(key) for key in s)


def test_tenant_labels_are_capped_the_rest_counted_as_other(server: HealthServer) -> None:
    server.metrics.tenant_label.cap = 3
    for i in range(10):
        server.metrics.task_taken("batch", f"user-{i}", 0.5)
    server.metrics.task_taken("interactive", "user-0", 0.01)
    s = scrape(server)
    for i in range(3):
        assert value(s, "strategyq_tasks_taken_total", lane="batch", tenant=f"user-{i}") == 1
    assert value(s, "strategyq_tasks_taken_total", lane="batch", tenant="other") == 7
    assert value(s, "strategyq_tasks_taken_total", lane="interactive", tenant="user-0") == 1
    assert not any("user-5" in str(key) for key in s)
    assert value(s, "strategyq_task_wait_seconds_count", lane="batch", tenant="other") == 7


def test_top_tenants_keeps_the_largest_and_sums_the_rest() -> None:
    values = {"a": 5.0, "b": 9.0, "c": 1.0, "d": 2.0}
    assert top_tenants(values, 2) == {"b": 9.0, "a": 5.0, "other": 3.0}
    assert top_tenants({"a": 1.0}, 2) == {"a": 1.0}


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.task_finished("backtest", "exploded", 1.0),
        lambda m: m.stage_duration("backtest", "thinking", 1.0),
        lambda m: m.sandbox_kill("boredom"),
    ],
)
def test_unknown_outcome_stage_or_reason_is_a_programming_error(
    call: Callable[[WorkerMetrics], None],
) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        call(WorkerMetrics("w"))


def test_two_instances_have_separate_registries() -> None:
    a, b = WorkerMetrics("a"), WorkerMetrics("b")
    a.task_started("screening")
    text_b = b.render().decode()
    assert 'strategyq_tasks_started_total{task_type="screening"} 0.0' in text_b
    assert 'strategyq_tasks_started_total{task_type="screening"} 1.0' in a.render().decode()


def test_healthz_is_200_when_redis_answers(server: HealthServer) -> None:
    status, ctype, body = get(server, "/healthz")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "redis": "ok"}
    assert value(scrape(server), "strategyq_redis_up") == 1


def test_healthz_is_503_when_redis_ping_fails(server: HealthServer, probe: Probe) -> None:
    probe.redis_ok = False
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "unhealthy", "redis": "unreachable"}
    assert value(scrape(server), "strategyq_redis_up") == 0


def test_healthz_is_503_when_redis_ping_raises(server: HealthServer, probe: Probe) -> None:
    probe.raise_error = True
    status, _, body = get(server, "/healthz")
    assert (status, json.loads(body)["redis"]) == (503, "unreachable")


def test_healthz_is_503_when_redis_ping_hangs(server: HealthServer, probe: Probe) -> None:
    probe.hang = True
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "unhealthy", "redis": "timeout"}
    # A second probe while the first ping still hangs shares it instead of stacking threads.
    before = threading.active_count()
    assert get(server, "/healthz")[0] == 503
    assert threading.active_count() <= before + 1
    probe.hang = False
    probe.release.set()
    for _ in range(50):
        if get(server, "/healthz")[0] == 200:
            break
    assert get(server, "/healthz")[0] == 200


def test_readyz_needs_ready_and_redis(server: HealthServer, probe: Probe) -> None:
    status, _, body = get(server, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready", "redis": "ok"})
    probe.is_ready = False
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body) == {"status": "not_ready", "ready": False, "redis": "ok"}
    probe.is_ready = True
    probe.redis_ok = False
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body) == {"status": "not_ready", "ready": True, "redis": "unreachable"}


def test_unknown_path_is_404(server: HealthServer) -> None:
    assert get(server, "/admin")[0] == 404


def test_busy_port_is_a_config_error_naming_the_flag(server: HealthServer, probe: Probe) -> None:
    clash = HealthServer(
        WorkerMetrics("w2"), server.port, host="127.0.0.1", redis_ping=probe.ping, ready=probe.ready
    )
    with pytest.raises(ConfigError, match="--metrics-port"):
        clash.start()


def test_stop_releases_the_port(probe: Probe) -> None:
    first = HealthServer(
        WorkerMetrics("w"), 0, host="127.0.0.1", redis_ping=probe.ping, ready=probe.ready
    )
    first.start()
    port = first.port
    first.stop()
    again = HealthServer(
        WorkerMetrics("w"), port, host="127.0.0.1", redis_ping=probe.ping, ready=probe.ready
    )
    again.start()
    try:
        assert get(again, "/healthz")[0] == 200
    finally:
        again.stop()


def test_second_worker_on_one_host_takes_the_next_free_port(
    server: HealthServer, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    second = HealthServer(
        WorkerMetrics("w2"),
        server.port,
        host="127.0.0.1",
        next_free_ports=100,
        redis_ping=probe.ping,
        ready=probe.ready,
    )
    with caplog.at_level("WARNING", logger="strategyq.observability"):
        second.start()
    try:
        assert second.port != server.port and server.port < second.port <= server.port + 100
        assert get(second, "/healthz")[0] == 200
        assert f"serving metrics and health checks on port {second.port}" in caplog.text
    finally:
        second.stop()


def test_metrics_endpoint_binds_loopback_unless_told_otherwise(probe: Probe) -> None:
    from strategyq.settings import Settings

    assert Settings.from_env({}).metrics_host == "127.0.0.1"
    assert Settings.from_env({"STRATEGYQ_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
    srv = HealthServer(WorkerMetrics("w"), 0, redis_ping=probe.ping, ready=probe.ready)
    srv.start()
    try:
        assert srv._server is not None and srv._server.server_address[0] == "127.0.0.1"
    finally:
        srv.stop()
