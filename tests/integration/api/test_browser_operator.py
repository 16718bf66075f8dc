"""The operator's views in a browser, at desktop and phone sizes: the tasks view with
queued, running and finished tasks, searched by symbol and status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from strategyq.api.config import hash_token
from strategyq.labels import format_metric, label
from tests.integration.api.conftest import GAP_UP, ServeProcess, backtest_body
from tests.integration.conftest import WorkerProcess

# Running long enough to be seen running, asleep rather than spinning (a loop would take a
# core from the browser the test drives); every test cancels what it started.
BUSY = "import time\n\n\ndef busy(df):\n    time.sleep(600)\n    return []\n"


@pytest.fixture(scope="module")
def queue_env(module_env: dict[str, str]) -> dict[str, str]:
    """A queue of this module's own, so what it holds queued is its own."""
    return {**module_env, "STRATEGYQ_QUEUE": f"operator-{uuid.uuid4().hex[:6]}"}


@pytest.fixture(scope="module")
def serve(queue_env: dict[str, str]) -> Iterator[ServeProcess]:
    proc = ServeProcess(queue_env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def worker(queue_env: dict[str, str]) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(queue_env, f"operator-worker-{uuid.uuid4().hex[:4]}").start()
    try:  # a worker that does not come up in time is stopped all the same
        proc.wait_for_log("started")
        yield proc
    finally:
        proc.stop()


def _status(http: httpx.Client, task_id: str) -> str:
    return str(http.get(f"/v1/tasks/{task_id}").json()["status"])


def test_the_tasks_view_shows_a_queued_and_a_running_task(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    tag = f"{sized.size}-{uuid.uuid4().hex[:4]}"
    finished, running, queued = f"op-done-{tag}", f"op-running-{tag}", f"op-queued-{tag}"
    assert http.post("/v1/tasks", json=backtest_body(finished)).status_code == 202
    done = http.get(f"/v1/tasks/{finished}/wait", params={"timeout_s": 120}, timeout=140).json()
    assert done["status"] == "completed", done
    body = backtest_body(running, strategy_code=BUSY)
    body["args"]["symbols"] = ["AAPL", "MSFT", "IBM", "GE", "KO", "PEP", "XOM"]
    assert http.post("/v1/tasks", json=body).status_code == 202
    deadline = time.monotonic() + 60
    while _status(http, running) != "running":
        assert time.monotonic() < deadline, "the busy task never started"
        time.sleep(0.1)
    assert http.post("/v1/tasks", json=backtest_body(queued)).status_code == 202
    try:
        page = sized
        page.goto("/tasks")
        page.screenshot(path=str(page.shots / f"tasks-{page.size}.png"), full_page=True)
        run_row = page.locator(f"#running tr[data-task='{running}']")
        assert run_row.count() == 1
        cells = run_row.locator("td").all_inner_texts()
        assert cells[1] == "running" and cells[2] == "backtest"
        assert cells[3] == "—"  # no name, no tags
        # Seven symbols: the count and the first five, then how many more.
        assert cells[4] == "7 AAPL, MSFT, IBM, GE, KO +2"
        assert cells[6].startswith("20")  # started at
        assert cells[7] != "—"  # the wait in the queue: submitted through the API
        assert cells[11] == worker.worker_id
        queue_row = page.locator(f"#queued tr[data-task='{queued}']")
        assert queue_row.count() == 1
        cells = queue_row.locator("td").all_inner_texts()
        assert cells[1] == "queued" and cells[4] == "2 AAPL, MSFT"
        assert cells[5].startswith("20") and cells[6] == "—" and cells[7] == "—"
        assert cells[11] == "—"
        done_row = page.locator(f"#recent tr[data-task='{finished}']")
        cells = done_row.locator("td").all_inner_texts()
        assert cells[1] == "completed" and cells[2] == "backtest"
        metrics = done["data"]["performance_metrics"]
        total = format_metric("total_return", metrics["total_return"])
        assert cells[10] == f"{label('total_return')} {total}"
        assert cells[11] == worker.worker_id and cells[9] != "—" and cells[6].startswith("20")
        assert cells[5].startswith("20") and cells[7] != "—"  # submitted, and the wait
        # Search by symbol and status, through the form as a person would.
        page.fill("input[name=symbol]", "ge")
        page.select_option("select[name=status]", "running")
        page.click("#task-search button")
        page.wait_for_url("**/tasks?*symbol=ge*")
        assert page.locator(f"#running tr[data-task='{running}']").count() == 1
        assert page.locator(f"#queued tr[data-task='{queued}']").count() == 0
        assert page.locator(f"#recent tr[data-task='{finished}']").count() == 0
        page.goto(f"/tasks?q={queued[:-2]}&status=queued")
        assert page.locator("#queued tr.task").count() == 1
        # By time: queued tasks by when they were submitted, running ones by their start.
        today = time.strftime("%Y-%m-%d", time.gmtime())
        page.goto(f"/tasks?since={today}&q={tag}")
        assert page.locator(f"#queued tr[data-task='{queued}']").count() == 1
        assert page.locator(f"#running tr[data-task='{running}']").count() == 1
        page.goto(f"/tasks?until=2001-01-01&q={tag}")
        assert page.locator("tr.task").count() == 0
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"]
    finally:
        for task_id in (queued, running):
            http.post(f"/v1/tasks/{task_id}/cancel")
    deadline = time.monotonic() + 60
    while _status(http, running) != "cancelled":
        assert time.monotonic() < deadline, "the busy task was not cancelled"
        time.sleep(0.1)


def test_the_tasks_view_refuses_a_time_it_cannot_read(http: httpx.Client) -> None:
    reply = http.get("/tasks", params={"since": "yesterday"})
    assert reply.status_code == 400 and "2024-01-15" in reply.text
    reply = http.get("/tasks", params={"status": "sleeping"})
    assert reply.status_code == 400 and "queued" in reply.text


def test_a_schedule_run_appears_on_the_schedules_page(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    name = f"nightly-{sized.size}-{uuid.uuid4().hex[:4]}"
    body = {
        "name": name,
        "cron": "0 3 1 1 *",
        "tz": "America/New_York",
        "task_type": "backtest",
        "args": backtest_body()["args"],
    }
    assert http.post("/v1/schedules", json=body).status_code == 201
    try:
        page = sized
        page.goto("/schedules")
        section = page.locator(f"section[data-schedule='{name}']")
        assert "No run yet." in section.inner_text()
        next_slot = http.get(f"/v1/schedules/{name}").json()["next_slot"]
        assert section.locator(".next-run time").inner_text() == next_slot
        section.locator("button.run-now").click()
        page.wait_for_url("**/schedules*")
        run = page.locator(f"section[data-schedule='{name}'] tr.run")
        assert run.count() == 1
        task_id = run.get_attribute("data-task")
        assert task_id is not None and task_id.startswith(f"{name}:now:")
        done = http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, timeout=140)
        assert done.json()["status"] == "completed"
        page.reload()
        run = page.locator(f"section[data-schedule='{name}'] tr.run")
        assert run.locator(".badge").inner_text() == "completed"
        total = format_metric(
            "total_return", done.json()["data"]["performance_metrics"]["total_return"]
        )
        assert total in run.inner_text()
        page.screenshot(path=str(page.shots / f"schedules-{page.size}.png"), full_page=True)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"]
        # The run's link opens its page.
        run.locator("a").click()
        page.wait_for_selector("h1.task-id")
        assert page.locator("h1.task-id").inner_text() == task_id
        # Pause and resume, through the buttons.
        page.goto("/schedules")
        page.locator(f"section[data-schedule='{name}'] button.pause").click()
        page.wait_for_url("**/schedules*")
        assert http.get(f"/v1/schedules/{name}").json()["paused"] is True
        section = page.locator(f"section[data-schedule='{name}']")
        assert section.locator(".badge.paused").count() == 1
        section.locator("button.resume").click()
        page.wait_for_url("**/schedules*")
        assert http.get(f"/v1/schedules/{name}").json()["paused"] is False
        assert page.locator(f"section[data-schedule='{name}'] .badge.paused").count() == 0
    finally:
        http.delete(f"/v1/schedules/{name}")


def _completed(http: httpx.Client, task_id: str, **args: Any) -> dict[str, Any]:
    if http.get(f"/v1/tasks/{task_id}").status_code == 404:
        assert http.post("/v1/tasks", json=backtest_body(task_id, **args)).status_code == 202
    reply = http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, timeout=140)
    result: dict[str, Any] = reply.json()
    assert result["status"] == "completed", result
    return result


def test_three_backtests_compare_side_by_side(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    ids = [f"cmp-hold-{days}" for days in (1, 3, 5)]
    results = {f"cmp-hold-{days}": _completed(http, f"cmp-hold-{days}", hold_days=days)
               for days in (1, 3, 5)}  # fmt: skip
    page = sized
    page.goto("/tasks")
    for task_id in ids:
        page.check(f"input[type=checkbox][value='{task_id}']")
    page.click("#compare")
    page.wait_for_selector("#compare-chart .main-svg")
    page.screenshot(path=str(page.shots / f"compare-{page.size}.png"), full_page=True)
    # One column per ticked run, in the tasks view's order (newest first).
    heads = page.locator("#compare-metrics thead th.run").all_inner_texts()
    assert sorted(heads) == ids
    ids = heads
    for name in ("total_return", "sharpe_ratio", "num_trades", "max_drawdown"):
        cells = page.locator(f"#compare-metrics tr[data-metric='{name}'] td").all_inner_texts()
        assert cells == [
            format_metric(name, results[t]["data"]["performance_metrics"][name]) for t in ids
        ]
    traces = page.evaluate(
        "() => document.getElementById('compare-chart').data.map(t => [t.name, t.y])"
    )
    assert [t[0] for t in traces] == ids
    for (_, ys), task_id in zip(traces, ids, strict=True):
        assert ys == results[task_id]["data"]["equity_curve"]["values"]
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]


def test_compare_says_what_it_takes(http: httpx.Client) -> None:
    reply = http.get("/compare", params={"id": "only-one"})
    assert reply.status_code == 400 and "2 to 5" in reply.text
    reply = http.get("/compare", params={"id": ["no-such-a", "no-such-b"]})
    assert reply.status_code == 404 and "no-such-a" in reply.text


def test_edit_and_resubmit_opens_the_form_filled_from_a_finished_run(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    first = f"resubmit-{sized.size}-{uuid.uuid4().hex[:4]}"
    _completed(http, first, hold_days=2, commission_bps=5, params={"unused": 1})
    page = sized
    page.goto(f"/tasks/{first}")
    args = orjson.loads(page.locator("#task-args").inner_text())
    assert args["symbols"] == ["AAPL", "MSFT"] and args["hold_days"] == 2
    assert "strategy_code" not in args
    assert page.locator("#source").inner_text().strip() == GAP_UP.strip()
    page.click("#resubmit")
    page.wait_for_selector("#submit-form")
    assert page.locator("textarea[name=strategy_code]").input_value() == GAP_UP
    assert page.locator("input[name=symbols]").input_value() == "AAPL,MSFT"
    assert page.locator("input[name=hold_days]").input_value() == "2"
    assert page.locator("input[name=commission_bps]").input_value() == "5"
    assert page.locator("input[name=task_id]").input_value() == ""
    assert "params" in page.locator("#from-task").inner_text()
    page.screenshot(path=str(page.shots / f"resubmit-{page.size}.png"), full_page=True)
    second = f"{first}-b"
    page.fill("input[name=task_id]", second)
    page.fill("input[name=hold_days]", "4")
    page.click("#submit-form button[type=submit], #submit-form button:not([type])")
    page.wait_for_url(f"**/tasks/{second}")
    done = _completed(http, second)
    stored = done["data"]["task_args"]
    assert stored["hold_days"] == 4 and stored["commission_bps"] == 5
    assert stored["strategy_code"] == GAP_UP and stored["symbols"] == ["AAPL", "MSFT"]


def test_a_read_scope_token_sees_a_results_args_but_not_its_source(
    queue_env: dict[str, str], worker: WorkerProcess
) -> None:
    tokens = f"ops:write:{hash_token('w-secret')},viewer:read:{hash_token('r-secret')}"
    api = ServeProcess({**queue_env, "STRATEGYQ_API_TOKENS": tokens}).start()
    read = {"Authorization": "Bearer r-secret"}
    write = {"Authorization": "Bearer w-secret"}
    task_id = f"scoped-{uuid.uuid4().hex[:6]}"
    try:
        with httpx.Client(base_url=api.url, timeout=140) as http:
            made = http.post("/v1/tasks", json=backtest_body(task_id), headers=write)
            assert made.status_code == 202
            waited = http.get(
                f"/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, headers=read
            ).json()
            assert waited["status"] == "completed"
            for seen in (waited, http.get(f"/v1/tasks/{task_id}", headers=read).json()):
                assert seen["data"]["task_args"]["symbols"] == ["AAPL", "MSFT"]
                assert "hidden" in seen["data"]["task_args"]["strategy_code"]
            full = http.get(f"/v1/tasks/{task_id}", headers=write).json()
            assert full["data"]["task_args"]["strategy_code"] == GAP_UP
            page = http.get(f"/tasks/{task_id}", headers=read).text
            assert 'id="task-args"' in page and 'id="source"' not in page
            assert 'id="resubmit"' not in page
            assert http.get(f"/submit?from={task_id}", headers=read).status_code == 403
    finally:
        api.stop()


def test_the_overview_updates_in_place_and_keeps_what_is_typed(
    sized: Any, http: httpx.Client, worker: WorkerProcess
) -> None:
    page = sized
    page.goto("/")
    page.wait_for_selector("#throughput-chart .main-svg")
    before = int(page.inner_text("#finished-last-hour"))
    page.evaluate("() => { window.notReloaded = true; }")
    box = page.locator("nav input").first
    box.fill("half-typed id")
    _completed(http, f"live-{sized.size}-{uuid.uuid4().hex[:4]}")
    page.wait_for_function(
        f"() => parseInt(document.getElementById('finished-last-hour').textContent) > {before}",
        timeout=20_000,
    )
    assert page.evaluate("() => window.notReloaded === true")
    assert box.input_value() == "half-typed id"
    page.wait_for_selector("#throughput-chart .main-svg")
    assert page.locator(f"tr.worker.alive[data-worker='{worker.worker_id}']").count() == 1
    assert page.locator("meta[http-equiv=refresh]").count() == 0
