"""Results in real Chromium, at desktop and phone sizes, checked against the API: a sweep
cell's full backtest, a screen's ranked page with its as-of facts, a backtest's monthly and
rolling views with the benchmark beside its cards, the price charts' ticker picker past 12
tickers, and the overview following the queue-wide event stream (and polling without it).

The module has a store of its own: the sample data plus 16 synthetic tickers, so a backtest
trades more tickers than the price charts ever showed at once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest

from strategyq.data import load_sample, write_synthetic
from strategyq.data.schema import synthetic_ticker
from strategyq.labels import format_metric
from tests import warm_cli
from tests.integration.api.conftest import ServeProcess, api_env, backtest_body
from tests.integration.api.test_api import SWEEP_CODE
from tests.integration.browser import SIZES
from tests.integration.conftest import WorkerProcess

WAIT_MS = 120_000
SYMBOLS = [synthetic_ticker(i) for i in range(1, 17)]
EVERY_30TH = (
    "def every_30th(df):\n"
    "    out = []\n"
    "    for ticker, rows in df.groupby('ticker'):\n"
    "        for row in rows.iloc[::30].itertuples():\n"
    "            out.append({'ticker': ticker, 'date': str(row.date)})\n"
    "    return out\n"
)
LAST_CLOSE = (
    "def last_close(df):\n"
    "    last = df[df['date'] == df['date'].max()]\n"
    "    return [{'ticker': r.ticker, 'date': str(r.date), 'score': float(r.close)}\n"
    "            for r in last.itertuples()]\n"
)


@pytest.fixture(scope="module")
def results_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="strategyq-results-home-"))
    load_sample(home / "data")
    write_synthetic(home / "data", 16, 2.0, 23)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def module_env(redis_url: str, results_home: Path) -> dict[str, str]:
    """This module's API and worker environment: its own store and its own queue. Its
    strategies import no library, so only the lean fork server starts (a worker is ready
    sooner on a loaded machine), and the API checks against the same empty list."""
    queue = f"results-{uuid.uuid4().hex[:6]}"
    env = api_env(redis_url, results_home, STRATEGYQ_QUEUE=queue)
    return {**env, "STRATEGYQ_SANDBOX_LIBRARIES": "none"}


def _run(http: httpx.Client, body: dict[str, Any], timeout_s: int = 240) -> dict[str, Any]:
    task_id = body["task_id"]
    if http.get(f"/v1/tasks/{task_id}").status_code == 404:
        reply = http.post("/v1/tasks", json=body)
        assert reply.status_code == 202, reply.text
    result: dict[str, Any] = http.get(
        f"/v1/tasks/{task_id}/wait", params={"timeout_s": timeout_s}, timeout=timeout_s + 20
    ).json()
    assert result["status"] == "completed", result
    return result


def _sweep(http: httpx.Client) -> dict[str, Any]:
    return _run(
        http,
        {
            "task_id": "res-sweep",
            "task_type": "sweep",
            "args": {
                "strategy_code": SWEEP_CODE,
                "symbols": ["AAPL", "MSFT"],
                "start_date": "2008-01-01",
                "end_date": "2011-12-31",
                "hold_days": 5,
                "param_grid": {"fast": [5, 10, 20], "slow": [30, 60]},
            },
        },
    )["data"]


def _wide_backtest(http: httpx.Client) -> dict[str, Any]:
    body = backtest_body(
        "res-wide",
        strategy_code=EVERY_30TH,
        symbols=SYMBOLS,
        start_date="2023-01-01",
        end_date="2024-12-31",
        hold_days=5,
        benchmark=SYMBOLS[-1],
        max_positions=32,
    )
    return _run(http, body)["data"]


def _no_page_scroll(page: Any) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.size, width)


def _click_cell(page: Any, heat: dict[str, Any], x: Any, y: Any) -> None:
    j, i = heat["x_values"].index(x), heat["y_values"].index(y)
    page.locator("#heatmap-chart").scroll_into_view_if_needed()
    box = page.locator("#heatmap-chart .nsewdrag").first.bounding_box()
    cols, rows = len(heat["x_values"]), len(heat["y_values"])
    page.mouse.click(
        box["x"] + box["width"] * (j + 0.5) / cols,
        box["y"] + box["height"] * (1 - (i + 0.5) / rows),
    )


def test_a_heatmap_cell_opens_that_combinations_full_backtest(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    data = _sweep(http)
    heat, best = data["heatmap"], data["best"]
    # The worst combination: not the one the sweep keeps a backtest of.
    row = data["results"][-1]
    assert row["index"] != best["index"]
    page = sized
    page.goto("/tasks/res-sweep")
    page.wait_for_selector("#heatmap-chart .main-svg", timeout=WAIT_MS)
    best_page = f"/tasks/res-sweep/combinations/{best['index']}"
    assert page.get_attribute("#best-full", "href") == best_page
    _click_cell(page, heat, row["params"][heat["x"]], row["params"][heat["y"]])
    page.wait_for_url(f"**/combinations/{row['index']}", timeout=10_000)
    derived_id = f"res-sweep.combination-{row['index']}"
    if page.locator("#run-full").count():
        # Not run yet (the first size): one click queues it and the page follows it.
        page.click("#run-full")
        page.wait_for_url(f"**/combinations/{row['index']}", timeout=10_000)
    page.wait_for_selector("#equity-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.shots / f"combination-{page.size}.png"), full_page=True)
    derived = http.get(f"/v1/tasks/{derived_id}").json()
    assert derived["status"] == "completed"
    args = derived["data"]["task_args"]
    assert args["params"] == row["params"] and "param_grid" not in args
    assert args["symbols"] == ["AAPL", "MSFT"] and args["hold_days"] == 5
    metrics = derived["data"]["performance_metrics"]
    # The full run is the same backtest the sweep ranked: the same figures.
    for name in ("total_return", "sharpe_ratio", "num_trades"):
        assert format_metric(name, metrics[name]) == format_metric(name, row["metrics"][name])
        card = page.inner_text(f"#headline .card[data-metric={name}]")
        assert format_metric(name, metrics[name]) in card
    assert derived_id in page.inner_text("#full-source")
    drawn = page.evaluate("() => document.getElementById('equity-chart').data[0].y")
    assert drawn == derived["data"]["equity_curve"]["values"]
    assert page.locator("#trades tbody tr").count() == min(len(derived["data"]["trades"]), 25)
    assert page.locator("#monthly-chart").count() == 1
    assert page.locator("#run-full").count() == 0
    _no_page_scroll(page)
    # The best combination's backtest is the one the sweep kept: shown at once.
    page.goto(best_page)
    page.wait_for_selector("#equity-chart .main-svg", timeout=WAIT_MS)
    assert "Kept with the sweep" in page.inner_text("#full-source")
    drawn = page.evaluate("() => document.getElementById('equity-chart').data[0].y")
    assert drawn == data["best_result"]["equity_curve"]["values"]
    assert http.get(f"/v1/tasks/res-sweep.combination-{best['index']}").status_code == 404


def test_running_a_combination_checks_the_forms_csrf_token(
    http: httpx.Client, worker: WorkerProcess
) -> None:
    data = _sweep(http)
    index = data["results"][1]["index"]
    reply = http.post(f"/tasks/res-sweep/combinations/{index}/backtest", data={"csrf": "x"})
    assert reply.status_code == 403 and "CSRF" in reply.text
    assert http.get(f"/v1/tasks/res-sweep.combination-{index}").status_code == 404


def test_a_screen_has_its_ranked_page_with_the_as_of_facts(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    universe = [*SYMBOLS, "AAPL", "ZZNODATA"]
    body = {"task_id": "res-screen", "task_type": "screening",
            "args": {"strategy_code": LAST_CLOSE, "universe": universe, "limit": 10}}  # fmt: skip
    data = _run(http, body)["data"]
    assert data["missing_symbols"] == ["ZZNODATA"] and data["stale_symbols"] == ["AAPL"]
    ranked = data["ranked_results"]
    assert len(ranked) == 10
    page = sized
    page.goto("/tasks/res-screen")
    page.screenshot(path=str(page.shots / f"screen-{page.size}.png"), full_page=True)
    facts = {
        d.get_attribute("data-fact"): d.inner_text() for d in page.locator("#screen-facts dd").all()
    }
    assert facts["as_of"].startswith(data["as_of"])
    assert facts["universe"] == "18 symbols"
    assert facts["with_data"].startswith("17") and "ZZNODATA" in facts["with_data"]
    assert facts["current"].startswith("16") and "AAPL" in facts["current"]
    assert facts["matched"] == f"{data['candidates']} signals" and data["candidates"] == 16
    assert facts["returned"].startswith("10") and "limit 10" in facts["returned"]
    rows = page.eval_on_selector_all(
        "#ranked tbody tr", "rs => rs.map(r => Array.from(r.cells).map(c => c.innerText))"
    )
    head = page.eval_on_selector_all("#ranked thead th", "hs => hs.map(h => h.innerText.trim())")
    rank, ticker = head.index("rank"), head.index("ticker")
    assert [r[ticker] for r in rows] == [r["ticker"] for r in ranked]
    assert [r[rank] for r in rows] == [str(i) for i in range(1, 11)]
    # Sorted by score ascending: the lowest-scoring kept symbol first.
    page.click("#ranked thead th a:text-is('score')")
    page.wait_for_url("**ranked_sort=score**")
    first = page.inner_text("#ranked tbody tr:first-child").split("\t")
    assert min(ranked, key=lambda r: r["score"])["ticker"] in first
    _no_page_scroll(page)
    href = page.get_attribute("#ranked-csv", "href")
    assert href == "/tasks/res-screen/ranked.csv"
    lines = list(csv.DictReader(io.StringIO(http.get(href).text)))
    assert [(r["rank"], r["ticker"]) for r in lines] == [
        (str(i), r["ticker"]) for i, r in enumerate(ranked, 1)
    ]
    assert [float(r["score"]) for r in lines] == [r["score"] for r in ranked]


def test_a_screens_html_report_holds_its_facts_and_every_ranked_row(
    chromium: Any, http: httpx.Client, worker: WorkerProcess, module_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    args = {"strategy_code": LAST_CLOSE, "universe": SYMBOLS, "limit": 200}
    data = _run(http, {"task_id": "res-screen-all", "task_type": "screening", "args": args})["data"]
    report = tmp_path / "screen.html"
    done = warm_cli.run(
        ["result", "res-screen-all", "--html", str(report)],
        env=module_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    context = chromium.new_context(viewport=SIZES["desktop"])
    try:
        page = context.new_page()
        page.goto(report.as_uri())
        assert page.inner_text("#as-of") == data["as_of"]
        assert page.locator("#ranked tbody tr").count() == len(data["ranked_results"]) == 16
        assert page.locator("#ranked-csv").count() == 0  # a file has no server to ask
    finally:
        context.close()


def _monthly(dates: list[str], values: list[float]) -> dict[tuple[int, int], float]:
    series = pd.Series(values, index=pd.to_datetime(dates))
    ends = series.groupby([series.index.year, series.index.month]).last()
    previous = ends.shift(1).fillna(series.iloc[0])
    return {(int(y), int(m)): float(v) for (y, m), v in (ends / previous - 1).items()}


def _sharpe(values: pd.Series) -> float:
    daily = values.pct_change().dropna()
    return float(daily.mean() / daily.std(ddof=1) * math.sqrt(252))


def test_a_backtest_shows_monthly_and_rolling_views_beside_the_benchmark(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    data = _wide_backtest(http)
    curve, metrics = data["equity_curve"], data["performance_metrics"]
    page = sized
    page.goto("/tasks/res-wide")
    page.wait_for_selector("#monthly-chart .main-svg", timeout=WAIT_MS)
    page.wait_for_selector("#rolling-chart .main-svg", timeout=WAIT_MS)
    page.screenshot(path=str(page.shots / f"wide-{page.size}.png"), full_page=True)
    # The monthly heatmap: year × month, each the API curve's month-end / last month-end − 1.
    heat = page.evaluate(
        "() => { const d = document.getElementById('monthly-chart').data[0];"
        " return {x: d.x, y: d.y, z: d.z}; }"
    )
    assert heat["x"][0] == "Jan" and len(heat["x"]) == 12
    want = _monthly(curve["dates"], curve["values"])
    years = sorted({y for y, _ in want})
    assert [label.split()[0] for label in heat["y"]] == [str(y) for y in years]
    for i, year in enumerate(years):
        for month in range(1, 13):
            z = heat["z"][i][month - 1]
            expected = want.get((year, month))
            assert (z is None and expected is None) or abs(z - expected * 100) < 1e-4
    # Rolling Sharpe and volatility over 63 sessions, from the same curve.
    drawn = page.evaluate(
        "() => { const d = document.getElementById('rolling-chart').data;"
        " return {x: d[0].x, sharpe: d[0].y, vol: d[1].y}; }"
    )
    daily = pd.Series(curve["values"]).pct_change().iloc[1:]
    roll = daily.rolling(63)
    sharpe = (roll.mean() / roll.std(ddof=1) * math.sqrt(252)).iloc[62:].tolist()
    vol = (roll.std(ddof=1) * math.sqrt(252) * 100).iloc[62:].tolist()
    assert drawn["x"] == curve["dates"][63:]
    assert len(drawn["sharpe"]) == len(sharpe)
    for got, exp in zip(drawn["sharpe"], sharpe, strict=True):
        assert (got is None and not math.isfinite(exp)) or abs(got - exp) < 1e-4
    for got, exp in zip(drawn["vol"], vol, strict=True):
        assert abs(got - exp) < 1e-3
    # The benchmark's figure beside each headline card where it has a meaning.
    bench = data["benchmark_curve"]
    values = pd.Series(bench["values"], index=pd.to_datetime(bench["dates"])).dropna()
    years_held = (values.index[-1] - values.index[0]).days / 365.25
    expected_bench = {
        "total_return": metrics["benchmark_return"],
        "cagr": (values.iloc[-1] / values.iloc[0]) ** (1 / years_held) - 1,
        "sharpe_ratio": _sharpe(values),
        "max_drawdown": float((values / values.cummax() - 1).min()),
    }
    for name, value in expected_bench.items():
        text = page.inner_text(f"#headline .card[data-metric={name}] .bench")
        assert text.strip() == f"benchmark {format_metric(name, value)}", name
    for name in ("win_rate", "num_trades"):
        assert page.locator(f"#headline .card[data-metric={name}] .bench").count() == 0
    _no_page_scroll(page)


def test_the_price_charts_have_a_ticker_picker_past_12_tickers(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    data = _wide_backtest(http)
    traded = sorted({t["ticker"] for t in data["trades"]})
    assert len(traded) == 16
    page = sized
    page.goto("/tasks/res-wide")
    page.wait_for_selector("#price-chart .main-svg", timeout=WAIT_MS)
    options = page.eval_on_selector_all("#price-select option", "os => os.map(o => o.value)")
    assert options == traded
    assert page.get_attribute("#price-chart", "data-loaded") == traded[0]
    # Searching narrows the list; an exact ticker draws its chart (fetched from the server).
    page.fill("#price-search", "SYN001")
    assert page.inner_text("#price-count") == f"{sum('SYN001' in t for t in traded)} matches"
    page.fill("#price-search", "syn0014")
    page.wait_for_function(
        "() => document.getElementById('price-chart').dataset.loaded === 'SYN0014'",
        timeout=WAIT_MS,
    )
    chart = page.evaluate(
        "() => { const c = document.getElementById('price-chart');"
        " return {title: c.layout.title.text, traces: c.data.map(t => [t.name, t.x, t.y])}; }"
    )
    assert chart["title"] == "SYN0014"
    mine = [t for t in data["trades"] if t["ticker"] == "SYN0014"]
    entries = next(t for t in chart["traces"] if t[0] == "entry")
    assert entries[1] == [t["entry_date"] for t in mine]
    assert entries[2] == [t["entry_price"] for t in mine]
    assert chart["traces"][0][0] == "SYN0014 close" and len(chart["traces"][0][1]) > 0
    # The select alone picks one too.
    page.fill("#price-search", "")
    page.select_option("#price-select", traded[-1])
    page.wait_for_function(
        f"() => document.getElementById('price-chart').dataset.loaded === '{traded[-1]}'",
        timeout=WAIT_MS,
    )
    _no_page_scroll(page)
    assert http.get("/tasks/res-wide/prices.json", params={"ticker": "AAPL"}).status_code == 404


def test_the_backtest_report_holds_every_tickers_price_chart_offline(
    chromium: Any, http: httpx.Client, worker: WorkerProcess, module_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    data = _wide_backtest(http)
    report = tmp_path / "wide.html"
    done = warm_cli.run(
        ["result", "res-wide", "--html", str(report)],
        env=module_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    context = chromium.new_context(viewport=SIZES["desktop"])
    try:
        page = context.new_page()
        page.goto(report.as_uri())
        page.wait_for_selector("#monthly-chart .main-svg", timeout=WAIT_MS)
        page.wait_for_selector("#rolling-chart .main-svg", timeout=WAIT_MS)
        assert page.locator("script.price-data").count() == 16
        page.select_option("#price-select", "SYN0009")
        assert page.get_attribute("#price-chart", "data-loaded") == "SYN0009"
        mine = [t["entry_date"] for t in data["trades"] if t["ticker"] == "SYN0009"]
        entries = page.evaluate(
            "() => document.getElementById('price-chart').data.find(t => t.name === 'entry').x"
        )
        assert entries == mine
    finally:
        context.close()


def _quick(http: httpx.Client, task_id: str) -> None:
    body = backtest_body(task_id, start_date="2011-01-01", end_date="2011-06-30")
    assert http.post("/v1/tasks", json=body).status_code == 202


def test_the_overview_follows_the_queue_wide_stream_and_keeps_what_is_typed(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    page = sized
    page.goto("/")
    page.wait_for_function(
        "() => document.getElementById('overview-live').dataset.mode === 'stream'",
        timeout=20_000,
    )
    before = int(page.inner_text("#finished-last-hour"))
    page.evaluate("() => { window.notReloaded = true; }")
    box = page.locator("nav input").first
    box.fill("half-typed id")
    task_id = f"res-live-{sized.size}-{uuid.uuid4().hex[:4]}"
    _quick(http, task_id)
    assert (
        http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, timeout=140).json()[
            "status"
        ]
        == "completed"
    )
    # Well inside the 30 s slow poll that runs beside the stream: the stream's event did it.
    page.wait_for_function(
        f"() => parseInt(document.getElementById('finished-last-hour').textContent) > {before}",
        timeout=8_000,
    )
    assert int(page.evaluate("() => document.getElementById('overview-live').dataset.events")) > 0
    assert page.evaluate("() => window.notReloaded === true")
    assert box.input_value() == "half-typed id"


def test_the_queue_stream_reports_each_tasks_changes(
    http: httpx.Client, worker: WorkerProcess
) -> None:
    task_id = f"res-stream-{uuid.uuid4().hex[:6]}"
    seen: list[dict[str, Any]] = []
    with http.stream("GET", "/overview/events", timeout=60) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        name = None
        deadline = time.monotonic() + 120
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "ready":
                _quick(http, task_id)
            elif line.startswith("data: ") and name == "changes":
                payload = orjson.loads(line[6:])
                seen.extend(c for c in payload["changes"] if c["task_id"] == task_id)
                if seen and seen[-1]["status"] == "completed":
                    break
            assert time.monotonic() < deadline, seen
    # In order; changes that arrive together are sent as each task's latest, so a quick
    # queued → running may come as running alone.
    order = {"queued": 0, "running": 1, "completed": 2}
    statuses = [c["status"] for c in seen]
    assert statuses[-1] == "completed" and len(statuses) >= 2, statuses
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    assert all("error" not in c for c in seen)


def test_the_overview_polls_when_the_stream_is_refused(
    chromium: Any, module_env: dict[str, str], worker: WorkerProcess
) -> None:
    # One follower at most, and it is taken: the overview's stream is answered 503.
    api = ServeProcess({**module_env, "STRATEGYQ_API_MAX_FOLLOWERS": "1"}).start()
    stop = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        # Held until the server stops under it (the end of the test): that cut is expected.
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(base_url=api.url, timeout=60) as client,
            client.stream("GET", "/overview/events") as reply,
        ):
            holding.set()
            for _ in reply.iter_raw():
                if stop.is_set():
                    return

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert holding.wait(20)
        with httpx.Client(base_url=api.url, timeout=60) as http:
            assert http.get("/overview/events").status_code == 503
            context = chromium.new_context(base_url=api.url, viewport=SIZES["desktop"])
            try:
                page = context.new_page()
                page.goto("/")
                page.wait_for_function(
                    "() => document.getElementById('overview-live').dataset.mode === 'poll'"
                    " && !document.getElementById('overview-live').dataset.events",
                    timeout=10_000,
                )
                before = int(page.inner_text("#finished-last-hour"))
                task_id = f"res-poll-{uuid.uuid4().hex[:6]}"
                _quick(http, task_id)
                # Read, not waited for: a long-poll is a follower too, and there is no place.
                deadline = time.monotonic() + 120
                while http.get(f"/v1/tasks/{task_id}").json()["status"] != "completed":
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
                page.wait_for_function(
                    "() => parseInt(document.getElementById('finished-last-hour').textContent)"
                    f" > {before}",
                    timeout=20_000,
                )
                assert (
                    page.evaluate("() => document.getElementById('overview-live').dataset.mode")
                    == "poll"
                )
            finally:
                context.close()
    finally:
        stop.set()
        api.stop()
        holder.join(30)
