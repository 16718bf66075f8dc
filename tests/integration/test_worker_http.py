"""The metrics and health endpoints and the log lines of a live worker subprocess."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from strategyq import add_backtest_task, wait_for_result
from tests.integration.conftest import SpawnWorker, wait_until

SECRET_CODE_MARKER = "zebra_marker_7731"
STRATEGY = (
    "def marked(df):\n"
    f"    label = '{SECRET_CODE_MARKER}'\n"
    "    return [{'ticker': 'AAPL', 'date': '2011-03-01', 'note': len(label)}]\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_live_worker_serves_metrics_health_and_json_logs(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    port = free_port()
    worker = spawn_worker("m1", "--metrics-port", str(port), "--log-format", "json")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/readyz")[0] == 200 if _listening(port) else False)
    status, body = get(base + "/healthz")
    assert status == 200, body

    add_backtest_task(redis_client, "http-1", STRATEGY, ["AAPL"], "2011-01-01", "2011-06-30")
    result = wait_for_result(redis_client, "http-1", timeout_s=30)
    assert result is not None and result["status"] == "completed"

    def scraped() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        families = {}
        for family in text_string_to_metric_families(get(base + "/metrics")[1]):
            families[family.name] = {
                tuple(sorted(s.labels.items())): s.value for s in family.samples
            }
        return families

    metrics = wait_until(
        lambda: (
            (m := scraped())
            and m.get("strategyq_tasks_finished", {}).get(
                (("outcome", "completed"), ("task_type", "backtest"))
            )
            and m
        ),
        timeout_s=10,
    )
    for name in (
        "strategyq_tasks_started",
        "strategyq_task_duration_seconds",
        "strategyq_task_stage_duration_seconds",
        "strategyq_queue_depth",
        "strategyq_tasks_in_flight",
        "strategyq_dead_letters",
        "strategyq_sandbox_kills",
        "strategyq_redis_errors",
        "strategyq_redis_up",
        "strategyq_worker_info",
        "strategyq_sandbox_layer_active",
    ):
        assert name in metrics, name
    assert metrics["strategyq_sandbox_layer_active"][(("layer", "seccomp"),)] == 1.0

    lines = [json.loads(line) for line in worker.output if line.startswith("{")]
    started = [r for r in lines if r.get("task_id") == "http-1" and "started" in r["msg"]]
    finished = [r for r in lines if r.get("task_id") == "http-1" and "finished" in r["msg"]]
    assert started and finished
    assert finished[0]["outcome"] == "completed" and finished[0]["duration_ms"] > 0
    assert finished[0]["task_type"] == "backtest"
    assert started[0]["strategy"].startswith(f"len={len(STRATEGY)} sha256=")
    assert not any(SECRET_CODE_MARKER in line for line in worker.output)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
