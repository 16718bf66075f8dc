"""A sweep's and a walk-forward's pages in real Chromium, at desktop and phone sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from strategyq.labels import METRICS, format_metric
from tests import warm_cli
from tests.integration.api.test_api import SWEEP_CODE
from tests.integration.browser import SIZES
from tests.integration.conftest import WorkerProcess

WAIT_MS = 90_000


def _sweep(http: httpx.Client, task_id: str, **args: Any) -> dict[str, Any]:
    body = {"task_id": task_id, "task_type": "sweep", "args": {
        "strategy_code": SWEEP_CODE, "symbols": ["AAPL", "MSFT"],
        "start_date": "2008-01-01", "end_date": "2011-12-31", "hold_days": 5,
        "param_grid": {"fast": [5, 10, 20], "slow": [30, 60]}, **args}}  # fmt: skip
    if http.get(f"/v1/tasks/{task_id}").status_code == 404:
        assert http.post("/v1/tasks", json=body).status_code == 202
    result: dict[str, Any] = http.get(
        f"/v1/tasks/{task_id}/wait", params={"timeout_s": 240}, timeout=260
    ).json()
    assert result["status"] == "completed", result
    return result


def _no_page_scroll(page: Any) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.size, width)


def test_a_sweeps_heatmap_is_the_apis_and_a_click_opens_that_combination(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    result = _sweep(http, "br-sweep")
    data = result["data"]
    page = sized
    page.goto("/tasks/br-sweep")
    page.wait_for_selector("#heatmap-chart .main-svg", timeout=WAIT_MS)
    page.wait_for_selector("#best-equity-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.shots / f"sweep-{page.size}.png"), full_page=True)
    assert "6 combinations of fast, slow" in page.inner_text("#sweep-summary")
    # Its args are kept with the result and shown (a sweep has no submit form).
    shown = orjson.loads(page.inner_text("#task-args"))
    assert shown["param_grid"] == {"fast": [5, 10, 20], "slow": [30, 60]}
    assert data["task_args"]["strategy_code"] == SWEEP_CODE
    assert page.locator("#resubmit").count() == 0
    # The heatmap's numbers are the API's (as percentages), cell for cell.
    drawn = page.evaluate(
        "() => { const d = document.getElementById('heatmap-chart').data[0];"
        " return {x: d.x, y: d.y, z: d.z, custom: d.customdata}; }"
    )
    heat = data["heatmap"]
    scale = 100 if METRICS[heat["metric"]].unit == "percent" else 1
    assert drawn["x"] == [str(v) for v in heat["x_values"]]
    assert drawn["y"] == [str(v) for v in heat["y_values"]]
    for row_drawn, row_api in zip(drawn["z"], heat["values"], strict=True):
        for z, v in zip(row_drawn, row_api, strict=True):
            assert (z is None and v is None) or abs(z - v * scale) < 1e-6
    # The best combination's headline and its full backtest are on the page.
    best = data["best"]
    cards = page.inner_text("#best-cards")
    assert format_metric("total_return", best["metrics"]["total_return"]) in cards
    assert format_metric("sharpe_ratio", best["metrics"]["sharpe_ratio"]) in cards
    equity = page.evaluate("() => document.getElementById('best-equity-chart').data[0].y.length")
    assert equity == len(data["best_result"]["equity_curve"]["values"])
    assert page.locator("#results tbody tr").count() == 6
    _no_page_scroll(page)
    # Click the cell of fast=20, slow=60: its combination's page opens.
    j, i = heat["x_values"].index(20), heat["y_values"].index(60)
    url = drawn["custom"][i][j]
    row = next(r for r in data["results"] if r["params"] == {"fast": 20, "slow": 60})
    assert url.endswith(f"/combinations/{row['index']}")
    page.locator("#heatmap-chart").scroll_into_view_if_needed()
    box = page.locator("#heatmap-chart .nsewdrag").first.bounding_box()
    cols, rows = len(heat["x_values"]), len(heat["y_values"])
    page.mouse.click(
        box["x"] + box["width"] * (j + 0.5) / cols,
        box["y"] + box["height"] * (1 - (i + 0.5) / rows),
    )
    page.wait_for_url(f"**/combinations/{row['index']}", timeout=10_000)
    assert "fast=20" in page.inner_text("h1") and "slow=60" in page.inner_text("h1")
    shown = page.inner_text("#combination-cards")
    assert format_metric("total_return", row["metrics"]["total_return"]) in shown
    _no_page_scroll(page)


def test_choosing_another_metric_redraws_the_heatmap(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    data = _sweep(http, "br-sweep")["data"]
    page = sized
    page.goto("/tasks/br-sweep")
    page.select_option("select[name=heat_metric]", "sharpe_ratio")
    page.click("#heat-form button")
    page.wait_for_selector("#heatmap-chart .main-svg", timeout=WAIT_MS)
    z = page.evaluate("() => document.getElementById('heatmap-chart').data[0].z")
    by = {(r["params"]["fast"], r["params"]["slow"]): r["metrics"]["sharpe_ratio"]
          for r in data["results"]}  # fmt: skip
    xs, ys = sorted({k[0] for k in by}), sorted({k[1] for k in by})
    for i, slow in enumerate(ys):
        for j, fast in enumerate(xs):
            want = by.get((fast, slow))
            assert (z[i][j] is None and want is None) or abs(z[i][j] - want) < 1e-6


def test_a_walk_forward_sweep_shows_its_folds_and_stitched_curve(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    result = _sweep(http, "br-wf", walk_forward={"train_sessions": 252, "test_sessions": 126})
    walk = result["data"]["walk_forward"]
    page = sized
    page.goto("/tasks/br-wf")
    page.wait_for_selector("#oos-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.shots / f"walk-forward-{page.size}.png"), full_page=True)
    assert page.locator("#folds tbody tr").count() == len(walk["folds"])
    first = walk["folds"][0]
    row = page.inner_text("#folds tbody tr:first-child")
    assert str(first["test_start"])[:10] in row
    assert all(f"{k}={v}" in row for k, v in first["params"].items())
    drawn = page.evaluate("() => document.getElementById('oos-chart').data[0].y")
    assert drawn == walk["oos_equity_curve"]["values"]
    _no_page_scroll(page)


def test_the_html_report_of_a_sweep_holds_its_heatmap_ranking_and_best_backtest(
    chromium: Any, http: httpx.Client, worker: WorkerProcess, module_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    data = _sweep(http, "br-sweep")["data"]
    report = tmp_path / "sweep.html"
    done = warm_cli.run(
        ["result", "br-sweep", "--html", str(report)],
        env=module_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    context = chromium.new_context(viewport=SIZES["desktop"])
    try:
        page = context.new_page()
        page.goto(report.as_uri())
        page.wait_for_selector("#heatmap-chart .main-svg", timeout=WAIT_MS)
        page.wait_for_selector("#best-equity-chart .main-svg", timeout=WAIT_MS)
        assert page.locator("#results tbody tr").count() == len(data["results"])
        trades = page.locator("#best_trades tbody tr").count()
        assert trades == len(data["best_result"]["trades"])
        assert page.locator("#heat-form").count() == 0  # a file has no server to ask
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    finally:
        context.close()
