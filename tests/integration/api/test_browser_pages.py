"""The backtest page reads results first, at desktop and phone sizes, light and dark."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from strategyq.labels import METRICS, format_metric
from tests.integration.api.conftest import backtest_body
from tests.integration.api.test_browser_sweeps import WAIT_MS
from tests.integration.conftest import WorkerProcess


def _backtest(http: httpx.Client, task_id: str) -> dict[str, Any]:
    if http.get(f"/v1/tasks/{task_id}").status_code == 404:
        assert (
            http.post("/v1/tasks", json=backtest_body(task_id, benchmark="IBM")).status_code == 202
        )
    result: dict[str, Any] = http.get(
        f"/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, timeout=140
    ).json()
    assert result["status"] == "completed", result
    return result


def test_a_backtest_page_leads_with_headline_cards_and_labels_every_metric(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    metrics = _backtest(http, "br-results")["data"]["performance_metrics"]
    page = sized
    page.goto("/tasks/br-results")
    page.wait_for_selector("#equity-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.shots / f"backtest-{page.size}.png"), full_page=True)
    cards = page.eval_on_selector_all(
        "#headline .card", "cs => cs.map(c => [c.dataset.metric, c.innerText, c.title])"
    )
    assert [c[0] for c in cards] == [
        "total_return", "cagr", "sharpe_ratio", "max_drawdown", "win_rate", "num_trades"
    ]  # fmt: skip
    for name, text, title in cards:
        assert format_metric(name, metrics[name]) in text
        assert METRICS[name].label in text and title == METRICS[name].definition
    assert format_metric("benchmark_return", metrics["benchmark_return"]) in cards[0][1]
    # Results first: the cards, then the charts, then the tables, then all metrics.
    order = page.evaluate(
        "() => ['headline', 'equity-chart', 'trades', 'metrics'].map("
        "id => document.getElementById(id).getBoundingClientRect().top + window.scrollY)"
    )
    assert order == sorted(order)
    rows = page.eval_on_selector_all(
        "#metrics tr",
        "rs => rs.map(r => [r.querySelector('th').innerText, r.querySelector("
        "'th').title, r.querySelector('td').innerText])",
    )
    assert len(rows) == len(metrics)
    for label, title, value in rows:
        name = next(n for n, m in METRICS.items() if m.label == label)
        assert title == METRICS[name].definition and value == format_metric(name, metrics[name])
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]


def test_the_chart_library_loads_only_on_pages_with_charts(
    page: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    _backtest(http, "br-results")
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    for path in ["/tasks", "/dead-letters", "/schedules", "/submit"]:
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("() => typeof Plotly") == "undefined", path
    assert not [url for url in fetched if "plotly" in url]
    page.goto("/tasks/br-results")
    page.wait_for_selector("#equity-chart .main-svg", timeout=WAIT_MS)
    assert page.evaluate("() => typeof Plotly") == "object"
    assert len([url for url in fetched if url.endswith("/static/plotly.min.js")]) == 1


def test_dark_mode_follows_the_system_setting(
    chromium: Any, serve: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    _backtest(http, "br-results")
    context = chromium.new_context(base_url=serve.url, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto("/tasks/br-results")
        page.wait_for_selector("#equity-chart .main-svg")
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"
        paper = page.evaluate("() => document.getElementById('equity-chart').layout.paper_bgcolor")
        assert paper == "rgba(0,0,0,0)"
    finally:
        context.close()
    light = chromium.new_context(base_url=serve.url, color_scheme="light")
    try:
        page = light.new_page()
        page.goto("/tasks/br-results")
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == (
            "rgb(255, 255, 255)"
        )
    finally:
        light.close()


def test_trades_and_instances_download_as_csv(http: httpx.Client, worker: WorkerProcess) -> None:
    data = _backtest(http, "br-results")["data"]
    assert 'href="/tasks/br-results/trades.csv"' in http.get("/tasks/br-results").text
    reply = http.get("/tasks/br-results/trades.csv")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert len(rows) == len(data["trades"])
    assert [float(r["entry_price"]) for r in rows] == [t["entry_price"] for t in data["trades"]]
    assert [r["ticker"] for r in rows] == [t["ticker"] for t in data["trades"]]
    instances = list(csv.DictReader(io.StringIO(http.get("/tasks/br-results/instances.csv").text)))
    assert len(instances) == len(data["instances"])
    assert http.get("/tasks/br-results/secrets.csv").status_code == 404
    assert http.get("/tasks/no-such-task/trades.csv").status_code == 404


def test_the_tasks_type_filter_offers_only_what_producers_submit(http: httpx.Client) -> None:
    html = http.get("/tasks").text
    select = html.split('name="task_type"', 1)[1].split("</select>", 1)[0]
    assert ">backtest</option>" in select and ">sweep</option>" in select
    assert "sweep_chunk" not in select
