"""A strategy's history page in real headless Chromium: three versions run through the queue,
archived by ``strategyq serve --archive``, shown with their diffs and metrics over time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from strategyq import add_backtest_task, wait_for_result
from strategyq.archive.record import fingerprint
from strategyq.examples import source
from tests.integration.api.conftest import ServeProcess, api_env
from tests.integration.browser import OpenPage
from tests.integration.conftest import WorkerProcess, wait_until

V1 = source("sma_cross")
V2 = V1.replace('df["sma_20"] > df["sma_50"]', 'df["sma_10"] > df["sma_50"]')
V3 = V2.replace('df["sma_50"].notna()', 'df["sma_50"].notna() & (df["rsi"] < 70)')


@pytest.fixture(scope="module")
def history_worker(redis_url: str, market_home: Path) -> Iterator[WorkerProcess]:
    """One worker for both backends' tests: a worker never opens the archive (it leaves
    each run in Redis and on the archive feed; ``serve --archive`` copies it), so the
    backend is the API's setting alone. Its heartbeat registers it again after the flush
    of each test's ``redis_client``."""
    worker = WorkerProcess(api_env(redis_url, market_home), "history-worker").start()
    try:
        worker.wait_for_log("started")
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def served(
    redis_client: redis.Redis,
    redis_url: str,
    market_home: Path,
    archive_url: str,
    history_worker: WorkerProcess,
) -> Iterator[ServeProcess]:
    env = api_env(redis_url, market_home, STRATEGYQ_ARCHIVE_URL=archive_url)
    proc = ServeProcess(env, "--archive").start()
    try:
        wait_until(lambda: redis_client.exists("strategyq:archive"), timeout_s=30)
        yield proc
    finally:
        proc.stop()


def test_history_page_of_a_strategy_with_three_versions(
    served: ServeProcess, redis_client: redis.Redis, open_page: OpenPage, tmp_path: Path
) -> None:
    assert len({V1, V2, V3}) == 3
    for i, code in enumerate((V1, V2, V2, V3)):
        add_backtest_task(redis_client, f"hist-{i}", code, ["AAPL", "MSFT"], "2008-01-01",
                          "2011-12-31", name="crossing", tags=[f"v{i}"])  # fmt: skip
        done = wait_for_result(redis_client, f"hist-{i}", 120)
        assert done is not None and done["status"] == "completed", done
    with httpx.Client(base_url=served.url, timeout=30) as http:
        listed = wait_until(
            lambda: len(http.get("/v1/runs", params={"name": "crossing"}).json()["runs"]) == 4,
            timeout_s=60,
        )
        assert listed
    page = open_page(served.url, viewport={"width": 1280, "height": 900})
    page.goto(f"/history?fingerprint={fingerprint(V2)}")  # any version finds its name
    page.wait_for_selector("#history-chart .main-svg", timeout=30_000)
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
    assert "History of crossing" in page.inner_text("h1")
    versions = page.locator("#versions tbody tr")
    assert versions.count() == 3
    assert [versions.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        fingerprint(V1), fingerprint(V2), fingerprint(V3)]  # fmt: skip
    assert versions.nth(1).locator("td").nth(3).inner_text() == "2"  # two runs of v2
    diffs = page.locator("pre.diff")
    assert diffs.count() == 2
    first, second = diffs.nth(0), diffs.nth(1)
    assert first.locator(".del").filter(has_text='df["sma_20"]').count() == 1
    assert first.locator(".add").filter(has_text='df["sma_10"]').count() == 1
    assert second.locator(".add").filter(has_text='df["rsi"] < 70').count() == 1
    assert second.locator(".del").filter(has_text="sma_20").count() == 0
    # Metrics over time: one marker per run on each plotted line.
    points = page.evaluate(
        "() => document.getElementById('history-chart').data.map(t => t.y.length)"
    )
    assert points == [4, 4, 4]
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 4
    assert rows.nth(0).locator("td").nth(2).inner_text() == "3"  # newest first: v3
