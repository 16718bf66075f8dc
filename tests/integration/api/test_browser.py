"""The dashboard in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import redis

from tests.integration.api.helpers import make_dead_letter
from tests.integration.conftest import WorkerProcess, wait_until

# Three seconds asleep before the seed's strategy: the page is open while it runs.
SLOW_FORM_CODE = (
    "import time\n\n\n"
    "def slow_gap_up(df):\n"
    "    time.sleep(3)\n"
    "    hits = df[(df['gap_pct'] > 3.0) & (df['volume_ratio'] > 1.5)]\n"
    "    return [{'ticker': r.ticker, 'date': str(r.date), 'signal': True}\n"
    "            for r in hits.itertuples()]\n"
)
WAIT_MS = 90_000


def test_submit_form_watch_it_complete_and_check_chart_and_metrics(
    page: Any, http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    page.goto("/submit")
    page.fill("input[name=task_id]", "br-1")
    page.fill("textarea[name=strategy_code]", SLOW_FORM_CODE)
    page.fill("input[name=symbols]", "AAPL,MSFT")
    page.fill("input[name=start_date]", "2010-01-01")
    page.fill("input[name=end_date]", "2012-12-31")
    page.fill("input[name=hold_days]", "3")
    page.fill("input[name=benchmark]", "IBM")
    page.screenshot(path=str(page.screenshots / "1-form.png"))
    page.click("#submit")
    page.wait_for_url("**/tasks/br-1")
    # Live: the page shows the run going before it shows the result.
    page.wait_for_function(
        "() => document.getElementById('status').textContent === 'running'", timeout=WAIT_MS
    )
    page.screenshot(path=str(page.screenshots / "2-running.png"))
    page.wait_for_selector("#status.completed", timeout=WAIT_MS)
    page.wait_for_selector("#equity-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.screenshots / "3-completed.png"), full_page=True)
    result = http.get("/v1/tasks/br-1").json()
    assert result["status"] == "completed"
    curve = result["data"]["equity_curve"]
    drawn = page.evaluate(
        "() => { const div = document.getElementById('equity-chart');"
        " return {points: div.data[0].x.length, y: div.data[0].y.length,"
        " paths: div.querySelectorAll('.scatterlayer .trace path.js-line').length,"
        " traces: div.data.map(t => [t.name, t.x.length])}; }"
    )
    assert drawn["points"] == drawn["y"] == len(curve["dates"]) == len(curve["values"])
    assert drawn["paths"] >= 3  # the equity, benchmark and drawdown lines were drawn
    bench = result["data"]["benchmark_curve"]
    assert ["benchmark", len(bench["dates"])] in drawn["traces"]
    shown = page.eval_on_selector_all(
        "#metrics td[data-metric]", "cells => cells.map(c => [c.dataset.metric, c.dataset.value])"
    )
    assert {k: orjson.loads(v) for k, v in shown} == result["data"]["performance_metrics"]
    assert result["data"]["summary"]["trade_model"]["hold_days"] == 3


def test_dead_letter_retry_button_requeues(
    page: Any,
    http: httpx.Client,
    worker: WorkerProcess,
    module_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    make_dead_letter(redis_client, module_env, "br-dl", f"dlq-{uuid.uuid4().hex[:6]}", worker)
    page.goto("/dead-letters")
    row = page.locator("tr[data-task='br-dl']")
    assert "worker_lost" in row.inner_text()
    page.screenshot(path=str(page.screenshots / "1-dead-letters.png"))
    row.locator("button.retry").click()
    page.wait_for_url("**/tasks/br-dl")
    assert redis_client.llen("strategyq:dead_letter") == 0
    page.wait_for_selector("#status.completed", timeout=WAIT_MS)
    page.screenshot(path=str(page.screenshots / "2-retried.png"))
    assert http.get("/v1/tasks/br-dl").json()["status"] == "completed"


def test_overview_shows_a_live_worker(
    page: Any, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    def shown() -> bool:
        page.goto("/?refresh=0")
        return page.locator("tr.worker.alive[data-worker='api-worker']").count() == 1

    wait_until(shown, timeout_s=20, interval_s=0.5)
    row = page.locator("tr.worker.alive[data-worker='api-worker']")
    assert "seccomp" in row.inner_text() and "landlock" in row.inner_text()
    assert int(page.inner_text("#workers-alive")) >= 1
    page.wait_for_selector("#throughput-chart .main-svg")
    page.screenshot(path=str(page.screenshots / "overview.png"), full_page=True)
